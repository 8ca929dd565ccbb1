"""Newsletters: the newsroom's emails, in the order editors list them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlmodel import Session, col, select

from briefing.errors import Conflict, NotFound
from briefing.models import Newsletter
from briefing.newsletter import PRIMARY_ID, NewsletterData, check_slug

EDITABLE = frozenset(
    {
        "name",
        "sender_name",
        "sender_address",
        "reply_to",
        "list_id",
        "send_days",
        "send_time",
        "timezone",
        "section_order",
        "sections_optional",
        "brand_colour",
        "accent_colour",
        "logo_url",
        "standing",
        "template_set",
        "archive",
        "paused",
        "position",
    }
)


def to_data(row: Newsletter) -> NewsletterData:
    assert row.id is not None
    return NewsletterData(
        id=row.id,
        slug=row.slug,
        name=row.name,
        sender_name=row.sender_name,
        sender_address=row.sender_address,
        reply_to=row.reply_to,
        list_id=row.list_id,
        send_days=row.send_days,
        send_time=row.send_time,
        timezone=row.timezone,
        section_order=tuple(row.section_order or ()),
        sections_optional=row.sections_optional,
        brand_colour=row.brand_colour,
        accent_colour=row.accent_colour,
        logo_url=row.logo_url,
        standing=dict(row.standing or {}),
        template_set=row.template_set,
        archive=row.archive,
        paused=row.paused,
        position=row.position,
    )


def list_newsletters(session: Session, *, include_paused: bool = True) -> list[NewsletterData]:
    stmt = select(Newsletter).order_by(col(Newsletter.position), col(Newsletter.id))
    if not include_paused:
        stmt = stmt.where(col(Newsletter.paused).is_(False))
    return [to_data(row) for row in session.exec(stmt).all()]


def get_newsletter(session: Session, newsletter_id: int) -> NewsletterData:
    row = session.get(Newsletter, newsletter_id)
    if row is None:
        raise NotFound(f"no newsletter with id {newsletter_id}", field="newsletter")
    return to_data(row)


def find_by_slug(session: Session, slug: str) -> NewsletterData | None:
    row = session.exec(select(Newsletter).where(Newsletter.slug == slug.strip().lower())).first()
    return to_data(row) if row else None


def get_by_slug(session: Session, slug: str) -> NewsletterData:
    found = find_by_slug(session, slug)
    if found is None:
        known = ", ".join(n.slug for n in list_newsletters(session)) or "none yet"
        raise NotFound(f"no newsletter {slug[:60]!r} (newsletters: {known})", field="newsletter")
    return found


def primary(session: Session) -> NewsletterData:
    """The first newsletter: the one a database from before several newsletters holds."""
    return get_newsletter(session, PRIMARY_ID)


def add_newsletter(
    session: Session, slug: str, values: Mapping[str, object], *, now: datetime
) -> NewsletterData:
    slug = check_slug(slug)
    if find_by_slug(session, slug) is not None:
        raise Conflict(f"there is already a newsletter {slug!r}", field="slug")
    unknown = set(values) - EDITABLE
    if unknown:
        raise ValueError(f"not newsletter fields: {sorted(unknown)}")
    row = Newsletter(slug=slug, created_at=now, updated_at=now, **values)  # type: ignore[arg-type]
    session.add(row)
    session.flush()
    return to_data(row)


def update_newsletter(
    session: Session, newsletter_id: int, changes: Mapping[str, object], *, now: datetime
) -> NewsletterData:
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not newsletter fields: {sorted(unknown)}")
    row = session.get(Newsletter, newsletter_id)
    if row is None:
        raise NotFound(f"no newsletter with id {newsletter_id}", field="newsletter")
    for name, value in changes.items():
        if name == "section_order":
            value = list(value)  # type: ignore[call-overload]
        elif name == "standing":
            value = dict(value)  # type: ignore[call-overload]
        setattr(row, name, value)
    row.updated_at = now
    session.add(row)
    session.flush()
    return to_data(row)
