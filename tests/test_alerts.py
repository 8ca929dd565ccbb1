"""Alerts and status for monitors: one alert per problem per edition, a follow-up when resolved,
no traceback from any alert path (SQLite under a concurrent writer), and the calendar's changes
(unskip, release, a hold past the window) seen by the watch at the next minute."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing import wiring
from briefing.config import load_settings
from briefing.db import make_engine, session_scope
from briefing.errors import Conflict
from briefing.mail.transport import MemoryTransport
from briefing.service import editions as edition_service
from briefing.service import health as health_service
from briefing.service import schedule as schedule_service
from briefing.service import stories as story_service
from briefing.service.setup import EditionSetup
from briefing.store import editions as edition_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom, make_setup

SEND_AT = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # EDITION's send time (London is on UTC then)
DESK = "desk@example.org"
FRESH = timedelta(minutes=2)


def real_setup(engine: sa.Engine) -> Callable[[], EditionSetup]:
    """The scheduler's own factory: settings plus the skip dates read from the database each time."""
    settings = load_settings(
        _env_file=None,
        secret_key="alerts-test-secret",
        timezone="Europe/London",
        send_days="mon-sun",
        send_time="06:00",
        public_base_url="https://news.example.com",
        sender_address="briefing@news.example.com",
    )
    base = wiring.edition_setup(settings)
    return lambda: wiring.edition_setup_now(settings, engine, base=base)


def daily(
    engine: sa.Engine,
    mail: MemoryTransport,
    clock: ManualClock,
    setup: Callable[[], EditionSetup] | None = None,
) -> schedule_service.DailySender:
    """A scheduler's jobs; building a second one is what a restart does to the process's state."""
    fallback = make_setup()
    return schedule_service.DailySender(
        schedule_service.DailyContext(
            engine=engine,
            setup=setup or (lambda: fallback),
            transport=lambda: mail,
            alert_email=DESK,
            stop=threading.Event(),
            log=logging.getLogger("test.alerts"),
            clock=clock,
        )
    )


def alerts(mail: MemoryTransport) -> list[str]:
    return [
        str(message_from_bytes(m.data, policy=default_policy)["Subject"])
        for m in mail.messages
        if m.rcpt == DESK
    ]


def body(mail: MemoryTransport, index: int) -> str:
    desk = [m for m in mail.messages if m.rcpt == DESK]
    return message_from_bytes(desk[index].data, policy=default_policy).get_content()


def readers_mail(mail: MemoryTransport) -> int:
    return len([m for m in mail.messages if m.rcpt != DESK])


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


def beat(engine: sa.Engine, now: datetime) -> None:
    with session_scope(engine) as s:
        schedule_service.record_heartbeat(s, owner="host:1", started_at=now, next_run_at=None, now=now)


@contextmanager
def write_lock_held(database: str, ready_for: float = 5.0) -> Iterator[threading.Event]:
    """Another process's writer: BEGIN IMMEDIATE on the file until the returned event is set."""
    release = threading.Event()
    holding = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(database, isolation_level=None, timeout=10)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE scheduler_heartbeat SET owner = owner")
            holding.set()
            release.wait(30)
            conn.execute("COMMIT")
        finally:
            conn.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert holding.wait(ready_for), "the concurrent writer never got the lock"
    try:
        yield release
    finally:
        release.set()
        thread.join(10)


# --------------------------------------------------------------------------- one alert per problem


