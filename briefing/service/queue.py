"""The queue as the editions will take it: by edition, in the email's section order, each story judged.

The CLI's `stories list` and the web queue both show this view, so neither can disagree with the
email: stories are judged by `stories.judge_stories` at the moment the edition itself is judged
(`edition_content.judged_at`), grouped by compose's `order_sections`, and blurbs are rendered by
the email's own Markdown and nh3 function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlmodel import Session

from briefing import calendar as cal
from briefing.domain import ComposeOptions, EditionData, StoryItem
from briefing.edition.compose import order_sections
from briefing.edition.render import blurb_page_html
from briefing.service.edition_content import judged_at
from briefing.service.stories import OPEN_EDITION, QueueEntry, judge_stories
from briefing.store import editions as edition_store
from briefing.store import stories as story_store

__all__ = ["EditionQueue", "next_open_edition", "queue_view"]


@dataclass(frozen=True, slots=True)
class EditionQueue:
    """The stories waiting for one edition, in the email's section order."""

    edition_date: date
    judged_at: datetime  # the edition's send time, or later for a late send
    edition: EditionData | None
    sections: tuple[tuple[str, tuple[QueueEntry, ...]], ...]

    @property
    def entries(self) -> list[QueueEntry]:
        return [entry for _name, group in self.sections for entry in group]


def next_open_edition(session: Session, plan: cal.SendPlan, now: datetime, *, newsletter_id: int) -> date:
    """The edition an undated story waits for: today's while it can still go out, else the next."""
    current = cal.previous_send_time(now, plan, plan.max_lateness)
    if current is not None:
        edition = edition_store.find_edition(session, current.edition_date, newsletter_id=newsletter_id)
        if edition is None or edition.status in OPEN_EDITION:
            return current.edition_date
    return cal.next_send_times(now, plan, 1)[0].edition_date


def queue_view(
    session: Session,
    plan: cal.SendPlan,
    options: ComposeOptions,
    *,
    now: datetime,
    edition_date: date | None = None,
    statuses: Sequence[str] = story_store.ACTIVE_STATUSES,
    newsletter_id: int,
) -> list[EditionQueue]:
    """One edition's queue for `edition_date`; without it, one per date that has stories waiting.

    A story for "the next edition" is shown with the next edition that can still go out.
    """
    stories = story_store.list_stories(
        session, newsletter_id=newsletter_id, edition_date=edition_date, statuses=statuses
    )
    undated_go_to = edition_date or next_open_edition(session, plan, now, newsletter_id=newsletter_id)
    by_date: dict[date, list[StoryItem]] = {} if edition_date is None else {edition_date: []}
    for story in stories:
        by_date.setdefault(edition_date or story.edition_date or undated_go_to, []).append(story)
    return [
        _edition_queue(session, plan, options, day, group, now, newsletter_id)
        for day, group in sorted(by_date.items())
    ]


def _edition_queue(
    session: Session,
    plan: cal.SendPlan,
    options: ComposeOptions,
    day: date,
    stories: list[StoryItem],
    now: datetime,
    newsletter_id: int,
) -> EditionQueue:
    edition = edition_store.find_edition(session, day, newsletter_id=newsletter_id)
    moment = judged_at(day, plan, now=now, edition=edition)
    judged = judge_stories(
        session, plan, day, stories, moment=moment, now=now, edition=edition, newsletter_id=newsletter_id
    )
    sections = tuple(
        (name, tuple(replace(judged[s.id], blurb_html=str(blurb_page_html(s.blurb))) for s in group))
        for name, group in order_sections(stories, options)
    )
    return EditionQueue(day, moment, edition, sections)
