"""`briefing schedule` as a real process against a test database and a loopback SMTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.service import editions as edition_service
from briefing.service import schedule as schedule_service
from briefing.service import stories as story_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from tests.fixtures.clock import T0
from tests.fixtures.newsroom import Newsroom, make_setup
from tests.fixtures.smtp import FaultPlan, Received, SmtpTestServer
from tests.fixtures.waiting import pause, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# A zone without DST: these tests pick a send time a few seconds from the real (or faked) clock, and
# on a DST change day that local time can be ambiguous or missing. The calendar's DST rules are
# tested on their own in tests/test_calendar.py.
ZONE = ZoneInfo("Asia/Tokyo")


class Scheduler:
    def __init__(self, env: dict[str, str], log: Path, *extra: str) -> None:
        self.log = log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "briefing.cli", "schedule", "--watch-every", "1s", *extra],
            cwd=ROOT,
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30) -> bool:
        wait_until(lambda: predicate() or self.process.poll() is not None, timeout=timeout, every=0.1)
        return predicate()

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM, then the exit code; a process still running after `timeout` s fails the test."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        self.handle.close()
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.handle.close()


@pytest.fixture
def start(sqlite_url: str, tmp_path: Path) -> Iterator[Callable[..., Scheduler]]:
    started: list[Scheduler] = []

    def factory(smtp_url: str, send_at: datetime, *extra: str, **env_extra: str) -> Scheduler:
        local = send_at.astimezone(ZONE)
        env = {
            **os.environ,
            "BRIEFING_DATABASE_URL": sqlite_url,
            "BRIEFING_SECRET_KEY": "schedule-test-secret",
            "BRIEFING_SMTP_URL": smtp_url,
            "BRIEFING_TIMEZONE": ZONE.key,
            "BRIEFING_SEND_DAYS": "mon-sun",
            "BRIEFING_SEND_TIME": local.strftime("%H:%M:%S"),
            "BRIEFING_MAX_LATENESS": "3h",
            "BRIEFING_PUBLIC_BASE_URL": "https://news.example.com",
            **env_extra,
        }
        scheduler = Scheduler(env, tmp_path / f"scheduler-{len(started)}.log", *extra)
        started.append(scheduler)
        return scheduler

    yield factory
    for s in started:
        s.kill()


def _room(engine: sa.Engine, readers: int = 5) -> Newsroom:
    room = Newsroom(engine, make_setup())
    room.queue_story()
    room.readers(readers)
    return room


def _status(engine: sa.Engine, day) -> str | None:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        edition = edition_store.find_edition(s, day, newsletter_id=1)
        return edition.status if edition else None


def test_the_scheduler_sends_at_the_send_time(sqlite_engine, smtp_server: SmtpTestServer, start) -> None:
    _room(sqlite_engine, 5)
    send_at = (datetime.now(UTC) + timedelta(seconds=4)).astimezone(ZONE)
    scheduler = start(smtp_server.url(), send_at)

    pause(max(0.0, (send_at.astimezone(UTC) - datetime.now(UTC)).total_seconds() - 1.0))
    assert smtp_server.messages == []  # nothing before the send time
    assert scheduler.wait_for(lambda: len(smtp_server.messages) == 5), scheduler.output()
    assert scheduler.wait_for(lambda: _status(sqlite_engine, send_at.date()) == "sent"), scheduler.output()
    assert scheduler.terminate() == 0
    assert "sending the edition of" in scheduler.output()


def test_started_half_an_hour_late_it_sends_once(sqlite_engine, smtp_server: SmtpTestServer, start) -> None:
    _room(sqlite_engine, 4)
    send_at = (datetime.now(UTC) - timedelta(minutes=30)).astimezone(ZONE)
    scheduler = start(smtp_server.url(), send_at)

    assert scheduler.wait_for(lambda: _status(sqlite_engine, send_at.date()) == "sent"), scheduler.output()
    pause(2.5)  # a few watch rounds: nothing more goes out
    scheduler.terminate()
    assert len(smtp_server.messages) == 4


def test_started_after_max_lateness_it_expires_and_sends_nothing(
    sqlite_engine, smtp_server: SmtpTestServer, start
) -> None:
    _room(sqlite_engine, 3)
    send_at = (datetime.now(UTC) - timedelta(hours=3, minutes=30)).astimezone(ZONE)
    scheduler = start(smtp_server.url(), send_at)

    assert scheduler.wait_for(lambda: _status(sqlite_engine, send_at.date()) == "expired"), scheduler.output()
    pause(1.5)
    scheduler.terminate()
    assert smtp_server.messages == []
    assert "EXPIRED" in scheduler.output()


def test_two_schedulers_one_refuses_and_the_edition_goes_out_once(
    sqlite_engine, smtp_server: SmtpTestServer, start
) -> None:
    _room(sqlite_engine, 6)
    send_at = (datetime.now(UTC) + timedelta(seconds=4)).astimezone(ZONE)
    a = start(smtp_server.url(), send_at)
    b = start(smtp_server.url(), send_at)

    assert a.wait_for(lambda: a.process.poll() is not None or b.process.poll() is not None, timeout=15)
    refused, running = (a, b) if a.process.poll() is not None else (b, a)
    assert refused.process.returncode == 73
    assert "another scheduler is running" in refused.output()
    assert running.wait_for(lambda: _status(sqlite_engine, send_at.date()) == "sent"), running.output()
    running.terminate()
    assert Counter(r for m in smtp_server.messages for r in m.rcpt_tos) == Counter(
        {f"reader{i:04d}@example.com": 1 for i in range(6)}
    )


def test_a_held_edition_waits_and_goes_out_when_released(
    sqlite_engine, smtp_server: SmtpTestServer, start
) -> None:
    _room(sqlite_engine, 3)
    send_at = (datetime.now(UTC) + timedelta(seconds=3)).astimezone(ZONE)
    with session_scope(sqlite_engine) as s:
        edition_service.hold(s, send_at.date(), True, newsletter_id=1, now=T0)
    scheduler = start(smtp_server.url(), send_at)

    assert scheduler.wait_for(lambda: "is on hold" in scheduler.output(), timeout=20), scheduler.output()
    pause(1.5)
    assert smtp_server.messages == []
    with session_scope(sqlite_engine) as s:
        edition_service.hold(s, send_at.date(), False, newsletter_id=1, now=T0)
    assert scheduler.wait_for(lambda: _status(sqlite_engine, send_at.date()) == "sent"), scheduler.output()
    scheduler.terminate()
    assert len(smtp_server.messages) == 3


def test_sigterm_during_a_send_exits_cleanly_and_a_restart_completes(
    sqlite_engine, smtp_server_factory, start
) -> None:
    _room(sqlite_engine, 30)
    server = smtp_server_factory(FaultPlan(data_delay=0.15))
    send_at = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(ZONE)
    first = start(server.url(), send_at)
    assert first.wait_for(lambda: len(server.messages) >= 5), first.output()

    assert first.terminate() == 0  # the copies in flight finish and are recorded, then it exits
    day = send_at.date()
    with Session(sqlite_engine) as s:
        edition = edition_store.get_edition(s, day, newsletter_id=1)
        counts = ledger.counts(s, edition.id)
    assert counts.claimed == 0  # the message in flight finished and was recorded
    assert 0 < counts.sent < 30 and counts.sent == len(server.messages)
    assert edition.status == "sending"  # stopped, left for the next start (or a worker) to go on with

    second = start(server.url(), send_at)
    assert second.wait_for(lambda: _status(sqlite_engine, day) == "sent", timeout=60), second.output()
    second.terminate()
    per_reader = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert len(per_reader) == 30 and set(per_reader.values()) == {1}


DESK = "desk@example.org"


def _to_desk(messages: list[Received]) -> list[str]:
    return [
        str(message_from_bytes(m.data, policy=default_policy)["Subject"])
        for m in messages
        if DESK in m.rcpt_tos
    ]


def test_a_blocked_edition_is_alerted_once_across_a_restart_and_resolved_once(
    sqlite_engine, smtp_server: SmtpTestServer, start
) -> None:
    room = _room(sqlite_engine, 3)
    tk = room.queue_story(headline="Council leader quits over TK")
    send_at = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(ZONE)
    first = start(smtp_server.url(), send_at, BRIEFING_ALERT_EMAIL=DESK)

    assert first.wait_for(lambda: first.output().count("preflight errors") >= 4), first.output()
    assert first.terminate() == 0
    second = start(smtp_server.url(), send_at, BRIEFING_ALERT_EMAIL=DESK)
    assert second.wait_for(lambda: second.output().count("preflight errors") >= 4), second.output()

    assert _to_desk(smtp_server.messages) == [
        f"[briefing] The edition of {send_at.date()} was not sent: preflight errors"
    ]

    with session_scope(sqlite_engine) as s:
        story_service.drop(s, tk, now=datetime.now(UTC))
    assert second.wait_for(lambda: _status(sqlite_engine, send_at.date()) == "sent"), second.output()
    assert second.wait_for(lambda: len(_to_desk(smtp_server.messages)) == 2), second.output()
    second.terminate()
    assert _to_desk(smtp_server.messages)[1] == f"[briefing] The edition of {send_at.date()} is sent"
    assert len([m for m in smtp_server.messages if DESK not in m.rcpt_tos]) == 3


def test_a_date_unskipped_while_the_scheduler_runs_goes_out(
    sqlite_engine, smtp_server: SmtpTestServer, start
) -> None:
    _room(sqlite_engine, 3)
    send_at = (datetime.now(UTC) + timedelta(seconds=3)).astimezone(ZONE)
    with session_scope(sqlite_engine) as s:
        schedule_service.skip_date(s, send_at.date(), "Strike day", now=T0)
    scheduler = start(smtp_server.url(), send_at)

    tomorrow = send_at.date() + timedelta(days=1)
    assert scheduler.wait_for(lambda: f"next send: edition {tomorrow}" in scheduler.output()), (
        scheduler.output()
    )
    pause(max(0.0, (send_at.astimezone(UTC) - datetime.now(UTC)).total_seconds() + 1.5))
    assert smtp_server.messages == []  # the send time passed on a skipped date
    with session_scope(sqlite_engine) as s:
        schedule_service.unskip_date(s, send_at.date())

    assert scheduler.wait_for(lambda: _status(sqlite_engine, send_at.date()) == "sent"), scheduler.output()
    scheduler.terminate()
    assert len(smtp_server.messages) == 3


def test_the_scheduler_logs_one_line_per_event(sqlite_engine, smtp_server: SmtpTestServer, start) -> None:
    _room(sqlite_engine, 1)
    scheduler = start(smtp_server.url(), datetime.now(UTC) + timedelta(hours=2))
    assert scheduler.wait_for(lambda: "next send:" in scheduler.output()), scheduler.output()
    pause(2.5)  # a few watch rounds and a heartbeat: none of them is an event worth a line
    assert scheduler.terminate() == 0

    out = scheduler.output()
    assert "Running job" not in out and "executed successfully" not in out, out
    assert out.count("scheduler stopped") == 1, out


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _terminate_lock_connection(postgres_url: str, pid: int) -> int:
    """What a failover or an administrator does to the lock's session: end it from the server."""
    url = sa.engine.make_url(postgres_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"briefing scheduler pid={pid} %",),
        ).fetchall()
    return len(rows)


