"""Use cases for the editors' story queue: queue a story, edit, move, mark ready or drop it.

The CLI and the web queue call these, so a rule holds whichever door an editor comes through.
The status rule lives in `_changeable` alone: only a draft or ready story can change. A used story
went out in an edition (the archive and the readers' copies show it as it was), and a dropped one
is kept as a record of what was taken out; neither comes back by accident.

`judge_stories` tells editors the truth about the queue: each story judged, by compose's own rule,
at the moment its edition is judged, so "ready" never hides a story the edition leaves out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlmodel import Session

from briefing import calendar as cal
from briefing import inputs
from briefing.domain import (
    ArticleData,
    EditionData,
    EditionStatus,
    StoryInput,
    StoryItem,
    StoryStatus,
)
from briefing.edition.compose import LeftOut, left_out, pick_stories
from briefing.edition.preflight import PreflightProblem
from briefing.errors import Conflict, InvalidInput, NotFound
from briefing.newsletter import PRIMARY_ID
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
    newsletter_id: int = PRIMARY_ID  # whose queue it joins


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
        newsletter_id=request.newsletter_id,
    )
    return story_store.add_story(session, item, now=now)


def edit_story(session: Session, story_id: int, raw: dict[str, object], *, now: datetime) -> StoryItem:
    """Validate each given field, then apply them together (all or nothing)."""
    _changeable(session, story_id)
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


def move_story(session: Session, story_id: int, to: int, *, now: datetime) -> StoryItem:
    """Put a story at place `to` in its section of its edition (1 = top); the others close up."""
    _changeable(session, story_id)
    return story_store.move_story(session, story_id, to, now=now)


def nudge_story(session: Session, story_id: int, direction: str, *, now: datetime) -> StoryItem:
    """Swap a story with its neighbour above or below, as the queue page's arrows do.

    Counted by place in the group, not by stored position, so gaps left by a dropped story
    never make an arrow do nothing.
    """
    if direction not in ("up", "down"):
        raise InvalidInput("must be up or down", field="direction")
    story = _changeable(session, story_id)
    group = [
        s
        for s in story_store.list_stories(
            session,
            newsletter_id=story.newsletter_id,
            edition_date=story.edition_date,
            include_undated=story.edition_date is None,
        )
        if s.section == story.section and s.edition_date == story.edition_date
    ]
    place = next(i for i, s in enumerate(group, start=1) if s.id == story.id)
    target = max(1, place - 1) if direction == "up" else place + 1
    return story_store.move_story(session, story.id, target, now=now)


def mark_ready(session: Session, story_id: int, *, now: datetime) -> StoryItem:
    """Ready stories are the ones the next edition takes."""
    _changeable(session, story_id)
    return story_store.set_status(session, story_id, StoryStatus.READY, now=now)


def mark_draft(session: Session, story_id: int, *, now: datetime) -> StoryItem:
    """Back to draft: it stays in the queue but no edition takes it until it is ready again."""
    _changeable(session, story_id)
    return story_store.set_status(session, story_id, StoryStatus.DRAFT, now=now)


def drop(session: Session, story_id: int, *, now: datetime) -> StoryItem:
    """Take a story out of the queue; the row stays, as a record of what was dropped."""
    _changeable(session, story_id)
    return story_store.set_status(session, story_id, StoryStatus.DROPPED, now=now)


def change_status(session: Session, story_id: int, status: str, *, now: datetime) -> StoryItem:
    """One status as typed into a form (draft, ready or dropped); the web queue's buttons post it."""
    actions = {
        StoryStatus.DRAFT.value: mark_draft,
        StoryStatus.READY.value: mark_ready,
        StoryStatus.DROPPED.value: drop,
    }
    action = actions.get(status)
    if action is None:
        raise InvalidInput("must be draft, ready or dropped", field="status")
    return action(session, story_id, now=now)


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


def _changeable(session: Session, story_id: int) -> StoryItem:
    """The story, if it may still change; every door's edit, move and status change asks here."""
    story = require_story(session, story_id)
    if story.status == StoryStatus.USED:
        when = f" in the edition of {story.edition_date.isoformat()}" if story.edition_date else ""
        raise Conflict(
            f"{story.id} “{story.headline}” is used: it went out{when} and can no longer change",
            field="story",
        )
    if story.status not in (StoryStatus.DRAFT, StoryStatus.READY):
        raise Conflict(
            f"{story.id} “{story.headline}” is {story.status} and can no longer change; "
            "queue it again as a new story",
            field="story",
        )
    return story


# --------------------------------------------------------------------------- will it be in, and why not


