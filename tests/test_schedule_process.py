"""`briefing schedule` as a real process against a test database and a loopback SMTP server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import session_scope
from briefing.service import editions as edition_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from tests.fixtures.clock import T0
from tests.fixtures.newsroom import Newsroom, make_setup
from tests.fixtures.smtp import FaultPlan, SmtpTestServer
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
        edition = edition_store.find_edition(s, day)
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
        edition_service.hold(s, send_at.date(), True, now=T0)
    scheduler = start(smtp_server.url(), send_at)

    assert scheduler.wait_for(lambda: "is on hold" in scheduler.output(), timeout=20), scheduler.output()
    pause(1.5)
    assert smtp_server.messages == []
    with session_scope(sqlite_engine) as s:
        edition_service.hold(s, send_at.date(), False, now=T0)
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
        edition = edition_store.get_edition(s, day)
        counts = ledger.counts(s, edition.id)
    assert counts.claimed == 0  # the message in flight finished and was recorded
    assert 0 < counts.sent < 30 and counts.sent == len(server.messages)
    assert edition.status == "partial"

    second = start(server.url(), send_at)
    assert second.wait_for(lambda: _status(sqlite_engine, day) == "sent", timeout=60), second.output()
    second.terminate()
    per_reader = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert len(per_reader) == 30 and set(per_reader.values()) == {1}
