"""`briefing send` (the real send, --dry-run and --to test copies) and `briefing dev-smtp`.

Split from the edition commands because this is the part that talks to a mail server: it changes
when delivery, its progress display or its report change, not when the editorial commands do.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:
    import sqlalchemy as sa

    from briefing.mail.transport import Transport
    from briefing.service import editions as edition_service
    from briefing.service.send_report import DeliveryReport
    from briefing.service.setup import EditionSetup

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from briefing.cli.common import (
    DateOpt,
    add_row,
    console,
    current_setup,
    edition_date,
    err_console,
    handle_errors,
    new_table,
    show,
    state,
    styled,
)
from briefing.cli.editions import content_source, print_preflight
from briefing.errors import InvalidInput, PreflightFailed


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
) -> None:
    """Send the edition to every active subscriber, exactly once each; safe to run again.

    Example: briefing send --date 2026-11-30
    Example: briefing send --to editor@example.com
    Example: briefing send --date 2026-11-30 --resume
    Example: briefing send --date 2026-11-30 --dry-run --json
    """
    from briefing.inputs import email_address
    from briefing.service import editions as edition_service
    from briefing.wiring import transport

    setup = current_setup()
    day = edition_date(edition, setup)
    engine = state().engine
    if as_json and not dry_run:
        raise InvalidInput("only goes with --dry-run", field="--json")
    if dry_run:
        listed = None if as_json else edition_service.DRY_RUN_LISTED
        result = edition_service.dry_run(engine, setup, day, now=state().now(), listed=listed)
        if as_json:
            print_dry_run_json(day, result)
        else:
            print_dry_run(day, result)
        return
    mail = transport(state().settings, state().clock)
    try:
        if to:
            address = email_address(to, field="--to")
            reply = edition_service.send_test(engine, setup, day, address, mail, clock=state().clock)
            show(f"Test copy of {day} sent to {address} ({reply.code} {reply.reply}).")
            return
        outcome = _send_with_progress(
            engine, setup, day, mail, force=force, retry_failed=retry_failed, resume=resume
        )
    except PreflightFailed as exc:
        for problem in exc.problems:
            show(styled("error", "bold red"), "   ", problem)
        raise
    finally:
        mail.close()
    if outcome.report is not None:
        print_report(outcome.report)
    show(styled(outcome.message, "green" if outcome.edition.status == "sent" else "yellow"))
    if outcome.edition.status == "halted":
        show(f"Check the list, then go on with: briefing send --date {day} --resume")
    if outcome.edition.status in ("paused", "partial", "halted"):
        raise typer.Exit(2)


def _send_with_progress(
    engine: sa.Engine,
    setup: EditionSetup,
    day: date,
    mail: Transport,
    *,
    force: bool,
    retry_failed: bool,
    resume: bool = False,
) -> edition_service.SendOutcome:
    from briefing.service import editions as edition_service
    from briefing.service.send_report import RunTally

    stop = threading.Event()
    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("send", total=None, rate=0.0)
        clock = state().clock
        started = clock.monotonic()

        def progress(tally: RunTally) -> None:
            done = tally.sent + tally.failed + tally.skipped
            elapsed = max(clock.monotonic() - started, 1e-6)
            bar.update(task, total=tally.total or None, completed=done, rate=done / elapsed)

        try:
            return edition_service.send_edition(
                engine,
                setup,
                day,
                mail,
                force=force,
                retry_failed=retry_failed,
                resume=resume,
                stop=stop,
                on_progress=progress,
                clock=clock,
            )
        except KeyboardInterrupt:
            stop.set()
            raise


def print_dry_run(day: date, result: edition_service.DryRun) -> None:
    if result.prepared is not None:
        show(f"Edition of {day} ({content_source(result.prepared)}): {result.prepared.rendered.subject}")
        print_preflight(result.prepared.report)
    show(f"Dry run: {result.message}. Nothing was sent.")
    for email in result.emails:
        show(f"  {email}")
    more = result.recipients - len(result.emails)
    if more > 0:
        show(f"  ... and {more} more (--json lists them all)")


def print_dry_run_json(day: date, result: edition_service.DryRun) -> None:
    prepared = result.prepared
    report = prepared.report if prepared is not None else None
    out = {
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


def print_report(report: DeliveryReport) -> None:
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
