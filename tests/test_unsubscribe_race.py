"""No copy after an unsubscribe: a reader who leaves while their row is already leased is skipped.

Each connection leases a batch of rows ahead of the one it is sending. These tests hold the SMTP
reply to a batch's first copy, unsubscribe (through the one-click use case) readers whose rows are
leased behind it, then let the reply go: none of them may get the edition.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from briefing.db import session_scope
from briefing.mail.pool import open_transport
from briefing.service import editions as edition_service
from briefing.service import subscribers as subscriber_service
from briefing.service.send import SendOutcome
from briefing.store import deliveries as ledger
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom
from tests.fixtures.smtp import HOST, READY_TIMEOUT, FaultHandler, FaultPlan, SmtpTestServer, free_port

NOW = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)
HOLD_LIMIT = 20.0  # seconds: only a broken test ever waits this long


class HeldReplies(FaultHandler):
    """Holds the reply to the first copy on each of the first `connections` connections.

    The hold runs off the server's event loop, so other connections go on while one waits.
    """

    def __init__(self, connections: int) -> None:
        super().__init__(FaultPlan())
        self.connections = connections
        self.in_flight: set[int] = set()
        self.all_in_flight = threading.Event()
        self.let_go = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        number = self.session_no(server)
        if number not in self.in_flight and len(self.in_flight) < self.connections:
            self.in_flight.add(number)
            if len(self.in_flight) == self.connections:
                self.all_in_flight.set()
            await asyncio.to_thread(self.let_go.wait, HOLD_LIMIT)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def held_server() -> Iterator[Callable[[int], SmtpTestServer]]:
    started: list[SmtpTestServer] = []

    def start(connections: int) -> SmtpTestServer:
        handler = HeldReplies(connections)
        port = free_port()
        controller = Controller(handler, hostname=HOST, port=port, ready_timeout=READY_TIMEOUT, timeout=30)
        controller.start()
        server = SmtpTestServer(handler, controller, port)
        started.append(server)
        return server

    yield start
    for server in started:
        assert isinstance(server.handler, HeldReplies)
        server.handler.let_go.set()
        server.stop()


def send(room: Newsroom, url: str, workers: int, clock: ManualClock, *, batch: int = 5) -> SendOutcome:
    setup = room.with_policy(workers=workers, claim_batch=batch)
    mail = open_transport(url, pool_size=workers, timeout=5)
    try:
        return edition_service.send_edition(room.engine, setup, EDITION, mail, clock=clock)
    finally:
        mail.close()


def leave(room: Newsroom, subscriber_id: int) -> None:
    """The RFC 8058 one-click POST's use case, committed at once on its own connection."""
    with room.engine.begin() as conn:
        subscriber_service.unsubscribe_by_link(conn, subscriber_id, 1, now=NOW)


def leased(room: Newsroom) -> dict[str, list[tuple[int, str]]]:
    """Rows claimed right now, per connection, in id order: (subscriber id, address)."""
    query = "SELECT lease_owner, subscriber_id, email FROM delivery WHERE status = 'claimed' ORDER BY id"
    with room.engine.connect() as conn:
        rows = conn.execute(sa.text(query)).all()
    found: dict[str, list[tuple[int, str]]] = {}
    for owner, subscriber_id, email in rows:
        found.setdefault(str(owner), []).append((int(subscriber_id), str(email)))
    return found


def ledger_rows(room: Newsroom) -> dict[str, ledger.LedgerRow]:
    with room.engine.connect() as conn:
        (edition_id,) = conn.execute(sa.text("SELECT id FROM edition")).one()
    with session_scope(room.engine) as session:
        return {r.email: r for r in ledger.rows(session, int(edition_id))}


