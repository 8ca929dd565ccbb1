"""`briefing send` (the real send, --dry-run and --to test copies) and `briefing dev-smtp`.

Split from the edition commands because this is the part that talks to a mail server: it changes
when delivery, its progress display or its report change, not when the editorial commands do.
"""

import json
import signal
import sys
import threading
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import (
    DateOpt,
    NewsletterOpt,
    add_row,
    console,
    current_setup,
    edition_date,
    err_console,
    fail,
    handle_errors,
    new_table,
    newsletter_flag,
    of_newsletter,
    show,
    state,
    styled,
)
from briefing.cli.editions import edition_heading, print_preflight
from briefing.cli.stopping import STOP_GRACE, STOPPED_EXITS
from briefing.cli.stopping import Stopper as _Stopper
from briefing.errors import Conflict, InvalidInput, LockHeld, PreflightFailed

if TYPE_CHECKING:
    import sqlalchemy as sa

    from briefing.mail.transport import Transport
    from briefing.service import editions as edition_service
    from briefing.service.send_report import DeliveryReport
    from briefing.service.setup import EditionSetup

# Exit codes of `briefing send` (README lists them): 0 the edition is sent, 1 an error,
UNFINISHED_EXIT = 2  # paused, halted or partly sent, and nobody is sending the rest: run it again
OTHERS_SENDING_EXIT = 3  # nothing left for this sender; other live senders hold the rest
DEFERRED_EXIT = 4  # only copies deferred by their servers remain; a later pass sends them when due
SENDER_RUNNING_EXIT = 73  # another `briefing send` is sending from this SQLite database


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("dev-smtp")(dev_smtp)


@handle_errors
def send(
    edition: DateOpt = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say who would get it; send nothing.")] = False,
    to: Annotated[str, typer.Option("--to", help="Send one test copy to this address (no ledger).")] = "",
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Send again to the copies that failed or were deferred.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Send outside the edition's time window or on a skipped date (never a second edition).",
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Go on with an edition halted because many addresses bounced.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --dry-run: print JSON for scripts, naming every reader.")
    ] = False,
    newsletter: NewsletterOpt = "",
) -> None:
    """Send the edition to every reader of the newsletter, exactly once each; safe to run again.

    It sends what can go now and ends. Copies deferred by their servers (4xx)
    wait for their next try: the scheduler, a worker or the next send makes it.

    SIGTERM or Ctrl-C: the copies in flight finish and are recorded first.

    Exit codes: 0 sent, 1 an error, 2 paused or partly sent (run it again),
    3 other senders still send the rest, 4 only deferred copies remain,
    73 another send on this SQLite database, 130 Ctrl-C, 143 SIGTERM.

    Example: briefing send --date 2026-11-30
    Example: briefing send --to editor@example.com
    Example: briefing send --date 2026-11-30 --resume
    Example: briefing send --date 2026-11-30 --dry-run --json
    Example: briefing send --newsletter weekend --date 2026-12-05
    """
    from briefing.inputs import email_address
    from briefing.service import editions as edition_service
    from briefing.wiring import transport

    setup = current_setup(newsletter)
    day = edition_date(edition, setup)
    engine = state().engine
    again = f"briefing send --date {day}{newsletter_flag(setup.newsletter)}"
    if as_json and not dry_run:
        raise InvalidInput("only goes with --dry-run", field="--json")
    if dry_run:
        listed = None if as_json else edition_service.DRY_RUN_LISTED
        result = edition_service.dry_run(engine, setup, day, now=state().now(), listed=listed)
        if as_json:
            print_dry_run_json(day, result, setup)
        else:
            print_dry_run(day, result, setup)
        return
    if to:
        address = email_address(to, field="--to")
        mail = transport(state().settings, state().clock)
        try:
            reply = edition_service.send_test(engine, setup, day, address, mail, clock=state().clock)
        finally:
            mail.close()
        whose = of_newsletter(setup.newsletter)
        show(f"Test copy of {day}{whose} sent to {address} ({reply.code} {reply.reply}).")
        return
    if setup.newsletter.paused and not force:
        slug = setup.newsletter.slug
        raise Conflict(
            f"the newsletter {slug} is paused and sends nothing; resume it with "
            f"`briefing newsletters resume {slug}`, or send this edition on purpose with --force"
        )
    from briefing.locks import acquire_send_lock

    try:
        lock = acquire_send_lock(state().settings.database_url, clock=state().clock)
    except LockHeld as exc:
        raise fail(f"{exc}; SQLite takes one sender (PostgreSQL takes many)", SENDER_RUNNING_EXIT) from None
    stopper = _Stopper()
    mail = transport(state().settings, state().clock)
    try:
        with stopper:
            outcome = _send_with_progress(
                engine, setup, day, mail, stopper, force=force, retry_failed=retry_failed, resume=resume
            )
    except PreflightFailed as exc:
        for problem in exc.problems:
            show(styled("error", "bold red"), "   ", problem)
        raise
    finally:
        if not stopper.abandoned:  # a connection still waiting for its reply would hold close() up
            mail.close()
        if lock is not None:
            lock.release()
    if outcome.report is not None:
        print_report(outcome.report)
    status = outcome.edition.status
    show(styled(outcome.message, "green" if status == "sent" else "yellow"))
    if status == "halted":
        show(f"Check the list, then go on with: {again} --resume")
    if status != "sent" and stopper.signum:
        if not outcome.waiting_for:
            show(f"Go on with: {again}")
        raise typer.Exit(stopper.exit_code)
    if status in ("paused", "partial", "halted"):
        raise typer.Exit(UNFINISHED_EXIT)
    if status != "sent" and outcome.waiting_for == "others":
        raise typer.Exit(OTHERS_SENDING_EXIT)
    if status != "sent" and outcome.waiting_for == "deferred":
        raise typer.Exit(DEFERRED_EXIT)
    if status == "sending" and outcome.report is not None:
        raise typer.Exit(UNFINISHED_EXIT)  # not settled, and nobody said they are on it


