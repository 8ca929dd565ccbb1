"""The CMS push API on a minimal FastAPI app: tokens, batches with bad items, limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from briefing.db import session_scope
from briefing.errors import Conflict, InvalidInput
from briefing.models import ApiToken, Article
from briefing.service import api_tokens as api_token_service
from briefing.store import api_tokens as token_store
from briefing.web.api import router
from tests.fixtures.clock import ManualClock

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 11, 28, 7, 15, tzinfo=UTC)  # the morning after the article below

GOOD = {
    "url": "https://news.example.com/2026/11/27/budget?utm_source=cms",
    "title": "Budget passes",
    "summary": "By 52 votes to 47.",
    "section": "Politics",
    "published_at": "2026-11-27T23:40:00Z",
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def app(engine: sa.Engine, clock: ManualClock) -> FastAPI:
    app = FastAPI()
    app.state.engine = engine
    app.state.clock = clock
    app.include_router(router)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def token(engine: sa.Engine) -> str:
    with session_scope(engine) as session:
        _, secret = api_token_service.create_token(session, "cms", now=NOW - timedelta(days=30))
    return secret


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def articles(engine: sa.Engine) -> list[Article]:
    with Session(engine) as s:
        return list(s.exec(select(Article).order_by(Article.id)).all())  # type: ignore[arg-type]


def test_one_article_is_stored_and_pushing_again_is_idempotent(
    client: TestClient, engine: sa.Engine, token: str, clock: ManualClock
) -> None:
    first = client.post("/api/articles", json=GOOD, headers=auth(token))
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    (stored,) = articles(engine)
    assert body == {
        "added": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "results": [{"index": 0, "status": "added", "id": stored.id, "url": stored.url}],
    }
    assert stored.url == "https://news.example.com/2026/11/27/budget"  # tracking parameter dropped
    assert stored.source == "api"
    assert stored.published_at == datetime(2026, 11, 27, 23, 40, tzinfo=UTC)
    assert stored.created_at == NOW  # the app's clock, not the machine's
    clock.advance(timedelta(minutes=5))
    again = client.post("/api/articles", json=GOOD, headers=auth(token))
    assert again.json()["results"] == [
        {"index": 0, "status": "unchanged", "id": stored.id, "url": stored.url}
    ]
    changed = client.post(
        "/api/articles", json={**GOOD, "title": "Budget passes at midnight"}, headers=auth(token)
    )
    assert changed.json()["updated"] == 1
    (updated,) = articles(engine)
    assert updated.title == "Budget passes at midnight"
    assert (updated.created_at, updated.updated_at) == (NOW, NOW + timedelta(minutes=5))


def test_a_bad_article_is_reported_by_index_and_the_good_ones_are_stored(
    client: TestClient, engine: sa.Engine, token: str
) -> None:
    batch = [
        GOOD,
        {**GOOD, "url": "ftp://news.example.com/x"},
        "not an object",
        {**GOOD, "url": "https://news.example.com/2", "title": ""},
        {**GOOD, "url": "https://news.example.com/3", "title": "Line\nbreak"},
        {**GOOD, "url": "https://news.example.com/4", "published_at": "tomorrow"},
        {**GOOD, "url": "https://news.example.com/5", "title": 42},
        {**GOOD, "url": "https://news.example.com/6", "title": "Sixth"},
    ]
    response = client.post("/api/articles", json=batch, headers=auth(token))
    assert response.status_code == 200
    body = response.json()
    assert (body["added"], body["rejected"]) == (2, 6)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(batch)))
    assert [r["status"] for r in results] == ["added"] + ["rejected"] * 6 + ["added"]
    assert results[1]["error"].startswith("url: must start with http:// or https://")
    assert results[2]["error"] == "each article must be a JSON object"
    assert results[3]["error"] == "title: is required"
    assert results[4]["error"] == "title: must be one line (no line breaks)"
    assert results[5]["error"].startswith("published_at: ")
    assert results[6]["error"] == "title: must be text"
    assert [a.title for a in articles(engine)] == ["Budget passes", "Sixth"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer brf_not-a-real-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
    ids=["missing", "empty", "unknown", "wrong-scheme", "huge"],
)
def test_bad_or_missing_token_is_401_and_stores_nothing(
    client: TestClient, engine: sa.Engine, token: str, headers: dict[str, str]
) -> None:
    response = client.post("/api/articles", json=GOOD, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in response.json()["error"]
    assert articles(engine) == []


def test_a_revoked_token_stops_working_and_use_is_recorded(
    client: TestClient, engine: sa.Engine, token: str, clock: ManualClock
) -> None:
    with session_scope(engine) as session:
        (listed,) = token_store.list_tokens(session)
    assert listed.last_used_at is None
    assert client.post("/api/articles", json=GOOD, headers=auth(token)).status_code == 200
    with session_scope(engine) as session:
        (listed,) = token_store.list_tokens(session)
        assert listed.last_used_at == NOW
        clock.advance(timedelta(hours=1))
        api_token_service.revoke_token(session, "cms", now=clock.now())
    assert client.post("/api/articles", json=GOOD, headers=auth(token)).status_code == 401
    assert client.post("/api/articles", json=GOOD, headers=auth(token.lower())).status_code == 401


def test_only_the_hash_is_stored(engine: sa.Engine, token: str) -> None:
    with Session(engine) as s:
        (row,) = s.exec(select(ApiToken)).all()
    assert token.startswith("brf_") and len(token) > 40
    assert row.token_hash == api_token_service.hash_token(token) and token not in row.token_hash


def test_non_json_body_is_400(client: TestClient, token: str) -> None:
    response = client.post(
        "/api/articles", content=b"title=Budget", headers={**auth(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = client.post("/api/articles", content=b"\xff\xfe\x00", headers=auth(token))
    assert response.status_code == 400
    response = client.post("/api/articles", json="just a string", headers=auth(token))
    assert response.status_code == 400 and "object or a list" in response.json()["error"]


def test_a_body_over_the_limit_is_413(
    app: FastAPI, client: TestClient, engine: sa.Engine, token: str
) -> None:
    app.state.settings = SimpleNamespace(api_max_body_bytes=2000)
    big = [{**GOOD, "url": f"https://news.example.com/{i}"} for i in range(40)]
    response = client.post("/api/articles", json=big, headers=auth(token))
    assert response.status_code == 413 and "smaller batches" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        data = json.dumps(big).encode()
        for i in range(0, len(data), 500):
            yield data[i : i + 500]

    response = client.post("/api/articles", content=chunks(), headers=auth(token))
    assert response.status_code == 413
    assert articles(engine) == []


def test_empty_list_is_fine(client: TestClient, token: str) -> None:
    response = client.post("/api/articles", json=[], headers=auth(token))
    assert response.status_code == 200 and response.json()["results"] == []


def test_token_names_are_unique_and_validated(engine: sa.Engine, token: str) -> None:
    with session_scope(engine) as session, pytest.raises(InvalidInput):
        api_token_service.create_token(session, "two\nlines", now=NOW)
    with pytest.raises(Conflict, match="exists already"), session_scope(engine) as session:
        api_token_service.create_token(session, "cms", now=NOW)


# --- hostile input: each bad article is rejected alone, a hostile body is a 4xx, never a 500 -----

HOSTILE_ITEMS = [
    pytest.param({"title": "\ud800"}, "title: is not valid Unicode", id="lone-surrogate-title"),
    pytest.param({"summary": "ok \udfff"}, "summary: is not valid Unicode", id="lone-surrogate-summary"),
    pytest.param({"url": "http://[zz]/"}, "url: has a malformed host", id="bracketed-junk-host"),
    pytest.param({"url": "https://[::1/"}, "url: has a malformed host", id="unclosed-ipv6"),
    pytest.param({"url": "https://[::1]:99999/"}, "url: has a port", id="port-out-of-range"),
    pytest.param({"url": "https://exa\ud800mple.com/"}, "url: is not valid Unicode", id="surrogate-host"),
    pytest.param({"image_url": "http://[zz]/i.jpg"}, "image_url: has a malformed host", id="image-host"),
    pytest.param({"published_at": "0001-01-01T00:00:00+01:00"}, "published_at: ", id="year-1-east-of-utc"),
    pytest.param({"published_at": "9999-12-31T23:59:59-01:00"}, "published_at: ", id="year-9999-west-of-utc"),
    pytest.param({"title": "x" * 140_000}, "title: is 140000 characters", id="huge-title"),
]


@pytest.mark.parametrize(("change", "error"), HOSTILE_ITEMS)
def test_a_hostile_article_is_rejected_alone_and_the_good_ones_are_stored(
    client: TestClient, engine: sa.Engine, token: str, change: dict[str, str], error: str
) -> None:
    bad = {**GOOD, "url": "https://news.example.com/bad", **change}
    batch = [GOOD, bad, {**GOOD, "url": "https://news.example.com/after", "title": "After"}]
    # ensure_ascii: a lone surrogate travels as the JSON escape \ud800, as a CMS would send it
    body = json.dumps(batch).encode("ascii")
    response = client.post(
        "/api/articles", content=body, headers={**auth(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["added", "rejected", "added"]
    assert results[1]["index"] == 1 and results[1]["error"].startswith(error), results[1]
    assert [a.title for a in articles(engine)] == ["Budget passes", "After"]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE_BODIES = [
    pytest.param(b'[{"title": "x", "n": ' + b"7" * 5000 + b"}]", "more than 20 digits", id="huge-integer"),
    pytest.param(b'{"url": "https://news.example.com/", "n": -' + b"9" * 21 + b"}", "digits", id="21-digits"),
    pytest.param(_nested(1200), "nested deeper than 32", id="nesting-1200"),
    pytest.param(_nested(100_000), "nested deeper than 32", id="nesting-100000"),
    pytest.param(b'[{"a": ' * 33 + b"1" + b"}]" * 33, "nested deeper than 32", id="nesting-objects"),
    pytest.param(b"[NaN]", "not valid JSON", id="nan"),
    pytest.param(b"[1e999]", "too large", id="infinite-float"),
    pytest.param(b'{"title": "caf\xe9"}', "not UTF-8", id="latin-1"),
]


@pytest.mark.parametrize(("body", "error"), HOSTILE_BODIES)
def test_a_hostile_body_is_400_naming_the_problem_and_stores_nothing(
    client: TestClient, engine: sa.Engine, token: str, body: bytes, error: str
) -> None:
    response = client.post(
        "/api/articles", content=body, headers={**auth(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("the body is ") and error in response.json()["error"]
    assert response.headers["cache-control"] == "no-store"
    assert articles(engine) == []


def test_nesting_up_to_the_limit_is_parsed_and_each_item_judged(client: TestClient, token: str) -> None:
    body = b"[" + _nested(31) + b"," + json.dumps(GOOD).encode() + b"]"
    response = client.post("/api/articles", content=body, headers=auth(token))
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "added"]


def test_brackets_and_digits_inside_strings_are_text(
    client: TestClient, engine: sa.Engine, token: str
) -> None:
    title = "[[[[" * 20 + " 1" + "0" * 40
    response = client.post("/api/articles", json={**GOOD, "title": title}, headers=auth(token))
    assert response.status_code == 200 and response.json()["added"] == 1, response.text
    assert [a.title for a in articles(engine)] == [title]
