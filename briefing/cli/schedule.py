"""`briefing schedule`, `calendar`, `skip`, `unskip`: the daily send and the news calendar."""

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from briefing.cli.common import (
    add_row,
    console,
    current_plan,
    fail,
    handle_errors,
    new_table,
    parse_date,
    show,
    state,
)
from briefing.errors import BriefingError, ConfigError, InvalidInput, LockHeld

LOCK_HELD_EXIT = 73  # EX_CANTCREAT: the systemd unit does not restart on it
# EX_TEMPFAIL: the lock was lost while running (its PostgreSQL connection ended); another scheduler
# may hold it now. Non-zero, so systemd's Restart=on-failure starts it again: it then either takes
# the lock back or exits with 73 because the other one has it.
LOCK_LOST_EXIT = 75


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)
    app.command("calendar")(calendar)
    app.command("skip")(skip)
    app.command("unskip")(unskip)


@handle_errors
def schedule(
    lock_dir: Annotated[
        Path, typer.Option(help="Where the lock file goes for an in-memory database.")
    ] = Path("var"),
    watch_every: Annotated[
        str, typer.Option(help="How often to look for a released or paused edition within its window.")
    ] = "1m",
) -> None:
    """Run the daily send of every newsletter: each at its own local time, once, never late.

    One process for all newsletters, each on its own calendar, one edition sent at a time. A
    newsletter added, paused or resumed while it runs counts within a minute; a paused one is
    never sent. Specials go out at the time their editor set (`briefing special --at`).

    Runs until stopped (SIGTERM or Ctrl-C finishes the message in flight first). Only one may run
    per database; a second one exits with code 73 and names the first. One that loses its lock
    (its PostgreSQL connection ended) stops claiming at once and exits with code 75.

    Example: BRIEFING_SEND_TIME=06:00 briefing schedule
    """
    import logging
    import os
    import socket
    import threading

    from briefing.calendar import SendPlan
    from briefing.config import parse_duration
    from briefing.db import session_scope
    from briefing.locks import acquire_scheduler_lock, acquire_send_lock
    from briefing.scheduler import Calendar, PeriodicJob, next_send_of, run_scheduler
    from briefing.service import every_newsletter
    from briefing.service import feeds as feed_service
    from briefing.service import schedule as schedule_service
    from briefing.service.setup import EditionSetup
    from briefing.wiring import (
        edition_setup,
        edition_setup_now,
        feed_policy,
        newsletters_now,
        poll_bounce_mailbox,
        send_plan_now,
        transport,
    )

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, force=True
    )
    # APScheduler logs every run of every job at INFO (the heartbeat alone twice a minute); the
    # scheduler's own log says what happened, one line per event.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check at start-up
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
    except OverflowError:
        raise InvalidInput(f"{watch_every!r} is too long", field="--watch-every") from None
    clock = state().clock
    try:
        lock = acquire_scheduler_lock(settings.database_url, lock_dir, clock=clock)
    except LockHeld as exc:
        raise fail(str(exc), LOCK_HELD_EXIT) from None
    stop = threading.Event()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    started = clock.now()
    base = edition_setup(settings)  # the renderer and signer once; each job re-reads the skip dates
    bases: dict[int, EditionSetup] = {}

    def setup_of(newsletter_id: int) -> EditionSetup:
        """A newsletter's setup as of now; its renderer is built again only when its templates change."""
        current = edition_setup_now(
            settings, engine, base=bases.get(newsletter_id, base), newsletter=newsletter_id
        )
        bases[newsletter_id] = current
        return current

    running = [n for n in newsletters_now(engine) if not n.paused]
    for n in running:
        setup_of(n.id)  # a newsletter whose stored values cannot be used stops the start, by name

    policy = feed_policy(settings)

    def poll_feeds() -> object:
        return feed_service.poll_due_feeds(engine, clock=clock, log=log, policy=policy)

    def send_guard() -> Callable[[], None] | None:
        """One sender per SQLite file: the scheduler's sends and `briefing send` take turns."""
        held = acquire_send_lock(settings.database_url, clock=clock)
        return held.release if held is not None else None

    def poll_bounces() -> None:
        try:
            report = poll_bounce_mailbox(settings, engine, clock)
        except (BriefingError, OSError) as exc:  # the mailbox is away: one line, and the next round retries
            log.warning("bounce mailbox: %s", getattr(exc, "message", None) or exc)
            return
        if report.read:
            log.info(
                "bounce mailbox: %d read, %d recorded, %d changed nothing, %d kept for the next poll",
                report.read,
                report.recorded,
                report.ignored,
                report.failed,
            )

    senders = every_newsletter.EveryNewsletter(
        schedule_service.DailyContext(
            engine=engine,
            setup=lambda: setup_of(base.newsletter.id),  # each newsletter's sender has its own
            transport=lambda: transport(settings, clock),
            alert_email=settings.alert_email,
            stop=stop,
            log=log,
            clock=clock,
            poll_feeds=poll_feeds,
            send_guard=send_guard,
        ),
        newsletters=lambda: newsletters_now(engine),
        setup_of=setup_of,
    )
    calendars = [
        Calendar(n.slug, bases[n.id].plan, senders.send_job(n), senders.preflight_job(n)) for n in running
    ]
    if not running:
        log.warning("every newsletter is paused; the watch sends one as soon as it is resumed")

    lost = threading.Event()

    def lock_lost() -> None:
        if lost.is_set():
            return
        lost.set()
        stop.set()  # the send checks it before every claim: no new copy goes out
        log.error(
            "the scheduler lock was lost (its database connection ended); another scheduler may "
            "hold it now. Stopped claiming; exiting with code %d so the supervisor restarts this one",
            LOCK_LOST_EXIT,
        )

    def plans_now() -> list[SendPlan]:
        plans = []
        for n in newsletters_now(engine, include_paused=False):
            try:
                plans.append(send_plan_now(settings, engine, n))
            except BriefingError:  # the watch logs what is wrong with it
                continue
        return plans

    def heartbeat(now: datetime) -> None:
        next_run_at = next_send_of(plans_now(), now)  # the soonest send of every newsletter
        with session_scope(engine) as session:
            schedule_service.record_heartbeat(
                session, owner=owner, started_at=started, next_run_at=next_run_at, now=now
            )
        if not lock.verify():
            lock_lost()

    with lock:
        log.info("scheduler started (pid %d); lock %s", os.getpid(), lock.where)
        lock.watch(lock_lost, clock)
        run_scheduler(
            calendars=calendars,
            preflight_lead=settings.preflight_lead,
            heartbeat=heartbeat,
            extra_jobs=[
                PeriodicJob("watch", senders.watch_job, watch_interval),
                PeriodicJob("feeds", poll_feeds, settings.feed_poll_every, run_at_start=True),
                *(
                    [PeriodicJob("bounces", poll_bounces, settings.bounce_poll_every, run_at_start=True)]
                    if settings.bounce_mailbox.get_secret_value()
                    else []
                ),
            ],
            stop_event=stop,
            log=log,
            now=clock.now,
        )
    if lost.is_set():
        raise typer.Exit(LOCK_LOST_EXIT)


