"""Validation of what people type or import: emails, URLs, text, dates, ids, JSON documents.

Every check raises InvalidInput naming the field, so the CLI and the web can show the exact
problem and exit non-zero / answer 4xx without touching the database. Forms, the CLI, file
imports, the CMS API and feeds all call these, so each rule is written once: a value refused
here is refused at every door, and a value accepted here can be stored and mailed.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from datetime import UTC, date, datetime, time, tzinfo
from itertools import accumulate
from typing import Any

from email_validator import EmailNotValidError, validate_email

from briefing import urls
from briefing.domain import MAX_ID
from briefing.errors import InvalidInput

MAX_EMAIL = 254
MAX_URL = urls.MAX_URL
MAX_HEADLINE = 300
MAX_NAME = 200
MAX_SECTION = 100
MAX_BLURB = 5000
MAX_SUMMARY = 5000
MAX_IMAGE_ALT = 300

# Moments and dates a newsroom can mean (published, embargo, expiry, edition dates). Outside
# these years a value is a typo or a probe, and near years 1 and 9999 converting between zones
# overflows Python's datetime.
FIRST_YEAR = 1900
LAST_YEAR = 2200
EARLIEST = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
LATEST = datetime(LAST_YEAR, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

# JSON documents (API bodies, lines of an import): refused before json.loads spends anything on
# them. Articles are flat objects, so 32 levels is generous; Python's int() is quadratic in the
# digits and stops at 4300 of them, and no field we read is a number that long.
MAX_JSON_DEPTH = 32
MAX_JSON_DIGITS = 20

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n\u2028\u2029\x85]")
# Half of a UTF-16 pair on its own: Python strings can hold one (from JSON "\ud800" or a
# non-UTF-8 command line), but no UTF-8 database column, email or web page can.
_SURROGATE = re.compile("[\ud800-\udfff]")


def email_address(value: str, *, field: str = "email", allow_smtputf8: bool = False) -> str:
    """Return the normalised address (domain lower-cased) or raise InvalidInput.

    Only what the relay can carry is accepted. Without SMTPUTF8 a non-ASCII local part could
    never be delivered, so it is refused, and an internationalised domain comes back in its
    ASCII (IDNA) form, the one the message builder writes (briefing.mail.headers).
    """
    raw = value if isinstance(value, str) else str(value)
    if _LINE_BREAK.search(raw) or "\x00" in raw:
        raise InvalidInput("must be a single address without line breaks", field=field)
    if _SURROGATE.search(raw):
        raise InvalidInput("is not valid Unicode (it holds bytes that are not UTF-8)", field=field)
    raw = raw.strip()
    if not raw:
        raise InvalidInput("is empty", field=field)
    if len(raw) > MAX_EMAIL:
        raise InvalidInput(f"is longer than {MAX_EMAIL} characters", field=field)
    if not allow_smtputf8 and not raw.rpartition("@")[0].isascii():
        raise InvalidInput(f"{raw!r} needs SMTPUTF8, which the relay is not set to support", field=field)
    try:
        result = validate_email(raw, check_deliverability=False, allow_smtputf8=allow_smtputf8)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{raw!r} is not a valid address: {exc}", field=field) from None
    return result.normalized if allow_smtputf8 or not result.ascii_email else result.ascii_email


def email_key(address: str) -> str:
    """The uniqueness key: the whole address lower-cased.

    Mail systems treat the local part as case-sensitive in theory, but no real mailbox provider
    does, and two rows for Alice@ and alice@ would mean two copies for one reader.
    """
    return address.casefold()


def _bounded_text(value: object, *, field: str, max_len: int) -> str:
    text = "" if value is None else str(value)
    # Surrounding blanks are trimmed, but a value many times the limit is refused unread.
    if len(text) > 4 * max_len + 1000:
        raise InvalidInput(f"is {len(text)} characters; the limit is {max_len}", field=field)
    if _SURROGATE.search(text):
        raise InvalidInput("is not valid Unicode (it holds a lone surrogate)", field=field)
    return text


def one_line(value: str | None, *, field: str, max_len: int, required: bool = False) -> str:
    """Plain single-line text (headline, name, section): no control characters, bounded length."""
    text = _bounded_text(value, field=field, max_len=max_len)
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
    text = _bounded_text(value, field=field, max_len=max_len)
    if _CONTROL.search(text):
        raise InvalidInput("contains control characters", field=field)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > max_len:
        raise InvalidInput(f"is {len(text)} characters; the limit is {max_len}", field=field)
    return text


def web_url(value: str | None, *, field: str = "url", required: bool = True) -> str:
    """An absolute http(s) URL with a well-formed host; anything else (javascript:, data:,
    relative, `http://[zz]/`, a port over 65535) is refused by the rules of briefing.urls."""
    text = one_line(value, field=field, max_len=MAX_URL, required=required)
    if not text:
        return ""
    try:
        urls.checked_url(text)
    except urls.InvalidURL as exc:
        raise InvalidInput(str(exc), field=field) from None
    return text


def _quoted(value: object, limit: int = 40) -> str:
    """The typed value in an error message: repr (escapes controls and surrogates), shortened."""
    text = value if isinstance(value, str) else str(value)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def local_date(value: str, *, field: str = "date") -> date:
    """An edition date written as YYYY-MM-DD, in the years FIRST_YEAR..LAST_YEAR."""
    try:
        day = date.fromisoformat(value.strip())
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{_quoted(value)} is not a date; write it as YYYY-MM-DD", field=field) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise InvalidInput(f"{day.isoformat()} is not between {FIRST_YEAR} and {LAST_YEAR}", field=field)
    return day


def local_datetime(value: str, zone: tzinfo, *, field: str) -> datetime:
    """A moment typed in the newsroom's zone ("2026-11-28 05:30", "2026-11-28T05:30", or a date).

    An explicit offset is honoured; otherwise the configured zone applies. Returns aware UTC,
    inside the years FIRST_YEAR..LAST_YEAR (see `moment`).
    """
    text = value.strip().replace(" ", "T", 1) if isinstance(value, str) else ""
    zone_name = getattr(zone, "key", str(zone))
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), time(0, 0))
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{_quoted(value)} is not a date and time; write it as YYYY-MM-DD HH:MM (in {zone_name})",
            field=field,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return moment(parsed, field=field)


def moment(value: datetime, *, field: str) -> datetime:
    """An aware moment as UTC, refused unless it falls in the years FIRST_YEAR..LAST_YEAR.

    The window is checked after the zone is applied: 0001-01-01T00:00+01:00 is in year 0 in UTC,
    which datetime cannot hold, and every later comparison or database write would fail on it.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("needs a time zone", field=field)
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise InvalidInput(
            f"{value.isoformat()} is not between {FIRST_YEAR} and {LAST_YEAR} (in UTC)", field=field
        )
    return utc


