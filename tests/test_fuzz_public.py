"""Fuzz the readers' pages and the archive: subscribe, confirm, unsubscribe, preferences, archive pages.

A reader's client with no cookies sends naughty and generated values as form fields, as link
tokens (alone, and glued to a valid token, the way a mangled link arrives) and as archive dates.
Each request meets the same starting database (a real SQLite file restored from a template) and
`WebTrial` judges the answer: never 5xx, no traceback, no markup smuggled into the page (the
subscribe form shows what was typed back on an error), GET and HEAD never change a table, and a
refused input (4xx) changes nothing.

Sizes: each field or token gets the hostile values for its kind plus NAUGHTY_PER_FIELD strings
of the Big List of Naughty Strings, each route HYPOTHESIS_EXAMPLES generated values: about 1000
requests for 18 routes (a token value is sent alone and after a valid token), printed (pytest -s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from briefing.config import Settings
from briefing.db import session_scope
from briefing.domain import SubscriberStatus
from briefing.links import LinkSigner
from briefing.mail.transport import MemoryTransport
from briefing.service import confirmations
from briefing.service import editions as edition_service
from briefing.service import specials as special_service
from briefing.store import newsletters as newsletter_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from briefing.wiring import edition_setup
from tests.fixtures.clock import ManualClock
from tests.fixtures.naughty import NAUGHTY_FROM, WebTrial, encoded, generated, inputs_for
from tests.fixtures.web import (
    EDITION_DAY,
    FIXED_NOW,
    LINK_SECRET,
    add_subscriber,
    queue_stories,
    send_edition,
    web_settings_for,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(120)]

NAUGHTY_PER_FIELD = 6
HYPOTHESIS_EXAMPLES = 10
DAY = EDITION_DAY.isoformat()
NO_LIMIT = "1000000/1m"


@dataclass(frozen=True)
class Route:
    """A reader's request; `{token}`, `{slug}` or `{day}` in the path is where a varied path value
    goes, and a field whose name starts with "?" goes in the query string whatever the method
    (an unsubscribe link's `?list=`)."""

    method: str
    path: str
    fields: dict[str, str] = field(default_factory=dict)
    vary: dict[str, str] = field(default_factory=dict)  # field name (or "path") -> kind
    valid_token: str = ""  # the kind of link whose valid token the varied value is glued to
    fixed: dict[str, str] = field(default_factory=dict)  # path parameters that keep their value


ROUTES: dict[str, Route] = {
    "subscribe": Route(
        "POST",
        "/subscribe",
        {"email": "new.reader@example.com", "name": "New Reader", "choosing": "1", "newsletter": "weekend"},
        {"email": "email", "name": "text", "website": "text", "newsletter": "text", "choosing": "text"},
    ),
    "subscribe page": Route("GET", "/subscribe", vary={"email": "text"}),
    "subscribe to one": Route(
        "POST",
        "/subscribe/{slug}",
        {"email": "new.reader@example.com", "name": "New Reader"},
        {"path": "text", "email": "email", "name": "text"},
        valid_token="slug",
    ),
    "subscribe to one page": Route("GET", "/subscribe/{slug}", vary={"path": "text"}, valid_token="slug"),
    "confirm page": Route("GET", "/confirm/{token}", vary={"path": "text"}, valid_token="confirm"),
    "confirm": Route("POST", "/confirm/{token}", vary={"path": "text"}, valid_token="confirm"),
    "resend": Route("POST", "/confirm/{token}/resend", vary={"path": "text"}, valid_token="confirm"),
    "unsubscribe page": Route(
        "GET",
        "/unsubscribe/{token}",
        {"?list": "weekend"},
        vary={"path": "text", "?list": "text"},
        valid_token="unsubscribe",
    ),
    "unsubscribe": Route(
        "POST",
        "/unsubscribe/{token}",
        {"?list": "weekend"},
        vary={"path": "text", "?list": "text"},
        valid_token="unsubscribe",
    ),
    "resubscribe": Route(
        "POST",
        "/unsubscribe/{token}/resubscribe",
        {"?list": "weekend"},
        vary={"path": "text", "?list": "text"},
        valid_token="unsubscribe",
    ),
    "leave all": Route(
        "POST",
        "/unsubscribe/{token}/all",
        {"?list": "weekend"},
        vary={"path": "text", "?list": "text"},
        valid_token="unsubscribe",
    ),
    "preferences page": Route(
        "GET", "/preferences/{token}", vary={"path": "text"}, valid_token="preferences"
    ),
    "preferences": Route(
        "POST",
        "/preferences/{token}",
        {"action": "unsubscribe"},
        {"path": "text", "action": "text"},
        valid_token="preferences",
    ),
    "preferences save": Route(
        "POST",
        "/preferences/{token}",
        {
            "action": "save",
            "shown": "weekend",
            "newsletter": "weekend",
            "sectioned": "weekend",
            "section": "weekend:Sport",
            "specials": "weekend",
        },
        {"shown": "text", "newsletter": "text", "sectioned": "text", "section": "text", "specials": "text"},
        valid_token="preferences",
    ),
    "archive": Route("GET", "/archive", vary={"page": "text"}),
    "archive edition": Route("GET", "/archive/{day}", vary={"path": "date"}),
    "archive feed": Route("GET", "/archive/feed.xml", vary={"since": "text"}),
    # One newsletter's archive: the first one's slug (its edition is sent), or the weekend's (none yet).
    "archive of one": Route("GET", "/archive/{slug}/", vary={"path": "text"}, valid_token="slug"),
    "archive of one feed": Route(
        "GET", "/archive/{slug}/feed.xml", vary={"path": "text"}, valid_token="slug"
    ),
    "archive of one edition": Route(
        "GET", "/archive/{slug}/{day}", vary={"path": "date"}, fixed={"slug": "briefing"}
    ),
    "archive of one special": Route(
        "GET",
        "/archive/{slug}/{day}/{kind}",
        vary={"path": "date"},
        fixed={"slug": "briefing", "kind": "special-1"},
    ),
}


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


def valid_tokens(engine: sa.Engine) -> dict[str, str]:
    """A working link of each kind, for a reader who is active and one who awaits confirmation."""
    signer = LinkSigner([LINK_SECRET])
    active = add_subscriber(engine, "ada@example.com", "Ada")
    pending = add_subscriber(engine, "bob@example.org", "Bob", SubscriberStatus.PENDING)
    with session_scope(engine) as session:
        state = subscriber_store.link_state(session, pending.id)
    assert state is not None
    confirm = confirmations.make_token(signer, state, now=FIXED_NOW)
    assert confirm is not None
    with session_scope(engine) as session:
        weekend = newsletter_store.add_newsletter(
            session,
            "weekend",
            {"name": "The Weekend", "sections_optional": True, "section_order": ["Politics", "Sport"]},
            now=FIXED_NOW,
        )
        subscription_store.subscribe(session, [active.id], [weekend.id], now=FIXED_NOW)
    return {
        "confirm": confirm,
        "unsubscribe": signer.unsubscribe_token(active.id),
        "preferences": signer.preferences_token(active.id),
        "slug": weekend.slug,
    }


def send_special(engine: sa.Engine, settings: Settings) -> None:
    """A breaking-news special of the sent edition's date, sent too: its archive page has a copy."""
    setup = edition_setup(settings)
    send_at = datetime.combine(EDITION_DAY, time(12, 0), tzinfo=UTC)
    with session_scope(engine) as session:
        special = special_service.create_special(
            session,
            setup,
            edition_date=EDITION_DAY,
            subject="Breaking",
            note="It happened.",
            story_ids=[1],
            send_at=send_at,
            now=FIXED_NOW,
        )
    outcome = edition_service.send_edition(
        engine, setup, EDITION_DAY, MemoryTransport(), clock=ManualClock(send_at), kind=special.kind
    )
    assert outcome.edition.status == "sent", outcome.message


def path_for(route: Route, value: str) -> str:
    segment = encoded(value).replace("+", "%20")
    path = route.path
    for name, kept in route.fixed.items():
        path = path.replace("{" + name + "}", kept)
    return path.replace("{token}", segment).replace("{slug}", segment).replace("{day}", segment)


def send_one(
    trial: WebTrial, route: Route, tokens: dict[str, str], key: str, value: str
) -> httpx.Response | None:
    """The route's valid request with `key` (a field, or "path") replaced by `value` (no key: as is)."""
    target = f"{route.method} {route.path} {key}"
    fields = dict(route.fields)
    path_value = tokens.get(route.valid_token, DAY)
    if key == "path":
        path_value = value
    elif key:
        fields[key] = value
    in_query = {k[1:]: v for k, v in fields.items() if k.startswith("?")}
    fields = {k: v for k, v in fields.items() if not k.startswith("?")}
    query, form = ({**fields, **in_query}, None) if route.method == "GET" else (in_query or None, fields)
    path = path_for(route, path_value)
    response = trial.send(target, value, route.method, path, query=query, form=form)
    if key == "path" and route.valid_token:
        # A valid link with junk after it (a mail client wrapping or mangling the address).
        mangled = path_for(route, tokens[route.valid_token] + value)
        trial.send(f"{target} (after a valid token)", value, route.method, mangled, query=query, form=form)
    return response


def fuzz_route(trial: WebTrial, route: Route, tokens: dict[str, str], start: int) -> None:
    valid = send_one(trial, route, tokens, "", "")
    if valid is None or valid.status_code >= 400:  # else the bad values would be refused for nothing
        trial.findings.add(
            f"{route.method} {route.path}", "", f"the valid request got {valid and valid.status_code}"
        )
    for i, (key, kind) in enumerate(route.vary.items()):
        for value in inputs_for(kind, NAUGHTY_PER_FIELD, start + NAUGHTY_PER_FIELD * i):
            send_one(trial, route, tokens, key, value)

    @settings(
        max_examples=HYPOTHESIS_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def examples(data: st.DataObject) -> None:
        key, kind = data.draw(st.sampled_from(sorted(route.vary.items())))
        send_one(trial, route, tokens, key, data.draw(generated(kind)))

    examples()


def test_every_public_route_survives_naughty_and_generated_input(
    anon: TestClient, sqlite_engine: sa.Engine, web_settings: Settings
) -> None:
    """One starting database for every route; every failure is listed at the end."""
    queue_stories(sqlite_engine, count=2, headline="Budget <b>passes</b> [/x]")
    tokens = valid_tokens(sqlite_engine)
    try:  # a sent edition for the archive pages; the other routes do not need it
        send_edition(sqlite_engine, web_settings, MemoryTransport())
    except Exception:
        pass
    send_special(sqlite_engine, web_settings)
    trial = WebTrial(anon, sqlite_engine)
    start = NAUGHTY_FROM["public"]
    for name in sorted(ROUTES):
        route = ROUTES[name]
        before = trial.findings.tried
        fuzz_route(trial, route, tokens, start)
        start += NAUGHTY_PER_FIELD * len(route.vary)
        print(f"{route.method} {route.path}: {trial.findings.tried - before} requests")
    print(f"public routes: {trial.findings.tried} requests")
    trial.findings.check()


def test_every_public_route_is_fuzzed(client: TestClient) -> None:
    """A new readers' route needs a Route above; the app's own route table is the list."""
    fuzzed = {(r.method, r.path) for r in ROUTES.values()}
    public = {
        (method, route.path)
        for route in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if getattr(route, "path", "").startswith(
            ("/subscribe", "/confirm", "/unsubscribe", "/preferences", "/archive")
        )
        for method in getattr(route, "methods", ()) or ()
        if method != "HEAD"
    }
    assert public - fuzzed == set()
