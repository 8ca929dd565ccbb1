"""Deferred copies do not hold the run: it ends at once, and a later pass sends them when they are due.

`briefing send` exits 4 with the next try's time; the edition stays `sending`; the scheduler's
watch (or a worker) sends the deferred copies once the clock passes their next attempt, leaves the
edition alone while a sender is live, and gives them up when the window closes.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.mail.pool import open_transport
from briefing.service import schedule as schedule_service
from briefing.service import worker as worker_service
from briefing.service.send import start_sending
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import ledger_recovery
from briefing.store import senders as sender_store
from tests.fixtures.cli import cli_env, run
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, SECRET, Newsroom, make_setup
from tests.fixtures.smtp import SmtpTestServer

SENT_AT = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)  # thirty seconds after the 06:00 send time
GREYLISTED = "temp1@example.com"  # the test server answers 451 to temp* until told otherwise
BACKOFF = timedelta(minutes=1)  # BRIEFING_RETRY_BACKOFF's default: the first retry's delay
WINDOW_END = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # 06:00 London + three hours' lateness


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Newsroom]:
    """The newsroom on the database file the CLI of `cli_env(tmp_path)` uses."""
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    upgrade(engine)
    newsroom = Newsroom(engine, make_setup())
    newsroom.queue_story()
    yield newsroom
    engine.dispose()


def send_command(tmp_path: Path, server: SmtpTestServer) -> tuple[int, str]:
    env = cli_env(
        tmp_path,
        now=SENT_AT.isoformat(),
        secret_key=SECRET,
        smtp_url=server.url(),
        public_base_url="https://news.example.com",
    )
    code, out = run(env, "send", "--date", EDITION.isoformat())
    return code, " ".join(out.split())


def daily(room: Newsroom, server: SmtpTestServer, now: datetime) -> schedule_service.DailySender:
    return schedule_service.DailySender(
        schedule_service.DailyContext(
            engine=room.engine,
            setup=lambda _newsletter=1: room.setup,
            transport=lambda: open_transport(server.url(), pool_size=2, timeout=5),
            alert_email="",
            stop=threading.Event(),
            log=logging.getLogger("test.deferred"),
            clock=ManualClock(now),
        )
    )


def statuses(engine: sa.Engine) -> tuple[str, Counter[str]]:
    with Session(engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        rows = ledger.rows(s, edition.id, limit=1000)
    return edition.status, Counter(r.status for r in rows)


def next_try(engine: sa.Engine) -> datetime:
    """When the deferred copy is due: the CLI's clock runs on from SENT_AT at the real pace."""
    with Session(engine) as s:
        found = ledger_recovery.next_attempt(s, edition_store.get_edition(s, EDITION, newsletter_id=1).id)
    assert found is not None
    return found


def copies(server: SmtpTestServer) -> Counter[str]:
    return Counter(r for m in server.messages for r in m.rcpt_tos)


