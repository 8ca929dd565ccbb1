"""The top-up rule: fill a thin edition from the last day's articles, never twice, never stale."""

from __future__ import annotations

import ast
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from briefing.domain import ArticleData, ComposeOptions, StoryItem, StoryStatus
from briefing.edition import topup as topup_module
from briefing.edition.compose import compose_briefing
from briefing.edition.topup import top_up
from briefing.urls import url_key

NOW = datetime(2026, 11, 30, 5, 30, tzinfo=UTC)


def article(i: int, hours_ago: float | None, **kw: object) -> ArticleData:
    published = NOW - timedelta(hours=hours_ago) if hours_ago is not None else None
    fields: dict[str, object] = {
        "url": f"https://news.example.com/{i}",
        "title": f"Article {i}",
        "summary": f"Summary {i}",
        "section": "Politics",
        "published_at": published,
        "created_at": NOW - timedelta(days=30),
    }
    fields.update(kw)
    return ArticleData(id=i, **fields)  # type: ignore[arg-type]


def story(i: int, **kw: object) -> StoryItem:
    fields: dict[str, object] = {"headline": f"Story {i}", "url": f"https://news.example.com/s{i}"}
    fields.update({"status": StoryStatus.READY, "position": i})
    fields.update(kw)
    return StoryItem(id=i, **fields)  # type: ignore[arg-type]


def test_off_when_minimum_is_zero() -> None:
    assert top_up([], [article(1, 1)], minimum=0, now=NOW, recent_urls=()) == []


def test_fills_up_to_the_minimum_newest_first() -> None:
    stories = [story(1), story(2)]
    arts = [article(10, 5), article(11, 1), article(12, 3), article(13, 2)]
    extra = top_up(stories, arts, minimum=4, now=NOW, recent_urls=())
    assert [s.article_id for s in extra] == [11, 13]
    first = extra[0]
    assert first.id == -11 and first.automatic and first.status == StoryStatus.READY
    assert (first.headline, first.url, first.blurb, first.section) == (
        "Article 11",
        "https://news.example.com/11",
        "Summary 11",
        "Politics",
    )
    assert [s.position for s in extra] == [3, 4]  # after the editors' stories


def test_nothing_added_when_enough_stories_are_ready() -> None:
    assert top_up([story(1), story(2)], [article(10, 1)], minimum=2, now=NOW, recent_urls=()) == []


def test_only_stories_that_will_run_count() -> None:
    stories = [
        story(1),
        story(2, status=StoryStatus.DRAFT),
        story(3, embargo_until=NOW + timedelta(hours=1)),
        story(4, expires_at=NOW - timedelta(minutes=1)),
        story(5, edition_date=date(2026, 12, 1)),
        story(6, url="https://news.example.com/s1"),  # the same link again counts once
    ]
    extra = top_up(
        stories,
        [article(i, i) for i in range(10, 20)],
        minimum=3,
        now=NOW,
        recent_urls=(),
        edition_date=date(2026, 11, 30),
    )
    assert len(extra) == 2


def test_skips_queued_recent_stale_future_and_duplicate_articles() -> None:
    stories = [
        story(1, article_id=20),
        story(2, url="https://news.example.com/21/", status=StoryStatus.DROPPED),
    ]
    arts = [
        article(20, 1),  # queued as an article
        article(21, 1),  # its link is queued (as a dropped story), trailing slash aside
        article(22, 1),  # featured in a recent edition
        article(23, 25),  # older than 24 hours
        article(24, -2),  # published in two hours: not public yet
        article(25, 2),
        article(26, 3, url="https://news.example.com/25#comments"),  # the same page as 25
        article(27, 4, title="  "),  # nothing to show
        article(28, None, created_at=NOW - timedelta(hours=6)),  # no date: when it was stored
        article(29, None),  # no date, stored a month ago
    ]
    extra = top_up(stories, arts, minimum=10, now=NOW, recent_urls=["HTTPS://NEWS.EXAMPLE.COM/22"])
    assert [s.article_id for s in extra] == [25, 28]


def test_window_is_configurable() -> None:
    arts = [article(1, 30), article(2, 50)]
    extra = top_up([], arts, minimum=5, now=NOW, recent_urls=(), window=timedelta(hours=48))
    assert [s.article_id for s in extra] == [1]  # 30 h ago is in, 50 h ago is not


