"""The newsroom's newsletters: every rule for what one may hold, checked before anything is stored.

A newsletter's values end up in mail headers (From, Reply-To, List-Id), in its send calendar and
in its look, and they are read again on every send. A value that would break a header, a
calendar that would silently never send, or a template set that does not exist is refused here,
naming the field, so the CLI and the web refuse the same things and nothing half-checked is stored.
Blank values mean "as the BRIEFING_ settings say", as they do for the first newsletter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session

from briefing import calendar as cal
from briefing import inputs
from briefing.domain import ComposeOptions
from briefing.edition.compose import validate_options
from briefing.errors import Conflict, InvalidInput
from briefing.newsletter import ARCHIVE_CHOICES, STANDING_KEYS, NewsletterData, check_slug
from briefing.store import newsletters as newsletter_store

MAX_NAME = 200  # the column's size, and what a From display name can sensibly hold
MAX_LIST_ID = 200
MAX_SECTIONS = 50
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEXT_FIELDS = (
    "name",
    "sender_name",
    "sender_address",
    "reply_to",
    "list_id",
    "send_days",
    "send_time",
    "timezone",
    "brand_colour",
    "accent_colour",
    "logo_url",
    "template_set",
    "archive",
)
FIELDS = frozenset({*TEXT_FIELDS, "section_order", "sections_optional", "standing"})
MAX_BLOCK_TEXT = 500  # a standing block's line of words
_URL_BLOCKS = ("support_url", "partner_url")

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
# RFC 2919: the list-id is a dot-atom (RFC 5322 atext), a label and at least one more part.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_ID = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})+$")
_TEMPLATE_SET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True, slots=True)
class Checks:
    """What checking a newsletter needs from outside: where the template sets are, and how the
    settings read send days (so a newsletter's days mean exactly what BRIEFING_SEND_DAYS means)."""

    email_templates: Path  # templates/email; a template set is a folder in it
    parse_send_days: Callable[[str], Sequence[int]]


def add(
    session: Session, slug: str, raw: Mapping[str, object], *, now: datetime, checks: Checks
) -> NewsletterData:
    """A new newsletter, with no readers yet: they choose it on the sign-up or preferences page."""
    clean_slug = check_slug(slug)
    values = _checked(raw, checks)
    if not values.get("name"):
        raise InvalidInput("is required for a new newsletter", field="name")
    if "standing" in values:
        values["standing"] = {k: v for k, v in values["standing"].items() if v}  # type: ignore[attr-defined]
    _list_id_free(session, values, None)
    return newsletter_store.add_newsletter(session, clean_slug, values, now=now)


def edit(
    session: Session, slug: str, raw: Mapping[str, object], *, now: datetime, checks: Checks
) -> NewsletterData:
    """Change only the fields given; each is checked, then all are stored together or none."""
    current = newsletter_store.get_by_slug(session, slug)
    if not raw:
        raise InvalidInput("give at least one field to change", field="newsletter")
    values = _checked(raw, checks)
    if "name" in values and not values["name"]:
        raise InvalidInput("cannot be blank", field="name")
    if "standing" in values:  # the blocks named change; an empty one goes back to the settings'
        merged = {**current.standing, **values["standing"]}  # type: ignore[dict-item]
        values["standing"] = {k: v for k, v in merged.items() if v}
    _list_id_free(session, values, current.id)
    return newsletter_store.update_newsletter(session, current.id, values, now=now)


def pause(session: Session, slug: str, *, now: datetime) -> tuple[NewsletterData, bool]:
    """Stop a newsletter's sends (the scheduler skips it) without losing its readers; (data, changed)."""
    return _set_paused(session, slug, True, now=now)


def resume(session: Session, slug: str, *, now: datetime) -> tuple[NewsletterData, bool]:
    return _set_paused(session, slug, False, now=now)


def _set_paused(session: Session, slug: str, paused: bool, *, now: datetime) -> tuple[NewsletterData, bool]:
    current = newsletter_store.get_by_slug(session, slug)
    if current.paused == paused:
        return current, False
    return newsletter_store.update_newsletter(session, current.id, {"paused": paused}, now=now), True


def days_text(days: Sequence[int]) -> str:
    """Weekday numbers as the settings write them: runs of three or more as a range (mon-fri)."""
    ordered = sorted(set(days))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{WEEKDAYS[ordered[i]]}-{WEEKDAYS[ordered[j]]}")
        else:
            parts.extend(WEEKDAYS[d] for d in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


# --------------------------------------------------------------------------- the fields


def _checked(raw: Mapping[str, object], checks: Checks) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, value in raw.items():
        if name not in FIELDS:
            raise InvalidInput("is not a newsletter field that can be set", field=name)
        values[name] = _check_field(name, value, checks)
    return values


def _check_field(name: str, value: object, checks: Checks) -> object:
    if name == "sections_optional":
        return _flag(value, field=name)
    if name == "section_order":
        return _sections(value)
    if name == "standing":
        return _standing(value)
    text = "" if value is None else str(value)
    if name == "name":
        return inputs.one_line(text, field=name, max_len=MAX_NAME)
    if name == "sender_name":
        return inputs.one_line(text, field=name, max_len=MAX_NAME)
    if name in ("sender_address", "reply_to"):
        return inputs.email_address(text, field=name) if text.strip() else ""
    if name == "list_id":
        return _list_id(text)
    if name == "send_days":
        return _send_days(text, checks)
    if name == "send_time":
        return _send_time(text)
    if name == "timezone":
        return _timezone(text)
    if name in ("brand_colour", "accent_colour"):
        return _colour(text, field=name)
    if name == "logo_url":
        return _logo_url(text)
    if name == "template_set":
        return _template_set(text, checks.email_templates)
    assert name == "archive"
    return _archive(text)


def _standing(value: object) -> dict[str, str]:
    """The standing blocks' own words and links, from {key: value} or "key=value" items.

    An empty value takes the key back to the settings' (`edit` drops it). Links must be https;
    the tip contact is an address or an https link; the "why you get this" line may name only
    {newsletter} and {site}, as BRIEFING_ templates may.
    """
    items: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        items = [(str(k), "" if v is None else str(v)) for k, v in value.items()]
    else:
        for item in [value] if isinstance(value, str) else list(value):  # type: ignore[call-overload]
            key, sep, text = str(item).partition("=")
            if not sep:
                raise InvalidInput(
                    f"{str(item)[:40]!r} is not KEY=VALUE (for example tip_contact=tips@news.example.com)",
                    field="standing",
                )
            items.append((key, text))
    found: dict[str, str] = {}
    for key, text in items:
        key = key.strip().lower()
        if key not in STANDING_KEYS:
            raise InvalidInput(
                f"{key[:40]!r} is not a block (use {', '.join(STANDING_KEYS)})", field="standing"
            )
        clean = inputs.one_line(text, field=key, max_len=MAX_BLOCK_TEXT)
        if clean and key in _URL_BLOCKS:
            clean = inputs.web_url(clean, field=key)
            if not clean.startswith("https://"):
                raise InvalidInput("must be an https:// address", field=key)
        elif clean and key == "tip_contact" and "@" in clean and not clean.startswith("https://"):
            clean = inputs.email_address(clean, field=key)
        elif clean and key == "tip_contact":
            clean = inputs.web_url(clean, field=key)
            if not clean.startswith("https://"):
                raise InvalidInput("must be an email address or an https:// address", field=key)
        elif clean and key == "why_text":
            validate_options(replace(ComposeOptions(), why_text=clean))
        found[key] = clean
    return found


def _flag(value: object, *, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput("must be yes or no", field=field)


def _sections(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        parts: list[object] = list(value.split(","))
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        raise InvalidInput("must be a comma-separated list of sections", field="section_order")
    if len(parts) > MAX_SECTIONS:
        raise InvalidInput(f"lists {len(parts)} sections; the limit is {MAX_SECTIONS}", field="section_order")
    out: list[str] = []
    seen: set[str] = set()
    for part in parts:
        section = inputs.one_line(str(part), field="section_order", max_len=inputs.MAX_SECTION)
        if not section:
            continue
        if section.casefold() in seen:
            raise InvalidInput(f"names {section!r} twice", field="section_order")
        seen.add(section.casefold())
        out.append(section)
    return tuple(out)


def _list_id(text: str) -> str:
    value = inputs.one_line(text, field="list_id", max_len=MAX_LIST_ID + 2)
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    if not value:
        return ""
    if len(value) > MAX_LIST_ID or not value.isascii() or not _LIST_ID.match(value):
        raise InvalidInput(
            f"{value[:60]!r} is not a list id: write dot-separated words such as weekend.news.example.com",
            field="list_id",
        )
    return value


def _send_days(text: str, checks: Checks) -> str:
    value = inputs.one_line(text, field="send_days", max_len=60)
    if not value:
        return ""
    try:
        days = checks.parse_send_days(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="send_days") from None
    return days_text(days)


def _send_time(text: str) -> str:
    value = inputs.one_line(text, field="send_time", max_len=10)
    if not value:
        return ""
    try:
        at = cal.parse_local_time(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="send_time") from None
    if at.second:
        raise InvalidInput(f"{value!r}: give the time to the minute, HH:MM", field="send_time")
    return f"{at.hour:02d}:{at.minute:02d}"


def _timezone(text: str) -> str:
    value = inputs.one_line(text, field="timezone", max_len=60)
    if not value:
        return ""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f"unknown time zone {value!r} (use an IANA name such as America/New_York)", field="timezone"
        ) from None
    return value


def _colour(text: str, *, field: str) -> str:
    value = inputs.one_line(text, field=field, max_len=20)
    if value and not _COLOUR.match(value):
        raise InvalidInput(f"{value!r} is not a colour: write #rrggbb, for example #14213d", field=field)
    return value.lower()


def _logo_url(text: str) -> str:
    value = inputs.web_url(text, field="logo_url", required=False)
    if value and not value.lower().startswith("https://"):
        raise InvalidInput(
            "must be an https:// address (mail clients block plain http images)", field="logo_url"
        )
    return value


def _template_set(text: str, email_templates: Path) -> str:
    value = inputs.one_line(text, field="template_set", max_len=60)
    if not value:
        return ""
    if not _TEMPLATE_SET.match(value):
        raise InvalidInput(
            f"{value[:60]!r} is not a folder name: use letters, digits, hyphens and underscores",
            field="template_set",
        )
    folder = email_templates / value
    if not folder.is_dir():
        raise InvalidInput(f"there is no folder {value!r} in {email_templates}", field="template_set")
    missing = [name for name in ("briefing.mjml.j2", "briefing.txt.j2") if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(f"the folder {value!r} has no {' or '.join(missing)}", field="template_set")
    return value


def _archive(text: str) -> str:
    value = inputs.one_line(text, field="archive", max_len=10).lower()
    if value not in ARCHIVE_CHOICES:
        raise InvalidInput(
            "must be web (every edition on the site) or email (only by email)", field="archive"
        )
    return value


def _list_id_free(session: Session, values: Mapping[str, object], own_id: int | None) -> None:
    """Two newsletters with one List-Id would land in one folder of every reader's mail filter."""
    wanted = values.get("list_id")
    if not wanted:
        return
    for other in newsletter_store.list_newsletters(session):
        if other.id != own_id and other.list_id.lower() == str(wanted).lower():
            raise Conflict(f"{wanted!r} is the list id of {other.slug}", field="list_id")
