"""Edition use cases: preview, test send, top-up, and the preview command's files."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

from sqlmodel import Session
from typer.testing import CliRunner

from briefing.cli import app
from briefing.db import session_scope
from briefing.domain import ArticleInput
from briefing.mail.transport import MemoryTransport
from briefing.service import editions as edition_service
from briefing.store import articles as article_store
from briefing.store import editions as edition_store
from tests.fixtures.clock import T0, ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom

SEND_AT = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # the edition's send time


def _articles(room: Newsroom, n: int) -> None:
    with session_scope(room.engine) as s:
        for i in range(n):
            article_store.add_article(
                s,
                ArticleInput(
                    url=f"https://news.example.com/fresh-{i}",
                    title=f"Fresh story {i}",
                    summary="Just published.",
                    section="Politics",
                    published_at=SEND_AT - timedelta(minutes=i + 1),
                ),
                now=T0,
            )


def test_top_up_fills_a_thin_edition_and_freezes_only_real_stories(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    _articles(room, 4)
    room.readers(2)
    setup = replace(room.setup, min_stories=3)

    with Session(room.engine) as s:
        prepared = edition_service.prepare(s, setup, EDITION, now=SEND_AT)
    automatic = [st for st in prepared.briefing.stories if st.automatic]
    assert len(prepared.briefing.stories) == 3 and len(automatic) == 2
    assert [st.headline for st in automatic] == ["Fresh story 0", "Fresh story 1"]
    assert sum("added automatically" in str(w) for w in prepared.report.warnings) == 2

    mail = MemoryTransport()
    outcome = edition_service.send_edition(
        room.engine, setup, EDITION, mail, force=True, clock=ManualClock(SEND_AT)
    )
    assert outcome.edition.status == "sent"
    with Session(room.engine) as s:
        frozen = edition_store.get_edition(s, EDITION, newsletter_id=1)
    assert len(frozen.story_ids) == 1 and all(i > 0 for i in frozen.story_ids)
    body = message_from_bytes(mail.messages[0].data, policy=default_policy)
    text = body.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Fresh story 0" in text and "Fresh story 1" in text


def test_test_send_is_marked_and_leaves_the_ledger_alone(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(3)
    mail = MemoryTransport()

    edition_service.send_test(
        room.engine, room.setup, EDITION, "editor@example.org", mail, clock=ManualClock(SEND_AT)
    )

    [copy] = mail.messages
    parsed = message_from_bytes(copy.data, policy=default_policy)
    assert parsed["Subject"].startswith("[Test] ")
    assert copy.rcpt == "editor@example.org"
    with Session(room.engine) as s:
        assert edition_store.find_edition(s, EDITION, newsletter_id=1) is None


def test_preview_shows_frozen_content_once_sending_started(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    edition_service.send_edition(
        room.engine, room.setup, EDITION, MemoryTransport(), force=True, clock=ManualClock(SEND_AT)
    )
    room.queue_story(headline="A late story that missed the edition")

    result = edition_service.preview(room.engine, room.setup, EDITION, clock=ManualClock(SEND_AT))

    assert result.prepared.frozen
    assert "A late story" not in result.html


def test_preview_command_writes_the_three_files(
    tmp_path: Path, sqlite_url: str, sqlite_newsroom: Newsroom
) -> None:
    sqlite_newsroom.readers(1)
    out = tmp_path / "preview"
    result = CliRunner().invoke(
        app,
        ["preview", "--date", EDITION.isoformat(), "--out", str(out), "--as", "reader0000@example.com"],
        env={
            "BRIEFING_DATABASE_URL": sqlite_url,
            "BRIEFING_SECRET_KEY": "k",
            "BRIEFING_SEND_DAYS": "mon-sun",
        },
    )
    assert result.exit_code == 0, result.output
    assert "Preflight passed" in result.output
    html = (out / "briefing.html").read_text(encoding="utf-8")
    text = (out / "briefing.txt").read_text(encoding="utf-8")
    eml = message_from_bytes((out / "briefing.eml").read_bytes(), policy=default_policy)
    assert "Budget clears the Assembly" in html and "Budget clears the Assembly" in text
    assert eml["To"] == "reader0000@example.com"
    assert eml["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert eml.get_content_type() == "multipart/alternative"
