"""The edition commands through the CLI on a temporary database (memory transport)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.cli import cli_env, ok, run

DAY = "2026-11-30"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(
        tmp_path,
        secret_key="cli-secret",
        smtp_url="memory://",
        public_base_url="https://news.example.com",
        send_days="mon-fri",
    )
    for args in (
        [
            "stories",
            "add",
            "--url",
            "https://news.example.com/a",
            "--headline",
            "Budget passes",
            "--status",
            "ready",
        ],
        ["subscribers", "add", "ada@example.com", "--name", "Ada"],
        ["subscribers", "add", "perm@example.com"],
    ):
        ok(env, *args)
    return env


def test_dry_run_then_forced_send_then_a_second_send(env: dict[str, str]) -> None:
    code, out = run(env, "send", "--date", DAY, "--dry-run")
    assert code == 0 and "2 active subscribers would get it" in out and "Nothing was sent" in out

    code, out = run(env, "send", "--date", DAY)
    assert code == 1 and "too early" in out

    code, out = run(env, "send", "--date", DAY, "--force")
    assert code == 0 and "is sent: 2 delivered" in out

    code, out = run(env, "send", "--date", DAY, "--force")
    assert code == 0 and "already sent" in out

    code, out = run(env, "editions", "show", DAY, "--failed")
    assert code == 0 and "sent: 2" in out


def test_test_copy_goes_to_one_address(env: dict[str, str]) -> None:
    code, out = run(env, "send", "--date", DAY, "--to", "desk@example.org")
    assert code == 0 and "Test copy" in out and "desk@example.org" in out
    code, out = run(env, "send", "--date", DAY, "--to", "not an address")
    assert code == 1 and "--to:" in out


def test_hold_release_skip_and_calendar(env: dict[str, str]) -> None:
    code, out = run(env, "hold", DAY)
    assert code == 0 and "on hold" in out
    code, out = run(env, "send", "--date", DAY, "--force")
    assert code == 1 and "on hold" in out
    assert run(env, "release", DAY)[0] == 0

    assert "No edition on 2026-12-25" in run(env, "skip", "2026-12-25", "--reason", "Christmas Day")[1]
    code, out = run(env, "calendar", "--count", "30")
    assert code == 0 and "2026-12-24" in out and "2026-12-25 Christmas Day" in out
    assert "2026-12-25 │" not in out
    assert "send date again" in run(env, "unskip", "2026-12-25")[1]
    code, out = run(env, "skip", "25/12/2026")
    assert code == 1 and "DATE:" in out
    code, out = run(env, "skip", "2026-12-28", "--reason", "x" * 201)
    assert code == 1 and "one line of at most 200 characters" in out
    assert "2026-12-28" in run(env, "calendar", "--count", "30")[1], "a refused skip writes nothing"


def test_preflight_exit_code_follows_errors(env: dict[str, str]) -> None:
    assert run(env, "preflight", "--date", DAY)[0] == 0
    run(
        env,
        "stories",
        "add",
        "--url",
        "https://news.example.com/tk",
        "--headline",
        "Minister TK",
        "--status",
        "ready",
    )
    code, out = run(env, "preflight", "--date", DAY)
    assert code == 1 and "placeholder" in out and "Preflight failed" in out


def test_status_reports_unhealthy_without_a_scheduler(env: dict[str, str]) -> None:
    code, out = run(env, "status")
    assert code == 1 and "next send:" in out and "no scheduler has ever run" in out


def test_stories_list_uses_the_configured_section_order(env: dict[str, str]) -> None:
    for section in ("World", "Economy"):
        run(
            env,
            "stories",
            "add",
            "--url",
            f"https://news.example.com/{section}",
            "--headline",
            section,
            "--section",
            section,
        )
    listed = json.loads(
        run({**env, "BRIEFING_SECTION_ORDER": "World,Economy"}, "stories", "list", "--json")[1]
    )
    assert [s["section"] for s in listed] == ["World", "Economy", ""]


def test_editors_note_appears_in_the_edition(env: dict[str, str], tmp_path: Path) -> None:
    code, out = run(env, "note", "Polls open at *7am*.", "--date", DAY)
    assert code == 0 and "has a note" in out
    out_dir = tmp_path / "p"
    assert run(env, "preview", "--date", DAY, "--out", str(out_dir))[0] == 0
    assert "Polls open at" in (out_dir / "briefing.txt").read_text(encoding="utf-8")
    assert "<em>7am</em>" in (out_dir / "briefing.html").read_text(encoding="utf-8")
    run(env, "send", "--date", DAY, "--force")
    code, out = run(env, "note", "Too late", "--date", DAY)
    assert code == 1 and "content is fixed" in out
