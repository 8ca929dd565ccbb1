"""Which newsletters each reader gets, the sections they left out, and whether specials reach them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.models import Subscription

ACTIVE = "active"
UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class SubscriptionData:
    subscriber_id: int
    newsletter_id: int
    status: str
    excluded_sections: tuple[str, ...] = ()
    specials: bool = True

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


def _data(row: Subscription) -> SubscriptionData:
    return SubscriptionData(
        subscriber_id=row.subscriber_id,
        newsletter_id=row.newsletter_id,
        status=row.status,
        excluded_sections=tuple(row.excluded_sections or ()),
        specials=row.specials,
    )


def subscribe(
    session: Session,
    subscriber_ids: Sequence[int],
    newsletter_ids: Iterable[int],
    *,
    reactivate: bool = True,
    now: datetime,
) -> int:
    """Put readers on newsletters (again, for one who had left one); returns the rows it changed.

    `reactivate=False` only adds the missing rows: an import naming a newsletter a reader left
    must not put them back on it (leaving one newsletter is that reader's word, as unsubscribing is).
    """
    wanted = sorted(set(newsletter_ids))
    if not subscriber_ids or not wanted:
        return 0
    changed = 0
    for start in range(0, len(subscriber_ids), 500):
        chunk = list(subscriber_ids[start : start + 500])
        have = {
            (row.subscriber_id, row.newsletter_id): row
            for row in session.exec(
                select(Subscription).where(
                    col(Subscription.subscriber_id).in_(chunk), col(Subscription.newsletter_id).in_(wanted)
                )
            ).all()
        }
        new = [
            {
                "subscriber_id": sid,
                "newsletter_id": nid,
                "status": ACTIVE,
                "excluded_sections": [],
                "variant": "",
                "specials": True,
                "created_at": now,
                "updated_at": now,
            }
            for sid in chunk
            for nid in wanted
            if (sid, nid) not in have
        ]
        if new:
            session.execute(sa.insert(Subscription), new)
            changed += len(new)
        for row in have.values() if reactivate else ():
            if row.status != ACTIVE:
                row.status, row.unsubscribed_at, row.updated_at = ACTIVE, None, now
                session.add(row)
                changed += 1
    session.flush()
    return changed


def leave(session: Session, subscriber_id: int, newsletter_id: int, *, now: datetime) -> bool:
    """Take a reader off one newsletter; False when they were not on it."""
    row = _row(session, subscriber_id, newsletter_id)
    if row is None or row.status != ACTIVE:
        return False
    row.status, row.unsubscribed_at, row.updated_at = UNSUBSCRIBED, now, now
    session.add(row)
    session.flush()
    return True


def leave_all(session: Session, subscriber_id: int, *, now: datetime) -> int:
    result = session.execute(
        sa.update(Subscription)
        .where(col(Subscription.subscriber_id) == subscriber_id, col(Subscription.status) == ACTIVE)
        .values(status=UNSUBSCRIBED, unsubscribed_at=now, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def of_reader(session: Session, subscriber_id: int) -> list[SubscriptionData]:
    stmt = (
        select(Subscription)
        .where(Subscription.subscriber_id == subscriber_id)
        .order_by(col(Subscription.newsletter_id))
    )
    return [_data(row) for row in session.exec(stmt).all()]


def find(session: Session, subscriber_id: int, newsletter_id: int) -> SubscriptionData | None:
    row = _row(session, subscriber_id, newsletter_id)
    return _data(row) if row else None


def set_choices(
    session: Session,
    subscriber_id: int,
    newsletter_id: int,
    *,
    excluded_sections: Sequence[str],
    variant: str,
    specials: bool,
    now: datetime,
) -> bool:
    """Store a reader's section opt-outs (with their canonical key) and specials choice."""
    row = _row(session, subscriber_id, newsletter_id)
    if row is None:
        return False
    row.excluded_sections, row.variant, row.specials, row.updated_at = (
        list(excluded_sections),
        variant,
        specials,
        now,
    )
    session.add(row)
    session.flush()
    return True


def active_counts(session: Session) -> dict[int, int]:
    """Readers each newsletter would go to (active subscription of an active address)."""
    from briefing.domain import SubscriberStatus
    from briefing.models import Subscriber

    stmt = (
        select(Subscription.newsletter_id, sa.func.count())
        .join(Subscriber, col(Subscriber.id) == col(Subscription.subscriber_id))
        .where(Subscription.status == ACTIVE, Subscriber.status == SubscriberStatus.ACTIVE.value)
        .group_by(col(Subscription.newsletter_id))
    )
    return {int(nid): int(n) for nid, n in session.exec(stmt).all()}


def has_active(session: Session, subscriber_id: int) -> bool:
    """Whether the reader is still on any newsletter (an address on none of them has left them all)."""
    stmt = select(Subscription.id).where(
        Subscription.subscriber_id == subscriber_id, Subscription.status == ACTIVE
    )
    return session.exec(stmt.limit(1)).first() is not None


def restore_last_left(session: Session, subscriber_id: int, *, now: datetime) -> list[int]:
    """Undo the reader's last leaving: the newsletters left together at the latest moment.

    "Leave everything" takes a reader off every newsletter at one moment, so "subscribe again"
    puts back exactly those, not one they had left on its own before. Returns the newsletter ids.
    """
    last = session.exec(
        select(sa.func.max(Subscription.unsubscribed_at)).where(
            Subscription.subscriber_id == subscriber_id, Subscription.status == UNSUBSCRIBED
        )
    ).one()
    if last is None:
        return []
    rows = session.exec(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber_id,
            Subscription.status == UNSUBSCRIBED,
            Subscription.unsubscribed_at == last,
        )
    ).all()
    for row in rows:
        row.status, row.unsubscribed_at, row.updated_at = ACTIVE, None, now
        session.add(row)
    session.flush()
    return sorted(row.newsletter_id for row in rows)


