"""Editions: one row per (newsletter, date, kind), with the frozen content every copy is built from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import EditionData, EditionStatus
from briefing.errors import Conflict, NotFound
from briefing.models import Edition, EditionVariant
from briefing.newsletter import REGULAR

# Statuses in which the content is fixed and a send may (re)start.
FROZEN_STATUSES = (
    EditionStatus.FROZEN,
    EditionStatus.SENDING,
    EditionStatus.PAUSED,
    EditionStatus.PARTIAL,
    EditionStatus.HALTED,
)
FINAL_STATUSES = (EditionStatus.SENT, EditionStatus.EXPIRED, EditionStatus.CANCELLED)


def to_data(row: Edition) -> EditionData:
    assert row.id is not None
    return EditionData(
        id=row.id,
        edition_date=row.edition_date,
        newsletter_id=row.newsletter_id,
        kind=row.kind,
        status=row.status,
        subject=row.subject,
        preheader=row.preheader,
        story_ids=tuple(row.story_ids or ()),
        scheduled_for=row.scheduled_for,
        started_at=row.started_at,
        finished_at=row.finished_at,
        frozen_at=row.frozen_at,
        held=row.held,
        snapshot_size=row.snapshot_size,
        note=row.note,
        updated_at=row.updated_at,
    )


def find_edition(
    session: Session, edition_date: date, *, newsletter_id: int, kind: str = REGULAR
) -> EditionData | None:
    row = _find(session, edition_date, newsletter_id, kind)
    return to_data(row) if row else None


def get_edition(
    session: Session, edition_date: date, *, newsletter_id: int, kind: str = REGULAR
) -> EditionData:
    row = _find(session, edition_date, newsletter_id, kind)
    if row is None:
        raise NotFound(f"no edition for {_label(edition_date, kind)}", field="date")
    return to_data(row)


def edition_by_id(session: Session, edition_id: int) -> EditionData:
    return to_data(_row(session, edition_id))


def editions_of_date(session: Session, edition_date: date, *, newsletter_id: int) -> list[EditionData]:
    """The regular edition of a date and its specials, in the order they were made."""
    stmt = select(Edition).where(Edition.edition_date == edition_date, Edition.newsletter_id == newsletter_id)
    return [to_data(r) for r in session.exec(stmt.order_by(col(Edition.id))).all()]


def lock_edition(
    session: Session, edition_date: date, *, newsletter_id: int, kind: str = REGULAR
) -> EditionData:
    """The edition, its row locked until the transaction ends (PostgreSQL; SQLite has one writer).

    Senders that start together take turns here: the first freezes and snapshots, the others then
    find the edition sending and join it instead of freezing it a second time.
    """
    stmt = (
        select(Edition)
        .where(
            Edition.edition_date == edition_date, Edition.newsletter_id == newsletter_id, Edition.kind == kind
        )
        .with_for_update()
    )
    # populate_existing: what the previous holder of the lock committed, not a cached copy.
    row = session.exec(stmt.execution_options(populate_existing=True)).first()
    if row is None:
        raise NotFound(f"no edition for {_label(edition_date, kind)}", field="date")
    return to_data(row)


def ensure_edition(
    session: Session,
    edition_date: date,
    *,
    newsletter_id: int,
    kind: str = REGULAR,
    now: datetime,
    scheduled_for: datetime | None = None,
    subject: str = "",
) -> EditionData:
    """Return the edition for a (newsletter, date, kind), creating it if needed.

    That triple is unique in the database, so two processes racing here end up with one row: the
    loser's INSERT fails inside a savepoint and it reads the winner's row.
    """
    row = _find(session, edition_date, newsletter_id, kind)
    if row is not None:
        if scheduled_for is not None and row.scheduled_for is None:
            row.scheduled_for = scheduled_for
            session.add(row)
            session.flush()
        return to_data(row)
    try:
        with session.begin_nested():
            row = Edition(
                newsletter_id=newsletter_id,
                edition_date=edition_date,
                kind=kind,
                subject=subject,
                scheduled_for=scheduled_for,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
    except sa.exc.IntegrityError:
        row = _find(session, edition_date, newsletter_id, kind)
        assert row is not None
    session.flush()
    return to_data(row)


def list_editions(
    session: Session, *, limit: int = 30, statuses: Sequence[str] = (), newsletter_id: int | None = None
) -> list[EditionData]:
    """The newest editions first (of one newsletter, or of all when `newsletter_id` is None)."""
    stmt = select(Edition)
    if newsletter_id is not None:
        stmt = stmt.where(Edition.newsletter_id == newsletter_id)
    if statuses:
        stmt = stmt.where(col(Edition.status).in_(list(statuses)))
    rows = session.exec(
        stmt.order_by(col(Edition.edition_date).desc(), col(Edition.id).desc()).limit(limit)
    ).all()
    return [to_data(r) for r in rows]


def frozen_content(session: Session, edition_id: int) -> tuple[str, str]:
    """(html template, text template) as frozen; a restart sends exactly these."""
    row = session.get(Edition, edition_id)
    if row is None:
        raise NotFound(f"no edition with id {edition_id}", field="edition")
    return row.html_template, row.text_template


def frozen_variants(session: Session, edition_id: int) -> dict[str, tuple[str, str, str]]:
    """Each section set's frozen (subject, html, text), by its key; the whole edition is not among them."""
    rows = session.exec(select(EditionVariant).where(EditionVariant.edition_id == edition_id)).all()
    return {r.variant: (r.subject, r.html_template, r.text_template) for r in rows}


