"""Use cases for the editors' story queue: queue a story, edit it, and the rules on its status.

The CLI and the web queue call these, so a rule holds whichever door an editor comes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session

from briefing import inputs
from briefing.domain import ArticleData, StoryInput, StoryItem, StoryStatus
from briefing.errors import InvalidInput, NotFound
from briefing.store import articles as article_store
from briefing.store import stories as story_store


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
    item = StoryInput(
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


def require_story(session: Session, story_id: int) -> StoryItem:
    try:
        return story_store.get_story(session, story_id)
    except NotFound:
        raise NotFound(f"no story with id {story_id} (see `briefing stories list`)", field="story") from None
