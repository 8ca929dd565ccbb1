"""Several newsletters, seen by their readers: sign up to one, confirm once, leave one, choose sections.

Runs the real web app on a real SQLite file; sign-up mail goes over real SMTP to the loopback test
server, so each confirm or preferences link is the one a reader would click. Import and export run
through the service and the `briefing` command.
"""

from __future__ import annotations

import csv
import email
import io
import json
import re
from collections.abc import Callable, Iterator
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.edition.sections import variant_key
from briefing.errors import ImportFileError
from briefing.links import LinkSigner
from briefing.mail.pool import open_transport
from briefing.newsletter import PRIMARY_ID, NewsletterData
from briefing.service import subscribers as subscriber_service
from briefing.store import newsletters as newsletter_store
from briefing.store import subscriptions as subscription_store
from briefing.store.subscriptions import SubscriptionData
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.clock import T0
from tests.fixtures.smtp import SmtpTestServer
from tests.fixtures.web import BASE_URL, FIXED_NOW, LINK_SECRET, add_subscriber, subscriber

pytestmark = pytest.mark.timeout(120)

SIGNER = LinkSigner([LINK_SECRET])
LINK_RE = re.compile(r"https://news\.example\.com/[A-Za-z0-9_\-./%?=]+")
SECTIONS = ["Politics", "Sport", "Culture"]


def add_weekend(engine: sa.Engine, **values: object) -> NewsletterData:
    fields: dict[str, object] = {
        "name": "The Weekend",
        "sections_optional": True,
        "section_order": SECTIONS,
        "position": 1,
    }
    fields.update(values)
    with session_scope(engine) as session:
        return newsletter_store.add_newsletter(session, "weekend", fields, now=FIXED_NOW)


def first_slug(engine: sa.Engine) -> str:
    with Session(engine) as session:
        return newsletter_store.primary(session).slug


def subscriptions(engine: sa.Engine, address: str) -> dict[int, SubscriptionData]:
    sid = subscriber(engine, address).id
    with Session(engine) as session:
        return {s.newsletter_id: s for s in subscription_store.of_reader(session, sid)}


def active_on(engine: sa.Engine, address: str) -> set[int]:
    return {nid for nid, s in subscriptions(engine, address).items() if s.active}


def parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=default_policy)


def text_of(data: bytes) -> str:
    message = parse(data)
    return "".join(
        str(p.get_content())  # type: ignore[attr-defined]
        for p in message.walk()
        if p.get_content_type() == "text/plain"
    )


def links_in(data: bytes, kind: str) -> list[str]:
    return [urlsplit(u).path for u in LINK_RE.findall(text_of(data)) if f"/{kind}/" in u]


def unsubscribe_path(sid: int, slug: str | None = None) -> str:
    path = f"/unsubscribe/{SIGNER.unsubscribe_token(sid, 1)}"
    return path if slug is None else f"{path}?list={slug}"


def preferences_path(sid: int) -> str:
    return f"/preferences/{SIGNER.preferences_token(sid, 1)}"


@pytest.fixture
def smtp_client(
    make_app: Callable[..., FastAPI], smtp_server: SmtpTestServer
) -> Iterator[tuple[TestClient, SmtpTestServer]]:
    """The app sending its sign-up mail over real SMTP to the loopback test server."""
    pool = open_transport(smtp_server.url(), pool_size=1, timeout=10)
    try:
        with TestClient(make_app(transport=pool), base_url=BASE_URL, follow_redirects=False) as c:
            yield c, smtp_server
    finally:
        pool.close()


