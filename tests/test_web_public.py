"""Readers' pages: double opt-in, one-click unsubscribe (RFC 8058), preferences, scanners, archive.

Real SQLite file per test; mail goes to a MemoryTransport or a real loopback SMTP server.
"""

from __future__ import annotations

import email
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import timedelta
from email.message import Message
from email.policy import default as default_policy
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from briefing.config import Rate, Settings
from briefing.db import session_scope
from briefing.domain import SubscriberStatus
from briefing.links import LinkSigner
from briefing.mail.pool import open_transport
from briefing.mail.transport import MemoryTransport
from briefing.service import confirmations
from briefing.service import editions as edition_service
from briefing.store import subscribers as subscriber_store
from briefing.wiring import edition_setup
from tests.fixtures.clock import ManualClock
from tests.fixtures.web import (
    BASE_URL,
    EDITION_DAY,
    FIXED_NOW,
    LINK_SECRET,
    add_subscriber,
    queue_stories,
    send_edition,
    subscriber,
)

pytestmark = pytest.mark.timeout(120)

LINK_RE = re.compile(r"https://news\.example\.com/[A-Za-z0-9_\-./%]+")


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=default_policy)


def text_part(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return str(part.get_content())
    raise AssertionError("no text/plain part")


def confirm_link(mailbox: MemoryTransport, index: int = -1) -> str:
    body = text_part(parse(mailbox.messages[index].data))
    links = [u for u in LINK_RE.findall(body) if "/confirm/" in u]
    assert len(links) == 1, body
    return links[0]


def path_of(url: str) -> str:
    return urlsplit(url).path


def status_of(engine: sa.Engine, address: str) -> str:
    return subscriber(engine, address).status


def unsubscribe_token(sid: int, version: int = 1) -> str:
    return LinkSigner([LINK_SECRET]).unsubscribe_token(sid, version)


# --------------------------------------------------------------------------- subscribe and confirm


def test_subscribe_confirm_flow(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport
) -> None:
    page = client.get("/subscribe")
    assert page.status_code == 200 and 'action="/subscribe"' in page.text

    done = client.post("/subscribe", data={"email": " Reader@Example.com ", "name": "Ada"})
    assert done.status_code == 200 and "Check your inbox" in done.text
    assert status_of(sqlite_engine, "reader@example.com") == "pending"
    assert len(mailbox.messages) == 1
    message = parse(mailbox.messages[0].data)
    assert message["To"] == "Reader@example.com"
    assert message["Date"].datetime == FIXED_NOW  # dated by the app's clock
    assert "List-Unsubscribe" not in message and "%%" not in mailbox.messages[0].data.decode()

    link = confirm_link(mailbox)
    shown = client.get(path_of(link))
    assert shown.status_code == 200 and "Yes, subscribe me" in shown.text
    assert status_of(sqlite_engine, "reader@example.com") == "pending", "GET must not confirm"
    assert client.head(path_of(link)).status_code == 200

    confirmed = client.post(path_of(link))
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert status_of(sqlite_engine, "reader@example.com") == "active"

    again = client.post(path_of(link))
    assert again.status_code == 200 and "already subscribed" in again.text


def test_subscribe_answers_the_same_whatever_the_state(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport
) -> None:
    add_subscriber(sqlite_engine, "active@example.com", "Act")
    add_subscriber(sqlite_engine, "pending@example.com", status=SubscriberStatus.PENDING)
    gone = add_subscriber(sqlite_engine, "gone@example.com")
    with session_scope(sqlite_engine) as session:
        subscriber_store.unsubscribe(session, gone.id, now=FIXED_NOW)
    bodies = {}
    for address in ("new@example.com", "active@example.com", "pending@example.com", "gone@example.com"):
        response = client.post("/subscribe", data={"email": address})
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
        bodies[address] = response.text
    assert len(set(bodies.values())) == 1, "the page must not reveal whether an address is on the list"
    # New, pending and unsubscribed addresses get a link; an active one has nothing to confirm.
    assert sorted(m.rcpt for m in mailbox.messages) == [
        "gone@example.com",
        "new@example.com",
        "pending@example.com",
    ]
    assert status_of(sqlite_engine, "gone@example.com") == "unsubscribed", "asking is not confirming"
    assert status_of(sqlite_engine, "active@example.com") == "active"


def test_bad_addresses_are_400_and_store_nothing(client: TestClient, sqlite_engine: sa.Engine) -> None:
    for bad in (
        "",
        "not-an-address",
        "a@b.c\r\nBcc: x@example.com",
        "x" * 300 + "@example.com",
        "a@b\x00.com",
    ):
        response = client.post("/subscribe", data={"email": bad})
        assert response.status_code == 400, bad
        assert "email" in response.text
    with session_scope(sqlite_engine) as session:
        assert sum(subscriber_store.count_by_status(session).values()) == 0


def test_honeypot_creates_nothing(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport
) -> None:
    response = client.post("/subscribe", data={"email": "bot@example.com", "website": "https://spam.example"})
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert mailbox.messages == []
    with session_scope(sqlite_engine) as session:
        assert subscriber_store.find_by_email(session, "bot@example.com") is None


def test_confirmation_resends_are_rate_limited_per_address(
    client: TestClient, mailbox: MemoryTransport, web_clock: ManualClock
) -> None:
    for _ in range(5):
        response = client.post("/subscribe", data={"email": "again@example.com"})
        assert response.status_code == 200
    assert len(mailbox.messages) == 3  # default 3 per hour per address; the page stays the same
    web_clock.advance(timedelta(minutes=59))
    assert client.post("/subscribe", data={"email": "again@example.com"}).status_code == 200
    assert len(mailbox.messages) == 3, "still within the hour"
    web_clock.advance(timedelta(minutes=1, seconds=1))
    assert client.post("/subscribe", data={"email": "again@example.com"}).status_code == 200
    assert len(mailbox.messages) == 4, "an hour after the first, the window has room again"


def test_subscribe_is_rate_limited_per_ip(
    make_app: Callable[..., FastAPI],
    web_settings: Settings,
    mailbox: MemoryTransport,
    web_clock: ManualClock,
) -> None:
    app = make_app(settings=web_settings.model_copy(update={"subscribe_rate_ip": Rate(2, 60.0)}))
    with TestClient(app, base_url=BASE_URL) as c:
        assert c.post("/subscribe", data={"email": "one@example.com"}).status_code == 200
        assert c.post("/subscribe", data={"email": "two@example.com"}).status_code == 200
        third = c.post("/subscribe", data={"email": "three@example.com"})
        assert third.status_code == 429 and third.headers["retry-after"] == "60"
        assert len(mailbox.messages) == 2
        web_clock.advance(timedelta(seconds=61))
        assert c.post("/subscribe", data={"email": "three@example.com"}).status_code == 200
    assert len(mailbox.messages) == 3


def test_confirm_replayed_after_unsubscribe_does_not_resubscribe(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport
) -> None:
    client.post("/subscribe", data={"email": "replay@example.com"})
    link = path_of(confirm_link(mailbox))
    assert client.post(link).status_code == 200
    sub = subscriber(sqlite_engine, "replay@example.com")
    assert client.post(f"/unsubscribe/{unsubscribe_token(sub.id)}").status_code == 200
    replay = client.post(link)
    assert replay.status_code == 400 and "can no longer be used" in replay.text
    assert status_of(sqlite_engine, "replay@example.com") == "unsubscribed"


def test_unsubscribed_reader_who_asks_again_is_reactivated_by_the_new_link_only(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport, web_clock: ManualClock
) -> None:
    client.post("/subscribe", data={"email": "back@example.com"})
    first = path_of(confirm_link(mailbox))
    client.post(first)
    sub = subscriber(sqlite_engine, "back@example.com")
    web_clock.advance(timedelta(minutes=5))
    client.post(f"/unsubscribe/{unsubscribe_token(sub.id)}")

    web_clock.advance(timedelta(days=2))  # the new link binds to the row's updated_at (the unsubscribe)
    client.post("/subscribe", data={"email": "back@example.com"})
    second = path_of(confirm_link(mailbox))
    assert second != first
    assert client.post(first).status_code == 400
    assert status_of(sqlite_engine, "back@example.com") == "unsubscribed"
    assert client.post(second).status_code == 200
    assert status_of(sqlite_engine, "back@example.com") == "active"
    # Unsubscribing again, later, retires the second link too.
    web_clock.advance(timedelta(minutes=5))
    client.post(f"/unsubscribe/{unsubscribe_token(sub.id)}")
    assert client.post(second).status_code == 400
    assert status_of(sqlite_engine, "back@example.com") == "unsubscribed"


def test_expired_confirm_link_offers_a_new_one(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport, web_clock: ManualClock
) -> None:
    # Confirm links last seven days (BRIEFING_CONFIRM_MAX_AGE's default), on the app's clock.
    client.post("/subscribe", data={"email": "slow@example.com"})
    link = path_of(confirm_link(mailbox))
    web_clock.advance(timedelta(days=7))
    still = client.get(link)
    assert still.status_code == 200 and "Yes, subscribe me" in still.text, (
        "exactly seven days old: still good"
    )
    web_clock.advance(timedelta(seconds=1))
    page = client.get(link)
    assert page.status_code == 400 and "expired" in page.text and f'action="{link}/resend"' in page.text
    assert client.post(link).status_code == 400
    assert status_of(sqlite_engine, "slow@example.com") == "pending"
    resent = client.post(f"{link}/resend")
    assert resent.status_code == 200 and "Check your inbox" in resent.text
    assert len(mailbox.messages) == 2
    assert parse(mailbox.messages[-1].data)["Date"].datetime == web_clock.now()
    fresh = path_of(confirm_link(mailbox))
    assert fresh != link
    assert client.post(fresh).status_code == 200
    assert status_of(sqlite_engine, "slow@example.com") == "active"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", 404),  # /confirm/ is no page at all
        ("x", 400),
        ("' OR 1=1--", 400),
        ("a" * 10_000, 400),
        ("InMxLnAi.awoy0w.CDcY3kdwUpTj2sO6-WzjDWqAGF4", 400),  # a well-formed token signed with another key
    ],
)
def test_junk_confirm_tokens_are_rejected(
    client: TestClient, sqlite_engine: sa.Engine, token: str, expected: int
) -> None:
    for method in ("GET", "POST"):
        response = client.request(method, f"/confirm/{token}")
        assert response.status_code == expected, (method, token[:20], response.status_code)
        assert "Traceback" not in response.text
        if expected == 400:
            assert "not valid" in response.text, (method, token[:20])
    with session_scope(sqlite_engine) as session:
        assert sum(subscriber_store.count_by_status(session).values()) == 0


