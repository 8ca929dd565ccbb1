"""`briefing subscribers ...`: the list."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import (
    add_row,
    console,
    err_console,
    handle_errors,
    local,
    new_table,
    output_file,
    plain,
    print_json,
    show,
    state,
    styled,
)
from briefing.errors import InvalidInput

if TYPE_CHECKING:
    from sqlmodel import Session

    from briefing.service.subscriber_files import SubscriberImportReport

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
    from briefing.db import session_scope
    from briefing.domain import SubscriberStatus
    from briefing.service import subscribers as subscriber_service

    status = SubscriberStatus.PENDING if pending else SubscriberStatus.ACTIVE
    with session_scope(state().engine) as session:
        sub = subscriber_service.add_subscriber(
            session,
            email,
            name,
            status=status,
            allow_smtputf8=state().settings.smtp_smtputf8,
            now=state().now(),
        )
    show(f"Added {sub.email} ({sub.status}).")


@app.command("list")
@handle_errors
def list_(
    status: Annotated[
        str | None,
        typer.Option(help="pending, active, unsubscribed, bounced, complained or blocklisted."),
    ] = None,
    search: Annotated[str, typer.Option(help="Part of an address or name.")] = "",
    newsletter: Annotated[
        str | None, typer.Option(help="Only readers on this newsletter (its slug, e.g. weekend).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List subscribers and the newsletters each is on, with counts by status.

    Example: briefing subscribers list --status active --newsletter weekend
    """
    from dataclasses import asdict

    from briefing.db import session_scope
    from briefing.store import subscribers as subscriber_store
    from briefing.store import subscriptions as subscription_store

    _check_status(status)
    with session_scope(state().engine) as session:
        wanted = _newsletter_ids(session, [newsletter] if newsletter is not None else [])
        found = list(
            subscriber_store.iter_subscribers(
                session,
                status=status,
                search=search,
                limit=limit,
                newsletter_id=wanted[0] if wanted else None,
            )
        )
        on = subscription_store.active_slugs(session, [s.id for s in found])
        counts = subscriber_store.count_by_status(session)
    if as_json:
        print_json([{**asdict(s), "newsletters": on.get(s.id, [])} for s in found])
        return
    table = new_table(
        "id", "email", "name", "status", "newsletters", "since", title=f"Subscribers (showing {len(found)})"
    )
    for s in found:
        add_row(table, s.id, s.email, s.name, s.status, " ".join(on.get(s.id, ())), local(s.created_at))
    console.print(table)
    show("  ".join(f"{k}: {v}" for k, v in counts.items()))


def _newsletter_ids(session: "Session", slugs: list[str]) -> list[int]:
    """The ids of the newsletters named on the command line; an unknown slug names the option."""
    from briefing.newsletter import check_slug
    from briefing.store import newsletters as newsletter_store

    ids = []
    for slug in slugs:
        try:
            found = newsletter_store.find_by_slug(session, check_slug(slug))
        except InvalidInput:
            found = None
        if found is None:
            known = ", ".join(n.slug for n in newsletter_store.list_newsletters(session)) or "none yet"
            raise InvalidInput(
                f"there is no newsletter {slug[:40]!r} (newsletters: {known})", field="--newsletter"
            )
        ids.append(found.id)
    return ids


def _check_status(status: str | None) -> None:
    from briefing.domain import SubscriberStatus

    if status is not None and status not in {s.value for s in SubscriberStatus}:
        raise InvalidInput(f"unknown status {status!r}", field="--status")


@app.command("import")
@handle_errors
def import_(
    file: Annotated[Path, typer.Argument(help="CSV with an 'email' column (see subscribers/README.md).")],
    status: Annotated[
        str, typer.Option(help="active (moving a list over) or pending (await confirmation).")
    ] = "active",
    rejects: Annotated[Path | None, typer.Option(help="Write rejected rows to this CSV file.")] = None,
    newsletter: Annotated[
        list[str] | None,
        typer.Option(
            help="Put every row on this newsletter (its slug; repeat for several). Default: the first."
        ),
    ] = None,
) -> None:
    """Import a CSV list, Mailchimp's and listmonk's exports too.

    A status column is honoured: unsubscribed, cleaned, bounced, complained and blocklisted rows
    are stored suppressed (and suppress a reader already on the list); nothing re-activates a
    suppressed address. --status says what subscribed rows become. A newsletters column (slugs
    separated by spaces or semicolons) and --newsletter say which newsletters each row is on;
    a new row that names none goes on the first newsletter.

    Example: briefing subscribers import subscribers/example.csv --newsletter weekend --rejects rejected.csv
    """
    from briefing.db import session_scope
    from briefing.domain import SubscriberStatus
    from briefing.service import subscribers as subscriber_service

    try:
        wanted = SubscriberStatus(status)
    except ValueError:
        raise InvalidInput("must be active or pending", field="--status") from None
    with session_scope(state().engine) as session:
        newsletter_ids = _newsletter_ids(session, newsletter or [])
    if rejects is not None:
        output_file(rejects, "--rejects")  # before the first row is imported, not after

    def run(progress: Callable[[int], None] | None) -> "SubscriberImportReport":
        return subscriber_service.import_subscribers(
            state().engine,
            file,
            status=wanted,
            rejects_to=rejects,
            progress=progress,
            allow_smtputf8=state().settings.smtp_smtputf8,
            newsletter_ids=newsletter_ids,
            now=state().now(),
        )

    report = _with_progress(file, run)
    c = report.counts
    table = new_table(
        "added",
        "added suppressed",
        "updated",
        "unchanged",
        "suppressed",
        "kept suppressed",
        "duplicates",
        "rejected",
        title=file.name,
    )
    add_row(
        table,
        c.added,
        c.added_suppressed,
        c.updated,
        c.unchanged,
        c.suppressed,
        c.kept_suppressed,
        c.duplicates,
        c.rejected,
    )
    console.print(table)
    _rejected(report, "The other rows were imported.")


