"""The recipient snapshot: one set-based statement that takes each active reader once, however often it runs.

A million-reader list is snapshotted inside the freeze transaction, so the statement's plan matters
as much as its result: on PostgreSQL it must stay an anti-join, never a subquery run once per reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.domain import SubscriberInput, SubscriberStatus
from briefing.models import Subscriber
from briefing.newsletter import PRIMARY_ID
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import subscribers as subscriber_store
from briefing.store.subscriptions import subscribe_all

NOW = datetime(2026, 11, 30, 5, 30, tzinfo=UTC)  # the freeze, half an hour before a 06:00 send
DAY = date(2026, 11, 30)


def add_readers(engine: sa.Engine, readers: dict[str, SubscriberStatus]) -> dict[str, int]:
    with session_scope(engine) as session:
        return {
            email: subscriber_store.add_subscriber(
                session, SubscriberInput(email=email), status=status, now=NOW - timedelta(days=30)
            ).id
            for email, status in readers.items()
        }


def take_snapshot(engine: sa.Engine, day: date = DAY) -> tuple[int, int]:
    """The edition's id and the size snapshot() reports."""
    with session_scope(engine) as session:
        edition = edition_store.ensure_edition(session, day, newsletter_id=1, now=NOW)
        return edition.id, ledger.snapshot(session, edition.id, now=NOW)


def ledger_of(engine: sa.Engine, edition_id: int) -> dict[str, str]:
    with Session(engine) as session:
        rows = ledger.rows(session, edition_id, limit=10_000)
    assert len({r.email for r in rows}) == len(rows), "a reader has two rows in one edition"
    return {r.email: r.status for r in rows}


def test_the_snapshot_takes_every_active_reader_once_and_nobody_else(engine: sa.Engine) -> None:
    add_readers(
        engine,
        {
            "ada@example.com": SubscriberStatus.ACTIVE,
            "bo@example.org": SubscriberStatus.ACTIVE,
            "cy@example.net": SubscriberStatus.PENDING,
            "di@example.com": SubscriberStatus.UNSUBSCRIBED,
            "ed@example.com": SubscriberStatus.BOUNCED,
            "fay@example.com": SubscriberStatus.COMPLAINED,
        },
    )

    edition_id, size = take_snapshot(engine)

    assert size == 2
    assert ledger_of(engine, edition_id) == {"ada@example.com": "pending", "bo@example.org": "pending"}


def test_a_second_snapshot_adds_nobody_and_still_reports_the_ledger_size(engine: sa.Engine) -> None:
    ids = add_readers(engine, {f"reader{i}@example.com": SubscriberStatus.ACTIVE for i in range(5)})
    edition_id, first = take_snapshot(engine)
    with session_scope(engine) as session:  # a reader leaves after the snapshot: their row stays
        subscriber_store.set_status(
            session, ids["reader0@example.com"], SubscriberStatus.UNSUBSCRIBED, now=NOW
        )

    again_id, second = take_snapshot(engine)

    assert again_id == edition_id
    assert first == second == 5
    assert len(ledger_of(engine, edition_id)) == 5


def test_a_second_snapshot_adds_only_the_readers_missing_from_the_ledger(engine: sa.Engine) -> None:
    add_readers(engine, {"ada@example.com": SubscriberStatus.ACTIVE})
    edition_id, _ = take_snapshot(engine)
    with session_scope(engine) as session:
        sent = ledger.rows(session, edition_id)[0]
        session.execute(sa.update(ledger.D).values(status="sent").where(ledger.D.c.email == sent.email))
    add_readers(engine, {"bo@example.org": SubscriberStatus.ACTIVE})

    _, size = take_snapshot(engine)

    assert size == 2
    assert ledger_of(engine, edition_id) == {"ada@example.com": "sent", "bo@example.org": "pending"}


def test_another_editions_ledger_does_not_keep_a_reader_out(engine: sa.Engine) -> None:
    add_readers(
        engine, {"ada@example.com": SubscriberStatus.ACTIVE, "bo@example.org": SubscriberStatus.ACTIVE}
    )
    monday, _ = take_snapshot(engine, DAY)

    tuesday, size = take_snapshot(engine, DAY + timedelta(days=1))

    assert monday != tuesday and size == 2
    assert set(ledger_of(engine, tuesday)) == {"ada@example.com", "bo@example.org"}


@contextmanager
def statements_into_delivery(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    """Record the INSERT INTO delivery statements the engine runs, as sent to the driver."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DELIVERY"):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@pytest.mark.postgres
def test_on_postgresql_a_repeated_snapshot_plans_an_anti_join_not_a_per_reader_subquery(
    postgres_url: str,
) -> None:
    # `id NOT IN (subquery)` turns into a per-row rescan of the ledger once the subquery's rows no
    # longer fit in work_mem: a small work_mem makes 5,000 rows behave here as a million do at 4 MB.
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(Subscriber),
                [
                    {
                        "email": f"reader{i}@example.com",
                        "email_key": f"reader{i}@example.com",
                        "status": "active",
                        "attributes": {},
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                    for i in range(5_000)
                ],
            )
            subscribe_all(conn, PRIMARY_ID, now=NOW)
        take_snapshot(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE delivery")
            conn.exec_driver_sql("ANALYZE subscriber")

        with statements_into_delivery(engine) as seen:
            _, size = take_snapshot(engine)
        assert size == 5_000 and len(seen) == 1
        statement, parameters = seen[0]
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL work_mem = '64kB'")
            plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    finally:
        engine.dispose()

    assert "Anti Join" in plan, plan
    assert "SubPlan" not in plan, plan
