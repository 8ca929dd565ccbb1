"""compose_briefing: which stories make the edition, in what order, and what the subject says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from briefing.domain import ArticleData, Briefing, ComposeOptions, StoryItem, StoryStatus
from briefing.edition.compose import compose_briefing, format_date
from briefing.errors import InvalidInput
from tests.fixtures.edition import ARTICLES, EDITION_DATE, OPTIONS, SEND_AT, STORIES, story

PLAIN = ComposeOptions(section_order=("Politics", "Economy"))


def ids(briefing: Briefing) -> list[int]:
    return [s.id for s in briefing.stories]


def compose(
    stories: Sequence[StoryItem],
    options: ComposeOptions = PLAIN,
    now: datetime = SEND_AT,
    articles: Sequence[ArticleData] = (),
    **kwargs: Any,
) -> Briefing:
    return compose_briefing(stories, articles, EDITION_DATE, now, options, **kwargs)


def test_embargo_lifts_exactly_at_send_time() -> None:
    stories = [
        story(1, embargo_until=SEND_AT),
        story(2, embargo_until=SEND_AT + timedelta(seconds=1)),
        story(3, embargo_until=SEND_AT - timedelta(days=1)),
    ]
    assert ids(compose(stories)) == [1, 3]


def test_expired_stories_are_left_out() -> None:
    stories = [
        story(1, expires_at=SEND_AT),
        story(2, expires_at=SEND_AT + timedelta(minutes=1)),
        story(3, expires_at=SEND_AT - timedelta(hours=1)),
    ]
    assert ids(compose(stories)) == [2]


def test_naive_timestamps_are_read_as_utc() -> None:
    stories = [story(1, embargo_until=datetime(2026, 11, 28, 7, 0)), story(2)]
    assert ids(compose(stories)) == [2]


@pytest.mark.parametrize("status", [StoryStatus.DRAFT, StoryStatus.USED, StoryStatus.DROPPED])
def test_only_ready_stories(status: StoryStatus) -> None:
    assert ids(compose([story(1, status=status), story(2)])) == [2]


def test_edition_date_and_next_edition() -> None:
    stories = [
        story(1, edition_date=EDITION_DATE),
        story(2, edition_date=EDITION_DATE + timedelta(days=1)),
        story(3, edition_date=EDITION_DATE - timedelta(days=1)),
        story(4, edition_date=None),
    ]
    assert ids(compose(stories)) == [1, 4]


def test_marked_lead_wins_and_is_not_repeated() -> None:
    stories = [story(1, section="Politics"), story(2, section="Economy", lead=True)]
    briefing = compose(stories)
    assert briefing.lead is not None and briefing.lead.id == 2
    assert [(s.name, [x.id for x in s.stories]) for s in briefing.sections] == [("Politics", [1])]


def test_lead_defaults_to_first_story_of_first_section() -> None:
    stories = [story(1, section="Economy", position=0), story(2, section="Politics", position=5)]
    briefing = compose(stories)
    assert briefing.lead is not None and briefing.lead.id == 2
    assert ids(briefing) == [2, 1]


def test_section_order_then_unknown_alphabetically_then_default() -> None:
    stories = [
        story(1, section="", position=0),
        story(2, section="Sport", position=1),
        story(3, section="economy", position=2),
        story(4, section="Culture", position=3),
        story(5, section="Politics", position=9),
        story(6, section="Politics", position=4),
        story(7, section="Politics", position=4),
    ]
    briefing = compose(stories)
    assert [s.name for s in briefing.sections] == ["Politics", "Economy", "Culture", "Sport", "More news"]
    assert ids(briefing) == [6, 7, 5, 3, 4, 2, 1]


def test_duplicate_story_links_appear_once() -> None:
    stories = [story(1, url="https://www.example.com/a"), story(2, url="https://www.example.com/a/")]
    assert ids(compose(stories)) == [1]


def test_more_from_skips_edition_and_recent_articles() -> None:
    stories = [
        story(1, article_id=101, url="https://www.example.com/economy/port-jobs"),
        story(2, url="https://www.example.com/politics/mayor-interview/"),  # same page, no article id
    ]
    future = ArticleData(
        id=106,
        url="https://www.example.com/embargoed",
        title="Not public yet",
        published_at=SEND_AT + timedelta(hours=2),
    )
    briefing = compose(
        stories,
        articles=(*ARTICLES, future),
        options=replace(PLAIN, more_from_count=2),
        recent_article_ids={103},
        recent_urls={"https://www.example.com/culture/library-reopens"},
    )
    assert [a.id for a in briefing.more_from] == [105]
    briefing = compose(stories, articles=ARTICLES, options=replace(PLAIN, more_from_count=2))
    assert [a.id for a in briefing.more_from] == [103, 104]  # newest first, limited


def test_more_from_count_zero() -> None:
    assert compose([story(1)], articles=ARTICLES, options=replace(PLAIN, more_from_count=0)).more_from == ()


def test_default_subject_and_preheader() -> None:
    briefing = compose([story(1, headline="Budget passes"), story(2, headline="Rents"), story(3)])
    assert briefing.subject == "Budget passes | The Morning Briefing"
    assert briefing.preheader == "Also today: Rents; Story number 3"
    assert briefing.date_label == "Saturday 28 November 2026"
    assert not briefing.subject_trimmed


def test_preheader_falls_back_when_there_is_nothing_else() -> None:
    briefing = compose([story(1)])
    assert briefing.preheader == "The Morning Briefing: Saturday 28 November 2026"


def test_long_lead_is_shortened_at_a_word() -> None:
    headline = "Council approves the new budget after an all-night session that ran until the caretaker left"
    briefing = compose([story(1, headline=headline)])
    assert len(briefing.subject) <= 78
    assert briefing.subject.endswith("… | The Morning Briefing")
    assert briefing.subject.startswith("Council approves the new budget")
    assert briefing.subject_trimmed


def test_custom_templates_and_story_text_is_not_a_template() -> None:
    options = replace(PLAIN, subject_template="{newsletter}, {date}: {lead}", newsletter_name="Daily")
    briefing = compose([story(1, headline="A {newsletter} {0} {lead.__class__} headline")], options=options)
    assert (
        briefing.subject == "Daily, Saturday 28 November 2026: A {newsletter} {0} {lead.__class__} headline"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject_template", "{lead.__class__}"),
        ("subject_template", "{unknown}"),
        ("subject_template", "{lead"),
        ("preheader_template", "{0}"),
        ("brand_colour", "red;background:url(x)"),
        ("accent_colour", "#12345"),
    ],
)
def test_bad_options_name_the_setting(field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        changes: dict[str, Any] = {field: value}
        compose([story(1)], options=replace(PLAIN, **changes))
    assert info.value.field == field


def test_empty_edition() -> None:
    briefing = compose([])
    assert briefing.lead is None and briefing.sections == ()
    assert briefing.subject == "The Morning Briefing: Saturday 28 November 2026"


def test_fixture_edition_blocks_and_web_url() -> None:
    briefing = compose_briefing(STORIES, ARTICLES, EDITION_DATE, SEND_AT, OPTIONS)
    assert briefing.web_url == "https://www.example.com/briefing/2026-11-28"
    assert briefing.blocks.why_text == (
        "You are getting this email because you signed up for The Morning Briefing at Example News."
    )
    assert briefing.brand_name == "Example News"
    assert [s.name for s in briefing.sections] == ["Politics", "Economy", "Climate", "More news"]


def test_format_date_ignores_locale() -> None:
    assert format_date(datetime(2027, 1, 4, tzinfo=UTC).date()) == "Monday 4 January 2027"
