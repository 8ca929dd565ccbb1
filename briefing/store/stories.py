"""The editors' queue: stories waiting for an edition, in section and position order."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.domain import StoryInput, StoryItem, StoryStatus
from briefing.errors import InvalidInput, NotFound
from briefing.models import Article, Story

ACTIVE_STATUSES = (StoryStatus.DRAFT.value, StoryStatus.READY.value)
EDITABLE_FIELDS = frozenset(
    {
        "headline",
        "url",
        "blurb",
        "section",
        "edition_date",
        "status",
        "lead",
        "image_url",
        "image_alt",
        "embargo_until",
        "expires_at",
    }
)


def to_item(row: Story, article: Article | None = None) -> StoryItem:
    """A story with the article's image and section filled in where the story leaves them empty."""
    assert row.id is not None
    return StoryItem(
        id=row.id,
        newsletter_id=row.newsletter_id,
        headline=row.headline,
        url=row.url,
        blurb=row.blurb,
        section=row.section or (article.section if article else ""),
        position=row.position,
        status=row.status,
        edition_date=row.edition_date,
        embargo_until=row.embargo_until,
        expires_at=row.expires_at,
        article_id=row.article_id,
        image_url=row.image_url or (article.image_url if article else ""),
        image_alt=row.image_alt or (article.image_alt if article else ""),
        lead=row.lead,
        automatic=row.automatic,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def add_story(session: Session, item: StoryInput, *, now: datetime) -> StoryItem:
    position = item.position
    if position is None:
        position = _last_position(session, item.newsletter_id, item.edition_date, item.section) + 1
    else:
        _make_room(session, item.newsletter_id, item.edition_date, item.section, position)
    row = Story(
        newsletter_id=item.newsletter_id,
        article_id=item.article_id,
        headline=item.headline,
        url=item.url,
        blurb=item.blurb,
        section=item.section,
        position=position,
        edition_date=item.edition_date,
        embargo_until=item.embargo_until,
        expires_at=item.expires_at,
        created_at=now,
        updated_at=now,
        status=item.status,
        lead=item.lead,
        automatic=item.automatic,
        image_url=item.image_url,
        image_alt=item.image_alt,
        created_by=item.created_by,
    )
    session.add(row)
    session.flush()
    return _item_with_article(session, row)


def get_story(session: Session, story_id: int) -> StoryItem:
    return _item_with_article(session, _row(session, story_id))


def list_stories(
    session: Session,
    *,
    newsletter_id: int | None,
    edition_date: date | None = None,
    include_undated: bool = True,
    statuses: Sequence[str] = ACTIVE_STATUSES,
) -> list[StoryItem]:
    """The queue: stories for a date (and, by default, those meant for "the next edition").

    With no date, every active story whatever its date. Ordered by section, then position.
    Each newsletter has its own queue; `newsletter_id=None` lists every newsletter's.
    """
    stmt = select(Story, Article).join(Article, col(Story.article_id) == col(Article.id), isouter=True)
    if newsletter_id is not None:
        stmt = stmt.where(col(Story.newsletter_id) == newsletter_id)
    if statuses:
        stmt = stmt.where(col(Story.status).in_(list(statuses)))
    if edition_date is not None:
        cond = col(Story.edition_date) == edition_date
        if include_undated:
            cond = sa.or_(cond, col(Story.edition_date).is_(None))
        stmt = stmt.where(cond)
    stmt = stmt.order_by(col(Story.section), col(Story.position), col(Story.id))
    return [to_item(story, article) for story, article in session.exec(stmt).all()]


def update_story(session: Session, story_id: int, changes: dict[str, object], *, now: datetime) -> StoryItem:
    unknown = set(changes) - EDITABLE_FIELDS
    if unknown:
        raise InvalidInput(f"cannot edit {', '.join(sorted(unknown))}", field="story")
    row = _row(session, story_id)
    embargo = changes.get("embargo_until", row.embargo_until)
    expires = changes.get("expires_at", row.expires_at)
    if isinstance(embargo, datetime) and isinstance(expires, datetime) and embargo >= expires:
        raise InvalidInput("the embargo must end before the story expires", field="embargo")
    regroup = ("section" in changes and changes["section"] != row.section) or (
        "edition_date" in changes and changes["edition_date"] != row.edition_date
    )
    for name, value in changes.items():
        setattr(row, name, value)
    if regroup:
        row.position = (
            _last_position(session, row.newsletter_id, row.edition_date, row.section, exclude=story_id) + 1
        )
    row.updated_at = now
    session.add(row)
    session.flush()
    return _item_with_article(session, row)


def move_story(session: Session, story_id: int, to_position: int, *, now: datetime) -> StoryItem:
    """Put a story at position N of its section (1 = top) and renumber the others 1..n."""
    if to_position < 1:
        raise InvalidInput("must be 1 or more", field="to")
    row = _row(session, story_id)
    siblings = [
        s for s in _group(session, row.newsletter_id, row.edition_date, row.section) if s.id != story_id
    ]
    index = min(to_position, len(siblings) + 1) - 1
    siblings.insert(index, row)
    for number, sibling in enumerate(siblings, start=1):
        if sibling.position != number:
            sibling.position = number
            sibling.updated_at = now
            session.add(sibling)
    session.flush()
    return _item_with_article(session, row)


def set_status(session: Session, story_id: int, status: StoryStatus, *, now: datetime) -> StoryItem:
    row = _row(session, story_id)
    row.status = status.value
    row.updated_at = now
    session.add(row)
    session.flush()
    return _item_with_article(session, row)


def mark_used(session: Session, story_ids: Sequence[int], edition_date: date, *, now: datetime) -> None:
    if not story_ids:
        return
    session.execute(
        sa.update(Story)
        .where(col(Story.id).in_(list(story_ids)))
        .values(status=StoryStatus.USED.value, edition_date=edition_date, updated_at=now)
    )


def _row(session: Session, story_id: int) -> Story:
    row = session.get(Story, story_id)
    if row is None:
        raise NotFound(f"no story with id {story_id}", field="story")
    return row


def _item_with_article(session: Session, row: Story) -> StoryItem:
    article = session.get(Article, row.article_id) if row.article_id else None
    return to_item(row, article)


def _group(session: Session, newsletter_id: int, edition_date: date | None, section: str) -> list[Story]:
    stmt = select(Story).where(
        col(Story.newsletter_id) == newsletter_id,
        col(Story.section) == section,
        col(Story.status).in_(ACTIVE_STATUSES),
    )
    if edition_date is None:
        stmt = stmt.where(col(Story.edition_date).is_(None))
    else:
        stmt = stmt.where(col(Story.edition_date) == edition_date)
    return list(session.exec(stmt.order_by(col(Story.position), col(Story.id))).all())


def _last_position(
    session: Session, newsletter_id: int, edition_date: date | None, section: str, exclude: int | None = None
) -> int:
    positions = [s.position for s in _group(session, newsletter_id, edition_date, section) if s.id != exclude]
    return max(positions, default=0)


def _make_room(
    session: Session, newsletter_id: int, edition_date: date | None, section: str, position: int
) -> None:
    for sibling in _group(session, newsletter_id, edition_date, section):
        if sibling.position >= position:
            sibling.position += 1
            session.add(sibling)