class Unsendable(StrEnum):
    """Why a date's edition takes no story at all, whatever the story."""

    EDITION_CLOSED = "edition_closed"  # frozen, sending or sent: its content is fixed
    NO_EDITION = "no_edition"  # not a send day, or skipped
    WINDOW_PASSED = "window_passed"  # never sent, and too late to send without --force


_STORY_STATES = (LeftOut.DRAFT, LeftOut.USED, LeftOut.DROPPED)
OPEN_EDITION = (EditionStatus.SCHEDULED, EditionStatus.HELD)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One story, and whether the edition of `edition_date` takes it when it is sent."""

    story: StoryItem
    edition_date: date
    reason: str = ""  # "" when it goes in; else a LeftOut or Unsendable value
    why: str = ""  # the reason as editors read it: "embargoed until 07:30"
    blurb_html: str = ""  # the blurb as the email shows it, when a page asks for it

    @property
    def goes_in(self) -> bool:
        return not self.reason


def judge_stories(
    session: Session,
    plan: cal.SendPlan,
    edition_date: date,
    stories: Sequence[StoryItem],
    *,
    moment: datetime,
    now: datetime | None = None,
    edition: EditionData | None = None,
    newsletter_id: int,
) -> dict[int, QueueEntry]:
    """Whether the edition of `edition_date`, judged at `moment`, takes each story, and if not why.

    Compose's own choice (`pick_stories`) over the ready stories of that date decides, so the queue
    can never disagree with the email. With `now`, the edition itself is judged too (sent, skipped,
    too late); without it, as for the edition being prepared, only the stories are.
    """
    ready = story_store.list_stories(
        session, newsletter_id=newsletter_id, edition_date=edition_date, statuses=(StoryStatus.READY.value,)
    )
    _taken, reasons = pick_stories(ready, edition_date, moment)
    closed = _unsendable(edition_date, edition, plan, now) if now is not None else None
    judged: dict[int, QueueEntry] = {}
    for story in stories:
        own = left_out(story, edition_date, moment)
        reason: str | None = own if own in _STORY_STATES else (closed or own or reasons.get(story.id))
        why = _why(reason, story, edition_date, plan.zone, edition) if reason else ""
        judged[story.id] = QueueEntry(story, edition_date, reason or "", why)
    return judged


def left_out_warnings(
    session: Session, plan: cal.SendPlan, edition_date: date, *, moment: datetime, newsletter_id: int
) -> tuple[PreflightProblem, ...]:
    """One preflight warning for each ready story the edition leaves out when judged at `moment`."""
    ready = story_store.list_stories(
        session, newsletter_id=newsletter_id, edition_date=edition_date, statuses=(StoryStatus.READY.value,)
    )
    judged = judge_stories(session, plan, edition_date, ready, moment=moment, newsletter_id=newsletter_id)
    return tuple(
        PreflightProblem(f"story {e.story.id}", f"“{e.story.headline}” is ready but left out: {e.why}")
        for e in judged.values()
        if not e.goes_in
    )


def _unsendable(
    day: date, edition: EditionData | None, plan: cal.SendPlan, now: datetime
) -> Unsendable | None:
    if edition is not None and edition.status not in OPEN_EDITION:
        return Unsendable.EDITION_CLOSED
    if not cal.is_send_day(day, plan):
        return Unsendable.NO_EDITION
    if cal.decide(day, now, plan).state == "expired":
        return Unsendable.WINDOW_PASSED
    return None


def _why(reason: str, story: StoryItem, day: date, zone: ZoneInfo, edition: EditionData | None) -> str:
    if reason == LeftOut.EMBARGOED and story.embargo_until is not None:
        return f"embargoed until {_when(story.embargo_until, day, zone)}"
    if reason == LeftOut.EXPIRED and story.expires_at is not None:
        return f"expired at {_when(story.expires_at, day, zone)}"
    if reason == LeftOut.OTHER_DATE:
        other = story.edition_date.isoformat() if story.edition_date else "the next edition"
        return f"for another date ({other})"
    if reason == LeftOut.DUPLICATE:
        return "the same link as a story above it"
    if reason == Unsendable.EDITION_CLOSED:
        return f"the edition of {day.isoformat()} is {edition.status if edition else 'closed'}"
    if reason == Unsendable.NO_EDITION:
        return f"no edition on {day.isoformat()}"
    if reason == Unsendable.WINDOW_PASSED:
        return f"the edition of {day.isoformat()} was never sent and its window has passed"
    return str(reason)  # draft, used, dropped


def _when(moment: datetime, day: date, zone: ZoneInfo) -> str:
    """Local time; the date too when it is not the edition's own day."""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone)
    return local.strftime("%H:%M") if local.date() == day else local.strftime("%Y-%m-%d %H:%M")