def test_a_blocked_edition_is_alerted_once_across_retries_and_a_restart_then_resolved_once(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    room.readers(2)
    tk = room.queue_story(headline="Council leader quits over TK")
    mail = MemoryTransport()
    clock = ManualClock(SEND_AT)
    first = daily(room.engine, mail, clock)

    assert first.send_job(EDITION, SEND_AT) == "preflight failed"
    for _ in range(4):  # the watch retries every minute
        clock.advance(timedelta(minutes=1))
        assert first.watch_job() == "preflight failed"
    restarted = daily(room.engine, mail, clock)
    clock.advance(timedelta(minutes=1))
    assert restarted.watch_job() == "preflight failed"

    assert alerts(mail) == [f"[briefing] The edition of {EDITION} was not sent: preflight errors"]
    assert "TK" in body(mail, 0)

    with session_scope(room.engine) as s:
        story_service.drop(s, tk, now=clock.now())
    clock.advance(timedelta(minutes=1))
    assert restarted.watch_job() == "sent"
    clock.advance(timedelta(minutes=1))
    assert restarted.watch_job() == "edition is sent"

    assert alerts(mail) == [
        f"[briefing] The edition of {EDITION} was not sent: preflight errors",
        f"[briefing] The edition of {EDITION} is sent",
    ]
    assert "was not sent: preflight errors" in body(mail, 1)  # it names the alert it resolves
    assert readers_mail(mail) == 2


def test_preflight_errors_before_send_time_are_alerted_once_and_their_fix_is_reported(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    tk = room.queue_story(headline="Council leader quits over TK")
    mail = MemoryTransport()
    clock = ManualClock(SEND_AT - timedelta(minutes=30))
    job = daily(room.engine, mail, clock)

    assert job.preflight_job(EDITION) == "errors"
    clock.advance(timedelta(minutes=1))
    assert job.watch_job() == "nothing due"  # it re-checks the blocked edition, quietly
    assert daily(room.engine, mail, clock).preflight_job(EDITION) == "errors"
    assert alerts(mail) == [f"[briefing] Preflight errors in the edition of {EDITION}"]

    with session_scope(room.engine) as s:
        story_service.drop(s, tk, now=clock.now())
    clock.advance(timedelta(minutes=1))
    job.watch_job()
    clock.advance(timedelta(minutes=1))
    job.watch_job()

    assert alerts(mail) == [
        f"[briefing] Preflight errors in the edition of {EDITION}",
        f"[briefing] Preflight passes for the edition of {EDITION}",
    ]


# --------------------------------------------------------------------------- SQLite, locked


def test_the_expiry_alert_goes_out_on_sqlite_under_a_concurrent_writer(
    sqlite_newsroom: Newsroom, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The real setup factory reads the skip dates: it must never wait on its own caller's write lock."""
    room = sqlite_newsroom
    room.readers(2)
    mail = MemoryTransport()
    job = daily(room.engine, mail, ManualClock(SEND_AT.replace(hour=10)), setup=real_setup(room.engine))
    beat(room.engine, SEND_AT)  # a row for the writer to lock
    caplog.set_level(logging.INFO, logger="test.alerts")

    with write_lock_held(sa.engine.make_url(sqlite_url).database or "") as release:
        threading.Timer(0.5, release.set).start()  # the other writer commits while we wait on it
        assert job.send_job(EDITION, SEND_AT) == "expired"

    assert alerts(mail) == [f"[briefing] The edition of {EDITION} expired"]
    assert tracebacks(caplog) == []
    assert readers_mail(mail) == 0


def test_a_write_lock_held_past_the_busy_timeout_is_one_log_line_and_retried(
    sqlite_newsroom: Newsroom, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    room = sqlite_newsroom
    room.readers(1)
    impatient = make_engine(sqlite_url)  # the same file, with a busy timeout this test can wait out

    @sa.event.listens_for(impatient, "connect")
    def _short_busy(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=200")

    mail = MemoryTransport()
    clock = ManualClock(SEND_AT.replace(hour=10))
    job = daily(impatient, mail, clock, setup=real_setup(impatient))
    beat(room.engine, SEND_AT)
    caplog.set_level(logging.INFO, logger="test.alerts")
    try:
        with write_lock_held(sa.engine.make_url(sqlite_url).database or ""):
            assert job.send_job(EDITION, SEND_AT) == "database unavailable"
            assert job.watch_job() == "database unavailable"
            assert job.preflight_job(EDITION) == "database unavailable"
        assert tracebacks(caplog) == []
        assert any("database is locked" in r.getMessage() for r in caplog.records)
        assert alerts(mail) == []

        clock.advance(timedelta(minutes=1))
        assert job.watch_job() == "expired"  # the next minute, once the writer is gone
        clock.advance(timedelta(minutes=1))
        assert job.watch_job() == "edition is expired"
    finally:
        impatient.dispose()
    assert alerts(mail) == [f"[briefing] The edition of {EDITION} expired"]
    assert tracebacks(caplog) == []


# --------------------------------------------------------------------------- the calendar changes


def test_a_date_unskipped_while_the_scheduler_runs_goes_out_at_the_next_watch(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    room.readers(3)
    mail = MemoryTransport()
    clock = ManualClock(SEND_AT)
    job = daily(room.engine, mail, clock, setup=real_setup(room.engine))
    with session_scope(room.engine) as s:
        schedule_service.skip_date(s, EDITION, "Strike day", now=clock.now())

    assert job.send_job(EDITION, SEND_AT) == "skipped"
    with session_scope(room.engine) as s:
        schedule_service.unskip_date(s, EDITION)
    clock.advance(timedelta(minutes=1))

    assert job.watch_job() == "sent"
    assert readers_mail(mail) == 3


def test_a_date_skipped_while_the_scheduler_runs_is_not_sent(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(2)
    mail = MemoryTransport()
    clock = ManualClock(SEND_AT - timedelta(minutes=2))
    job = daily(room.engine, mail, clock, setup=real_setup(room.engine))
    with session_scope(room.engine) as s:
        schedule_service.skip_date(s, EDITION, "Strike day", now=clock.now())
    clock.set(SEND_AT)

    assert job.send_job(EDITION, SEND_AT) == "skipped"
    clock.advance(timedelta(minutes=1))
    assert job.watch_job() == "nothing due"
    assert mail.messages == []


def test_a_held_edition_expires_at_the_watch_after_its_window_with_one_alert(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    room.readers(2)
    mail = MemoryTransport()
    clock = ManualClock(SEND_AT.replace(minute=5))
    with session_scope(room.engine) as s:
        edition_service.hold(s, EDITION, True, newsletter_id=1, now=clock.now())
    job = daily(room.engine, mail, clock)
    assert job.watch_job() == "held"

    clock.set(SEND_AT.replace(hour=9, minute=1))  # the window closed at 09:00
    assert job.watch_job() == "expired"
    clock.advance(timedelta(minutes=1))
    assert daily(room.engine, mail, clock).watch_job() == "edition is expired"

    with Session(room.engine) as s:
        assert edition_store.get_edition(s, EDITION, newsletter_id=1).status == "expired"
    assert alerts(mail) == [f"[briefing] The edition of {EDITION} expired on hold"]
    with session_scope(room.engine) as s, pytest.raises(Conflict, match="expired"):
        # A release cannot revive it.
        edition_service.hold(s, EDITION, False, newsletter_id=1, now=clock.now())
    assert readers_mail(mail) == 0


# --------------------------------------------------------------------------- status


def test_status_is_unhealthy_while_the_edition_is_blocked_by_preflight(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    tk = room.queue_story(headline="Council leader quits over TK")
    clock = ManualClock(SEND_AT - timedelta(minutes=30))
    job = daily(room.engine, MemoryTransport(), clock)
    plan = make_setup().plan

    beat(room.engine, clock.now())
    assert job.preflight_job(EDITION) == "errors"
    before = health_service.status(room.engine, plan, clock.now(), stale_after=FRESH)
    assert not before.healthy
    assert any("blocked" in p and "Preflight errors" in p for p in before.problems), before.problems

    clock.set(SEND_AT.replace(minute=1))
    beat(room.engine, clock.now())
    assert job.send_job(EDITION, SEND_AT) == "preflight failed"
    during = health_service.status(room.engine, plan, clock.now(), stale_after=FRESH)
    assert any("was not sent: preflight errors" in p for p in during.problems), during.problems

    with session_scope(room.engine) as s:
        story_service.drop(s, tk, now=clock.now())
    clock.advance(timedelta(minutes=1))
    assert job.watch_job() == "sent"
    beat(room.engine, clock.now())
    after = health_service.status(room.engine, plan, clock.now(), stale_after=FRESH)
    assert after.healthy, after.problems


def test_status_is_unhealthy_for_an_edition_held_past_its_window(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    plan = make_setup().plan
    with session_scope(room.engine) as s:
        edition_service.hold(s, EDITION, True, newsletter_id=1, now=SEND_AT)
    during = SEND_AT.replace(hour=8)
    beat(room.engine, during)
    assert health_service.status(room.engine, plan, during, stale_after=FRESH).healthy  # an editor's choice

    late = SEND_AT.replace(hour=9, minute=30)  # no scheduler expired it (yet)
    beat(room.engine, late)
    result = health_service.status(room.engine, plan, late, stale_after=FRESH)

    assert not result.healthy
    assert any("held past its window" in p for p in result.problems), result.problems
