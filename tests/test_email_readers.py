"""What every reader gets from the HTML: a heading outline, links that name their story, the sign-up
for forwarded copies, alt text that reads well with images off, dark mode, and none of the markup
the common mail clients reject. (The browser checks of the same live in test_email_layout.py.)"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from briefing.domain import Briefing, RenderedEdition
from briefing.edition.compose import compose_briefing
from briefing.edition.mail_clients import DARK_SURFACE, contrast, dark_accent
from briefing.edition.render import Renderer
from briefing.errors import RenderError
from briefing.reader_copy import personalise
from tests.fixtures.edition import ARTICLES, EDITION_DATE, SEND_AT, STORIES
from tests.test_render import (
    OPTIONS,
    READER,
    SUBSCRIBE_URL,
    TEMPLATES,
    headline_links,
    one_story,
    parse,
    text_of,
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.fixture(scope="module")
def briefing() -> Briefing:
    return compose_briefing(STORIES, ARTICLES, EDITION_DATE, SEND_AT, OPTIONS)


@pytest.fixture(scope="module")
def rendered(renderer: Renderer, briefing: Briefing) -> RenderedEdition:
    return renderer.render_edition(briefing)


def headings(doc: Any, tag: str) -> list[str]:
    return [text_of(h) for h in doc.iter(tag)]


def test_headings_outline_the_edition(rendered: RenderedEdition, briefing: Briefing) -> None:
    doc = parse(rendered.html)
    assert headings(doc, "h1") == ["The Morning Briefing"]
    assert headings(doc, "h2") == [
        "From the editor",
        "Top story",
        *[section.name for section in briefing.sections],
        "More from Example News",
        "Got a tip?",
        "Support our journalism",
        "Forwarded this email?",
    ]
    assert headings(doc, "h3") == [s.headline for s in briefing.stories]


def test_lead_label_is_not_repeated_by_its_section(rendered: RenderedEdition, briefing: Briefing) -> None:
    assert briefing.lead is not None and briefing.lead.section == briefing.sections[0].name == "Politics"
    doc = parse(rendered.html)
    labels = [text_of(el) for el in doc.iter() if "kicker" in (el.get("class") or "").split()]
    assert labels[1:3] == ["Top story", "Politics"]
    assert len(labels) == len(set(labels)), labels


def test_read_more_links_name_their_story(rendered: RenderedEdition, briefing: Briefing) -> None:
    doc = parse(rendered.html)
    more = [(a.get("href"), text_of(a)) for a in doc.iter("a") if text_of(a).startswith("Read more")]
    assert more == [(s.url, f"Read more: {s.headline}") for s in briefing.stories]
    assert len({text for _, text in more}) == len(briefing.stories)


def test_forwarded_copy_offers_the_sign_up(rendered: RenderedEdition, renderer: Renderer) -> None:
    html, text = personalise(rendered, READER)
    links = {text_of(a): a.get("href") for a in parse(html).iter("a")}
    assert links["Sign up for The Morning Briefing"] == SUBSCRIBE_URL
    assert f"Forwarded this email? Sign up for The Morning Briefing:\n{SUBSCRIBE_URL}\n" in text
    without = renderer.render_edition(
        compose_briefing(STORIES, ARTICLES, EDITION_DATE, SEND_AT, replace(OPTIONS, subscribe_url=""))
    )
    assert "Sign up for" not in without.html and "Sign up for" not in without.text


def test_lead_image_alt_text_has_a_styled_box(rendered: RenderedEdition) -> None:
    (img,) = parse(rendered.html).iter("img")
    assert (img.get("width"), img.get("height")) == ("600", "338")  # keeps its 16:9 space with images off
    style = img.get("style", "").replace(" ", "")
    for rule in ("display:block", "font-family:Georgia", "font-size:15px", "color:#3d434c"):
        assert rule in style, rule
    assert "background-color:#e4e1da" in style and "height:auto" in style


def test_dark_mode_is_declared_and_styled(rendered: RenderedEdition) -> None:
    doc = parse(rendered.html)
    metas = {m.get("name"): m.get("content") for m in doc.iter("meta")}
    assert metas["color-scheme"] == metas["supported-color-schemes"] == "light dark"
    assert "@media (prefers-color-scheme: dark)" in rendered.html
    assert ".surface div, .canvas .card div { color: #e6e4df !important; }" in rendered.html


def test_dark_accent_is_readable_on_the_dark_surface() -> None:
    for accent in ("#b3261e", "#14213d", "#000", "#ff0000", "#e6e4df"):
        lighter = dark_accent(accent)
        assert contrast(lighter, DARK_SURFACE) >= 4.5, (accent, lighter)
    assert dark_accent("#b3261e") != "#ffffff"  # lightened, not replaced
    with pytest.raises(RenderError):
        dark_accent("red;background:url(x)")


def test_markup_mail_clients_reject_is_gone(rendered: RenderedEdition) -> None:
    html = rendered.html
    for needle in (
        "target=",
        "aria-label",
        "opacity",
        "overflow",
        ":first-child",
        ":last-child",
    ):
        assert needle not in html, needle
    assert 'role="article"' in html and 'aria-roledescription="email"' in html


def test_story_text_that_looks_like_removed_markup_is_kept(renderer: Renderer) -> None:
    headline = 'Why target="_blank" and aria-label="x" matter'
    _, _, doc = one_story(renderer, headline=headline)
    assert headline_links(doc) == {"https://www.example.com/news/story-1": [headline]}
