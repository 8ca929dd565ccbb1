"""Fuzz every editors' form and page (queue, preview, editions, subscribers, sign-in) on the real app.

An administrator is signed in (the CSRF token from the page goes with every POST), the database
is a real SQLite file restored from a template before each request, and every answer is judged by
`WebTrial`: never 5xx, no traceback, no markup smuggled into a page, and a refused input (4xx)
leaves every table as it was. After an accepted story form the page it redirects to is fetched
too, so the one-time message and the queue show the stored headline escaped and literally.

Sizes: each field gets the hostile values for its kind plus NAUGHTY_PER_FIELD strings of the Big
List of Naughty Strings (consecutive fields take consecutive slices), and each form gets
HYPOTHESIS_EXAMPLES generated values: about 640 requests for 15 routes, and 20 sign-ins (each one an
argon2 check, so every other hostile value); the counts are printed (pytest -s).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from briefing.config import Settings
from briefing.db import session_scope
from briefing.mail.transport import MemoryTransport
from briefing.service import specials as special_service
from briefing.store import newsletters as newsletter_store
from briefing.wiring import edition_setup
from tests.fixtures.naughty import NAUGHTY_FROM, WebTrial, encoded, generated, inputs_for
from tests.fixtures.web import (
    ADMIN_EMAIL,
    BASE_URL,
    EDITION_DAY,
    FIXED_NOW,
    PASSWORD,
    add_editor,
    add_subscriber,
    csrf_token,
    queue_stories,
    send_edition,
    web_settings_for,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

NAUGHTY_PER_FIELD = 3
HYPOTHESIS_EXAMPLES = 6
SIGN_IN_STEP = 2  # each sign-in checks a password with argon2: every other hostile value
DAY = EDITION_DAY.isoformat()  # sent before the forms are tried: the ledger pages show it
NEXT_DAY = "2026-12-01"  # its queue stays open: the story forms work on it
SPECIAL_DAY = "2026-11-29"  # the day the app's clock stands on: its specials wait for "send now"
NO_LIMIT = "1000000/1m"


@dataclass(frozen=True)
class Form:
    """One route: a valid request, and which of its values (path, query or form field) to vary."""

    method: str
    path: str  # "{id}" or "{day}" is the path value
    fields: dict[str, str] = field(default_factory=dict)
    path_value: str = ""
    vary: dict[str, str] = field(default_factory=dict)  # name -> kind; "path" for the path value
    inputs: int | None = None


STORY = {"url": "https://news.example.com/2026/web", "headline": "Web story", "status": "draft"}
FORMS: dict[str, Form] = {
    "queue": Form("GET", "/editor/queue", {"date": NEXT_DAY}, vary={"date": "date"}),
    "add story": Form(
        "POST",
        "/editor/stories",
        {**STORY, "day": NEXT_DAY, "edition_date": NEXT_DAY},
        vary={
            "day": "date",
            "article_id": "int",
            "url": "url",
            "headline": "text",
            "blurb": "text",
            "section": "text",
            "status": "text",
            "edition_date": "date",
            "embargo_until": "date",
            "expires_at": "date",
            "lead": "text",
            "newsletter": "text",
        },
    ),
    "edit story": Form(
        "POST",
        "/editor/stories/{id}",
        {**STORY, "day": NEXT_DAY, "edition_date": NEXT_DAY},
        path_value="4",
        vary={
            "path": "int",
            "headline": "text",
            "url": "url",
            "blurb": "text",
            "section": "text",
            "status": "text",
            "edition_date": "date",
            "embargo_until": "date",
            "expires_at": "date",
        },
    ),
    "move story": Form(
        "POST",
        "/editor/stories/{id}/move",
        {"direction": "down", "day": NEXT_DAY},
        path_value="4",
        vary={"path": "int", "direction": "text", "day": "date", "newsletter": "text"},
    ),
    "story status": Form(
        "POST",
        "/editor/stories/{id}/status",
        {"status": "ready", "day": NEXT_DAY},
        path_value="5",
        vary={"path": "int", "status": "text", "day": "date", "newsletter": "text"},
    ),
    "note": Form(
        "POST",
        "/editor/note",
        {"note": "Polls open at 7am.", "day": NEXT_DAY},
        vary={"note": "text", "day": "date", "newsletter": "text"},
    ),
    "preview": Form("GET", "/editor/preview", {"date": NEXT_DAY}, vary={"date": "date"}, inputs=6),
    "preview frame": Form(
        "GET", "/editor/preview/frame", {"date": NEXT_DAY}, vary={"date": "date"}, inputs=6
    ),
    "test send": Form(
        "POST",
        "/editor/preview/test",
        {"day": NEXT_DAY},
        vary={"day": "date", "newsletter": "text"},
        inputs=6,
    ),
    "edition": Form("GET", "/editor/editions/{day}", path_value=DAY, vary={"path": "date"}),
    "retry": Form("POST", "/editor/editions/{day}/retry", path_value=DAY, vary={"path": "date"}),
    "subscribers": Form("GET", "/editor/subscribers", {"q": "ada"}, vary={"q": "text", "status": "text"}),
    "unsubscribe one": Form(
        "POST",
        "/editor/subscribers/{id}/unsubscribe",
        {"q": "ada", "status": "active"},
        path_value="1",
        vary={"path": "int", "q": "text", "status": "text"},
    ),
    "export": Form("GET", "/editor/subscribers/export.csv", vary={"status": "text", "newsletter": "text"}),
    "queue of one": Form(
        "GET", "/editor/queue", {"date": NEXT_DAY, "newsletter": "weekend"}, vary={"newsletter": "text"}
    ),
    "editions of one": Form(
        "GET", "/editor/editions", {"newsletter": "weekend"}, vary={"newsletter": "text"}
    ),
    "edition of one": Form(
        "GET",
        "/editor/editions/{day}",
        {"kind": "regular"},
        path_value=DAY,
        vary={"newsletter": "text", "kind": "text"},
    ),
    "resume": Form(
        "POST",
        "/editor/editions/{day}/resume",
        {"kind": "regular"},
        path_value=DAY,
        vary={"path": "date", "newsletter": "text", "kind": "text"},
    ),
    "retry of one": Form(
        "POST",
        "/editor/editions/{day}/retry",
        {"kind": "regular"},
        path_value=DAY,
        vary={"newsletter": "text", "kind": "text"},
    ),
    "preview of one": Form(
        "GET",
        "/editor/preview",
        {"date": NEXT_DAY, "newsletter": "weekend"},
        vary={"newsletter": "text", "kind": "text"},
        inputs=6,
    ),
    "new special": Form("GET", "/editor/specials/new", vary={"newsletter": "text"}),
    "make special": Form(
        "POST",
        "/editor/specials",
        {"subject": "Breaking", "note": "It happened.", "stories": "4", "when": "now", "date": SPECIAL_DAY},
        vary={
            "newsletter": "text",
            "subject": "text",
            "note": "text",
            "stories": "int",
            "when": "text",
            "at": "text",
            "date": "date",
        },
    ),
    "special": Form(
        "GET",
        "/editor/specials/{day}",
        {"kind": "special-1"},
        path_value=SPECIAL_DAY,
        vary={"path": "date", "kind": "text", "newsletter": "text"},
    ),
    "special frame": Form(
        "GET",
        "/editor/specials/{day}/frame",
        {"kind": "special-1"},
        path_value=SPECIAL_DAY,
        vary={"path": "date", "kind": "text", "newsletter": "text"},
        inputs=6,
    ),
    # special-1 (also what an empty kind means) has a send time: the request is answered, and no send
    # starts behind the fuzzing to change the tables while the next inputs are judged.
    "send special": Form(
        "POST",
        "/editor/specials/{day}/send",
        {"kind": "special-1"},
        path_value=SPECIAL_DAY,
        vary={"path": "date", "kind": "text", "newsletter": "text"},
        inputs=6,
    ),
    "cancel special": Form(
        "POST",
        "/editor/specials/{day}/cancel",
        {"kind": "special-2"},
        path_value=SPECIAL_DAY,
        vary={"path": "date", "kind": "text", "newsletter": "text"},
    ),
    "sign-in page": Form("GET", "/login", vary={"next": "url"}),
}
QUERY_METHODS = ("GET",)


@pytest.fixture
def web_settings(sqlite_url: str) -> Settings:
    """The usual test settings with the rate limits out of the way: every input should reach the app."""
    return web_settings_for(
        sqlite_url,
        subscribe_rate_ip=NO_LIMIT,
        subscribe_rate_address=NO_LIMIT,
        login_rate=NO_LIMIT,
        login_rate_ip=NO_LIMIT,
    )


@pytest.fixture
def trial(admin_client: TestClient, sqlite_engine: sa.Engine, web_settings: Settings) -> Iterator[WebTrial]:
    queue_stories(sqlite_engine, count=3)  # stories 1-3, used by the sent edition
    add_subscriber(sqlite_engine, "ada@example.com", "Ada")
    try:  # a sent edition gives the ledger pages something to show; the forms do not need it
        send_edition(sqlite_engine, web_settings, MemoryTransport())
    except Exception:
        pass
    queue_stories(sqlite_engine, date.fromisoformat(NEXT_DAY), count=3)  # stories 4-6, open
    with session_scope(sqlite_engine) as s:
        newsletter_store.add_newsletter(s, "weekend", {"name": "The Weekend"}, now=FIXED_NOW)
        # special-1 has its send time; special-2 and special-3 wait for an editor's "send now".
        for send_at in (FIXED_NOW + timedelta(hours=6), None, None):
            special_service.create_special(
                s,
                edition_setup(web_settings),
                edition_date=date.fromisoformat(SPECIAL_DAY),
                subject="Breaking",
                note="It happened.",
                story_ids=[4],
                send_at=send_at,
                now=FIXED_NOW,
            )
    yield WebTrial(admin_client, sqlite_engine)


def stored_headline(engine: sa.Engine, story_id: str) -> str:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT headline FROM story WHERE id = :id"), {"id": int(story_id)})
        return str(found.scalar_one_or_none() or "")


def send_one(
    trial: WebTrial, name: str, form: Form, csrf: str, key: str, value: str
) -> httpx.Response | None:
    """The form's valid request with `key` (a field, or "path") replaced by `value` (no key: as is)."""
    target = f"{form.method} {form.path} {key}"
    path_value = value if key == "path" else form.path_value
    path = form.path.replace("{id}", encoded_path(path_value)).replace("{day}", encoded_path(path_value))
    values = dict(form.fields)
    if key and key != "path":
        values[key] = value
    if form.method in QUERY_METHODS:
        return trial.send(target, value, "GET", path, query=values)
    response = trial.send(target, value, "POST", path, form={**values, "csrf_token": csrf})
    if response is None or name not in ("add story", "edit story") or key != "headline":
        return response
    page = trial.follow(target, value, response)
    story_id = response.headers.get("location", "").rpartition("#story-")[2]
    if page is not None and story_id.isdigit():
        trial.shows(target, value, page, stored_headline(trial.engine, story_id))
    return response


