"""Fuzz the CMS push API (`POST /api/articles`, bearer token) on the real app and a real SQLite file.

Inputs: each article field replaced by hostile values and a slice of the Big List of Naughty
Strings; each field replaced by generated JSON of any type (Hypothesis: big integers, floats,
nesting, lone surrogates); whole generated bodies; raw bodies that are not JSON at all, deeply
nested or carrying integers too long to parse; and naughty Authorization headers.

Each request meets the same starting database, and each answer must be: below 500, JSON, counts
that add up to the articles sent (200) or an `error` (4xx), every table as before when nothing
was added or updated (the token's last-used time aside), a stored title equal to the one sent,
and the editors' queue page, which lists stored articles, free of markup a title smuggled in.

Sizes: 8 fields x (hostile values + NAUGHTY_PER_FIELD), HYPOTHESIS_EXAMPLES per field and for
whole bodies, the raw bodies and the headers: about 240 requests, printed at the end (pytest -s).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from briefing.db import session_scope
from briefing.service import api_tokens as api_token_service
from tests.fixtures.naughty import (
    NAUGHTY_FROM,
    WebTrial,
    fingerprint,
    inputs_for,
    naughty_slice,
    shown_as_is,
)
from tests.fixtures.web import FIXED_NOW

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

NAUGHTY_PER_FIELD = 6
HYPOTHESIS_EXAMPLES = 8
GOOD: dict[str, Any] = {
    "url": "https://news.example.com/2026/11/29/budget",
    "title": "Budget passes",
    "summary": "By 52 votes to 47.",
    "author": "A. Reporter",
    "section": "Politics",
    "image_url": "https://news.example.com/img/budget.jpg",
    "image_alt": "The chamber",
    "published_at": "2026-11-28T23:40:00Z",
}
KINDS = {"url": "url", "image_url": "url", "published_at": "date"}
RAW_BODIES: tuple[bytes, ...] = (
    b"",
    b"\xff\xfe",
    b"[" * 100_000,
    b"[" * 5_000 + b"]" * 5_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b'{"url": ' + b"9" * 5_000 + b"}",
    b'[{"url": "https://news.example.com/x", "title": "t", "summary": ' + b"1" * 5_000 + b"}]",
    b'{"url": "https://news.example.com/x", "title": 1e999}',
    b'{"url": "https://news.example.com/x", "title": NaN}',
    b'{"url": "https://news.example.com/x", "title": "\\ud800"}',
    b'{"url": "https://news.example.com/\\udcff", "title": "x"}',
    b'{"url": "https://news.example.com/x", "title": "x", "published_at": "9999-12-31T23:59:59-23:59"}',
    b'{"url": "https://news.example.com/x", "title": "x", "published_at": 9223372036854775808}',
    b"[" + b"{}," * 1_000 + b"{}]",
    b'"just a string"',
    b"null",
    b"[1, 2, 3]",
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**80)
    | st.floats()
    | st.text(st.characters(exclude_categories=()), max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def token(sqlite_engine: sa.Engine) -> str:
    with session_scope(sqlite_engine) as session:
        _, secret = api_token_service.create_token(session, "cms", now=FIXED_NOW)
    return secret


class ApiTrial:
    """One `WebTrial` for the pushes, plus the checks only the API's answers allow."""

    def __init__(self, client: TestClient, engine: sa.Engine, token: str) -> None:
        self.web = WebTrial(client, engine, ignore={"api_token": ["last_used_at"]})
        self.auth = {"authorization": f"Bearer {token}"}

    def push(
        self, target: str, value: object, body: bytes, headers: dict[str, str | bytes] | None = None
    ) -> None:
        response = self.web.send(
            target,
            value,
            "POST",
            "/api/articles",
            content=body,
            headers={"content-type": "application/json", **(headers or self.auth)},
        )
        if response is None or response.status_code >= 500:
            return
        try:
            answer = response.json()
        except ValueError:
            self.web.findings.add(target, value, f"HTTP {response.status_code} answer is not JSON")
            return
        if response.status_code != 200:
            if "error" not in answer:
                self.web.findings.add(target, value, f"HTTP {response.status_code} without an error")
            return
        self.check_counts(target, value, answer)

    def check_counts(self, target: str, value: object, answer: dict[str, Any]) -> None:
        results = answer.get("results", [])
        counted = sum(answer.get(k, 0) for k in ("added", "updated", "unchanged", "rejected"))
        if counted != len(results):
            self.web.findings.add(target, value, f"counts {counted} != {len(results)} results")
        if not answer.get("added") and not answer.get("updated"):
            return
        if self.web.findings.tried % 4 == 0 or (isinstance(value, str) and "<" in value):
            page = self.web.client.get("/editor/queue")  # lists the stored articles
            self.web.judge(
                f"{target} then GET /editor/queue", value, page, fingerprint(self.web.engine, self.web.ignore)
            )

    def push_article(self, target: str, value: object, article: dict[str, Any]) -> None:
        body = json.dumps(article, ensure_ascii=True, allow_nan=True).encode()
        self.push(target, value, body)
        title = article.get("title")
        if isinstance(title, str) and shown_as_is(title, max_len=200):
            stored = stored_title(self.web.engine)
            if stored is not None and stored != title:
                self.web.findings.add(target, value, f"stored title {stored!r} is not the title sent")


def stored_title(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT title FROM article ORDER BY id DESC LIMIT 1")
        ).scalar_one_or_none()


@pytest.fixture
def trial(admin_client: TestClient, sqlite_engine: sa.Engine, token: str) -> ApiTrial:
    return ApiTrial(admin_client, sqlite_engine, token)


def test_api_survives_naughty_fields_generated_json_and_raw_bodies(trial: ApiTrial) -> None:
    start = NAUGHTY_FROM["api"]
    for i, name in enumerate(GOOD):
        for value in inputs_for(KINDS.get(name, "text"), NAUGHTY_PER_FIELD, start + NAUGHTY_PER_FIELD * i):
            trial.push_article(f"POST /api/articles {name}", value, {**GOOD, name: value})
    for body in RAW_BODIES:
        trial.push("POST /api/articles raw body", body[:60], body)
    start += NAUGHTY_PER_FIELD * len(GOOD)
    for value in naughty_slice(NAUGHTY_PER_FIELD, start):
        trial.push("POST /api/articles raw body", value, value.encode("utf-8", "surrogatepass"))
    for value in naughty_slice(NAUGHTY_PER_FIELD, start + NAUGHTY_PER_FIELD):
        if not any(c in value for c in "\r\n\x00"):  # a header line cannot carry these on the wire
            header = ("Bearer " + value).encode("utf-8", "surrogatepass")
            trial.push(
                "POST /api/articles authorization",
                value,
                json.dumps(GOOD).encode(),
                {"authorization": header},
            )

    @settings(
        max_examples=HYPOTHESIS_EXAMPLES * len(GOOD),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(name=st.sampled_from(sorted(GOOD)), value=JSON)
    def generated_field(name: str, value: Any) -> None:
        trial.push_article(f"POST /api/articles {name} (any JSON)", value, {**GOOD, name: value})

    @settings(
        max_examples=HYPOTHESIS_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(body=JSON)
    def generated_body(body: Any) -> None:
        trial.push("POST /api/articles (any JSON body)", body, json.dumps(body, allow_nan=True).encode())

    generated_field()
    generated_body()
    print(f"POST /api/articles: {trial.web.findings.tried} requests")
    trial.web.findings.check()