def table_counts(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the reader tables, to show that a refused request changed nothing."""
    with engine.connect() as conn:
        return {
            table: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in ("subscriber", "subscription", "newsletter")
        }


# --------------------------------------------------------------------------- sign-up


def test_the_subscribe_page_lists_open_newsletters_with_the_first_ticked(
    client: TestClient, sqlite_engine: sa.Engine
) -> None:
    add_weekend(sqlite_engine)
    with session_scope(sqlite_engine) as session:
        newsletter_store.add_newsletter(session, "summer", {"name": "Summer", "paused": True}, now=FIXED_NOW)
    page = client.get("/subscribe")
    assert page.status_code == 200
    boxes = re.findall(r'<input id="newsletter-[^>]*>', page.text)
    assert [re.findall(r'value="([^"]+)"', b) for b in boxes] == [[first_slug(sqlite_engine)], ["weekend"]]
    assert "checked" in boxes[0] and "checked" not in boxes[1]
    assert "Summer" not in page.text, "a paused newsletter takes no sign-ups"
    one = client.get("/subscribe/weekend")
    assert one.status_code == 200 and 'action="/subscribe/weekend"' in one.text and "The Weekend" in one.text
    assert client.get("/subscribe/summer").status_code == 404


def test_sign_up_for_the_weekend_then_confirm_is_active_on_the_weekend_only(
    smtp_client: tuple[TestClient, SmtpTestServer], sqlite_engine: sa.Engine
) -> None:
    client, server = smtp_client
    weekend = add_weekend(sqlite_engine)
    answer = client.post("/subscribe/weekend", data={"email": "sat.reader@example.com", "name": "Sam"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert subscriber(sqlite_engine, "sat.reader@example.com").status == "pending"
    assert active_on(sqlite_engine, "sat.reader@example.com") == {weekend.id}  # takes effect once confirmed

    assert len(server.messages) == 1 and server.messages[0].rcpt_tos == ("sat.reader@example.com",)
    assert "The Weekend" in str(parse(server.messages[0].data)["Subject"])
    (confirm,) = links_in(server.messages[0].data, "confirm")
    assert client.post(confirm).status_code == 200

    assert subscriber(sqlite_engine, "sat.reader@example.com").status == "active"
    assert active_on(sqlite_engine, "sat.reader@example.com") == {weekend.id}
    with Session(sqlite_engine) as session:
        assert subscription_store.readers_of(session, weekend.id).emails == ("sat.reader@example.com",)
        assert subscription_store.readers_of(session, PRIMARY_ID).count == 0


def test_signing_up_on_the_list_page_takes_the_newsletters_ticked(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: object
) -> None:
    weekend = add_weekend(sqlite_engine)
    form = {
        "email": "both@example.com",
        "choosing": "1",
        "newsletter": [first_slug(sqlite_engine), "weekend"],
    }
    assert client.post("/subscribe", data=form).status_code == 200
    assert active_on(sqlite_engine, "both@example.com") == {PRIMARY_ID, weekend.id}
    none = client.post("/subscribe", data={"email": "none@example.com", "choosing": "1"})
    assert none.status_code == 400 and "newsletter" in none.text
    with Session(sqlite_engine) as session:
        assert subscriber_service.subscriber_by_email(session, "both@example.com").status == "pending"


def test_a_confirmed_reader_signing_up_for_another_list_gets_a_preferences_link_and_no_change(
    smtp_client: tuple[TestClient, SmtpTestServer], sqlite_engine: sa.Engine
) -> None:
    client, server = smtp_client
    add_weekend(sqlite_engine)
    reader = add_subscriber(sqlite_engine, "morning@example.com", "Mo")
    before = table_counts(sqlite_engine)

    answer = client.post("/subscribe/weekend", data={"email": "morning@example.com"})

    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert table_counts(sqlite_engine) == before, "typing an address into the form adds it to nothing"
    assert active_on(sqlite_engine, "morning@example.com") == {PRIMARY_ID}
    assert len(server.messages) == 1
    message = server.messages[0]
    assert "choose your newsletters here" in str(parse(message.data)["Subject"])
    assert "Choose your newsletters here" in text_of(message.data)
    assert links_in(message.data, "confirm") == []
    (link,) = links_in(message.data, "preferences")
    assert link == preferences_path(reader.id)
    assert client.get(link).status_code == 200
    # On the newsletter already: nothing to choose, so no email either.
    assert client.post("/subscribe", data={"email": "morning@example.com"}).status_code == 200
    assert len(server.messages) == 1


# --------------------------------------------------------------------------- one-click unsubscribe


def on_both(engine: sa.Engine, address: str) -> tuple[int, NewsletterData]:
    weekend = add_weekend(engine)
    reader = add_subscriber(engine, address)
    with session_scope(engine) as session:
        subscription_store.subscribe(session, [reader.id], [weekend.id], now=FIXED_NOW)
    assert active_on(engine, address) == {PRIMARY_ID, weekend.id}
    return reader.id, weekend


@pytest.mark.parametrize("style", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_of_the_weekend_link_leaves_the_weekend_only(
    anon: TestClient, sqlite_engine: sa.Engine, style: str
) -> None:
    sid, weekend = on_both(sqlite_engine, "two.lists@example.com")
    url = unsubscribe_path(sid, "weekend")
    anon.cookies.clear()
    if style == "urlencoded":
        response = anon.post(url, data={"List-Unsubscribe": "One-Click"})
    else:
        response = anon.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200 and "location" not in response.headers
    assert "You are unsubscribed" in response.text and "The Weekend" in response.text
    assert f'action="/unsubscribe/{SIGNER.unsubscribe_token(sid, 1)}/all?list=weekend"' in response.text
    assert preferences_path(sid) in response.text
    assert active_on(sqlite_engine, "two.lists@example.com") == {PRIMARY_ID}
    assert subscriber(sqlite_engine, "two.lists@example.com").status == "active"
    assert subscriptions(sqlite_engine, "two.lists@example.com")[weekend.id].status == "unsubscribed"


def test_resubscribe_from_the_weekend_page_puts_them_back_on_the_weekend(
    anon: TestClient, sqlite_engine: sa.Engine
) -> None:
    sid, weekend = on_both(sqlite_engine, "back.again@example.com")
    url = unsubscribe_path(sid, "weekend")
    anon.post(url)
    token = SIGNER.unsubscribe_token(sid, 1)
    back = anon.post(f"/unsubscribe/{token}/resubscribe?list=weekend")
    assert back.status_code == 200 and "Welcome back" in back.text and "The Weekend" in back.text
    assert active_on(sqlite_engine, "back.again@example.com") == {PRIMARY_ID, weekend.id}


def test_the_leave_all_button_leaves_every_newsletter(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    sid, weekend = on_both(sqlite_engine, "leaving@example.com")
    token = SIGNER.unsubscribe_token(sid, 1)
    shown = anon.get(f"/unsubscribe/{token}?list=weekend")
    assert shown.status_code == 200 and "Leave all our newsletters" in shown.text
    assert active_on(sqlite_engine, "leaving@example.com") == {PRIMARY_ID, weekend.id}, "GET changes nothing"

    gone = anon.post(f"/unsubscribe/{token}/all?list=weekend")

    assert gone.status_code == 200 and "You have left all our newsletters" in gone.text
    after = subscriber(sqlite_engine, "leaving@example.com")
    assert after.status == "unsubscribed" and after.unsubscribed_at == FIXED_NOW
    assert active_on(sqlite_engine, "leaving@example.com") == set()


def test_an_old_link_without_list_leaves_the_first_newsletter(
    anon: TestClient, sqlite_engine: sa.Engine
) -> None:
    sid, weekend = on_both(sqlite_engine, "old.link@example.com")
    response = anon.post(unsubscribe_path(sid))
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert active_on(sqlite_engine, "old.link@example.com") == {weekend.id}
    assert subscriber(sqlite_engine, "old.link@example.com").status == "active"
    # Leaving the last newsletter it was on unsubscribes the address, as before there were several.
    anon.post(unsubscribe_path(sid, "weekend"))
    assert subscriber(sqlite_engine, "old.link@example.com").status == "unsubscribed"


# --------------------------------------------------------------------------- preferences


def test_preferences_save_newsletters_sections_and_specials(
    anon: TestClient, sqlite_engine: sa.Engine
) -> None:
    weekend = add_weekend(sqlite_engine)
    reader = add_subscriber(sqlite_engine, "chooser@example.com")
    path = preferences_path(reader.id)
    page = anon.get(path)
    assert page.status_code == 200
    assert (
        'value="weekend:Sport"' in page.text
        and 'name="specials" type="checkbox" value="weekend"' in page.text
    )
    assert active_on(sqlite_engine, "chooser@example.com") == {PRIMARY_ID}, "GET changes nothing"
    first = first_slug(sqlite_engine)

    saved = anon.post(
        path,
        data={
            "action": "save",
            "shown": [first, "weekend"],
            "newsletter": ["weekend"],
            "sectioned": ["weekend"],
            "section": ["weekend:Politics", "weekend:Culture"],
            "specials": [],
        },
    )

    assert saved.status_code == 200 and "Your choices are saved" in saved.text
    mine = subscriptions(sqlite_engine, "chooser@example.com")
    assert {nid for nid, s in mine.items() if s.active} == {weekend.id}
    assert mine[weekend.id].excluded_sections == ("Sport",) and mine[weekend.id].specials is False
    with sqlite_engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT variant FROM subscription WHERE subscriber_id = :s AND newsletter_id = :n"),
            {"s": reader.id, "n": weekend.id},
        ).scalar_one()
    assert stored == variant_key(["Sport"]) == '["sport"]'
    assert subscriber(sqlite_engine, "chooser@example.com").status == "active"

    every = anon.post(
        path,
        data={
            "action": "save",
            "shown": ["weekend"],
            "newsletter": ["weekend"],
            "sectioned": ["weekend"],
            "section": [f"weekend:{s}" for s in SECTIONS],
            "specials": ["weekend"],
        },
    )
    assert every.status_code == 200
    mine = subscriptions(sqlite_engine, "chooser@example.com")
    assert (mine[weekend.id].excluded_sections, mine[weekend.id].specials) == ((), True)
    with sqlite_engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT variant FROM subscription WHERE newsletter_id = :n"), {"n": weekend.id}
            ).scalar_one()
            == ""
        )


def test_preferences_leave_everything_and_come_back(anon: TestClient, sqlite_engine: sa.Engine) -> None:
    sid, weekend = on_both(sqlite_engine, "round.trip@example.com")
    path = preferences_path(sid)
    out = anon.post(path, data={"action": "unsubscribe"})
    assert out.status_code == 200 and "You are unsubscribed" in out.text
    assert active_on(sqlite_engine, "round.trip@example.com") == set()
    back = anon.post(path, data={"action": "resubscribe"})
    assert back.status_code == 200 and "subscribed again" in back.text
    assert active_on(sqlite_engine, "round.trip@example.com") == {PRIMARY_ID, weekend.id}
    assert subscriber(sqlite_engine, "round.trip@example.com").status == "active"


# --------------------------------------------------------------------------- hostile input


def test_hostile_slugs_and_forms_are_4xx_and_change_nothing(
    anon: TestClient, sqlite_engine: sa.Engine, mailbox: object
) -> None:
    sid, _ = on_both(sqlite_engine, "target@example.com")
    token = SIGNER.unsubscribe_token(sid, 1)
    before = table_counts(sqlite_engine)
    cases: list[tuple[str, str, dict[str, object]]] = [
        ("GET", "/subscribe/no-such-list", {}),
        ("POST", "/subscribe/no-such-list", {"data": {"email": "x@example.com"}}),
        ("GET", "/subscribe/%27%20OR%201%3D1--", {}),
        ("POST", "/subscribe/" + "a" * 300, {"data": {"email": "x@example.com"}}),
        ("POST", "/subscribe", {"data": {"email": "x@example.com", "newsletter": "<script>"}}),
        ("POST", "/subscribe", {"data": {"email": "x@example.com", "newsletter": ["weekend"] * 500}}),
        ("GET", f"/unsubscribe/{token}?list=nope", {}),
        ("POST", f"/unsubscribe/{token}?list=nope", {}),
        ("POST", f"/unsubscribe/{token}?list=" + "w" * 100, {}),
        ("POST", f"/unsubscribe/{token}/resubscribe?list=%00", {}),
        ("POST", f"/unsubscribe/{token}/all?list=..%2F..", {}),
        ("POST", "/unsubscribe/not-a-token/all?list=weekend", {}),
        ("POST", preferences_path(sid), {"data": {"action": "save", "shown": "nope", "newsletter": "nope"}}),
        (
            "POST",
            preferences_path(sid),
            {
                "data": {
                    "action": "save",
                    "shown": "weekend",
                    "sectioned": "weekend",
                    "section": "weekend:Crime",
                }
            },
        ),
        (
            "POST",
            preferences_path(sid),
            {"data": {"action": "save", "shown": "weekend", "newsletter": "weekend", "sectioned": "weekend"}},
        ),
        ("POST", preferences_path(sid), {"data": {"action": "save", "section": "no colon"}}),
        ("POST", f"/preferences/{token}", {"data": {"action": "save"}}),
    ]
    for method, path, kwargs in cases:
        response = anon.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert 400 <= response.status_code < 500, (method, path[:80], response.status_code)
        assert "Traceback" not in response.text and "<script>" not in response.text
    assert table_counts(sqlite_engine) == before
    assert mailbox.messages == []  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- import and export


def test_import_takes_a_newsletters_column(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    weekend = add_weekend(sqlite_engine)
    f = tmp_path / "list.csv"
    f.write_text(
        "email,name,newsletters\n"
        "both@example.com,Both,briefing weekend\n"
        "sat@example.com,Sat,WEEKEND\n"
        "plain@example.com,Plain,\n".replace("briefing weekend", f"{first_slug(sqlite_engine)};weekend"),
        encoding="utf-8",
    )

    report = subscriber_service.import_subscribers(sqlite_engine, f, now=T0)

    assert report.counts.added == 3 and report.counts.rejected == 0
    assert active_on(sqlite_engine, "both@example.com") == {PRIMARY_ID, weekend.id}
    assert active_on(sqlite_engine, "sat@example.com") == {weekend.id}
    assert active_on(sqlite_engine, "plain@example.com") == {PRIMARY_ID}
    assert subscriber(sqlite_engine, "both@example.com").attributes == {}, "the column is not an attribute"


def test_an_unknown_slug_in_the_newsletters_column_imports_nothing(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    add_weekend(sqlite_engine)
    f = tmp_path / "list.csv"
    f.write_text(
        "email,newsletters\nfine@example.com,weekend\ntypo@example.com,weekend;wekend\n", encoding="utf-8"
    )
    with pytest.raises(ImportFileError, match=r"line 3: newsletters: there is no newsletter 'wekend'"):
        subscriber_service.import_subscribers(sqlite_engine, f, now=T0)
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM subscriber")).scalar_one() == 0


def test_import_newsletter_option_and_list_filter(tmp_path: Path) -> None:
    env = cli_env(tmp_path, secret_key=LINK_SECRET)
    ok(env, "init")
    engine = make_engine(env["BRIEFING_DATABASE_URL"])
    try:
        weekend = add_weekend(engine)
        f = tmp_path / "list.csv"
        f.write_text("email\nsat@example.com\nsun@example.com\n", encoding="utf-8")
        ok(env, "subscribers", "import", str(f), "--newsletter", "weekend")
        assert active_on(engine, "sat@example.com") == {weekend.id}
        ok(env, "subscribers", "add", "mon@example.com")
        listed = ok(env, "subscribers", "list", "--newsletter", "weekend", "--json")
        assert sorted(r["email"] for r in json.loads(listed)) == ["sat@example.com", "sun@example.com"]
        assert all(r["newsletters"] == ["weekend"] for r in json.loads(listed))
        code, out = run(env, "subscribers", "import", str(f), "--newsletter", "nope")
        assert code == 1 and "--newsletter" in out and "nope" in out
    finally:
        engine.dispose()


def test_export_writes_newsletters_and_imports_again_to_the_same_subscriptions(
    sqlite_engine: sa.Engine, tmp_path: Path
) -> None:
    sid, _ = on_both(sqlite_engine, "both@example.com")
    add_subscriber(sqlite_engine, "morning.only@example.com")
    with sqlite_engine.begin() as conn:
        subscriber_service.unsubscribe_by_link(conn, sid, 1, newsletter_id=PRIMARY_ID, now=FIXED_NOW)
    first = first_slug(sqlite_engine)
    out = io.StringIO()
    subscriber_service.export_subscribers(sqlite_engine, out)
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows["both@example.com"]["newsletters"] == "weekend"
    assert rows["morning.only@example.com"]["newsletters"] == first

    exported = tmp_path / "all.csv"
    exported.write_text(out.getvalue(), encoding="utf-8")
    elsewhere = sa.create_engine(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    upgrade(elsewhere)
    try:
        add_weekend(elsewhere)
        subscriber_service.import_subscribers(elsewhere, exported, now=T0)
        for address in rows:
            assert sorted(active_on(elsewhere, address)) == sorted(active_on(sqlite_engine, address)), address
        again = io.StringIO()
        subscriber_service.export_subscribers(elsewhere, again)
        assert [r["newsletters"] for r in csv.DictReader(io.StringIO(again.getvalue()))] == [
            r["newsletters"] for r in rows.values()
        ]
    finally:
        elsewhere.dispose()