def active_slugs(session: Session, subscriber_ids: Sequence[int]) -> dict[int, list[str]]:
    """The newsletters each reader is on, as slugs in the editors' order (export, lists)."""
    from briefing.models import Newsletter

    found: dict[int, list[str]] = {}
    for start in range(0, len(subscriber_ids), 500):
        chunk = list(subscriber_ids[start : start + 500])
        stmt = (
            select(Subscription.subscriber_id, Newsletter.slug)
            .join(Newsletter, col(Newsletter.id) == col(Subscription.newsletter_id))
            .where(col(Subscription.subscriber_id).in_(chunk), Subscription.status == ACTIVE)
            .order_by(col(Newsletter.position), col(Newsletter.id))
        )
        for sid, slug in session.exec(stmt).all():
            found.setdefault(int(sid), []).append(str(slug))
    return found


@dataclass(frozen=True, slots=True)
class NewsletterRef:
    """The newsletter a reader's link names, read on the link's own connection."""

    id: int
    slug: str
    name: str
    paused: bool


def newsletter_ref(
    conn: sa.Connection, *, slug: str = "", newsletter_id: int | None = None
) -> NewsletterRef | None:
    """By slug or id, in one Core statement (the one-click unsubscribe names its list by slug)."""
    from briefing.models import Newsletter

    N = Newsletter.__table__  # type: ignore[attr-defined]
    stmt = sa.select(N.c.id, N.c.slug, N.c.name, N.c.paused)
    stmt = stmt.where(N.c.id == newsletter_id) if newsletter_id is not None else stmt.where(N.c.slug == slug)
    row = conn.execute(stmt).first()
    return NewsletterRef(int(row.id), str(row.slug), str(row.name), bool(row.paused)) if row else None


def _row(session: Session, subscriber_id: int, newsletter_id: int) -> Subscription | None:
    return session.exec(
        select(Subscription).where(
            Subscription.subscriber_id == subscriber_id, Subscription.newsletter_id == newsletter_id
        )
    ).first()


@dataclass(frozen=True, slots=True)
class Readers:
    count: int
    emails: tuple[str, ...]  # the first of them, in id order, as many as were asked for


def readers_of(
    session: Session, newsletter_id: int, *, specials_only: bool = False, limit: int | None = 20
) -> Readers:
    """Who an edition of the newsletter would go to now (what its snapshot would take)."""
    from briefing.domain import SubscriberStatus
    from briefing.models import Subscriber

    wanted: list[Any] = [
        Subscription.newsletter_id == newsletter_id,
        Subscription.status == ACTIVE,
        Subscriber.status == SubscriberStatus.ACTIVE.value,
    ]
    if specials_only:
        wanted.append(col(Subscription.specials).is_(True))
    joined = select(Subscriber.email).join(
        Subscription, col(Subscription.subscriber_id) == col(Subscriber.id)
    )
    count = session.exec(
        select(sa.func.count())
        .select_from(Subscriber)
        .join(Subscription, col(Subscription.subscriber_id) == col(Subscriber.id))
        .where(*wanted)
    ).one()
    take = count if limit is None else min(limit, int(count))
    emails = (
        session.exec(joined.where(*wanted).order_by(col(Subscriber.id)).limit(take)).all() if take > 0 else []
    )
    return Readers(int(count), tuple(emails))


def subscribe_all(conn: sa.Connection | Session, newsletter_id: int, *, now: datetime) -> int:
    """Every stored reader onto a newsletter, in one statement (bulk loads, a newsletter for all)."""
    from briefing.models import Subscriber

    S, U = Subscriber.__table__, Subscription.__table__  # type: ignore[attr-defined]
    already = sa.select(sa.literal(1)).where(U.c.subscriber_id == S.c.id, U.c.newsletter_id == newsletter_id)
    source = sa.select(
        S.c.id,
        sa.literal(newsletter_id),
        sa.literal(ACTIVE),
        sa.literal([], type_=U.c.excluded_sections.type),
        sa.literal(""),
        sa.true(),
        sa.literal(now, type_=U.c.created_at.type),
        sa.literal(now, type_=U.c.updated_at.type),
    ).where(~already.exists())
    columns = ["subscriber_id", "newsletter_id", "status", "excluded_sections", "variant", "specials"]
    result = conn.execute(sa.insert(U).from_select([*columns, "created_at", "updated_at"], source))
    return int(getattr(result, "rowcount", 0) or 0)
