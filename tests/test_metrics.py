"""`GET /metrics`: off without a token, bearer-only with one, counts and dates, never a reader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from briefing.db import session_scope
from briefing.domain import EditionData, LedgerCounts
from briefing.mail.transport import MemoryTransport
from briefing.service import schedule as schedule_service
from briefing.service.health import EditionNumbers, Numbers
from briefing.web.metrics import families
from tests.fixtures import web

TOKEN = "scrape-token-0123456789"
DAY = web.EDITION_DAY.isoformat()


@pytest.fixture
def metrics_client(
    make_app: Callable[..., FastAPI], sqlite_url: str, sqlite_engine: sa.Engine
) -> Iterator[TestClient]:
    settings = web.web_settings_for(sqlite_url, metrics_token=TOKEN)
    web.queue_stories(sqlite_engine)
    for name in ("ada", "grace", "alan"):
        web.add_subscriber(sqlite_engine, f"{name}@example.org")
    assert web.send_edition(sqlite_engine, settings, MemoryTransport()).edition.status == "sent"
    with session_scope(sqlite_engine) as s:
        beat_at = web.FIXED_NOW - timedelta(seconds=45)
        schedule_service.record_heartbeat(
            s, owner="host:1", started_at=beat_at, next_run_at=None, now=beat_at
        )
    with TestClient(make_app(settings=settings), base_url=web.BASE_URL) as client:
        yield client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_are_off_until_a_token_is_set(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 404


def test_metrics_need_the_bearer_token(metrics_client: TestClient) -> None:
    assert metrics_client.get("/metrics").status_code == 401
    wrong = metrics_client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert metrics_client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401


def test_metrics_give_copies_per_edition_the_last_state_and_the_heartbeat_age(
    metrics_client: TestClient,
) -> None:
    response = metrics_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    one = (("edition", DAY), ("kind", "regular"), ("newsletter", "briefing"))
    assert found[("briefing_edition_copies", (*one, ("status", "sent")))] == 3
    assert found[("briefing_edition_copies", (*one, ("status", "failed")))] == 0
    assert found[("briefing_edition_copies", (*one, ("status", "deferred")))] == 0
    last = (("edition", DAY), ("newsletter", "briefing"))
    assert found[("briefing_last_edition_state", (*last, ("state", "sent")))] == 1
    assert found[("briefing_last_edition_state", (*last, ("state", "expired")))] == 0
    assert found[("briefing_scheduler_heartbeat_age_seconds", ())] == 45
    assert found[("briefing_open_alerts", ())] == 0
    assert "@" not in response.text, "no address in the metrics"


def test_a_settled_edition_is_counted_once_not_at_every_scrape(
    metrics_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    headers = {"Authorization": f"Bearer {TOKEN}"}
    sa.event.listen(sqlite_engine, "before_cursor_execute", record)
    try:
        first = metrics_client.get("/metrics", headers=headers).text
        ledger_reads = [s for s in statements if "FROM delivery" in s]
        statements.clear()
        second = metrics_client.get("/metrics", headers=headers).text
    finally:
        sa.event.remove(sqlite_engine, "before_cursor_execute", record)

    assert len(ledger_reads) == 1
    assert [s for s in statements if "FROM delivery" in s] == []
    assert samples(first) == samples(second)


def test_two_newsletters_editions_of_one_date_are_two_series_and_each_has_its_last_state() -> None:
    day = web.EDITION_DAY
    sent = LedgerCounts(sent=3)
    numbers = Numbers(
        editions=(
            EditionNumbers(day, "sent", sent, "briefing", "regular"),
            EditionNumbers(day, "sent", LedgerCounts(sent=2), "weekend", "regular"),
            EditionNumbers(day, "sent", LedgerCounts(sent=1), "briefing", "special-1"),
        ),
        last=None,
        heartbeat_age=None,
        open_alerts=0,
        last_by_newsletter=(
            ("briefing", EditionData(id=1, edition_date=day, status="sent")),
            ("weekend", EditionData(id=2, edition_date=day, status="partial", newsletter_id=2)),
        ),
    )

    found = samples(generate_latest(_Families(numbers)).decode())

    copies = {
        (dict(labels)["newsletter"], dict(labels)["kind"]): value
        for (name, labels), value in found.items()
        if name == "briefing_edition_copies" and dict(labels)["status"] == "sent"
    }
    assert copies == {("briefing", "regular"): 3, ("weekend", "regular"): 2, ("briefing", "special-1"): 1}
    states = {
        dict(labels)["newsletter"]: dict(labels)["state"]
        for (name, labels), value in found.items()
        if name == "briefing_last_edition_state" and value == 1
    }
    assert states == {"briefing": "sent", "weekend": "partial"}


class _Families:
    """A registry of the families made from fixed numbers, as a scrape would make them."""

    def __init__(self, numbers: Numbers) -> None:
        self.numbers = numbers

    def collect(self) -> Iterator[Any]:
        return iter(families(self.numbers))
