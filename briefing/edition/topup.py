"""Top up a thin queue with the newest stored articles, so the email never goes out half-empty.

Pure on purpose, like compose: the queue, the articles and the time come in as values, so preview
and the real send pick the same extra stories. The added stories are marked `automatic` and carry
negative ids (minus the article id): they exist only in this edition and never collide with a
story an editor queued.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, timedelta

from briefing.domain import ArticleData, StoryItem, StoryStatus
from briefing.urls import url_key

__all__ = ["top_up"]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _counts(story: StoryItem, now: datetime, edition_date: date | None) -> bool:
    """Would compose put this story in the edition sent at `now`?"""
    if story.status != StoryStatus.READY:
        return False
    if edition_date is not None and story.edition_date is not None and story.edition_date != edition_date:
        return False
    if story.embargo_until is not None and _aware(story.embargo_until) > now:
        return False
    return not (story.expires_at is not None and _aware(story.expires_at) <= now)


def top_up(
    stories: Sequence[StoryItem],
    articles: Sequence[ArticleData],
    *,
    minimum: int,
    now: datetime,
    recent_urls: Collection[str],
    window: timedelta = timedelta(hours=24),
    edition_date: date | None = None,
) -> list[StoryItem]:
    """Extra ready stories that bring the edition up to `minimum` ready stories (none when 0).

    Candidates are articles published (or, without a date, stored) within `window` before `now`,
    newest first, that no story in `stories` uses (by article or link, whatever the story's status:
    pass dropped stories too if a dropped article should not come back) and that no recent edition
    featured (`recent_urls`). Articles dated after `now` are not public yet and are left out.
    `edition_date`, when given, keeps stories meant for another day from counting.
    """
    if minimum <= 0:
        return []
    now = _aware(now)
    counted: set[str] = set()
    ready = 0
    for story in stories:
        if not _counts(story, now, edition_date):
            continue
        key = url_key(story.url)
        if key and key in counted:
            continue  # compose shows a link once, so it counts once
        counted.add(key)
        ready += 1
    needed = minimum - ready
    if needed <= 0:
        return []

    used_ids = {s.article_id for s in stories if s.article_id is not None}
    skip_urls = {url_key(s.url) for s in stories} | {url_key(u) for u in recent_urls}
    since = now - window

    def when(article: ArticleData) -> datetime | None:
        moment = article.published_at or article.created_at
        return _aware(moment) if moment is not None else None

    candidates: list[tuple[datetime, ArticleData]] = []
    for article in articles:
        moment = when(article)
        if moment is None or moment <= since or moment > now:
            continue
        if article.id in used_ids or not article.title.strip() or not article.url.strip():
            continue
        if url_key(article.url) in skip_urls:
            continue
        candidates.append((moment, article))
    candidates.sort(key=lambda pair: (pair[0], pair[1].id), reverse=True)

    start = max((s.position for s in stories), default=0) + 1
    extra: list[StoryItem] = []
    seen: set[str] = set()
    for _moment, article in candidates:
        if len(extra) >= needed:
            break
        key = url_key(article.url)
        if key in seen:
            continue
        seen.add(key)
        extra.append(
            StoryItem(
                id=-article.id,
                headline=" ".join(article.title.split()),
                url=article.url,
                blurb=article.summary,
                section=article.section,
                position=start + len(extra),
                status=StoryStatus.READY,
                edition_date=edition_date,
                article_id=article.id,
                image_url=article.image_url,
                image_alt=article.image_alt,
                automatic=True,
                created_at=now,
                updated_at=now,
            )
        )
    return extra
