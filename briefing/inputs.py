"""Validation of what people type or import: emails, URLs, one-line text, dates.

Every check raises InvalidInput naming the field, so the CLI and the web can show the exact
problem and exit non-zero / answer 4xx without touching the database.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, tzinfo
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from briefing.errors import InvalidInput

MAX_EMAIL = 254
MAX_URL = 2000
MAX_HEADLINE = 300
MAX_NAME = 200
MAX_SECTION = 100
MAX_BLURB = 5000
MAX_SUMMARY = 5000

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n\u2028\u2029\x85]")


def email_address(value: str, *, field: str = "email") -> str:
    """Return the normalised address (domain lower-cased, IDNA as typed) or raise InvalidInput."""
    raw = value if isinstance(value, str) else str(value)
    if _LINE_BREAK.search(raw) or "\x00" in raw:
        raise InvalidInput("must be a single address without line breaks", field=field)
    raw = raw.strip()
    if not raw:
        raise InvalidInput("is empty", field=field)
    if len(raw) > MAX_EMAIL:
        raise InvalidInput(f"is longer than {MAX_EMAIL} characters", field=field)
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{raw!r} is not a valid address: {exc}", field=field) from None
    return result.normalized


def email_key(address: str) -> str:
    """The uniqueness key: the whole address lower-cased.

    Mail systems treat the local part as case-sensitive in theory, but no real mailbox provider
    does, and two rows for Alice@ and alice@ would mean two copies for one reader.
    """
    return address.casefold()


def one_line(value: str | None, *, field: str, max_len: int, required: bool = False) -> str:
    """Plain single-line text (headline, name, section): no control characters, bounded length."""
    text = "" if value is None else str(value)
    if _LINE_BREAK.search(text):
        raise InvalidInput("must be one line (no line breaks)", field=field)
    if _CONTROL.search(text):
        raise InvalidInput("contains control characters", field=field)
    text = text.strip()
    if required and not text:
        raise InvalidInput("is required", field=field)
    if len(text) > max_len:
        raise InvalidInput(f"is {len(text)} characters; the limit is {max_len}", field=field)
    return text


def multi_line(value: str | None, *, field: str, max_len: int) -> str:
    """Free text such as a Markdown blurb: line breaks allowed, NUL and other controls not."""
    text = "" if value is None else str(value)
    if _CONTROL.search(text):
        raise InvalidInput("contains control characters", field=field)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > max_len:
        raise InvalidInput(f"is {len(text)} characters; the limit is {max_len}", field=field)
    return text


def web_url(value: str | None, *, field: str = "url", required: bool = True) -> str:
    """An absolute http(s) URL; anything else (javascript:, data:, relative) is refused."""
    text = one_line(value, field=field, max_len=MAX_URL, required=required)
    if not text:
        return ""
    if any(ch.isspace() for ch in text):
        raise InvalidInput("must not contain spaces", field=field)
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput(f"must start with http:// or https:// (got {text[:40]!r})", field=field)
    if not parts.netloc or not parts.hostname:
        raise InvalidInput("has no host name", field=field)
    return text


def local_date(value: str, *, field: str = "date") -> date:
    """An edition date written as YYYY-MM-DD."""
    try:
        return date.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise InvalidInput(f"{value!r} is not a date; write it as YYYY-MM-DD", field=field) from None


def local_datetime(value: str, zone: tzinfo, *, field: str) -> datetime:
    """A moment typed in the newsroom's zone ("2026-11-28 05:30", "2026-11-28T05:30", or a date).

    An explicit offset is honoured; otherwise the configured zone applies. Returns aware UTC.
    """
    text = value.strip().replace(" ", "T", 1) if value else ""
    zone_name = getattr(zone, "key", str(zone))
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(0, 0))
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{value!r} is not a date and time; write it as YYYY-MM-DD HH:MM (in {zone_name})", field=field
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def embargo_and_expiry(embargo: datetime | None, expires: datetime | None) -> None:
    if embargo is not None and expires is not None and embargo >= expires:
        raise InvalidInput("the embargo must end before the story expires", field="embargo")


def position(value: int, *, field: str = "position") -> int:
    if value < 1 or value > 10_000:
        raise InvalidInput("must be a number from 1 to 10000", field=field)
    return value
