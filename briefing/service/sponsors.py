"""Sponsor slots: booking a partner block for a newsletter's dates, and what an edition shows of it.

The partner block of a date is a booked slot where one covers it, else the standing partner of
the settings. Of overlapping bookings the later one wins, so an editor fixes or fills in a booking
by booking the same dates again. A slot may be booked before the partner has sent their copy (paid,
no partner yet); a paid slot that nobody filled in would go out without the block the partner paid
for, so preflight says so while there is still time.

Every door books through `add_slot`, which checks each field by the same rules as the rest of the
project (briefing.inputs) and names the one at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from urllib.parse import urlsplit

from sqlmodel import Session

from briefing import inputs
from briefing.domain import Briefing
from briefing.edition.preflight import PreflightProblem
from briefing.errors import InvalidInput
from briefing.models import SponsorSlot
from briefing.newsletter import NewsletterData, check_slug
from briefing.service.setup import EditionSetup
from briefing.store import newsletters as newsletter_store
from briefing.store import sponsors as sponsor_store
from briefing.store.sponsors import SponsorSlotData

__all__ = [
    "DEFAULT_LABEL",
    "SlotRequest",
    "add_slot",
    "list_slots",
    "newsletter_named",
    "remove_slot",
    "sponsor_warnings",
    "with_sponsor",
]

DEFAULT_LABEL = "Partner"


def _limit(field: str) -> int:
    """The column's length, so a value accepted here always fits the table."""
    column = SponsorSlot.__table__.c[field]  # type: ignore[attr-defined]
    return int(column.type.length)


MAX_NAME = _limit("name")
MAX_TEXT = _limit("text")
MAX_LABEL = _limit("label")
MAX_URL = min(_limit("url"), inputs.MAX_URL)


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A booking as someone typed it: text, checked by `add_slot`. `newsletter` is a slug ("" = the first)."""

    starts_on: str
    ends_on: str
    newsletter: str = ""
    name: str = ""
    text: str = ""
    url: str = ""
    image_url: str = ""
    label: str = DEFAULT_LABEL
    paid: bool = True


def newsletter_named(session: Session, slug: str) -> NewsletterData:
    """The newsletter a slug names ("" = the first one); a malformed or unknown slug names the field."""
    if not slug.strip():
        return newsletter_store.primary(session)
    try:
        checked = check_slug(slug)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="newsletter") from None
    return newsletter_store.get_by_slug(session, checked)


def _https(value: str, field: str) -> str:
    url = inputs.web_url(value, field=field, required=False)
    if url and urlsplit(url).scheme.lower() != "https":
        raise InvalidInput(f"must be an https:// address (got {url[:40]!r})", field=field)
    return url


def _checked(request: SlotRequest) -> dict[str, object]:
    """Every field checked before anything is read or written; the first bad one is named."""
    starts_on = inputs.local_date(request.starts_on, field="from")
    ends_on = inputs.local_date(request.ends_on, field="to")
    if ends_on < starts_on:
        raise InvalidInput(
            f"{ends_on.isoformat()} is before the first date {starts_on.isoformat()}", field="to"
        )
    label = inputs.one_line(request.label, field="label", max_len=MAX_LABEL)
    return {
        "starts_on": starts_on,
        "ends_on": ends_on,
        "name": inputs.one_line(request.name, field="name", max_len=MAX_NAME),
        "text": inputs.one_line(request.text, field="text", max_len=MAX_TEXT),
        "url": _https(request.url, "url"),
        "image_url": _https(request.image_url, "image"),
        "label": label or DEFAULT_LABEL,
        "paid": bool(request.paid),
    }


def add_slot(session: Session, request: SlotRequest, *, now: datetime) -> SponsorSlotData:
    """Book a partner block for a newsletter's dates (inclusive); it wins over earlier bookings."""
    values = _checked(request)
    newsletter = newsletter_named(session, request.newsletter)
    slot = SponsorSlotData(id=0, newsletter_id=newsletter.id, **values)  # type: ignore[arg-type]
    return sponsor_store.add_slot(session, slot, now=now)


def list_slots(session: Session, *, newsletter: str = "") -> list[SponsorSlotData]:
    """Every booking, or one newsletter's ("" = all), in date order."""
    if not newsletter.strip():
        return sponsor_store.list_slots(session)
    return sponsor_store.list_slots(session, newsletter_id=newsletter_named(session, newsletter).id)


def remove_slot(session: Session, slot_id: int) -> SponsorSlotData:
    """Cancel a booking; editions already frozen keep the block they were frozen with."""
    return sponsor_store.remove_slot(session, inputs.record_id(slot_id, field="slot"))


def with_sponsor(session: Session, setup: EditionSetup, briefing: Briefing) -> Briefing:
    slot = sponsor_store.slot_for(session, setup.newsletter.id, briefing.edition_date)
    if slot is None or slot.empty:
        return briefing
    blocks = replace(
        briefing.blocks,
        partner_name=slot.name.strip(),
        partner_text=slot.text.strip(),
        partner_url=slot.url.strip(),
        partner_label=slot.label.strip() or DEFAULT_LABEL,
        partner_image_url=slot.image_url.strip(),
    )
    return replace(briefing, blocks=blocks)


def sponsor_warnings(session: Session, setup: EditionSetup, day: date) -> tuple[PreflightProblem, ...]:
    slot = sponsor_store.slot_for(session, setup.newsletter.id, day)
    if slot is None or not slot.paid or not slot.empty:
        return ()
    missing = "partner name" if not slot.name.strip() else "link"
    standing = setup.compose.partner_name.strip() and setup.compose.partner_url.strip()
    instead = "the standing partner block shows instead" if standing else "the partner block will be missing"
    return (
        PreflightProblem(
            "sponsor",
            f"the paid sponsor slot {slot.id} ({slot.starts_on} to {slot.ends_on}) has no {missing}:"
            f" {instead} (book the dates again with the partner's details: briefing sponsors add)",
        ),
    )
