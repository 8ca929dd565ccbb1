"""The list's files: import (briefing's own CSV, Mailchimp's and listmonk's exports), suppression
lists, and the export that imports again to the same state.

An import streams in batches and commits per batch, so a crash keeps whole batches; it never
re-activates an address that left, and a file that says a reader left suppresses them. An
export neutralises spreadsheet formulas. The rules per row are the store's `import_batch`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files
from briefing.db import session_scope
from briefing.domain import SUPPRESSED_STATUSES, SubscriberInput, SubscriberStatus
from briefing.errors import InvalidInput
from briefing.store import subscribers as subscriber_store

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
    now: datetime,
) -> SubscriberImportReport:
    """Stream a CSV into the list in batches, one transaction per batch.

    The whole file's encoding and header are checked before the first row is written, and each
    batch is all-or-nothing, so a crash leaves whole batches, never a half-written row.
    A `status` column is honoured: a row that unsubscribed, bounced ("cleaned"), complained or
    is blocklisted is stored suppressed and suppresses a reader already on the list; nothing
    re-activates a suppressed address. An address the relay cannot carry (`allow_smtputf8`) is
    a rejected row, never a stored one.
    """
    if status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        raise InvalidInput("must be active or pending", field="status")
    rows = files.read_subscriber_csv(path, progress=progress, allow_smtputf8=allow_smtputf8)
    return _import_rows(engine, rows, status=status, source=source, rejects_to=rejects_to, now=now)


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
    now: datetime,
) -> SubscriberImportReport:
    report = SubscriberImportReport()
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
            batch.append(row.value)
            if len(batch) >= IMPORT_BATCH:
                _import_batch(engine, dry_session, batch, status, source, first_new_id, report.counts, now)
                batch = []
        _import_batch(engine, dry_session, batch, status, source, first_new_id, report.counts, now)
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
            now=now,
        )
        return
    with session_scope(engine) as session:
        subscriber_store.import_batch(
            session, batch, status=status, source=source, first_new_id=first_new_id, counts=counts, now=now
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
)


def export_subscribers(engine: sa.Engine, handle: IO[str], *, status: str | None = None) -> int:
    """Write CSV that is safe to open in a spreadsheet and imports again to the same state
    (status, dates, attributes as a JSON object); streams in batches."""
    with Session(engine) as session:
        return files.write_csv(handle, EXPORT_HEADER, _export_rows(session, status))


def _export_rows(session: Session, status: str | None) -> Iterator[Iterable[object]]:
    for s in subscriber_store.iter_subscribers(session, status=status):
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
        )


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""