def test_unsubscribe_token_is_not_a_confirm_token(client: TestClient, sqlite_engine: sa.Engine) -> None:
    sub = add_subscriber(sqlite_engine, "cross@example.com", status=SubscriberStatus.PENDING)
    response = client.post(f"/confirm/{unsubscribe_token(sub.id)}")
    assert response.status_code == 400
    assert status_of(sqlite_engine, "cross@example.com") == "pending"


def test_confirm_email_over_real_smtp(
    make_app: Callable[..., FastAPI], web_settings: Settings, sqlite_engine: sa.Engine, smtp_server: object
) -> None:
    server: object = smtp_server
    url = server.url()  # type: ignore[attr-defined]
    pool = open_transport(url, pool_size=1, timeout=10)
    app = make_app(transport=pool)
    try:
        with TestClient(app, base_url=BASE_URL) as c:
            assert c.post("/subscribe", data={"email": "smtp.reader@example.com"}).status_code == 200
            received = server.messages  # type: ignore[attr-defined]
            assert len(received) == 1 and received[0].rcpt_tos == ("smtp.reader@example.com",)
            body = text_part(parse(received[0].data))
            link = next(u for u in LINK_RE.findall(body) if "/confirm/" in u)
            assert c.get(path_of(link)).status_code == 200
            assert c.post(path_of(link)).status_code == 200
    finally:
        pool.close()
    assert status_of(sqlite_engine, "smtp.reader@example.com") == "active"


