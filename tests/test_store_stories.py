"""The queue's ordering rules, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlmodel import Session

from briefing.domain import ArticleInput
from briefing.service import stories as story_service
from briefing.store import articles as article_store
from briefing.store import stories as story_store
from tests.fixtures.clock import T0


def _add(s: Session, headline: str, section: str = "Politics", **kw: object) -> int:
    req = story_service.StoryRequest(
        url=f"https://news.example.com/{headline}",
        headline=headline,
        section=section,
        **kw,  # type: ignore[arg-type]
    )
    return story_service.add_story(s, req, now=T0).id


def test_positions_append_insert_and_move(engine: sa.Engine) -> None:
    with Session(engine) as s:
        _add(s, "a"), _add(s, "b")
        c = _add(s, "c")
        d = _add(s, "d", position=1)
        _add(s, "w", section="World")
        order = [x.headline for x in story_store.list_stories(s, newsletter_id=1) if x.section == "Politics"]
        assert order == ["d", "a", "b", "c"]
        story_service.move_story(s, c, 2, now=T0)
        story_service.move_story(s, d, 99, now=T0)
        got = [
            (x.headline, x.position)
            for x in story_store.list_stories(s, newsletter_id=1)
            if x.section == "Politics"
        ]
        assert got == [("c", 1), ("a", 2), ("b", 3), ("d", 4)]


def test_list_for_a_date_includes_next_edition_and_excludes_other_dates(engine: sa.Engine) -> None:
    with Session(engine) as s:
        _add(s, "undated")
        _add(s, "monday", edition_date=date(2026, 11, 30))
        _add(s, "tuesday", edition_date=date(2026, 12, 1))
        dropped = _add(s, "dropped")
        story_service.drop(s, dropped, now=T0)
        got = {
            x.headline for x in story_store.list_stories(s, newsletter_id=1, edition_date=date(2026, 11, 30))
        }
        assert got == {"undated", "monday"}


def test_story_from_article_inherits_fields(engine: sa.Engine) -> None:
    with Session(engine) as s:
        art = article_store.add_article(
            s,
            ArticleInput(
                url="https://news.example.com/x",
                title="From the site",
                summary="Summary.",
                section="Economy",
                image_url="https://news.example.com/x.jpg",
                image_alt="A chart",
            ),
            now=T0,
        )
        item = story_service.add_story(s, story_service.StoryRequest(article_id=art.id), now=T0)
        assert (item.headline, item.url, item.blurb, item.section, item.image_alt) == (
            "From the site",
            "https://news.example.com/x",
            "Summary.",
            "Economy",
            "A chart",
        )
        assert [a.id for a in article_store.list_articles(s, not_queued=True)] == []


def test_changing_section_moves_story_to_end_of_new_section(engine: sa.Engine) -> None:
    with Session(engine) as s:
        _add(s, "w1", section="World")
        p = _add(s, "p1")
        item = story_service.edit_story(s, p, {"section": "World"}, now=T0)
        assert item.position == 2
