"""Several `briefing send` processes on one edition: one freezes, the others join, and each one's
exit code and report tell the truth about the whole edition. SQLite takes one sender."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from tests.fixtures.newsroom import EDITION, Newsroom, make_setup
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.fixtures.gated_smtp"]

HELD = "held@example.com"  # the server sits on this copy's reply until the test lets it go


@pytest.mark.postgres
@pytest.mark.parametrize("count", [2, 4])
def test_concurrent_senders_on_postgres_share_the_edition_and_say_who_is_still_sending(
    postgres_url: str, gated_smtp: Any, senders: Any, count: int
) -> None:
    from briefing.db import make_engine, upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    room = Newsroom(engine, make_setup())
    room.queue_story()
    emails = [*room.readers(60), HELD]
    room.subscribe(HELD)
    server = gated_smtp(held=HELD)
    started = [senders(postgres_url, server.url) for _ in range(count)]

    assert wait_until(server.handler.held_arrived.is_set, timeout=60), [s.output() for s in started]
    # Every other copy goes out; the senders without the held one run out of work and exit.
    assert wait_until(lambda: sum(s.process.poll() is not None for s in started) == count - 1, timeout=60)
    finished = [s for s in started if s.process.poll() is not None]
    holder = next(s for s in started if s.process.poll() is None)
    for sender in finished:
        out = " ".join(sender.output().split())  # as one line, however the report wraps
        assert sender.wait(timeout=5) == 3, out
        assert "still being sent by another sender" in out or "other senders" in out
        assert "other live sender" in out  # the report names who still has copies in flight
        assert "content is already fixed" not in out
        assert "Run the send again" not in out
    with Session(engine) as s:
        assert edition_store.get_edition(s, EDITION, newsletter_id=1).status == "sending"

    server.handler.gate.set()
    assert holder.wait(timeout=30) == 0, holder.output()
    assert "is sent" in holder.output()
    copies = server.handler.copies()
    assert set(copies) == set(emails)
    assert set(copies.values()) == {1}  # every reader exactly once, whoever sent it
    with Session(engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        counts = ledger.counts(s, edition.id)
    assert edition.status == "sent"
    assert counts.sent == len(emails) and counts.claimed == 0
    engine.dispose()


def test_a_second_sender_on_sqlite_refuses_clearly_and_the_first_completes(
    sqlite_url: str, sqlite_engine: sa.Engine, gated_smtp: Any, senders: Any
) -> None:
    room = Newsroom(sqlite_engine, make_setup())
    room.queue_story()
    emails = room.readers(10)
    server = gated_smtp()
    first = senders(sqlite_url, server.url)
    assert wait_until(lambda: server.handler.arrived >= 1, timeout=30), first.output()

    second = senders(sqlite_url, server.url)
    assert second.wait(timeout=30) == 73, second.output()
    out = " ".join(second.output().split())
    assert "another sender is sending from this SQLite database" in out
    assert f"pid {first.process.pid}" in out
    assert "Traceback" not in out

    server.handler.gate.set()
    assert first.wait(timeout=30) == 0, first.output()
    copies = server.handler.copies()
    assert set(copies) == set(emails) and set(copies.values()) == {1}