def test_unreachable_mail_server_still_answers_the_page(
    make_app: Callable[..., FastAPI], sqlite_engine: sa.Engine
) -> None:
    from tests.fixtures.smtp import free_port

    pool = open_transport(f"smtp://127.0.0.1:{free_port()}?starttls=off", pool_size=1, timeout=2)
    app = make_app(transport=pool)
    try:
        with TestClient(app, base_url=BASE_URL) as c:
            response = c.post("/subscribe", data={"email": "later@example.com"})
    finally:
        pool.close()
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert status_of(sqlite_engine, "later@example.com") == "pending"


# --------------------------------------------------------------------------- one-click unsubscribe


@pytest.mark.parametrize("style", ["urlencoded", "multipart", "empty"])
def test_one_click_unsubscribe(
    anon: TestClient, sqlite_engine: sa.Engine, web_clock: ManualClock, style: str
) -> None:
    sub = add_subscriber(sqlite_engine, "one.click@example.com", "One")
    url = f"/unsubscribe/{unsubscribe_token(sub.id)}"
    anon.cookies.clear()
    if style == "urlencoded":
        response = anon.post(url, data={"List-Unsubscribe": "One-Click"})
    elif style == "multipart":
        response = anon.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert response.request.headers["content-type"].startswith("multipart/form-data")
    else:
        response = anon.post(url)
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    assert "You are unsubscribed" in response.text
    assert 'action="' + url + '/resubscribe"' in response.text
    assert status_of(sqlite_engine, "one.click@example.com") == "unsubscribed"  # committed before the answer
    assert sub_unsubscribed_at(sqlite_engine, sub.id) == FIXED_NOW

    web_clock.advance(timedelta(hours=3))  # the provider retries the POST later
    replay = anon.post(url, data={"List-Unsubscribe": "One-Click"})
    assert replay.status_code == 200 and "location" not in replay.headers
    after = subscriber(sqlite_engine, "one.click@example.com")
    assert after.status == "unsubscribed" and after.unsubscribed_at == FIXED_NOW