@app.command("suppress")
@handle_errors
def suppress(
    file: Annotated[
        Path,
        typer.Argument(help="One address per line, or a CSV with an 'email' column (and reason or status)."),
    ],
    status: Annotated[
        str, typer.Option(help="unsubscribed, bounced, complained or blocklisted, for rows that name none.")
    ] = "blocklisted",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; change nothing.")
    ] = False,
) -> None:
    """Import a suppression list: every address is stored suppressed, on the list or not, and never mailed.

    A row's status or reason (bounce, complaint, unsubscribed) is kept; other rows get --status.
    A suppression only grows firmer (unsubscribed < bounced < complained < blocklisted).

    Example: briefing subscribers suppress do-not-mail.local.csv --status blocklisted --dry-run
    """
    from briefing.domain import SUPPRESSED_STATUSES, SubscriberStatus
    from briefing.service import subscribers as subscriber_service

    suppressed = {s.value for s in SUPPRESSED_STATUSES}
    if status not in suppressed:
        raise InvalidInput("must be unsubscribed, bounced, complained or blocklisted", field="--status")

    def run(progress: Callable[[int], None] | None) -> "SubscriberImportReport":
        return subscriber_service.suppress_addresses(
            state().engine,
            file,
            status=SubscriberStatus(status),
            dry_run=dry_run,
            progress=progress,
            now=state().now(),
        )

    report = _with_progress(file, run)
    c = report.counts
    title = f"{file.name} (dry run: nothing was changed)" if dry_run else file.name
    table = new_table(
        "new, suppressed",
        "on the list, now suppressed",
        "already suppressed",
        "duplicates",
        "rejected",
        title=title,
    )
    add_row(table, c.added_suppressed, c.suppressed, c.kept_suppressed, c.duplicates, c.rejected)
    console.print(table)
    _rejected(report, "Nothing was changed." if dry_run else "The other addresses were suppressed.")


def _with_progress(
    file: Path, run: Callable[[Callable[[int], None] | None], "SubscriberImportReport"]
) -> "SubscriberImportReport":
    """Run an import, with a progress bar on a terminal for a file over 1 MB."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from briefing import files

    size = files.file_size(file)
    if size < PROGRESS_FROM_BYTES or not sys.stderr.isatty():
        return run(None)
    with Progress(
        TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err_console
    ) as bar:
        task = bar.add_task("import", total=size)
        report = run(lambda done: bar.update(task, completed=done))
        bar.update(task, completed=size)
    return report


def _rejected(report: "SubscriberImportReport", others: str) -> None:
    """The rejected rows with their lines; exit 1 when there were any, so scripts notice."""
    c = report.counts
    for r in report.rejected_sample:
        show(styled(f"line {r.line}", "red"), ": ", r.reason)
    if c.rejected > len(report.rejected_sample):
        show(f"... and {c.rejected - len(report.rejected_sample)} more rejected rows.")
    if report.rejected_file:
        show(f"Rejected rows written to {report.rejected_file}.")
    if c.rejected:
        show(others)
        raise typer.Exit(1)


@app.command("export")
@handle_errors
def export(
    file: Annotated[Path | None, typer.Argument(help="Output CSV (default: standard output).")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    newsletter: Annotated[
        str | None, typer.Option(help="Only readers on this newsletter (its slug).")
    ] = None,
) -> None:
    """Export subscribers as CSV that is safe to open in a spreadsheet, with the newsletters each is on.

    Example: briefing subscribers export subscribers/all.local.csv --status active
    """
    from briefing.db import session_scope
    from briefing.service import subscribers as subscriber_service

    _check_status(status)
    with session_scope(state().engine) as session:
        ids = _newsletter_ids(session, [newsletter] if newsletter is not None else [])
    only = ids[0] if ids else None
    if file is None:
        subscriber_service.export_subscribers(state().engine, sys.stdout, status=status, newsletter_id=only)
        return
    with output_file(file, "FILE").open("w", encoding="utf-8", newline="") as handle:
        n = subscriber_service.export_subscribers(state().engine, handle, status=status, newsletter_id=only)
    show(f"Wrote {n} subscribers to {file}.")


@app.command("unsubscribe")
@handle_errors
def unsubscribe(email: Annotated[str, typer.Argument(help="Email address.")]) -> None:
    """Unsubscribe an address (for replies asking to stop, or the List-Unsubscribe mailto).

    Example: briefing subscribers unsubscribe reader@example.com
    """
    from briefing.db import session_scope
    from briefing.service import subscribers as subscriber_service

    with session_scope(state().engine) as session:
        sub, changed = subscriber_service.unsubscribe_email(session, email, now=state().now())
    show(f"{sub.email} is unsubscribed." if changed else f"{sub.email} was already {sub.status}.")


@app.command("delete")
@handle_errors
def delete(
    email: Annotated[str, typer.Argument(help="Email address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a subscriber and their delivery records (privacy requests).

    Example: briefing subscribers delete reader@example.com --yes
    """
    from briefing.db import session_scope
    from briefing.service import subscribers as subscriber_service

    if not yes and not typer.confirm(f"Erase {plain(email)} and their delivery records?"):
        raise typer.Exit(1)
    with session_scope(state().engine) as session:
        sub = subscriber_service.delete_subscriber_email(session, email)
    show(f"Erased {sub.email}.")
