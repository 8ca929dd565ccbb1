"""Thumbnails for non-lead stories: off unless asked for, and only shown images need alt text."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import html5lib
import pytest

from briefing.config import load_settings
from briefing.domain import Briefing
from briefing.edition.compose import compose_briefing
from briefing.edition.preflight import preflight
from briefing.edition.render import Renderer
from briefing.wiring import compose_options
from tests.fixtures.edition import ARTICLES, EDITION_DATE, OPTIONS, SEND_AT, STORIES

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"
THUMB_URL = "https://images.example.com/renters.jpg"
THUMB_ALT = "A row of terraced houses with letting boards"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def edition(*, thumbnails: bool, alt: str = THUMB_ALT) -> Briefing:
    """The fixture edition with an image on story 2 (not the lead)."""
    stories = [replace(s, image_url=THUMB_URL, image_alt=alt) if s.id == 2 else s for s in STORIES]
    options = replace(OPTIONS, story_thumbnails=thumbnails)
    return compose_briefing(stories, ARTICLES, EDITION_DATE, SEND_AT, options)


def images(html: str) -> list[dict[str, Any]]:
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    return [dict(img.attrib) for img in doc.iter("img")]


def test_thumbnails_are_off_by_default(renderer: Renderer) -> None:
    assert load_settings(_env_file=None).story_thumbnails is False
    assert compose_options(load_settings(_env_file=None)).story_thumbnails is False
    shown = images(renderer.render_edition(edition(thumbnails=False)).html)
    assert [img["src"] for img in shown] == ["https://images.example.com/budget.jpg"]


def test_thumbnail_shows_with_alt_text_and_link(renderer: Renderer) -> None:
    html = renderer.render_edition(edition(thumbnails=True)).html
    _lead, thumb = images(html)
    assert thumb["src"] == THUMB_URL and thumb["alt"] == THUMB_ALT
    assert (thumb["width"], thumb["height"]) == ("128", "72")
    style = thumb["style"].replace(" ", "")
    assert "font-family:Georgia" in style and "color:#3d434c" in style and "width:128px" in style
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    linked = [a for a in doc.iter("a") if any(i.get("src") == THUMB_URL for i in a.iter("img"))]
    assert [a.get("href") for a in linked] == ["https://www.example.com/politics/budget-renters"]


def test_setting_turns_thumbnails_on() -> None:
    settings = load_settings(_env_file=None, story_thumbnails="true")
    assert compose_options(settings).story_thumbnails is True


def test_hidden_image_needs_no_alt_text(renderer: Renderer) -> None:
    briefing = edition(thumbnails=False, alt="")
    report = preflight(briefing, renderer.render_edition(briefing))
    assert report.ok, report.errors


def test_shown_thumbnail_needs_alt_text(renderer: Renderer) -> None:
    briefing = edition(thumbnails=True, alt="")
    report = preflight(briefing, renderer.render_edition(briefing))
    assert [str(p) for p in report.errors] == [
        "story 2 (image_alt): the image has no alt text; describe it for screen readers",
        f"html: the image {THUMB_URL} has no alt text",
    ]
