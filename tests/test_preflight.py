"""preflight: what stops a send and what only warns."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from briefing.domain import Briefing, ComposeOptions, Recipient, RenderedEdition, StoryItem
from briefing.edition.compose import compose_briefing
from briefing.edition.preflight import GMAIL_CLIP_BYTES, PreflightProblem, PreflightReport, preflight
from briefing.edition.render import Renderer
from briefing.reader_copy import personalise
from tests.fixtures.edition import ARTICLES, EDITION_DATE, OPTIONS, SEND_AT, STORIES, story

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def check(
    renderer: Renderer,
    stories: list[StoryItem] | tuple[StoryItem, ...] = STORIES,
    options: ComposeOptions = OPTIONS,
) -> tuple[Briefing, RenderedEdition, PreflightReport]:
    briefing = compose_briefing(stories, ARTICLES, EDITION_DATE, SEND_AT, options)
    rendered = renderer.render_edition(briefing)
    return briefing, rendered, preflight(briefing, rendered)


def where(problems: tuple[PreflightProblem, ...]) -> list[str]:
    return [p.where for p in problems]


def test_fixture_edition_passes(renderer: Renderer) -> None:
    report = check(renderer)[2]
    assert report.ok, report.problems
    assert [str(w) for w in report.warnings] == [
        "subject: the lead headline was shortened to fit the subject line"
    ]
    assert 20_000 < report.html_bytes < GMAIL_CLIP_BYTES


def test_empty_edition_is_an_error(renderer: Renderer) -> None:
    report = check(renderer, [])[2]
    assert not report.ok
    assert where(report.errors) == ["edition"]
    assert [p.where for p in report.warnings] == ["section Politics", "section Economy", "section Climate"]


def test_story_without_headline_or_url(renderer: Renderer) -> None:
    report = check(
        renderer, [story(1, headline="  "), story(2, url=""), story(3, url="javascript:alert(1)")]
    )[2]
    assert where(report.errors) == ["story 1 (headline)", "story 2 (url)", "story 3 (url)"]
    assert "not an http(s) address" in report.errors[2].message


@pytest.mark.parametrize(
    ("field", "value", "word"),
    [
        ("headline", "Minister TK resigns", "TK"),
        ("headline", "Minister resigns (TKTK)", "TKTK"),
        ("blurb", "The vote was XX to 12.", "XX"),
        ("blurb", "Lorem ipsum dolor sit amet.", "Lorem ipsum"),
        ("image_alt", "Photo: TK", "TK"),
    ],
)
def test_placeholders_are_errors(renderer: Renderer, field: str, value: str, word: str) -> None:
    extra = {"image_url": "https://images.example.com/a.jpg"} if field == "image_alt" else {}
    report = check(renderer, [story(1, **{field: value, **extra})])[2]
    assert [str(p) for p in report.errors] == [f"story 1 ({field}): contains the placeholder {word!r}"]


@pytest.mark.parametrize(
    "text", ["The TKO came late", "Ticket office: tk-12", "Xxx marks", "XXL sizes", "Tk"]
)
def test_placeholder_lookalikes_pass(renderer: Renderer, text: str) -> None:
    assert check(renderer, [story(1, headline=text)])[2].ok


def test_placeholder_in_standing_block(renderer: Renderer) -> None:
    report = check(renderer, options=replace(OPTIONS, editor_note="Back on XX December."))[2]
    assert where(report.errors) == ["editor_note"]


def test_image_without_alt(renderer: Renderer) -> None:
    report = check(renderer, [story(1, image_url="https://images.example.com/a.jpg", image_alt="")])[2]
    assert where(report.errors) == ["story 1 (image_alt)", "html"]
    assert "https://images.example.com/a.jpg has no alt text" in report.errors[1].message


def test_html_over_gmail_clip(renderer: Renderer) -> None:
    long_blurb = "A long paragraph of careful reporting. " * 600
    briefing, rendered, report = check(renderer, [story(i, blurb=long_blurb) for i in range(1, 6)])
    assert where(report.errors) == ["html"]
    assert "Gmail clips" in report.errors[0].message
    html, _ = personalise(
        rendered, Recipient(1, "a@example.com", unsubscribe_url="https://www.example.com/u/1")
    )
    exact = preflight(briefing, rendered, personalised_html=html)
    assert exact.html_bytes == len(html.encode("utf-8")) > GMAIL_CLIP_BYTES


def test_warnings(renderer: Renderer) -> None:
    options = replace(OPTIONS, subject_template="{newsletter} for {date}: {lead}", subject_max_length=200)
    stories = [
        story(1, headline="A very long headline about the budget vote and what it means for everyone"),
        story(2, url="http://www.example.com/plain", blurb="See [this](http://www.example.org/x)."),
    ]
    report = check(renderer, stories, options)[2]
    assert report.ok
    assert [str(p) for p in report.warnings] == [
        "story 2 (url): the link http://www.example.com/plain is not https",
        "html: the link http://www.example.org/x is not https",
        "subject: 125 characters; many inboxes cut it after about 78",
        "section Economy: has no stories in this edition",
        "section Climate: has no stories in this edition",
    ]


def test_trimmed_subject_is_a_warning(renderer: Renderer) -> None:
    headline = "Council approves the new budget after an all-night session that ran until the caretaker left"
    report = check(renderer, [story(1, headline=headline)])[2]
    assert report.ok
    assert "subject: the lead headline was shortened to fit the subject line" in [
        str(w) for w in report.warnings
    ]
