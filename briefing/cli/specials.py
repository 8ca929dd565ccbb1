"""`briefing special` (make a breaking-news edition and send it now or at a time) and `briefing specials ...`.

A special never touches the regular edition of its date: it is its own edition (special-1,
special-2, ...) with its own ledger. The command shows what would go out before anything is
stored, then stores it and either sends it at once, as `briefing send` does, or leaves it to the
scheduler's minute watch at the time given.
"""

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import (
    add_row,
    console,
    fail,
    handle_errors,
    new_table,
    output_folder,
    parse_date,
    show,
    state,
    styled,
)
from briefing.cli.editions import print_preflight
from briefing.cli.send import (
    DEFERRED_EXIT,
    OTHERS_SENDING_EXIT,
    SENDER_RUNNING_EXIT,
    UNFINISHED_EXIT,
    print_report,
)
from briefing.cli.stopping import STOPPED_EXITS, Stopper, wait_stoppable
from briefing.errors import BriefingError, InvalidInput, LockHeld, PreflightFailed

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from briefing.domain import EditionData
    from briefing.service import editions as edition_service
    from briefing.service.setup import EditionSetup
    from briefing.service.specials import SpecialDraft

specials_app = typer.Typer(
    help="Special editions: breaking news outside the calendar.\n\nExample: briefing specials list",
    no_args_is_help=True,
)

# The service names its fields; the command names the options they came from.
OPTIONS = {
    "newsletter": "--newsletter",
    "subject": "--subject",
    "note": "--note",
    "stories": "--stories",
    "date": "--date",
}
MAX_NOTE_FILE = 64 * 1024  # bytes; the note itself may hold 5000 characters


def register(app: typer.Typer) -> None:
    app.command("special")(special)
    app.add_typer(specials_app, name="specials")


@contextlib.contextmanager
def _as_options(send_field: str) -> Iterator[None]:
    """Errors from the service name the option the person typed (`--stories`, not `stories`)."""
    try:
        yield
    except BriefingError as exc:
        names = {**OPTIONS, "send_at": send_field}
        if exc.field in names:
            exc.field = names[exc.field]
        raise


def _setup(slug: str) -> "EditionSetup":
    from sqlmodel import Session

    from briefing import wiring
    from briefing.store import newsletters as newsletter_store

    with _as_options("--at"), Session(state().engine) as session:
        found = newsletter_store.get_by_slug(session, slug)
    return wiring.edition_setup_now(state().settings, state().engine, newsletter=found)


def _zone_name(zone: "ZoneInfo") -> str:
    return getattr(zone, "key", str(zone))


def _local(moment: datetime | None, zone: "ZoneInfo") -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""


def _send_at(day: date, at: str, zone: "ZoneInfo") -> datetime:
    from briefing import calendar as cal

    try:
        wall = cal.parse_local_time(at.strip())
    except ValueError as exc:
        raise InvalidInput(str(exc), field="--at") from None
    return cal.local_send_instant(day, wall, zone)


def _note(note: str, note_file: Path | None) -> str:
    if note_file is None:
        return note
    if note:
        raise InvalidInput("give the note as --note or --note-file, not both", field="--note-file")
    try:
        if note_file.stat().st_size > MAX_NOTE_FILE:
            raise InvalidInput(f"{note_file} is larger than {MAX_NOTE_FILE // 1024} KB", field="--note-file")
        return note_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{note_file} is not UTF-8 text", field="--note-file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {note_file}: {exc.strerror or exc}", field="--note-file") from None