@pytest.mark.postgres
def test_a_scheduler_that_loses_its_postgres_lock_stops_claiming_and_exits_75(
    postgres_url: str, postgres_engine: sa.Engine, smtp_server_factory, start
) -> None:
    _room(postgres_engine, 120)
    server = smtp_server_factory(FaultPlan(data_delay=0.1))
    send_at = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(ZONE)
    first = start(server.url(), send_at, BRIEFING_DATABASE_URL=postgres_url)
    assert first.wait_for(lambda: len(server.messages) >= 10), first.output()

    assert _terminate_lock_connection(postgres_url, first.process.pid) == 1
    at_loss = len(server.messages)

    assert first.wait_for(lambda: first.process.poll() is not None, timeout=20), first.output()
    assert first.terminate() == 75
    assert "lock was lost" in first.output()
    after_loss = len(server.messages) - at_loss
    assert after_loss <= 4, f"{after_loss} copies went out after the lock was lost"  # the ones in flight
    day = send_at.date()
    assert _status(postgres_engine, day) == "sending"  # left for the next scheduler, or a worker

    second = start(server.url(), send_at, BRIEFING_DATABASE_URL=postgres_url)  # what systemd does next
    assert second.wait_for(lambda: _status(postgres_engine, day) == "sent", timeout=60), second.output()
    second.terminate()
    per_reader = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert len(per_reader) == 120 and set(per_reader.values()) == {1}


