"""Sections readers choose, end to end: a real send over SMTP gives each reader the edition without
the sections they left out and otherwise the same copy, from one frozen rendering per section set,
and a resend after a crash, or a change of mind after the freeze, gives them the same set again."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import html5lib
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from briefing.db import session_scope
from briefing.domain import SubscriberInput, SubscriberStatus
from briefing.edition.sections import variant_key
from briefing.mail.pool import open_transport
from briefing.models import Delivery, EditionVariant
from briefing.service import editions as edition_service
from briefing.service import send as send_service
from briefing.service import sponsors as sponsor_service
from briefing.service import stories as story_service
from briefing.service.setup import EditionSetup, reader
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, QUEUED_AT, make_setup
from tests.fixtures.smtp import SmtpTestServer
from tests.fixtures.waiting import wait_until

pytest_plugins = ["tests.fixtures.gated_smtp"]

SECTIONS = ("Politics", "Sport", "Culture")
SEND_AT = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)  # thirty seconds after the 06:00 send time
SEPARATOR = "=" * 72
# Two stories a section; the lead is in Politics, which every reader keeps.
STORIES = tuple(
    (section, f"{section} story {n}", f"https://news.example.com/{section.lower()}/{n}")
    for section in SECTIONS
    for n in (1, 2)
)
EVERYTHING = "everything@example.com"
NO_SPORT = "no-sport@example.com"
NO_SPORT_OR_CULTURE = "no-sport-or-culture@example.com"
LEFT_OUT: dict[str, tuple[str, ...]] = {
    EVERYTHING: (),
    NO_SPORT: ("Sport",),
    NO_SPORT_OR_CULTURE: ("Sport", "Culture"),
}


@dataclass
class Room:
    engine: sa.Engine
    setup: EditionSetup
    ids: dict[str, int]  # reader's address -> subscriber id


def choose(engine: sa.Engine, subscriber_id: int, excluded: tuple[str, ...]) -> None:
    with session_scope(engine) as session:
        assert subscription_store.set_choices(
            session,
            subscriber_id,
            1,
            excluded_sections=list(excluded),
            variant=variant_key(excluded),
            specials=True,
            now=QUEUED_AT,
        )


def build_room(engine: sa.Engine, left_out: Mapping[str, tuple[str, ...]]) -> Room:
    """The first newsletter with optional sections, six stories in three sections, a booked partner."""
    ids: dict[str, int] = {}
    with session_scope(engine) as session:
        newsletter = newsletter_store.update_newsletter(
            session, 1, {"sections_optional": True, "section_order": list(SECTIONS)}, now=QUEUED_AT
        )
        for section, headline, url in STORIES:
            story_service.add_story(
                session,
                story_service.StoryRequest(
                    url=url,
                    headline=headline,
                    blurb=f"What happened in {section}.",
                    section=section,
                    status="ready",
                    edition_date=EDITION,
                    lead=headline == "Politics story 1",
                ),
                now=QUEUED_AT,
            )
        for email in left_out:
            sub = subscriber_store.add_subscriber(
                session, SubscriberInput(email=email), status=SubscriberStatus.ACTIVE, now=QUEUED_AT
            )
            ids[email] = sub.id
        sponsor_service.add_slot(
            session,
            sponsor_service.SlotRequest(
                starts_on=EDITION.isoformat(),
                ends_on=EDITION.isoformat(),
                name="Example Bank",
                text="Savings that keep up with prices.",
                url="https://bank.example.net/savings",
            ),
            now=QUEUED_AT,
        )
    for email, excluded in left_out.items():
        if excluded:
            choose(engine, ids[email], excluded)
    setup = make_setup()
    setup = replace(
        setup,
        newsletter=newsletter,
        compose=replace(
            setup.compose,
            section_order=SECTIONS,
            tip_contact="tips@news.example.com",
            support_url="https://news.example.com/support",
        ),
    )
    return Room(engine, setup, ids)


@pytest.fixture
def room(engine: sa.Engine) -> Room:
    return build_room(engine, LEFT_OUT)


def send(room: Room, server: SmtpTestServer) -> edition_service.SendOutcome:
    mail = open_transport(server.url(), pool_size=room.setup.policy.workers, timeout=5)
    try:
        return edition_service.send_edition(
            room.engine, room.setup, EDITION, mail, clock=ManualClock(SEND_AT)
        )
    finally:
        mail.close()


# --------------------------------------------------------------------------- reading a copy


@dataclass(frozen=True)
class Copy:
    subject: str
    list_unsubscribe: str
    text: str
    html: str


def parse(data: bytes) -> Copy:
    message = message_from_bytes(data, policy=default_policy)
    assert isinstance(message, EmailMessage)
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return Copy(
        str(message["Subject"]), str(message["List-Unsubscribe"]), text.get_content(), html.get_content()
    )


def copies_by_reader(messages: list[Any]) -> dict[str, list[Copy]]:
    found: dict[str, list[Copy]] = {}
    for m in messages:
        [to] = m.rcpt_tos
        found.setdefault(to, []).append(parse(m.data))
    return found


def own_links(room: Room, email: str) -> tuple[str, str]:
    """The reader's unsubscribe and preferences links, as the send signs them."""
    recipient = reader(room.setup, room.ids[email], email, "")
    return recipient.unsubscribe_url, recipient.preferences_url


