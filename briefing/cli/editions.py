"""`briefing preview`, `preflight`, `send`, `editions ...`, `hold`, `release`, `dev-smtp`."""

from __future__ import annotations

import shutil
import subprocess
import threading
import webbrowser
from datetime import date
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from briefing.cli.common import console, err_console, handle_errors, local, parse_date, state
from briefing.db import session_scope
from briefing.edition.preflight import PreflightReport
from briefing.errors import InvalidInput, PreflightFailed
from briefing.inputs import email_address
from briefing.mail.transport import Transport
from briefing.service import editions as edition_service
from briefing.service.delivery import DeliveryReport, RunTally
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import schedule as schedule_store
from briefing.wiring import edition_setup, transport

editions_app = typer.Typer(
    help="Editions and their delivery.\n\nExample: briefing editions list", no_args_is_help=True
)

DateOpt = Annotated[
    str,
    typer.Option("--date", help="Edition date, YYYY-MM-DD (default: today's edition, else the next one)."),
]


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)
    app.command("preflight")(preflight)
    app.command("send")(send)
    app.command("note")(note)
    app.command("hold")(hold)
    app.command("release")(release)
    app.command("dev-smtp")(dev_smtp)
    app.add_typer(editions_app, name="editions")


def _setup() -> edition_service.EditionSetup:
    settings = state().settings
    with session_scope(state().engine) as session:
        skips = schedule_store.skip_dates(session)
    return edition_setup(settings, skips)


def _edition_date(value: str, setup: edition_service.EditionSetup) -> date:
    return parse_date(value) or edition_service.default_edition_date(setup.plan, state().now())


def print_preflight(report: PreflightReport) -> None:
    if report.ok and not report.warnings:
        console.print(f"[green]Preflight passed[/green] (HTML {report.html_bytes / 1024:.0f} KB).")
        return
    for problem in report.errors:
        console.print(f"[bold red]error[/bold red]   {problem}")
    for problem in report.warnings:
        console.print(f"[yellow]warning[/yellow] {problem}")
    verdict = (
        "[red]Preflight failed[/red]" if report.errors else "[green]Preflight passed[/green] with warnings"
    )
    console.print(f"{verdict} (HTML {report.html_bytes / 1024:.0f} KB).")


@handle_errors
def preflight(edition: DateOpt = "") -> None:
    """Check the edition before it goes out: empty sections, placeholders, size, alt text, links.

    Example: briefing preflight --date 2026-11-30
    """
    setup = _setup()
    day = _edition_date(edition, setup)
    with session_scope(state().engine) as session:
        prepared = edition_service.prepare(session, setup, day)
    console.print(f"Edition of {day}: {prepared.rendered.subject}")
    print_preflight(prepared.report)
    if not prepared.report.ok:
        raise typer.Exit(1)


@handle_errors
def preview(
    edition: DateOpt = "",
    out: Annotated[
        Path, typer.Option(help="Folder for briefing.html, briefing.txt and briefing.eml.")
    ] = Path("preview"),
    as_email: Annotated[str, typer.Option("--as", help="Preview the copy this subscriber gets.")] = "",
    open_: Annotated[bool, typer.Option("--open", help="Open the HTML in the browser.")] = False,
    screenshot: Annotated[
        bool, typer.Option("--screenshot", help="Also write desktop and phone PNGs (needs Chromium).")
    ] = False,
) -> None:
    """Write exactly what will go out: HTML, plain text and the complete message.

    Example: briefing preview --date 2026-11-30 --as ada.reader@example.com --open
    """
    setup = _setup()
    day = _edition_date(edition, setup)
    result = edition_service.preview(state().engine, setup, day, as_email=as_email, clock=state().clock)
    paths = edition_service.write_preview(result, out)
    source = "frozen content" if result.prepared.frozen else "the current queue"
    console.print(f"Edition of {day} ({source}): {result.prepared.rendered.subject}")
    console.print(f"  preheader: {result.prepared.rendered.preheader}")
    print_preflight(result.prepared.report)
    for kind, path in paths.items():
        console.print(f"  {kind:5} {path}")
    if screenshot:
        for shot in take_screenshots(paths["html"], out):
            console.print(f"  png   {shot}")
    if open_:
        webbrowser.open(paths["html"].resolve().as_uri())
    if not result.prepared.report.ok:
        raise typer.Exit(1)


