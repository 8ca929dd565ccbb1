"""Feeds and their poll state, and the articles they bring in (matched by link, then by guid)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import ArticleData, ArticleInput, FeedInput
from briefing.errors import Conflict, NotFound
from briefing.models import Article, Feed
from briefing.store import articles as article_store


@dataclass(frozen=True, slots=True)
class FeedData:
    id: int
    name: str
    url: str
    section: str = ""
    allow_private: bool = False
    etag: str = ""
    last_modified: str = ""
    last_polled_at: datetime | None = None
    next_poll_at: datetime | None = None
    last_status: str = ""
    last_error: str = ""
    consecutive_errors: int = 0
    articles_seen: int = 0
    created_at: datetime | None = None
    article_count: int = 0  # articles stored now with this feed as their source


@dataclass(frozen=True, slots=True)
class PollRecord:
    """What one poll leaves on the feed row."""

    status: str  # ok, warning, not-modified, error
    error: str = ""
    next_poll_at: datetime | None = None
    etag: str | None = None  # None: keep the stored validators (a partial read must fetch again)
    last_modified: str | None = None
    added: int = 0


def to_data(row: Feed, article_count: int = 0) -> FeedData:
    assert row.id is not None
    return FeedData(
        id=row.id,
        name=row.name,
        url=row.url,
        section=row.section,
        allow_private=row.allow_private,
        etag=row.etag,
        last_modified=row.last_modified,
        last_polled_at=row.last_polled_at,
        next_poll_at=row.next_poll_at,
        last_status=row.last_status,
        last_error=row.last_error,
        consecutive_errors=row.consecutive_errors,
        articles_seen=row.articles_seen,
        created_at=row.created_at,
        article_count=article_count,
    )


def add_feed(session: Session, item: FeedInput, *, now: datetime) -> FeedData:
    if session.exec(select(Feed.id).where(Feed.name == item.name)).first() is not None:
        raise Conflict(f"a feed named {item.name!r} exists already; choose another --name", field="name")
    row = Feed(
        name=item.name,
        url=item.url,
        section=item.section,
        allow_private=item.allow_private,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return to_data(row)


def get_feed(session: Session, feed_id: int) -> FeedData:
    row = session.get(Feed, feed_id)
    if row is None:
        raise NotFound(f"no feed with id {feed_id}", field="feed")
    return to_data(row, _count(session, feed_id))


def find_feed(session: Session, name_or_id: str) -> FeedData:
    """By exact name first (a feed may be called "2024"), then by id."""
    text = name_or_id.strip()
    row = session.exec(select(Feed).where(Feed.name == text)).first()
    if row is None and text.isascii() and text.isdigit() and int(text) < 2**63:  # what an id column holds
        row = session.get(Feed, int(text))
    if row is None:
        raise NotFound(f"no feed named or numbered {text!r} (see `briefing feeds list`)", field="feed")
    assert row.id is not None
    return to_data(row, _count(session, row.id))


def find_feed_by_url(session: Session, url: str) -> FeedData | None:
    row = session.exec(select(Feed).where(Feed.url == url).order_by(col(Feed.id))).first()
    return to_data(row) if row else None


def list_feeds(session: Session) -> list[FeedData]:
    counts = dict(
        session.exec(
            select(Article.feed_id, sa.func.count())
            .where(col(Article.feed_id).is_not(None))
            .group_by(col(Article.feed_id))
        ).all()
    )
    rows = session.exec(select(Feed).order_by(col(Feed.name))).all()
    return [to_data(r, int(counts.get(r.id, 0))) for r in rows]


def due_feed_ids(session: Session, now: datetime) -> list[int]:
    stmt = (
        select(Feed.id)
        .where(sa.or_(col(Feed.next_poll_at).is_(None), col(Feed.next_poll_at) <= now))
        .order_by(col(Feed.next_poll_at).is_not(None), col(Feed.next_poll_at), col(Feed.id))
    )
    return [i for i in session.exec(stmt).all() if i is not None]


def all_feed_ids(session: Session) -> list[int]:
    return [i for i in session.exec(select(Feed.id).order_by(col(Feed.id))).all() if i is not None]


def claim_feed(session: Session, feed_id: int, *, now: datetime, until: datetime, only_if_due: bool) -> bool:
    """Move the feed's next poll to `until` before fetching, so a second poller skips it.

    With `only_if_due`, only a feed that is due is claimed; the UPDATE's WHERE makes the check and
    the claim one step, so two schedulers never fetch the same feed at once.
    """
    stmt = sa.update(Feed).where(col(Feed.id) == feed_id).values(next_poll_at=until)
    if only_if_due:
        stmt = stmt.where(sa.or_(col(Feed.next_poll_at).is_(None), col(Feed.next_poll_at) <= now))
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_poll(session: Session, feed_id: int, *, now: datetime, record: PollRecord) -> FeedData:
    row = session.get(Feed, feed_id)
    if row is None:
        raise NotFound(f"no feed with id {feed_id}", field="feed")
    row.last_polled_at = now
    row.next_poll_at = record.next_poll_at
    row.last_status = record.status
    row.last_error = record.error[:2000]
    row.consecutive_errors = row.consecutive_errors + 1 if record.status == "error" else 0
    row.articles_seen += record.added
    if record.etag is not None:
        row.etag = record.etag[:500]
    if record.last_modified is not None:
        row.last_modified = record.last_modified[:100]
    session.add(row)
    session.flush()
    return to_data(row)


def remove_feed(session: Session, feed_id: int) -> FeedData:
    """Delete the feed; its articles stay, no longer tied to it (an id may be reused later)."""
    row = session.get(Feed, feed_id)
    if row is None:
        raise NotFound(f"no feed with id {feed_id}", field="feed")
    data = to_data(row, _count(session, feed_id))
    session.execute(sa.update(Article).where(col(Article.feed_id) == feed_id).values(feed_id=None))
    session.delete(row)
    session.flush()
    return data


def upsert_feed_article(
    session: Session,
    item: ArticleInput,
    *,
    feed_id: int,
    guid_trusted: bool = True,
    date_estimated: bool = False,
    now: datetime,
) -> tuple[ArticleData, str]:
    """Store one feed entry: update the article with this link, else this feed's article with this
    guid (its link changed), else add it. Returns (article, added|updated|unchanged).

    `date_estimated`: the entry's date was unusable (in the future) and `item.published_at` is the
    poll time; an article already stored keeps its date instead of creeping forward every poll.
    """
    item = dataclasses.replace(item, feed_id=feed_id)
    by_url = session.exec(select(Article).where(Article.url == item.url)).first()
    if by_url is None and item.guid and guid_trusted:
        by_guid = session.exec(
            select(Article)
            .where(col(Article.feed_id) == feed_id, col(Article.guid) == item.guid)
            .order_by(col(Article.id))
        ).first()
        if by_guid is not None:
            by_guid.url = item.url
            by_guid.updated_at = now
            session.add(by_guid)
            session.flush()
            if date_estimated:
                item = dataclasses.replace(item, published_at=None)
            article, _ = article_store.upsert_article(session, item, now=now)
            return article, "updated"
    if by_url is not None and date_estimated and by_url.published_at is not None:
        item = dataclasses.replace(item, published_at=None)  # upsert never blanks a field
    return article_store.upsert_article(session, item, now=now)


def _count(session: Session, feed_id: int) -> int:
    return int(
        session.exec(
            select(sa.func.count()).select_from(Article).where(col(Article.feed_id) == feed_id)
        ).one()
    )
