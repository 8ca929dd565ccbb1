"""Use cases for the site's articles: one typed in by an editor, a file import, the CMS's pushes.

An import or a push reports a bad item by its line or index and never blocks the good ones, and
the same item stored twice changes nothing (articles are upserted by canonical URL). One article
added by hand is refused if its URL is already stored, so an editor never overwrites by accident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files, inputs
from briefing.db import session_scope
from briefing.domain import ArticleData, ArticleInput, ArticleSource
from briefing.errors import InvalidInput
from briefing.store import articles as article_store
from briefing.urls import InvalidURL, canonical_url


def add_article(
    session: Session,
    *,
    url: str,
    title: str,
    summary: str = "",
    author: str = "",
    section: str = "",
    image_url: str = "",
    image_alt: str = "",
    published_at: datetime | None = None,
    now: datetime,
) -> ArticleData:
    """Store one article an editor typed in, checked by the same rules as an imported row."""
    item = files.article_input(
        {
            "url": url,
            "title": title,
            "summary": summary,
            "author": author,
            "section": section,
            "image_url": image_url,
            "image_alt": image_alt,
        },
        source=ArticleSource.MANUAL.value,
    )
    if published_at is not None:  # already a moment: the edge read it in the newsroom's zone
        item = dataclasses.replace(item, published_at=inputs.moment(published_at, field="published_at"))
    return article_store.add_article(session, item, now=now)


@dataclass(slots=True)
class ArticleImportReport:
    """What an import did; each rejection reads "line K: field: reason" when printed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[files.Rejected] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.added + self.updated + self.unchanged


def import_articles(engine: sa.Engine, path: Path, *, now: datetime) -> ArticleImportReport:
    """Upsert every good row by URL; bad rows are reported by line and never stored.

    Each row is written under its own savepoint, so a row the database refuses after all is
    rejected alone and the rest of the file is still imported.
    """
    report = ArticleImportReport()
    rows = files.read_articles(path)
    with session_scope(engine) as session:
        for row in rows:
            if row.rejected is not None:
                report.rejected.append(row.rejected)
                continue
            assert row.value is not None
            result = _upsert(session, row.line, row.value, now)
            if result.status == "rejected":
                report.rejected.append(files.Rejected(row.line, result.error))
            else:
                setattr(report, result.status, getattr(report, result.status) + 1)
    return report


@dataclass(frozen=True, slots=True)
class PushResult:
    index: int
    status: str  # added, updated, unchanged, rejected
    id: int | None = None
    url: str = ""
    error: str = ""

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"index": self.index, "status": self.status}
        if self.status == "rejected":
            out["error"] = self.error
        else:
            out["id"] = self.id
            out["url"] = self.url
        return out


def store_pushed_articles(engine: sa.Engine, records: Sequence[object], *, now: datetime) -> list[PushResult]:
    """Validate and upsert each record by (canonical) URL, in one transaction with a savepoint each."""
    results: list[PushResult] = []
    with session_scope(engine) as session:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                results.append(PushResult(index, "rejected", error="each article must be a JSON object"))
                continue
            try:
                item = files.article_input(record, source=ArticleSource.API.value)
                item = dataclasses.replace(item, url=canonical_url(item.url))
            except InvalidInput as exc:
                results.append(PushResult(index, "rejected", error=str(exc)))
                continue
            except InvalidURL as exc:  # article_input checked the same rules; kept for safety
                results.append(PushResult(index, "rejected", error=f"url: {exc}"))
                continue
            results.append(_upsert(session, index, item, now))
    return results


def _upsert(session: Session, index: int, item: ArticleInput, now: datetime) -> PushResult:
    """Store one item under a savepoint; a refusal by the database rejects this item only."""
    for attempt in range(2):
        try:
            with session.begin_nested():
                article, outcome = article_store.upsert_article(session, item, now=now)
            return PushResult(index, outcome, article.id, article.url)
        except sa.exc.IntegrityError:
            if attempt:  # a concurrent push stored the same URL first; the retry finds it
                return PushResult(
                    index, "rejected", error="url: could not be stored (conflict); send it again"
                )
        except sa.exc.DataError:  # a value the column's type refuses; the inputs rules missed it
            return PushResult(index, "rejected", error="could not be stored: the database refused a value")
    raise AssertionError("unreachable")
