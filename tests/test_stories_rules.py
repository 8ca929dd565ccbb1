"""The story status rule, through every door: a used or dropped story cannot change.

A used story went out in an edition; a dropped one is the record of what was taken out. The rule
lives in one use case (briefing.service.stories), so the CLI, the web queue and the service itself
must all refuse alike, say which story and why, and leave the database exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.config import Settings
from briefing.db import make_engine, session_scope
from briefing.errors import Conflict
from briefing.mail.transport import MemoryTransport
from briefing.service import stories as story_service
from briefing.store import stories as story_store
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.clock import T0
from tests.fixtures.web import EDITION_DAY, add_subscriber, csrf_token, queue_stories, send_edition

MONDAY = date(2026, 11, 30)


def story_rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    """Every column of every story, so a refused change that touched anything shows up."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text("SELECT * FROM story ORDER BY id"))]


def set_used(engine: sa.Engine, story_id: int, day: date = MONDAY) -> None:
    with session_scope(engine) as session:
        story_store.mark_used(session, [story_id], day, now=T0)


def set_dropped(engine: sa.Engine, story_id: int) -> None:
    with session_scope(engine) as session:
        story_service.drop(session, story_id, now=T0)


# --------------------------------------------------------------------------- the use cases


REFUSALS: dict[str, Callable[[Session, int], object]] = {
    "mark_ready": lambda s, i: story_service.mark_ready(s, i, now=T0),
    "mark_draft": lambda s, i: story_service.mark_draft(s, i, now=T0),
    "drop": lambda s, i: story_service.drop(s, i, now=T0),
    "move_story": lambda s, i: story_service.move_story(s, i, 1, now=T0),
    "nudge_story": lambda s, i: story_service.nudge_story(s, i, "down", now=T0),
    "change_status": lambda s, i: story_service.change_status(s, i, "ready", now=T0),
    "edit_story": lambda s, i: story_service.edit_story(s, i, {"edition_date": None}, now=T0),
}


@pytest.mark.parametrize("status", ["used", "dropped"])
@pytest.mark.parametrize("action", REFUSALS, ids=list(REFUSALS))
def test_every_use_case_refuses_a_used_or_dropped_story(
    sqlite_engine: sa.Engine, action: str, status: str
) -> None:
    story_id, _ = queue_stories(sqlite_engine, MONDAY, count=2)
    (set_used if status == "used" else set_dropped)(sqlite_engine, story_id)
    before = story_rows(sqlite_engine)
    with pytest.raises(Conflict) as refused, session_scope(sqlite_engine) as session:
        REFUSALS[action](session, story_id)
    assert refused.value.field == "story"
    assert f"story: {story_id} “Council story number 0” is {status}" in str(refused.value)
    assert story_rows(sqlite_engine) == before


def test_a_used_story_names_the_edition_it_went_out_in(sqlite_engine: sa.Engine) -> None:
    (story_id,) = queue_stories(sqlite_engine, MONDAY, count=1)
    set_used(sqlite_engine, story_id)
    with pytest.raises(Conflict, match="went out in the edition of 2026-11-30"), Session(sqlite_engine) as s:
        story_service.mark_ready(s, story_id, now=T0)


def test_draft_and_ready_stories_still_change_freely(sqlite_engine: sa.Engine) -> None:
    story_id, other = queue_stories(sqlite_engine, MONDAY, count=2)
    with session_scope(sqlite_engine) as s:
        assert story_service.mark_draft(s, story_id, now=T0).status == "draft"
        assert story_service.mark_ready(s, story_id, now=T0).status == "ready"
        assert story_service.nudge_story(s, story_id, "down", now=T0).position == 2
        assert story_service.move_story(s, story_id, 1, now=T0).position == 1
        assert story_service.change_status(s, other, "dropped", now=T0).status == "dropped"


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


@pytest.fixture
def cli_engine(env: dict[str, str], tmp_path: Path) -> sa.Engine:
    """Two queued Politics stories for Monday (ids 1 and 2), and an engine on the CLI's database."""
    for n in (1, 2):
        ok(
            env,
            "stories",
            "add",
            "--url",
            f"https://example.org/{n}",
            "--headline",
            f"Story {n}",
            "--section",
            "Politics",
            "--date",
            MONDAY.isoformat(),
        )
    engine = make_engine(env["BRIEFING_DATABASE_URL"])
    yield engine
    engine.dispose()


