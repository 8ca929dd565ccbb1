"""Special editions: breaking news beside the regular edition of the day, never instead of it.

Real SQLite files and a real SMTP server on loopback; the CLI runs in-process on its own database.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.domain import EditionStatus
from briefing.errors import Conflict, InvalidInput
from briefing.mail.pool import open_transport
from briefing.mail.transport import MemoryTransport
from briefing.newsletter import NewsletterData
from briefing.service import editions as edition_service
from briefing.service import specials as special_service
from briefing.service import stories as story_service
from briefing.service.setup import EditionSetup
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, QUEUED_AT, Newsroom
from tests.fixtures.smtp import SmtpTestServer
from tests.fixtures.waiting import wait_until
from tests.fixtures.web import EDITION_DAY, add_subscriber, queue_stories

SEND_AT = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # the regular edition's send time (London, winter)
BREAKING = SEND_AT + timedelta(hours=8)  # 14:00 in London: the news breaks after the morning edition
CLI_DAY = "2026-11-29"  # the CLI's clock (tests.fixtures.cli.CLI_NOW) is noon on this Sunday


def make_special(
    room: Newsroom,
    *,
    setup: EditionSetup | None = None,
    subject: str = "Breaking: the council resigns",
    story_ids: list[int] | None = None,
    note: str = "The whole council resigned at **13:30**.",
    send_at: datetime | None = BREAKING,
    now: datetime = BREAKING,
) -> str:
    with session_scope(room.engine) as session:
        made = special_service.create_special(
            session,
            setup or room.setup,
            edition_date=EDITION,
            subject=subject,
            note=note,
            story_ids=story_ids if story_ids is not None else [1],
            send_at=send_at,
            now=now,
        )
    return made.kind


def ledger_of(room: Newsroom, kind: str = "regular") -> list[tuple[object, ...]]:
    with Session(room.engine) as session:
        edition = edition_store.get_edition(session, EDITION, newsletter_id=1, kind=kind)
        rows = ledger.rows(session, edition.id, statuses=("sent", "failed", "pending", "deferred"))
    return sorted((r.email, r.status, r.attempts, r.sent_at) for r in rows)


def regular_state(room: Newsroom) -> tuple[object, ...]:
    with Session(room.engine) as session:
        e = edition_store.get_edition(session, EDITION, newsletter_id=1)
        return (e.status, e.subject, e.story_ids, e.snapshot_size, e.frozen_at, e.finished_at, e.updated_at)


def weekend(room: Newsroom) -> EditionSetup:
    with session_scope(room.engine) as session:
        found = newsletter_store.add_newsletter(
            session, "weekend", {"name": "The Weekend Edition"}, now=QUEUED_AT
        )
    return replace(room.setup, newsletter=found)


def weekend_story(room: Newsroom, newsletter: NewsletterData) -> int:
    with session_scope(room.engine) as session:
        story = story_service.add_story(
            session,
            story_service.StoryRequest(
                url="https://news.example.com/weekend/market",
                headline="Saturday market reopens",
                section="Local",
                status="ready",
                newsletter_id=newsletter.id,
            ),
            now=QUEUED_AT,
        )
    return story.id


# --------------------------------------------------------------------------- the send


def test_a_special_after_the_sent_regular_edition_reaches_each_reader_once_and_leaves_the_regular_alone(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    readers = room.readers(3)
    mail = open_transport(smtp_server.url(), pool_size=2, timeout=5)
    try:
        regular = edition_service.send_edition(
            room.engine, room.setup, EDITION, mail, clock=ManualClock(SEND_AT)
        )
        assert regular.edition.status == EditionStatus.SENT
        regular_ids = {m.message_id for m in smtp_server.messages}
        before_ledger, before_state = ledger_of(room), regular_state(room)

        kind = make_special(room)
        special = edition_service.send_edition(
            room.engine, room.setup, EDITION, mail, kind=kind, clock=ManualClock(BREAKING)
        )
    finally:
        mail.close()

    assert kind == "special-1"
    assert special.edition.status == EditionStatus.SENT
    copies = smtp_server.messages[len(regular_ids) :]
    assert Counter(rcpt for m in copies for rcpt in m.rcpt_tos) == Counter(readers)  # all, each once
    assert all(b"Breaking: the council resigns" in m.data for m in copies)
    special_ids = {m.message_id for m in copies}
    assert len(special_ids) == 3 and not special_ids & regular_ids
    assert ledger_of(room) == before_ledger and regular_state(room) == before_state
    assert [row[1] for row in ledger_of(room, kind)] == ["sent"] * 3


def test_a_reader_who_said_no_to_specials_does_not_get_one(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    keen, _ = room.readers(2)
    with session_scope(room.engine) as session:
        declined = subscriber_store.get_by_email(session, "reader0001@example.com")
        subscription_store.set_choices(
            session, declined.id, 1, excluded_sections=(), variant="", specials=False, now=QUEUED_AT
        )
    kind = make_special(room)
    mail = MemoryTransport()

    edition_service.send_edition(
        room.engine, room.setup, EDITION, mail, kind=kind, clock=ManualClock(BREAKING)
    )

    assert [m.rcpt for m in mail.messages] == [keen]


def test_a_second_special_of_the_day_is_special_2_and_keeps_the_first(newsroom: Newsroom) -> None:
    room = newsroom
    first = make_special(room, subject="First: the council resigns")
    later = BREAKING + timedelta(minutes=5)
    second = make_special(room, subject="Second: a new council is named", send_at=later, now=later)

    assert (first, second) == ("special-1", "special-2")
    with Session(room.engine) as session:
        editions = edition_store.editions_of_date(session, EDITION, newsletter_id=1)
    assert [(e.kind, e.subject) for e in editions] == [
        ("special-1", "First: the council resigns"),
        ("special-2", "Second: a new council is named"),
    ]
    with Session(room.engine) as session:
        assert special_service.list_specials(session, newsletter_id=1)[0].kind == "special-2"


def test_a_special_is_made_only_of_its_editors_stories_and_note(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    room.queue_story("Ready for tomorrow's edition")  # in the queue, not asked for
    kind = make_special(room, story_ids=[1])

    shown = edition_service.preview(room.engine, room.setup, EDITION, kind=kind, clock=ManualClock(BREAKING))

    assert shown.prepared.rendered.subject == "Breaking: the council resigns"
    assert [s.id for s in shown.prepared.briefing.stories] == [1]
    assert "resigned at" in shown.text and "Ready for tomorrow" not in shown.text


def test_a_special_is_refused_stories_of_another_newsletter_and_bad_input(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    other = weekend(room)
    theirs = weekend_story(room, other.newsletter)

    with pytest.raises(InvalidInput) as wrong:
        make_special(room, story_ids=[1, theirs])
    assert wrong.value.field == "stories" and "weekend" in wrong.value.message
    for bad, field in (
        ({"subject": "  "}, "subject"),
        ({"subject": "Two\r\nBcc: everyone@example.net"}, "subject"),
        ({"subject": "x" * 301}, "subject"),
        ({"note": "n" * 5001}, "note"),
        ({"story_ids": [999]}, "stories"),
        ({"story_ids": [], "note": ""}, "stories"),
        ({"send_at": BREAKING - timedelta(hours=1)}, "send_at"),
        ({"send_at": BREAKING + timedelta(days=1)}, "send_at"),
    ):
        with pytest.raises(InvalidInput) as refused:
            make_special(room, **bad)
        assert refused.value.field == field, bad
    with Session(room.engine) as session:
        assert edition_store.editions_of_date(session, EDITION, newsletter_id=1) == []


def test_a_special_is_cancelled_only_before_it_is_sent(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    later = make_special(room, send_at=BREAKING + timedelta(hours=2))
    sent = make_special(room)
    edition_service.send_edition(
        room.engine, room.setup, EDITION, MemoryTransport(), kind=sent, clock=ManualClock(BREAKING)
    )

    with session_scope(room.engine) as session:
        called_off = special_service.cancel_special(
            session, newsletter_id=1, edition_date=EDITION, kind=later, now=BREAKING
        )
    with session_scope(room.engine) as session, pytest.raises(Conflict):
        special_service.cancel_special(
            session, newsletter_id=1, edition_date=EDITION, kind=sent, now=BREAKING
        )
    with session_scope(room.engine) as session, pytest.raises(InvalidInput):
        special_service.cancel_special(
            session, newsletter_id=1, edition_date=EDITION, kind="regular", now=BREAKING
        )

    assert called_off.status == EditionStatus.CANCELLED
    with pytest.raises(Conflict):
        edition_service.send_edition(
            room.engine, room.setup, EDITION, MemoryTransport(), kind=later, clock=ManualClock(BREAKING)
        )


# --------------------------------------------------------------------------- briefing special


@pytest.fixture
def cli(tmp_path: Path, smtp_server: SmtpTestServer) -> dict[str, str]:
    env = cli_env(
        tmp_path,
        secret_key="cli-secret",
        smtp_url=smtp_server.url(),
        public_base_url="https://news.example.com",
    )
    ok(env, "stories", "add", "--url", "https://news.example.com/a", "--headline", "Budget passes")
    ok(env, "subscribers", "add", "ada@example.com", "--name", "Ada")
    ok(env, "subscribers", "add", "grace@example.com")
    return env


def cli_engine(env: dict[str, str]) -> sa.Engine:
    engine = make_engine(env["BRIEFING_DATABASE_URL"])
    upgrade(engine)
    return engine


def test_briefing_special_now_sends_it_to_the_readers_and_says_so(
    cli: dict[str, str], smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    slug = primary_slug(cli)
    out = ok(
        cli,
        "special",
        "--newsletter",
        slug,
        "--subject",
        "Breaking: budget passes",
        "--stories",
        "1",
        "--note",
        "Passed by **one** vote.",
        "--now",
        "--yes",
        "--preview-to",
        str(tmp_path / "special"),
    )

    assert "Special edition special-1 of 2026-11-29" in out and "Breaking: budget passes" in out
    assert "recipients: 2" in out and "is sent: 2 delivered" in out
    got = sorted(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert got == ["ada@example.com", "grace@example.com"]
    assert (tmp_path / "special" / "briefing.eml").read_bytes().count(b"Breaking: budget passes") >= 1
    listed = ok(cli, "specials", "list", "--json")
    assert '"kind": "special-1"' in listed and '"status": "sent"' in listed and '"sent": 2' in listed


def test_briefing_special_at_a_time_is_left_to_the_scheduler(
    cli: dict[str, str], smtp_server: SmtpTestServer
) -> None:
    slug = primary_slug(cli)
    out = ok(
        cli, "special", "--newsletter", slug, "--subject", "Results at six", "--stories", "1", "--at", "18:00"
    )

    assert "is scheduled for 2026-11-29 18:00 (Europe/London)" in out and smtp_server.messages == []
    engine = cli_engine(cli)
    with Session(engine) as session:
        made = edition_store.get_edition(
            session, EDITION - timedelta(days=1), newsletter_id=1, kind="special-1"
        )
    engine.dispose()
    assert made.scheduled_for == datetime(2026, 11, 29, 18, 0, tzinfo=UTC) and made.status == "scheduled"
    assert "is cancelled" in ok(cli, "specials", "cancel", CLI_DAY, "special-1", "--newsletter", slug)


def test_briefing_special_refuses_bad_input_naming_the_option(
    cli: dict[str, str], smtp_server: SmtpTestServer
) -> None:
    slug = primary_slug(cli)
    engine = cli_engine(cli)
    with session_scope(engine) as session:
        other = newsletter_store.add_newsletter(session, "weekend", {"name": "Weekend"}, now=QUEUED_AT)
        theirs = story_service.add_story(
            session,
            story_service.StoryRequest(
                url="https://news.example.com/w", headline="Weekend story", newsletter_id=other.id
            ),
            now=QUEUED_AT,
        ).id
    base = ["special", "--subject", "Breaking", "--stories", "1"]
    cases = [
        (["special", "--newsletter", "nosuch", "--subject", "Breaking", "--now"], "--newsletter"),
        ([*base[:3], "--stories", str(theirs), "--newsletter", slug, "--now"], "--stories"),
        (["special", "--newsletter", slug, "--subject", "   ", "--stories", "1", "--now"], "--subject"),
        ([*base, "--newsletter", slug, "--now", "--at", "18:00"], "--at"),
        ([*base, "--newsletter", slug], "--at"),
        ([*base, "--newsletter", slug, "--at", "25:00"], "--at"),
        ([*base, "--newsletter", slug, "--at", "09:00"], "--at"),  # already past at noon
        ([*base, "--newsletter", slug, "--now", "--date", "2026-12-01"], "--now"),
        (["special", "--newsletter", slug, "--subject", "B", "--stories", "1,x", "--now"], "--stories"),
        ([*base, "--newsletter", slug, "--now", "--note-file", "/nonexistent/note.md"], "--note-file"),
    ]
    for args, option in cases:
        code, out = run(cli, *args)
        assert code != 0 and f"{option}:" in out, (args, out)
        assert "Traceback" not in out
    with Session(engine) as session:
        assert special_service.list_specials(session) == []
    engine.dispose()
    assert smtp_server.messages == []


def primary_slug(env: dict[str, str]) -> str:
    engine = cli_engine(env)
    with Session(engine) as session:
        slug = newsletter_store.primary(session).slug
    engine.dispose()
    return slug


# --------------------------------------------------------------------------- the editors' form


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_the_editors_form_makes_a_special_shows_its_preview_and_sends_it(
    editor_client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport
) -> None:
    [story_id, *_] = queue_stories(sqlite_engine, EDITION_DAY, count=2)
    add_subscriber(sqlite_engine, "reader@example.com")
    form = editor_client.get("/editor/specials/new")
    assert form.status_code == 200 and f'value="{story_id}"' in form.text
    token = _CSRF.search(form.text)
    assert token

    refused = editor_client.post(
        "/editor/specials",
        data={"csrf_token": token.group(1), "subject": "", "stories": [str(story_id)], "when": "now"},
    )
    assert refused.status_code == 400 and "subject" in refused.text and 'name="subject"' in refused.text

    made = editor_client.post(
        "/editor/specials",
        data={
            "csrf_token": token.group(1),
            "subject": "Breaking: the council resigns",
            "note": "It happened at 13:30.",
            "stories": [str(story_id)],
            "when": "now",
        },
    )
    assert made.status_code == 303, made.text
    page = editor_client.get(made.headers["location"])
    assert page.status_code == 200 and "Breaking: the council resigns" in page.text
    assert "special-1" in page.text and "Send now" in page.text
    location = made.headers["location"]
    assert location == "/editor/specials/2026-11-29?newsletter=briefing&kind=special-1"
    frame = editor_client.get(location.replace("?", "/frame?", 1))
    assert frame.status_code == 200 and "It happened at 13:30." in frame.text

    sent = editor_client.post(
        "/editor/specials/2026-11-29/send",
        data={"csrf_token": token.group(1), "newsletter": "briefing", "kind": "special-1"},
    )
    assert sent.status_code == 303 and sent.headers["location"] == location
    assert wait_until(lambda: len(mailbox.messages) == 1)
    assert mailbox.messages[0].rcpt == "reader@example.com"


def test_the_editors_form_needs_a_csrf_token(editor_client: TestClient, sqlite_engine: sa.Engine) -> None:
    queue_stories(sqlite_engine, EDITION_DAY, count=1)
    response = editor_client.post(
        "/editor/specials", data={"subject": "No token", "stories": ["1"], "when": "now"}
    )
    assert response.status_code == 403
    with Session(sqlite_engine) as session:
        assert special_service.list_specials(session) == []


def test_a_special_page_refuses_what_names_no_special(editor_client: TestClient) -> None:
    for path, status in (
        ("/editor/specials/30-11-2026", 400),
        ("/editor/specials/2026-11-30?kind=regular", 400),
        ("/editor/specials/2026-11-30?kind=special-x", 400),
        ("/editor/specials/2026-11-30?kind=special-1", 404),
        ("/editor/specials/2026-11-30?newsletter=nosuch", 404),
        ("/editor/specials/new?newsletter=nosuch", 404),
    ):
        assert editor_client.get(path).status_code == status, path
