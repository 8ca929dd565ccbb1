"""`briefing schedule`, `status`, `calendar`, `skip`, `unskip`: the daily send and the news calendar."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from briefing import calendar as cal
from briefing.cli.common import console, handle_errors, parse_date, state
from briefing.config import parse_duration
from briefing.db import session_scope
from briefing.errors import ConfigError, InvalidInput, LockHeld
from briefing.locks import acquire_scheduler_lock
from briefing.scheduler import PeriodicJob, run_scheduler
from briefing.service import feeds as feed_service
from briefing.service import schedule as schedule_service
from briefing.service.setup import EditionSetup
from briefing.store import schedule as schedule_store
from briefing.wiring import edition_setup, edition_setup_now, feed_policy, transport

LOCK_HELD_EXIT = 73  # EX_CANTCREAT: the systemd unit does not restart on it
HEARTBEAT_STALE_AFTER = timedelta(minutes=2)


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)
    app.command("status")(status)
    app.command("calendar")(calendar)
    app.command("skip")(skip)
    app.command("unskip")(unskip)


def _plan() -> cal.SendPlan:
    return edition_setup_now(state().settings, state().engine).plan


@handle_errors
def schedule(
    lock_dir: Annotated[
        Path, typer.Option(help="Where the lock file goes for an in-memory database.")
    ] = Path("var"),
    watch_every: Annotated[
        str, typer.Option(help="How often to look for a released or paused edition within its window.")
    ] = "1m",
) -> None:
    """Run the daily send: each send day at the configured local time, once, never late.

    Runs until stopped (SIGTERM or Ctrl-C finishes the message in flight first). Only one may run
    per database; a second one exits with code 73 and names the first.

    Example: BRIEFING_SEND_TIME=06:00 briefing schedule
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, force=True
    )
    log = logging.getLogger("briefing.scheduler")
    settings = state().settings
    engine = state().engine
    settings.secret_keys()  # fail now, not at 06:00
    if settings.now is not None:
        raise ConfigError(
            "the scheduler fires by the real clock; unset it to run the scheduler", field="BRIEFING_NOW"
        )
    try:
        watch_interval = parse_duration(watch_every)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="--watch-every") from None
    clock = state().clock
    try:
        lock = acquire_scheduler_lock(settings.database_url, lock_dir, clock=clock)
    except LockHeld as exc:
        console.print(f"[bold red]error:[/bold red] {exc}")
        raise typer.Exit(LOCK_HELD_EXIT) from None
    stop = threading.Event()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    started = clock.now()
    base = edition_setup(settings)  # the renderer and signer once; each job re-reads the skip dates
    plan = edition_setup_now(settings, engine, base=base).plan

    def setup_factory() -> EditionSetup:
        return edition_setup_now(settings, engine, base=base)

    policy = feed_policy(settings)

    def poll_feeds() -> object:
        return feed_service.poll_due_feeds(engine, clock=clock, log=log, policy=policy)

    sender = schedule_service.DailySender(
        schedule_service.DailyContext(
            engine=engine,
            setup=setup_factory,
            transport=lambda: transport(settings, clock),
            alert_email=settings.alert_email,
            stop=stop,
            log=log,
            clock=clock,
            poll_feeds=poll_feeds,
        )
    )

    def heartbeat(now: datetime) -> None:
        upcoming = cal.next_send_times(now, plan, 1)
        with session_scope(engine) as session:
            schedule_service.record_heartbeat(
                session,
                owner=owner,
                started_at=started,
                next_run_at=upcoming[0].utc if upcoming else None,
                now=now,
            )
        if not lock.verify():
            log.error("the scheduler lock was lost (database connection dropped); stopping")
            stop.set()

    with lock:
        log.info("scheduler started (pid %d); lock %s", os.getpid(), lock.where)
        run_scheduler(
            plan,
            sender.send_job,
            preflight_job=sender.preflight_job,
            preflight_lead=settings.preflight_lead,
            heartbeat=heartbeat,
            extra_jobs=[
                PeriodicJob("watch", sender.watch_job, watch_interval),
                PeriodicJob("feeds", poll_feeds, settings.feed_poll_every, run_at_start=True),
            ],
            stop_event=stop,
            log=log,
            now=clock.now,
        )
        log.info("scheduler stopped")


