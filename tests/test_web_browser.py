"""The web app in a real browser: uvicorn on 127.0.0.1, headless Chromium, a real SMTP server.

An editor signs in, queues and reorders stories, previews at phone width and sends a test copy; a
reader subscribes, confirms from the emailed link, then unsubscribes from a received edition.
Screenshots go to the test's tmp_path.
"""

from __future__ import annotations

import email
import re
from collections.abc import Callable, Iterator
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from briefing.config import Settings
from briefing.mail.pool import ConnectionPool, open_transport
from briefing.web.app import create_app
from tests.fixtures.clock import ManualClock
from tests.fixtures.smtp import SmtpTestServer
from tests.fixtures.waiting import wait_until
from tests.fixtures.web import (
    EDITION_DAY,
    EDITOR_EMAIL,
    PASSWORD,
    LiveServer,
    add_editor,
    free_port,
    queue_stories,
    send_edition,
    start_live_server,
    store_article,
    subscriber,
    web_settings_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}


def text_part(data: bytes) -> str:
    message: Message = email.message_from_bytes(data, policy=default_policy)
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return str(part.get_content())
    raise AssertionError("no text/plain part")


def wait_for_messages(server: SmtpTestServer, count: int, seconds: float = 10.0) -> None:
    """The confirmation email goes out just after the page (a background task): give it a moment."""
    wait_until(lambda: len(server.messages) >= count, timeout=seconds)
    assert len(server.messages) == count, f"{len(server.messages)} messages, expected {count}"


