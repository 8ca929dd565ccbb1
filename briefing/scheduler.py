"""The long-running `briefing schedule` loop: when to call the send job, nothing about what it does.

The database is the source of truth for whether an edition was sent, held or expired, so this
module keeps no state of its own:

* jobs live in APScheduler's in-memory job store; a shared persistent store makes two schedulers
  double-send (APScheduler FAQ), and the single-scheduler lock in `briefing.locks` is separate;
* the fire times come from `calendar.next_send_times` through `SendPlanTrigger`, the same function
  `briefing status` shows, so the two cannot disagree across DST changes;
* on start, the most recent send time within max_lateness plus a margin is handed to the send job
  once ("catch-up"); the send job decides from the database whether that edition is still to
  send, already sent or expired. This replaces APScheduler's misfire handling across restarts,
  which a memory job store cannot provide;
* a firing that APScheduler itself misses by more than max_lateness (the machine slept, the
  process was stopped with SIGSTOP) is logged as an error and not run.

Stopping: SIGTERM or SIGINT (or the caller) sets `stop_event`. No new job starts, and the scheduler
waits up to `shutdown_timeout` for the running one. The send job cannot be interrupted from
outside, so it must poll the same `stop_event` between messages: pass one event to both
`run_scheduler` and the function behind `send_job`. A job that ignores it keeps the process alive
until it ends, and `run_scheduler` logs that as an error once the timeout passes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from briefing.calendar import SendPlan, SendTime, next_send_times, previous_send_time

__all__ = [
    "DEFAULT_CATCH_UP_MARGIN",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_PREFLIGHT_LEAD",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "PREFLIGHT_JOB_ID",
    "SEND_JOB_ID",
    "Calendar",
    "PeriodicJob",
    "SendPlanTrigger",
    "next_send_of",
    "run_scheduler",
    "utc_now",
]

SEND_JOB_ID = "send"
PREFLIGHT_JOB_ID = "preflight"
HEARTBEAT_JOB_ID = "heartbeat"

DEFAULT_PREFLIGHT_LEAD = timedelta(minutes=30)
DEFAULT_HEARTBEAT_INTERVAL = timedelta(seconds=30)
# How far past max_lateness the start-up catch-up still looks: an edition missed by a little more
# than the window is still handed to the send job, which records it as expired and alerts (I8).
DEFAULT_CATCH_UP_MARGIN = timedelta(hours=12)
# systemd's default TimeoutStopSec is 90 s, our promise is 10 s: leave a second for the rest.
DEFAULT_SHUTDOWN_TIMEOUT = timedelta(seconds=9)
_WAIT_SLICE = 0.5  # seconds; the main loop wakes this often so signals are handled promptly

SendJob = Callable[[date, datetime], object]
PreflightJob = Callable[[date], object]
Heartbeat = Callable[[datetime], None]
Now = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock; an argument so that tests can pin it."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class PeriodicJob:
    """Housekeeping that runs on a fixed interval (retrying deferred rows, bounce polling)."""

    name: str
    func: Callable[[], object]
    every: timedelta
    run_at_start: bool = False


class SendPlanTrigger(BaseTrigger):
    """An APScheduler 3 trigger that fires at `next_send_times(plan)`, shifted by `offset`.

    Wrapping the project's own calendar instead of using CronTrigger keeps one DST rule for the
    scheduler, `briefing status` and the tests (CronTrigger had DST bugs up to 3.11.2).
    """

    __slots__ = ("offset", "plan")

    def __init__(self, plan: SendPlan, offset: timedelta = timedelta(0)) -> None:
        self.plan = plan
        self.offset = offset

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            after = previous_fire_time - self.offset  # strictly after the previous firing
        else:
            after = now - self.offset - timedelta(microseconds=1)  # at or after now
        upcoming = next_send_times(after, self.plan, 1)
        return upcoming[0].utc + self.offset if upcoming else None

    def __str__(self) -> str:
        return f"send plan ({_describe_plan(self.plan)}){_describe_offset(self.offset)}"

    def __repr__(self) -> str:
        return f"<SendPlanTrigger plan={self.plan!r} offset={self.offset!r}>"


def _describe_offset(offset: timedelta) -> str:
    if not offset:
        return ""
    sign = "-" if offset < timedelta(0) else "+"
    return f" {sign} {abs(offset)}"


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _describe_plan(plan: SendPlan) -> str:
    days = ",".join(_DAY_NAMES[d] for d in plan.send_days)
    return (
        f"{days} at {plan.send_time.strftime('%H:%M')} {plan.zone.key}, "
        f"max lateness {plan.max_lateness}, {len(plan.skip_dates)} skip date(s)"
    )


def _describe_send(st: SendTime, name: str = "") -> str:
    local = st.local.strftime("%Y-%m-%d %H:%M %Z")
    return f"edition {st.edition_date.isoformat()}{_suffix(name)} at {local} ({st.utc.strftime('%H:%M')} UTC)"


def _suffix(name: str) -> str:
    return f" of {name}" if name else ""


def _named(c: Calendar) -> str:
    return f"{c.name}: " if c.name else ""


def _job_id(base: str, name: str) -> str:
    return f"{base}:{name}" if name else base


def _log_next(c: Calendar, now: datetime, log: logging.Logger) -> None:
    upcoming = next_send_times(now, c.plan, 1)
    if upcoming:
        log.info("next send: %s", _describe_send(upcoming[0], c.name))


def _whole_seconds(value: timedelta) -> int:
    # APScheduler wants a positive int number of seconds for misfire_grace_time.
    return max(1, int(value.total_seconds()))


@dataclass(frozen=True)
class Calendar:
    """One newsletter's send and preflight jobs on its own plan; `name` (its slug) names the jobs."""

    name: str
    plan: SendPlan
    send_job: SendJob
    preflight_job: PreflightJob | None = None


