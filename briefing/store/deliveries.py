"""The delivery ledger: one row per (edition, subscriber), the only record of who was sent what.

The hot path uses Core statements (no ORM objects) because it runs once or twice per message.
Rules (see the architecture notes): snapshot in one transaction; claim before SMTP; commit `sent`
right after each 250; a row found `claimed` by a dead owner was in flight and is ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import DeliveryStatus, LedgerCounts, SubscriberStatus
from briefing.models import Delivery, Subscriber, utcnow

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]

CLAIMABLE = (DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value)


@dataclass(frozen=True, slots=True)
class Claim:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int
    token_version: int
    was_ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class LedgerRow:
    subscriber_id: int
    email: str
    status: str
    attempts: int
    smtp_code: int | None
    smtp_reply: str
    was_ambiguous: bool
    sent_at: datetime | None


def snapshot(session: Session, edition_id: int) -> int:
    """Create one pending row per active subscriber, in one statement; returns the ledger size.

    Running it again adds nobody who is already there (UNIQUE(edition, subscriber)), so a crash
    between snapshot and send never doubles or drops anyone.
    """
    now = utcnow()
    existing = sa.select(D.c.subscriber_id).where(D.c.edition_id == edition_id)
    source = sa.select(
        sa.literal(edition_id),
        S.c.id,
        S.c.email,
        sa.literal(DeliveryStatus.PENDING.value),
        sa.literal(0),
        sa.literal(""),
        sa.literal(""),
        sa.literal(""),
        sa.literal(False),
        sa.literal(now, type_=D.c.updated_at.type),
    ).where(S.c.status == SubscriberStatus.ACTIVE.value, S.c.id.not_in(existing))
    session.execute(
        sa.insert(D).from_select(
            [
                "edition_id",
                "subscriber_id",
                "email",
                "status",
                "attempts",
                "lease_owner",
                "smtp_reply",
                "message_id",
                "was_ambiguous",
                "updated_at",
            ],
            source,
        )
    )
    return ledger_size(session, edition_id)


def ledger_size(session: Session, edition_id: int) -> int:
    return int(session.execute(sa.select(sa.func.count()).where(D.c.edition_id == edition_id)).scalar_one())


def claim_next(
    session: Session, edition_id: int, owner: str, lease: timedelta, now: datetime
) -> tuple[Claim | None, int]:
    """Lease the next due row to `owner`, skipping (and marking) anyone no longer active.

    Callers run this in a transaction that takes the write lock (SQLite BEGIN IMMEDIATE) or with
    SKIP LOCKED (PostgreSQL), so two senders never claim the same row.
    """
    dialect = session.get_bind().dialect.name
    skipped = 0
    while True:
        due = (
            sa.select(D.c.id)
            .where(
                D.c.edition_id == edition_id,
                D.c.status.in_(CLAIMABLE),
                sa.or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now),
            )
            .order_by(D.c.id)
            .limit(1)
        )
        if dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        row_id = session.execute(due).scalar()
        if row_id is None:
            return None, skipped
        found = session.execute(
            sa.select(
                D.c.subscriber_id,
                D.c.attempts,
                D.c.was_ambiguous,
                S.c.email,
                S.c.name,
                S.c.status,
                S.c.token_version,
            )
            .select_from(D.join(S, S.c.id == D.c.subscriber_id))
            .where(D.c.id == row_id)
        ).one()
        if found.status != SubscriberStatus.ACTIVE.value:
            session.execute(
                sa.update(D)
                .where(D.c.id == row_id)
                .values(
                    status=DeliveryStatus.SKIPPED.value,
                    smtp_reply=f"not sent: subscriber is {found.status}",
                    updated_at=now,
                )
            )
            skipped += 1
            continue
        session.execute(
            sa.update(D)
            .where(D.c.id == row_id)
            .values(
                status=DeliveryStatus.CLAIMED.value,
                lease_owner=owner,
                lease_until=now + lease,
                updated_at=now,
            )
        )
        claim = Claim(
            delivery_id=row_id,
            subscriber_id=found.subscriber_id,
            email=found.email,
            name=found.name,
            attempts=found.attempts,
            token_version=found.token_version,
            was_ambiguous=bool(found.was_ambiguous),
        )
        return claim, skipped


def record_sent(
    session: Session, delivery_id: int, *, code: int, reply: str, message_id: str, now: datetime
) -> None:
    session.execute(
        sa.update(D)
        .where(D.c.id == delivery_id)
        .values(
            status=DeliveryStatus.SENT.value,
            attempts=D.c.attempts + 1,
            smtp_code=code,
            smtp_reply=reply[:1000],
            message_id=message_id,
            sent_at=now,
            lease_owner="",
            lease_until=None,
            next_attempt_at=None,
            updated_at=now,
        )
    )


def record_deferred(
    session: Session,
    delivery_id: int,
    *,
    code: int | None,
    reply: str,
    next_attempt_at: datetime,
    now: datetime,
) -> None:
    session.execute(
        sa.update(D)
        .where(D.c.id == delivery_id)
        .values(
            status=DeliveryStatus.DEFERRED.value,
            attempts=D.c.attempts + 1,
            smtp_code=code,
            smtp_reply=reply[:1000],
            next_attempt_at=next_attempt_at,
            lease_owner="",
            lease_until=None,
            updated_at=now,
        )
    )


def record_failed(
    session: Session,
    delivery_id: int,
    *,
    code: int | None,
    reply: str,
    now: datetime,
    count_attempt: bool = True,
) -> None:
    session.execute(
        sa.update(D)
        .where(D.c.id == delivery_id)
        .values(
            status=DeliveryStatus.FAILED.value,
            attempts=D.c.attempts + (1 if count_attempt else 0),
            smtp_code=code,
            smtp_reply=reply[:1000],
            lease_owner="",
            lease_until=None,
            next_attempt_at=None,
            updated_at=now,
        )
    )


def record_ambiguous(session: Session, delivery_id: int, *, reply: str, resend: bool, now: datetime) -> None:
    """DATA went out, no reply came. With `resend` the row goes back to pending (same Message-ID)."""
    session.execute(
        sa.update(D)
        .where(D.c.id == delivery_id)
        .values(
            status=(DeliveryStatus.PENDING if resend else DeliveryStatus.AMBIGUOUS).value,
            attempts=D.c.attempts + 1,
            smtp_reply=reply[:1000],
            was_ambiguous=True,
            lease_owner="",
            lease_until=None,
            next_attempt_at=None,
            updated_at=now,
        )
    )


def release(session: Session, delivery_id: int, *, now: datetime) -> None:
    """Give a claimed row back untouched: the connection failed before anything was sent."""
    session.execute(
        sa.update(D)
        .where(D.c.id == delivery_id, D.c.status == DeliveryStatus.CLAIMED.value)
        .values(status=DeliveryStatus.PENDING.value, lease_owner="", lease_until=None, updated_at=now)
    )


def stale_claims(
    session: Session, edition_id: int, *, now: datetime, dead_owners: Sequence[str] = ()
) -> list[int]:
    """Rows claimed by a sender that is gone: its lease ran out, or its process no longer exists."""
    cond = D.c.lease_until < now
    if dead_owners:
        cond = sa.or_(cond, D.c.lease_owner.in_(list(dead_owners)))
    stmt = sa.select(D.c.id).where(
        D.c.edition_id == edition_id, D.c.status == DeliveryStatus.CLAIMED.value, cond
    )
    return [int(i) for i in session.execute(stmt).scalars()]


def claim_owners(session: Session, edition_id: int) -> list[str]:
    stmt = (
        sa.select(D.c.lease_owner)
        .where(D.c.edition_id == edition_id, D.c.status == DeliveryStatus.CLAIMED.value)
        .distinct()
    )
    return [str(o) for o in session.execute(stmt).scalars()]


def give_up_deferred(session: Session, edition_id: int, *, now: datetime) -> list[int]:
    """At the end of the edition's window, deferred rows become failed (a soft bounce each)."""
    ids = [
        int(i)
        for i in session.execute(
            sa.select(D.c.subscriber_id).where(
                D.c.edition_id == edition_id, D.c.status == DeliveryStatus.DEFERRED.value
            )
        ).scalars()
    ]
    if ids:
        session.execute(
            sa.update(D)
            .where(D.c.edition_id == edition_id, D.c.status == DeliveryStatus.DEFERRED.value)
            .values(
                status=DeliveryStatus.FAILED.value,
                smtp_reply=sa.func.substr(
                    "gave up (temporary failure until the window closed): " + D.c.smtp_reply, 1, 1000
                ),
                next_attempt_at=None,
                updated_at=now,
            )
        )
    return ids


