"""Section variants: a reader who leaves sections out gets the edition without exactly those stories,
and the send renders each distinct set of left-out sections once."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import html5lib
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from briefing.domain import Briefing, Recipient, RenderedEdition
from briefing.edition.compose import compose_briefing
from briefing.edition.render import Renderer
from briefing.edition.sections import (
    FULL_EDITION,
    VariantRenders,
    parse_variant,
    section_key,
    variant_key,
    without_sections,
)
from briefing.errors import InvalidInput
from briefing.reader_copy import personalise
from tests.fixtures.edition import ARTICLES, EDITION_DATE, OPTIONS, SEND_AT, story
from tests.fixtures.naughty import HOSTILE_TEXT

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"
SECTIONS = ("Politics", "Economy", "Climate", "Sport", "Culture", "World")
SEPARATOR = "=" * 72
READER = Recipient(
    subscriber_id=7,
    email="reader@example.com",
    name="Alice Example",
    unsubscribe_url="https://www.example.com/u/7",
    preferences_url="https://www.example.com/p/7",
)
# Two stories in each of six sections, the lead in Politics, one without a section ("More news").
STORIES = (
    *(
        story(
            n,
            headline=f"{SECTIONS[(n - 1) % 6]} story number {n}",
            url=f"https://www.example.com/{SECTIONS[(n - 1) % 6].lower()}/story-{n}",
            blurb=f"What happened in {SECTIONS[(n - 1) % 6]}, part {n}.",
            section=SECTIONS[(n - 1) % 6],
            lead=n == 1,
        )
        for n in range(1, 13)
    ),
    story(13, headline="A story with no section", url="https://www.example.com/misc/13", section=""),
)
SECTION_OPTIONS = replace(OPTIONS, section_order=SECTIONS)

# Any code point, lone surrogates included, and the hostile values the fuzz suite uses.
names = st.text(
    st.characters(codec=None, exclude_categories=()) | st.characters(categories=["Cs"]), max_size=12
) | st.sampled_from(HOSTILE_TEXT)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


@pytest.fixture(scope="module")
def briefing() -> Briefing:
    return compose_briefing(STORIES, ARTICLES, EDITION_DATE, SEND_AT, SECTION_OPTIONS)


@pytest.fixture(scope="module")
def full(renderer: Renderer, briefing: Briefing) -> RenderedEdition:
    return renderer.render_edition(briefing)


def html_blocks(html: str) -> list[tuple[str, str]]:
    """The email's top-level blocks (masthead, lead, each section, ...) as (class, markup)."""
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    wrapper = doc.find("body")[0]
    return [
        (child.get("class") or "", ET.tostring(child, encoding="unicode"))
        for child in wrapper
        if isinstance(child.tag, str)  # comments (MSO conditionals) are not blocks
    ]


def block_heading(markup: str) -> str:
    h2 = ET.fromstring(markup).find(".//h2")
    return " ".join("".join(h2.itertext()).split()) if h2 is not None else ""


def text_blocks(text: str) -> list[str]:
    return text.split(SEPARATOR)


def headline_links(html: str) -> set[str]:
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    return {a.get("href") for h3 in doc.iter("h3") for a in h3.iter("a")} | {
        a.get("href") for h2 in doc.iter("h2") for a in h2.iter("a")
    }


def copy_for(renderer: Renderer, briefing: Briefing, excluded: frozenset[str]) -> tuple[str, str]:
    return personalise(renderer.render_edition(without_sections(briefing, excluded)), READER)


def test_excluded_sections_leave_exactly_their_html_blocks(
    renderer: Renderer, briefing: Briefing, full: RenderedEdition
) -> None:
    full_html, _ = personalise(full, READER)
    html, _ = copy_for(renderer, briefing, frozenset({"Sport", "Climate"}))
    expected = [
        block
        for block in html_blocks(full_html)
        if not ("news-section" in block[0] and block_heading(block[1]) in {"Sport", "Climate"})
    ]
    assert html_blocks(html) == expected
    assert len(expected) == len(html_blocks(full_html)) - 2


def test_excluded_sections_leave_exactly_their_text_blocks(
    renderer: Renderer, briefing: Briefing, full: RenderedEdition
) -> None:
    _, full_text = personalise(full, READER)
    _, text = copy_for(renderer, briefing, frozenset({"Sport", "Climate"}))
    expected = [
        block for block in text_blocks(full_text) if block.strip().split("\n")[0] not in {"SPORT", "CLIMATE"}
    ]
    assert text_blocks(text) == expected
    assert len(expected) == len(text_blocks(full_text)) - 2


def test_excluded_sections_remove_their_stories_and_no_other(
    renderer: Renderer, briefing: Briefing, full: RenderedEdition
) -> None:
    excluded = frozenset({"Economy", "World", "Culture"})
    html, text = copy_for(renderer, briefing, excluded)
    full_html, _ = personalise(full, READER)
    gone = {s.url for s in STORIES if s.section in excluded}
    assert headline_links(html) == headline_links(full_html) - gone
    for s in STORIES:
        assert (s.headline in text) is (s.section not in excluded), s.headline
        assert (s.url in html) is (s.section not in excluded), s.url
    for article in briefing.more_from:  # "More from" stays, even an article of a left-out section
        assert article.url in html and article.url in text


def test_sections_compare_case_insensitively_after_strip(renderer: Renderer, briefing: Briefing) -> None:
    assert without_sections(briefing, frozenset({"  sPORT ", "economy"})) == without_sections(
        briefing, frozenset({"Sport", "Economy"})
    )
    kept = {s.name for s in without_sections(briefing, {"  sPORT "}).sections}
    assert "Sport" not in kept and "Economy" in kept