def run_scheduler(
    plan: SendPlan | None = None,
    send_job: SendJob | None = None,
    *,
    calendars: Sequence[Calendar] = (),
    preflight_job: PreflightJob | None = None,
    preflight_lead: timedelta = DEFAULT_PREFLIGHT_LEAD,
    heartbeat: Heartbeat | None = None,
    heartbeat_interval: timedelta = DEFAULT_HEARTBEAT_INTERVAL,
    extra_jobs: list[PeriodicJob] | None = None,
    stop_event: threading.Event | None = None,
    log: logging.Logger | None = None,
    now: Now = utc_now,
    catch_up: bool = True,
    catch_up_margin: timedelta = DEFAULT_CATCH_UP_MARGIN,
    shutdown_timeout: timedelta = DEFAULT_SHUTDOWN_TIMEOUT,
    install_signal_handlers: bool | None = None,
) -> None:
    """Run until `stop_event` is set; the caller must already hold the scheduler lock.

    `send_job(edition_date, scheduled_utc)` is called once per send time of `plan` (and once for
    a catch-up on start); `preflight_job(edition_date)` at send time minus `preflight_lead`;
    `heartbeat(now)` every `heartbeat_interval` and once at start, so that `briefing status` can
    tell a live scheduler from a dead one. Exceptions from any of them are logged and do not stop
    the loop. Several newsletters pass `calendars` instead (or as well): each has its own send and
    preflight jobs, named by the calendar, each with its own catch-up; the jobs themselves keep to
    one send at a time.

    `now` must follow the system clock that APScheduler fires by; it is used for the catch-up, to
    name the edition a firing belongs to, and for heartbeats.

    Signal handlers for SIGTERM and SIGINT are installed (and restored afterwards) when this runs
    in the main thread, unless `install_signal_handlers` says otherwise.
    """
    log = log or logging.getLogger("briefing.scheduler")
    stop = stop_event if stop_event is not None else threading.Event()
    extras = list(extra_jobs or [])
    runs = list(calendars)
    if plan is not None:
        if send_job is None:
            raise ValueError("a plan needs its send_job")
        runs.insert(0, Calendar("", plan, send_job, preflight_job))
    if not runs and not extras:
        raise ValueError("nothing to schedule: give a plan, calendars or extra jobs")
    if len({c.name for c in runs}) != len(runs):
        raise ValueError("calendar names must be unique")
    if preflight_lead < timedelta(0):
        raise ValueError("preflight_lead cannot be negative")
    if heartbeat_interval <= timedelta(0):
        raise ValueError("heartbeat_interval must be positive")
    if catch_up_margin < timedelta(0):
        raise ValueError("catch_up_margin cannot be negative")

    def run_send(c: Calendar) -> None:
        if stop.is_set():
            return
        current = now()
        edition = previous_send_time(current, c.plan, c.plan.max_lateness + catch_up_margin)
        if edition is None:
            log.warning("%ssend fired at %s but no edition is due; skipped", _named(c), current)
            return
        what = _describe_send(edition, c.name)
        log.info("running %s", what)
        started = _time.monotonic()
        try:
            c.send_job(edition.edition_date, edition.utc)
        except Exception:
            log.exception("%s: send job failed", what)
        else:
            log.info("%s: send job finished in %.1f s", what, _time.monotonic() - started)
        _log_next(c, now(), log)

    def run_preflight(c: Calendar) -> None:
        if stop.is_set() or c.preflight_job is None:
            return
        current = now()
        edition = previous_send_time(current + preflight_lead, c.plan, preflight_lead + timedelta(minutes=5))
        if edition is None:
            log.warning("%spreflight fired at %s but no edition is near; skipped", _named(c), current)
            return
        what = f"edition {edition.edition_date.isoformat()}{_suffix(c.name)}"
        log.info("running preflight for %s", what)
        try:
            c.preflight_job(edition.edition_date)
        except Exception:
            log.exception("%s: preflight failed", what)
        else:
            log.info("%s: preflight finished", what)

    def run_heartbeat() -> None:
        if heartbeat is None or stop.is_set():
            return
        try:
            heartbeat(now())
        except Exception:
            log.exception("heartbeat failed")

    def run_extra(job: PeriodicJob) -> None:
        if stop.is_set():
            return
        try:
            job.func()
        except Exception:
            log.exception("%s failed", job.name)

    by_send_id = {_job_id(SEND_JOB_ID, c.name): c for c in runs}

    def on_event(event: JobEvent) -> None:
        c = by_send_id.get(event.job_id)
        if c is None:
            if event.code == EVENT_JOB_MAX_INSTANCES:
                log.warning("%s still running from last time; this run skipped", event.job_id)
            return
        if event.code == EVENT_JOB_MISSED:
            run_time: datetime = getattr(event, "scheduled_run_time", None) or now()
            missed = previous_send_time(run_time, c.plan, timedelta(0))
            what = f"edition {missed.edition_date.isoformat()}" if missed else f"send at {run_time}"
            log.error(
                "%s%s missed by more than max lateness %s (scheduler stalled or clock jumped); not sent",
                what,
                _suffix(c.name),
                c.plan.max_lateness,
            )
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.error(
                "%sa send fired while the previous edition was still sending; this firing skipped", _named(c)
            )

    scheduler = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=1 + 2 * len(runs) + len(extras))},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=UTC,
    )
    scheduler.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    started_at = now()
    caught_up: set[str] = set()
    for c in runs:
        log.info("scheduler starting: %s%s", _named(c), _describe_plan(c.plan))
        first_run: dict[str, Any] = {}
        if catch_up:
            lookback = c.plan.max_lateness + catch_up_margin
            missed = previous_send_time(started_at, c.plan, lookback)
            if missed is None:
                log.info("catch-up: %sno send time in the last %s", _named(c), lookback)
            else:
                late = timedelta(seconds=int((started_at - missed.utc).total_seconds()))
                what = _describe_send(missed, c.name)
                log.info("catch-up: %s was %s ago; handing it to the send job now", what, late)
                first_run = {"next_run_time": datetime.now(UTC)}
                caught_up.add(c.name)
        scheduler.add_job(
            run_send,
            SendPlanTrigger(c.plan),
            args=(c,),
            id=_job_id(SEND_JOB_ID, c.name),
            name=f"send edition{_suffix(c.name)}",
            misfire_grace_time=_whole_seconds(c.plan.max_lateness),
            **first_run,
        )
        if c.preflight_job is not None:
            scheduler.add_job(
                run_preflight,
                SendPlanTrigger(c.plan, -preflight_lead),
                args=(c,),
                id=_job_id(PREFLIGHT_JOB_ID, c.name),
                name=f"preflight{_suffix(c.name)}",
                misfire_grace_time=_whole_seconds(preflight_lead),
            )
    if heartbeat is not None:
        scheduler.add_job(
            run_heartbeat,
            IntervalTrigger(seconds=heartbeat_interval.total_seconds(), timezone=UTC),
            id=HEARTBEAT_JOB_ID,
            name="heartbeat",
            next_run_time=datetime.now(UTC),
            misfire_grace_time=_whole_seconds(heartbeat_interval),
        )
    for extra in extras:
        extra_kwargs: dict[str, Any] = {"next_run_time": datetime.now(UTC)} if extra.run_at_start else {}
        scheduler.add_job(
            run_extra,
            IntervalTrigger(seconds=extra.every.total_seconds(), timezone=UTC),
            args=(extra,),
            id=f"extra:{extra.name}",
            name=extra.name,
            misfire_grace_time=_whole_seconds(extra.every),
            **extra_kwargs,
        )

    restore = _install_signal_handlers(stop) if _want_signals(install_signal_handlers) else {}
    try:
        scheduler.start()
        for c in runs:
            if c.name not in caught_up:
                _log_next(c, started_at, log)
        while not stop.wait(_WAIT_SLICE):
            pass
        log.info("stop requested; letting the running job finish (up to %s)", shutdown_timeout)
    finally:
        try:
            _shutdown(scheduler, shutdown_timeout, log)
        finally:
            for signum, handler in restore.items():
                signal.signal(signum, handler)


