"""Bounce events: what came back about whose copy, and the queries the bounce rules ask."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import DeliveryStatus
from briefing.models import BounceEvent, Delivery, Edition, Subscriber

COUNTED_KINDS = ("hard", "soft")


@dataclass(frozen=True, slots=True)
class BounceEventData:
    id: int
    subscriber_id: int
    email: str
    edition_id: int | None
    edition_date: date | None
    kind: str
    code: str
    diagnostic: str
    source: str
    received_at: datetime


def add_event(
    session: Session,
    *,
    subscriber_id: int,
    edition_id: int | None,
    kind: str,
    code: str,
    diagnostic: str,
    source: str,
    message_sha256: str,
    now: datetime,
) -> bool:
    """Record one event; False (and nothing written) when this report was already counted for them."""

    def counted() -> bool:
        return (
            session.exec(
                select(BounceEvent.id).where(
                    BounceEvent.message_sha256 == message_sha256,
                    BounceEvent.subscriber_id == subscriber_id,
                )
            ).first()
            is not None
        )

    if counted():
        return False
    row = BounceEvent(
        subscriber_id=subscriber_id,
        edition_id=edition_id,
        kind=kind,
        code=code[:20],
        diagnostic=diagnostic[:1000],
        source=source[:20],
        message_sha256=message_sha256,
        received_at=now,
    )
    try:
        with session.begin_nested():  # another reader of the same mailbox may have won the race
            session.add(row)
    except sa.exc.IntegrityError:
        if counted():
            return False
        raise  # another constraint: not a duplicate, and the report must not be dropped as one
    return True


def edition_exists(session: Session, edition_id: int) -> bool:
    return session.get(Edition, edition_id) is not None


def copy_by_message_id(session: Session, message_id: str) -> tuple[int, int] | None:
    """(edition id, subscriber id) of the copy sent with this Message-ID, if it was ours."""
    found = session.exec(
        select(Delivery.edition_id, Delivery.subscriber_id)
        .where(Delivery.message_id == message_id[:300])
        .order_by(col(Delivery.id).desc())
    ).first()
    return (int(found[0]), int(found[1])) if found else None


def mailed_subscriber(session: Session, email: str) -> int | None:
    """The subscriber with this address, if a copy was ever sent to them (a bounce needs a send)."""
    found = session.exec(
        select(Subscriber.id)
        .join(Delivery, col(Delivery.subscriber_id) == col(Subscriber.id))
        .where(Subscriber.email_key == email.casefold(), Delivery.status == DeliveryStatus.SENT.value)
        .limit(1)
    ).first()
    return int(found) if found is not None else None


def soft_bounce_count(session: Session, subscriber_id: int, *, since: datetime) -> int:
    """Soft-bounced copies since `since` that no delivered copy has followed.

    A copy counts as delivered when the ledger says sent and nothing bounced it. Only copies of
    editions older than the newest soft-bounced one can reset the count: the newest edition's own
    DSN may simply not have come back yet. Events that name no edition always count.
    """
    soft = session.execute(
        sa.select(col(BounceEvent.edition_id), col(Edition.edition_date))
        .select_from(BounceEvent)
        .outerjoin(Edition, col(Edition.id) == col(BounceEvent.edition_id))
        .where(
            col(BounceEvent.subscriber_id) == subscriber_id,
            col(BounceEvent.kind) == "soft",
            col(BounceEvent.received_at) >= since,
        )
    ).all()
    if not soft:
        return 0
    dated = {day: edition for edition, day in soft if edition is not None and day is not None}
    loose = sum(1 for edition, day in soft if edition is None or day is None)
    if not dated:
        return loose
    newest = max(dated)
    bounced = sa.select(col(BounceEvent.edition_id)).where(
        col(BounceEvent.subscriber_id) == subscriber_id,
        col(BounceEvent.edition_id).is_not(None),
        col(BounceEvent.kind).in_(COUNTED_KINDS),
    )
    delivered = session.execute(
        sa.select(sa.func.max(Edition.edition_date))
        .select_from(Delivery)
        .join(Edition, col(Edition.id) == col(Delivery.edition_id))
        .where(
            col(Delivery.subscriber_id) == subscriber_id,
            col(Delivery.status) == DeliveryStatus.SENT.value,
            col(Edition.edition_date) < newest,
            col(Delivery.edition_id).not_in(bounced),
        )
    ).scalar_one_or_none()
    return loose + sum(1 for day in dated if delivered is None or day > delivered)


def recent_events(
    session: Session, *, since: datetime | None, edition_id: int | None = None, limit: int = 1000
) -> list[BounceEventData]:
    """Events received since `since` (None: ever), only those about one edition if given."""
    stmt = (
        sa.select(BounceEvent, col(Subscriber.email), col(Edition.edition_date))
        .join(Subscriber, col(Subscriber.id) == col(BounceEvent.subscriber_id))
        .outerjoin(Edition, col(Edition.id) == col(BounceEvent.edition_id))
    )
    if since is not None:
        stmt = stmt.where(col(BounceEvent.received_at) >= since)
    if edition_id is not None:
        stmt = stmt.where(col(BounceEvent.edition_id) == edition_id)
    rows = session.execute(
        stmt.order_by(col(BounceEvent.received_at).desc(), col(BounceEvent.id).desc()).limit(limit)
    ).all()
    out = []
    for event, email, edition_date in rows:
        assert event.id is not None
        out.append(
            BounceEventData(
                id=event.id,
                subscriber_id=event.subscriber_id,
                email=email,
                edition_id=event.edition_id,
                edition_date=edition_date,
                kind=event.kind,
                code=event.code,
                diagnostic=event.diagnostic,
                source=event.source,
                received_at=event.received_at,
            )
        )
    return out