@handle_errors
def status() -> None:
    """Show the next send, the last edition and whether the scheduler is alive; exit 1 if not healthy.

    For monitoring: the exit code is 0 when healthy, 1 when the last scheduled edition failed,
    expired or is incomplete, or the scheduler's heartbeat is stale.

    Example: briefing status || echo "the morning email needs attention"
    """
    plan = _plan()
    now = state().now()
    result = schedule_service.status(state().engine, plan, now, stale_after=HEARTBEAT_STALE_AFTER)
    zone = plan.zone
    if result.next_send:
        n = result.next_send
        console.print(
            f"next send:  {n.edition_date} at {n.local:%H:%M %Z} ({n.utc:%H:%M} UTC), in {_ago(n.utc - now)}"
        )
    if result.last:
        c = result.last_counts
        counts = (
            f" sent {c.sent}, failed {c.failed}, waiting {c.pending + c.deferred + c.claimed}" if c else ""
        )
        console.print(f"last:       {result.last.edition_date} {result.last.status}{counts}")
    else:
        console.print("last:       no edition yet")
    if result.heartbeat_at:
        beat = result.heartbeat_at
        console.print(
            f"scheduler:  {result.heartbeat_owner}, last heartbeat "
            f"{beat.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} ({_ago(now - beat)} ago)"
        )
    for problem in result.problems:
        console.print(f"[bold red]problem:[/bold red] {problem}")
    if not result.healthy:
        raise typer.Exit(1)
    console.print("[green]healthy[/green]")


def _ago(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@handle_errors
def calendar(count: Annotated[int, typer.Option("--count", min=1, max=366)] = 10) -> None:
    """Show the next send dates with local and UTC times (skipped dates left out, and listed).

    Example: briefing calendar --count 20
    """
    plan = _plan()
    now = state().now()
    table = Table("edition", "day", "local time", "UTC", title=f"Next {count} sends ({plan.zone.key})")
    for t in cal.next_send_times(now, plan, count):
        table.add_row(t.edition_date.isoformat(), f"{t.local:%A}", f"{t.local:%H:%M %Z}", f"{t.utc:%H:%M}")
    console.print(table)
    with session_scope(state().engine) as session:
        skips = schedule_store.list_skips(session, since=now.astimezone(plan.zone).date())
    settings_skips = sorted(d for d in plan.skip_dates if d >= now.astimezone(plan.zone).date())
    if skips or settings_skips:
        listed = {d for d, _ in skips}
        lines = [f"{d} {reason}".strip() for d, reason in skips]
        lines += [f"{d} (BRIEFING_SKIP_DATES)" for d in settings_skips if d not in listed]
        console.print("Skipped: " + ", ".join(lines))


@handle_errors
def skip(
    day: Annotated[str, typer.Argument(help="Date with no edition, YYYY-MM-DD.")],
    reason: Annotated[str, typer.Option(help="Why, e.g. Christmas Day.")] = "",
) -> None:
    """Skip a date (holiday, recess): no edition is sent that day.

    Example: briefing skip 2026-12-25 --reason "Christmas Day"
    """
    when = parse_date(day, "DATE")
    assert when is not None
    with session_scope(state().engine) as session:
        added = schedule_service.skip_date(session, when, reason, now=state().now())
    console.print(f"No edition on {when}." if added else f"{when} was already skipped.")


@handle_errors
def unskip(day: Annotated[str, typer.Argument(help="Date, YYYY-MM-DD.")]) -> None:
    """Put a skipped date back in the calendar.

    Example: briefing unskip 2026-12-25
    """
    when = parse_date(day, "DATE")
    assert when is not None
    with session_scope(state().engine) as session:
        removed = schedule_service.unskip_date(session, when)
    console.print(f"{when} is a send date again." if removed else f"{when} was not skipped.")
