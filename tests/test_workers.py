"""`briefing worker`: workers join an edition being sent, from any process or host, and finish it.

Real processes on PostgreSQL against a counting SMTP server that holds replies until the test
opens its gate, so "mid-send" is a state the test waits for, never a moment it guesses. The
recovery of another host's claims runs in-process, on the test's clock.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.mail.pool import open_transport
from briefing.mail.transport import MemoryTransport, SendResult
from briefing.service import worker as worker_service
from briefing.service.claim_owners import STALE_AFTER
from briefing.service.send import start_sending
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import senders as sender_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom, make_setup
from tests.fixtures.processes import BriefingProcess
from tests.fixtures.smtp import SmtpTestServer
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.fixtures.gated_smtp"]

NOW = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)  # thirty seconds after the edition's send time
READERS = 200
POOL = 2  # connections per process
HELD = "held@example.com"  # the server sits on this copy's reply until the test opens the gate
ELSEWHERE = "elsewhere.example.com:4242:abcd1234"  # a sending run on another machine


class Command(BriefingProcess):
    """One `briefing` process at the tests' moment (BRIEFING_NOW); its output read as one line."""

    def output(self) -> str:
        return " ".join(super().output().split())


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Any]:
    from tests.fixtures.gated_smtp import sender_env

    started: list[Command] = []

    def factory(database_url: str, smtp_url: str, *args: str) -> Command:
        env = {
            **sender_env(database_url, smtp_url, POOL),
            "BRIEFING_NOW": NOW.isoformat(),
            "BRIEFING_TIMEZONE": "Europe/London",
            "BRIEFING_SMTP_TIMEOUT": "120",  # the gate may hold a reply while the other processes start
        }
        command = Command(list(args), env, tmp_path / f"command-{len(started)}.log")
        started.append(command)
        return command

    yield factory
    for command in started:
        command.kill()


def newsroom(url: str) -> Newsroom:
    engine = make_engine(url)
    upgrade(engine)
    room = Newsroom(engine, make_setup())
    room.queue_story()
    return room


