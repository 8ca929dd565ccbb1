"""Files editors exchange with other tools: subscriber CSV, article CSV and JSON lines.

Readers stream (a million rows never sit in memory), report each bad row with its line number,
and validate through briefing.inputs so a bad row is rejected whole, never half-written.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from briefing import inputs
from briefing import subscriber_columns as columns
from briefing.domain import ArticleInput, SubscriberInput
from briefing.errors import ImportFileError, InvalidInput

EMAIL_HEADERS = ("email", "e-mail", "email address", "email_address", "mail", "address")
FIRST_NAME_HEADERS = ("first name", "first_name", "firstname", "fname")
NAME_HEADERS = ("name", "full name", "full_name", *FIRST_NAME_HEADERS)
LAST_NAME_HEADERS = ("last name", "last_name", "lastname", "lname", "surname")
# Columns that say something of the row itself, so they are read, never kept as attributes.
# Mailchimp's audience export has OPTIN_TIME; listmonk's has created_at and updated_at.
DATE_HEADERS = {
    "created_at": ("created_at", "created"),
    "consent_at": ("consent_at", "optin_time"),
    "confirmed_at": ("confirmed_at", "confirm_time"),
    "unsubscribed_at": ("unsubscribed_at", "unsub_time"),
}
_ROW_HEADERS = ("status", "source", "attributes", "attribs", "updated_at")
# Cells starting with these are formulas in spreadsheets (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\0")
_QUOTED_START = (*_FORMULA_START, "'")
# One article on one line is a few kilobytes; a longer line is refused without being held whole.
MAX_JSON_LINE = 1_000_000
_LINE_ENDS = ("\n", "\r")


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str
    raw: str = ""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Row(Generic[T]):
    """One parsed row: either a value or a rejection, with the line it came from."""

    line: int
    value: T | None = None
    rejected: Rejected | None = None


def _open_text(path: Path) -> IO[str]:
    """Open a UTF-8 file (BOM or not) after checking all of it decodes.

    The check streams the file once before any row is read, so a Latin-1 export is refused
    whole instead of failing after part of it was imported.
    """
    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    if path.is_dir():
        raise ImportFileError(f"{path}: is a folder, not a file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            try:
                decoder.decode(chunk, final=False)
            except UnicodeDecodeError as exc:
                raise ImportFileError(
                    f"{path}: is not UTF-8 (byte {offset + exc.start + 1}); "
                    'save it as UTF-8 ("CSV UTF-8" in a spreadsheet) and import again'
                ) from None
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ImportFileError(f"{path}: ends in the middle of a UTF-8 character") from None
    return path.open("r", encoding="utf-8-sig", newline="")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


ProgressCallback = Callable[[int], None]


def read_subscriber_csv(
    path: Path,
    *,
    progress: ProgressCallback | None = None,
    allow_smtputf8: bool = False,
    suppression: bool = False,
) -> Iterator[Row[SubscriberInput]]:
    """Yield each data row as a SubscriberInput or a rejection with its line number.

    The first row is a header when it names an email column; otherwise the first column holds
    addresses and the second (if any) names. A file with a header but no email column is refused.
    A status column is read as Mailchimp and listmonk write it (an unknown word rejects the row);
    for a suppression list (`suppression`) a status or reason the reader does not know is no
    error, the command's own status applies.
    """
    handle = _open_text(path)
    try:
        yield from _subscriber_rows(handle, progress, allow_smtputf8, suppression)
    finally:
        handle.close()


@dataclass(frozen=True, slots=True)
class _Columns:
    email: int
    name: int | None = None
    last_name: int | None = None
    status: int | None = None
    reason: int | None = None
    source: int | None = None
    attributes: int | None = None
    dates: tuple[tuple[str, int], ...] = ()
    extra: tuple[tuple[int, str], ...] = ()


def _subscriber_rows(
    handle: IO[str], progress: ProgressCallback | None, allow_smtputf8: bool, suppression: bool
) -> Iterator[Row[SubscriberInput]]:
    reader = csv.reader(handle)
    try:
        first = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    columns = _columns([c.strip().casefold() for c in first], suppression)
    if columns is None:
        if not any("@" in c for c in first):
            raise ImportFileError(
                "no email column: name one column 'email' in the first row (see subscribers/README.md)"
            )
        columns = _Columns(email=0, name=1 if len(first) > 1 else None)
        yield _subscriber_row(1, first, columns, allow_smtputf8, suppression)
    start = reader.line_num
    while True:
        start = _next_row_line(reader.line_num, start)
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Row(start, rejected=Rejected(start, f"unreadable CSV: {exc}"))
            continue
        if progress is not None and start % 2000 == 0:
            progress(_bytes_read(handle))
        if not any(c.strip() for c in cells):
            continue
        yield _subscriber_row(start, cells, columns, allow_smtputf8, suppression)


def _next_row_line(line_num: int, previous_start: int) -> int:
    """Where the next row begins. A quoted cell may span lines, so it is the reader's count plus
    one; but after a csv.Error the reader has not counted the line it dropped, hence the max."""
    return max(line_num, previous_start) + 1


def _bytes_read(handle: IO[str]) -> int:
    try:
        return int(handle.buffer.tell())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return 0


def _columns(header: list[str], suppression: bool) -> _Columns | None:
    """Which column holds what; None when no column is an email column (a file without header)."""

    def first(names: Iterable[str]) -> int | None:
        wanted = set(names)
        return next((i for i, h in enumerate(header) if h in wanted), None)

    email = first(EMAIL_HEADERS)
    if email is None:
        return None
    name = first(NAME_HEADERS)
    last = first(LAST_NAME_HEADERS) if name is not None and header[name] in FIRST_NAME_HEADERS else None
    reason = first(("reason", "suppression reason")) if suppression else None
    dates = tuple((key, i) for key, names in DATE_HEADERS.items() if (i := first(names)) is not None)
    taken = {email, name, last, reason, *(i for _, i in dates)}
    extra = tuple((i, h) for i, h in enumerate(header) if i not in taken and h and h not in _ROW_HEADERS)
    if reason is not None:  # a suppression list's reason is kept with the row, as written
        extra = (*extra, (reason, header[reason]))
    return _Columns(
        email=email,
        name=name,
        last_name=last,
        status=first(("status",)),
        reason=reason,
        source=first(("source",)),
        attributes=first(("attributes", "attribs")),
        dates=dates,
        extra=extra,
    )


def _subscriber_row(
    line: int, cells: list[str], cols: _Columns, allow_smtputf8: bool, suppression: bool
) -> Row[SubscriberInput]:
    raw = ",".join(cells)[:200]

    def cell(index: int | None) -> str:
        return unquote_cell(cells[index]) if index is not None and index < len(cells) else ""

    try:
        if cols.email >= len(cells):
            raise InvalidInput("is missing", field="email")
        email = inputs.email_address(cell(cols.email), field="email", allow_smtputf8=allow_smtputf8)
        name = " ".join(p for p in (cell(cols.name).strip(), cell(cols.last_name).strip()) if p)
        name = inputs.one_line(name, field="name", max_len=inputs.MAX_NAME)
        attributes = columns.attributes(cell(cols.attributes)) if cols.attributes is not None else {}
        for i, key in cols.extra:
            if cell(i).strip():
                attributes[key] = inputs.one_line(cell(i), field=key, max_len=500)
        status = columns.row_status(cell(cols.status), cell(cols.reason), suppression)
        dates = {key: columns.import_moment(cell(i), field=key) for key, i in cols.dates}
        source = inputs.one_line(cell(cols.source), field="source", max_len=50)
    except InvalidInput as exc:
        return Row(line, rejected=Rejected(line, str(exc), raw))
    item = SubscriberInput(
        email=email, name=name, attributes=attributes or None, status=status, source=source, **dates
    )
    return Row(line, value=item)


def read_articles(path: Path) -> Iterator[Row[ArticleInput]]:
    """JSON lines (.jsonl/.ndjson/.json) or CSV (by extension), one article per row, upserted by URL."""
    handle = _open_text(path)
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            yield from _json_article_rows(handle)
        else:
            yield from _csv_article_rows(handle)
    finally:
        handle.close()


def _lines(handle: IO[str]) -> Iterator[tuple[int, str | None]]:
    """Each line with its number; None for a line over MAX_JSON_LINE (skipped, never held whole)."""
    number = 0
    while line := handle.readline(MAX_JSON_LINE + 1):
        number += 1
        if len(line) <= MAX_JSON_LINE or line.endswith(_LINE_ENDS):
            yield number, line
            continue
        while (rest := handle.readline(MAX_JSON_LINE)) and not rest.endswith(_LINE_ENDS):
            pass
        yield number, None


def _json_article_rows(handle: IO[str]) -> Iterator[Row[ArticleInput]]:
    for number, line in _lines(handle):
        if line is None:
            reason = f"is longer than {MAX_JSON_LINE} characters; one article per line"
            yield Row(number, rejected=Rejected(number, reason))
            continue
        if not line.strip():
            continue
        try:
            record = inputs.json_value(line)
        except InvalidInput as exc:
            yield Row(number, rejected=Rejected(number, str(exc), line[:200]))
            continue
        if not isinstance(record, dict):
            yield Row(number, rejected=Rejected(number, "each line must be a JSON object", line[:200]))
            continue
        yield _article_row(number, record, line[:200])


def _csv_article_rows(handle: IO[str]) -> Iterator[Row[ArticleInput]]:
    reader = csv.DictReader(handle)
    try:
        names = reader.fieldnames
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    if names is None:
        return
    fields = [f.strip().casefold() for f in names]
    if "url" not in fields or "title" not in fields:
        raise ImportFileError("the first row must name at least the columns url and title")
    reader.fieldnames = fields
    start = reader.line_num
    while True:
        start = _next_row_line(reader.line_num, start)
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a cell over the csv module's 131072 characters, a stray quote
            yield Row(start, rejected=Rejected(start, f"unreadable CSV: {exc}"))
            continue
        yield _article_row(start, dict(record), "")


def article_input(record: dict[str, Any], *, source: str = "import") -> ArticleInput:
    """Validate one article given as a mapping (file row or API body); raises InvalidInput."""

    def raw(key: str, *aliases: str) -> str | None:
        value = next((record[k] for k in (key, *aliases) if record.get(k) not in (None, "")), None)
        if value is not None and not isinstance(value, str):
            raise InvalidInput("must be text", field=key)
        return value

    def text(key: str, max_len: int, *, required: bool = False, multi: bool = False) -> str:
        if multi:
            return inputs.multi_line(raw(key), field=key, max_len=max_len)
        return inputs.one_line(raw(key), field=key, max_len=max_len, required=required)

    published: datetime | None = None
    try:
        published_raw = raw("published_at", "published")
    except InvalidInput:
        raise InvalidInput(
            "must be a date and time such as 2026-11-27T18:30:00Z", field="published_at"
        ) from None
    if published_raw:
        published = inputs.local_datetime(published_raw.replace("Z", "+00:00"), UTC, field="published_at")
    return ArticleInput(
        url=inputs.web_url(raw("url"), field="url"),
        title=text("title", inputs.MAX_HEADLINE, required=True),
        summary=text("summary", inputs.MAX_SUMMARY, multi=True),
        author=text("author", inputs.MAX_NAME),
        section=text("section", inputs.MAX_SECTION),
        image_url=inputs.web_url(raw("image_url", "image"), field="image_url", required=False),
        image_alt=text("image_alt", inputs.MAX_IMAGE_ALT),
        published_at=published,
        source=source,
    )


def _article_row(line: int, record: dict[str, Any], raw: str) -> Row[ArticleInput]:
    try:
        return Row(line, value=article_input(record))
    except InvalidInput as exc:
        return Row(line, rejected=Rejected(line, str(exc), raw))


def safe_cell(value: object) -> str:
    """Neutralise spreadsheet formulas: a cell that starts with = + - @ or a control gets a leading '.

    A cell that starts with ' gets one more, so `unquote_cell` gives back exactly what was written
    and an export imports again to the same names and addresses.
    """
    text = "" if value is None else str(value)
    if text.startswith(_QUOTED_START):
        return "'" + text
    return text


def unquote_cell(text: str) -> str:
    """Undo `safe_cell`: the ' in front of a formula character (or of another ') is dropped."""
    if text.startswith("'") and text[1:].startswith(_QUOTED_START):
        return text[1:]
    return text


def write_csv(handle: IO[str], header: Iterable[str], rows: Iterable[Iterable[object]]) -> int:
    writer = csv.writer(handle, lineterminator="\r\n")
    writer.writerow(list(header))
    count = 0
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        count += 1
    return count
