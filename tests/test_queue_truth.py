"""The queue tells the truth: each story says whether its edition takes it and, if not, why.

The judgement is compose's own rule at the edition's send time (06:00 London on Monday 30 November),
so a story still under embargo at 06:00, or expired by then, shows as left out although it is
"ready"; the CLI, the web queue and preflight all say so. The web queue shows sections in
BRIEFING_SECTION_ORDER and blurbs rendered as the email renders them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.db import session_scope
from briefing.mail.transport import MemoryTransport
from briefing.service import edition_content
from briefing.service import queue as queue_service
from briefing.service import stories as story_service
from briefing.wiring import compose_options, edition_setup, send_plan
from tests.fixtures.cli import cli_env, ok
from tests.fixtures.web import (
    BASE_URL,
    EDITION_DAY,
    FIXED_NOW,
    add_editor,
    login,
    queue_stories,
    send_edition,
    web_settings_for,
)

MONDAY = EDITION_DAY  # 06:00 London = 06:00 UTC in November; FIXED_NOW is the day before
EMBARGO = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)  # lifts after the send
EXPIRY = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)  # ends before the send


def add(engine: sa.Engine, headline: str, *, now: datetime = FIXED_NOW, **fields: Any) -> int:
    values: dict[str, Any] = {
        "url": f"https://www.example.com/{headline.lower().replace(' ', '-')}",
        "headline": headline,
        "section": "Politics",
        "status": "ready",
        "edition_date": MONDAY,
    }
    values.update(fields)
    with session_scope(engine) as session:
        return story_service.add_story(session, story_service.StoryRequest(**values), now=now).id


def a_mixed_queue(engine: sa.Engine) -> dict[str, int]:
    return {
        "embargoed": add(engine, "Embargoed report", embargo_until=EMBARGO),
        "expired": add(engine, "Overnight travel warning", expires_at=EXPIRY),
        "in": add(engine, "Budget passes"),
        "draft": add(engine, "Half written", status="draft"),
        "undated": add(engine, "Any day now", edition_date=None),
        "twice": add(engine, "Budget passes again", url="https://www.example.com/budget-passes"),
    }


def judged(engine: sa.Engine, day: date | None = MONDAY, now: datetime = FIXED_NOW) -> dict[int, Any]:
    settings = web_settings_for(str(engine.url))
    with Session(engine) as session:
        views = queue_service.queue_view(
            session,
            send_plan(settings),
            compose_options(settings),
            now=now,
            edition_date=day,
            newsletter_id=1,
        )
    return {entry.story.id: entry for view in views for entry in view.entries}


# --------------------------------------------------------------------------- the use case


def test_each_story_says_whether_the_edition_takes_it_and_why_not(engine: sa.Engine) -> None:
    ids = a_mixed_queue(engine)
    entries = judged(engine)
    why = {name: (entries[i].goes_in, entries[i].why) for name, i in ids.items()}
    assert why == {
        "embargoed": (False, "embargoed until 07:30"),
        "expired": (False, "expired at 05:00"),
        "in": (True, ""),
        "draft": (False, "draft"),
        "undated": (True, ""),
        "twice": (False, "the same link as a story above it"),
    }


def test_the_judgement_is_the_edition_s_own_choice(sqlite_engine: sa.Engine) -> None:
    """Exactly the stories the queue says go in are the ones the preview's edition carries."""
    a_mixed_queue(sqlite_engine)
    setup = edition_setup(web_settings_for(str(sqlite_engine.url)))
    with Session(sqlite_engine) as session:
        prepared = edition_content.prepare(session, setup, MONDAY, now=FIXED_NOW)
    going = {i for i, entry in judged(sqlite_engine).items() if entry.goes_in}
    assert going == {s.id for s in prepared.briefing.stories}


def test_undated_stories_wait_for_the_next_edition_that_can_still_go_out(sqlite_engine: sa.Engine) -> None:
    queue_stories(sqlite_engine, count=1)
    send_edition(sqlite_engine, web_settings_for(str(sqlite_engine.url)), MemoryTransport(), MONDAY)
    story = add(sqlite_engine, "Any day now", edition_date=None)
    after_send = datetime(2026, 11, 30, 6, 30, tzinfo=UTC)  # Monday's window is still open, but it is sent
    entry = judged(sqlite_engine, day=None, now=after_send)[story]
    assert entry.edition_date == date(2026, 12, 1) and entry.goes_in
    before_send = judged(sqlite_engine, day=None, now=FIXED_NOW)[story]
    assert before_send.edition_date == MONDAY and not before_send.goes_in  # sent already


def test_a_ready_story_for_a_sent_edition_says_it_missed_it(sqlite_engine: sa.Engine) -> None:
    queue_stories(sqlite_engine, count=1)
    send_edition(sqlite_engine, web_settings_for(str(sqlite_engine.url)), MemoryTransport(), MONDAY)
    late = add(sqlite_engine, "Added after the send")
    entry = judged(sqlite_engine)[late]
    assert not entry.goes_in and entry.why == "the edition of 2026-11-30 is sent"