def test_a_deferred_copy_ends_the_send_with_exit_4_and_the_watch_sends_it_once_due(
    room: Newsroom, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    emails = room.readers(3)
    room.subscribe(GREYLISTED)

    code, out = send_command(tmp_path, smtp_server)

    assert code == 4, out
    due = next_try(room.engine)
    assert SENT_AT + BACKOFF <= due < SENT_AT + BACKOFF + timedelta(minutes=1)
    assert f"1 copy was deferred by its server; the next try is at {due:%H:%M} UTC" in out
    assert "the scheduler or a worker sends it, or run the send again then" in out
    assert "Run the send again" not in out
    assert statuses(room.engine) == ("sending", Counter({"sent": 3, "deferred": 1}))

    smtp_server.plan.temp_prefix = "no-longer-greylisted"
    early = daily(room, smtp_server, due - timedelta(seconds=5)).watch_job()
    assert early == "waiting for deferred copies"
    assert copies(smtp_server)[GREYLISTED] == 0

    assert daily(room, smtp_server, due + timedelta(seconds=1)).watch_job() == "sent"
    assert statuses(room.engine) == ("sent", Counter({"sent": 4}))
    assert copies(smtp_server) == Counter([*emails, GREYLISTED])  # each reader once


def test_the_watch_leaves_a_sending_edition_alone_while_a_sender_is_live(
    room: Newsroom, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    room.readers(2)
    room.subscribe(GREYLISTED)
    assert send_command(tmp_path, smtp_server)[0] == 4
    smtp_server.plan.temp_prefix = "no-longer-greylisted"
    due = next_try(room.engine) + timedelta(seconds=1)
    with session_scope(room.engine) as s:  # a worker on another machine, heard from a moment ago
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        sender_store.start(
            s,
            owner="elsewhere.example.com:4242:abcd1234",
            edition_id=edition.id,
            host="elsewhere.example.com",
            pid=4242,
            role="worker",
            connections=2,
            now=due - timedelta(seconds=3),
        )

    assert daily(room, smtp_server, due).watch_job() == "a sender is at work"
    assert copies(smtp_server)[GREYLISTED] == 0
    # Once its heartbeat is older than STALE_AFTER, it counts as gone and the watch sends.
    assert daily(room, smtp_server, due + timedelta(seconds=40)).watch_job() == "sent"
    assert copies(smtp_server)[GREYLISTED] == 1


def test_past_its_window_the_watch_gives_deferred_copies_up_and_the_edition_finishes(
    room: Newsroom, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    room.readers(2)
    room.subscribe(GREYLISTED)
    assert send_command(tmp_path, smtp_server)[0] == 4
    smtp_server.plan.temp_prefix = "no-longer-greylisted"  # too late: nothing is tried after the window

    assert daily(room, smtp_server, WINDOW_END + timedelta(seconds=1)).watch_job() == "sent"

    assert statuses(room.engine) == ("sent", Counter({"sent": 2, "failed": 1}))
    assert copies(smtp_server)[GREYLISTED] == 0
    with Session(room.engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        [row] = [r for r in ledger.rows(s, edition.id) if r.email == GREYLISTED]
    assert "gave up (temporary failure until the window closed)" in row.smtp_reply
    assert room.status_of(GREYLISTED) == "active"  # one soft bounce is not a bounce


def test_a_worker_sends_the_deferred_copies_when_due_and_not_before(
    room: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room.readers(2)
    room.subscribe(GREYLISTED)
    clock = ManualClock(SENT_AT)
    start_sending(room.engine, room.setup, EDITION, now=clock.now())
    passes: list[worker_service.PassReport] = []
    worker = worker_service.Worker(
        worker_service.WorkerContext(
            engine=room.engine,
            setup=lambda _newsletter=1: room.setup,
            transport=lambda: open_transport(smtp_server.url(), pool_size=2, timeout=5),
            clock=clock,
            stop=threading.Event(),
            log=logging.getLogger("test.worker"),
            on_pass=passes.append,
        )
    )

    assert worker.round() == 1  # the first pass: two sent, the greylisted one deferred
    assert passes[-1].outcome.waiting_for == "deferred" and passes[-1].sent == 2
    assert worker.round() == 0  # nothing is due yet: the worker idles
    smtp_server.plan.temp_prefix = "no-longer-greylisted"
    due = passes[-1].outcome.next_try
    assert due is not None
    clock.set(due)

    assert worker.round() == 1
    assert passes[-1].outcome.edition.status == "sent"
    assert (passes[-1].mine, passes[-1].sent, passes[-1].total) == (1, 3, 3)
    assert copies(smtp_server)[GREYLISTED] == 1


def test_past_its_window_a_pass_sends_nothing_late_and_the_edition_is_left_partial(
    room: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room.readers(4)
    edition, _ = start_sending(room.engine, room.setup, EDITION, now=SENT_AT)
    writer = ledger.LedgerWriter(room.engine)
    try:
        with writer.transaction():  # a sender that crashed with two rows leased, long ago
            taken, _ = writer.claim_batch(edition.id, "gone.example.com:7:0badcafe:w0", SENT_AT, SENT_AT, 2)
    finally:
        writer.close()

    result = daily(room, smtp_server, WINDOW_END + timedelta(minutes=1)).watch_job()

    assert result == "partial"
    assert smtp_server.messages == []  # nothing goes out late unless someone forces it
    status, found = statuses(room.engine)
    assert status == "partial" and found == Counter({"ambiguous": 1, "pending": 3})
    with Session(room.engine) as s:
        rows = {r.email: r for r in ledger.rows(s, edition.id)}
    assert rows[taken[0].email].status == "ambiguous"  # it was in flight; too late to send it again