def as_reader(room: Room, text: str, source: str, target: str) -> str:
    """`source`'s copy with its links swapped for `target`'s: what `target` gets of the same edition."""
    for theirs, mine in zip(own_links(room, source), own_links(room, target), strict=True):
        assert theirs in text
        text = text.replace(theirs, mine)
    return text


def text_blocks(text: str) -> list[str]:
    return text.split(SEPARATOR)


def text_heading(block: str) -> str:
    return block.strip().splitlines()[0]


def html_blocks(html: str) -> list[tuple[str, str]]:
    """The email's top-level blocks (masthead, lead, each section, partner, ...) as (class, markup)."""
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    wrapper = doc.find("body")[0]
    return [
        (child.get("class") or "", ET.tostring(child, encoding="unicode"))
        for child in wrapper
        if isinstance(child.tag, str)
    ]


def html_heading(markup: str) -> str:
    h2 = ET.fromstring(markup).find(".//h2")
    return " ".join("".join(h2.itertext()).split()) if h2 is not None else ""


def headlines_in(copy: Copy) -> set[str]:
    return {headline for _, headline, url in STORIES if headline in copy.text and url in copy.html}


def kept(excluded: tuple[str, ...]) -> set[str]:
    return {headline for section, headline, _ in STORIES if section not in excluded}


def frozen_variants(engine: sa.Engine) -> set[str]:
    with Session(engine) as session:
        edition = edition_store.get_edition(session, EDITION, newsletter_id=1)
        rows = session.exec(select(EditionVariant).where(EditionVariant.edition_id == edition.id)).all()
    return {row.variant for row in rows}


# --------------------------------------------------------------------------- the send


def test_each_reader_gets_exactly_the_sections_they_kept_and_otherwise_the_full_copy(
    room: Room, smtp_server: SmtpTestServer
) -> None:
    outcome = send(room, smtp_server)

    assert outcome.edition.status == "sent"
    copies = copies_by_reader(smtp_server.messages)
    assert {email: len(c) for email, c in copies.items()} == dict.fromkeys(LEFT_OUT, 1)
    full = copies[EVERYTHING][0]
    assert headlines_in(full) == kept(())
    assert "Example Bank" in full.text and "https://bank.example.net/savings" in full.html
    for email, excluded in LEFT_OUT.items():
        [copy] = copies[email]
        assert headlines_in(copy) == kept(excluded), email
        assert copy.subject == full.subject
        # Everything but the left-out sections is the full copy, with this reader's own links.
        expected_text = [
            block
            for block in text_blocks(as_reader(room, full.text, EVERYTHING, email))
            if text_heading(block) not in {s.upper() for s in excluded}
        ]
        assert text_blocks(copy.text) == expected_text, email
        expected_html = [
            block
            for block in html_blocks(as_reader(room, full.html, EVERYTHING, email))
            if not ("news-section" in block[0] and html_heading(block[1]) in excluded)
        ]
        assert html_blocks(copy.html) == expected_html, email
        assert len(expected_html) == len(html_blocks(full.html)) - len(excluded)
        unsubscribe, preferences = own_links(room, email)
        assert unsubscribe in copy.list_unsubscribe
        assert unsubscribe in copy.text and preferences in copy.text and preferences in copy.html
        others = [own_links(room, other)[0] for other in LEFT_OUT if other != email]
        assert not any(link in copy.text or link in copy.html for link in others)