@handle_errors
def special(
    newsletter: Annotated[str, typer.Option("--newsletter", help="Whose special: the newsletter's slug.")],
    subject: Annotated[str, typer.Option("--subject", help="The email's subject line (one line).")],
    note: Annotated[str, typer.Option("--note", help="The breaking-news text, in Markdown.")] = "",
    note_file: Annotated[
        Path | None, typer.Option("--note-file", help="Read the note from this UTF-8 file.")
    ] = None,
    stories: Annotated[
        str, typer.Option("--stories", help="Ids of that newsletter's stories, in order: 12,14.")
    ] = "",
    now_: Annotated[bool, typer.Option("--now", help="Send it as soon as it is made.")] = False,
    at: Annotated[
        str, typer.Option("--at", help="Send it at this local time (HH:MM, the newsletter's zone).")
    ] = "",
    edition: Annotated[
        str,
        typer.Option("--date", help="Edition date, YYYY-MM-DD (default: today, newsletter's zone)."),
    ] = "",
    preview_to: Annotated[
        Path | None,
        typer.Option("--preview-to", help="Also write briefing.html, .txt and .eml of it into this folder."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="With --now: send without asking first.")] = False,
) -> None:
    """Make a special edition (breaking news) and send it now or at a time.

    It is its own edition beside the regular one of the date (special-1,
    special-2, ...), sent only to the readers who take specials; the regular
    edition, its ledger and its state are never touched. Nothing is stored
    until the preview passes preflight.

    --at leaves it to the scheduler (`briefing schedule`), which sends it then.

    Exit codes with --now are those of `briefing send`: 0 sent, 1 an error,
    2 paused or partly sent, 3 other senders send the rest, 4 only deferred
    copies remain, 73 another send on this SQLite database.

    Example: briefing special --newsletter briefing --subject "The PM resigns" --stories 12,14 --now --yes
    Example: briefing special --newsletter weekend --subject "Results" --note-file results.md --at 23:30
    """
    from briefing.service import specials as special_service

    if now_ and at:
        raise InvalidInput("choose --now or --at HH:MM, not both", field="--at")
    if not now_ and not at.strip():
        raise InvalidInput("say when: --now, or --at HH:MM in the newsletter's zone", field="--at")
    setup = _setup(newsletter)
    zone = setup.plan.zone
    now = state().now()
    day = parse_date(edition, "--date") or now.astimezone(zone).date()
    send_at = now if now_ else _send_at(day, at, zone)
    text = _note(note, note_file)
    ids = special_service.parse_story_ids(stories, field="--stories")
    if preview_to is not None:
        output_folder(preview_to, "--preview-to")
    when = "--now" if now_ else "--at"
    with _as_options(when):
        draft = special_service.rehearse_special(
            state().engine,
            setup,
            edition_date=day,
            subject=subject,
            note=text,
            story_ids=ids,
            send_at=send_at,
            clock=state().clock,
        )
    _print_draft(draft, setup, zone, now_)
    if preview_to is not None:
        _write_preview(draft.preview, preview_to)
    if not draft.prepared.report.ok:
        raise fail(f"the special of {day} has preflight errors; nothing was made or sent")
    if now_ and not yes:
        typer.confirm(f"Send it now to {draft.recipients} readers?", abort=True)

    from briefing.db import session_scope

    if now_:
        send_at = state().now()  # the moment it is made, however long the question took
    with _as_options(when), session_scope(state().engine) as session:
        made = special_service.create_special(
            session,
            setup,
            edition_date=day,
            subject=subject,
            note=text,
            story_ids=ids,
            send_at=send_at,
            now=state().now(),
        )
    label = f"{made.kind} of {day}"
    if not now_:
        show(
            styled(
                f"The special {label} is scheduled for {_local(send_at, zone)} ({_zone_name(zone)}).", "green"
            )
        )
        show("The scheduler (`briefing schedule`) sends it then; cancel it with")
        show(f"  briefing specials cancel {day} {made.kind} --newsletter {setup.newsletter.slug}")
        return
    _send_now(setup, made)


def _print_draft(draft: "SpecialDraft", setup: "EditionSetup", zone: "ZoneInfo", now_: bool) -> None:
    edition, prepared = draft.edition, draft.prepared
    name = setup.newsletter.name or setup.newsletter.slug
    show(f"Special edition {edition.kind} of {edition.edition_date} ({name}): {prepared.rendered.subject}")
    when = "now" if now_ else f"at {_local(edition.scheduled_for, zone)} ({_zone_name(zone)})"
    show(f"  goes:       {when}")
    show(f"  preheader:  {prepared.rendered.preheader}")
    if edition.note:
        show(f"  note:       {len(edition.note)} characters")
    if prepared.briefing.stories:
        show("  stories:")
        for story in prepared.briefing.stories:
            show(f"    {story.id:>6}  {story.headline}")
    else:
        show("  stories:    none (the note alone)")
    show(f"  recipients: {draft.recipients} active readers who take specials")
    print_preflight(prepared.report)


def _write_preview(preview: "edition_service.Preview", out: Path) -> None:
    from briefing.service import editions as edition_service

    try:
        paths = edition_service.write_preview(preview, out)
    except OSError as exc:
        raise InvalidInput(f"cannot write into {out}: {exc.strerror or exc}", field="--preview-to") from None
    for kind, path in paths.items():
        show(f"  {kind:5} {path}")


