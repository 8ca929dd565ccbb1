"""`briefing preview`, `preflight`, `editions ...`, `note`, `hold`, `release`: an edition for editors.

These read an edition or change its editorial state; sending it lives in `briefing.cli.send`.
"""

import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import (
    DateOpt,
    NewsletterOpt,
    add_row,
    chosen_newsletter,
    console,
    current_setup,
    edition_date,
    handle_errors,
    local,
    new_table,
    newsletter_flag,
    newsletter_zone,
    of_newsletter,
    output_folder,
    parse_date,
    print_json,
    show,
    state,
    styled,
)
from briefing.errors import InvalidInput

if TYPE_CHECKING:
    from datetime import tzinfo

    from briefing.domain import EditionData, LedgerCounts
    from briefing.edition.preflight import PreflightReport
    from briefing.newsletter import NewsletterData
    from briefing.service import editions as edition_service
    from briefing.service.bounce_rates import EditionRates
    from briefing.service.setup import EditionSetup
    from briefing.store import deliveries as ledger

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


def print_preflight(report: "PreflightReport") -> None:
    size = f" (HTML {report.html_bytes / 1024:.0f} KB)."
    if report.ok and not report.warnings:
        show(styled("Preflight passed", "green"), size)
        return
    for problem in report.errors:
        show(styled("error", "bold red"), "   ", problem)
    for problem in report.warnings:
        show(styled("warning", "yellow"), " ", problem)
    if report.errors:
        show(styled("Preflight failed", "red"), size)
    else:
        show(styled("Preflight passed", "green"), " with warnings", size)


def content_source(prepared: "edition_service.Prepared", zone: "tzinfo | None" = None) -> str:
    """Where the content came from, so nobody mistakes a frozen copy for today's queue."""
    if prepared.frozen:
        return f"the frozen copy of {local(prepared.frozen_at, zone)}: what was or will be sent"
    return f"the queue as of {local(prepared.judged_at, zone)}"


def edition_heading(day: date, setup: "EditionSetup", prepared: "edition_service.Prepared") -> str:
    """The first line of a preview, a preflight or a dry run: whose edition, from what, its subject."""
    return (
        f"Edition of {day}{of_newsletter(setup.newsletter)} "
        f"({content_source(prepared, setup.plan.zone)}): {prepared.rendered.subject}"
    )


@handle_errors
def preflight(edition: DateOpt = "", newsletter: NewsletterOpt = "") -> None:
    """Check the edition before it goes out: empty sections, placeholders, size, alt text, links.

    Example: briefing preflight --date 2026-11-30
    Example: briefing preflight --newsletter weekend --date 2026-12-05
    """
    from briefing.db import session_scope
    from briefing.service import editions as edition_service

    setup = current_setup(newsletter)
    day = edition_date(edition, setup)
    with session_scope(state().engine) as session:
        prepared = edition_service.prepare(session, setup, day, now=state().now())
    show(edition_heading(day, setup, prepared))
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
    newsletter: NewsletterOpt = "",
) -> None:
    """Write exactly what will go out: HTML, plain text and the complete message.

    Example: briefing preview --date 2026-11-30 --as ada.reader@example.com --open
    Example: briefing preview --newsletter weekend --date 2026-12-05
    """
    from briefing.service import editions as edition_service

    setup = current_setup(newsletter)
    day = edition_date(edition, setup)
    result = edition_service.preview(state().engine, setup, day, as_email=as_email, clock=state().clock)
    output_folder(out, "--out")
    try:
        paths = edition_service.write_preview(result, out)
    except OSError as exc:
        raise InvalidInput(f"cannot write into {out}: {exc.strerror or exc}", field="--out") from None
    show(edition_heading(day, setup, result.prepared))
    show(f"  preheader: {result.prepared.rendered.preheader}")
    print_preflight(result.prepared.report)
    for kind, path in paths.items():
        show(f"  {kind:5} {path}")
    if screenshot:
        for shot in take_screenshots(paths["html"], out):
            show(f"  png   {shot}")
    if open_:
        import webbrowser

        webbrowser.open(paths["html"].resolve().as_uri())
    if not result.prepared.report.ok:
        raise typer.Exit(1)


def take_screenshots(html: Path, out: Path) -> list[Path]:
    """Whole-email PNGs at phone and desktop width; a warning, not a failure, without Chromium."""
    from briefing.edition import screenshots

    try:
        return [shot.path for shot in screenshots.take_screenshots(html, out.resolve())]
    except screenshots.ScreenshotsUnavailable as exc:
        show(styled("No screenshots", "yellow"), f": {exc}", err=True)
        return []