def sub_unsubscribed_at(engine: sa.Engine, subscriber_id: int) -> object:
    with session_scope(engine) as session:
        return subscriber_store.get_subscriber(session, subscriber_id).unsubscribed_at


def test_unsubscribe_replay_keeps_the_first_timestamp(
    anon: TestClient, sqlite_engine: sa.Engine, web_clock: ManualClock
) -> None:
    sub = add_subscriber(sqlite_engine, "stamp@example.com")
    url = f"/unsubscribe/{unsubscribe_token(sub.id)}"
    web_clock.advance(timedelta(minutes=10))
    first_at = web_clock.now()
    assert anon.post(url).status_code == 200
    assert sub_unsubscribed_at(sqlite_engine, sub.id) == first_at
    for _ in range(3):
        web_clock.advance(timedelta(hours=1))
        assert anon.post(url).status_code == 200
    assert sub_unsubscribed_at(sqlite_engine, sub.id) == first_at


def test_tampered_and_cross_purpose_tokens_change_nothing(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    a = add_subscriber(sqlite_engine, "alice@example.com")
    b = add_subscriber(sqlite_engine, "bob@example.com")
    good = unsubscribe_token(a.id)
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    signer = LinkSigner([LINK_SECRET])
    other_key = LinkSigner(["a-different-secret-entirely-000"]).unsubscribe_token(b.id)
    # Alice's signature on a payload naming Bob.
    payload_b = signer.unsubscribe_token(b.id).split(".")[0]
    cross = payload_b + "." + good.split(".")[1]
    for token in (
        flipped,
        other_key,
        cross,
        signer.preferences_token(b.id),
        signer.confirm_token(f"s{b.id}.p", now=FIXED_NOW),
        unsubscribe_token(b.id, version=2),  # a version the row has never had
        unsubscribe_token(999_999),
    ):
        for method in ("GET", "POST"):
            response = anon.request(method, f"/unsubscribe/{token}")
            assert response.status_code == 400, (method, token)
            assert "not valid" in response.text
    assert status_of(sqlite_engine, "alice@example.com") == "active"
    assert status_of(sqlite_engine, "bob@example.com") == "active"


def test_one_click_leaves_a_bounced_address_bounced(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    sub = add_subscriber(sqlite_engine, "bounced@example.com")
    with session_scope(sqlite_engine) as session:
        subscriber_store.set_status(session, sub.id, SubscriberStatus.BOUNCED, now=FIXED_NOW)
    response = anon.post(f"/unsubscribe/{unsubscribe_token(sub.id)}")
    assert response.status_code == 200 and "We have stopped sending" in response.text
    assert status_of(sqlite_engine, "bounced@example.com") == "bounced"


def test_get_and_head_never_unsubscribe(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    sub = add_subscriber(sqlite_engine, "scanner.target@example.com")
    url = f"/unsubscribe/{unsubscribe_token(sub.id)}"
    for i in range(300):  # S2: a scanner fetching the link again and again
        response = anon.get(url) if i % 2 == 0 else anon.head(url)
        assert response.status_code == 200
    assert anon.options(url).status_code == 405
    page = anon.get(url)
    assert 'method="post"' in page.text and "s•••@example.com" in page.text
    assert "scanner.target@example.com" not in page.text
    assert status_of(sqlite_engine, "scanner.target@example.com") == "active"


def test_resubscribe_from_the_unsubscribe_page(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    sub = add_subscriber(sqlite_engine, "oops@example.com")
    url = f"/unsubscribe/{unsubscribe_token(sub.id)}"
    anon.post(url)
    back = anon.post(f"{url}/resubscribe")
    assert back.status_code == 200 and "Welcome back" in back.text
    assert status_of(sqlite_engine, "oops@example.com") == "active"
    assert anon.get(f"{url}/resubscribe").status_code == 405


def test_a_rotated_key_still_unsubscribes(
    make_app: Callable[..., FastAPI], web_settings: Settings, sqlite_engine: sa.Engine
) -> None:
    sub = add_subscriber(sqlite_engine, "rotated@example.com")
    old = LinkSigner(["the-key-before-rotation-0000000"]).unsubscribe_token(sub.id)
    settings = web_settings.model_copy(
        update={"secret_key_previous": web_settings.secret_key.__class__("the-key-before-rotation-0000000")}
    )
    with TestClient(make_app(settings=settings), base_url=BASE_URL) as c:
        assert c.post(f"/unsubscribe/{old}").status_code == 200
    assert status_of(sqlite_engine, "rotated@example.com") == "unsubscribed"


# --------------------------------------------------------------------------- preferences


def test_preferences_page(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    sub = add_subscriber(sqlite_engine, "prefs@example.com", "Pat")
    token = LinkSigner([LINK_SECRET]).preferences_token(sub.id)
    page = anon.get(f"/preferences/{token}")
    assert page.status_code == 200 and "p•••@example.com" in page.text and "Subscribed" in page.text
    assert status_of(sqlite_engine, "prefs@example.com") == "active"
    out = anon.post(f"/preferences/{token}", data={"action": "unsubscribe"})
    assert out.status_code == 200 and "You are unsubscribed" in out.text
    assert status_of(sqlite_engine, "prefs@example.com") == "unsubscribed"
    back = anon.post(f"/preferences/{token}", data={"action": "resubscribe"})
    assert back.status_code == 200 and "subscribed again" in back.text
    assert status_of(sqlite_engine, "prefs@example.com") == "active"
    assert anon.post(f"/preferences/{token}", data={"action": "delete-everything"}).status_code == 400
    assert anon.get(f"/preferences/{unsubscribe_token(sub.id)}").status_code == 400


# --------------------------------------------------------------------------- scanners


def _edition_links(engine: sa.Engine, settings: Settings, address: str) -> list[str]:
    result = edition_service.preview(
        engine, edition_setup(settings), EDITION_DAY, clock=ManualClock(FIXED_NOW), as_email=address
    )
    found = set(LINK_RE.findall(html.unescape(result.html))) | set(LINK_RE.findall(result.text))
    eml = parse(result.eml)
    found |= set(LINK_RE.findall(str(eml["List-Unsubscribe"])))
    return sorted(found)


def test_scanner_fetching_every_link_changes_nothing(
    anon: TestClient, sqlite_engine: sa.Engine, web_settings: Settings, mailbox: MemoryTransport
) -> None:
    queue_stories(sqlite_engine)
    add_subscriber(sqlite_engine, "scanned@example.com", "Scan")
    anon.post("/subscribe", data={"email": "unconfirmed@example.com"})
    links = [*_edition_links(sqlite_engine, web_settings, "scanned@example.com"), confirm_link(mailbox)]
    assert any("/unsubscribe/" in u for u in links) and any("/preferences/" in u for u in links)
    assert any("/confirm/" in u for u in links)
    for url in links:
        for method in ("GET", "HEAD", "OPTIONS"):
            response = anon.request(method, path_of(url))
            assert response.status_code < 500, (method, url)
    assert status_of(sqlite_engine, "scanned@example.com") == "active"
    assert status_of(sqlite_engine, "unconfirmed@example.com") == "pending"


# --------------------------------------------------------------------------- archive


def test_archive_shows_sent_editions_without_personal_data(
    anon: TestClient, sqlite_engine: sa.Engine, web_settings: Settings
) -> None:
    queue_stories(sqlite_engine, headline="Budget <b>passes</b> & more")
    add_subscriber(sqlite_engine, "private.person@example.com", "Zebedee")
    assert anon.get(f"/archive/{EDITION_DAY.isoformat()}").status_code == 404
    outcome = send_edition(sqlite_engine, web_settings, MemoryTransport())
    assert outcome.edition.status == "sent"

    listing = anon.get("/archive")
    assert listing.status_code == 200 and f"/archive/{EDITION_DAY.isoformat()}" in listing.text
    page = anon.get(f"/archive/{EDITION_DAY.isoformat()}")
    assert page.status_code == 200
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for leak in ("Zebedee", "private.person", "%%", "/unsubscribe/", "/preferences/"):
        assert leak not in page.text, leak
    assert f'href="{BASE_URL}/subscribe"' in page.text and ">Subscribe</a>" in page.text
    assert "Manage your preferences" not in page.text and ">Unsubscribe</a>" not in page.text
    assert "Budget &lt;b&gt;passes&lt;/b&gt; &amp; more" in page.text

    assert anon.get("/archive/2026-13-45").status_code == 400
    assert anon.get("/archive/not-a-date").status_code == 400


def test_feed_is_valid_rss(anon: TestClient, sqlite_engine: sa.Engine, web_settings: Settings) -> None:
    queue_stories(sqlite_engine, headline='Rates & "rents" <rise>')
    add_subscriber(sqlite_engine, "feed.reader@example.com")
    send_edition(sqlite_engine, web_settings, MemoryTransport())
    response = anon.get("/archive/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/rss+xml")
    root = ET.fromstring(response.content)
    assert root.tag == "rss" and root.get("version") == "2.0"
    items = root.findall("./channel/item")
    assert len(items) == 1
    assert items[0].findtext("title", "").startswith('Rates & "rents" <rise>')
    assert items[0].findtext("link") == f"{BASE_URL}/archive/{EDITION_DAY.isoformat()}"
    assert items[0].findtext("pubDate") == "Sun, 29 Nov 2026 12:00:00 +0000"  # when the send started


# --------------------------------------------------------------------------- every page


def test_security_headers_on_every_public_page(anon: TestClient) -> None:
    for path in ("/subscribe", "/archive", "/login", "/no-such-page", "/unsubscribe/bad"):
        response = anon.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_bad_requests_never_500(anon: TestClient) -> None:
    cases = [
        (
            "POST",
            "/subscribe",
            {"content": b"\xff\xfe", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        ),
        (
            "POST",
            "/subscribe",
            {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
        ),
        ("POST", "/subscribe", {"data": {"email": "a" * 5000}}),
        (
            "POST",
            "/subscribe",
            {"content": b"x" * (2 * 1024 * 1024), "headers": {"content-type": "text/plain"}},
        ),
        ("GET", "/archive/%00", {}),
        ("GET", "/confirm/%ff%fe", {}),
        ("POST", "/preferences/abc", {"data": {"action": "x" * 100}}),
        ("DELETE", "/subscribe", {}),
    ]
    for method, path, kwargs in cases:
        response = anon.request(method, path, **kwargs)
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert "Traceback" not in response.text


def test_healthz(anon: TestClient) -> None:
    assert anon.get("/healthz").text == "ok"


def test_confirmation_token_payload_carries_no_address(sqlite_engine: sa.Engine) -> None:
    sub = add_subscriber(sqlite_engine, "hidden@example.com", status=SubscriberStatus.PENDING)

    with session_scope(sqlite_engine) as session:
        state = subscriber_store.link_state(session, sub.id)
    assert state is not None
    token = confirmations.make_token(LinkSigner([LINK_SECRET]), state, now=FIXED_NOW)
    assert token is not None and "hidden" not in token
    import base64

    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b"@" not in decoded
    claim = confirmations.read_token(LinkSigner([LINK_SECRET]), token, timedelta(days=7), now=FIXED_NOW)
    assert claim.subscriber_id == sub.id
