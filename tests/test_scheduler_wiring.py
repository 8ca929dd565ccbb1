"""The APScheduler wiring with a real clock: one call per send time, catch-up on start, prompt stop.

The plans use Asia/Tokyo (no DST) so that a run near a DST change on the test machine cannot
flake, while local and UTC still differ; DST itself is covered by tests/test_calendar.py.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from briefing.calendar import SendPlan, next_send_times
from briefing.scheduler import PeriodicJob, SendPlanTrigger, run_scheduler
from tests.fixtures.waiting import pause, wait_until

TOKYO = ZoneInfo("Asia/Tokyo")
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)

pytestmark = pytest.mark.timeout(60)


def plan_at(instant: datetime, max_lateness: timedelta = timedelta(hours=3)) -> SendPlan:
    local = instant.astimezone(TOKYO).replace(microsecond=0)
    return SendPlan(send_days=EVERY_DAY, send_time=local.time(), zone=TOKYO, max_lateness=max_lateness)


def expected(instant: datetime) -> tuple[date, datetime]:
    local = instant.astimezone(TOKYO).replace(microsecond=0)
    return local.date(), local.astimezone(UTC)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.called = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, *args: Any) -> None:
        with self.lock:
            self.calls.append(args)
        self.called.set()


@contextmanager
def running(
    plan: SendPlan, send_job: Callable[[date, datetime], object], **kw: Any
) -> Iterator[threading.Event]:
    """run_scheduler in a thread; always stopped and joined, so a failing test cannot hang."""
    stop = kw.pop("stop_event", None) or threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_scheduler(plan, send_job, stop_event=stop, log=logging.getLogger("test.scheduler"), **kw)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="test-scheduler", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "run_scheduler did not return after stop"
        assert not errors, errors


def test_send_job_called_once_at_send_time_with_the_right_date() -> None:
    # About 2-3 s ahead (the plan has whole seconds), so the preflight 1 s earlier is still ahead.
    fire_at = datetime.now(UTC) + timedelta(seconds=3)
    plan = plan_at(fire_at)
    send = Recorder()
    preflight = Recorder()
    with running(plan, send, preflight_job=preflight, preflight_lead=timedelta(seconds=1)):
        assert send.called.wait(10), "send job was not called"
        pause(1.5)  # long enough for a duplicate to show up
    assert send.calls == [expected(fire_at)]
    assert preflight.calls == [(expected(fire_at)[0],)]


def test_catch_up_on_start_calls_send_job_once() -> None:
    thirty_ago = datetime.now(UTC) - timedelta(minutes=30)
    plan = plan_at(thirty_ago, max_lateness=timedelta(hours=3))
    send = Recorder()
    with running(plan, send):
        assert send.called.wait(10), "catch-up did not call the send job"
        pause(1.0)
    assert send.calls == [expected(thirty_ago)]


def test_catch_up_hands_over_an_edition_just_past_the_window() -> None:
    # Four hours late with a 3 h window: the send job still gets it, to record it as expired.
    four_h_ago = datetime.now(UTC) - timedelta(hours=4)
    send = Recorder()
    with running(plan_at(four_h_ago), send):
        assert send.called.wait(10)
    assert send.calls == [expected(four_h_ago)]


def test_no_catch_up_when_nothing_was_missed_or_disabled() -> None:
    send = Recorder()
    far = datetime.now(UTC) + timedelta(hours=6)
    with running(plan_at(far), send):
        pause(1.0)
    assert send.calls == []
    thirty_ago = datetime.now(UTC) - timedelta(minutes=30)
    with running(plan_at(thirty_ago), send, catch_up=False):
        pause(1.0)
    assert send.calls == []


def test_stop_event_ends_the_loop_within_10_s_while_a_job_runs() -> None:
    stop = threading.Event()
    started = threading.Event()
    progress: dict[str, Any] = {"messages": 0, "clean_exit": False}

    def slow_send(edition_date: date, scheduled: datetime) -> None:
        started.set()
        for _ in range(1200):  # would take 60 s if nobody asked it to stop
            if stop.is_set():
                progress["clean_exit"] = True
                return
            pause(0.05)  # one "message"
            progress["messages"] += 1

    plan = plan_at(datetime.now(UTC) - timedelta(minutes=30))
    finished = threading.Event()

    def target() -> None:
        run_scheduler(plan, slow_send, stop_event=stop, log=logging.getLogger("test.scheduler"))
        finished.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        assert started.wait(10), "job never started"
        pause(0.3)
        stop.set()
        assert finished.wait(10), "run_scheduler did not return within 10 s of the stop request"
    finally:
        stop.set()
        thread.join(15)
    assert progress["clean_exit"] and progress["messages"] > 0


def test_a_job_ignoring_stop_does_not_block_run_scheduler_forever() -> None:
    stop = threading.Event()
    started = threading.Event()
    release = threading.Event()

    def stubborn(edition_date: date, scheduled: datetime) -> None:
        started.set()
        release.wait(30)

    plan = plan_at(datetime.now(UTC) - timedelta(minutes=30))
    done = threading.Event()

    def target() -> None:
        run_scheduler(
            plan,
            stubborn,
            stop_event=stop,
            shutdown_timeout=timedelta(seconds=1),
            log=logging.getLogger("test.scheduler"),
        )
        done.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        stop.set()
        assert done.wait(5), "run_scheduler waited for a job that ignores the stop event"
    finally:
        release.set()
        thread.join(15)


def test_failing_job_is_logged_and_the_loop_survives(caplog: pytest.LogCaptureFixture) -> None:
    calls = Recorder()

    def failing(edition_date: date, scheduled: datetime) -> None:
        calls(edition_date, scheduled)
        raise RuntimeError("smtp down")

    caplog.set_level(logging.INFO, logger="test.scheduler")
    with running(plan_at(datetime.now(UTC) - timedelta(minutes=30)), failing):
        assert calls.called.wait(10)
        pause(0.5)
    text = caplog.text
    assert "catch-up" in text
    assert "send job failed" in text
    assert "next send: edition" in text
    assert len(calls.calls) == 1


def test_heartbeat_and_extra_jobs_run() -> None:
    beats = Recorder()
    extra = Recorder()
    far = datetime.now(UTC) + timedelta(hours=6)
    with running(
        plan_at(far),
        Recorder(),
        heartbeat=beats,
        heartbeat_interval=timedelta(seconds=0.3),
        extra_jobs=[PeriodicJob("retry deferred", extra, every=timedelta(seconds=0.3), run_at_start=True)],
    ):
        wait_until(lambda: len(beats.calls) >= 3 and len(extra.calls) >= 2, timeout=10)
    assert len(beats.calls) >= 3
    assert all(isinstance(c[0], datetime) and c[0].tzinfo is not None for c in beats.calls)
    assert len(extra.calls) >= 2


def test_trigger_yields_exactly_next_send_times() -> None:
    plan = SendPlan(
        send_days=(0, 1, 2, 3, 4),
        send_time=datetime(2026, 1, 1, 1, 30).time(),
        zone=ZoneInfo("Europe/London"),
    )
    trigger = SendPlanTrigger(plan)
    start = datetime(2026, 3, 20, tzinfo=UTC)
    fired: list[datetime] = []
    previous = None
    for _ in range(30):
        nxt = trigger.get_next_fire_time(previous, start)
        assert nxt is not None
        fired.append(nxt)
        previous = nxt
    assert fired == [s.utc for s in next_send_times(start, plan, 30)]
    # A firing exactly at `now` counts (at or after now) when there is no previous firing.
    assert trigger.get_next_fire_time(None, fired[0]) == fired[0]
    shifted = SendPlanTrigger(plan, -timedelta(minutes=30))
    assert shifted.get_next_fire_time(None, start) == fired[0] - timedelta(minutes=30)
    assert "Europe/London" in str(trigger)


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading, time
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo
    from briefing.calendar import SendPlan
    from briefing.scheduler import run_scheduler

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    started = threading.Event()
    stop = threading.Event()

    def send(edition_date, scheduled):
        print("SENDING", flush=True)
        while not stop.is_set():
            stop.wait(0.05)
        print("SEND-STOPPED", flush=True)

    local = (datetime.now(UTC) - timedelta(minutes=30)).astimezone(ZoneInfo("Asia/Tokyo"))
    plan = SendPlan(tuple(range(7)), local.time().replace(microsecond=0), ZoneInfo("Asia/Tokyo"))
    run_scheduler(plan, send, stop_event=stop)
    print("EXITED", flush=True)
    """
)


@pytest.mark.slow
def test_sigterm_in_the_main_thread_stops_within_10_s() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        assert wait_until(lambda: "SENDING\n" in lines, timeout=20), "the catch-up send never started"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0  # TimeoutExpired fails the test: the promise is 10 s
        reader.join(5)
        assert lines[-2:] == ["SEND-STOPPED\n", "EXITED\n"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
