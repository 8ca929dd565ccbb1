"""`briefing subscribers ...`: the list."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from briefing import files
from briefing.cli.common import console, err_console, handle_errors, local, print_json, state
from briefing.db import session_scope
from briefing.domain import SubscriberStatus
from briefing.errors import InvalidInput
from briefing.service import subscribers as subscriber_service
from briefing.store import subscribers as subscriber_store

app = typer.Typer(
    help="Subscribers.\n\nExample: briefing subscribers list --status active", no_args_is_help=True
)

PROGRESS_FROM_BYTES = 1 << 20  # show a bar for files over 1 MB


@app.command("add")
@handle_errors
def add(
    email: Annotated[str, typer.Argument(help="Email address.")],
    name: Annotated[str, typer.Option(help="Name, used in the greeting.")] = "",
    pending: Annotated[bool, typer.Option("--pending", help="Add as awaiting confirmation.")] = False,
) -> None:
    """Add one subscriber (active unless --pending).

    Example: briefing subscribers add reader@example.com --name "Ada Reader"
    """
    status = SubscriberStatus.PENDING if pending else SubscriberStatus.ACTIVE
    with session_scope(state().engine) as session:
        sub = subscriber_service.add_subscriber(session, email, name, status=status, now=state().now())
    console.print(f"Added {sub.email} ({sub.status}).")


@app.command("list")
@handle_errors
def list_(
    status: Annotated[
        str | None, typer.Option(help="pending, active, unsubscribed, bounced or complained.")
    ] = None,
    search: Annotated[str, typer.Option(help="Part of an address or name.")] = "",
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List subscribers, with counts by status.

    Example: briefing subscribers list --status bounced
    """
    if status is not None and status not in {s.value for s in SubscriberStatus}:
        raise InvalidInput(f"unknown status {status!r}", field="--status")
    with session_scope(state().engine) as session:
        found = list(subscriber_store.iter_subscribers(session, status=status, search=search, limit=limit))
        counts = subscriber_store.count_by_status(session)
    if as_json:
        print_json(found)
        return
    table = Table("id", "email", "name", "status", "since", title=f"Subscribers (showing {len(found)})")
    for s in found:
        table.add_row(str(s.id), s.email, s.name, s.status, local(s.created_at))
    console.print(table)
    console.print("  ".join(f"{k}: {v}" for k, v in counts.items()))


@app.command("import")
@handle_errors
def import_(
    file: Annotated[Path, typer.Argument(help="CSV with an 'email' column (see subscribers/README.md).")],
    status: Annotated[
        str, typer.Option(help="active (moving a list over) or pending (await confirmation).")
    ] = "active",
    rejects: Annotated[Path | None, typer.Option(help="Write rejected rows to this CSV file.")] = None,
) -> None:
    """Import a CSV list. Unsubscribed, bounced and complained addresses are never re-activated.

    Example: briefing subscribers import subscribers/example.csv --rejects rejected.csv
    """
    try:
        wanted = SubscriberStatus(status)
    except ValueError:
        raise InvalidInput("must be active or pending", field="--status") from None
    size = files.file_size(file)
    if size >= PROGRESS_FROM_BYTES and sys.stderr.isatty():
        with Progress(
            TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err_console
        ) as bar:
            task = bar.add_task("import", total=size)
            report = subscriber_service.import_subscribers(
                state().engine,
                file,
                status=wanted,
                rejects_to=rejects,
                progress=lambda done: bar.update(task, completed=done),
                now=state().now(),
            )
            bar.update(task, completed=size)
    else:
        report = subscriber_service.import_subscribers(
            state().engine, file, status=wanted, rejects_to=rejects, now=state().now()
        )
    c = report.counts
    table = Table(
        "added", "updated", "unchanged", "kept suppressed", "duplicates", "rejected", title=f"{file.name}"
    )
    table.add_row(
        *(str(n) for n in (c.added, c.updated, c.unchanged, c.suppressed, c.duplicates, c.rejected))
    )
    console.print(table)
    for r in report.rejected_sample:
        console.print(f"[red]line {r.line}[/red]: {r.reason}")
    if c.rejected > len(report.rejected_sample):
        console.print(f"... and {c.rejected - len(report.rejected_sample)} more rejected rows.")
    if report.rejected_file:
        console.print(f"Rejected rows written to {report.rejected_file}.")
    if c.rejected:
        console.print("The other rows were imported.")
        raise typer.Exit(1)


@app.command("export")
@handle_errors
def export(
    file: Annotated[Path | None, typer.Argument(help="Output CSV (default: standard output).")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
) -> None:
    """Export subscribers as CSV that is safe to open in a spreadsheet.

    Example: briefing subscribers export subscribers/all.local.csv --status active
    """
    if file is None:
        subscriber_service.export_subscribers(state().engine, sys.stdout, status=status)
        return
    with file.open("w", encoding="utf-8", newline="") as handle:
        n = subscriber_service.export_subscribers(state().engine, handle, status=status)
    console.print(f"Wrote {n} subscribers to {file}.")


@app.command("unsubscribe")
@handle_errors
def unsubscribe(email: Annotated[str, typer.Argument(help="Email address.")]) -> None:
    """Unsubscribe an address (for replies asking to stop, or the List-Unsubscribe mailto).

    Example: briefing subscribers unsubscribe reader@example.com
    """
    with session_scope(state().engine) as session:
        sub, changed = subscriber_service.unsubscribe_email(session, email, now=state().now())
    console.print(f"{sub.email} is unsubscribed." if changed else f"{sub.email} was already {sub.status}.")


@app.command("delete")
@handle_errors
def delete(
    email: Annotated[str, typer.Argument(help="Email address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a subscriber and their delivery records (privacy requests).

    Example: briefing subscribers delete reader@example.com --yes
    """
    if not yes and not typer.confirm(f"Erase {email} and their delivery records?"):
        raise typer.Exit(1)
    with session_scope(state().engine) as session:
        sub = subscriber_service.delete_subscriber_email(session, email)
    console.print(f"Erased {sub.email}.")
