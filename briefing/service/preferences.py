"""The preferences page's use cases: which newsletters a reader gets, their sections, specials or not.

A reader's own current link is the consent behind every change here, as on the one-click page.
The stored variant is always the canonical key of the sections left out, so the send renders
once per set (`briefing.edition.sections`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import Session

from briefing.domain import SubscriberStatus
from briefing.edition.sections import section_key, variant_key
from briefing.errors import InvalidInput
from briefing.newsletter import NewsletterData
from briefing.service.subscribers import current_link_state, unsubscribe
from briefing.store import newsletters as newsletter_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from briefing.store.subscribers import LinkState


@dataclass(frozen=True, slots=True)
class NewsletterChoice:
    """What the preferences form says of one newsletter it showed."""

    slug: str
    on: bool
    specials: bool
    sections: tuple[str, ...] | None = None  # the sections left ticked; None when none were offered


@dataclass(frozen=True, slots=True)
class PreferenceRow:
    """One newsletter as the preferences page shows it to one reader."""

    slug: str
    name: str  # "" = the newsletter follows BRIEFING_NEWSLETTER_NAME
    on: bool
    specials: bool
    paused: bool
    sections: tuple[tuple[str, bool], ...] = ()  # (section, ticked) when readers may choose


def offered_sections(newsletter: NewsletterData, default_order: Sequence[str]) -> tuple[str, ...]:
    """The sections a reader may leave out: the newsletter's order, else the settings' order."""
    if not newsletter.sections_optional:
        return ()
    return tuple(newsletter.section_order or default_order)


def preferences(
    session: Session, subscriber_id: int, version: int, *, default_sections: Sequence[str] = ()
) -> tuple[LinkState, list[PreferenceRow]]:
    """What the preferences page shows: every newsletter, and the reader's choices on each."""
    state = current_link_state(session, subscriber_id, version)
    mine = {s.newsletter_id: s for s in subscription_store.of_reader(session, subscriber_id)}
    rows = []
    for n in newsletter_store.list_newsletters(session):
        sub = mine.get(n.id)
        left_out = {section_key(x) for x in (sub.excluded_sections if sub else ())}
        sections = tuple((x, section_key(x) not in left_out) for x in offered_sections(n, default_sections))
        rows.append(
            PreferenceRow(
                n.slug, n.name, bool(sub and sub.active), sub.specials if sub else True, n.paused, sections
            )
        )
    return state, rows


def set_subscription(
    session: Session,
    subscriber_id: int,
    newsletter_id: int,
    *,
    on: bool,
    excluded: Sequence[str] | None = None,
    specials: bool | None = None,
    now: datetime,
) -> None:
    """One reader on or off one newsletter, with the sections left out and specials (None: as stored).

    The stored variant is always the canonical key of the excluded set, so the send groups
    readers by it. Leaves the address's own status to the caller (the preferences page, a loader).
    """
    if not on:
        subscription_store.leave(session, subscriber_id, newsletter_id, now=now)
        return
    subscription_store.subscribe(session, [subscriber_id], [newsletter_id], now=now)
    current = subscription_store.find(session, subscriber_id, newsletter_id)
    left_out = list(excluded) if excluded is not None else list(current.excluded_sections if current else ())
    subscription_store.set_choices(
        session,
        subscriber_id,
        newsletter_id,
        excluded_sections=left_out,
        variant=variant_key(left_out),
        specials=specials if specials is not None else (current.specials if current else True),
        now=now,
    )


def save_preferences(
    session: Session,
    subscriber_id: int,
    version: int,
    choices: Sequence[NewsletterChoice],
    *,
    default_sections: Sequence[str] = (),
    now: datetime,
) -> LinkState:
    """Store the preferences form: which newsletters, which of their sections, and specials or not.

    Everything is checked before anything is written, so a refused form changes nothing. A
    newsletter the form did not show is left as it is. Turning one on with the reader's own
    current link is their consent, so an unsubscribed address comes back (as "subscribe again"
    does); turning the last one off unsubscribes the address, as the one-click link does.
    Bounced, complained and blocklisted addresses keep their status whatever is chosen.
    """
    state = current_link_state(session, subscriber_id, version)
    by_slug = {n.slug: n for n in newsletter_store.list_newsletters(session)}
    plan: list[tuple[NewsletterData, NewsletterChoice, list[str] | None]] = []
    for choice in choices:
        n = by_slug.get(choice.slug)
        if n is None:
            raise InvalidInput(f"there is no newsletter {choice.slug[:40]!r}", field="newsletter")
        offered = offered_sections(n, default_sections)
        excluded: list[str] | None = None
        if offered and choice.sections is not None:
            ticked = {section_key(x) for x in choice.sections}
            unknown = ticked - {section_key(x) for x in offered}
            if unknown:
                raise InvalidInput(
                    f"{sorted(unknown)[0][:40]!r} is not a section of {n.slug}", field="sections"
                )
            if choice.on and not ticked:
                raise InvalidInput(
                    f"choose at least one section of {n.name or n.slug}, or turn it off", field="sections"
                )
            excluded = [x for x in offered if section_key(x) not in ticked]
        plan.append((n, choice, excluded))
    sid = state.subscriber.id
    for n, choice, excluded in plan:
        set_subscription(
            session, sid, n.id, on=choice.on, excluded=excluded, specials=choice.specials, now=now
        )
    status = state.subscriber.status
    if status == SubscriberStatus.UNSUBSCRIBED and any(c.on for _, c, _ in plan):
        data = subscriber_store.set_status(session, sid, SubscriberStatus.ACTIVE, now=now)
        return replace(state, subscriber=data)
    if status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING) and plan:
        if not subscription_store.has_active(session, sid):
            data, _ = unsubscribe(session, sid, now=now)
            return replace(state, subscriber=data)
    return state
