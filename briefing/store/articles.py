"""Stored articles: the site's pieces that stories and the "More from" list draw on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import MAX_ID, ArticleData, ArticleInput
from briefing.errors import Conflict, NotFound
from briefing.models import Article, Story

ARTICLE_FIELDS = ("title", "summary", "author", "section", "image_url", "image_alt", "published_at", "guid")


def to_data(row: Article) -> ArticleData:
    assert row.id is not None
    return ArticleData(
        id=row.id,
        url=row.url,
        title=row.title,
        summary=row.summary,
        author=row.author,
        section=row.section,
        image_url=row.image_url,
        image_alt=row.image_alt,
        published_at=row.published_at,
        source=row.source,
        created_at=row.created_at,
    )


def add_article(session: Session, item: ArticleInput, *, now: datetime) -> ArticleData:
    if session.exec(select(Article.id).where(Article.url == item.url)).first() is not None:
        raise Conflict(f"an article with this URL is already stored: {item.url}", field="url")
    row = Article(**_fields(item), created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return to_data(row)


def upsert_article(session: Session, item: ArticleInput, *, now: datetime) -> tuple[ArticleData, str]:
    """Insert, or update the stored article with the same URL. Returns (article, added|updated|unchanged)."""
    row = session.exec(select(Article).where(Article.url == item.url)).first()
    if row is None:
        row = Article(**_fields(item), created_at=now, updated_at=now)
        session.add(row)
        session.flush()
        return to_data(row), "added"
    changed = False
    for name in ARTICLE_FIELDS:
        new = getattr(item, name)
        if new in ("", None):
            continue  # an import never blanks a field the newsroom already has
        if getattr(row, name) != new:
            setattr(row, name, new)
            changed = True
    if changed:
        row.updated_at = now
        session.add(row)
        session.flush()
    return to_data(row), "updated" if changed else "unchanged"


def get_article(session: Session, article_id: int) -> ArticleData:
    # A number beyond 64 bits names no row; the driver would fail on it instead of finding none.
    row = session.get(Article, article_id) if 1 <= article_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"no article with id {article_id}", field="article")
    return to_data(row)


def get_article_by_url(session: Session, url: str) -> ArticleData:
    row = session.exec(select(Article).where(Article.url == url)).first()
    if row is None:
        raise NotFound(f"no stored article with URL {url}", field="url")
    return to_data(row)


def list_articles(
    session: Session,
    *,
    since: datetime | None = None,
    not_queued: bool = False,
    limit: int = 100,
) -> list[ArticleData]:
    """Newest first (by published time, then creation), optionally only those no story uses yet."""
    stmt = select(Article)
    if since is not None:
        stmt = stmt.where(sa.func.coalesce(Article.published_at, Article.created_at) >= since)
    if not_queued:
        queued = select(Story.article_id).where(
            col(Story.article_id).is_not(None), col(Story.status).in_(("draft", "ready", "used"))
        )
        stmt = stmt.where(col(Article.id).not_in(queued))
    stmt = stmt.order_by(
        sa.desc(sa.func.coalesce(Article.published_at, Article.created_at)), col(Article.id).desc()
    ).limit(limit)
    return [to_data(r) for r in session.exec(stmt).all()]


def recent_articles(session: Session, *, limit: int, exclude_ids: Sequence[int] = ()) -> list[ArticleData]:
    stmt = select(Article)
    if exclude_ids:
        stmt = stmt.where(col(Article.id).not_in(list(exclude_ids)))
    stmt = stmt.order_by(
        sa.desc(sa.func.coalesce(Article.published_at, Article.created_at)), col(Article.id).desc()
    ).limit(limit)
    return [to_data(r) for r in session.exec(stmt).all()]


def _fields(item: ArticleInput) -> dict[str, Any]:
    return {
        "url": item.url,
        "title": item.title,
        "summary": item.summary,
        "author": item.author,
        "section": item.section,
        "image_url": item.image_url,
        "image_alt": item.image_alt,
        "published_at": item.published_at,
        "source": item.source,
        "guid": item.guid,
        "feed_id": item.feed_id,
    }