def test_compose_shows_the_topped_up_stories() -> None:
    stories = [story(1, lead=True)]
    arts = [article(10, 1, section="Economy"), article(11, 2)]
    extra = top_up(stories, arts, minimum=3, now=NOW, recent_urls=())
    briefing = compose_briefing([*stories, *extra], arts, NOW.date(), NOW, ComposeOptions(more_from_count=5))
    assert [s.id for s in briefing.stories] == [1, -10, -11]
    assert briefing.lead is not None and briefing.lead.id == 1
    assert all(a.id not in (10, 11) for a in briefing.more_from)


@settings(max_examples=200, deadline=None)
@given(
    ready=st.integers(0, 8),
    minimum=st.integers(0, 10),
    ages=st.lists(st.one_of(st.none(), st.floats(-48, 48, allow_nan=False)), max_size=15),
)
def test_never_more_than_needed_never_a_queued_or_stale_article(
    ready: int, minimum: int, ages: list[float | None]
) -> None:
    stories = [story(i + 1, article_id=100 + i) for i in range(ready)]
    arts = [article(100 + i, age) for i, age in enumerate(ages)]
    extra = top_up(stories, arts, minimum=minimum, now=NOW, recent_urls=())
    assert len(extra) <= max(0, minimum - ready)
    queued = {s.article_id for s in stories}
    for s in extra:
        assert s.id < 0 and s.automatic and s.article_id not in queued
        (source,) = [a for a in arts if a.id == s.article_id]
        when = source.published_at or source.created_at
        assert when is not None and NOW - timedelta(hours=24) < when <= NOW
    assert len({s.id for s in extra}) == len(extra)


def test_top_up_stays_pure() -> None:
    """stdlib, domain and urls only, so preview and send can call it without a database."""
    tree = ast.parse(Path(topup_module.__file__).read_text(encoding="utf-8"))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    ours = {name for name in imported if name.startswith("briefing")}
    assert ours == {"briefing.domain", "briefing.urls"}
    assert all(name.split(".")[0] in sys.stdlib_module_names for name in imported - ours)


# --- one URL key: compose and the top-up call the same links the same page ---------------------

QUEUED = "https://news.example.com/politics/mayor"
SAME_PAGE = [
    "https://news.example.com/politics/mayor/",  # trailing slash
    "https://news.example.com/politics/mayor?utm_source=newsletter&utm_medium=email",  # tracking
    "https://news.example.com/politics/mayor?fbclid=abc",
    "https://news.example.com/politics/mayor#comments",  # fragment
    "HTTPS://News.Example.COM/politics/mayor",  # scheme and host case
    "https://news.example.com:443/politics/mayor",  # the default port
    "  https://news.example.com/politics/mayor  ",
]
OTHER_PAGE = [
    "https://news.example.com/Politics/Mayor",  # path case can name another page (as feeds keep it)
    "https://news.example.com/politics/mayor?id=2",  # a parameter that selects content
    "http://news.example.com/politics/mayor",  # http vs https stays as written
]


def _composed_more_from(queued_url: str, article_url: str) -> bool:
    options = ComposeOptions(more_from_count=5)
    briefing = compose_briefing(
        [story(1, url=queued_url)], [article(7, 1, url=article_url)], NOW.date(), NOW, options
    )
    return any(a.id == 7 for a in briefing.more_from)


def _topped_up(queued_url: str, article_url: str) -> bool:
    extra = top_up(
        [story(1, url=queued_url)], [article(7, 1, url=article_url)], minimum=5, now=NOW, recent_urls=()
    )
    return any(s.article_id == 7 for s in extra)


@pytest.mark.parametrize("variant", SAME_PAGE + OTHER_PAGE)
def test_compose_and_top_up_agree_on_url_variants(variant: str) -> None:
    same = variant in SAME_PAGE
    assert (url_key(variant) == url_key(QUEUED)) is same
    # Both ways round: the queued link may be the variant, or the stored article's may be.
    for queued, stored in ((QUEUED, variant), (variant, QUEUED)):
        assert _composed_more_from(queued, stored) is not same
        assert _topped_up(queued, stored) is not same
    recent = top_up([], [article(7, 1, url=QUEUED)], minimum=5, now=NOW, recent_urls=[variant])
    assert (recent == []) is same
    stories = [story(1, url=QUEUED), story(2, url=variant)]
    assert len(compose_briefing(stories, [], NOW.date(), NOW, ComposeOptions()).stories) == (1 if same else 2)
