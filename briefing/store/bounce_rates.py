"""Bounces and complaints per edition, counted once per reader, with the copies they are a share of.

What counts, for one edition:
- copies sent: the edition's ledger rows the SMTP server answered for or took: `sent`, `ambiguous`
  (handed over, never confirmed), and `failed` with an SMTP reply code. Rows still waiting, skipped
  (the reader left before the send), or refused on our side before any server saw them (no code)
  are not copies sent;
- a hard bounce: a `hard` bounce event about the edition, or the ledger's own refusal of the copy
  with a 5xx (the refusals the relay judge held against the reader; those it blamed on the relay went
  back to the queue and are not `failed`);
- a soft bounce: a `soft` bounce event, or a copy the server kept refusing with a 4xx until the send
  gave up on it (`failed` with a 4xx);
- a complaint: a `complaint` event about the edition.

Each reader counts once per edition: a DSN and the ledger's refusal of the same copy are one hard
bounce, and a reader with both a soft and a hard bounce counts as hard only, so hard + soft never
passes the readers who bounced. A reader who bounced and complained counts in both.

Each function below is one statement, for one edition or for many: no query per edition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session

from briefing.domain import DeliveryStatus
from briefing.models import BounceEvent, Delivery, Edition

BE = BounceEvent.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]
E = Edition.__table__  # type: ignore[attr-defined]

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"


@dataclass(frozen=True, slots=True)
class BounceCounts:
    edition_id: int
    edition_date: date
    copies_sent: int
    hard: int
    soft: int
    complaints: int


def _copies_sent() -> sa.ColumnElement[bool]:
    return sa.or_(
        D.c.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.AMBIGUOUS.value]),
        sa.and_(D.c.status == DeliveryStatus.FAILED.value, D.c.smtp_code.is_not(None)),
    )


def _counts(editions: sa.CTE) -> sa.Select[tuple[int, date, int, int, int, int]]:
    """The counts for every edition in `editions` (columns id, edition_date, copies_sent)."""
    wanted = sa.select(editions.c.id).scalar_subquery()
    one, none = sa.literal(1), sa.literal(0)
    events = sa.select(
        BE.c.edition_id.label("edition_id"),
        BE.c.subscriber_id.label("subscriber_id"),
        sa.case((BE.c.kind == HARD, one), else_=none).label("hard"),
        sa.case((BE.c.kind == SOFT, one), else_=none).label("soft"),
        sa.case((BE.c.kind == COMPLAINT, one), else_=none).label("complaint"),
    ).where(BE.c.edition_id.in_(wanted), BE.c.kind.in_([HARD, SOFT, COMPLAINT]))
    refused = sa.select(
        D.c.edition_id,
        D.c.subscriber_id,
        sa.case((D.c.smtp_code >= 500, one), else_=none),
        sa.case((D.c.smtp_code < 500, one), else_=none),
        none,
    ).where(
        D.c.edition_id.in_(wanted),
        D.c.status == DeliveryStatus.FAILED.value,
        D.c.smtp_code.between(400, 599),
    )
    found = sa.union_all(events, refused).subquery("found")
    readers = (
        sa.select(
            found.c.edition_id,
            sa.func.max(found.c.hard).label("hard"),
            sa.func.max(found.c.soft).label("soft"),
            sa.func.max(found.c.complaint).label("complaint"),
        )
        .group_by(found.c.edition_id, found.c.subscriber_id)
        .subquery("readers")
    )
    per_edition = (
        sa.select(
            readers.c.edition_id,
            sa.func.sum(readers.c.hard).label("hard"),
            sa.func.sum(sa.case((sa.and_(readers.c.hard == 0, readers.c.soft == 1), one), else_=none)).label(
                "soft"
            ),
            sa.func.sum(readers.c.complaint).label("complaint"),
        )
        .group_by(readers.c.edition_id)
        .subquery("per_edition")
    )
    return (
        sa.select(
            editions.c.id,
            editions.c.edition_date,
            editions.c.copies_sent,
            sa.func.coalesce(per_edition.c.hard, 0),
            sa.func.coalesce(per_edition.c.soft, 0),
            sa.func.coalesce(per_edition.c.complaint, 0),
        )
        .select_from(editions)
        .outerjoin(per_edition, per_edition.c.edition_id == editions.c.id)
        .order_by(editions.c.edition_date.desc())
    )


def _run(session: Session, stmt: sa.Select[tuple[int, date, int, int, int, int]]) -> list[BounceCounts]:
    return [
        BounceCounts(int(i), day, int(copies), int(hard), int(soft), int(complaints))
        for i, day, copies, hard, soft, complaints in session.execute(stmt).all()
    ]


def _with_copies_sent(chosen: sa.Select[tuple[int, date]], name: str) -> sa.CTE:
    """The chosen editions with their copies sent, counted for those editions only."""
    picked = chosen.cte(f"{name}_chosen")
    sent = (
        sa.select(sa.func.count())
        .where(D.c.edition_id == picked.c.id, _copies_sent())
        .correlate(picked)
        .scalar_subquery()
    )
    return sa.select(picked.c.id, picked.c.edition_date, sent.label("copies_sent")).cte(name)


def for_editions(session: Session, edition_ids: Sequence[int]) -> list[BounceCounts]:
    """The counts of these editions, newest first (an edition with no copy sent has zeros)."""
    if not edition_ids:
        return []
    chosen = sa.select(E.c.id, E.c.edition_date).where(E.c.id.in_(list(edition_ids)))
    return _run(session, _counts(_with_copies_sent(chosen, "editions")))


def recent(
    session: Session, *, limit: int = 30, until: date | None = None, newsletter_id: int | None = None
) -> list[BounceCounts]:
    """The newest `limit` editions that sent at least one copy (dated `until` or before), newest first.

    Of one newsletter when `newsletter_id` is given, else of all of them.

    The editions are picked newest first by date, each with an indexed look into its ledger, so the
    cost follows `limit`, not the years of ledger behind it.
    """
    answered = sa.exists().where(
        D.c.edition_id == E.c.id,
        D.c.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.AMBIGUOUS.value]),
    )
    refused = sa.exists().where(
        D.c.edition_id == E.c.id, D.c.status == DeliveryStatus.FAILED.value, D.c.smtp_code.is_not(None)
    )
    chosen = sa.select(E.c.id, E.c.edition_date).where(sa.or_(answered, refused))
    if until is not None:
        chosen = chosen.where(E.c.edition_date <= until)
    if newsletter_id is not None:
        chosen = chosen.where(E.c.newsletter_id == newsletter_id)
    chosen = chosen.order_by(E.c.edition_date.desc()).limit(limit)
    return _run(session, _counts(_with_copies_sent(chosen, "editions")))
