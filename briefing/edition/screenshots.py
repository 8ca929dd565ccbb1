"""PNGs of the whole email in headless Chromium, as readers see it: phone or desktop width, light or
dark, images shown or blocked.

Mail clients run no scripts, so the page runs none either. The page height is measured once the
images have loaded and the viewport grows to it, so the picture always reaches the footer however
long the edition is (a fixed window cut the phone image off before the tip-off and donate blocks).
The one Chromium the layout tests use, through Playwright; `capture` takes a browser so tests and
`briefing preview --screenshot` share the same code.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from briefing.errors import BriefingError

__all__ = [
    "CHROMIUM_ARGS",
    "DESKTOP",
    "PHONE",
    "PREVIEW_VIEWS",
    "Screenshot",
    "ScreenshotsUnavailable",
    "View",
    "capture",
    "find_chromium",
    "take_screenshots",
]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_LOAD_TIMEOUT_MS = 60_000
_HEIGHT_JS = (
    "Math.ceil(Math.max(document.documentElement.scrollHeight,"
    " document.documentElement.getBoundingClientRect().height))"
)
_INSTALL_HINT = "install it (Debian/Ubuntu: sudo apt-get install chromium) to get screenshots"


class ScreenshotsUnavailable(BriefingError):
    """No Chromium or no Playwright here, or the browser failed; the preview itself is still written."""


@dataclass(frozen=True, slots=True)
class View:
    """One way a reader sees the email; `name` goes into the file name (briefing-<name>.png)."""

    name: str
    width: int
    color_scheme: str = "light"  # "light" or "dark", what prefers-color-scheme reports
    images: bool = True  # False: every image request fails, as when a reader blocks remote images


@dataclass(frozen=True, slots=True)
class Screenshot:
    path: Path
    width: int
    height: int  # the whole page, in CSS pixels (one device pixel each)


DESKTOP = View("desktop", 600)
PHONE = View("phone", 375)
PREVIEW_VIEWS = (DESKTOP, PHONE)

Router = Callable[[Any], None]


def capture(browser: Any, html: str, view: View, target: Path, *, route: Router | None = None) -> Screenshot:
    """Render `html` as `view` in a fresh page of a Playwright `browser`; save the whole page as PNG.

    Without `route` the page fetches http(s) images, as a mail client would, and nothing else; a
    `route` handler answers instead (tests serve images from memory). Blocked images stay blocked.
    """
    context = browser.new_context(
        viewport={"width": view.width, "height": 800},
        color_scheme=view.color_scheme,
        java_script_enabled=False,
        device_scale_factor=1,
    )
    try:
        page = context.new_page()

        def handle(request_route: Any) -> None:
            request = request_route.request
            if request.resource_type == "image" and not view.images:
                request_route.abort("blockedbyclient")
            elif route is not None:
                route(request_route)
            elif request.resource_type == "image" and request.url.startswith(("https://", "http://")):
                request_route.continue_()
            else:
                request_route.abort()

        page.route("**/*", handle)
        page.set_content(html, wait_until="load", timeout=_LOAD_TIMEOUT_MS)
        page.set_viewport_size({"width": view.width, "height": max(_page_height(page), 1)})
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)
        height = _page_height(page)
    finally:
        context.close()
    return Screenshot(target, view.width, height)


def _page_height(page: Any) -> int:
    """Whole pixels that hold the whole page: scrollHeight rounds a fractional bottom down."""
    return int(page.evaluate(_HEIGHT_JS))


def find_chromium() -> Path:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ScreenshotsUnavailable(f"no Chromium found: {_INSTALL_HINT}")


def take_screenshots(
    html_file: Path,
    out: Path,
    views: Sequence[View] = PREVIEW_VIEWS,
    *,
    chromium: Path | None = None,
    env: Mapping[str, str] | None = None,
    route: Router | None = None,
) -> list[Screenshot]:
    """One PNG per view of the email in `html_file`, written to `out` as briefing-<view>.png.

    `env` is the browser's environment (default: this process's); `route` as for `capture`.
    Playwright's sync API refuses to start inside a running asyncio loop (a web app, or a caller
    already driving a browser), so the browser lives in a thread of its own.
    """
    binary = chromium or find_chromium()
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise ScreenshotsUnavailable(
            "Playwright is not installed: pip install 'briefing[screenshots]' to get screenshots"
        ) from None
    html = html_file.read_text(encoding="utf-8")

    def shoot() -> list[Screenshot]:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(binary),
                headless=True,
                args=list(CHROMIUM_ARGS),
                env=dict(env if env is not None else os.environ),
            )
            try:
                return [
                    capture(browser, html, view, out / f"briefing-{view.name}.png", route=route)
                    for view in views
                ]
            finally:
                browser.close()

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="screenshots") as pool:
            return pool.submit(shoot).result()
    except Error as exc:
        text = (exc.message or str(exc)).strip()
        reason = text.splitlines()[0] if text else "no reason given"
        raise ScreenshotsUnavailable(f"Chromium at {binary} failed: {reason}") from None
