"""The edition in a real browser: no sideways scrolling on a phone, columns that stack when narrow."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from briefing.domain import Recipient
from briefing.edition.compose import compose_briefing
from briefing.edition.render import Renderer
from briefing.reader_copy import personalise
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


@pytest.fixture(scope="module")
def email_html() -> str:
    briefing = compose_briefing(STORIES, ARTICLES, EDITION_DATE, SEND_AT, OPTIONS)
    html, _ = personalise(Renderer(TEMPLATES).render_edition(briefing), READER)
    return html


def open_page(browser: Any, html: str, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})

    def route(request_route: Any) -> None:
        if request_route.request.url.startswith("https://images.example.com/"):
            request_route.fulfill(status=200, content_type="image/png", body=IMAGE)
        else:
            request_route.abort()

    page.route("**/*", route)
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