def _send_now(setup: "EditionSetup", made: "EditionData") -> None:
    """As `briefing send` does: one sender per SQLite file, signals stop it cleanly, the same report."""
    from briefing.locks import acquire_send_lock
    from briefing.service import editions as edition_service
    from briefing.wiring import transport

    clock = state().clock
    try:
        lock = acquire_send_lock(state().settings.database_url, clock=clock)
    except LockHeld as exc:
        raise fail(f"{exc}; SQLite takes one sender (PostgreSQL takes many)", SENDER_RUNNING_EXIT) from None
    stopper = Stopper()
    mail = transport(state().settings, clock)
    outcome: list[edition_service.SendOutcome] = []
    error: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(
                edition_service.send_edition(
                    state().engine,
                    setup,
                    made.edition_date,
                    mail,
                    kind=made.kind,
                    stop=stopper.stop,
                    clock=clock,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the command's thread
            error.append(exc)
        finally:
            done.set()

    def stopping(name: str) -> None:
        show(f"Stopping on {name}: no new copy starts; the ones in flight finish and are recorded.", err=True)

    try:
        with stopper:
            threading.Thread(target=work, name="briefing-special", daemon=True).start()
            finished = wait_stoppable(done, stopper, clock, on_stopping=stopping)
        if not finished:
            raise fail(
                "stopped before the copies in flight were answered; the next send settles them",
                STOPPED_EXITS.get(stopper.signum, 1),
            )
        if error:
            raise error[0]
    except PreflightFailed as exc:
        for problem in exc.problems:
            show(styled("error", "bold red"), "   ", problem)
        raise
    finally:
        if not stopper.abandoned:
            mail.close()
        if lock is not None:
            lock.release()
    result = outcome[0]
    if result.report is not None:
        print_report(result.report)
    status = result.edition.status
    show(styled(result.message, "green" if status == "sent" else "yellow"))
    if status != "sent" and stopper.signum:
        raise typer.Exit(stopper.exit_code)
    if status in ("paused", "partial", "halted"):
        raise typer.Exit(UNFINISHED_EXIT)
    if status != "sent" and result.waiting_for == "others":
        raise typer.Exit(OTHERS_SENDING_EXIT)
    if status != "sent" and result.waiting_for == "deferred":
        raise typer.Exit(DEFERRED_EXIT)
    if status == "sending" and result.report is not None:
        raise typer.Exit(UNFINISHED_EXIT)


# --------------------------------------------------------------------------- specials list / cancel


@specials_app.command("list")
@handle_errors
def specials_list(
    newsletter: Annotated[
        str, typer.Option("--newsletter", help="Only this newsletter's specials (default: all).")
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List recent special editions, newest first, with their state and copies sent.

    Example: briefing specials list --newsletter weekend
    """
    from sqlmodel import Session

    from briefing.service import specials as special_service
    from briefing.store import deliveries as ledger
    from briefing.store import newsletters as newsletter_store

    with _as_options("--at"), Session(state().engine) as session:
        chosen = newsletter_store.get_by_slug(session, newsletter) if newsletter.strip() else None
        slugs = {n.id: n.slug for n in newsletter_store.list_newsletters(session)}
        found = special_service.list_specials(
            session, newsletter_id=chosen.id if chosen else None, limit=limit
        )
        counts = {e.id: ledger.counts(session, e.id) for e in found}
    if as_json:
        out = [
            {
                "newsletter": slugs.get(e.newsletter_id, ""),
                "edition_date": e.edition_date.isoformat(),
                "kind": e.kind,
                "status": str(e.status),
                "subject": e.subject,
                "scheduled_for": e.scheduled_for.isoformat() if e.scheduled_for else None,
                "sent": counts[e.id].sent,
                "failed": counts[e.id].failed,
            }
            for e in found
        ]
        sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
        return
    zone = state().settings.zone
    table = new_table(
        "newsletter",
        "date",
        "kind",
        "status",
        "subject",
        "scheduled",
        "sent",
        "failed",
        title="Special editions",
    )
    for e in found:
        c = counts[e.id]
        add_row(
            table,
            slugs.get(e.newsletter_id, ""),
            e.edition_date.isoformat(),
            e.kind,
            e.status,
            e.subject,
            _local(e.scheduled_for, zone),
            c.sent,
            c.failed,
        )
    console.print(table)


@specials_app.command("cancel")
@handle_errors
def specials_cancel(
    edition: Annotated[str, typer.Argument(help="Edition date, YYYY-MM-DD.")],
    kind: Annotated[str, typer.Argument(help="Which special: special-1, special-2, ...")],
    newsletter: Annotated[
        str, typer.Option("--newsletter", help="Whose special (default: the first newsletter).")
    ] = "",
) -> None:
    """Cancel a special edition before it starts sending; once it has started it can only finish.

    Example: briefing specials cancel 2026-11-30 special-1 --newsletter weekend
    """
    from briefing.db import session_scope
    from briefing.service import specials as special_service
    from briefing.store import newsletters as newsletter_store

    day = parse_date(edition, "DATE")
    assert day is not None
    with _as_options("--at"), session_scope(state().engine) as session:
        chosen = (
            newsletter_store.get_by_slug(session, newsletter)
            if newsletter.strip()
            else newsletter_store.primary(session)
        )
        try:
            cancelled = special_service.cancel_special(
                session, newsletter_id=chosen.id, edition_date=day, kind=kind, now=state().now()
            )
        except BriefingError as exc:
            if exc.field == "kind":
                exc.field = "KIND"
            raise
    show(
        f"The special {cancelled.kind} of {day} ({chosen.slug}) is {cancelled.status}; nothing more is sent."
    )
