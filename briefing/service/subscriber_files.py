"""The list's files: import (briefing's own CSV, Mailchimp's and listmonk's exports), suppression
lists, and the export that imports again to the same state.

An import streams in batches and commits per batch, so a crash keeps whole batches; it never
re-activates an address that left, and a file that says a reader left suppresses them. An
export neutralises spreadsheet formulas. The rules per row are the store's `import_batch`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files
from briefing.db import session_scope
from briefing.domain import SUPPRESSED_STATUSES, SubscriberData, SubscriberInput, SubscriberStatus
from briefing.errors import ImportFileError, InvalidInput
from briefing.store import newsletters as newsletter_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store

IMPORT_BATCH = 1000


@dataclass(slots=True)
class SubscriberImportReport:
    counts: subscriber_store.ImportCounts = field(default_factory=subscriber_store.ImportCounts)
    rejected_sample: list[files.Rejected] = field(default_factory=list)
    rejected_file: Path | None = None

    SAMPLE = 20


def import_subscribers(
    engine: sa.Engine,
    path: Path,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    source: str = "import",
    rejects_to: Path | None = None,
    progress: Callable[[int], None] | None = None,
    allow_smtputf8: bool = False,
    newsletter_ids: Sequence[int] = (),
    now: datetime,
) -> SubscriberImportReport:
    """Stream a CSV into the list in batches, one transaction per batch.

    The whole file's encoding and header are checked before the first row is written, and each
    batch is all-or-nothing, so a crash leaves whole batches, never a half-written row.
    A `status` column is honoured: a row that unsubscribed, bounced ("cleaned"), complained or
    is blocklisted is stored suppressed and suppresses a reader already on the list; nothing
    re-activates a suppressed address. An address the relay cannot carry (`allow_smtputf8`) is
    a rejected row, never a stored one.

    Newsletters: a `newsletters` column (slugs separated by spaces or semicolons) and
    `newsletter_ids` (the command's --newsletter) name those a row is put on; a new row that
    names none goes on the first newsletter. A slug no newsletter has stops the import before
    anything is written, with its line. Readers already on the list are added to the newsletters
    named, never put back on one they left.
    """
    if status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        raise InvalidInput("must be active or pending", field="status")
    with Session(engine) as session:
        known = {n.slug: n.id for n in newsletter_store.list_newsletters(session)}
    column = _names_newsletters(path)
    if column:
        for row in files.read_subscriber_csv(path, allow_smtputf8=allow_smtputf8):
            if row.value is not None:
                _row_newsletters(row.line, row.value, known)
    rows = files.read_subscriber_csv(path, progress=progress, allow_smtputf8=allow_smtputf8)
    return _import_rows(
        engine,
        rows,
        status=status,
        source=source,
        rejects_to=rejects_to,
        newsletters=_Newsletters(known, tuple(sorted(set(newsletter_ids))), column),
        now=now,
    )


NEWSLETTERS_COLUMN = "newsletters"
_SLUG_SEPARATORS = re.compile(r"[\s;,]+")


@dataclass(frozen=True, slots=True)
class _Newsletters:
    known: dict[str, int]  # slug -> id
    named: tuple[int, ...]  # the command's own (--newsletter), for every row
    column: bool  # the file has a newsletters column


def _names_newsletters(path: Path) -> bool:
    """Whether the file's first row has a newsletters column (then every slug is checked first)."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            header = next(files.csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, files.csv.Error):
        return False  # the import itself reports the file's trouble
    return NEWSLETTERS_COLUMN in (cell.strip().casefold() for cell in header)


def _row_newsletters(line: int, item: SubscriberInput, known: dict[str, int]) -> tuple[int, ...] | None:
    """The newsletters a row's own cell names (None: it names none); ImportFileError for a slug unknown.

    The file reader keeps a column it does not know among the row's attributes, which is where
    the cell is found.
    """
    cell = (item.attributes or {}).get(NEWSLETTERS_COLUMN)
    if cell is None:
        return None
    if not isinstance(cell, str):
        raise ImportFileError(f"line {line}: {NEWSLETTERS_COLUMN}: must be slugs separated by spaces")
    ids = []
    for slug in filter(None, _SLUG_SEPARATORS.split(cell.strip().lower())):
        if slug not in known:
            names = ", ".join(sorted(known)) or "none yet"
            raise ImportFileError(
                f"line {line}: {NEWSLETTERS_COLUMN}: there is no newsletter {slug[:40]!r} "
                f"(newsletters: {names}); nothing was imported"
            )
        ids.append(known[slug])
    return tuple(ids) or None


def _without_newsletters(item: SubscriberInput) -> SubscriberInput:
    attributes = dict(item.attributes or {})
    attributes.pop(NEWSLETTERS_COLUMN, None)
    return replace(item, attributes=attributes or None)


def suppress_addresses(
    engine: sa.Engine,
    path: Path,
    *,
    status: SubscriberStatus = SubscriberStatus.BLOCKLISTED,
    dry_run: bool = False,
    rejects_to: Path | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime,
) -> SubscriberImportReport:
    """Store every address of a suppression list suppressed, on the list before or not.

    A row's own status or reason (a bounce, a complaint) is kept when it names a suppression;
    otherwise `status` applies. New addresses are stored suppressed, so they are never mailed
    and a later sign-up needs a fresh confirmation (none at all when blocklisted). Any address
    is accepted, also one the relay could not carry: refusing to suppress it would protect no one.
    `dry_run` runs the same rules in one transaction and rolls it back, so the counts are exact.
    """
    if status not in SUPPRESSED_STATUSES:
        raise InvalidInput("must be unsubscribed, bounced, complained or blocklisted", field="status")

    def forced(rows: Iterable[files.Row[SubscriberInput]]) -> Iterator[files.Row[SubscriberInput]]:
        for row in rows:
            if row.value is not None and row.value.status not in SUPPRESSED_STATUSES:
                row = replace(row, value=replace(row.value, status=status))
            yield row

    rows = files.read_subscriber_csv(path, progress=progress, allow_smtputf8=True, suppression=True)
    return _import_rows(
        engine,
        forced(rows),
        status=status,
        source="suppression",
        rejects_to=rejects_to,
        dry_run=dry_run,
        now=now,
    )


def _import_rows(
    engine: sa.Engine,
    rows: Iterable[files.Row[SubscriberInput]],
    *,
    status: SubscriberStatus,
    source: str,
    rejects_to: Path | None,
    dry_run: bool = False,
    newsletters: _Newsletters | None = None,
    now: datetime,
) -> SubscriberImportReport:
    report = SubscriberImportReport()
    batch_named: dict[str, tuple[int, ...]] = {}
    reject_handle: IO[str] | None = None
    reject_writer = None
    dry_session = Session(engine) if dry_run else None
    try:
        with Session(engine) as probe:
            first_new_id = subscriber_store.next_id(probe)
        batch: list[SubscriberInput] = []
        for row in rows:
            if row.rejected is not None:
                report.counts.rejected += 1
                if len(report.rejected_sample) < report.SAMPLE:
                    report.rejected_sample.append(row.rejected)
                if rejects_to is not None:
                    if reject_handle is None:
                        reject_handle = rejects_to.open("w", encoding="utf-8", newline="")
                        reject_writer = files.csv.writer(reject_handle, lineterminator="\r\n")
                        reject_writer.writerow(["line", "reason", "row"])
                    assert reject_writer is not None
                    reject_writer.writerow(
                        [files.safe_cell(v) for v in (row.line, row.rejected.reason, row.rejected.raw)]
                    )
                continue
            assert row.value is not None
            item = row.value
            if newsletters is not None:
                own = None
                if newsletters.column:
                    own = _row_newsletters(row.line, item, newsletters.known)
                    item = _without_newsletters(item)
                if own is not None or newsletters.named:
                    batch_named.setdefault(item.email.casefold(), (*(own or ()), *newsletters.named))
            batch.append(item)
            if len(batch) >= IMPORT_BATCH:
                _import_batch(
                    engine, dry_session, batch, status, source, first_new_id, report.counts, batch_named, now
                )
                batch, batch_named = [], {}
        _import_batch(
            engine, dry_session, batch, status, source, first_new_id, report.counts, batch_named, now
        )
    finally:
        if dry_session is not None:
            dry_session.rollback()
            dry_session.close()
        if reject_handle is not None:
            reject_handle.close()
            report.rejected_file = rejects_to
    return report


def _import_batch(
    engine: sa.Engine,
    dry_session: Session | None,
    batch: list[SubscriberInput],
    status: SubscriberStatus,
    source: str,
    first_new_id: int,
    counts: subscriber_store.ImportCounts,
    named: dict[str, tuple[int, ...]],
    now: datetime,
) -> None:
    if not batch:
        return
    if dry_session is not None:  # one transaction for the whole file, rolled back at the end
        subscriber_store.import_batch(
            dry_session,
            batch,
            status=status,
            source=source,
            first_new_id=first_new_id,
            counts=counts,
            named=named,
            now=now,
        )
        return
    with session_scope(engine) as session:
        subscriber_store.import_batch(
            session,
            batch,
            status=status,
            source=source,
            first_new_id=first_new_id,
            counts=counts,
            named=named,
            now=now,
        )


EXPORT_HEADER = (
    "email",
    "name",
    "status",
    "source",
    "created_at",
    "consent_at",
    "confirmed_at",
    "unsubscribed_at",
    "attributes",
    NEWSLETTERS_COLUMN,
)
EXPORT_BATCH = 500


def export_subscribers(
    engine: sa.Engine, handle: IO[str], *, status: str | None = None, newsletter_id: int | None = None
) -> int:
    """Write CSV that is safe to open in a spreadsheet and imports again to the same state
    (status, dates, attributes as a JSON object, the newsletters each reader is on); streams in
    batches. `newsletter_id`: only the readers of that newsletter."""
    with Session(engine) as session:
        return files.write_csv(handle, EXPORT_HEADER, _export_rows(session, status, newsletter_id))


def _export_rows(
    session: Session, status: str | None, newsletter_id: int | None
) -> Iterator[Iterable[object]]:
    batch: list[SubscriberData] = []
    for s in subscriber_store.iter_subscribers(session, status=status, newsletter_id=newsletter_id):
        batch.append(s)
        if len(batch) >= EXPORT_BATCH:
            yield from _export_batch(session, batch)
            batch = []
    yield from _export_batch(session, batch)


def _export_batch(session: Session, batch: list[SubscriberData]) -> Iterator[Iterable[object]]:
    slugs = subscription_store.active_slugs(session, [s.id for s in batch]) if batch else {}
    for s in batch:
        yield (
            s.email,
            s.name,
            s.status,
            s.source,
            _iso(s.created_at),
            _iso(s.consent_at),
            _iso(s.confirmed_at),
            _iso(s.unsubscribed_at),
            json.dumps(s.attributes, ensure_ascii=False, sort_keys=True) if s.attributes else "",
            " ".join(slugs.get(s.id, ())),
        )


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""
