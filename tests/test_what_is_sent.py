"""What is previewed is what is sent: one moment judges the stories, and a frozen edition stays frozen.

Also the real send's own rule: reader links must lead somewhere a reader can reach.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.config import Settings
from briefing.db import session_scope
from briefing.domain import EditionStatus
from briefing.errors import PreflightFailed
from briefing.mail.pool import ConnectionPool
from briefing.mail.smtp_url import parse_smtp_url
from briefing.mail.transport import MemoryTransport
from briefing.service import editions as edition_service
from briefing.service.setup import reaches_readers
from briefing.store import editions as edition_store
from briefing.store import stories as story_store
from tests.fixtures.clock import T0, ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom
from tests.fixtures.smtp import SmtpTestServer
from tests.fixtures.web import EDITION_DAY, add_subscriber, queue_stories
from tests.fixtures.web import send_edition as web_send

SEND_AT = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # the edition's send time (London, winter)
LOCAL_BASE = "http://127.0.0.1:8000"  # the setting's default
IMAGE = "https://images.example.com/protest.jpg"


def text_of(data: bytes) -> str:
    parsed = message_from_bytes(data, policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def headlines(prepared: edition_service.Prepared) -> list[str]:
    return [s.headline for s in prepared.briefing.stories]


def test_a_forced_early_send_carries_exactly_the_stories_its_preview_showed(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    room.readers(1)
    # Both change between the forced send (Sunday noon) and the edition's send time (Monday 06:00).
    room.queue_story("Overnight road closures", expires_at=SEND_AT - timedelta(hours=3))
    room.queue_story("Report published at dawn", embargo_until=SEND_AT - timedelta(hours=1))
    clock = ManualClock(T0)

    shown = edition_service.preview(room.engine, room.setup, EDITION, clock=clock)
    mail = MemoryTransport()
    outcome = edition_service.send_edition(room.engine, room.setup, EDITION, mail, force=True, clock=clock)

    assert headlines(shown.prepared) == ["Budget clears the Assembly", "Report published at dawn"]
    assert outcome.edition.status == EditionStatus.SENT
    with Session(room.engine) as s:
        frozen = edition_store.get_edition(s, EDITION, newsletter_id=1)
    assert list(frozen.story_ids) == [st.id for st in shown.prepared.briefing.stories]
    [copy] = mail.messages
    sent = text_of(copy.data)
    assert "Report published at dawn" in sent and "Overnight road closures" not in sent
    assert shown.prepared.judged_at == SEND_AT


def test_a_send_after_the_send_time_is_judged_when_it_starts(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    room.queue_story("Gone by seven", expires_at=SEND_AT + timedelta(hours=1))
    late = ManualClock(SEND_AT + timedelta(hours=2))  # still inside the three-hour window

    shown = edition_service.preview(room.engine, room.setup, EDITION, clock=late)
    mail = MemoryTransport()
    edition_service.send_edition(room.engine, room.setup, EDITION, mail, clock=late)

    assert headlines(shown.prepared) == ["Budget clears the Assembly"]
    assert "Gone by seven" not in text_of(mail.messages[0].data)


def test_preview_of_a_sent_edition_shows_its_frozen_copy(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    clock = ManualClock(T0)
    edition_service.send_edition(room.engine, room.setup, EDITION, MemoryTransport(), force=True, clock=clock)
    clock.set(SEND_AT + timedelta(days=1))  # the used story is long out of the queue

    result = edition_service.preview(room.engine, room.setup, EDITION, clock=clock)

    assert result.prepared.report.ok, result.prepared.report.problems
    assert result.prepared.frozen and result.prepared.frozen_at == T0
    assert headlines(result.prepared) == ["Budget clears the Assembly"]
    assert "Budget clears the Assembly" in result.html and "Budget clears the Assembly" in result.text


# --------------------------------------------------------------------------- alt text that is shown


def test_a_hidden_image_without_alt_text_does_not_stop_the_send(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    room.queue_story("Second story with a photo", image_url=IMAGE, image_alt="")
    mail = MemoryTransport()

    outcome = edition_service.send_edition(
        room.engine, room.setup, EDITION, mail, force=True, clock=ManualClock(T0)
    )

    assert outcome.edition.status == EditionStatus.SENT and len(mail.messages) == 1


def test_a_shown_thumbnail_without_alt_text_stops_the_send(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    story_id = room.queue_story("Second story with a photo", image_url=IMAGE, image_alt="")
    setup = replace(room.setup, compose=replace(room.setup.compose, story_thumbnails=True))
    mail = MemoryTransport()

    with pytest.raises(PreflightFailed) as failed:
        edition_service.send_edition(room.engine, setup, EDITION, mail, force=True, clock=ManualClock(T0))

    assert f"story {story_id} (image_alt): the image has no alt text" in "\n".join(failed.value.problems)
    assert mail.messages == []


# --------------------------------------------------------------------------- reader links on a real send


@pytest.mark.parametrize(
    ("url", "real"),
    [
        ("smtp://user:secret@smtp.example.com:587", True),
        ("smtps://user:secret@smtp.example.com:465", True),
        ("smtp://127.0.0.1:25", True),  # a local relay that passes mail on
        ("smtp://127.0.0.1:1025", False),  # briefing dev-smtp
        ("smtp://localhost:2525", False),
        ("maildir:///var/mail/briefing", False),
        ("memory://", False),
        ("smtp://", False),  # not a URL; opening the transport says so
    ],
)
def test_which_mail_reaches_readers(url: str, real: bool) -> None:
    assert reaches_readers(url) is real


def real_relay() -> ConnectionPool:
    # Nothing connects until the first message, and the refusal comes before any.
    return ConnectionPool(parse_smtp_url("smtp://smtp.example.com:587"), size=1, timeout=1)


@pytest.mark.parametrize("base", [LOCAL_BASE, "https://127.0.0.1", "https://10.0.0.5", "https://briefing"])
def test_a_real_send_refuses_reader_links_no_reader_can_open(sqlite_newsroom: Newsroom, base: str) -> None:
    room = sqlite_newsroom
    room.readers(2)
    setup = replace(room.setup, mailing=replace(room.setup.mailing, public_base_url=base))
    relay = real_relay()
    try:
        with pytest.raises(PreflightFailed) as failed:
            edition_service.send_edition(
                room.engine, setup, EDITION, relay, force=True, clock=ManualClock(T0)
            )
    finally:
        relay.close()

    [problem] = failed.value.problems
    assert problem.startswith("BRIEFING_PUBLIC_BASE_URL: ") and repr(base) in problem
    with Session(room.engine) as s:
        assert (
            edition_store.find_edition(s, EDITION, newsletter_id=1) is None
        )  # nothing frozen, nobody snapshotted


def test_the_same_local_links_pass_a_rehearsal_on_a_loopback_server(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    room.readers(2)
    setup = replace(room.setup, mailing=replace(room.setup.mailing, public_base_url=LOCAL_BASE))
    relay = ConnectionPool(parse_smtp_url(smtp_server.url()), size=1, timeout=5)
    try:
        outcome = edition_service.send_edition(
            room.engine, setup, EDITION, relay, force=True, clock=ManualClock(T0)
        )
    finally:
        relay.close()
    assert outcome.edition.status == EditionStatus.SENT and len(smtp_server.messages) == 2


def test_preflight_names_the_setting_when_the_configured_mail_reaches_readers(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    mailing = replace(room.setup.mailing, public_base_url=LOCAL_BASE)
    with Session(room.engine) as s:
        rehearsal = edition_service.prepare(s, replace(room.setup, mailing=mailing), EDITION)
        real = edition_service.prepare(s, replace(room.setup, mailing=mailing, reaches_readers=True), EDITION)
    assert rehearsal.report.ok
    assert [p.where for p in real.report.errors] == ["BRIEFING_PUBLIC_BASE_URL"]


def test_a_partly_sent_edition_is_not_resumed_through_a_real_relay_with_local_links(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    room.readers(1)
    with session_scope(room.engine) as s:
        edition = edition_store.ensure_edition(s, EDITION, newsletter_id=1, now=T0, scheduled_for=SEND_AT)
        story_ids = [st.id for st in story_store.list_stories(s, newsletter_id=1, edition_date=EDITION)]
        edition_store.freeze(
            s, edition.id, subject="S", preheader="P", html="<p>x</p>", text="x", story_ids=story_ids, now=T0
        )
        edition_store.set_status(s, edition.id, EditionStatus.PARTIAL, now=T0)
    setup = replace(room.setup, mailing=replace(room.setup.mailing, public_base_url=LOCAL_BASE))
    relay = real_relay()
    try:
        with pytest.raises(PreflightFailed, match="reader links would not work"):
            edition_service.send_edition(
                room.engine, setup, EDITION, relay, force=True, clock=ManualClock(T0)
            )
    finally:
        relay.close()
    with Session(room.engine) as s:
        assert edition_store.get_edition(s, EDITION, newsletter_id=1).status == EditionStatus.PARTIAL


def test_the_web_preview_of_a_sent_edition_shows_its_frozen_copy(
    editor_client: TestClient, sqlite_engine: sa.Engine, web_settings: Settings
) -> None:
    queue_stories(sqlite_engine)
    add_subscriber(sqlite_engine, "ada@example.com")
    assert web_send(sqlite_engine, web_settings, MemoryTransport()).edition.status == EditionStatus.SENT

    page = editor_client.get(f"/editor/preview?date={EDITION_DAY.isoformat()}")

    assert page.status_code == 200
    assert "frozen (this is what was or will be sent)" in page.text
    assert "Council story number 0" in page.text
    assert "there are no stories" not in page.text
