"""`briefing send` stopped by SIGTERM or Ctrl-C mid-send: what is in flight is recorded, the rest resumes."""

from __future__ import annotations

import signal
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

READERS = 30  # more than one claim batch: both connections have a copy in flight
POOL = 2  # connections per sender


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_lets_the_copies_in_flight_finish_then_a_second_send_completes(
    engine: sa.Engine, db_url: str, gated_smtp: Any, senders: Any, signum: int, code: int
) -> None:
    room = Newsroom(engine, make_setup())
    room.queue_story()
    emails = room.readers(READERS)
    server = gated_smtp()
    first = senders(db_url, server.url, pool=POOL)
    assert wait_until(lambda: server.handler.arrived >= POOL, timeout=30), first.output()

    first.signal(signum)
    assert first.says(f"Stopping on {signal.Signals(signum).name}"), first.output()
    server.handler.gate.set()  # the copies in flight are answered only after the stop was seen
    assert first.wait(timeout=10) == code, first.output()

    out = " ".join(first.output().split())  # as one line, however the report wraps
    assert "partly sent (stopped)" in out
    assert f"briefing send --date {EDITION}" in out
    with Session(engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        counts = ledger.counts(s, edition.id)
    assert edition.status == "partial"
    assert counts.claimed == 0  # nothing left claimed by the stopped sender
    assert counts.ambiguous == 0  # the copies in flight were answered and recorded as sent
    assert counts.sent == len(server.handler.messages) == POOL
    assert counts.pending == READERS - POOL

    second = senders(db_url, server.url, pool=POOL)
    assert second.wait(timeout=60) == 0, second.output()
    copies = server.handler.copies()
    assert set(copies) == set(emails)
    assert set(copies.values()) == {1}  # every reader exactly once across both runs
    with Session(engine) as s:
        assert edition_store.get_edition(s, EDITION, newsletter_id=1).status == "sent"


def test_a_second_signal_stops_at_once_and_the_next_send_settles_the_copies_in_flight(
    engine: sa.Engine, db_url: str, gated_smtp: Any, senders: Any
) -> None:
    room = Newsroom(engine, make_setup())
    room.queue_story()
    emails = room.readers(READERS)
    server = gated_smtp()
    first = senders(db_url, server.url, pool=POOL)
    assert wait_until(lambda: server.handler.arrived >= POOL, timeout=30), first.output()

    first.signal(signal.SIGTERM)
    assert first.says("Stopping on SIGTERM"), first.output()
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 143, first.output()
    assert "the next send settles them" in first.output()

    server.handler.gate.set()
    second = senders(db_url, server.url, pool=POOL)
    assert second.wait(timeout=60) == 0, second.output()
    copies = server.handler.copies()
    assert set(copies) == set(emails)
    assert all(n <= 2 for n in copies.values())
    assert sum(n - 1 for n in copies.values()) <= POOL  # at most the copies that were in flight
