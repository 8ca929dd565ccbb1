"""Files editors exchange with other tools: subscriber CSV, article CSV and JSON lines.

Readers stream (a million rows never sit in memory), report each bad row with its line number,
and validate through briefing.inputs so a bad row is rejected whole, never half-written.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from briefing import inputs
from briefing.domain import ArticleInput, SubscriberInput
from briefing.errors import ImportFileError, InvalidInput

EMAIL_HEADERS = ("email", "e-mail", "email address", "email_address", "mail", "address")
NAME_HEADERS = ("name", "full name", "full_name", "first name", "first_name", "firstname")
# Cells starting with these are formulas in spreadsheets (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\0")


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
    path: Path, *, progress: ProgressCallback | None = None
) -> Iterator[Row[SubscriberInput]]:
    """Yield each data row as a SubscriberInput or a rejection with its line number.

    The first row is a header when it names an email column; otherwise the first column holds
    addresses and the second (if any) names. A file with a header but no email column is refused.
    """
    handle = _open_text(path)
    try:
        yield from _subscriber_rows(handle, progress)
    finally:
        handle.close()


def _subscriber_rows(handle: IO[str], progress: ProgressCallback | None) -> Iterator[Row[SubscriberInput]]:
    reader = csv.reader(handle)
    try:
        first = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    header = [c.strip().casefold() for c in first]
    email_col, name_col = _columns(header)
    extra_cols: dict[int, str] = {}
    if email_col is None:
        if any("@" in c for c in first):
            email_col, name_col = 0, (1 if len(first) > 1 else None)
            yield _subscriber_row(1, first, email_col, name_col, {})
        else:
            raise ImportFileError(
                "no email column: name one column 'email' in the first row (see subscribers/README.md)"
            )
    else:
        extra_cols = {
            i: h
            for i, h in enumerate(header)
            if i not in (email_col, name_col) and h and h not in ("status", "created", "created_at")
        }
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines; report where the row begins
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
        yield _subscriber_row(start, cells, email_col, name_col, extra_cols)


def _bytes_read(handle: IO[str]) -> int:
    try:
        return int(handle.buffer.tell())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return 0


def _columns(header: list[str]) -> tuple[int | None, int | None]:
    email_col = next((i for i, h in enumerate(header) if h in EMAIL_HEADERS), None)
    name_col = next((i for i, h in enumerate(header) if h in NAME_HEADERS), None)
    return email_col, name_col


def _subscriber_row(
    line: int, cells: list[str], email_col: int, name_col: int | None, extra_cols: dict[int, str]
) -> Row[SubscriberInput]:
    raw = ",".join(cells)[:200]
    try:
        if email_col >= len(cells):
            raise InvalidInput("is missing", field="email")
        email = inputs.email_address(cells[email_col], field="email")
        name = ""
        if name_col is not None and name_col < len(cells):
            name = inputs.one_line(cells[name_col], field="name", max_len=inputs.MAX_NAME)
        attributes = {
            key: inputs.one_line(cells[i], field=key, max_len=500)
            for i, key in extra_cols.items()
            if i < len(cells) and cells[i].strip()
        }
    except InvalidInput as exc:
        return Row(line, rejected=Rejected(line, str(exc), raw))
    return Row(line, value=SubscriberInput(email=email, name=name, attributes=attributes or None))


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


def _json_article_rows(handle: IO[str]) -> Iterator[Row[ArticleInput]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(number, rejected=Rejected(number, f"not valid JSON: {exc.msg}", line[:200]))
            continue
        if not isinstance(record, dict):
            yield Row(number, rejected=Rejected(number, "each line must be a JSON object", line[:200]))
            continue
        yield _article_row(number, record, line[:200])


def _csv_article_rows(handle: IO[str]) -> Iterator[Row[ArticleInput]]:
    reader = csv.DictReader(handle)
    if reader.fieldnames is None:
        return
    fields = [f.strip().casefold() for f in reader.fieldnames]
    if "url" not in fields or "title" not in fields:
        raise ImportFileError("the first row must name at least the columns url and title")
    reader.fieldnames = fields
    for record in reader:
        yield _article_row(reader.line_num, dict(record), "")


def article_input(record: dict[str, Any], *, source: str = "import") -> ArticleInput:
    """Validate one article given as a mapping (file row or API body); raises InvalidInput."""

    def text(key: str, max_len: int, *, required: bool = False, multi: bool = False) -> str:
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidInput("must be text", field=key)
        if multi:
            return inputs.multi_line(value, field=key, max_len=max_len)
        return inputs.one_line(value, field=key, max_len=max_len, required=required)

    published_raw = record.get("published_at") or record.get("published")
    published: datetime | None = None
    if published_raw:
        if not isinstance(published_raw, str):
            raise InvalidInput("must be a date and time such as 2026-11-27T18:30:00Z", field="published_at")
        published = inputs.local_datetime(published_raw.replace("Z", "+00:00"), UTC, field="published_at")
    return ArticleInput(
        url=inputs.web_url(record.get("url"), field="url"),
        title=text("title", inputs.MAX_HEADLINE, required=True),
        summary=text("summary", inputs.MAX_SUMMARY, multi=True),
        author=text("author", inputs.MAX_NAME),
        section=text("section", inputs.MAX_SECTION),
        image_url=inputs.web_url(
            record.get("image_url") or record.get("image"), field="image_url", required=False
        ),
        image_alt=text("image_alt", 300),
        published_at=published,
        source=source,
    )


def _article_row(line: int, record: dict[str, Any], raw: str) -> Row[ArticleInput]:
    try:
        return Row(line, value=article_input(record))
    except InvalidInput as exc:
        return Row(line, rejected=Rejected(line, str(exc), raw))


def safe_cell(value: object) -> str:
    """Neutralise spreadsheet formulas: a cell that starts with = + - @ or a control gets a leading '."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def write_csv(handle: IO[str], header: Iterable[str], rows: Iterable[Iterable[object]]) -> int:
    writer = csv.writer(handle, lineterminator="\r\n")
    writer.writerow(list(header))
    count = 0
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        count += 1
    return count