def embargo_and_expiry(embargo: datetime | None, expires: datetime | None) -> None:
    """Both moments in range, and the embargo over before the story expires."""
    if embargo is not None:
        embargo = moment(embargo, field="embargo_until")
    if expires is not None:
        expires = moment(expires, field="expires_at")
    if embargo is not None and expires is not None and embargo >= expires:
        raise InvalidInput("the embargo must end before the story expires", field="embargo")


def position(value: int, *, field: str = "position") -> int:
    if value < 1 or value > 10_000:
        raise InvalidInput("must be a number from 1 to 10000", field=field)
    return value


def record_id(value: object, *, field: str) -> int:
    """The id of a stored row, typed or sent: ASCII digits only, 1..MAX_ID (64-bit signed).

    Larger numbers name no row, and handing them to the database driver fails inside it.
    """
    if isinstance(value, bool):
        raise InvalidInput(f"must be a number from 1 to {MAX_ID}", field=field)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
            raise InvalidInput(f"must be a number from 1 to {MAX_ID}", field=field)
        number = int(text)
    if not 1 <= number <= MAX_ID:
        raise InvalidInput(f"must be a number from 1 to {MAX_ID}", field=field)
    return number


# --------------------------------------------------------------------------- JSON documents

_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_DEPTH_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest, counted on the text without parsing it.

    Linear and in C (regular expressions, then a running sum), so a body of a million brackets
    costs milliseconds instead of a RecursionError inside json.loads.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if not brackets:
        return 0
    return max(0, max(accumulate(array("b", brackets.encode("ascii").translate(_DEPTH_STEPS)))))


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_DIGITS:
        raise InvalidInput(f"not accepted: a number has more than {MAX_JSON_DIGITS} digits")
    return int(text)


def _json_float(text: str) -> float:
    mantissa = re.split("[eE]", text, maxsplit=1)[0]
    if sum(ch.isdigit() for ch in mantissa) > MAX_JSON_DIGITS or len(text) > 3 * MAX_JSON_DIGITS:
        raise InvalidInput(f"not accepted: a number has more than {MAX_JSON_DIGITS} digits")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput("not accepted: a number is too large")
    return value


def _json_constant(name: str) -> float:
    raise InvalidInput(f"not valid JSON: {name} is not a JSON number")


def json_value(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse one JSON document (an API body, a line of an import) or raise InvalidInput.

    Refused before or while parsing, never after a costly parse: nesting deeper than max_depth,
    integers of more than MAX_JSON_DIGITS digits, NaN and Infinity. Lone surrogates in strings
    are left for the field rules, so one bad article is rejected alone. The message reads after
    "the body is" or "line N:".
    """
    depth = json_depth(text)
    if depth > max_depth:
        raise InvalidInput(f"not accepted: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # unmatched brackets the scan could not pair up
        raise InvalidInput(f"not accepted: JSON nested deeper than {max_depth} levels") from None