@pytest.mark.parametrize("workers", [1, 2])
def test_readers_who_leave_while_their_rows_are_leased_get_no_copy(
    newsroom: Newsroom, held_server: Callable[[int], SmtpTestServer], workers: int
) -> None:
    emails = newsroom.readers(10)
    server = held_server(workers)
    handler = server.handler
    assert isinstance(handler, HeldReplies)
    outcome: list[SendOutcome] = []
    sender = threading.Thread(
        target=lambda: outcome.append(send(newsroom, server.url(), workers, ManualClock(NOW))), daemon=True
    )
    sender.start()
    try:
        assert handler.all_in_flight.wait(HOLD_LIMIT), "the first copies never reached DATA"
        batches = leased(newsroom)
        assert len(batches) == workers and all(len(rows) == 5 for rows in batches.values())
        # The first row of each batch is the copy in flight; pick readers leased behind it.
        leaving = [rows[i] for rows in batches.values() for i in (1, 2, 4)]
        for subscriber_id, _ in leaving:
            leave(newsroom, subscriber_id)
    finally:
        handler.let_go.set()
    sender.join(HOLD_LIMIT)
    assert not sender.is_alive() and outcome

    left = {email for _, email in leaving}
    received = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert received == Counter(e for e in emails if e not in left)
    rows = ledger_rows(newsroom)
    for email in left:
        assert rows[email].status == "skipped"
        assert "no longer active" in rows[email].smtp_reply
    report = outcome[0].report
    assert report is not None and report.complete
    assert report.counts.skipped == len(left) and report.counts.sent == 10 - len(left)
    assert report.run.skipped == len(left)
    assert outcome[0].edition.status == "sent"


def test_a_reader_erased_while_their_row_is_leased_gets_no_copy(
    newsroom: Newsroom, held_server: Callable[[int], SmtpTestServer]
) -> None:
    emails = newsroom.readers(4)
    server = held_server(1)
    handler = server.handler
    assert isinstance(handler, HeldReplies)
    outcome: list[SendOutcome] = []
    sender = threading.Thread(
        target=lambda: outcome.append(send(newsroom, server.url(), 1, ManualClock(NOW))), daemon=True
    )
    sender.start()
    try:
        assert handler.all_in_flight.wait(HOLD_LIMIT), "the first copy never reached DATA"
        with session_scope(newsroom.engine) as session:
            subscriber_service.delete_subscriber_email(session, emails[2])
    finally:
        handler.let_go.set()
    sender.join(HOLD_LIMIT)
    assert not sender.is_alive() and outcome

    received = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert received == Counter([emails[0], emails[1], emails[3]])
    assert emails[2] not in ledger_rows(newsroom)
    report = outcome[0].report
    assert report is not None and report.complete


class LeavingDuringBackoff(ManualClock):
    """The reconnect backoff is when a reader whose row is leased unsubscribes (and the relay recovers)."""

    def __init__(self, start: datetime, on_first_wait: Callable[[], None]) -> None:
        super().__init__(start)
        self.on_first_wait: Callable[[], None] | None = on_first_wait

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if self.on_first_wait is not None:
            self.on_first_wait()
            self.on_first_wait = None
        return super().wait(seconds, stop)


def test_a_reader_who_leaves_while_the_relay_is_down_gets_no_copy(
    newsroom: Newsroom, smtp_server_factory: Callable[..., SmtpTestServer]
) -> None:
    emails = [f"reader{i}@example.com" for i in range(6)]
    ids = dict(zip(emails, newsroom.subscribe(*emails), strict=True))
    plan = FaultPlan()

    def relay_goes_down(_: object) -> None:  # after the first copy, every MAIL FROM gets 421
        plan.mail_reply = "421 4.3.2 Service shutting down"

    server = smtp_server_factory(plan, on_accept=relay_goes_down)
    leaving = emails[2]  # leased with the first batch, behind the copy the 421 stops

    def during_backoff() -> None:
        leave(newsroom, ids[leaving])
        server.handler.on_accept = None
        plan.mail_reply = None

    clock = LeavingDuringBackoff(NOW, during_backoff)

    outcome = send(newsroom, server.url(), 1, clock)

    assert clock.on_first_wait is None  # the backoff happened, with the batch still leased
    received = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert received == Counter(e for e in emails if e != leaving)
    assert ledger_rows(newsroom)[leaving].status == "skipped"
    assert outcome.report is not None and outcome.report.complete