def encoded_path(value: str) -> str:
    return encoded(value).replace("+", "%20")


def fuzz_form(trial: WebTrial, name: str, csrf: str) -> None:
    form = FORMS[name]
    valid = send_one(trial, name, form, csrf, "", "")
    if valid is None or valid.status_code >= 400:  # else the bad values would be refused for nothing
        trial.findings.add(
            f"{form.method} {form.path}", "", f"the valid request got {valid and valid.status_code}"
        )
    fields_before = sum(len(FORMS[n].vary) for n in sorted(FORMS)[: sorted(FORMS).index(name)])
    for i, (key, kind) in enumerate(form.vary.items()):
        start = NAUGHTY_FROM["editor"] + NAUGHTY_PER_FIELD * (fields_before + i)
        values = inputs_for(kind, NAUGHTY_PER_FIELD, start)
        for value in values[: form.inputs] if form.inputs else values:
            send_one(trial, name, form, csrf, key, value)

    @settings(
        max_examples=form.inputs or HYPOTHESIS_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def examples(data: st.DataObject) -> None:
        key, kind = data.draw(st.sampled_from(sorted(form.vary.items())))
        send_one(trial, name, form, csrf, key, data.draw(generated(kind)))

    examples()


def test_every_editor_form_survives_naughty_and_generated_input(trial: WebTrial) -> None:
    """One sign-in and one starting database for all the forms; every failure is listed at the end."""
    csrf = csrf_token(trial.client)
    for name in sorted(FORMS):
        before = trial.findings.tried
        fuzz_form(trial, name, csrf)
        print(f"{FORMS[name].method} {FORMS[name].path}: {trial.findings.tried - before} requests")
    print(f"editor forms: {trial.findings.tried} requests")
    trial.findings.check()


def test_sign_in_survives_naughty_input(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    """Wrong sign-ins are refused cleanly; a right one with any `next` goes only to an editor page."""
    add_editor(sqlite_engine, ADMIN_EMAIL, admin=True)
    trial = WebTrial(anon, sqlite_engine, ignore={"editor": ["last_login_at", "password_hash"]})
    for i, (key, kind) in enumerate((("email", "email"), ("password", "text"), ("next", "url"))):
        for value in inputs_for(kind, 2, NAUGHTY_FROM["sign-in"] + 2 * i)[::SIGN_IN_STEP]:
            anon.cookies.clear()
            token = anon.get("/login").cookies.get("briefing_login") or ""
            fields = {"email": ADMIN_EMAIL, "password": "wrong password, twelve+", "next": "/editor/queue"}
            fields[key] = value
            if key == "next":
                fields["password"] = PASSWORD
            response = trial.send(
                f"POST /login {key}", value, "POST", "/login", form={**fields, "login_token": token}
            )
            if response is not None and key == "next" and response.status_code == 303:
                location = response.headers["location"]
                if not location.startswith("/editor") or location.startswith("//"):
                    trial.findings.add(
                        f"POST /login {key}", value, f"redirected off the editor pages: {location!r}"
                    )
    print(f"POST /login: {trial.findings.tried} requests")
    trial.findings.check()


def test_every_editor_route_is_fuzzed(client: TestClient) -> None:
    """A new editors' route needs a Form above; the app's own route table is the list."""
    fuzzed = {(f.method, f.path) for f in FORMS.values()}
    routes = {
        (method, route.path.replace("{story_id}", "{id}").replace("{subscriber_id}", "{id}"))
        for route in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if getattr(route, "path", "").startswith(("/editor", "/login"))
        for method in getattr(route, "methods", ()) or ()
        if method != "HEAD"
    }
    no_input = {
        ("GET", "/editor"),
        ("GET", "/editor/specials"),
        ("POST", "/editor/logout"),
        ("GET", "/editor/editions"),
        ("POST", "/login"),
    }
    assert routes - no_input - fuzzed == set()
    assert BASE_URL.startswith("https://")