@editions_app.command("list")
@handle_errors
def editions_list(
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 20,
    newsletter: Annotated[
        str,
        typer.Option("--newsletter", "-n", help="Only this newsletter's editions, by slug (default: all)."),
    ] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List recent editions, newest first, with their newsletter, kind, state and ledger counts.

    Example: briefing editions list
    Example: briefing editions list --newsletter weekend --json
    """
    from sqlmodel import Session

    from briefing.store import deliveries as ledger
    from briefing.store import editions as edition_store
    from briefing.store import newsletters as newsletter_store

    only = chosen_newsletter(newsletter) if newsletter.strip() else None
    with Session(state().engine) as session:
        slugs = {n.id: n.slug for n in newsletter_store.list_newsletters(session)}
        rows = edition_store.list_editions(session, limit=limit, newsletter_id=only.id if only else None)
        listed = [(e, ledger.counts(session, e.id)) for e in rows]
    if as_json:
        print_json(
            {
                "newsletter": slugs.get(e.newsletter_id, ""),
                "edition_date": e.edition_date,
                "kind": e.kind,
                "status": str(e.status),
                "held": e.held,
                "subject": e.subject,
                "sent": c.sent,
                "failed": c.failed,
                "waiting": c.pending + c.deferred + c.claimed,
                "finished_at": e.finished_at,
            }
            for e, c in listed
        )
        return
    columns = ("date", "kind", "status", "subject", "sent", "failed", "waiting", "finished")
    title = f"Editions of {only.slug}" if only else "Editions"
    table = new_table(*columns, title=title) if only else new_table("newsletter", *columns, title=title)
    for e, c in listed:
        cells = (
            e.edition_date.isoformat(),
            e.kind,
            e.status + (" (held)" if e.held and e.status != "held" else ""),
            e.subject,
            c.sent,
            c.failed,
            c.pending + c.deferred + c.claimed,
            local(e.finished_at),
        )
        if only:
            add_row(table, *cells)
        else:
            add_row(table, slugs.get(e.newsletter_id, ""), *cells)
    console.print(table)


@editions_app.command("show")
@handle_errors
def editions_show(
    edition: Annotated[str, typer.Argument(help="Edition date, YYYY-MM-DD.")],
    failed: Annotated[
        bool, typer.Option("--failed", help="List failed, deferred and ambiguous copies.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="While it is sending: one progress bar for all its senders, every second; then the rest.",
        ),
    ] = False,
    newsletter: NewsletterOpt = "",
) -> None:
    """Show one edition: state, counts, bounce and complaint rates, and (with --failed) each failed
    address with its SMTP reply. With --watch, follow a sending edition first (Ctrl-C stops watching).

    Example: briefing editions show 2026-11-30 --failed
    Example: briefing editions show 2026-11-30 --watch
    Example: briefing editions show 2026-12-05 --newsletter weekend
    """
    from briefing.db import session_scope
    from briefing.service import bounce_rates as rate_service
    from briefing.service import editions as edition_service
    from briefing.service.bounce_rates import percent
    from briefing.store import deliveries as ledger
    from briefing.store import editions as edition_store

    day = parse_date(edition, "DATE")
    assert day is not None
    if watch and as_json:
        raise InvalidInput("watches in a terminal; leave out --json", field="--watch")
    chosen = chosen_newsletter(newsletter)
    zone = newsletter_zone(chosen)
    if watch:
        from briefing.cli.progress import watch as watch_edition

        watch_edition(day, chosen)
    with session_scope(state().engine) as session:
        e, counts, ambiguous = edition_service.edition_counts(session, day, newsletter_id=chosen.id)
        rates = rate_service.edition_rates(session, day, newsletter_id=chosen.id)
        last_error = edition_store.last_error(session, e.id)
        detail = (
            ledger.rows(session, e.id, statuses=("failed", "deferred", "ambiguous")) if failed else []
        ) + (ledger.rows(session, e.id, ambiguous_only=True, statuses=("sent", "pending")) if failed else [])
    if as_json:
        _print_edition_json(e, counts, ambiguous, rates, detail, chosen.slug)
        return
    show(f"Edition of {day}{of_newsletter(chosen)}: ", styled(e.status, "bold"))
    show(f"  subject:   {e.subject}")
    show(
        f"  scheduled: {local(e.scheduled_for, zone)}   started: {local(e.started_at, zone)}   "
        f"finished: {local(e.finished_at, zone)}"
    )
    show(
        f"  recipients: {e.snapshot_size}   sent: {counts.sent}   failed: {counts.failed}   "
        f"deferred: {counts.deferred}   skipped: {counts.skipped}   ambiguous: {counts.ambiguous}   "
        f"waiting: {counts.pending + counts.claimed}   sent without a reply at least once: {ambiguous}"
    )
    show(
        f"  bounces:   hard {rates.hard} ({percent(rates.hard_rate)})   soft {rates.soft} "
        f"({percent(rates.soft_rate)})   complaints {rates.complaints} ({percent(rates.complaint_rate)}), "
        f"each of {rates.copies_sent} copies sent"
    )
    if last_error:
        show(f"  last problem: {last_error}")
    if failed:
        table = new_table("email", "status", "attempts", "code", "reply", title="Copies that need attention")
        for r in detail:
            add_row(
                table,
                r.email,
                r.status + (" (no reply once)" if r.was_ambiguous else ""),
                r.attempts,
                r.smtp_code or "",
                r.smtp_reply,
            )
        console.print(table)


def _print_edition_json(
    e: "EditionData",
    counts: "LedgerCounts",
    ambiguous: int,
    rates: "EditionRates",
    detail: "list[ledger.LedgerRow]",
    slug: str,
) -> None:
    from briefing.domain import DeliveryStatus
    from briefing.service import bounce_rates as rate_service

    out = {
        "newsletter": slug,
        "edition_date": e.edition_date.isoformat(),
        "kind": e.kind,
        "status": str(e.status),
        "subject": e.subject,
        "recipients": e.snapshot_size,
        "counts": {s.value: getattr(counts, s.value) for s in DeliveryStatus},
        "sent_without_reply_once": ambiguous,
        "rates": rate_service.as_json(rates),
        "copies_needing_attention": [
            {
                "email": r.email,
                "status": r.status,
                "attempts": r.attempts,
                "smtp_code": r.smtp_code,
                "smtp_reply": r.smtp_reply,
                "was_ambiguous": r.was_ambiguous,
            }
            for r in detail
        ],
    }
    sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")


@handle_errors
def note(
    text: Annotated[str, typer.Argument(help="The note, in Markdown; an empty string removes it.")],
    edition: DateOpt = "",
    newsletter: NewsletterOpt = "",
) -> None:
    """Set the editor's note shown near the top of one edition.

    Example: briefing note "Polls open at 7am; we will have results from 11pm." --date 2026-11-30
    Example: briefing note "Our pick of the week." --newsletter weekend
    """
    from briefing.db import session_scope
    from briefing.service import editions as edition_service

    setup = current_setup(newsletter)
    day = edition_date(edition, setup)
    with session_scope(state().engine) as session:
        edition_service.set_note(session, day, text, newsletter_id=setup.newsletter.id, now=state().now())
    has = "a note" if text.strip() else "no note"
    show(f"The edition of {day}{of_newsletter(setup.newsletter)} has {has}.")


@handle_errors
def hold(
    edition: Annotated[str, typer.Argument(help="Edition date (default: the next edition).")] = "",
    newsletter: NewsletterOpt = "",
) -> None:
    """Hold an edition (breaking news): it is not sent until released, and expires by the usual rule.

    Example: briefing hold 2026-11-30
    Example: briefing hold 2026-12-05 --newsletter weekend
    """
    day, chosen = _set_hold(edition, newsletter, held=True)
    show(
        f"The edition of {day}{of_newsletter(chosen)} is on hold. "
        f"Release it with `briefing release {day}{newsletter_flag(chosen)}`."
    )


@handle_errors
def release(
    edition: Annotated[str, typer.Argument(help="Edition date (default: the next edition).")] = "",
    newsletter: NewsletterOpt = "",
) -> None:
    """Release a held edition; if its send time has passed but the window is open, it goes out.

    Example: briefing release 2026-11-30
    Example: briefing release 2026-12-05 --newsletter weekend
    """
    day, chosen = _set_hold(edition, newsletter, held=False)
    show(
        f"The edition of {day}{of_newsletter(chosen)} is released; the scheduler sends it "
        f"(or run `briefing send --date {day}{newsletter_flag(chosen)}`)."
    )


def _set_hold(edition: str, newsletter: str, *, held: bool) -> "tuple[date, NewsletterData]":
    from briefing.db import session_scope
    from briefing.service import editions as edition_service

    setup = current_setup(newsletter)
    day = edition_date(edition, setup)
    with session_scope(state().engine) as session:
        edition_service.hold(session, day, held, newsletter_id=setup.newsletter.id, now=state().now())
    return day, setup.newsletter
