"""The edition in a real browser: no sideways scrolling on a phone, columns that stack when narrow,
dark mode and images off readable, and screenshots of the whole email down to the footer.

Colours are checked from computed styles (WCAG AA, 4.5:1 for every piece of text), not from pixels.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from briefing.domain import Recipient
from briefing.edition.compose import compose_briefing
from briefing.edition.mail_clients import contrast
from briefing.edition.render import Renderer
from briefing.edition.screenshots import (
    PHONE,
    Screenshot,
    ScreenshotsUnavailable,
    View,
    capture,
    take_screenshots,
)
from briefing.reader_copy import personalise
from tests.fixtures.browser import _FAKETIME_VARS, CHROMIUM
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.demo_edition import demo_briefing
from tests.fixtures.edition import ARTICLES, EDITION_DATE, OPTIONS, SEND_AT, STORIES

pytestmark = pytest.mark.browser

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"
READER = Recipient(
    1, "reader@example.com", "Alice", "https://www.example.com/u/1", "https://www.example.com/p/1"
)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid PNG, so the lead image has real dimensions without touching the network."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


IMAGE = png(1200, 675, (138, 155, 176))
THUMBNAIL = png(256, 144, (120, 140, 110))
IMAGE_HOSTS = ("https://images.example.com/", "https://news.example.com/media/")


def serve_images(request_route: Any) -> None:
    """Images from memory (the lead-sized one for the lead), nothing from the network."""
    url = request_route.request.url
    if url.startswith(IMAGE_HOSTS):
        body = IMAGE if ("budget" in url or "assembly" in url) else THUMBNAIL
        request_route.fulfill(status=200, content_type="image/png", body=body)
    else:
        request_route.abort()


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.fixture(scope="module")
def demo_html() -> str:
    """The demo's 15-story edition, one reader's copy, with thumbnails."""
    html, _ = personalise(Renderer(TEMPLATES).render_edition(demo_briefing(story_thumbnails=True)), READER)
    return html


@pytest.fixture(scope="module")
def email_html() -> str:
    briefing = compose_briefing(STORIES, ARTICLES, EDITION_DATE, SEND_AT, OPTIONS)
    html, _ = personalise(Renderer(TEMPLATES).render_edition(briefing), READER)
    return html


def open_page(
    browser: Any, html: str, width: int, *, color_scheme: str = "light", images: bool = True
) -> Any:
    page = browser.new_page(
        viewport={"width": width, "height": 900}, color_scheme=color_scheme, java_script_enabled=False
    )
    page.route("**/*", serve_images if images else lambda request_route: request_route.abort())
    page.set_content(html, wait_until="load")
    return page


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.eval_on_selector(
        selector,
        "el => { const r = el.getBoundingClientRect();"
        " return {top: r.top, bottom: r.bottom, left: r.left}; }",
    )
    assert found, selector
    return dict(found)


def test_phone_has_no_sideways_scroll_and_columns_stack(
    browser: Any, email_html: str, tmp_path: Path
) -> None:
    page = open_page(browser, email_html, 375)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        first, second = box(page, ".standing-tip"), box(page, ".standing-support")
        assert second["top"] > first["bottom"]
        lead = page.eval_on_selector("img", "img => img.getBoundingClientRect().width")
        assert 300 <= lead <= 375
        page.screenshot(path=str(tmp_path / "briefing-375.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("width", [600, 800])
def test_desktop_keeps_columns_side_by_side(
    browser: Any, email_html: str, tmp_path: Path, width: int
) -> None:
    page = open_page(browser, email_html, width)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= width
        first, second = box(page, ".standing-tip"), box(page, ".standing-support")
        assert second["top"] == pytest.approx(first["top"], abs=1)
        assert second["left"] > first["left"]
        column = page.eval_on_selector(".masthead", "el => el.getBoundingClientRect().width")
        assert column == pytest.approx(600, abs=1)
        page.screenshot(path=str(tmp_path / f"briefing-{width}.png"), full_page=True)
    finally:
        page.close()


def test_confirmation_fits_a_phone(browser: Any, tmp_path: Path) -> None:
    email = Renderer(TEMPLATES).render_confirmation(OPTIONS, "https://www.example.com/confirm/" + "a" * 120)
    page = open_page(browser, email.html, 375)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 375
        page.screenshot(path=str(tmp_path / "confirm-375.png"), full_page=True)
    finally:
        page.close()


# --- every reader: dark mode, images off, any width ------------------------------------------------

# Every element with text of its own, with its colour and the first opaque background behind it;
# with images off, each image's alt text too (drawn in the image's own colours).
TEXT_COLOURS = """() => {
  const rgb = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number); return (p.length < 4 || p[3] > 0) ? p.slice(0, 3) : null; };
  const behind = el => { for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor); if (c) return c; } return [255, 255, 255]; };
  const shown = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const own = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
    if (own && shown(el))
      out.push({text: own.slice(0, 50), color: rgb(getComputedStyle(el).color), bg: behind(el)});
  }
  for (const img of document.images) {
    if (img.alt && !img.naturalWidth && shown(img))
      out.push({text: 'alt: ' + img.alt, color: rgb(getComputedStyle(img).color), bg: behind(img)});
  }
  return out;
}"""


def hex_colour(rgb: list[float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def low_contrast(page: Any) -> list[str]:
    found = page.evaluate(TEXT_COLOURS)
    assert len(found) > 50, "the edition's text was not found"
    return [
        f"{item['text']!r}: {ratio:.2f}"
        for item in found
        if (ratio := contrast(hex_colour(item["color"]), hex_colour(item["bg"]))) < 4.5
    ]


MODES = [
    View("light", 375),
    View("dark", 375, color_scheme="dark"),
    View("images-off", 375, images=False),
    View("dark-images-off", 600, color_scheme="dark", images=False),
]


@pytest.mark.parametrize("view", MODES, ids=lambda v: v.name)
def test_text_passes_aa_contrast(browser: Any, demo_html: str, view: View) -> None:
    page = open_page(browser, demo_html, view.width, color_scheme=view.color_scheme, images=view.images)
    try:
        assert low_contrast(page) == []
    finally:
        page.close()


def test_dark_mode_looks_different(browser: Any, demo_html: str, tmp_path: Path) -> None:
    light = capture(browser, demo_html, View("light", 375), tmp_path / "light.png", route=serve_images)
    dark = capture(browser, demo_html, View("dark", 375, "dark"), tmp_path / "dark.png", route=serve_images)
    assert light.path.read_bytes() != dark.path.read_bytes()
    page = open_page(browser, demo_html, 375, color_scheme="dark")
    try:
        surface = page.eval_on_selector(".surface", "el => getComputedStyle(el).backgroundColor")
        text = page.eval_on_selector(".story div", "el => getComputedStyle(el).color")
    finally:
        page.close()
    assert (surface, text) == ("rgb(28, 30, 34)", "rgb(230, 228, 223)")


def test_images_off_keeps_a_styled_box_for_the_alt_text(browser: Any, demo_html: str, tmp_path: Path) -> None:
    capture(browser, demo_html, View("images-off", 375, images=False), tmp_path / "off.png")
    page = open_page(browser, demo_html, 375, images=False)
    try:
        lead = page.eval_on_selector(
            "img.lead-image",
            "img => { const s = getComputedStyle(img); const r = img.getBoundingClientRect();"
            " return {loaded: img.naturalWidth, width: r.width, height: r.height,"
            " font: s.fontFamily, size: s.fontSize, colour: s.color, bg: s.backgroundColor}; }",
        )
        thumbs = page.eval_on_selector_all(
            "img.thumb", "imgs => imgs.map(i => i.getBoundingClientRect().height)"
        )
    finally:
        page.close()
    assert lead["loaded"] == 0
    assert lead["width"] == pytest.approx(375, abs=1) and lead["height"] == pytest.approx(
        375 * 338 / 600, abs=2
    )
    assert "Georgia" in lead["font"] and lead["size"] == "15px"
    assert (lead["colour"], lead["bg"]) == ("rgb(61, 67, 76)", "rgb(228, 225, 218)")
    assert thumbs and all(h == pytest.approx(72, abs=1) for h in thumbs)


@pytest.mark.parametrize("thumbnails", [False, True], ids=["lead-image", "thumbnails"])
def test_no_sideways_scroll_at_320_px(browser: Any, thumbnails: bool) -> None:
    html, _ = personalise(
        Renderer(TEMPLATES).render_edition(demo_briefing(story_thumbnails=thumbnails)), READER
    )
    page = open_page(browser, html, 320)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 320
    finally:
        page.close()


def test_long_unbroken_words_do_not_push_a_phone_sideways(browser: Any) -> None:
    long_link = "https://www.example.com/reports/" + "an-address-without-any-break-opportunity-" * 3
    stories = [
        replace(s, headline="Supercalifragilisticexpialidocious" * 2, blurb=f"See {long_link}.")
        if s.id == 3
        else s
        for s in STORIES
    ]
    edition = Renderer(TEMPLATES).render_edition(
        compose_briefing(stories, ARTICLES, EDITION_DATE, SEND_AT, OPTIONS)
    )
    html, _ = personalise(edition, READER)
    page = open_page(browser, html, 320)
    try:
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 320
    finally:
        page.close()


# --- screenshots of the whole email ----------------------------------------------------------------


def footer_bottom(browser: Any, html: str, width: int) -> float:
    page = open_page(browser, html, width)
    try:
        bottom = page.eval_on_selector(
            "div.footer", "el => el.getBoundingClientRect().bottom + window.scrollY"
        )
        assert "Unsubscribe" in page.inner_text("div.footer")
        return float(bottom)
    finally:
        page.close()


@pytest.mark.parametrize("width", [375, 600])
def test_screenshot_is_the_whole_email_down_to_the_footer(
    browser: Any, demo_html: str, tmp_path: Path, width: int
) -> None:
    shot = capture(
        browser, demo_html, View(f"w{width}", width), tmp_path / f"w{width}.png", route=serve_images
    )
    assert png_size(shot.path) == (width, shot.height)
    assert shot.height >= footer_bottom(browser, demo_html, width) > 2400  # the old fixed window


def test_preview_screenshots_from_the_command_line(browser: Any, tmp_path: Path) -> None:
    env = cli_env(
        tmp_path, secret_key="cli-secret", smtp_url="memory://", public_base_url="https://news.example.com"
    )
    blurb = "What happened, why it matters and what comes next, in two short lines. " * 2
    for number in range(1, 13):
        story = ["--url", f"https://news.example.com/story-{number}", "--headline", f"Story {number}"]
        ok(env, "stories", "add", *story, "--blurb", blurb, "--status", "ready")
    out = tmp_path / "preview"
    browser_env: dict[str, Any] = {**env, **dict.fromkeys(_FAKETIME_VARS)}  # None unsets a variable
    code, output = run(browser_env, "preview", "--out", str(out), "--screenshot")
    assert code == 0, output
    desktop, phone = out / "briefing-desktop.png", out / "briefing-phone.png"
    printed = output.replace("\n", "")
    assert str(desktop) in printed and str(phone) in printed
    html = (out / "briefing.html").read_text(encoding="utf-8")
    for path, width in ((desktop, 600), (phone, 375)):
        png_width, png_height = png_size(path)
        assert png_width == width and png_height >= footer_bottom(browser, html, width)
    assert png_size(phone)[1] > 2400  # the old fixed window ended there


def test_take_screenshots_writes_one_png_per_view(browser: Any, demo_html: str, tmp_path: Path) -> None:
    html_file = tmp_path / "briefing.html"
    html_file.write_text(demo_html, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in _FAKETIME_VARS}
    views = [PHONE, View("phone-dark", 375, "dark")]
    shots = take_screenshots(html_file, tmp_path, views, chromium=CHROMIUM, env=env, route=serve_images)
    assert [s.path.name for s in shots] == ["briefing-phone.png", "briefing-phone-dark.png"]
    assert all(isinstance(s, Screenshot) and png_size(s.path) == (375, s.height) for s in shots)


def test_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    html_file = tmp_path / "briefing.html"
    html_file.write_text("<p>x</p>", encoding="utf-8")
    missing = tmp_path / "no-such-chromium"
    with pytest.raises(ScreenshotsUnavailable) as info:
        take_screenshots(html_file, tmp_path, chromium=missing)
    assert str(missing) in str(info.value)
    assert not list(tmp_path.glob("*.png"))
