"""The partner block of a date: a booked sponsor slot where there is one, else the standing partner.

A paid slot that nobody filled in would go out as an edition without the block the partner paid
for, so preflight says so while there is still time to fill it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from sqlmodel import Session

from briefing.domain import Briefing
from briefing.edition.preflight import PreflightProblem
from briefing.service.setup import EditionSetup
from briefing.store import sponsors as sponsor_store


def with_sponsor(session: Session, setup: EditionSetup, briefing: Briefing) -> Briefing:
    slot = sponsor_store.slot_for(session, setup.newsletter.id, briefing.edition_date)
    if slot is None or slot.empty:
        return briefing
    blocks = replace(
        briefing.blocks,
        partner_name=slot.name.strip(),
        partner_text=slot.text.strip(),
        partner_url=slot.url.strip(),
        partner_label=slot.label.strip() or "Partner",
        partner_image_url=slot.image_url.strip(),
    )
    return replace(briefing, blocks=blocks)


def sponsor_warnings(session: Session, setup: EditionSetup, day: date) -> tuple[PreflightProblem, ...]:
    slot = sponsor_store.slot_for(session, setup.newsletter.id, day)
    if slot is None or not slot.paid or not slot.empty:
        return ()
    missing = "a partner name" if not slot.name.strip() else "a link"
    return (
        PreflightProblem(
            "sponsor",
            f"the paid sponsor slot {slot.id} ({slot.starts_on} to {slot.ends_on}) has no {missing}:"
            " the partner block will be missing (briefing sponsors list)",
        ),
    )