@handle_errors
def calendar(
    count: Annotated[int, typer.Option("--count", min=1, max=366)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the next send dates with local and UTC times (skipped dates left out, and listed).

    Example: briefing calendar --count 20
    Example: briefing calendar --json
    """
    from briefing import calendar as cal
    from briefing.db import session_scope
    from briefing.store import schedule as schedule_store

    plan = current_plan()
    now = state().now()
    sends = cal.next_send_times(now, plan, count)
    today = now.astimezone(plan.zone).date()
    with session_scope(state().engine) as session:
        skips = schedule_store.list_skips(session, since=today)
    listed = {d for d, _ in skips}
    skipped = [(d, reason, "briefing skip") for d, reason in skips]
    skipped += [
        (d, "", "BRIEFING_SKIP_DATES") for d in sorted(plan.skip_dates) if d >= today and d not in listed
    ]
    skipped.sort()
    if as_json:
        out = {
            "zone": plan.zone.key,
            "sends": [
                {
                    "edition_date": t.edition_date.isoformat(),
                    "weekday": f"{t.local:%A}",
                    "local": t.local.isoformat(),
                    "utc": t.utc.isoformat(),
                }
                for t in sends
            ],
            "skipped": [{"date": d.isoformat(), "reason": r, "source": src} for d, r, src in skipped],
        }
        sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
        return
    table = new_table("edition", "day", "local time", "UTC", title=f"Next {count} sends ({plan.zone.key})")
    for t in sends:
        add_row(table, t.edition_date.isoformat(), f"{t.local:%A}", f"{t.local:%H:%M %Z}", f"{t.utc:%H:%M}")
    console.print(table)
    if skipped:
        lines = [f"{d} {r}".strip() if src == "briefing skip" else f"{d} ({src})" for d, r, src in skipped]
        show("Skipped: " + ", ".join(lines))


@handle_errors
def skip(
    day: Annotated[str, typer.Argument(help="Date with no edition, YYYY-MM-DD.")],
    reason: Annotated[str, typer.Option(help="Why, e.g. Christmas Day.")] = "",
) -> None:
    """Skip a date (holiday, recess): no edition is sent that day.

    Example: briefing skip 2026-12-25 --reason "Christmas Day"
    """
    from briefing.db import session_scope
    from briefing.service import schedule as schedule_service

    when = parse_date(day, "DATE")
    assert when is not None
    with session_scope(state().engine) as session:
        added = schedule_service.skip_date(session, when, reason, now=state().now())
    show(f"No edition on {when}." if added else f"{when} was already skipped.")


@handle_errors
def unskip(day: Annotated[str, typer.Argument(help="Date, YYYY-MM-DD.")]) -> None:
    """Put a skipped date back in the calendar.

    Example: briefing unskip 2026-12-25
    """
    from briefing.db import session_scope
    from briefing.service import schedule as schedule_service

    when = parse_date(day, "DATE")
    assert when is not None
    with session_scope(state().engine) as session:
        removed = schedule_service.unskip_date(session, when)
    show(f"{when} is a send date again." if removed else f"{when} was not skipped.")
