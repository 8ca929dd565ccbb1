"""The calendar rules through the CLI: `send` obeys the skip list, `calendar --json`, `status --json`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from briefing.db import make_engine, session_scope
from briefing.service import schedule as schedule_service
from tests.fixtures.cli import cli_env, ok, run

DAY = "2026-11-30"  # a Monday; the send time is 06:00 in London (UTC in November)
IN_THE_WINDOW = "2026-11-30T06:30:00+00:00"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(
        tmp_path,
        secret_key="cli-secret",
        smtp_url="memory://",
        public_base_url="https://news.example.com",
        send_days="mon-fri",
    )
    ok(
        env,
        "stories",
        "add",
        "--url",
        "https://news.example.com/a",
        "--headline",
        "Budget passes",
        "--status",
        "ready",
    )
    ok(env, "subscribers", "add", "ada@example.com", "--name", "Ada")
    ok(env, "subscribers", "add", "grace@example.com")
    return env


def beat(env: dict[str, str], at: str) -> None:
    """A live scheduler's heartbeat, so that status speaks of the edition alone."""
    engine = make_engine(env["BRIEFING_DATABASE_URL"])
    moment = datetime.fromisoformat(at).astimezone(UTC)
    try:
        with session_scope(engine) as s:
            schedule_service.record_heartbeat(
                s, owner="host:1", started_at=moment, next_run_at=None, now=moment
            )
    finally:
        engine.dispose()


def test_send_inside_the_window_refuses_a_skipped_date_unless_forced(env: dict[str, str]) -> None:
    ok(env, "skip", DAY, "--reason", "Strike day")
    in_window = {**env, "BRIEFING_NOW": IN_THE_WINDOW}

    code, out = run(in_window, "send", "--date", DAY)

    assert code == 1
    assert "skip list" in out and "--force" in out and "briefing unskip" in out
    assert "2 active subscribers would get it" in ok(in_window, "send", "--date", DAY, "--dry-run")
    code, out = run(in_window, "send", "--date", DAY, "--force")
    assert code == 0 and "is sent: 2 delivered" in out


def test_an_unskipped_date_sends_without_force(env: dict[str, str]) -> None:
    ok(env, "skip", DAY)
    ok(env, "unskip", DAY)
    code, out = run({**env, "BRIEFING_NOW": IN_THE_WINDOW}, "send", "--date", DAY)
    assert code == 0 and "is sent: 2 delivered" in out


def test_calendar_json_lists_the_sends_and_the_skipped_dates(env: dict[str, str]) -> None:
    ok(env, "skip", "2026-12-01", "--reason", "Strike day")
    settings_skip = {**env, "BRIEFING_SKIP_DATES": "2026-12-25"}

    listed = json.loads(ok(settings_skip, "calendar", "--json", "--count", "3"))

    assert listed["zone"] == "Europe/London"
    assert [s["edition_date"] for s in listed["sends"]] == ["2026-11-30", "2026-12-02", "2026-12-03"]
    first = listed["sends"][0]
    assert (first["weekday"], first["utc"]) == ("Monday", "2026-11-30T06:00:00+00:00")
    assert listed["skipped"] == [
        {"date": "2026-12-01", "reason": "Strike day", "source": "briefing skip"},
        {"date": "2026-12-25", "reason": "", "source": "BRIEFING_SKIP_DATES"},
    ]


def test_status_json_names_the_reason_and_exits_1(env: dict[str, str]) -> None:
    ok(env, "hold", DAY)
    late = "2026-11-30T09:30:00+00:00"  # the window closed at 09:00
    beat(env, late)

    code, out = run({**env, "BRIEFING_NOW": late}, "status", "--json")

    assert code == 1
    report = json.loads(out)
    assert report["healthy"] is False
    assert report["last"]["edition_date"] == DAY and report["last"]["status"] == "held"
    assert report["scheduler"]["owner"] == "host:1" and report["scheduler"]["heartbeat_age_seconds"] == 0
    assert any("held past its window" in p for p in report["problems"]), report["problems"]

    code, out = run({**env, "BRIEFING_NOW": late}, "status")
    assert code == 1 and "problem: the edition of 2026-11-30 is held past its window" in out


def test_status_json_when_healthy(env: dict[str, str]) -> None:
    ok({**env, "BRIEFING_NOW": IN_THE_WINDOW}, "send", "--date", DAY)
    later = "2026-11-30T07:00:00+00:00"
    beat(env, later)

    report = json.loads(ok({**env, "BRIEFING_NOW": later}, "status", "--json"))

    assert report["healthy"] is True and report["problems"] == []
    assert report["last"]["counts"]["sent"] == 2
    assert report["next_send"]["edition_date"] == "2026-12-01"
