"""Special editions: breaking news sent outside the calendar, beside the regular edition of the day.

A special is an Edition row of kind special-N for its (newsletter, date): its own ledger, its own
Message-IDs and its own archive page, so it can never touch the regular edition of that date. Its
editor gives the subject, the words (a Markdown note) and the stories; `edition_content.prepare`
composes it from exactly those, never from the day's queue. Every door (the CLI, the editors' web
form) creates, rehearses and cancels specials through these functions, so the rules live here once.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing import inputs
from briefing.domain import Clock, EditionData, EditionStatus, StoryStatus
from briefing.errors import Conflict, InvalidInput, NotFound, PreflightFailed
from briefing.newsletter import check_kind, is_special, special_kind, special_number
from briefing.reader_copy import personalise
from briefing.service.edition_content import Prepared, prepare
from briefing.service.editions import Preview
from briefing.service.setup import EditionSetup, MailFactory, sample_recipient
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from briefing.store import stories as story_store
from briefing.store import subscriptions as subscription_store

__all__ = [
    "MAX_NOTE",
    "MAX_STORIES",
    "MAX_SUBJECT",
    "SpecialDraft",
    "cancel_special",
    "create_special",
    "list_specials",
    "parse_story_ids",
    "rehearse_special",
]

MAX_SUBJECT = inputs.MAX_HEADLINE  # the Edition.subject column, and what inboxes can show
MAX_NOTE = 5000  # the Edition.note column
MAX_STORIES = 50
MAX_TRIES = 20  # numbers tried when other editors make specials of the same date at the same moment
LIST_WINDOW = 500  # recent editions looked through for specials
# Statuses a special can still be cancelled in: nothing of it is frozen, nobody has been sent it.
CANCELLABLE = (EditionStatus.SCHEDULED, EditionStatus.HELD)


@dataclass(frozen=True, slots=True)
class SpecialDraft:
    """A special as it would be made and sent, before anything is stored."""

    edition: EditionData
    prepared: Prepared
    recipients: int  # readers of the newsletter who take specials
    preview: Preview


def parse_story_ids(value: str | Iterable[str], *, field: str = "stories") -> list[int]:
    """Story ids typed as "12,14" (or one per checkbox); order kept, repeats dropped."""
    pieces = value.split(",") if isinstance(value, str) else list(value)
    ids: list[int] = []
    for piece in pieces:
        text = str(piece).strip()
        if not text:
            continue
        story_id = inputs.record_id(text, field=field)
        if story_id not in ids:
            ids.append(story_id)
        if len(ids) > MAX_STORIES:
            raise InvalidInput(f"at most {MAX_STORIES} stories go in a special", field=field)
    return ids


def create_special(
    session: Session,
    setup: EditionSetup,
    *,
    edition_date: date,
    subject: str,
    note: str,
    story_ids: Sequence[int],
    send_at: datetime | None,
    now: datetime,
) -> EditionData:
    """Make the next special of a newsletter's date, checked as its send will check it.

    `send_at` is when it goes (the scheduler sends it then); None keeps it until an editor sends it
    (the web form's "send now", which shows the preview first). The number is 1 + the highest the
    date has. Two editors making one at the same moment both get a number: the (newsletter, date,
    kind) key is unique, and the one whose row is not its own takes the next. Nothing is stored
    unless it would pass preflight: the caller's transaction ends with the refusal.
    """
    edition = _make(
        session,
        setup,
        edition_date=edition_date,
        subject=subject,
        note=note,
        story_ids=story_ids,
        send_at=send_at,
        now=now,
    )
    prepared = prepare(session, setup, edition.edition_date, now=now, kind=edition.kind)
    if not prepared.report.ok:
        raise PreflightFailed(
            f"the special edition of {edition.edition_date} has preflight errors and was not made",
            [str(p) for p in prepared.report.errors],
        )
    return edition


def _make(
    session: Session,
    setup: EditionSetup,
    *,
    edition_date: date,
    subject: str,
    note: str,
    story_ids: Sequence[int],
    send_at: datetime | None,
    now: datetime,
) -> EditionData:
    newsletter = setup.newsletter
    if newsletter.paused:
        raise Conflict(
            f"the newsletter {newsletter.slug!r} is paused; resume it before sending a special",
            field="newsletter",
        )
    text_subject = inputs.one_line(subject, field="subject", max_len=MAX_SUBJECT, required=True)
    text_note = inputs.multi_line(note, field="note", max_len=MAX_NOTE)
    day = inputs.local_date(edition_date.isoformat(), field="date")
    ids = _checked_stories(session, setup, story_ids)
    if not text_note and not ids:
        raise InvalidInput("give the special a note or at least one story", field="stories")
    when = _checked_send_at(setup, day, send_at, now)

    edition = _new_special(session, setup, day, when, now)
    edition_store.set_special_content(session, edition.id, subject=text_subject, story_ids=ids, now=now)
    return edition_store.set_note(session, edition.id, text_note, now=now)


def rehearse_special(
    engine: sa.Engine,
    setup: EditionSetup,
    *,
    edition_date: date,
    subject: str,
    note: str,
    story_ids: Sequence[int],
    send_at: datetime | None,
    clock: Clock,
) -> SpecialDraft:
    """The special as `create_special` would make it, its preview and its readers; nothing is kept.

    Made inside a transaction that is rolled back, so an editor sees the subject, the stories,
    the preflight and the exact message before saying "send it", and a refusal leaves no trace.
    A preflight failure is returned (in `prepared.report`), not raised, so it can be shown.
    """
    now = clock.now()
    with Session(engine) as session:
        edition = _make(
            session,
            setup,
            edition_date=edition_date,
            subject=subject,
            note=note,
            story_ids=story_ids,
            send_at=send_at,
            now=now,
        )
        prepared = prepare(session, setup, edition_date, now=now, kind=edition.kind)
        readers = subscription_store.readers_of(session, setup.newsletter.id, specials_only=True, limit=0)
        session.rollback()
    rendered = prepared.rendered
    factory = MailFactory(
        setup, edition_date, rendered.subject, rendered.html, rendered.text, clock, kind=edition.kind
    )
    recipient = sample_recipient(setup)
    html, text = personalise(rendered, recipient)
    eml, _ = factory.message(recipient)
    preview = Preview(prepared=prepared, html=html, text=text, eml=eml, recipient=recipient)
    return SpecialDraft(edition, prepared, readers.count, preview)


def list_specials(
    session: Session, *, newsletter_id: int | None = None, limit: int = 50
) -> list[EditionData]:
    """The newest special editions first, of one newsletter or of all."""
    recent = edition_store.list_editions(session, limit=LIST_WINDOW, newsletter_id=newsletter_id)
    return [e for e in recent if is_special(e.kind)][:limit]


def cancel_special(
    session: Session, *, newsletter_id: int, edition_date: date, kind: str, now: datetime
) -> EditionData:
    """Call a special off before it is frozen; once its first copy may be out it can only finish."""
    wanted = check_kind(kind)
    if not is_special(wanted):
        raise InvalidInput(
            "only a special edition is cancelled here; hold the regular one (briefing hold)", field="kind"
        )
    edition = edition_store.get_edition(session, edition_date, newsletter_id=newsletter_id, kind=wanted)
    if edition.status == EditionStatus.CANCELLED:
        return edition
    if edition.status not in CANCELLABLE or edition.frozen_at is not None:
        raise Conflict(
            f"the special {wanted} of {edition_date} is {edition.status}; its content is fixed and it "
            "can no longer be cancelled",
            field="kind",
        )
    return edition_store.set_status(
        session, edition.id, EditionStatus.CANCELLED, error="cancelled by an editor", now=now
    )


# --------------------------------------------------------------------------- the rules


def _checked_stories(session: Session, setup: EditionSetup, story_ids: Sequence[int]) -> list[int]:
    ids = parse_story_ids([str(i) for i in story_ids])
    newsletter = setup.newsletter
    for story_id in ids:
        try:
            story = story_store.get_story(session, story_id)
        except NotFound:
            raise InvalidInput(f"there is no story {story_id}", field="stories") from None
        if story.newsletter_id != newsletter.id:
            owner = newsletter_store.get_newsletter(session, story.newsletter_id).slug
            raise InvalidInput(
                f"story {story_id} is in the queue of {owner!r}, not of {newsletter.slug!r}",
                field="stories",
            )
        if story.status == StoryStatus.DROPPED:
            raise InvalidInput(f"story {story_id} was dropped; queue it again first", field="stories")
    return ids


def _checked_send_at(
    setup: EditionSetup, day: date, send_at: datetime | None, now: datetime
) -> datetime | None:
    if send_at is None:
        return None
    when = inputs.moment(send_at, field="send_at")
    zone = setup.plan.zone
    local_day = when.astimezone(zone).date()
    if local_day != day:
        raise InvalidInput(
            f"{when.astimezone(zone):%Y-%m-%d %H:%M} ({zone.key}) is not on the edition's date {day}",
            field="send_at",
        )
    if when < now.replace(second=0, microsecond=0):
        raise InvalidInput(
            f"{when.astimezone(zone):%H:%M} ({zone.key}) has already passed; send it now instead",
            field="send_at",
        )
    return when


def _new_special(
    session: Session, setup: EditionSetup, day: date, send_at: datetime | None, now: datetime
) -> EditionData:
    # A row made here carries this claim as its subject until it is filled in, in the same
    # transaction; a row found under the number with any other subject is someone else's.
    claim = f"(special being made {secrets.token_hex(8)})"
    for _ in range(MAX_TRIES):
        number = _next_number(session, setup, day)
        made = edition_store.ensure_edition(
            session,
            day,
            newsletter_id=setup.newsletter.id,
            kind=special_kind(number),
            now=now,
            scheduled_for=send_at,
            subject=claim,
        )
        if made.subject == claim:
            return made
    raise Conflict(f"too many special editions are being made for {day} at once; try again", field="date")


def _next_number(session: Session, setup: EditionSetup, day: date) -> int:
    editions = edition_store.editions_of_date(session, day, newsletter_id=setup.newsletter.id)
    return 1 + max((special_number(e.kind) or 0 for e in editions), default=0)
