"""Use cases for the list: add, import, export, unsubscribe and erase subscribers.

An import streams in batches and never re-activates an address that left; an export neutralises
spreadsheet formulas. Each function takes an engine or session and plain values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files, inputs
from briefing.db import session_scope
from briefing.domain import (
    SubscriberData,
    SubscriberInput,
    SubscriberStatus,
)
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
    now: datetime,
) -> SubscriberImportReport:
    """Stream a CSV into the list in batches, one transaction per batch.

    The whole file's encoding and header are checked before the first row is written, and each
    batch is all-or-nothing, so a crash leaves whole batches, never a half-written row.
    Suppressed addresses (unsubscribed, bounced, complained) are never re-activated.
    """
    if status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        raise InvalidInput("must be active or pending", field="status")
    report = SubscriberImportReport()
    rows = files.read_subscriber_csv(path, progress=progress)
    reject_handle: IO[str] | None = None
    reject_writer = None
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
                _import_batch(engine, batch, status, source, first_new_id, report.counts, now)
                batch = []
        _import_batch(engine, batch, status, source, first_new_id, report.counts, now)
    finally:
        if reject_handle is not None:
            reject_handle.close()
            report.rejected_file = rejects_to
    return report


def _import_batch(
    engine: sa.Engine,
    batch: list[SubscriberInput],
    status: SubscriberStatus,
    source: str,
    first_new_id: int,
    counts: subscriber_store.ImportCounts,
    now: datetime,
) -> None:
    if not batch:
        return
    with session_scope(engine) as session:
        subscriber_store.import_batch(
            session, batch, status=status, source=source, first_new_id=first_new_id, counts=counts, now=now
        )


def add_subscriber(
    session: Session,
    email: str,
    name: str = "",
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    now: datetime,
) -> SubscriberData:
    item = SubscriberInput(
        email=inputs.email_address(email), name=inputs.one_line(name, field="name", max_len=inputs.MAX_NAME)
    )
    return subscriber_store.add_subscriber(session, item, status=status, now=now)


def subscriber_by_email(session: Session, email: str) -> SubscriberData:
    return subscriber_store.get_by_email(session, inputs.email_address(email))


def unsubscribe_email(session: Session, email: str, *, now: datetime) -> tuple[SubscriberData, bool]:
    found = subscriber_by_email(session, email)
    return subscriber_store.unsubscribe(session, found.id, now=now)


def delete_subscriber_email(session: Session, email: str) -> SubscriberData:
    found = subscriber_by_email(session, email)
    subscriber_store.delete_subscriber(session, found.id)
    return found


EXPORT_HEADER = ("email", "name", "status", "source", "created_at", "confirmed_at", "unsubscribed_at")


def export_subscribers(engine: sa.Engine, handle: IO[str], *, status: str | None = None) -> int:
    """Write CSV that is safe to open in a spreadsheet; streams in batches."""
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
            _iso(s.confirmed_at),
            _iso(s.unsubscribed_at),
        )


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""