CLI_CHANGES = [
    ("stories", "ready", "1"),
    ("stories", "edit", "1", "--date", "2026-12-01"),
    ("stories", "edit", "1", "--date", "next"),
    ("stories", "edit", "1", "--headline", "Rewritten after it went out"),
    ("stories", "edit", "1", "--status", "draft"),
    ("stories", "move", "1", "--to", "2"),
    ("stories", "drop", "1"),
]


@pytest.mark.parametrize("args", CLI_CHANGES, ids=[" ".join(a[1:]) for a in CLI_CHANGES])
def test_cli_refuses_to_change_a_used_story(
    env: dict[str, str], cli_engine: sa.Engine, args: tuple[str, ...]
) -> None:
    set_used(cli_engine, 1)
    before = story_rows(cli_engine)
    code, out = run(env, *args)
    assert code == 1, out
    assert "story: 1 “Story 1” is used: it went out in the edition of 2026-11-30" in out
    assert "Traceback" not in out
    assert story_rows(cli_engine) == before


@pytest.mark.parametrize("args", CLI_CHANGES, ids=[" ".join(a[1:]) for a in CLI_CHANGES])
def test_cli_refuses_to_change_a_dropped_story(
    env: dict[str, str], cli_engine: sa.Engine, args: tuple[str, ...]
) -> None:
    ok(env, "stories", "drop", "1")
    before = story_rows(cli_engine)
    code, out = run(env, *args)
    assert code == 1 and "story: 1 “Story 1” is dropped and can no longer change" in out
    assert story_rows(cli_engine) == before


def test_cli_ready_marks_none_when_one_is_used(env: dict[str, str], cli_engine: sa.Engine) -> None:
    ok(env, "stories", "edit", "2", "--status", "draft")
    set_used(cli_engine, 1)
    before = story_rows(cli_engine)
    code, out = run(env, "stories", "ready", "2", "1")
    assert code == 1 and "story: 1 “Story 1” is used" in out
    assert story_rows(cli_engine) == before, "story 2 must stay a draft: the command changes all or none"


# --------------------------------------------------------------------------- the web queue


WEB_CHANGES: list[tuple[str, dict[str, str]]] = [
    ("/status", {"status": "ready"}),
    ("/status", {"status": "draft"}),
    ("/status", {"status": "dropped"}),
    ("/move", {"direction": "up"}),
    ("/move", {"direction": "down"}),
    ("", {"headline": "Rewritten", "url": "https://www.example.com/x", "edition_date": "2026-12-01"}),
]
WEB_IDS = [f"{path or '/edit'} {next(iter(form.values()))}" for path, form in WEB_CHANGES]


@pytest.mark.parametrize("status", ["used", "dropped"])
@pytest.mark.parametrize(("path", "form"), WEB_CHANGES, ids=WEB_IDS)
def test_web_queue_refuses_to_change_a_used_or_dropped_story(
    editor_client: TestClient, sqlite_engine: sa.Engine, path: str, form: dict[str, str], status: str
) -> None:
    story_id, _ = queue_stories(sqlite_engine, count=2)
    (set_used if status == "used" else set_dropped)(sqlite_engine, story_id)
    before = story_rows(sqlite_engine)
    response = editor_client.post(
        f"/editor/stories/{story_id}{path}",
        data={"csrf_token": csrf_token(editor_client), "day": EDITION_DAY.isoformat(), **form},
    )
    assert response.status_code == 409, response.text
    assert f"{story_id} “Council story number 0” is {status}" in response.text
    assert story_rows(sqlite_engine) == before


def test_a_story_that_really_went_out_cannot_be_readied_again(
    editor_client: TestClient, sqlite_engine: sa.Engine, web_settings: Settings, mailbox: MemoryTransport
) -> None:
    story_ids = queue_stories(sqlite_engine)
    add_subscriber(sqlite_engine, "reader@example.com")
    send_edition(sqlite_engine, web_settings, mailbox)
    with session_scope(sqlite_engine) as session:
        assert story_store.get_story(session, story_ids[0]).status == "used"
    before = story_rows(sqlite_engine)
    response = editor_client.post(
        f"/editor/stories/{story_ids[0]}/status",
        data={"csrf_token": csrf_token(editor_client), "status": "ready"},
    )
    assert response.status_code == 409 and "went out in the edition of 2026-11-30" in response.text
    assert story_rows(sqlite_engine) == before