def freeze_variants(session: Session, edition_id: int, variants: dict[str, tuple[str, str, str]]) -> int:
    """Store the renderings of the section sets the ledger holds; a set already frozen is kept."""
    have = set(frozen_variants(session, edition_id))
    added = 0
    for key, (subject, html, text) in variants.items():
        if key and key not in have:
            session.add(
                EditionVariant(
                    edition_id=edition_id,
                    variant=key,
                    subject=subject,
                    html_template=html,
                    text_template=text,
                )
            )
            added += 1
    session.flush()
    return added


def freeze(
    session: Session,
    edition_id: int,
    *,
    subject: str,
    preheader: str,
    html: str,
    text: str,
    story_ids: Sequence[int],
    featured_urls: Sequence[str] = (),
    now: datetime,
) -> EditionData:
    """Fix the content before the first message. Only a scheduled edition can be frozen."""
    row = _row(session, edition_id)
    if row.status != EditionStatus.SCHEDULED:
        raise Conflict(f"the edition of {row.edition_date} is {row.status}; its content is already fixed")
    if row.held:
        raise Conflict(f"the edition of {row.edition_date} is on hold; release it first (briefing release)")
    row.subject = subject
    row.preheader = preheader
    row.html_template = html
    row.text_template = text
    row.story_ids = list(story_ids)
    row.featured_urls = list(featured_urls)
    row.status = EditionStatus.FROZEN.value
    row.frozen_at = now
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row)


def set_status(
    session: Session,
    edition_id: int,
    status: EditionStatus,
    *,
    error: str | None = None,
    started: bool = False,
    finished: bool = False,
    now: datetime,
) -> EditionData:
    row = _row(session, edition_id)
    row.status = status.value
    if error is not None:
        row.last_error = error[:2000]
    if started and row.started_at is None:
        row.started_at = now
    if finished:
        row.finished_at = now
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row)


def set_snapshot_size(session: Session, edition_id: int, size: int, *, now: datetime) -> None:
    row = _row(session, edition_id)
    row.snapshot_size = size
    row.updated_at = now
    session.add(row)


def set_counts(session: Session, edition_id: int, *, sent: int, failed: int, now: datetime) -> None:
    row = _row(session, edition_id)
    row.sent_count = sent
    row.failed_count = failed
    row.updated_at = now
    session.add(row)


def set_hold(session: Session, edition_id: int, held: bool, *, now: datetime) -> EditionData:
    row = _row(session, edition_id)
    if row.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
        raise Conflict(f"the edition of {row.edition_date} is already {row.status}; it can no longer be held")
    row.held = held
    row.status = (EditionStatus.HELD if held else EditionStatus.SCHEDULED).value
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row)


def set_special_content(
    session: Session, edition_id: int, *, subject: str, story_ids: Sequence[int], now: datetime
) -> EditionData:
    """A special's subject and stories, as its editor gave them; only before it is frozen."""
    row = _row(session, edition_id)
    if row.kind == REGULAR:
        raise Conflict(
            f"the edition of {row.edition_date} is the regular one; it takes its stories from the queue"
        )
    if row.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
        raise Conflict(
            f"the edition of {_label(row.edition_date, row.kind)} is {row.status}; its content is fixed"
        )
    row.subject = subject
    row.story_ids = list(story_ids)
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row)


def set_note(session: Session, edition_id: int, note: str, *, now: datetime) -> EditionData:
    row = _row(session, edition_id)
    if row.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
        raise Conflict(f"the edition of {row.edition_date} is {row.status}; its content is fixed")
    row.note = note
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row)


def last_error(session: Session, edition_id: int) -> str:
    return _row(session, edition_id).last_error


def recent_featured_urls(session: Session, *, before: date, editions: int, newsletter_id: int) -> list[str]:
    """URLs the newsletter's last N editions before a date linked (the "not featured recently" rule)."""
    if editions <= 0:
        return []
    rows = session.exec(
        select(Edition)
        .where(
            Edition.newsletter_id == newsletter_id,
            col(Edition.edition_date) < before,
            col(Edition.status).in_(["sent", "partial", "sending", "paused", "halted"]),
        )
        .order_by(col(Edition.edition_date).desc())
        .limit(editions)
    ).all()
    return [url for r in rows for url in (r.featured_urls or [])]


def _find(session: Session, edition_date: date, newsletter_id: int, kind: str) -> Edition | None:
    return session.exec(
        select(Edition).where(
            Edition.edition_date == edition_date, Edition.newsletter_id == newsletter_id, Edition.kind == kind
        )
    ).first()


def _label(edition_date: date, kind: str) -> str:
    return edition_date.isoformat() if kind == REGULAR else f"{edition_date.isoformat()} ({kind})"


def _row(session: Session, edition_id: int) -> Edition:
    row = session.get(Edition, edition_id)
    if row is None:
        raise NotFound(f"no edition with id {edition_id}", field="edition")
    return row
