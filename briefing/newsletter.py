"""A newsletter of the newsroom and the identity of its editions: plain values, no database.

A newsroom sends several emails: a weekday briefing, a weekend edition, regional editions each at
06:00 local, breaking-news specials. Each edition belongs to one newsletter and has a kind: the
regular edition of its date, or the n-th special edition of that date, which can never collide
with the regular one (it has its own ledger, its own Message-IDs and its own archive page).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from briefing.errors import InvalidInput

PRIMARY_ID = 1  # the first newsletter; a database from before there were several has only this one
REGULAR = "regular"
ARCHIVE_CHOICES = ("web", "email")  # web: every edition on the site for all; email: only by email
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_SPECIAL_RE = re.compile(r"^special-([1-9][0-9]{0,3})$")
# The standing blocks a newsletter may word and link for itself (ComposeOptions' fields of the same name).
STANDING_KEYS = (
    "tip_heading",
    "tip_text",
    "tip_contact",
    "support_heading",
    "support_text",
    "support_label",
    "support_url",
    "partner_name",
    "partner_text",
    "partner_url",
    "partner_label",
    "postal_address",
    "why_text",
)


@dataclass(frozen=True, slots=True)
class NewsletterData:
    """One newsletter as stored; blank text fields mean "as the BRIEFING_ settings say"."""

    id: int
    slug: str
    name: str = ""
    sender_name: str = ""
    sender_address: str = ""
    reply_to: str = ""
    list_id: str = ""
    send_days: str = ""
    send_time: str = ""
    timezone: str = ""
    section_order: tuple[str, ...] = ()
    sections_optional: bool = False
    brand_colour: str = ""
    accent_colour: str = ""
    logo_url: str = ""
    standing: Mapping[str, str] = field(default_factory=dict)  # its own standing-block words and links
    template_set: str = ""
    archive: str = "web"
    paused: bool = False
    position: int = 0

    @property
    def primary(self) -> bool:
        return self.id == PRIMARY_ID

    @property
    def on_web(self) -> bool:
        return self.archive == "web"


def slugify(name: str) -> str:
    """A slug from a newsletter's name, for its URLs (/subscribe/<slug>, /archive/<slug>/)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    return slug or "briefing"


def check_slug(value: str) -> str:
    slug = value.strip().lower()
    if not _SLUG_RE.match(slug):
        raise InvalidInput(
            f"{value[:60]!r} is not a slug: use 1-40 lower-case letters, digits and hyphens (e.g. weekend)",
            field="slug",
        )
    return slug


def special_kind(number: int) -> str:
    return f"special-{number}"


def special_number(kind: str) -> int | None:
    """The n of "special-n"; None for the regular edition."""
    match = _SPECIAL_RE.match(kind)
    return int(match.group(1)) if match else None


def check_kind(value: str) -> str:
    kind = value.strip().lower()
    if kind != REGULAR and special_number(kind) is None:
        raise InvalidInput(f"{value[:40]!r} is not an edition kind: use regular or special-N", field="kind")
    return kind


def is_special(kind: str) -> bool:
    return kind != REGULAR


def edition_label(edition_date: object, kind: str = REGULAR) -> str:
    """How messages name an edition: its date, and which special it is."""
    day = edition_date.isoformat() if hasattr(edition_date, "isoformat") else str(edition_date)
    return day if kind == REGULAR else f"{day} ({kind})"
