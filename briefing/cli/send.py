"""`briefing send` (the real send, --dry-run and --to test copies) and `briefing dev-smtp`.

Split from the edition commands because this is the part that talks to a mail server: it changes
when delivery, its progress display or its report change, not when the editorial commands do.
"""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from briefing.cli.common import (
    DateOpt,
    console,
    current_setup,
    edition_date,
    err_console,
    handle_errors,
    state,
)
from briefing.cli.editions import print_preflight
from briefing.errors import InvalidInput, PreflightFailed
from briefing.inputs import email_address
from briefing.mail.transport import Transport
from briefing.service import editions as edition_service
from briefing.service.delivery import DeliveryReport, RunTally
from briefing.service.setup import EditionSetup
from briefing.wiring import transport


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
        bool, typer.Option("--force", help="Send outside the edition's time window (never a second edition).")
    ] = False,
) -> None:
    """Send the edition to every active subscriber, exactly once each; safe to run again.

    Example: briefing send --date 2026-11-30
    Example: briefing send --to editor@example.com
    """
    setup = current_setup()
    day = edition_date(edition, setup)
    engine = state().engine
    if dry_run:
        result = edition_service.dry_run(engine, setup, day)
        if result.prepared is not None:
            console.print(f"Edition of {day}: {result.prepared.rendered.subject}")
            print_preflight(result.prepared.report)
        console.print(f"Dry run: {result.message}. Nothing was sent.")
        return
    mail = transport(state().settings, state().clock)
    try:
        if to:
            address = email_address(to, field="--to")
            reply = edition_service.send_test(engine, setup, day, address, mail, clock=state().clock)
            console.print(f"Test copy of {day} sent to {address} ({reply.code} {reply.reply}).")
            return
        outcome = _send_with_progress(engine, setup, day, mail, force=force, retry_failed=retry_failed)
    except PreflightFailed as exc:
        for problem in exc.problems:
            console.print(f"[bold red]error[/bold red]   {problem}")
        raise
    finally:
        mail.close()
    if outcome.report is not None:
        print_report(outcome.report)
    colour = "green" if outcome.edition.status == "sent" else "yellow"
    console.print(f"[{colour}]{outcome.message}[/{colour}]")
    if outcome.edition.status in ("paused", "partial"):
        raise typer.Exit(2)


def _send_with_progress(
    engine: sa.Engine,
    setup: EditionSetup,
    day: date,
    mail: Transport,
    *,
    force: bool,
    retry_failed: bool,
) -> edition_service.SendOutcome:
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
                stop=stop,
                on_progress=progress,
                clock=clock,
            )
        except KeyboardInterrupt:
            stop.set()
            raise


def print_report(report: DeliveryReport) -> None:
    c = report.counts
    table = Table(
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
    table.add_row(
        str(c.sent),
        str(c.deferred),
        str(c.failed),
        str(c.skipped),
        str(c.ambiguous),
        str(c.pending + c.claimed),
        f"{report.elapsed:.1f} s",
        f"{report.rate:.0f}",
    )
    console.print(table)
    if report.run.ambiguous_emails:
        console.print(
            "[yellow]No reply after sending[/yellow] (may have arrived; "
            "see `briefing editions show DATE --failed`): " + ", ".join(report.run.ambiguous_emails[:10])
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