def test_the_edition_froze_one_rendering_per_section_set_the_readers_chose(
    room: Room, smtp_server: SmtpTestServer
) -> None:
    send(room, smtp_server)

    # Besides the whole edition (frozen on the edition row), one per set: not one per reader.
    assert frozen_variants(room.engine) == {variant_key(["Sport"]), variant_key(["Sport", "Culture"])}
    with Session(room.engine) as session:
        edition = edition_store.get_edition(session, EDITION, newsletter_id=1)
        rows = session.exec(select(Delivery.email, Delivery.variant).where(Delivery.edition_id == edition.id))
        variants = dict(rows.all())
    assert variants == {email: variant_key(excluded) for email, excluded in LEFT_OUT.items()}


def test_readers_who_left_out_the_same_sections_share_one_rendering(
    engine: sa.Engine, smtp_server: SmtpTestServer
) -> None:
    # Spelled differently, and in another order: the same set, the same frozen copy.
    left_out = {**LEFT_OUT, "second@example.com": ("culture ", "SPORT")}
    room = build_room(engine, left_out)

    send(room, smtp_server)

    assert len(frozen_variants(engine)) == 2
    copies = copies_by_reader(smtp_server.messages)
    assert as_reader(
        room, copies[NO_SPORT_OR_CULTURE][0].text, NO_SPORT_OR_CULTURE, "second@example.com"
    ) == (copies["second@example.com"][0].text)


def test_a_reader_who_changes_sections_after_the_freeze_gets_what_the_snapshot_held(
    room: Room, smtp_server: SmtpTestServer
) -> None:
    send_service.start_sending(room.engine, room.setup, EDITION, now=SEND_AT)  # frozen and snapshotted
    choose(room.engine, room.ids[NO_SPORT], ("Politics", "Culture"))
    choose(room.engine, room.ids[EVERYTHING], ("Sport",))
    choose(room.engine, room.ids[NO_SPORT_OR_CULTURE], ())

    outcome = send(room, smtp_server)  # joins the edition that is sending

    assert outcome.edition.status == "sent"
    copies = copies_by_reader(smtp_server.messages)
    assert {email: [headlines_in(c) for c in cs] for email, cs in copies.items()} == {
        email: [kept(excluded)] for email, excluded in LEFT_OUT.items()
    }
    assert frozen_variants(room.engine) == {variant_key(["Sport"]), variant_key(["Sport", "Culture"])}


# --------------------------------------------------------------------------- a crash mid-send


@pytest.mark.slow
def test_a_resend_after_a_crash_gives_each_reader_the_same_variant(
    engine: sa.Engine, db_url: str, gated_smtp: Any, senders: Any
) -> None:
    # Ten readers of each set, interleaved: more than one claim batch, so both connections have a
    # copy in flight at the crash, and every set has copies still to send.
    left_out = {
        f"{name}-{n}@example.com": excluded
        for n in range(10)
        for name, excluded in (("culture-only", ("Politics", "Sport")), ("no-sport", ("Sport",)), ("all", ()))
    }
    room = build_room(engine, left_out)
    server = gated_smtp()  # every DATA waits for the gate
    first = senders(db_url, server.url, pool=2)
    assert wait_until(lambda: server.handler.arrived >= 2, timeout=30), first.output()

    first.kill()  # SIGKILL with two copies on the wire: their fate is unknown to the ledger
    for email in left_out:  # every reader changes their mind before the resend
        choose(engine, room.ids[email], ("Culture",))
    server.handler.gate.set()
    second = senders(db_url, server.url, pool=2)
    assert second.wait(timeout=60) == 0, second.output()

    copies = copies_by_reader(server.handler.messages)
    assert set(copies) == set(left_out)  # no loss
    assert all(len(c) <= 2 for c in copies.values())
    for email, excluded in left_out.items():
        texts = {c.text for c in copies[email]}
        assert len(texts) == 1, email  # a resent copy is the same copy
        assert [headlines_in(c) for c in copies[email]] == [kept(excluded)] * len(copies[email]), email
    ids = Counter(m.message_id for m in server.handler.messages)
    assert len(ids) == len(left_out)  # a resent copy carries the same Message-ID
    with Session(engine) as session:
        edition = edition_store.get_edition(session, EDITION, newsletter_id=1)
        assert edition.status == "sent"
        rows = ledger.rows(session, edition.id)
    assert {r.status for r in rows} == {"sent"}
    # The two copies on the wire at the crash were settled as ambiguous and sent again, each from the
    # rendering of the set its reader had when the edition froze (checked above for every reader).
    assert len([r for r in rows if r.was_ambiguous]) == 2
    assert len(frozen_variants(engine)) == 2  # frozen once, at the first run