@pytest.fixture
def site(
    sqlite_url: str, sqlite_engine: sa.Engine, smtp_server: SmtpTestServer, web_clock: ManualClock
) -> Iterator[tuple[LiveServer, Settings, ConnectionPool]]:
    """The app on a real port, on the test's clock (FIXED_NOW: the queue opens on EDITION_DAY)."""
    port = free_port()
    settings = web_settings_for(sqlite_url, public_base_url=f"http://127.0.0.1:{port}")
    pool = open_transport(smtp_server.url(), pool_size=1, timeout=10)
    assert isinstance(pool, ConnectionPool)
    app = create_app(settings, engine=sqlite_engine, transport=pool, clock=web_clock)
    live = start_live_server(app, port)
    try:
        yield live, settings, pool
    finally:
        live.stop()
        pool.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP) -> Any:
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def test_editor_queues_reorders_previews_and_sends_a_test(
    site: tuple[LiveServer, Settings, ConnectionPool],
    new_page: Callable[..., Any],
    sqlite_engine: sa.Engine,
    smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    live, _, _ = site
    add_editor(sqlite_engine)
    store_article(
        sqlite_engine, "https://www.example.com/economy/port-jobs", "Port expansion promises 400 jobs"
    )
    page = new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    page.goto(f"{live.url}/editor/queue")
    assert "/login" in page.url
    page.fill("#email", EDITOR_EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r"/editor/queue"))
    assert page.locator("h1").inner_text() == "Monday 30 November 2026"
    page.screenshot(path=str(tmp_path / "queue-empty.png"), full_page=True)

    # A story from a link and a headline, then one from a stored article.
    page.fill("#url-new", "https://www.example.com/politics/budget")
    page.fill("#headline-new", "Council approves the budget after an all-night session")
    page.fill("#blurb-new", "Councillors voted 31 to 24 shortly before dawn.")
    page.fill("#section-new", "Politics")
    page.select_option("#status-new", "ready")
    page.check("#lead-new")
    page.click("button:has-text('Add to the queue')")
    page.wait_for_selector(".flash-ok")
    assert "Queued" in page.locator(".flash-ok").inner_text()

    option = page.locator("#article-new option", has_text="Port expansion")
    page.select_option("#article-new", option.get_attribute("value"))
    page.fill("#section-new", "Politics")
    page.select_option("#status-new", "ready")
    page.click("button:has-text('Add to the queue')")
    page.wait_for_selector(".flash-ok")

    headlines = page.locator(".story h3").all_inner_texts()
    assert headlines == [
        "Council approves the budget after an all-night session",
        "Port expansion promises 400 jobs",
    ]
    page.locator(".story").nth(1).locator("button[title='Move up']").click()
    page.wait_for_load_state()
    assert page.locator(".story h3").all_inner_texts()[0] == "Port expansion promises 400 jobs"
    page.screenshot(path=str(tmp_path / "queue-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(tmp_path / "queue-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)

    page.click("a:has-text('Preview this edition')")
    page.wait_for_url(re.compile(r"/editor/preview"))
    frames = page.locator("iframe")
    assert frames.count() == 2
    for i in range(2):
        assert frames.nth(i).get_attribute("sandbox") == ""
    phone_frame = page.frame_locator("iframe[width='375']")
    assert "Port expansion promises 400 jobs" in phone_frame.locator("body").inner_text()
    page.screenshot(path=str(tmp_path / "preview-desktop.png"), full_page=False)

    email_page = new_page(PHONE)
    email_page.goto(f"{live.url}/editor/preview/frame?date={EDITION_DAY.isoformat()}")
    assert "/login" in email_page.url  # a new browser context has no session
    assert frames.nth(1).evaluate("e => e.clientWidth") == 375  # the email's viewport, inside the bezel
    assert frames.nth(0).evaluate("e => e.clientWidth") == 600
    frames.nth(1).screenshot(path=str(tmp_path / "preview-phone-frame.png"))

    page.click("button:has-text('Send a test to me')")
    page.wait_for_selector(".flash")
    assert f"A test copy is on its way to {EDITOR_EMAIL}" in page.locator(".flash").first.inner_text()
    (received,) = smtp_server.messages
    assert received.rcpt_tos == (EDITOR_EMAIL,)
    assert "Port expansion promises 400 jobs" in text_part(received.data)
    assert errors == [], errors  # no CSP violations or script errors in the console


def test_reader_subscribes_confirms_and_unsubscribes(
    site: tuple[LiveServer, Settings, ConnectionPool],
    new_page: Callable[..., Any],
    sqlite_engine: sa.Engine,
    smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    live, settings, pool = site
    page = new_page(PHONE)
    page.goto(f"{live.url}/subscribe")
    page.screenshot(path=str(tmp_path / "subscribe-phone.png"), full_page=True)
    page.fill("#email", "reader@example.com")
    page.fill("#name", "Ada")
    page.click("button:has-text('Subscribe')")
    page.wait_for_selector("h1:has-text('Check your inbox')")
    assert subscriber(sqlite_engine, "reader@example.com").status == "pending"

    wait_for_messages(smtp_server, 1)
    (confirmation,) = smtp_server.messages
    link = re.search(r"http://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9_.\-]+", text_part(confirmation.data))
    assert link, text_part(confirmation.data)
    page.goto(link.group(0))
    assert subscriber(sqlite_engine, "reader@example.com").status == "pending"  # opening is not confirming
    page.screenshot(path=str(tmp_path / "confirm-phone.png"), full_page=True)
    page.click("button:has-text('Yes, subscribe me')")
    page.wait_for_selector("h1:has-text('You are subscribed')")
    assert subscriber(sqlite_engine, "reader@example.com").status == "active"

    queue_stories(sqlite_engine)
    outcome = send_edition(sqlite_engine, settings, pool)
    assert outcome.edition.status == "sent"
    edition = next(
        m for m in smtp_server.messages if m.rcpt_tos == ("reader@example.com",) and m is not confirmation
    )
    unsubscribe = re.search(r"http://127\.0\.0\.1:\d+/unsubscribe/[A-Za-z0-9_.\-]+", text_part(edition.data))
    assert unsubscribe
    page.goto(unsubscribe.group(0))
    assert subscriber(sqlite_engine, "reader@example.com").status == "active"
    page.screenshot(path=str(tmp_path / "unsubscribe-phone.png"), full_page=True)
    page.click("button:has-text('Unsubscribe')")
    page.wait_for_selector("h1:has-text('You are unsubscribed')")
    assert subscriber(sqlite_engine, "reader@example.com").status == "unsubscribed"
    page.screenshot(path=str(tmp_path / "unsubscribed-phone.png"), full_page=True)

    archive = new_page(DESKTOP)
    archive.goto(f"{live.url}/archive")
    archive.click(f"a[href='/archive/{EDITION_DAY.isoformat()}']")
    archive.wait_for_url(re.compile(r"/archive/2026-11-30"))
    assert "Council story number 0" in archive.locator("body").inner_text()
    archive.screenshot(path=str(tmp_path / "archive-edition.png"), full_page=False)