def take_screenshots(html: Path, out: Path) -> list[Path]:
    """Desktop (600 px wide) and phone (375 px) PNGs with headless Chromium, if it is installed."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        err_console.print(
            "[yellow]No Chromium found[/yellow]: install it (Debian/Ubuntu: sudo apt-get install chromium) "
            "to get screenshots."
        )
        return []
    shots = []
    for name, width in (("desktop", 600), ("phone", 375)):
        target = (out / f"briefing-{name}.png").resolve()
        subprocess.run(  # noqa: S603 (fixed arguments, our own file)
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
                f"--window-size={width},2400",
                f"--screenshot={target}",
                html.resolve().as_uri(),
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )
        if target.exists():
            shots.append(target)
    return shots


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
    setup = _setup()
    day = _edition_date(edition, setup)
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
    setup: edition_service.EditionSetup,
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


@editions_app.command("list")
@handle_errors
def editions_list(limit: Annotated[int, typer.Option(min=1)] = 20) -> None:
    """List recent editions with their state and ledger counts.

    Example: briefing editions list
    """
    with session_scope(state().engine) as session:
        rows = edition_store.list_editions(session, limit=limit)
        table = Table("date", "status", "subject", "sent", "failed", "waiting", "finished", title="Editions")
        for e in rows:
            c = ledger.counts(session, e.id)
            table.add_row(
                e.edition_date.isoformat(),
                e.status + (" (held)" if e.held and e.status != "held" else ""),
                e.subject,
                str(c.sent),
                str(c.failed),
                str(c.pending + c.deferred + c.claimed),
                local(e.finished_at),
            )
    console.print(table)


@editions_app.command("show")
@handle_errors
def editions_show(
    edition: Annotated[str, typer.Argument(help="Edition date, YYYY-MM-DD.")],
    failed: Annotated[
        bool, typer.Option("--failed", help="List failed, deferred and ambiguous copies.")
    ] = False,
) -> None:
    """Show one edition: state, counts, and (with --failed) each failed address with its SMTP reply.

    Example: briefing editions show 2026-11-30 --failed
    """
    day = parse_date(edition, "DATE")
    assert day is not None
    with session_scope(state().engine) as session:
        e, counts, ambiguous = edition_service.edition_counts(session, day)
        last_error = edition_store.last_error(session, e.id)
        detail = (
            ledger.rows(session, e.id, statuses=("failed", "deferred", "ambiguous")) if failed else []
        ) + (ledger.rows(session, e.id, ambiguous_only=True, statuses=("sent", "pending")) if failed else [])
    console.print(f"Edition of {day}: [bold]{e.status}[/bold]")
    console.print(f"  subject:   {e.subject}")
    console.print(
        f"  scheduled: {local(e.scheduled_for)}   started: {local(e.started_at)}   "
        f"finished: {local(e.finished_at)}"
    )
    console.print(
        f"  recipients: {e.snapshot_size}   sent: {counts.sent}   failed: {counts.failed}   "
        f"deferred: {counts.deferred}   skipped: {counts.skipped}   ambiguous: {counts.ambiguous}   "
        f"waiting: {counts.pending + counts.claimed}   sent without a reply at least once: {ambiguous}"
    )
    if last_error:
        console.print(f"  last problem: {last_error}")
    if failed:
        table = Table("email", "status", "attempts", "code", "reply", title="Copies that need attention")
        for r in detail:
            table.add_row(
                r.email,
                r.status + (" (no reply once)" if r.was_ambiguous else ""),
                str(r.attempts),
                str(r.smtp_code or ""),
                r.smtp_reply,
            )
        console.print(table)


@handle_errors
def note(
    text: Annotated[str, typer.Argument(help="The note, in Markdown; an empty string removes it.")],
    edition: DateOpt = "",
) -> None:
    """Set the editor's note shown near the top of one edition.

    Example: briefing note "Polls open at 7am; we will have results from 11pm." --date 2026-11-30
    """
    day = _edition_date(edition, _setup())
    with session_scope(state().engine) as session:
        edition_service.set_note(session, day, text, now=state().now())
    console.print(f"The edition of {day} has {'a note' if text.strip() else 'no note'}.")


@handle_errors
def hold(
    edition: Annotated[str, typer.Argument(help="Edition date (default: the next edition).")] = "",
) -> None:
    """Hold an edition (breaking news): it is not sent until released, and expires by the usual rule.

    Example: briefing hold 2026-11-30
    """
    day = _set_hold(edition, held=True)
    console.print(f"The edition of {day} is on hold. Release it with `briefing release {day}`.")


@handle_errors
def release(
    edition: Annotated[str, typer.Argument(help="Edition date (default: the next edition).")] = "",
) -> None:
    """Release a held edition; if its send time has passed but the window is open, it goes out.

    Example: briefing release 2026-11-30
    """
    day = _set_hold(edition, held=False)
    console.print(
        f"The edition of {day} is released; the scheduler sends it (or run `briefing send --date {day}`)."
    )


def _set_hold(edition: str, *, held: bool) -> date:
    day = _edition_date(edition, _setup())
    with session_scope(state().engine) as session:
        edition_service.hold(session, day, held, now=state().now())
    return day


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
