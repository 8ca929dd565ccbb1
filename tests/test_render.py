"""render: the HTML and text readers get, and what story text can and cannot do to them."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import html5lib
import pytest

from briefing.domain import PERSONAL_TOKENS, Briefing, Recipient, RenderedEdition
from briefing.edition.compose import compose_briefing
from briefing.edition.render import Renderer, blurb_html, blurb_text, render_edition
from briefing.errors import InvalidInput, RenderError
from briefing.reader_copy import personalise
from tests.fixtures.edition import ARTICLES, EDITION_DATE, SEND_AT, STORIES, story
from tests.fixtures.edition import OPTIONS as BASE_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates" / "email"
GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / "briefing.txt"
WJ = "\u2060"
SUBSCRIBE_URL = "https://www.example.com/subscribe"
OPTIONS = replace(BASE_OPTIONS, subscribe_url=SUBSCRIBE_URL)

READER = Recipient(
    subscriber_id=7,
    email="reader@example.com",
    name="Alice Example",
    unsubscribe_url="https://www.example.com/u/7?sig=a&b=1",
    preferences_url="https://www.example.com/p/7",
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


def parse(html: str) -> Any:
    return html5lib.parse(html, namespaceHTMLElements=False)


def text_of(element: Any) -> str:
    return " ".join("".join(element.itertext()).split())


def headline_links(doc: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for tag in ("h2", "h3"):
        for heading in doc.iter(tag):
            for a in heading.iter("a"):
                found.setdefault(a.get("href"), []).append(text_of(a))
    return found


def one_story(renderer: Renderer, **fields: Any) -> tuple[str, str, Any]:
    """Render an edition whose only story carries `fields`, personalised for READER."""
    base = story(1, section="Politics", blurb="", **{k: v for k, v in fields.items() if k != "blurb"})
    item = replace(base, blurb=fields.get("blurb", ""))
    edition = renderer.render_edition(compose_briefing([item], (), EDITION_DATE, SEND_AT, OPTIONS))
    html, text = personalise(edition, READER)
    return html, text, parse(html)


def test_every_story_headline_linked_once(rendered: RenderedEdition) -> None:
    html, _ = personalise(rendered, READER)
    links = headline_links(parse(html))
    assert links == {s.url: [" ".join(s.headline.split())] for s in STORIES}


def test_unsubscribe_and_preferences_after_personalise(rendered: RenderedEdition) -> None:
    html, text = personalise(rendered, READER)
    doc = parse(html)
    anchors = {text_of(a): a.get("href") for a in doc.iter("a")}
    assert anchors["Unsubscribe"] == READER.unsubscribe_url
    assert anchors["Manage your preferences"] == READER.preferences_url
    assert "https://www.example.com/u/7?sig=a&amp;b=1" in html
    assert f"Unsubscribe: {READER.unsubscribe_url}\n" in text
    assert "Hi Alice, here is what you need to know this morning." in text_of(doc.find("body"))


def test_images_have_alt(rendered: RenderedEdition) -> None:
    images = list(parse(rendered.html).iter("img"))
    assert images, "the fixture edition has a lead image"
    assert all((img.get("alt") or "").strip() for img in images)
    assert images[0].get("alt") == "Councillors raise their hands during the budget vote"


def test_no_leftover_syntax_or_tokens(rendered: RenderedEdition) -> None:
    assert all(t in rendered.html for t in PERSONAL_TOKENS)
    html, text = personalise(rendered, READER)
    for output in (html, text):
        for needle in ("<mj-", "{{", "{%", "{#", "%%"):
            assert needle not in output


def test_responsive_rules_survive_inlining(rendered: RenderedEdition) -> None:
    assert "@media only screen and (min-width:480px)" in rendered.html
    assert ".mj-column-per-50 { width:50% !important" in rendered.html
    assert "@media only screen and (max-width: 479px)" in rendered.html
    assert "fonts.googleapis" not in rendered.html and "@import" not in rendered.html


def test_css_is_inlined(rendered: RenderedEdition) -> None:
    doc = parse(rendered.html)
    heading = next(doc.iter("h3"))
    assert "Georgia" in heading.get("style", "")


def test_preheader_is_hidden_but_not_white(rendered: RenderedEdition, briefing: Briefing) -> None:
    doc = parse(rendered.html)
    pre = next(d for d in doc.iter("div") if "preheader" in (d.get("class") or ""))
    assert text_of(pre).startswith(briefing.preheader)
    style = pre.get("style", "").replace(" ", "")
    assert "display:none" in style and "#ffffff" not in style.lower()


def test_golden_plain_text(rendered: RenderedEdition) -> None:
    _, text = personalise(rendered, READER)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_text_lines_fit_72_columns_without_breaking_urls(rendered: RenderedEdition) -> None:
    _, text = personalise(rendered, replace(READER, unsubscribe_url="https://www.example.com/u/" + "x" * 90))
    for line in text.splitlines():
        assert len(line) <= 72 or "https://" in line, line
    assert "https://www.example.com/u/" + "x" * 90 in text
    for item in STORIES:
        assert f"Read more: {item.url}" in text


# --- story text is data ---------------------------------------------------------------------------

HOSTILE_HEADLINES = [
    "{{ config }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "</mj-text><mj-raw><b>raw</b></mj-raw><mj-text>",
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "%%UNSUBSCRIBE_URL%% and %%FIRST_NAME%%",
    "{# comment #} 100% {lead}",
]


@pytest.mark.parametrize("headline", HOSTILE_HEADLINES)
def test_hostile_headline_renders_as_its_own_text(renderer: Renderer, headline: str) -> None:
    _, text, doc = one_story(renderer, headline=headline)
    assert headline_links(doc) == {"https://www.example.com/news/story-1": [" ".join(headline.split())]}
    assert not list(doc.iter("script")) and not list(doc.iter("b"))
    assert [img.get("alt") for img in doc.iter("img")] == []
    assert "onerror" not in {k for el in doc.iter() for k in el.attrib}
    assert READER.unsubscribe_url not in text.split("Unsubscribe:")[0]
    expected_text = headline.replace("{{", "{" + WJ + "{").replace("{%", "{" + WJ + "%")
    expected_text = expected_text.replace("%%", "%" + WJ + "%").replace("%}", "%" + WJ + "}")
    expected_text = expected_text.replace("{#", "{" + WJ + "#").replace("#}", "#" + WJ + "}")
    assert f"TOP STORY\n\n{expected_text}\n" in text


def test_token_in_headline_is_not_filled(renderer: Renderer) -> None:
    html, text, _ = one_story(renderer, headline="%%UNSUBSCRIBE_URL%%")
    assert "&#37;&#37;UNSUBSCRIBE_URL&#37;&#37;" in html
    assert html.count(READER.unsubscribe_url.replace("&", "&amp;")) == 1
    assert text.count(READER.unsubscribe_url) == 1


@pytest.mark.parametrize(
    ("blurb", "expected_html", "expected_text"),
    [
        (
            "<script>alert(1)</script>",
            '<p class="last">&lt;script&gt;alert(1)&lt;/script&gt;</p>',
            "<script>alert(1)</script>",
        ),
        (
            '<img src=x onerror="alert(1)">',
            '<p class="last">&lt;img src=x onerror="alert(1)"&gt;</p>',
            '<img src=x onerror="alert(1)">',
        ),
        (
            "[click](javascript:alert(1))",
            '<p class="last">[click](javascript:alert(1))</p>',
            "[click](javascript:alert(1))",
        ),
        (
            "[ok](https://www.example.org/a) *and* **b**",
            '<p class="last"><a href="https://www.example.org/a" rel="noopener noreferrer">ok</a>'
            " <em>and</em> <strong>b</strong></p>",
            "ok (https://www.example.org/a) and b",
        ),
        ("[ftp](ftp://example.org/f)", '<p class="last"><a rel="noopener noreferrer">ftp</a></p>', "ftp"),
        ("# Big\n\n> quote", 'Big\n\n<p class="last">quote</p>', "Big\n\nquote"),
        ("one\n\ntwo", '<p>one</p>\n<p class="last">two</p>', "one\n\ntwo"),
        ("- a\n- b", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>", "- a\n- b"),
        (
            "{{ config }} 100%",
            '<p class="last">\ue07b\ue07b config \ue07d\ue07d 100\ue025</p>',
            "{{ config }} 100%",
        ),
    ],
)
def test_blurb_allowlist(blurb: str, expected_html: str, expected_text: str) -> None:
    assert str(blurb_html(blurb)) == expected_html
    assert blurb_text(blurb) == expected_text


def test_hostile_blurb_in_the_email(renderer: Renderer) -> None:
    blurb = (
        "<script>x</script> [a](javascript:alert(1)) <img src=x onerror=alert(1)> {{ config }} %%FIRST_NAME%%"
    )
    _, text, doc = one_story(renderer, blurb=blurb)
    para = [d for d in doc.iter("div") if d.get("class") == "blurb"][-1]  # the first is the editor's
    assert text_of(para) == blurb
    assert not list(doc.iter("script")) and not list(para.iter("img")) and not list(para.iter("a"))
    assert "javascript:" not in {a.get("href", "") for a in doc.iter("a")}
    expected = blurb.replace("{{", "{" + WJ + "{").replace("%%", "%" + WJ + "%")
    assert "Hi Alice" in text and expected in " ".join(text.split())


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "/relative", ""])
def test_non_http_story_url_is_not_linked(renderer: Renderer, url: str) -> None:
    html, text, doc = one_story(renderer, url=url, headline="Unlinked")
    assert headline_links(doc) == {}
    assert "Unlinked" in [text_of(h) for h in doc.iter("h3")]
    assert "javascript:" not in html and "Read more:" not in text


def test_image_with_bad_scheme_is_dropped(renderer: Renderer) -> None:
    _, _, doc = one_story(renderer, image_url="javascript:alert(1)", image_alt="x")
    assert list(doc.iter("img")) == []


# --- personalise ----------------------------------------------------------------------------------


def test_personalise_escapes_name(rendered: RenderedEdition) -> None:
    html, text = personalise(rendered, replace(READER, name='<b>Al&"Bo"</b> Smith'))
    assert "Hi &lt;b&gt;Al&amp;&quot;Bo&quot;&lt;/b&gt;, here is" in html
    assert 'Hi <b>Al&"Bo"</b>, here is' in text
    doc = parse(html)
    assert not list(doc.iter("b"))


def test_personalise_name_fallback_and_no_second_pass(rendered: RenderedEdition) -> None:
    _, text = personalise(rendered, replace(READER, name="  "))
    assert "Hi there, here is" in text
    _, text = personalise(rendered, replace(READER, name="%%UNSUBSCRIBE_URL%%"))
    assert "Hi %%UNSUBSCRIBE_URL%%, here is" in text


def test_personalise_requires_unsubscribe(rendered: RenderedEdition) -> None:
    with pytest.raises(InvalidInput) as info:
        personalise(rendered, replace(READER, unsubscribe_url=""))
    assert info.value.field == "unsubscribe_url"
    html, _ = personalise(rendered, replace(READER, preferences_url=""))
    assert "%%" not in html


# --- template errors ------------------------------------------------------------------------------


def broken_templates(tmp_path: Path, name: str, content: str) -> Path:
    target = tmp_path / "email"
    shutil.copytree(TEMPLATES, target)
    (target / name).write_text(content, encoding="utf-8")
    return target


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("briefing.mjml.j2", "<mjml><mj-body>{% if %}</mj-body></mjml>", "line 1"),
        ("briefing.mjml.j2", "<mjml><mj-body>{{ b.nope }}</mj-body></mjml>", "nope"),
        ("briefing.mjml.j2", "<mjml><mj-body><mj-section>", "MJML"),
        ("briefing.mjml.j2", "<mjml><mj-body><mj-txt>x</mj-txt></mj-body></mjml>", "<mj-"),
        ("_partials.mjml.j2", "{% macro story( %}", "line 1"),
        ("briefing.txt.j2", "{{ b.subject", "line 1"),
    ],
)
def test_broken_template_names_the_file(
    tmp_path: Path, briefing: Briefing, name: str, content: str, message: str
) -> None:
    with pytest.raises(RenderError) as info:
        render_edition(briefing, broken_templates(tmp_path, name, content))
    assert info.value.template == name
    assert message in str(info.value)
    assert name in str(info.value)


def test_mj_include_cannot_leave_the_templates_dir(tmp_path: Path, briefing: Briefing) -> None:
    (tmp_path / "secret.css").write_text("body{}", encoding="utf-8")
    src = '<mjml><mj-head><mj-include path="../secret.css" type="css" /></mj-head><mj-body></mj-body></mjml>'
    with pytest.raises(RenderError) as info:
        render_edition(briefing, broken_templates(tmp_path, "briefing.mjml.j2", src))
    assert info.value.template == "briefing.mjml.j2"


# --- confirmation ---------------------------------------------------------------------------------


def test_confirmation_email(renderer: Renderer) -> None:
    url = "https://www.example.com/confirm/abc?x=1&y=2"
    email = renderer.render_confirmation(OPTIONS, url, first_name="<i>Bo</i>")
    doc = parse(email.html)
    assert any(a.get("href") == url and text_of(a) == "Yes, subscribe me" for a in doc.iter("a"))
    assert "If you did not ask for this, ignore this email" in text_of(doc.find("body"))
    assert "Hi &lt;i&gt;Bo&lt;/i&gt;," in email.html
    assert f"Confirm your subscription:\n{url}\n" in email.text
    assert "did not ask for this" in email.text
    assert email.subject == "Please confirm your subscription to The Morning Briefing"
    for needle in ("<mj-", "{{", "%%"):
        assert needle not in email.html and needle not in email.text


def test_confirmation_rejects_bad_url(renderer: Renderer) -> None:
    with pytest.raises(InvalidInput):
        renderer.render_confirmation(OPTIONS, "javascript:alert(1)")
