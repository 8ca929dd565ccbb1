"""Use cases that wire the stages together. The CLI, web app and scheduler call these and nothing deeper.

Each function takes an engine (or session) and plain values, so tests call them directly with a
real database and no settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files, inputs
from briefing.db import session_scope
from briefing.domain import ArticleData, StoryItem, StoryStatus, SubscriberData, SubscriberStatus
from briefing.errors import InvalidInput, NotFound
from briefing.store import articles as article_store
from briefing.store import stories as story_store
from briefing.store import subscribers as subscriber_store

IMPORT_BATCH = 1000


# --------------------------------------------------------------------------- articles


@dataclass(slots=True)
class ArticleImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[files.Rejected] = field(default_factory=list)


def import_articles(engine: sa.Engine, path: Path, *, now: datetime) -> ArticleImportReport:
    """Upsert every good row by URL; bad rows are reported by line and never stored."""
    report = ArticleImportReport()
    rows = files.read_articles(path)
    with session_scope(engine) as session:
        for row in rows:
            if row.rejected is not None:
                report.rejected.append(row.rejected)
                continue
            assert row.value is not None
            _, outcome = article_store.upsert_article(session, row.value, now=now)
            setattr(report, outcome, getattr(report, outcome) + 1)
    return report


# --------------------------------------------------------------------------- stories


@dataclass(frozen=True, slots=True)
class StoryRequest:
    """What an editor asks for when queueing a story; raw values validated here."""

    article_id: int | None = None
    article_url: str = ""
    url: str = ""
    headline: str = ""
    blurb: str = ""
    section: str = ""
    position: int | None = None
    edition_date: date | None = None
    embargo_until: datetime | None = None
    expires_at: datetime | None = None
    status: str = StoryStatus.DRAFT
    lead: bool = False
    image_url: str = ""
    image_alt: str = ""
    created_by: str = ""


def add_story(session: Session, request: StoryRequest, *, now: datetime) -> StoryItem:
    """Queue a story from a stored article (by id or URL) or as a standalone link."""
    article: ArticleData | None = None
    if request.article_id is not None:
        article = article_store.get_article(session, request.article_id)
    elif request.article_url:
        article = article_store.get_article_by_url(session, inputs.web_url(request.article_url, field="url"))
    headline = inputs.one_line(request.headline, field="headline", max_len=inputs.MAX_HEADLINE)
    url = inputs.web_url(request.url, field="url", required=False)
    if article is not None:
        headline = headline or article.title
        url = url or article.url
    if not url:
        raise InvalidInput(
            "is required for a story without a stored article (or give --article)", field="url"
        )
    if not headline:
        raise InvalidInput("is required for a story without a stored article", field="headline")
    status = _story_status(request.status)
    inputs.embargo_and_expiry(request.embargo_until, request.expires_at)
    item = story_store.StoryInput(
        headline=headline,
        url=url,
        blurb=inputs.multi_line(
            request.blurb or (article.summary if article else ""), field="blurb", max_len=5000
        ),
        section=inputs.one_line(
            request.section or (article.section if article else ""), field="section", max_len=100
        ),
        article_id=article.id if article else None,
        position=inputs.position(request.position) if request.position is not None else None,
        edition_date=request.edition_date,
        embargo_until=request.embargo_until,
        expires_at=request.expires_at,
        status=status,
        lead=request.lead,
        image_url=inputs.web_url(request.image_url, field="image", required=False),
        image_alt=inputs.one_line(request.image_alt, field="image_alt", max_len=300),
        created_by=request.created_by,
    )
    return story_store.add_story(session, item, now=now)


def edit_story(session: Session, story_id: int, raw: dict[str, object], *, now: datetime) -> StoryItem:
    """Validate each given field, then apply them together (all or nothing)."""
    changes: dict[str, object] = {}
    for name, value in raw.items():
        if name == "headline":
            changes[name] = inputs.one_line(
                str(value), field=name, max_len=inputs.MAX_HEADLINE, required=True
            )
        elif name == "url":
            changes[name] = inputs.web_url(str(value), field=name)
        elif name == "blurb":
            changes[name] = inputs.multi_line(str(value), field=name, max_len=inputs.MAX_BLURB)
        elif name == "section":
            changes[name] = inputs.one_line(str(value), field=name, max_len=inputs.MAX_SECTION)
        elif name == "status":
            changes[name] = _story_status(str(value))
        elif name == "image_url":
            changes[name] = inputs.web_url(str(value), field="image", required=False)
        elif name == "image_alt":
            changes[name] = inputs.one_line(str(value), field=name, max_len=300)
        elif name in ("edition_date", "embargo_until", "expires_at", "lead"):
            changes[name] = value
        else:
            raise InvalidInput("cannot be edited", field=name)
    return story_store.update_story(session, story_id, changes, now=now)


def _story_status(value: str) -> str:
    allowed = (StoryStatus.DRAFT.value, StoryStatus.READY.value)
    if value not in allowed:
        raise InvalidInput(f"must be draft or ready (got {value!r})", field="status")
    return value


# --------------------------------------------------------------------------- subscribers


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
        batch: list[subscriber_store.SubscriberInput] = []
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
    batch: list[subscriber_store.SubscriberInput],
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
    item = subscriber_store.SubscriberInput(
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


def require_story(session: Session, story_id: int) -> StoryItem:
    try:
        return story_store.get_story(session, story_id)
    except NotFound:
        raise NotFound(f"no story with id {story_id} (see `briefing stories list`)", field="story") from None