def test_preflight_warns_for_each_ready_story_left_out(sqlite_engine: sa.Engine) -> None:
    ids = a_mixed_queue(sqlite_engine)
    setup = edition_setup(web_settings_for(str(sqlite_engine.url)))
    with Session(sqlite_engine) as session:
        report = edition_content.prepare(session, setup, MONDAY, now=FIXED_NOW).report
    warned = {w.where: w.message for w in report.warnings if "left out" in w.message}
    assert warned == {
        f"story {ids['embargoed']}": "“Embargoed report” is ready but left out: embargoed until 07:30",
        f"story {ids['expired']}": "“Overnight travel warning” is ready but left out: expired at 05:00",
        f"story {ids['twice']}": (
            "“Budget passes again” is ready but left out: the same link as a story above it"
        ),
    }
    assert report.ok, "a left-out story is a warning, never a reason to stop the send"


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, secret_key="cli-secret", section_order="World,Politics")


def test_stories_list_shows_why_a_ready_story_is_left_out(env: dict[str, str]) -> None:
    common = ["--status", "ready", "--date", MONDAY.isoformat(), "--section", "Politics"]
    ok(env, "stories", "add", "--url", "https://example.org/e", "--headline", "Embargoed report", *common,
       "--embargo", "2026-11-30 07:30")  # fmt: skip
    ok(env, "stories", "add", "--url", "https://example.org/x", "--headline", "Travel warning", *common,
       "--expires", "2026-11-30 05:00")  # fmt: skip
    ok(
        env,
        "stories",
        "add",
        "--url",
        "https://example.org/w",
        "--headline",
        "Summit opens",
        *common[:-1],
        "World",
    )
    listed = {s["headline"]: s for s in json.loads(ok(env, "stories", "list", "--json"))}
    assert {h: (s["status"], s["goes_in"], s["why"]) for h, s in listed.items()} == {
        "Embargoed report": ("ready", False, "embargoed until 07:30"),
        "Travel warning": ("ready", False, "expired at 05:00"),
        "Summit opens": ("ready", True, ""),
    }
    assert list(listed) == ["Summit opens", "Embargoed report", "Travel warning"], "World comes first"
    table = ok({**env, "COLUMNS": "200"}, "stories", "list", "--date", MONDAY.isoformat())
    assert re.search(r"Embargoed report .* no: embargoed until 07:30", table)
    assert re.search(r"Travel warning .* no: expired at 05:00", table)
    assert re.search(r"Summit opens .* yes", table)


def test_preflight_command_lists_the_left_out_story(env: dict[str, str]) -> None:
    ok(
        env,
        "stories",
        "add",
        "--url",
        "https://example.org/n",
        "--headline",
        "Lead story",
        "--status",
        "ready",
    )
    ok(env, "stories", "add", "--url", "https://example.org/e", "--headline", "Embargoed report",
       "--status", "ready", "--embargo", "2026-11-30 07:30")  # fmt: skip
    out = ok({**env, "COLUMNS": "200"}, "preflight", "--date", MONDAY.isoformat())
    assert "“Embargoed report” is ready but left out: embargoed until 07:30" in out


# --------------------------------------------------------------------------- the web queue


@pytest.fixture
def ordered_client(make_app: Callable[..., FastAPI], sqlite_engine: sa.Engine, sqlite_url: str) -> TestClient:
    app = make_app(settings=web_settings_for(sqlite_url, section_order="World,Politics"))
    client = TestClient(app, base_url=BASE_URL, follow_redirects=False)
    add_editor(sqlite_engine)
    assert login(client).status_code == 303
    return client


def _story_html(page: str, story_id: int) -> str:
    start = page.index(f'id="story-{story_id}"')
    return page[start : page.index("</li>", start)]


def test_web_queue_says_which_stories_the_edition_leaves_out(
    ordered_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    ids = a_mixed_queue(sqlite_engine)
    page = ordered_client.get(f"/editor/queue?date={MONDAY.isoformat()}")
    assert page.status_code == 200
    shown = {name: _story_html(page.text, i) for name, i in ids.items()}
    assert "not in this edition: embargoed until 07:30" in shown["embargoed"]
    assert "not in this edition: expired at 05:00" in shown["expired"]
    assert "not in this edition: draft" in shown["draft"]
    assert "in this edition</span>" in shown["in"] and "not in this edition" not in shown["in"]
    assert "4 ready" not in page.text and "5 ready, 2 in the 06:00 edition" in page.text


def test_web_queue_follows_the_section_order_of_the_email(
    ordered_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    add(sqlite_engine, "Council vote", section="Politics")
    add(sqlite_engine, "Summit opens", section="World")
    add(sqlite_engine, "Match report", section="Sport")
    page = ordered_client.get(f"/editor/queue?date={MONDAY.isoformat()}").text
    headings = re.findall(r"<h2>([^<]+)</h2>", page)
    assert headings[:3] == ["World", "Politics", "Sport"]


def test_web_queue_renders_blurbs_as_the_email_does(
    ordered_client: TestClient, sqlite_engine: sa.Engine
) -> None:
    story = add(
        sqlite_engine,
        "Budget passes",
        blurb="**MPs vote** at [7pm](https://example.org/vote), 100% {sure}.\n\n<script>alert(1)</script>",
    )
    item = _story_html(ordered_client.get(f"/editor/queue?date={MONDAY.isoformat()}").text, story)
    blurb = re.search(r'<div class="blurb as-sent">(.*?)</div>', item, re.S)
    assert blurb, item
    shown = blurb.group(1)
    assert "<strong>MPs vote</strong>" in shown
    assert '<a href="https://example.org/vote" rel="noopener noreferrer">7pm</a>' in shown
    assert "**" not in shown and "<script>" not in shown
    assert "\ue025" not in shown and "100&#37; &#123;sure&#125;" in shown  # as the email writes them