def _send_with_progress(
    engine: "sa.Engine",
    setup: "EditionSetup",
    day: date,
    mail: "Transport",
    stopper: _Stopper,
    *,
    force: bool,
    retry_failed: bool,
    resume: bool = False,
) -> "edition_service.SendOutcome":
    """The send runs in a thread; this one waits, so that a signal is handled the moment it comes.

    While it waits it redraws the bar at most once a second with the whole edition's progress (every
    sender's, from their heartbeats), this process's own copies counted live rather than as of its
    last heartbeat.
    """
    import os
    import socket
    from collections import deque

    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from briefing.cli.progress import REFRESH_EVERY, summary
    from briefing.domain import EditionStatus
    from briefing.service import editions as edition_service
    from briefing.service import progress as progress_service
    from briefing.service.send_report import RunTally
    from briefing.store import editions as edition_store

    clock = state().clock
    host, pid = socket.gethostname(), os.getpid()
    own: list[RunTally] = []  # the tally the send hands over: this sender's copies, as they happen
    # (monotonic, sent) at each redraw, so this sender's rate is that of the last few seconds.
    samples: deque[tuple[float, int]] = deque(maxlen=6)

    def progress(tally: RunTally) -> None:
        own[:] = [tally]

    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(
        TextColumn("sending"),
        BarColumn(),
        TextColumn("{task.fields[line]}", markup=False),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("send", total=None, line="starting")

        def redraw() -> None:
            mine = own[0].sent if own else 0
            moment = clock.monotonic()
            samples.append((moment, mine))
            first_at, first_sent = samples[0]
            rate = (mine - first_sent) / (moment - first_at) if moment > first_at else 0.0
            try:
                with Session(engine) as session:
                    found = edition_store.find_edition(session, day, newsletter_id=setup.newsletter.id)
                    # Only a sending edition's progress is read: any other state would be counted
                    # from the ledger, too dear once a second (and this sender alone is then at work).
                    whole = (
                        progress_service.edition_progress(session, found.id, now=clock.now())
                        if found is not None and found.status == EditionStatus.SENDING
                        else None
                    )
            except SQLAlchemyError:
                return  # the bar keeps its figures; the send itself reports trouble with the database
            if whole is None or whole.total == 0:
                bar.update(task, total=None, completed=mine, line=f"{mine:,} sent by this sender")
                return
            whole = progress_service.with_live_run(whole, host=host, pid=pid, sent=mine, rate=rate)
            bar.update(task, total=whole.total, completed=whole.done, line=summary(whole, mine=mine))

        outcome: list[edition_service.SendOutcome] = []
        error: list[BaseException] = []
        done = threading.Event()

        def work() -> None:
            try:
                outcome.append(
                    edition_service.send_edition(
                        engine,
                        setup,
                        day,
                        mail,
                        force=force,
                        retry_failed=retry_failed,
                        resume=resume,
                        stop=stopper.stop,
                        on_progress=progress,
                        clock=clock,
                    )
                )
            except BaseException as exc:  # noqa: BLE001 - raised again below, in the command's thread
                error.append(exc)
            finally:
                done.set()

        threading.Thread(target=work, name="briefing-send", daemon=True).start()
        stopping_since: float | None = None
        redraw_at = clock.monotonic()
        while not done.wait(0.2):  # an event, not the clock: signals are handled in between
            if stopping_since is None and clock.monotonic() >= redraw_at:
                redraw()
                redraw_at = clock.monotonic() + REFRESH_EVERY
            if stopper.signum and stopping_since is None:
                stopping_since = clock.monotonic()
                name = signal.Signals(stopper.signum).name
                show(
                    f"Stopping on {name}: no new copy starts; the ones in flight finish and are recorded "
                    f"(up to {STOP_GRACE:.0f} s; a second signal stops at once).",
                    err=True,
                )
            if stopping_since is not None and (
                stopper.hurry or clock.monotonic() - stopping_since >= STOP_GRACE
            ):
                stopper.abandoned = True
                raise fail(
                    "stopped before the copies in flight were answered; the next send settles them "
                    f"(as ambiguous, per the policy). Go on with: briefing send --date {day}"
                    f"{newsletter_flag(setup.newsletter)}",
                    STOPPED_EXITS.get(stopper.signum, 1),
                )
        if error:
            raise error[0]
        return outcome[0]


def print_dry_run(day: date, result: "edition_service.DryRun", setup: "EditionSetup") -> None:
    if result.prepared is not None:
        show(edition_heading(day, setup, result.prepared))
        print_preflight(result.prepared.report)
    show(f"Dry run: {result.message}. Nothing was sent.")
    for email in result.emails:
        show(f"  {email}")
    more = result.recipients - len(result.emails)
    if more > 0:
        show(f"  ... and {more} more (--json lists them all)")


def print_dry_run_json(day: date, result: "edition_service.DryRun", setup: "EditionSetup") -> None:
    prepared = result.prepared
    report = prepared.report if prepared is not None else None
    out = {
        "newsletter": setup.newsletter.slug,
        "edition": day.isoformat(),
        "status": result.edition.status if result.edition is not None else "scheduled",
        "subject": prepared.rendered.subject if prepared is not None else "",
        "frozen": bool(prepared and prepared.frozen),
        "judged_at": prepared.judged_at.isoformat() if prepared and prepared.judged_at else None,
        "recipients": result.recipients,
        "emails": list(result.emails),
        "preflight": {
            "ok": report.ok if report is not None else None,
            "errors": [str(p) for p in report.errors] if report is not None else [],
            "warnings": [str(p) for p in report.warnings] if report is not None else [],
        },
    }
    sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")


def print_report(report: "DeliveryReport") -> None:
    """The whole edition's ledger (every sender's work), then what this sender did of it."""
    c = report.counts
    table = new_table(
        "sent",
        "deferred",
        "failed",
        "skipped",
        "ambiguous",
        "waiting",
        "elapsed",
        "messages/s",
        title="This edition's ledger",
    )
    add_row(
        table,
        c.sent,
        c.deferred,
        c.failed,
        c.skipped,
        c.ambiguous,
        c.pending + c.claimed,
        f"{report.elapsed:.1f} s",
        f"{report.rate:.0f}",
    )
    console.print(table)
    show(
        f"This sender delivered {report.run.sent} of the {c.sent} delivered copies; "
        f"{report.by_others} were delivered by others."
    )
    if report.other_senders or report.others_in_flight:
        who = f"{report.other_senders} other live sender{'' if report.other_senders == 1 else 's'}"
        show(f"Still in flight with {who}: {report.others_in_flight} copies.")
    if report.run.ambiguous_emails:
        show(
            styled("No reply after sending", "yellow"),
            " (may have arrived; see `briefing editions show DATE --failed`): ",
            ", ".join(report.run.ambiguous_emails[:10]),
        )


@handle_errors
def dev_smtp(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 1025,
    maildir: Annotated[Path, typer.Option(help="Maildir folder for received messages.")] = Path("maildir"),
) -> None:
    """Run a local catch-all SMTP server that stores every message in a Maildir.

    Example: briefing dev-smtp --port 1025 --maildir maildir
    """
    from briefing.mail import devsmtp

    if not 0 <= port <= 65535:
        raise InvalidInput("must be from 0 to 65535", field="--port")
    devsmtp.run(port, maildir, clock=state().clock)
