"""Hostile input on the editors' forms and paths: broken hosts, moments outside the calendar, ids
beyond what the database can hold. Each gets a 4xx; a form comes back with the field named and
the editor's own input shown escaped, and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape

from briefing.db import session_scope
from briefing.store import stories as story_store
from briefing.web.params import MAX_ID
from tests.fixtures.web import (
    ADMIN_EMAIL,
    BASE_URL,
    EDITION_DAY,
    add_editor,
    add_subscriber,
    csrf_token,
    login,
    queue_stories,
    subscriber,
    web_settings_for,
)

pytestmark = pytest.mark.timeout(60)

MARKER = '"><b>typed by the editor</b>'
HUGE_IDS = ("99999999999999999999", str(2**63), "0", "-1", "1e3", "٣")


def headlines(engine: sa.Engine) -> list[str]:
    with session_scope(engine) as session:
        return sorted(s.headline for s in story_store.list_stories(session, newsletter_id=1, statuses=()))


def assert_form_page(response: object, field: str) -> None:
    """A 4xx HTML page (not JSON) that names the field and shows the typed text escaped."""
    assert 400 <= response.status_code < 500, response.status_code  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    text: str = response.text  # type: ignore[attr-defined]
    assert field in text.lower(), text[:2000]
    assert MARKER not in text, "the editor's input reached the page unescaped"
    assert str(escape(MARKER)) in text, "the form does not show what the editor typed"
    assert "Traceback" not in text


def story_form(token: str, **fields: str) -> dict[str, str]:
    values = {
        "csrf_token": token,
        "day": EDITION_DAY.isoformat(),
        "url": "https://www.example.com/a",
        "headline": MARKER,
        "status": "draft",
    }
    values.update(fields)
    return values


@pytest.mark.parametrize(
    "url", ["http://[zz]/", "https://[::1/", "https://[::1]:99999/", "http://exa mple.com/"]
)
def test_a_broken_host_re_renders_the_story_form_naming_the_url(
    editor_client: TestClient, sqlite_engine: sa.Engine, url: str
) -> None:
    token = csrf_token(editor_client)
    before = headlines(sqlite_engine)
    added = editor_client.post("/editor/stories", data=story_form(token, url=url))
    assert_form_page(added, "url")
    story_id = queue_stories(sqlite_engine, count=1)[0]
    edited = editor_client.post(f"/editor/stories/{story_id}", data=story_form(token, url=url))
    assert_form_page(edited, "url")
    assert headlines(sqlite_engine) == sorted([*before, "Council story number 0"])


@pytest.fixture
def zoned_client(
    make_app: Callable[..., FastAPI],
    sqlite_url: str,
    sqlite_engine: sa.Engine,
    request: pytest.FixtureRequest,
) -> Iterator[TestClient]:
    app = make_app(settings=web_settings_for(sqlite_url, timezone=request.param))
    add_editor(sqlite_engine)
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as c:
        assert login(c).status_code == 303
        yield c


# The first minute of year 1 east of UTC is still year 0 in UTC; the last of 9999 west of UTC is 10000.
OUT_OF_RANGE = [
    pytest.param("Europe/Berlin", "0001-01-01T00:00", id="year-1-east"),
    pytest.param("America/New_York", "9999-12-31T23:59", id="year-9999-west"),
    pytest.param("Pacific/Kiritimati", "0001-01-01", id="date-only-east"),
]


@pytest.mark.parametrize(("zoned_client", "moment"), OUT_OF_RANGE, indirect=["zoned_client"])
@pytest.mark.parametrize(("name", "field"), [("embargo_until", "embargo"), ("expires_at", "expir")])
def test_a_moment_outside_the_calendar_re_renders_the_form(
    zoned_client: TestClient, sqlite_engine: sa.Engine, moment: str, name: str, field: str
) -> None:
    token = csrf_token(zoned_client)
    added = zoned_client.post("/editor/stories", data=story_form(token, **{name: moment}))
    assert_form_page(added, field)
    story_id = queue_stories(sqlite_engine, count=1)[0]
    edited = zoned_client.post(f"/editor/stories/{story_id}", data=story_form(token, **{name: moment}))
    assert_form_page(edited, field)
    assert MARKER not in headlines(sqlite_engine)
    assert zoned_client.get("/editor/queue").status_code == 200


@pytest.mark.parametrize("value", HUGE_IDS)
def test_an_article_id_beyond_the_database_re_renders_the_form(
    editor_client: TestClient, sqlite_engine: sa.Engine, value: str
) -> None:
    token = csrf_token(editor_client)
    response = editor_client.post("/editor/stories", data=story_form(token, article_id=value, url=""))
    assert_form_page(response, "article")
    assert headlines(sqlite_engine) == []


@pytest.mark.parametrize("value", HUGE_IDS)
def test_ids_beyond_the_database_in_paths_are_404(
    editor_client: TestClient, sqlite_engine: sa.Engine, value: str
) -> None:
    queue_stories(sqlite_engine, count=1)
    token = csrf_token(editor_client)
    for path, data in (
        (f"/editor/stories/{value}", {"headline": "changed"}),
        (f"/editor/stories/{value}/move", {"direction": "up"}),
        (f"/editor/stories/{value}/status", {"status": "ready"}),
    ):
        response = editor_client.post(
            path, data={"csrf_token": token, "day": EDITION_DAY.isoformat(), **data}
        )
        assert response.status_code == 404, (path, response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
    assert headlines(sqlite_engine) == ["Council story number 0"]


def test_the_largest_id_the_database_holds_is_a_plain_not_found(editor_client: TestClient) -> None:
    token = csrf_token(editor_client)
    response = editor_client.post(
        f"/editor/stories/{MAX_ID}/status", data={"csrf_token": token, "status": "ready"}
    )
    assert response.status_code == 404


@pytest.mark.parametrize("value", HUGE_IDS)
def test_subscriber_ids_beyond_the_database_are_404(
    client: TestClient, sqlite_engine: sa.Engine, value: str
) -> None:
    add_editor(sqlite_engine, ADMIN_EMAIL, admin=True)
    assert login(client, ADMIN_EMAIL).status_code == 303
    add_subscriber(sqlite_engine, "listed@example.com")
    token = csrf_token(client)
    response = client.post(f"/editor/subscribers/{value}/unsubscribe", data={"csrf_token": token})
    assert response.status_code == 404, response.text[:500]
    assert subscriber(sqlite_engine, "listed@example.com").status == "active"


@pytest.mark.parametrize(
    "path",
    [
        "/editor/queue?date=9999-12-31",
        "/editor/queue?date=0001-01-01",
        "/editor/preview?date=9999-12-31",
        "/editor/preview?date=0001-01-01",
        "/editor/preview/frame?date=9999-12-31",
        "/editor/editions/9999-12-31",
        "/editor/editions/0001-01-01",
        "/editor/queue?date=99999-01-01",
        "/archive/9999-12-31",
        "/archive/0001-01-01",
    ],
)
def test_dates_at_the_ends_of_the_calendar_never_500(editor_client: TestClient, path: str) -> None:
    response = editor_client.get(path)
    assert response.status_code < 500, (path, response.status_code)
    assert "Traceback" not in response.text


HOSTILE_SLUGS = ("no-such-letter", "%00", "%3Cscript%3E", "a" * 200, "%E2%80%AE", "WEEKEND%20")


@pytest.mark.parametrize("slug", HOSTILE_SLUGS)
def test_an_unknown_newsletter_on_any_page_is_a_404(editor_client: TestClient, slug: str) -> None:
    day = EDITION_DAY.isoformat()
    for path in (
        f"/editor/queue?newsletter={slug}",
        f"/editor/preview?newsletter={slug}&date={day}",
        f"/editor/preview/frame?newsletter={slug}&date={day}",
        f"/editor/editions?newsletter={slug}",
        f"/editor/editions/{day}?newsletter={slug}",
        f"/archive/{slug}/",
        f"/archive/{slug}/feed.xml",
        f"/archive/{slug}/{day}",
        f"/archive/{slug}/{day}/special-1",
    ):
        response = editor_client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "Traceback" not in response.text and "<script>" not in response.text


def test_a_form_naming_an_unknown_newsletter_stores_nothing(
    editor_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    token = csrf_token(editor_client)
    before = headlines(sqlite_engine)
    for path, data in (
        ("/editor/stories", story_form(token, newsletter="no-such-letter", headline="Nowhere")),
        ("/editor/note", {"csrf_token": token, "newsletter": "no-such-letter", "note": "Nowhere"}),
        (f"/editor/editions/{EDITION_DAY.isoformat()}/retry", {"csrf_token": token, "newsletter": "x"}),
        (f"/editor/editions/{EDITION_DAY.isoformat()}/retry", {"csrf_token": token, "kind": "bogus"}),
    ):
        response = editor_client.post(path, data=data)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert "Traceback" not in response.text
    assert headlines(sqlite_engine) == before
