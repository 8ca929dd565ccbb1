"""The edition as of its send time: the one moment its stories are judged at, and its content.

Preview, preflight, the test send, a forced early send and the real send all take their content
from `prepare`, and `prepare` judges embargoes and expiries at `judged_at`: so a forced send at
05:00 sends the stories its 05:00 preview showed, and a frozen edition shows the copy it froze.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlmodel import Session

from briefing import calendar as cal
from briefing.domain import (
    ArticleData,
    Briefing,
    EditionData,
    RenderedEdition,
    StoryItem,
    StoryStatus,
)
from briefing.edition.compose import compose_briefing
from briefing.edition.preflight import PreflightReport, check_copy, preflight
from briefing.edition.topup import top_up
from briefing.errors import NotFound
from briefing.newsletter import REGULAR, is_special
from briefing.reader_copy import personalise
from briefing.service.setup import EditionSetup, sample_recipient
from briefing.service.sponsors import sponsor_warnings, with_sponsor
from briefing.service.stories import left_out_warnings
from briefing.store import articles as article_store
from briefing.store import editions as edition_store
from briefing.store import stories as story_store

__all__ = ["Prepared", "featured_urls", "judged_at", "prepare"]

MORE_FROM_CANDIDATES = 50
ALL_STORY_STATUSES = tuple(s.value for s in StoryStatus)


@dataclass(frozen=True, slots=True)
class Prepared:
    briefing: Briefing
    rendered: RenderedEdition
    report: PreflightReport
    frozen: bool = False  # content came from the frozen edition, not a fresh render
    judged_at: datetime | None = None  # the moment embargoes and expiries were judged at
    frozen_at: datetime | None = None


def judged_at(
    edition_date: date, plan: cal.SendPlan, *, now: datetime | None, edition: EditionData | None = None
) -> datetime:
    """The moment an edition's stories are judged at: its send time, or now once that has passed.

    Nothing goes out before its send time except a forced send, and a forced send is judged as if
    it went at the send time, so it carries what the preview showed. A late send is judged when it
    starts. A frozen edition keeps the moment it was judged at when it froze. `now=None` means
    "before the send time" (a check ahead of the send).
    """
    send_at = cal.send_time_for(edition_date, plan)
    if edition is not None and is_special(edition.kind) and edition.scheduled_for is not None:
        send_at = edition.scheduled_for  # a special goes when the editor said, not on the calendar
    if edition is not None and edition.frozen_at is not None:
        return max(send_at, edition.frozen_at)
    return send_at if now is None else max(send_at, now)


def prepare(
    session: Session,
    setup: EditionSetup,
    edition_date: date,
    now: datetime | None = None,
    *,
    kind: str = REGULAR,
) -> Prepared:
    """Compose, render and check the edition as it goes out (see `judged_at`).

    A frozen edition is shown as frozen: that copy, not today's queue, is what was or will be sent,
    and only the copy is checked again (its stories were checked when it was frozen). A special
    edition is made of the stories and words its editor gave, never of the day's queue.
    """
    edition = edition_store.find_edition(session, edition_date, newsletter_id=setup.newsletter.id, kind=kind)
    moment = judged_at(edition_date, setup.plan, now=now, edition=edition)
    if edition is not None and edition.frozen_at is not None:
        return _frozen(session, setup, edition, moment)
    if is_special(kind):
        if edition is None:
            raise NotFound(f"no special edition {kind} on {edition_date}", field="kind")
        briefing = _compose_special(session, setup, edition, moment)
    else:
        briefing = _compose(session, setup, edition_date, moment, note=edition.note if edition else "")
    briefing = with_sponsor(session, setup, briefing)
    rendered = setup.renderer.render_edition(briefing)
    html, _ = personalise(rendered, sample_recipient(setup))
    report = preflight(briefing, rendered, personalised_html=html, public_base_url=_checked_base(setup))
    if is_special(kind) and edition is not None and edition.note.strip() and not briefing.stories:
        # Breaking news may be its editor's words alone; a regular edition needs its stories.
        report = replace(report, errors=tuple(p for p in report.errors if "no stories" not in p.message))
    if not is_special(kind):  # ready, yet not in it
        left_out = left_out_warnings(
            session, setup.plan, edition_date, moment=moment, newsletter_id=setup.newsletter.id
        )
        report = replace(report, warnings=report.warnings + left_out)
    report = replace(report, warnings=report.warnings + sponsor_warnings(session, setup, edition_date))
    return Prepared(briefing, rendered, report, judged_at=moment)


def _compose_special(
    session: Session, setup: EditionSetup, edition: EditionData, moment: datetime
) -> Briefing:
    stories = [_as_frozen(s, edition.edition_date) for s in _stories(session, edition.story_ids)]
    if stories and not any(s.lead for s in stories):
        stories[0] = replace(stories[0], lead=True)  # the breaking story leads
    options = replace(setup.compose, editor_note=edition.note, more_from_count=0)
    briefing = compose_briefing(stories, [], edition.edition_date, moment, options)
    return replace(
        briefing,
        subject=edition.subject or briefing.subject,
        preheader=edition.preheader or briefing.preheader,
        web_url=f"{briefing.web_url}/{edition.kind}" if briefing.web_url else "",  # its own archive page
    )


def _checked_base(setup: EditionSetup) -> str | None:
    # Only a send that reaches readers needs links they can open; rehearsals use local addresses.
    return setup.mailing.public_base_url if setup.reaches_readers else None


def _compose(
    session: Session, setup: EditionSetup, edition_date: date, moment: datetime, *, note: str
) -> Briefing:
    # Every status, so an article an editor dropped is not brought back by the top-up.
    stories = story_store.list_stories(
        session, newsletter_id=setup.newsletter.id, edition_date=edition_date, statuses=ALL_STORY_STATUSES
    )
    articles: list[ArticleData] = article_store.recent_articles(session, limit=MORE_FROM_CANDIDATES)
    recent_urls = edition_store.recent_featured_urls(
        session,
        before=edition_date,
        editions=setup.compose.more_from_exclude_editions,
        newsletter_id=setup.newsletter.id,
    )
    if setup.min_stories:
        stories += top_up(
            stories,
            articles,
            minimum=setup.min_stories,
            now=moment,
            recent_urls=recent_urls,
            edition_date=edition_date,
        )
    options = replace(setup.compose, editor_note=note) if note else setup.compose
    return compose_briefing(stories, articles, edition_date, moment, options, recent_urls=recent_urls)


def _frozen(session: Session, setup: EditionSetup, edition: EditionData, moment: datetime) -> Prepared:
    html, text = edition_store.frozen_content(session, edition.id)
    rendered = RenderedEdition(
        edition_date=edition.edition_date,
        subject=edition.subject,
        preheader=edition.preheader,
        html=html,
        text=text,
    )
    # The frozen stories as data, for callers that list them; the copy itself is the frozen HTML.
    stories = [_as_frozen(s, edition.edition_date) for s in _stories(session, edition.story_ids)]
    options = replace(setup.compose, editor_note=edition.note) if edition.note else setup.compose
    briefing = compose_briefing(stories, [], edition.edition_date, moment, options)
    briefing = replace(briefing, subject=edition.subject, preheader=edition.preheader)
    personal, _ = personalise(rendered, sample_recipient(setup))
    report = check_copy(rendered, personalised_html=personal, story_urls=[s.url.strip() for s in stories])
    return Prepared(briefing, rendered, report, frozen=True, judged_at=moment, frozen_at=edition.frozen_at)


def _stories(session: Session, story_ids: tuple[int, ...]) -> list[StoryItem]:
    found = []
    for story_id in story_ids:
        try:
            found.append(story_store.get_story(session, story_id))
        except NotFound:
            continue  # gone from the queue since; the frozen copy still has it
    return found


def _as_frozen(story: StoryItem, edition_date: date) -> StoryItem:
    # It was in the edition when it froze: no later status, date, embargo or expiry takes it out.
    return replace(
        story, status=StoryStatus.READY, edition_date=edition_date, embargo_until=None, expires_at=None
    )


def featured_urls(briefing: Briefing) -> list[str]:
    return [s.url for s in briefing.stories] + [a.url for a in briefing.more_from]