def test_the_scheduler_reads_the_bounce_mailbox_on_its_interval(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer, start, tmp_path: Path
) -> None:
    import mailbox

    from tests.fixtures.newsroom import SECRET
    from tests.test_bounces import BOUNCES, returned, send_with_verp

    sqlite_newsroom.subscribe("gone@mx.example.net", "stays@example.com")
    sent = send_with_verp(sqlite_newsroom, smtp_server)
    folder = tmp_path / "bounces"
    box = mailbox.Maildir(str(folder), create=True)
    box.add(returned("postfix-local-unknown-user.eml", sent["gone@mx.example.net"]))

    # The next send is a day away: only the bounce job has anything to do.
    scheduler = start(
        smtp_server.url(),
        datetime.now(UTC) + timedelta(days=1),
        BRIEFING_SECRET_KEY=SECRET,
        BRIEFING_BOUNCE_ADDRESS=BOUNCES,
        BRIEFING_BOUNCE_MAILBOX=f"maildir://{folder}",
        BRIEFING_BOUNCE_POLL_EVERY="1m",
    )
    assert scheduler.wait_for(lambda: sqlite_newsroom.status_of("gone@mx.example.net") == "bounced")
    assert scheduler.wait_for(lambda: "bounce mailbox: 1 read, 1 recorded" in scheduler.output())
    assert sqlite_newsroom.status_of("stays@example.com") == "active"
    assert len(mailbox.Maildir(str(folder), create=False)) == 0
    assert scheduler.terminate() == 0
