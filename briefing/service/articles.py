"""Use cases for the site's articles: a file import, and the batches the CMS pushes.

Either way a bad item is reported by its line or index and never blocks the good ones, and the
same item stored twice changes nothing (articles are upserted by canonical URL).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from briefing import files
from briefing.db import session_scope
from briefing.domain import (
    ArticleInput,
    ArticleSource,
)
from briefing.errors import InvalidInput
from briefing.feeds.parse import canonical_url
from briefing.store import articles as article_store


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
            results.append(_upsert(session, index, item, now))
    return results


def _upsert(session: Session, index: int, item: ArticleInput, now: datetime) -> PushResult:
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
    raise AssertionError("unreachable")
