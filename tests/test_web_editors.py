"""Editors' pages: login, sessions, CSRF, roles, the queue, preview, test send, editions, subscribers.

The route checks enumerate the app's router: a route added later is covered without editing this
file, and a route is public only if it is listed in PUBLIC below.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import html5lib
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from briefing.config import Settings
from briefing.db import session_scope
from briefing.domain import DeliveryStatus, EditionStatus, SubscriberStatus
from briefing.mail.pool import open_transport
from briefing.service import editors as editor_service
from briefing.service import stories as story_service
from briefing.store import stories as story_store
from briefing.store import subscribers as subscriber_store
from briefing.web.auth import SESSION_COOKIE
from briefing.web.context import PREVIEW_TTL
from tests.fixtures.clock import ManualClock
from tests.fixtures.sending import add_run, beat, finish, settle, start_sending
from tests.fixtures.smtp import FaultPlan, SmtpTestServer
from tests.fixtures.web import (
    ADMIN_EMAIL,
    BASE_URL,
    EDITION_DAY,
    EDITOR_EMAIL,
    FIXED_NOW,
    PASSWORD,
    add_editor,
    add_subscriber,
    csrf_token,
    login,
    queue_stories,
    send_edition,
    store_article,
    subscriber,
)

pytestmark = pytest.mark.timeout(120)

# Routes anyone may call. Everything else must refuse a request without a session.
PUBLIC = {
    "/",
    "/healthz",
    "/subscribe",
    "/subscribe/{slug}",
    "/confirm/{token}",
    "/confirm/{token}/resend",
    "/unsubscribe/{token}",
    "/unsubscribe/{token}/resubscribe",
    "/unsubscribe/{token}/all",
    "/preferences/{token}",
    "/archive",
    "/archive/feed.xml",
    "/archive/{day}",
    "/archive/{slug}/",
    "/archive/{slug}/feed.xml",
    "/archive/{slug}/{day}",
    "/archive/{slug}/{day}/{kind}",
    "/login",
    "/static",
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
XSS_HEADLINE = '<script>alert("headline")</script>'
XSS_BLURB = '<img src=x onerror=alert("blurb")> and <a href="javascript:alert(1)">click</a>'
XSS_NAME = '<img src=x onerror=alert("name")>'


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        for method in sorted(route.methods or {"GET"}):
            yield path, method


# Neither readers' nor editors': monitors scrape it with its own bearer token (tests/test_metrics.py).
MONITORING = {"/metrics"}


def editor_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = [
        (p, m)
        for p, m in routes(app)
        if p not in PUBLIC and p not in MONITORING and not p.startswith("/api/")
    ]
    assert ("/editor/queue", "GET") in found and ("/editor/stories", "POST") in found  # sanity
    return found


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "1"), path)


@pytest.fixture
def ids(sqlite_engine: sa.Engine) -> dict[str, str]:
    story_id = queue_stories(sqlite_engine, count=1)[0]
    sub = add_subscriber(sqlite_engine, "listed@example.com")
    return {"story_id": str(story_id), "day": EDITION_DAY.isoformat(), "subscriber_id": str(sub.id)}


def snapshot(engine: sa.Engine) -> tuple[object, ...]:
    with session_scope(engine) as session:
        stories = story_store.list_stories(session, newsletter_id=1, statuses=())
        counts = subscriber_store.count_by_status(session)
    return tuple((s.id, s.headline, s.status, s.position) for s in stories), tuple(sorted(counts.items()))


def no_active_content(document: str) -> None:
    """No script element, no on* handler, no javascript: link anywhere in the page."""
    tree = html5lib.parse(document, namespaceHTMLElements=False)
    assert tree.findall(".//script") == []
    for element in tree.iter():
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), (element.tag, name)
            assert not value.strip().lower().startswith("javascript:"), (element.tag, value)


# --------------------------------------------------------------------------- guards


def test_every_editor_route_refuses_without_a_session(
    client: TestClient, web_app: FastAPI, sqlite_engine: sa.Engine, ids: dict[str, str]
) -> None:
    before = snapshot(sqlite_engine)
    checked = 0
    for path, method in editor_routes(web_app):
        response = client.request(method, fill(path, ids), data={"headline": "changed"})
        if method in ("GET", "HEAD"):
            assert response.status_code == 303, (method, path)
            assert response.headers["location"].startswith("/login?next="), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
        checked += 1
    assert checked >= 15
    assert snapshot(sqlite_engine) == before


def test_api_routes_refuse_without_credentials(client: TestClient, web_app: FastAPI) -> None:
    checked = 0
    for path, method in routes(web_app):
        if path.startswith("/api/") and not path.startswith("/api/webhooks/"):  # providers sign instead
            response = client.request(method, path, json=[])
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 1, "the app serves the push API"


def test_every_state_changing_editor_route_needs_the_csrf_token(
    editor_client: TestClient, web_app: FastAPI, sqlite_engine: sa.Engine, ids: dict[str, str]
) -> None:
    before = snapshot(sqlite_engine)
    checked = 0
    for path, method in editor_routes(web_app):
        if method not in UNSAFE:
            continue
        url = fill(path, ids)
        for extra in ({}, {"csrf_token": "forged"}, {"csrf_token": ""}):
            response = editor_client.request(
                method, url, data={"headline": "changed", "direction": "up", "status": "dropped", **extra}
            )
            assert response.status_code == 403, (method, path, response.status_code)
        checked += 1
    assert checked >= 8
    assert snapshot(sqlite_engine) == before
    # Still signed in: the logout above was refused too.
    assert editor_client.get("/editor/queue").status_code == 200


def test_non_admins_cannot_reach_admin_pages(
    editor_client: TestClient, web_app: FastAPI, sqlite_engine: sa.Engine, ids: dict[str, str]
) -> None:
    token = csrf_token(editor_client)
    admin_paths = [(p, m) for p, m in routes(web_app) if p.startswith("/editor/subscribers")]
    assert len(admin_paths) >= 3
    for path, method in admin_paths:
        response = editor_client.request(method, fill(path, ids), data={"csrf_token": token})
        assert response.status_code == 403, (method, path)
    assert "/editor/subscribers" not in editor_client.get("/editor/queue").text
    assert subscriber(sqlite_engine, "listed@example.com").status == "active"


# --------------------------------------------------------------------------- sessions


def test_login_sets_a_safe_cookie_and_logout_revokes_it(client: TestClient, sqlite_engine: sa.Engine) -> None:
    add_editor(sqlite_engine)
    response = login(client)
    assert response.status_code == 303 and response.headers["location"] == "/editor/queue"
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" in flags
    stolen = client.cookies.get(SESSION_COOKIE)
    assert client.get("/editor/queue").status_code == 200

    out = client.post("/editor/logout", data={"csrf_token": csrf_token(client)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/editor/queue").status_code == 303
    with TestClient(client.app, base_url=BASE_URL, follow_redirects=False) as thief:
        thief.cookies.set(SESSION_COOKIE, stolen or "")
        assert thief.get("/editor/queue").status_code == 303


def test_wrong_password_and_rate_limit(
    client: TestClient, sqlite_engine: sa.Engine, web_clock: ManualClock
) -> None:
    add_editor(sqlite_engine)
    for _ in range(5):
        response = login(client, password="not the password at all")
        assert response.status_code == 401 and "Wrong email or password" in response.text
        assert SESSION_COOKIE not in client.cookies
    limited = login(client)  # even the right password waits once the limit is hit
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert login(client, "someone.else@example.com", "whatever password").status_code == 401
    web_clock.advance(timedelta(seconds=59))
    assert login(client).status_code == 429, "the minute is not over yet"
    web_clock.advance(timedelta(seconds=2))
    assert login(client).status_code == 303, "a minute after the first attempt, the right password works"


def test_a_session_ends_after_its_max_age(
    editor_client: TestClient, web_clock: ManualClock, web_settings: Settings
) -> None:
    assert web_settings.session_max_age == timedelta(hours=12)
    web_clock.advance(timedelta(hours=12))
    assert editor_client.get("/editor/queue").status_code == 200, "twelve hours exactly: still signed in"
    web_clock.advance(timedelta(seconds=1))
    expired = editor_client.get("/editor/queue")
    assert expired.status_code == 303 and expired.headers["location"].startswith("/login?next=")
    assert login(editor_client).status_code == 303
    assert editor_client.get("/editor/queue").status_code == 200


def test_unknown_address_and_disabled_account(client: TestClient, sqlite_engine: sa.Engine) -> None:
    add_editor(sqlite_engine)
    assert login(client, "nobody@example.com").status_code == 401
    with session_scope(sqlite_engine) as session:
        editor_service.set_active(session, EDITOR_EMAIL, False)
    assert login(client).status_code == 401


def test_disabling_or_changing_the_password_ends_sessions(
    editor_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    assert editor_client.get("/editor/queue").status_code == 200
    with session_scope(sqlite_engine) as session:
        editor_service.set_password(session, EDITOR_EMAIL, "a brand new long password")
    assert editor_client.get("/editor/queue").status_code == 303
    assert login(editor_client, password="a brand new long password").status_code == 303
    with session_scope(sqlite_engine) as session:
        editor_service.set_active(session, EDITOR_EMAIL, False)
    assert editor_client.get("/editor/queue").status_code == 303


def test_login_form_needs_its_own_token_and_never_redirects_off_site(
    client: TestClient, sqlite_engine: sa.Engine
) -> None:
    add_editor(sqlite_engine)
    forged = client.post("/login", data={"email": EDITOR_EMAIL, "password": PASSWORD, "login_token": "x"})
    assert forged.status_code == 403
    for target in (
        "//evil.example.org/",
        "https://evil.example.org/",
        "/editor\\@evil.example.org",
        "/logout",
    ):
        page = client.get("/login", params={"next": target})
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token
        response = client.post(
            "/login",
            data={"email": EDITOR_EMAIL, "password": PASSWORD, "login_token": token.group(1), "next": target},
        )
        assert response.status_code == 303 and response.headers["location"] == "/editor", target
        client.cookies.delete(SESSION_COOKIE)


def test_next_parameter_brings_the_editor_back(client: TestClient, sqlite_engine: sa.Engine) -> None:
    add_editor(sqlite_engine)
    first = client.get("/editor/editions")
    assert first.status_code == 303
    page = client.get(first.headers["location"])
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    next_value = re.search(r'name="next" value="([^"]+)"', page.text)
    assert token and next_value and next_value.group(1) == "/editor/editions"
    response = client.post(
        "/login",
        data={
            "email": EDITOR_EMAIL,
            "password": PASSWORD,
            "login_token": token.group(1),
            "next": "/editor/editions",
        },
    )
    assert response.headers["location"] == "/editor/editions"


# --------------------------------------------------------------------------- the queue


def test_queue_add_edit_reorder_ready_drop(editor_client: TestClient, sqlite_engine: sa.Engine) -> None:
    page = editor_client.get("/editor/queue")
    assert page.status_code == 200 and "Monday 30 November 2026" in page.text
    token = csrf_token(editor_client)
    day = EDITION_DAY.isoformat()
    for i in range(3):
        response = editor_client.post(
            "/editor/stories",
            data={
                "csrf_token": token,
                "day": day,
                "url": f"https://www.example.com/news/{i}",
                "headline": f"Headline {i}",
                "section": "Politics",
                "edition_date": day,
            },
        )
        assert response.status_code == 303, response.text
    with session_scope(sqlite_engine) as session:
        stories = story_store.list_stories(session, newsletter_id=1, edition_date=EDITION_DAY)
    assert [s.headline for s in stories] == ["Headline 0", "Headline 1", "Headline 2"]
    assert all(s.created_by == EDITOR_EMAIL and s.status == "draft" for s in stories)
    last = stories[-1]

    moved = editor_client.post(
        f"/editor/stories/{last.id}/move", data={"csrf_token": token, "direction": "up", "day": day}
    )
    assert moved.status_code == 303 and moved.headers["location"].endswith(f"#story-{last.id}")
    editor_client.post(
        f"/editor/stories/{last.id}/move", data={"csrf_token": token, "direction": "up", "day": day}
    )
    editor_client.post(
        f"/editor/stories/{last.id}/move", data={"csrf_token": token, "direction": "up", "day": day}
    )
    with session_scope(sqlite_engine) as session:
        order = [
            s.headline for s in story_store.list_stories(session, newsletter_id=1, edition_date=EDITION_DAY)
        ]
    assert order == ["Headline 2", "Headline 0", "Headline 1"]
    editor_client.post(
        f"/editor/stories/{last.id}/move", data={"csrf_token": token, "direction": "down", "day": day}
    )

    saved = editor_client.post(
        f"/editor/stories/{last.id}",
        data={
            "csrf_token": token,
            "day": day,
            "headline": "Headline two, rewritten",
            "url": "https://www.example.com/news/2",
            "blurb": "Now with a **blurb**.",
            "section": "Politics",
            "status": "ready",
            "edition_date": day,
            "embargo_until": "2026-11-29T21:00",
            "expires_at": "2026-12-01T09:30",
            "lead": "1",
        },
    )
    assert saved.status_code == 303
    after = editor_client.get(saved.headers["location"])
    assert "Saved “Headline two, rewritten”." in after.text  # the one-time message
    assert "Saved" not in editor_client.get("/editor/queue").text
    with session_scope(sqlite_engine) as session:
        story = story_store.get_story(session, last.id)
    assert (story.headline, story.status, story.lead, story.blurb) == (
        "Headline two, rewritten",
        "ready",
        True,
        "Now with a **blurb**.",
    )
    assert story.embargo_until == datetime(2026, 11, 29, 21, 0, tzinfo=UTC)  # London is UTC in November
    assert story.expires_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

    first = stories[0]
    editor_client.post(
        f"/editor/stories/{first.id}/status", data={"csrf_token": token, "status": "ready", "day": day}
    )
    editor_client.post(
        f"/editor/stories/{stories[1].id}/status", data={"csrf_token": token, "status": "dropped", "day": day}
    )
    with session_scope(sqlite_engine) as session:
        left = {
            s.headline: s.status
            for s in story_store.list_stories(session, newsletter_id=1, edition_date=EDITION_DAY)
        }
    assert left == {"Headline 0": "ready", "Headline two, rewritten": "ready"}
    page = editor_client.get(f"/editor/queue?date={day}")
    assert "“Headline 1” was dropped." in page.text  # the message, shown once
    assert f'id="story-{stories[1].id}"' not in page.text and page.text.count('class="story"') == 2


def test_queue_from_a_stored_article(editor_client: TestClient, sqlite_engine: sa.Engine) -> None:
    article_id = store_article(
        sqlite_engine, "https://www.example.com/economy/port", "Port expansion promises jobs"
    )
    page = editor_client.get("/editor/queue")
    assert "Port expansion promises jobs" in page.text
    response = editor_client.post(
        "/editor/stories",
        data={
            "csrf_token": csrf_token(editor_client),
            "day": EDITION_DAY.isoformat(),
            "article_id": str(article_id),
        },
    )
    assert response.status_code == 303
    with session_scope(sqlite_engine) as session:
        (story,) = story_store.list_stories(session, newsletter_id=1, edition_date=EDITION_DAY)
    assert (story.headline, story.url, story.section, story.article_id) == (
        "Port expansion promises jobs",
        "https://www.example.com/economy/port",
        "Economy",
        article_id,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "javascript:alert(1)", "headline": "x"}, "url: must start with http"),
        ({"url": "https://www.example.com/a", "headline": ""}, "headline"),
        (
            {"url": "https://www.example.com/a", "headline": "x", "edition_date": "30/11/2026"},
            "is not a date",
        ),
        (
            {
                "url": "https://www.example.com/a",
                "headline": "x",
                "embargo_until": "2026-12-02T10:00",
                "expires_at": "2026-12-01T10:00",
            },
            "embargo must end before",
        ),
        ({"url": "https://www.example.com/a", "headline": "x\r\ny"}, "one line"),
        ({"article_id": "99999"}, "no article"),
        ({"article_id": "abc"}, "article"),
        ({"url": "https://www.example.com/a", "headline": "x", "status": "used"}, "must be draft or ready"),
    ],
)
def test_bad_story_input_is_a_400_naming_the_field(
    editor_client: TestClient, sqlite_engine: sa.Engine, fields: dict[str, str], message: str
) -> None:
    response = editor_client.post(
        "/editor/stories",
        data={"csrf_token": csrf_token(editor_client), "day": EDITION_DAY.isoformat(), **fields},
    )
    assert response.status_code == 400
    assert message in response.text
    with session_scope(sqlite_engine) as session:
        assert story_store.list_stories(session, newsletter_id=1, statuses=()) == []


def test_editing_a_missing_story_is_a_clean_error(editor_client: TestClient) -> None:
    token = csrf_token(editor_client)
    assert (
        editor_client.post(
            "/editor/stories/424242",
            data={"csrf_token": token, "headline": "x", "url": "https://www.example.com/"},
        ).status_code
        == 404  # like the move and status forms below: the story is not there
    )
    assert (
        editor_client.post(
            "/editor/stories/424242/move", data={"csrf_token": token, "direction": "up"}
        ).status_code
        == 404
    )
    assert (
        editor_client.post(
            "/editor/stories/424242/status", data={"csrf_token": token, "status": "ready"}
        ).status_code
        == 404
    )
    assert (
        editor_client.post(
            "/editor/stories/abc/status", data={"csrf_token": token, "status": "ready"}
        ).status_code
        == 404  # a path segment that cannot be an id names no page
    )
    assert editor_client.get("/editor/queue?date=yesterday").status_code == 400


# --------------------------------------------------------------------------- XSS


def test_story_and_subscriber_text_is_escaped_everywhere(
    admin_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    queue_stories(
        sqlite_engine, count=2, headline=XSS_HEADLINE, blurb=XSS_BLURB, section='<b onmouseover="x">Sec</b>'
    )
    add_subscriber(sqlite_engine, "xss.name@example.com", XSS_NAME)
    day = EDITION_DAY.isoformat()
    pages = {
        "queue": admin_client.get(f"/editor/queue?date={day}"),
        "preview": admin_client.get(f"/editor/preview?date={day}"),
        "frame": admin_client.get(f"/editor/preview/frame?date={day}"),
        "subscribers": admin_client.get("/editor/subscribers?q=xss"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        no_active_content(response.text)
    assert "&lt;script&gt;alert(&#34;headline&#34;)&lt;/script&gt;" in pages["queue"].text
    assert "&lt;img src=x onerror=" in pages["subscribers"].text
    assert '<iframe sandbox src="/editor/preview/frame' in pages["preview"].text
    assert "allow-scripts" not in pages["preview"].text
    frame_csp = pages["frame"].headers["content-security-policy"]
    assert (
        frame_csp.startswith("sandbox;")
        and "script-src" not in frame_csp
        and "default-src 'none'" in frame_csp
    )


def test_csp_and_headers_on_editor_pages(editor_client: TestClient) -> None:
    response = editor_client.get("/editor/queue")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    no_active_content(response.text)


# --------------------------------------------------------------------------- preview and test send


def test_preview_page(editor_client: TestClient, sqlite_engine: sa.Engine) -> None:
    queue_stories(sqlite_engine)
    page = editor_client.get(f"/editor/preview?date={EDITION_DAY.isoformat()}")
    assert page.status_code == 200
    assert 'width="600"' in page.text and 'width="375"' in page.text
    assert "Preflight passed" in page.text
    assert "Council story number 0" in page.text  # the plain-text part
    frame = editor_client.get(f"/editor/preview/frame?date={EDITION_DAY.isoformat()}")
    assert frame.status_code == 200 and "Council story number 0" in frame.text
    assert "%%" not in frame.text


def test_preview_frames_reuse_the_preview_for_two_minutes(
    editor_client: TestClient, sqlite_engine: sa.Engine, web_clock: ManualClock
) -> None:
    (story_id, *_) = queue_stories(sqlite_engine)
    day = EDITION_DAY.isoformat()
    assert "Council story number 0" in editor_client.get(f"/editor/preview?date={day}").text
    with session_scope(sqlite_engine) as session:
        story_service.edit_story(session, story_id, {"headline": "A rewritten lead"}, now=web_clock.now())
    web_clock.advance(timedelta(seconds=PREVIEW_TTL - 1))
    cached = editor_client.get(f"/editor/preview/frame?date={day}").text
    assert "Council story number 0" in cached and "A rewritten lead" not in cached
    web_clock.advance(timedelta(seconds=1))
    fresh = editor_client.get(f"/editor/preview/frame?date={day}").text
    assert "A rewritten lead" in fresh and "Council story number 0" not in fresh


def test_preview_of_an_empty_queue_shows_preflight_errors(editor_client: TestClient) -> None:
    page = editor_client.get(f"/editor/preview?date={EDITION_DAY.isoformat()}")
    assert page.status_code == 200
    assert "Preflight failed: this edition would not be sent." in page.text
    assert "there are no stories; queue at least one ready story for this date" in page.text
    assert "Preflight passed" not in page.text and "Traceback" not in page.text


def test_send_a_test_copy_over_smtp(
    make_app: Callable[..., FastAPI], sqlite_engine: sa.Engine, smtp_server: SmtpTestServer
) -> None:
    queue_stories(sqlite_engine)
    add_editor(sqlite_engine)
    pool = open_transport(smtp_server.url(), pool_size=1, timeout=10)
    try:
        with TestClient(make_app(transport=pool), base_url=BASE_URL, follow_redirects=False) as c:
            login(c)
            response = c.post(
                "/editor/preview/test", data={"csrf_token": csrf_token(c), "day": EDITION_DAY.isoformat()}
            )
            assert response.status_code == 303
            page = c.get(response.headers["location"])
            assert f"A test copy is on its way to {EDITOR_EMAIL}" in page.text
    finally:
        pool.close()
    (received,) = smtp_server.messages
    assert received.rcpt_tos == (EDITOR_EMAIL,)
    assert b"Subject: [Test] " in received.data


def test_send_test_failure_is_reported(
    make_app: Callable[..., FastAPI],
    sqlite_engine: sa.Engine,
    smtp_server_factory: Callable[..., SmtpTestServer],
) -> None:
    queue_stories(sqlite_engine)
    add_editor(sqlite_engine)
    server = smtp_server_factory(FaultPlan(data_reply="554 5.7.1 Message refused"))
    pool = open_transport(server.url(), pool_size=1, timeout=10)
    try:
        with TestClient(make_app(transport=pool), base_url=BASE_URL, follow_redirects=False) as c:
            login(c)
            response = c.post(
                "/editor/preview/test", data={"csrf_token": csrf_token(c), "day": EDITION_DAY.isoformat()}
            )
            page = c.get(response.headers["location"])
    finally:
        pool.close()
    assert "The test copy was not sent" in page.text and "554" in page.text


# --------------------------------------------------------------------------- editions


def test_editions_failed_addresses_and_retry(
    make_app: Callable[..., FastAPI],
    web_settings: Settings,
    sqlite_engine: sa.Engine,
    smtp_server_factory: Callable[..., SmtpTestServer],
) -> None:
    queue_stories(sqlite_engine)
    for i in range(3):
        add_subscriber(sqlite_engine, f"reader{i}@example.com", f"Reader {i}")
    add_editor(sqlite_engine)
    server = smtp_server_factory(FaultPlan(data_reply="554 5.7.1 Rejected by policy"))
    pool = open_transport(server.url(), pool_size=1, timeout=10)
    try:
        first = send_edition(sqlite_engine, web_settings, pool)
        assert first.report is not None and first.report.counts.failed == 3
        app = make_app(transport=pool)
        with TestClient(app, base_url=BASE_URL, follow_redirects=False) as c:
            login(c)
            listing = c.get("/editor/editions")
            assert listing.status_code == 200 and EDITION_DAY.isoformat() in listing.text
            detail = c.get(f"/editor/editions/{EDITION_DAY.isoformat()}")
            # Not an administrator: which copies failed, not to whom.
            assert "r•••@example.com" in detail.text and "Rejected by policy" in detail.text
            assert "reader0@example.com" not in detail.text
            assert "Retry failed (3)" in detail.text

            server.plan.data_reply = None
            token = csrf_token(c, f"/editor/editions/{EDITION_DAY.isoformat()}")
            retry = c.post(f"/editor/editions/{EDITION_DAY.isoformat()}/retry", data={"csrf_token": token})
            assert retry.status_code == 303
            assert "Retrying 3 copies" in c.get(retry.headers["location"]).text
            [worker] = app.state.ctx.retries.values()  # the app's own background thread
            worker.join(30)
            assert not worker.is_alive(), "the retry did not finish within 30 s"
            page = c.get(f"/editor/editions/{EDITION_DAY.isoformat()}")
            assert "A retry is running" not in page.text and "badge-sent" in page.text
            assert "No failed, deferred or unclear copies." in page.text
            again = c.post(f"/editor/editions/{EDITION_DAY.isoformat()}/retry", data={"csrf_token": token})
            assert "There is nothing to retry." in c.get(again.headers["location"]).text
    finally:
        pool.close()
    assert sorted(r for m in server.messages for r in m.rcpt_tos) == [
        "reader0@example.com",
        "reader1@example.com",
        "reader2@example.com",
    ]


def test_missing_edition_is_404(editor_client: TestClient) -> None:
    assert editor_client.get("/editor/editions/2031-01-01").status_code == 404
    assert editor_client.get("/editor/editions/not-a-day").status_code == 400


def _stored(engine: sa.Engine) -> tuple[object, ...]:
    with engine.connect() as conn:
        return tuple(
            tuple(tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")))
            for table in ("edition", "delivery", "sender")
        )


def test_a_sending_edition_shows_every_sender_and_reloads_itself_without_counting_the_ledger(
    editor_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    for i in range(10):
        add_subscriber(sqlite_engine, f"reader{i}@example.com")
    edition_id = start_sending(sqlite_engine, EDITION_DAY, now=FIXED_NOW)
    second = timedelta(seconds=1)
    add_run(
        sqlite_engine, edition_id, "a:1:aa", host="mail-a.example.net", pid=101, at=FIXED_NOW - 60 * second
    )
    beat(sqlite_engine, "a:1:aa", at=FIXED_NOW - 2 * second, sent=4, rate=2.0)
    add_run(
        sqlite_engine, edition_id, "b:2:bb", host="mail-b.example.net", pid=202, role="send", at=FIXED_NOW
    )
    beat(sqlite_engine, "b:2:bb", at=FIXED_NOW, sent=2, failed=1, rate=1.0)
    before = _stored(sqlite_engine)
    statements: list[str] = []

    def capture(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(" ".join(statement.lower().split()))

    sa.event.listen(sqlite_engine, "before_cursor_execute", capture)
    try:  # the page that reloads itself every 5 s
        page = editor_client.get(f"/editor/editions/{EDITION_DAY.isoformat()}")
    finally:
        sa.event.remove(sqlite_engine, "before_cursor_execute", capture)
    listing = editor_client.get("/editor/editions")

    assert page.status_code == 200 and page.headers["refresh"] == "5"
    shown = dict(re.findall(r'data-progress="(\w+)">([^<]*)<', page.text))
    assert shown == {
        "sent": "Sent 6 of 10",
        "rate": "3 copies a second",
        "eta": "ETA 1 s",  # 3 copies left at 3 a second
        "senders": "2 live senders",
    }
    tree = html5lib.parse(page.text, namespaceHTMLElements=False)
    rows = [
        [td.text for td in tr.findall("td")] for tr in tree.findall(".//section[@id='progress']//tbody/tr")
    ]
    assert rows == [
        ["mail-a.example.net", "101", "worker", "2", "4", "2", "2 s ago"],
        ["mail-b.example.net", "202", "send", "2", "2", "1", "0 s ago"],
    ]
    assert "Bounce and complaint rates appear here once the edition is sent." in page.text
    assert listing.status_code == 200 and "refresh" not in listing.headers
    assert "3/s · ETA 1 s · 2 senders" in listing.text
    assert [s for s in statements if "from sender" in s]
    assert not [s for s in statements if "from delivery" in s and "count(" in s], statements
    assert _stored(sqlite_engine) == before, "a GET changes nothing"

    settle(sqlite_engine, edition_id, DeliveryStatus.SENT, 10)
    finish(sqlite_engine, edition_id, EditionStatus.SENT, now=FIXED_NOW)
    page = editor_client.get(f"/editor/editions/{EDITION_DAY.isoformat()}")
    assert page.status_code == 200 and "refresh" not in page.headers
    assert 'data-progress="sent"' not in page.text and "Copies sent" in page.text


def test_a_sending_edition_nobody_sends_says_so(editor_client: TestClient, sqlite_engine: sa.Engine) -> None:
    add_subscriber(sqlite_engine, "reader@example.com")
    edition_id = start_sending(sqlite_engine, EDITION_DAY, now=FIXED_NOW)
    add_run(
        sqlite_engine, edition_id, "a:1:aa", host="mail-a.example.net", at=FIXED_NOW - timedelta(minutes=5)
    )
    page = editor_client.get(f"/editor/editions/{EDITION_DAY.isoformat()}")
    text = " ".join(page.text.split())
    assert "No sender is running on this edition (last heard from 2026-11-29 11:55)" in text
    assert "ETA unknown" in text and "0 live senders" in text


# --------------------------------------------------------------------------- subscribers (admin)


def test_subscribers_page_search_unsubscribe_and_export(
    admin_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    add_subscriber(sqlite_engine, "alpha@example.com", "Alpha")
    add_subscriber(sqlite_engine, "beta@example.com", '=HYPERLINK("http://example.org/?"&A1)')
    add_subscriber(sqlite_engine, "gamma@example.org", "Gamma", status=SubscriberStatus.PENDING)
    page = admin_client.get("/editor/subscribers")
    assert page.status_code == 200 and "alpha@example.com" in page.text
    found = admin_client.get("/editor/subscribers", params={"q": "example.org"})
    assert "gamma@example.org" in found.text and "alpha@example.com" not in found.text
    assert admin_client.get("/editor/subscribers", params={"status": "nonsense"}).status_code == 400

    alpha = subscriber(sqlite_engine, "alpha@example.com")
    response = admin_client.post(
        f"/editor/subscribers/{alpha.id}/unsubscribe",
        data={"csrf_token": csrf_token(admin_client), "q": "alpha"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/editor/subscribers?q=alpha"
    assert subscriber(sqlite_engine, "alpha@example.com").status == "unsubscribed"

    export = admin_client.get("/editor/subscribers/export.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["email"] for r in rows} == {"alpha@example.com", "beta@example.com", "gamma@example.org"}
    beta = next(r for r in rows if r["email"] == "beta@example.com")
    assert beta["name"].startswith("'=")  # spreadsheet formula neutralised
    active_only = admin_client.get("/editor/subscribers/export.csv", params={"status": "active"})
    assert [r["email"] for r in csv.DictReader(io.StringIO(active_only.text))] == ["beta@example.com"]


def test_admin_sees_the_subscribers_link(admin_client: TestClient) -> None:
    assert 'href="/editor/subscribers"' in admin_client.get("/editor/queue").text
    assert ADMIN_EMAIL in admin_client.get("/editor/preview").text


def test_a_csrf_token_belongs_to_one_session(
    editor_client: TestClient, web_app: FastAPI, sqlite_engine: sa.Engine
) -> None:
    story_id = queue_stories(sqlite_engine, count=1)[0]
    theirs = csrf_token(editor_client)
    add_editor(sqlite_engine, "second.editor@example.com")
    with TestClient(web_app, base_url=BASE_URL, follow_redirects=False) as other:
        login(other, "second.editor@example.com")
        response = other.post(
            f"/editor/stories/{story_id}/status", data={"csrf_token": theirs, "status": "dropped"}
        )
        assert response.status_code == 403
        mine = csrf_token(other)
        assert mine != theirs
        assert (
            other.post(
                f"/editor/stories/{story_id}/status", data={"csrf_token": mine, "status": "ready"}
            ).status_code
            == 303
        )


def test_cookies_are_not_secure_on_a_plain_http_address(
    make_app: Callable[..., FastAPI], web_settings: Settings, sqlite_engine: sa.Engine
) -> None:
    add_editor(sqlite_engine)
    settings = web_settings.model_copy(update={"public_base_url": "http://127.0.0.1:8000"})
    with TestClient(
        make_app(settings=settings), base_url="http://127.0.0.1:8000", follow_redirects=False
    ) as c:
        response = login(c)
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie


def test_the_api_router_is_optional() -> None:
    from briefing.web.app import _optional_router

    assert _optional_router("briefing.web.no_such_module") is None
    assert _optional_router("briefing.web.public") is not None


def test_editors_note_is_set_from_the_queue_page_and_reaches_the_preview(
    editor_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    from briefing.store import editions as edition_store

    queue_stories(sqlite_engine)
    day = EDITION_DAY.isoformat()
    token = csrf_token(editor_client)

    saved = editor_client.post(
        "/editor/note", data={"csrf_token": token, "day": day, "note": "Polls open at <b>7am</b>."}
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"/editor/queue?date={day}#note"
    with session_scope(sqlite_engine) as session:
        edition = edition_store.get_edition(session, EDITION_DAY, newsletter_id=1)
    assert edition.note == "Polls open at <b>7am</b>."
    page = editor_client.get(f"/editor/queue?date={day}").text
    assert "Polls open at &lt;b&gt;7am&lt;/b&gt;." in page
    frame = editor_client.get(f"/editor/preview/frame?date={day}").text
    assert "Polls open at" in frame and "<b>7am</b>" not in frame
    refused = editor_client.post("/editor/note", data={"day": day, "note": "no token"})
    assert refused.status_code == 403
