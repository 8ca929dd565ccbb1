"""The web app with several newsletters: an archive and a feed each, editors' pages per newsletter.

Two newsletters on one real SQLite file, each with an edition sent through the real send path
(MemoryTransport keeps the messages), then read back through the real app: what one newsletter's
readers see never includes the other's, and the addresses in emails sent before there were
several newsletters still lead to the first one's editions.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.config import Settings
from briefing.db import session_scope
from briefing.mail.transport import MemoryTransport
from briefing.newsletter import NewsletterData
from briefing.service import editions as edition_service
from briefing.service import stories as story_service
from briefing.store import newsletters as newsletter_store
from briefing.store import sponsors as sponsor_store
from briefing.store import stories as story_store
from briefing.store import subscriptions as subscription_store
from briefing.store.sponsors import SponsorSlotData
from briefing.wiring import edition_setup_now
from tests.fixtures.clock import ManualClock
from tests.fixtures.web import BASE_URL, EDITION_DAY, FIXED_NOW, add_subscriber, csrf_token

pytestmark = pytest.mark.timeout(120)

DAY = EDITION_DAY.isoformat()
FIRST_HEADLINE = "Council approves the budget"
WEEKEND_HEADLINE = "A long read for a slow Saturday"
INSIDERS_HEADLINE = "What the members heard first"


@dataclass
class Newsroom:
    first: NewsletterData
    weekend: NewsletterData
    sent: dict[str, MemoryTransport]


def add_newsletter(engine: sa.Engine, slug: str, name: str, **values: object) -> NewsletterData:
    with session_scope(engine) as session:
        return newsletter_store.add_newsletter(session, slug, {"name": name, **values}, now=FIXED_NOW)


def queue_for(
    engine: sa.Engine, newsletter: NewsletterData, headline: str, n: int = 2, day: date = EDITION_DAY
) -> None:
    with session_scope(engine) as session:
        for i in range(n):
            story_service.add_story(
                session,
                story_service.StoryRequest(
                    url=f"https://news.example.com/{newsletter.slug}/story-{i}",
                    headline=f"{headline} ({i})",
                    blurb="What happened, and why it matters.",
                    section="News",
                    status="ready",
                    edition_date=day,
                    lead=i == 0,
                    newsletter_id=newsletter.id,
                ),
                now=FIXED_NOW,
            )


def send(engine: sa.Engine, settings: Settings, newsletter: NewsletterData) -> MemoryTransport:
    """The edition of EDITION_DAY through the real send path, as the scheduler would send it."""
    mail = MemoryTransport()
    setup = edition_setup_now(settings, engine, newsletter=newsletter)
    outcome = edition_service.send_edition(
        engine, setup, EDITION_DAY, mail, force=True, clock=ManualClock(FIXED_NOW)
    )
    assert outcome.edition.status == "sent", outcome.message
    return mail


def readers_of(engine: sa.Engine, newsletter: NewsletterData, *emails: str) -> None:
    ids = [add_subscriber(engine, email).id for email in emails]
    with session_scope(engine) as session:
        subscription_store.subscribe(session, ids, [newsletter.id], now=FIXED_NOW)


@pytest.fixture
def room(sqlite_engine: sa.Engine, web_settings: Settings) -> Newsroom:
    """The first newsletter and "weekend", each with a sent edition of EDITION_DAY."""
    with Session(sqlite_engine) as session:
        first = newsletter_store.primary(session)
    weekend = add_newsletter(sqlite_engine, "weekend", "The Weekend Edition")
    queue_for(sqlite_engine, first, FIRST_HEADLINE)
    queue_for(sqlite_engine, weekend, WEEKEND_HEADLINE)
    readers_of(sqlite_engine, weekend, "both@example.org")  # on the first one too (add_subscriber)
    sent = {n.slug: send(sqlite_engine, web_settings, n) for n in (first, weekend)}
    return Newsroom(first, weekend, sent)


def feed_links(client: TestClient, path: str) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    assert response.headers["content-type"].startswith("application/rss+xml")
    return [item.findtext("link", "") for item in ET.fromstring(response.content).findall("./channel/item")]


# --------------------------------------------------------------------------- the archive


def test_each_archive_shows_only_its_own_editions(anon: TestClient, room: Newsroom) -> None:
    first, weekend = f"/archive/{room.first.slug}", "/archive/weekend"

    first_index = anon.get(f"{first}/")
    weekend_index = anon.get(f"{weekend}/")
    assert first_index.status_code == weekend_index.status_code == 200
    assert f'href="{first}/{DAY}"' in first_index.text and f"{weekend}/{DAY}" not in first_index.text
    assert f'href="{weekend}/{DAY}"' in weekend_index.text and f"{first}/{DAY}" not in weekend_index.text
    assert WEEKEND_HEADLINE not in first_index.text and FIRST_HEADLINE not in weekend_index.text
    assert 'href="/archive/weekend/feed.xml"' in weekend_index.text
    assert 'href="/subscribe/weekend"' in weekend_index.text

    first_page = anon.get(f"{first}/{DAY}")
    weekend_page = anon.get(f"{weekend}/{DAY}")
    assert FIRST_HEADLINE in first_page.text and WEEKEND_HEADLINE not in first_page.text
    assert WEEKEND_HEADLINE in weekend_page.text and FIRST_HEADLINE not in weekend_page.text
    assert "default-src 'none'" in weekend_page.headers["content-security-policy"]
    assert f'href="{BASE_URL}/subscribe/weekend"' in weekend_page.text  # "Unsubscribe" became this
    for leak in ("both@example.org", "%%", "/unsubscribe/", "/preferences/"):
        assert leak not in weekend_page.text, leak

    assert anon.head(f"{weekend}/{DAY}").status_code == 200
    assert anon.get(f"{weekend}/2026-12-01").status_code == 404  # nothing sent that day
    assert anon.get(f"{weekend}/{DAY}/special-1").status_code == 404  # no such special
    assert anon.get(f"{weekend}/{DAY}/not-a-kind").status_code == 400
    assert anon.post(f"{weekend}/{DAY}").status_code == 405


def test_each_feed_lists_only_its_own_editions(anon: TestClient, room: Newsroom) -> None:
    assert feed_links(anon, f"/archive/{room.first.slug}/feed.xml") == [
        f"{BASE_URL}/archive/{room.first.slug}/{DAY}"
    ]
    assert feed_links(anon, "/archive/weekend/feed.xml") == [f"{BASE_URL}/archive/weekend/{DAY}"]
    channel = ET.fromstring(anon.get("/archive/weekend/feed.xml").content).find("channel")
    assert channel is not None and channel.findtext("title") == "The Weekend Edition"


def test_an_email_only_newsletter_has_no_archive_and_its_email_no_web_link(
    anon: TestClient, sqlite_engine: sa.Engine, web_settings: Settings, room: Newsroom
) -> None:
    insiders = add_newsletter(sqlite_engine, "insiders", "Insiders", archive="email")
    queue_for(sqlite_engine, insiders, INSIDERS_HEADLINE)
    readers_of(sqlite_engine, insiders, "member@example.net")
    mail = send(sqlite_engine, web_settings, insiders)

    for path in ("/archive/insiders/", "/archive/insiders/feed.xml", f"/archive/insiders/{DAY}"):
        response = anon.get(path)
        assert response.status_code == 404, path
        assert INSIDERS_HEADLINE not in response.text and "Traceback" not in response.text
    # Exactly what a slug nobody uses answers: an email-only archive does not reveal itself.
    assert anon.get("/archive/nobody-uses-this/").status_code == 404
    assert anon.get("/archive/nobody-uses-this/feed.xml").status_code == 404
    assert anon.get("/archive/Not%20A%20Slug/").status_code == 404
    assert "insiders" not in anon.get("/archive").text

    assert len(mail.messages) == 1
    message = message_from_bytes(mail.messages[0].data, policy=default_policy)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert INSIDERS_HEADLINE in html and INSIDERS_HEADLINE in text
    for part in (html, text):
        assert "View in your browser" not in part and "/archive/" not in part
    # The web newsletters' emails do carry the link, to their own archive.
    weekend_copy = message_from_bytes(room.sent["weekend"].messages[0].data, policy=default_policy)
    weekend_html = weekend_copy.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f'href="{BASE_URL}/archive/weekend/{DAY}"' in weekend_html


def test_old_archive_addresses_still_show_the_first_newsletter(anon: TestClient, room: Newsroom) -> None:
    page = anon.get(f"/archive/{DAY}")  # the link in emails sent before there were several
    assert page.status_code == 200
    assert FIRST_HEADLINE in page.text and WEEKEND_HEADLINE not in page.text
    assert f'href="{BASE_URL}/subscribe"' in page.text

    listing = anon.get("/archive")
    assert listing.status_code == 200
    assert f'href="/archive/{DAY}"' in listing.text and WEEKEND_HEADLINE not in listing.text
    assert 'href="/archive/weekend/"' in listing.text  # the other archive, one click away
    assert feed_links(anon, "/archive/feed.xml") == [f"{BASE_URL}/archive/{DAY}"]

    bare = anon.get("/archive/weekend")  # a slug typed without its slash
    assert bare.status_code == 308 and bare.headers["location"] == f"{BASE_URL}/archive/weekend/"
    assert anon.get("/archive/not-a-date").status_code == 400  # neither a date nor an archive


# --------------------------------------------------------------------------- editors' pages


def test_the_weekend_queue_lists_only_weekend_stories_and_its_form_adds_to_it(
    editor_client: TestClient, sqlite_engine: sa.Engine, room: Newsroom
) -> None:
    tuesday = (EDITION_DAY + timedelta(days=1)).isoformat()
    queue_for(sqlite_engine, room.first, "Tuesday in the council", day=EDITION_DAY + timedelta(days=1))
    queue_for(sqlite_engine, room.weekend, "Tuesday's long read", day=EDITION_DAY + timedelta(days=1))
    page = editor_client.get(f"/editor/queue?newsletter=weekend&date={tuesday}")
    assert page.status_code == 200
    assert "Tuesday&#39;s long read (0)" in page.text and "Tuesday in the council" not in page.text
    assert '<input type="hidden" name="newsletter" value="weekend">' in page.text
    assert re.search(r'<option value="weekend" selected>The Weekend Edition', page.text)
    first_page = editor_client.get(f"/editor/queue?date={tuesday}")  # the first one by default
    assert "Tuesday in the council (0)" in first_page.text and "long read" not in first_page.text

    token = csrf_token(editor_client, f"/editor/queue?newsletter=weekend&date={DAY}")
    added = editor_client.post(
        "/editor/stories",
        data={
            "csrf_token": token,
            "newsletter": "weekend",
            "day": "2026-12-05",
            "url": "https://news.example.com/weekend/added",
            "headline": "Added from the weekend queue",
            "section": "Features",
            "edition_date": "2026-12-05",
        },
    )
    assert added.status_code == 303, added.text
    assert added.headers["location"].startswith("/editor/queue?newsletter=weekend&date=2026-12-05#story-")
    with Session(sqlite_engine) as session:
        weekend = story_store.list_stories(session, newsletter_id=room.weekend.id, statuses=())
        first = story_store.list_stories(session, newsletter_id=room.first.id, statuses=())
    assert "Added from the weekend queue" in [s.headline for s in weekend]
    assert "Added from the weekend queue" not in [s.headline for s in first]
    shown = editor_client.get(added.headers["location"].partition("#")[0])
    assert "Added from the weekend queue" in shown.text

    assert editor_client.get("/editor/queue?newsletter=no-such-letter").status_code == 404


def test_the_editions_page_lists_both_newsletters_editions_with_their_newsletter(
    editor_client: TestClient, room: Newsroom
) -> None:
    listing = editor_client.get("/editor/editions")
    assert listing.status_code == 200
    rows = re.findall(r"<tr>.*?</tr>", listing.text, re.S)
    weekend_row = next(r for r in rows if "?newsletter=weekend" in r)
    first_row = next(r for r in rows if f'href="/editor/editions/{DAY}"' in r)
    assert "The Weekend Edition" in weekend_row and "The Morning Briefing" in first_row
    assert "<th>Newsletter</th>" in listing.text and "<th>Kind</th>" in listing.text

    only_weekend = editor_client.get("/editor/editions?newsletter=weekend")
    assert "?newsletter=weekend" in only_weekend.text
    assert f'href="/editor/editions/{DAY}"' not in only_weekend.text

    weekend_page = editor_client.get(f"/editor/editions/{DAY}?newsletter=weekend")
    first_page = editor_client.get(f"/editor/editions/{DAY}")  # the old address: the first one's
    assert weekend_page.status_code == first_page.status_code == 200
    assert WEEKEND_HEADLINE in weekend_page.text and FIRST_HEADLINE not in weekend_page.text
    assert FIRST_HEADLINE in first_page.text and WEEKEND_HEADLINE not in first_page.text
    assert editor_client.get(f"/editor/editions/{DAY}?newsletter=weekend&kind=special-1").status_code == 404
    assert editor_client.get(f"/editor/editions/{DAY}?kind=nonsense").status_code == 400


def test_the_preview_of_a_newsletter_is_its_own_edition(editor_client: TestClient, room: Newsroom) -> None:
    page = editor_client.get(f"/editor/preview?newsletter=weekend&date={DAY}")
    assert page.status_code == 200
    assert f'src="/editor/preview/frame?newsletter=weekend&amp;date={DAY}"' in page.text
    frame = editor_client.get(f"/editor/preview/frame?newsletter=weekend&date={DAY}")
    assert WEEKEND_HEADLINE in frame.text and FIRST_HEADLINE not in frame.text
    first_frame = editor_client.get(f"/editor/preview/frame?date={DAY}")
    assert FIRST_HEADLINE in first_frame.text and WEEKEND_HEADLINE not in first_frame.text


# --------------------------------------------------------------------------- the sponsor's image


def test_a_sponsor_slots_image_shows_in_the_html_and_nothing_in_the_text(
    sqlite_engine: sa.Engine, web_settings: Settings, room: Newsroom
) -> None:
    day = EDITION_DAY + timedelta(days=1)  # an edition not sent yet
    with session_scope(sqlite_engine) as session:
        for url in ("https://images.example.net/bank.png", "http://images.example.net/plain.png"):
            sponsor_store.add_slot(
                session,
                SponsorSlotData(
                    id=0,
                    newsletter_id=room.weekend.id,
                    starts_on=day,
                    ends_on=day,
                    name="Example Bank",
                    text="Savings for the weekend.",
                    url="https://bank.example.com/offer",
                    image_url=url,
                    label="",
                ),
                now=FIXED_NOW,
            )
    setup = edition_setup_now(web_settings, sqlite_engine, newsletter=room.weekend)  # the real Renderer
    queue_for(sqlite_engine, room.weekend, "Tuesday papers", day=day)
    with Session(sqlite_engine) as session:
        later = edition_service.prepare(session, setup, day, now=FIXED_NOW)
    html, text = later.rendered.html, later.rendered.text
    # The later booking wins, and its image is plain http: no image, the partner still shown.
    assert "Example Bank" in html and "plain.png" not in html and "images.example.net" not in html

    with session_scope(sqlite_engine) as session:
        sponsor_store.add_slot(
            session,
            SponsorSlotData(
                id=0,
                newsletter_id=room.weekend.id,
                starts_on=day,
                ends_on=day,
                name="Example Bank",
                url="https://bank.example.com/offer",
                image_url="https://images.example.net/bank.png",
                label="",
            ),
            now=FIXED_NOW,
        )
    with Session(sqlite_engine) as session:
        prepared = edition_service.prepare(session, setup, day, now=FIXED_NOW)
    html, text = prepared.rendered.html, prepared.rendered.text
    image = re.search(r'<img\b[^>]*src="https://images\.example\.net/bank\.png"[^>]*>', html)
    assert image, "the sponsor's image is missing from the HTML"
    assert 'alt="Example Bank"' in image.group(0) and 'width="520"' in image.group(0)
    assert "max-width: 520px" in image.group(0)
    link = html[: image.start()].rpartition("<a ")[2]
    assert 'href="https://bank.example.com/offer"' in link  # the image leads to the partner
    assert ">Partner</p>" in html  # the label, by default
    assert "bank.png" not in text and "PARTNER: Example Bank" in text
    with Session(sqlite_engine) as session:  # the other newsletter's edition that day has none
        other = edition_service.prepare(session, edition_setup_now(web_settings, sqlite_engine), day)
    assert "bank.png" not in other.rendered.html