def next_send_of(plans: Iterable[SendPlan], now: datetime) -> datetime | None:
    """The soonest send of several calendars (UTC), for the heartbeat; None when none has one."""
    upcoming = [t[0].utc for t in (next_send_times(now, p, 1) for p in plans) if t]
    return min(upcoming, default=None)


def _shutdown(scheduler: BackgroundScheduler, timeout: timedelta, log: logging.Logger) -> None:
    """shutdown(wait=True) in a helper thread, so a job that ignores the stop event cannot hang us."""
    if not scheduler.running:
        return
    stopper = threading.Thread(
        target=scheduler.shutdown, kwargs={"wait": True}, name="briefing-scheduler-stop", daemon=True
    )
    stopper.start()
    stopper.join(timeout.total_seconds())
    if stopper.is_alive():
        log.error(
            "a job is still running %s after the stop request; it did not check the stop event. "
            "The delivery ledger stays consistent; the process exits when the job ends.",
            timeout,
        )
    else:
        log.info("scheduler stopped")


def _want_signals(flag: bool | None) -> bool:
    in_main = threading.current_thread() is threading.main_thread()
    if flag is None:
        return in_main
    if flag and not in_main:
        raise ValueError("signal handlers can only be installed from the main thread")
    return flag


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    def handle(signum: int, _frame: FrameType | None) -> None:
        # Only set the event here: logging from a signal handler can interleave with the
        # interrupted log call. The main loop reports the stop.
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handle)
    return previous
