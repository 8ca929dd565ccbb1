"""A stopped sender's rows: the copy it had in flight, the claims it never started, its held refusals;
and what a later pass would find to do on an edition.

Each connection works through its claims in id order and records each result before the next
(see LedgerWriter), which is what lets a later run tell the one copy in flight from the rest.
Every question here is answered from the ledger's queue index (edition, status, id), with a limit
or an aggregate over the few rows in one status, never by counting the whole ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing.domain import DeliveryStatus
from briefing.models import Delivery

D = Delivery.__table__  # type: ignore[attr-defined]


def recover_claims(
    session: Session,
    edition_id: int,
    *,
    now: datetime,
    dead_owners: Sequence[str],
    resend: bool,
    keep_run: str = "",
) -> tuple[list[str], int]:
    """Settle rows left claimed by a sender that is gone: (the addresses in flight, rows freed).

    Each owner is one connection working through its claims in id order and recording each
    result before the next, so its lowest claimed row was in flight (ambiguous) and the rest
    never started (back to pending). The claims of `keep_run` (the caller's own run) are never
    touched, whatever their lease says.
    """
    where = [
        D.c.edition_id == edition_id,
        D.c.status == DeliveryStatus.CLAIMED.value,
        sa.or_(D.c.lease_until < now, D.c.lease_owner.in_(list(dead_owners) or [""])),
    ]
    if keep_run:
        where.append(sa.not_(D.c.lease_owner.startswith(keep_run + ":", autoescape=True)))
    stale = session.execute(
        sa.select(D.c.id, D.c.lease_owner, D.c.email).where(*where).order_by(D.c.id)
    ).all()
    in_flight: dict[str, tuple[int, str]] = {}
    untouched: dict[str, list[int]] = {}
    for row_id, owner, email in stale:
        if owner in in_flight:
            untouched.setdefault(str(owner), []).append(int(row_id))
        else:
            in_flight[str(owner)] = (int(row_id), str(email))
    reply = "interrupted while sending: delivery unknown" + (
        "; sent again with the same Message-ID" if resend else ""
    )
    # Each update names the owner it takes the row from: of two senders recovering the same rows at
    # once, the second changes nothing, not even a row the first has freed and someone claimed since.
    settled: list[str] = []
    freed = 0
    for owner, (row_id, email) in in_flight.items():
        done = session.execute(
            sa.update(D)
            .where(D.c.id == row_id, D.c.status == DeliveryStatus.CLAIMED.value, D.c.lease_owner == owner)
            .values(
                status=(DeliveryStatus.PENDING if resend else DeliveryStatus.AMBIGUOUS).value,
                smtp_reply=reply,
                was_ambiguous=True,
                lease_owner="",
                lease_until=None,
                updated_at=now,
            )
        )
        if done.rowcount:  # type: ignore[attr-defined]
            settled.append(email)
            freed += 1
    for owner, ids in untouched.items():
        done = session.execute(
            sa.update(D)
            .where(D.c.id.in_(ids), D.c.status == DeliveryStatus.CLAIMED.value, D.c.lease_owner == owner)
            .values(status=DeliveryStatus.PENDING.value, lease_owner="", lease_until=None, updated_at=now)
        )
        freed += int(done.rowcount or 0)  # type: ignore[attr-defined]
    return settled, freed


def recover_held(session: Session, edition_id: int, *, now: datetime) -> int:
    """Refusals a stopped run never judged go back to the queue; nothing followed for their readers."""
    held = sa.and_(D.c.status == DeliveryStatus.DEFERRED.value, D.c.next_attempt_at.is_(None))
    stmt = sa.update(D).where(D.c.edition_id == edition_id, held).values(status="pending", updated_at=now)
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def _exists(session: Session, *where: sa.ColumnElement[bool]) -> bool:
    return session.execute(sa.select(D.c.id).where(*where).limit(1)).first() is not None


def claimable_now(session: Session, edition_id: int, *, now: datetime) -> bool:
    """Whether a sender would find a row to claim now: one pending, or one deferred and due."""
    mine = D.c.edition_id == edition_id
    return _exists(session, mine, D.c.status == DeliveryStatus.PENDING.value) or _exists(
        session, mine, D.c.status == DeliveryStatus.DEFERRED.value, D.c.next_attempt_at <= now
    )


def expired_claims(session: Session, edition_id: int, *, now: datetime) -> bool:
    """Whether a claim's lease has run out (its sender crashed, or lost the database)."""
    return _exists(
        session,
        D.c.edition_id == edition_id,
        D.c.status == DeliveryStatus.CLAIMED.value,
        D.c.lease_until < now,
    )


def held_refusals(session: Session, edition_id: int) -> bool:
    """Whether refusals are held unjudged (deferred with no next attempt; see LedgerWriter.hold)."""
    return _exists(
        session,
        D.c.edition_id == edition_id,
        D.c.status == DeliveryStatus.DEFERRED.value,
        D.c.next_attempt_at.is_(None),
    )


def next_attempt(session: Session, edition_id: int) -> datetime | None:
    """When the earliest deferred copy is due again; None when no copy is deferred."""
    found: datetime | None = session.execute(
        sa.select(sa.func.min(D.c.next_attempt_at)).where(
            D.c.edition_id == edition_id,
            D.c.status == DeliveryStatus.DEFERRED.value,
            D.c.next_attempt_at.is_not(None),
        )
    ).scalar()
    return found
