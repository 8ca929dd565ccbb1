"""Sponsor slots: a partner block booked for a newsletter over a range of dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from briefing.errors import NotFound
from briefing.models import SponsorSlot


@dataclass(frozen=True, slots=True)
class SponsorSlotData:
    id: int
    newsletter_id: int
    starts_on: date
    ends_on: date
    name: str = ""
    text: str = ""
    url: str = ""
    image_url: str = ""
    label: str = "Partner"
    paid: bool = True

    @property
    def empty(self) -> bool:
        """Booked but not filled in: no partner name or no link, so the email would show nothing."""
        return not self.name.strip() or not self.url.strip()


def _data(row: SponsorSlot) -> SponsorSlotData:
    assert row.id is not None
    return SponsorSlotData(
        id=row.id,
        newsletter_id=row.newsletter_id,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        name=row.name,
        text=row.text,
        url=row.url,
        image_url=row.image_url,
        label=row.label,
        paid=row.paid,
    )


def add_slot(session: Session, slot: SponsorSlotData, *, now: datetime) -> SponsorSlotData:
    """Store a booking as given (service.sponsors.add_slot checks it first); `slot.id` is not read."""
    row = SponsorSlot(
        newsletter_id=slot.newsletter_id,
        starts_on=slot.starts_on,
        ends_on=slot.ends_on,
        name=slot.name,
        text=slot.text,
        url=slot.url,
        image_url=slot.image_url,
        label=slot.label,
        paid=slot.paid,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return _data(row)


def slot_for(session: Session, newsletter_id: int, day: date) -> SponsorSlotData | None:
    """The slot covering a day; of overlapping bookings the one booked last wins."""
    row = session.exec(
        select(SponsorSlot)
        .where(
            SponsorSlot.newsletter_id == newsletter_id,
            col(SponsorSlot.starts_on) <= day,
            col(SponsorSlot.ends_on) >= day,
        )
        .order_by(col(SponsorSlot.id).desc())
    ).first()
    return _data(row) if row else None


def list_slots(
    session: Session, *, newsletter_id: int | None = None, since: date | None = None
) -> list[SponsorSlotData]:
    stmt = select(SponsorSlot)
    if newsletter_id is not None:
        stmt = stmt.where(SponsorSlot.newsletter_id == newsletter_id)
    if since is not None:
        stmt = stmt.where(col(SponsorSlot.ends_on) >= since)
    return [
        _data(r) for r in session.exec(stmt.order_by(col(SponsorSlot.starts_on), col(SponsorSlot.id))).all()
    ]


def remove_slot(session: Session, slot_id: int) -> SponsorSlotData:
    row = session.get(SponsorSlot, slot_id)
    if row is None:
        raise NotFound(f"no sponsor slot {slot_id}", field="slot")
    found = _data(row)
    session.delete(row)
    session.flush()
    return found