def retry_failed(session: Session, edition_id: int, *, now: datetime) -> int:
    """Put failed and deferred rows back in the queue (editors' "retry the failed")."""
    result = session.execute(
        sa.update(D)
        .where(
            D.c.edition_id == edition_id,
            D.c.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEFERRED.value]),
        )
        .values(status=DeliveryStatus.PENDING.value, next_attempt_at=None, updated_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def next_due(session: Session, edition_id: int) -> datetime | None:
    """When the earliest deferred row may be tried again (None if nothing is waiting)."""
    return session.execute(
        sa.select(sa.func.min(D.c.next_attempt_at)).where(
            D.c.edition_id == edition_id, D.c.status == DeliveryStatus.DEFERRED.value
        )
    ).scalar()


def counts(session: Session, edition_id: int) -> LedgerCounts:
    stmt = sa.select(D.c.status, sa.func.count()).where(D.c.edition_id == edition_id).group_by(D.c.status)
    found = {str(status): int(n) for status, n in session.execute(stmt).all()}
    return LedgerCounts(**{s.value: found.get(s.value, 0) for s in DeliveryStatus})


def ambiguous_count(session: Session, edition_id: int) -> int:
    stmt = sa.select(sa.func.count()).where(D.c.edition_id == edition_id, D.c.was_ambiguous.is_(True))
    return int(session.execute(stmt).scalar_one())


def rows(
    session: Session,
    edition_id: int,
    *,
    statuses: Sequence[str] = (),
    ambiguous_only: bool = False,
    limit: int = 1000,
) -> list[LedgerRow]:
    stmt = select(Delivery).where(Delivery.edition_id == edition_id)
    if statuses:
        stmt = stmt.where(col(Delivery.status).in_(list(statuses)))
    if ambiguous_only:
        stmt = stmt.where(col(Delivery.was_ambiguous).is_(True))
    found = session.exec(stmt.order_by(col(Delivery.id)).limit(limit)).all()
    return [
        LedgerRow(
            subscriber_id=r.subscriber_id,
            email=r.email,
            status=r.status,
            attempts=r.attempts,
            smtp_code=r.smtp_code,
            smtp_reply=r.smtp_reply,
            was_ambiguous=r.was_ambiguous,
            sent_at=r.sent_at,
        )
        for r in found
    ]


def sent_at_least_once(session: Session, edition_id: int, subscriber_id: int) -> bool:
    stmt = sa.select(D.c.status).where(D.c.edition_id == edition_id, D.c.subscriber_id == subscriber_id)
    return session.execute(stmt).scalar() == DeliveryStatus.SENT.value


def now_utc() -> datetime:
    return utcnow()
