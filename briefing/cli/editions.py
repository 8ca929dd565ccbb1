"""`briefing preview`, `preflight`, `editions ...`, `note`, `hold`, `release`: an edition for editors.

These read an edition or change its editorial state; sending it lives in `briefing.cli.send`.
"""

from __future__ import annotations

import shutil
import subprocess
import webbrowser
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from briefing.cli.common import (
    DateOpt,
    console,
    current_setup,
    edition_date,
    err_console,
    handle_errors,
    local,
    parse_date,
    state,
)
from briefing.db import session_scope
from briefing.edition.preflight import PreflightReport
from briefing.service import editions as edition_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store

editions_app = typer.Typer(
    help="Editions and their delivery.\n\nExample: briefing editions list", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)
    app.command("preflight")(preflight)
    app.command("note")(note)
    app.command("hold")(hold)
    app.command("release")(release)
    app.add_typer(editions_app, name="editions")


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
    setup = current_setup()
    day = edition_date(edition, setup)
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
    setup = current_setup()
    day = edition_date(edition, setup)
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
    day = edition_date(edition, current_setup())
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
    day = edition_date(edition, current_setup())
    with session_scope(state().engine) as session:
        edition_service.hold(session, day, held, now=state().now())
    return day