def ledger_state(engine: sa.Engine) -> tuple[str, dict[str, ledger.LedgerRow]]:
    with Session(engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        return edition.status, {r.email: r for r in ledger.rows(s, edition.id, limit=100_000)}


@pytest.mark.postgres
@pytest.mark.parametrize("count", [2, 4])
def test_workers_and_one_send_share_the_edition_and_every_reader_gets_exactly_one_copy(
    postgres_url: str, gated_smtp: Any, commands: Any, count: int
) -> None:
    room = newsroom(postgres_url)
    emails = room.readers(READERS)
    server = gated_smtp()  # every copy waits at the gate: each process is seen sending before any finishes
    send = commands(postgres_url, server.url, "send", "--date", EDITION.isoformat())
    assert wait_until(lambda: server.handler.arrived >= POOL, timeout=60), send.output()

    workers = [commands(postgres_url, server.url, "worker", "--once") for _ in range(count)]
    everyone = POOL * (count + 1)  # both connections of the send and of every worker hold a copy
    assert wait_until(lambda: server.handler.arrived >= everyone, timeout=120), [w.output() for w in workers]
    server.handler.gate.set()

    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.output()
        assert "sent by this worker" in worker.output() and "sent in all" in worker.output()
    assert send.wait(timeout=120) in (0, 3), send.output()  # 3: it ran out of work while workers sent
    copies = server.handler.copies()
    assert copies == Counter(emails)  # every reader exactly once, whoever sent it
    status, rows = ledger_state(room.engine)
    assert status == "sent" and {r.status for r in rows.values()} == {"sent"}
    with Session(room.engine) as s:
        runs = sender_store.for_edition(s, edition_store.get_edition(s, EDITION, newsletter_id=1).id)
    assert sorted(r.role for r in runs) == sorted(["send", *["worker"] * count])
    assert all(r.finished_at is not None and r.tally.sent > 0 for r in runs)
    assert sum(r.tally.sent for r in runs) == READERS  # the tallies add up to the edition
    room.engine.dispose()


@pytest.mark.postgres
def test_a_worker_killed_mid_send_is_taken_over_with_at_most_one_duplicate_per_connection(
    postgres_url: str, gated_smtp: Any, commands: Any
) -> None:
    room = newsroom(postgres_url)
    room.subscribe(HELD)  # the lowest row: the first worker's first connection claims it first
    emails = [HELD, *room.readers(READERS)]
    start_sending(room.engine, room.setup, EDITION, now=NOW)
    server = gated_smtp(held=HELD)

    doomed = commands(postgres_url, server.url, "worker", "--once")
    assert wait_until(server.handler.held_arrived.is_set, timeout=60), doomed.output()
    _, rows = ledger_state(room.engine)
    assert rows[HELD].status == "claimed"
    doomed.kill()  # SIGKILL with HELD in flight and both connections' batches claimed
    server.handler.gate.set()

    others = [commands(postgres_url, server.url, "worker", "--once") for _ in range(2)]
    for worker in others:
        assert worker.wait(timeout=120) == 0, worker.output()

    copies = server.handler.copies()
    assert set(copies) == set(emails)  # nobody lost
    assert max(copies.values()) <= 2
    assert sum(n - 1 for n in copies.values()) <= POOL  # at most the killed worker's copies in flight
    status, rows = ledger_state(room.engine)
    assert status == "sent" and {r.status for r in rows.values()} == {"sent"}
    flagged = {e for e, r in rows.items() if r.was_ambiguous}
    assert HELD in flagged and len(flagged) <= POOL  # the copies in flight, resent per the policy
    room.engine.dispose()


@pytest.mark.parametrize("claims", ["silent run", "expired lease", "live run"])
@pytest.mark.parametrize("policy", ["resend", "report"])
def test_claims_of_a_worker_on_another_host_are_recovered_once_it_is_gone(
    engine: sa.Engine, smtp_server: SmtpTestServer, claims: str, policy: str
) -> None:
    room = Newsroom(engine, make_setup(resend_ambiguous=policy == "resend"))
    room.queue_story()
    emails = room.readers(6)
    edition, _ = start_sending(engine, room.setup, EDITION, now=NOW)
    lease = NOW - timedelta(seconds=1) if claims == "expired lease" else NOW + timedelta(minutes=10)
    writer = ledger.LedgerWriter(engine)
    try:
        with writer.transaction():  # what the other host's first connection had leased
            taken, _ = writer.claim_batch(edition.id, ELSEWHERE + ":w0", lease, NOW - timedelta(minutes=1), 3)
    finally:
        writer.close()
    if claims != "expired lease":
        heard = NOW - timedelta(seconds=STALE_AFTER + 30) if claims == "silent run" else NOW
        with session_scope(engine) as s:
            sender_store.start(
                s,
                owner=ELSEWHERE,
                edition_id=edition.id,
                host="elsewhere.example.com",
                pid=4242,
                role="worker",
                connections=2,
                now=heard,
            )
    passes: list[worker_service.PassReport] = []
    worker = worker_service.Worker(
        worker_service.WorkerContext(
            engine=engine,
            setup=lambda _newsletter=1: room.setup,
            transport=lambda: open_transport(smtp_server.url(), pool_size=2, timeout=5),
            clock=ManualClock(NOW),
            stop=threading.Event(),
            log=logging.getLogger("test.workers"),
            on_pass=passes.append,
        )
    )

    assert worker.round() == 1
    copies = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    status, rows = ledger_state(engine)
    in_flight, never_started = taken[0].email, [c.email for c in taken[1:]]
    if claims == "live run":  # heard from a moment ago: its claims stay its own
        assert status == "sending" and passes[0].outcome.waiting_for == "others"
        assert {rows[c.email].status for c in taken} == {"claimed"}
        assert set(copies) == set(emails) - {c.email for c in taken}
        return
    report = passes[0].outcome.report
    assert report is not None and report.run.ambiguous_emails == [in_flight]  # counted ambiguous
    assert rows[in_flight].was_ambiguous and not any(rows[e].was_ambiguous for e in never_started)
    if policy == "resend":
        assert status == "sent" and rows[in_flight].status == "sent"
        assert copies == Counter(emails)
    else:  # reported, not sent again
        assert status == "sent" and rows[in_flight].status == "ambiguous"
        assert copies == Counter(e for e in emails if e != in_flight)
    assert all(rows[e].status == "sent" for e in never_started)


class StallingRelay:
    """Keeps copies in memory; the first one takes long enough for the other host to fall silent.

    It moves the test's clock past STALE_AFTER, then holds that copy until the other host's claims
    are no longer claimed, which only the live run's heartbeat can do while the copy is on the wire.
    """

    def __init__(self, engine: sa.Engine, clock: ManualClock, theirs: list[int]) -> None:
        self.inner = MemoryTransport()
        self.engine, self.clock, self.theirs = engine, clock, theirs
        self.stalled = False
        self.taken_over_meanwhile = False

    def _theirs_released(self) -> bool:
        with Session(self.engine) as s:
            edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
            rows = ledger.rows(s, edition.id, statuses=["claimed"], limit=1000)
        return not any(r.subscriber_id in self.theirs for r in rows)

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult:
        if not self.stalled:
            self.stalled = True
            self.clock.advance(STALE_AFTER + 30)
            self.taken_over_meanwhile = wait_until(self._theirs_released, timeout=20)
        return self.inner.send(envelope_from, rcpt, data)

    def close(self) -> None:
        self.inner.close()


def test_a_live_worker_takes_over_a_silent_host_s_claims_while_it_sends(engine: sa.Engine) -> None:
    room = Newsroom(engine, make_setup(workers=1))
    room.queue_story()
    emails = room.readers(8)
    edition, _ = start_sending(engine, room.setup, EDITION, now=NOW)
    writer = ledger.LedgerWriter(engine)
    try:
        with writer.transaction():  # the other host's connection leases the first rows, live for now
            taken, _ = writer.claim_batch(edition.id, ELSEWHERE + ":w0", NOW + timedelta(minutes=10), NOW, 3)
    finally:
        writer.close()
    with session_scope(engine) as s:
        sender_store.start(
            s,
            owner=ELSEWHERE,
            edition_id=edition.id,
            host="elsewhere.example.com",
            pid=4242,
            role="worker",
            connections=1,
            now=NOW,
        )
    clock = ManualClock(NOW)
    relay = StallingRelay(engine, clock, [c.subscriber_id for c in taken])

    outcome = worker_service.run_pass(engine, room.setup, EDITION, relay, clock=clock, heartbeat_every=0.05)

    assert relay.taken_over_meanwhile  # by the heartbeat, while this run's first copy was on the wire
    assert outcome is not None and outcome.edition.status == "sent"
    assert outcome.report is not None and outcome.report.run.ambiguous_emails == [taken[0].email]
    assert Counter(m.rcpt for m in relay.inner.messages) == Counter(emails)


def test_on_sqlite_a_second_worker_or_send_exits_73_while_a_worker_sends(
    sqlite_url: str, sqlite_engine: sa.Engine, gated_smtp: Any, commands: Any
) -> None:
    room = Newsroom(sqlite_engine, make_setup())
    room.queue_story()
    emails = room.readers(10)
    start_sending(sqlite_engine, room.setup, EDITION, now=NOW)
    server = gated_smtp()
    first = commands(sqlite_url, server.url, "worker", "--once")
    assert wait_until(lambda: server.handler.arrived >= 1, timeout=60), first.output()

    for args in (["worker", "--once"], ["send", "--date", EDITION.isoformat()]):
        other = commands(sqlite_url, server.url, *args)
        assert other.wait(timeout=60) == 73, other.output()
        out = other.output()
        assert "another sender is sending from this SQLite database" in out
        assert f"pid {first.process.pid}" in out and "SQLite takes one sender" in out
        assert "Traceback" not in out

    server.handler.gate.set()
    assert first.wait(timeout=60) == 0, first.output()
    copies = server.handler.copies()
    assert copies == Counter(emails)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_a_worker_after_its_copies_in_flight_are_recorded_and_another_goes_on(
    db_url: str, gated_smtp: Any, commands: Any, signum: int, code: int
) -> None:
    room = newsroom(db_url)
    emails = room.readers(30)  # more than one claim batch: both connections have a copy in flight
    start_sending(room.engine, room.setup, EDITION, now=NOW)
    server = gated_smtp()
    worker = commands(db_url, server.url, "worker", "--once")
    assert wait_until(lambda: server.handler.arrived >= POOL, timeout=60), worker.output()

    worker.process.send_signal(signum)
    assert worker.says(f"Stopping on {signal.Signals(signum).name}"), worker.output()
    server.handler.gate.set()  # the copies in flight are answered only after the stop was seen
    assert worker.wait(timeout=10) == code, worker.output()

    status, rows = ledger_state(room.engine)
    found = Counter(r.status for r in rows.values())
    assert found["claimed"] == 0 and found["ambiguous"] == 0  # nothing left claimed, nothing unknown
    assert found["sent"] == len(server.handler.messages) == POOL  # the copies in flight, recorded
    assert found["pending"] == 30 - POOL
    assert status == "sending"  # left for the next worker (or the scheduler's watch), not `partial`

    successor = commands(db_url, server.url, "worker", "--once")
    assert successor.wait(timeout=60) == 0, successor.output()
    assert server.handler.copies() == Counter(emails)  # every reader exactly once across both
    assert ledger_state(room.engine)[0] == "sent"
    room.engine.dispose()
