"""A stopped sender's rows: the copy it had in flight, the claims it never started, its held refusals.

Each connection works through its claims in id order and records each result before the next
(see LedgerWriter), which is what lets a later run tell the one copy in flight from the rest.
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
    session: Session, edition_id: int, *, now: datetime, dead_owners: Sequence[str], resend: bool
) -> list[str]:
    """Settle rows left claimed by a sender that is gone; returns the addresses that were in flight.

    Each owner is one connection working through its claims in id order and recording each
    result before the next, so its lowest claimed row was in flight (ambiguous) and the rest
    never started (back to pending).
    """
    stale = session.execute(
        sa.select(D.c.id, D.c.lease_owner, D.c.email)
        .where(
            D.c.edition_id == edition_id,
            D.c.status == DeliveryStatus.CLAIMED.value,
            sa.or_(D.c.lease_until < now, D.c.lease_owner.in_(list(dead_owners) or [""])),
        )
        .order_by(D.c.id)
    ).all()
    in_flight: dict[str, tuple[int, str]] = {}
    untouched: list[int] = []
    for row_id, owner, email in stale:
        if owner in in_flight:
            untouched.append(int(row_id))
        else:
            in_flight[owner] = (int(row_id), str(email))
    reply = "interrupted while sending: delivery unknown" + (
        "; sent again with the same Message-ID" if resend else ""
    )
    for row_id, _ in in_flight.values():
        session.execute(
            sa.update(D)
            .where(D.c.id == row_id)
            .values(
                status=(DeliveryStatus.PENDING if resend else DeliveryStatus.AMBIGUOUS).value,
                smtp_reply=reply,
                was_ambiguous=True,
                lease_owner="",
                lease_until=None,
                updated_at=now,
            )
        )
    if untouched:
        session.execute(
            sa.update(D)
            .where(D.c.id.in_(untouched))
            .values(status=DeliveryStatus.PENDING.value, lease_owner="", lease_until=None, updated_at=now)
        )
    return [email for _, email in in_flight.values()]


def recover_held(session: Session, edition_id: int, *, now: datetime) -> int:
    """Refusals a stopped run never judged go back to the queue; nothing followed for their readers."""
    held = sa.and_(D.c.status == DeliveryStatus.DEFERRED.value, D.c.next_attempt_at.is_(None))
    stmt = sa.update(D).where(D.c.edition_id == edition_id, held).values(status="pending", updated_at=now)
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