def test_excluded_lead_section_drops_the_lead_and_promotes_no_story(
    renderer: Renderer, briefing: Briefing
) -> None:
    variant = without_sections(briefing, frozenset({"Politics"}))
    assert briefing.lead is not None and variant.lead is None
    assert all(s.section != "Politics" for s in variant.stories)
    assert [s.id for s in variant.stories] == [s.id for s in briefing.stories if s.section != "Politics"]
    html, text = personalise(renderer.render_edition(variant), READER)
    assert "TOP STORY" not in text and briefing.lead.url not in html


def test_subject_preheader_and_more_from_are_the_editions(
    renderer: Renderer, briefing: Briefing, full: RenderedEdition
) -> None:
    variant = without_sections(briefing, frozenset({"Politics", "Sport"}))
    rendered = renderer.render_edition(variant)
    assert (rendered.subject, rendered.preheader) == (full.subject, full.preheader)
    assert variant.more_from == briefing.more_from and variant.blocks == briefing.blocks


def test_a_sectionless_story_goes_with_the_default_section(briefing: Briefing) -> None:
    variant = without_sections(briefing, frozenset({"more news"}))
    assert 13 in {s.id for s in briefing.stories} and 13 not in {s.id for s in variant.stories}
    lone = compose_briefing([story(1, section="", lead=True)], (), EDITION_DATE, SEND_AT, SECTION_OPTIONS)
    assert without_sections(lone, {"More news"}).lead is None
    assert without_sections(lone, {"Miscellany"}, default_section="Miscellany").lead is None
    assert without_sections(lone, {"Politics"}).lead == lone.lead


def test_no_exclusion_and_unknown_sections_leave_the_edition_whole(briefing: Briefing) -> None:
    assert without_sections(briefing, frozenset()) == briefing
    assert without_sections(briefing, {"", "  ", "Gardening"}).stories == briefing.stories


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(names, max_size=8))
@example(["Sport", "sport", " SPORT\t"])
@example(['a","b', "a", "b"])
@example(["\ud800", "\x00", "\u2028"])
def test_variant_key_is_canonical_and_round_trips(excluded: list[str]) -> None:
    key = variant_key(excluded)
    folded = frozenset(section_key(n) for n in excluded) - {""}
    assert parse_variant(key) == folded
    assert variant_key(parse_variant(key)) == key
    shuffled = [f"  {n}\n" for n in reversed(excluded)] + excluded
    random.Random(len(excluded)).shuffle(shuffled)
    assert variant_key(shuffled) == key
    assert key.isascii()
    key.encode("utf-8")  # storable as text in any database, surrogates or not
    assert (key == FULL_EDITION) is (not folded)
    if folded:
        assert json.loads(key) == sorted(folded)


def test_variant_key_of_no_sections_is_empty() -> None:
    assert variant_key([]) == variant_key(["", " \t"]) == FULL_EDITION == ""
    assert parse_variant("") == frozenset()


@pytest.mark.parametrize("bad", ["Sport", "{}", '{"a": 1}', "[1]", '["a", null]', "[", '"Sport"'])
def test_damaged_variant_key_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_variant(bad)
    assert caught.value.field == "variant"


def test_a_single_string_is_not_a_set_of_sections(briefing: Briefing) -> None:
    for call in (lambda: variant_key("Sport"), lambda: without_sections(briefing, "Sport")):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert caught.value.field == "excluded_sections"


def test_each_distinct_key_is_rendered_once_however_many_readers_share_it(
    renderer: Renderer, briefing: Briefing
) -> None:
    rendered: list[str] = []

    def render(variant: Briefing) -> RenderedEdition:
        rendered.append(variant_key(s.name for s in briefing.sections if s not in variant.sections))
        return renderer.render_edition(variant)

    variants = VariantRenders(renderer, briefing, render=render)
    rng = random.Random(20261128)
    readers = [[name for name in SECTIONS[:3] if rng.random() < 0.4] for _ in range(400)]
    keys = [variant_key(r) for r in readers]
    copies = [variants.get(key) for key in keys]
    assert sorted(rendered) == sorted(set(keys))
    assert variants.renders == len(set(keys)) == len(variants)
    for key, copy in zip(keys, copies, strict=True):
        assert copy is variants.get(key)
        assert copy == renderer.render_edition(without_sections(briefing, parse_variant(key)))


def test_two_spellings_of_one_set_share_one_render(renderer: Renderer, briefing: Briefing) -> None:
    variants = VariantRenders(renderer, briefing)
    first = variants.get(variant_key(["Sport", "World"]))
    assert variants.get('["world","sport"]') is first
    assert variants.get('["SPORT", " World "]') is first
    assert variants.renders == 1


def test_known_copies_are_never_rendered_again(
    renderer: Renderer, briefing: Briefing, full: RenderedEdition
) -> None:
    frozen_sport = replace(full, html=full.html + "<!-- frozen -->")
    calls: list[Any] = []

    def render(variant: Briefing) -> RenderedEdition:
        calls.append(variant)
        return renderer.render_edition(variant)

    variants = VariantRenders(renderer, briefing, render=render, known={"": full, '["Sport"]': frozen_sport})
    assert variants.get(FULL_EDITION) is full
    assert variants.get(variant_key(["sport"])) is frozen_sport
    assert calls == [] and variants.renders == 0
    variants.get(variant_key(["Climate"]))
    assert len(calls) == 1 and set(variants.copies()) == {"", '["sport"]', '["climate"]'}
