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


@pytest.mark.parametrize("where", ["a file", "/dev/null", "/proc/self", "a 256-character name"])
def test_preview_out_must_be_a_folder_it_can_write(env: dict[str, str], tmp_path: Path, where: str) -> None:
    if where == "a file":
        target = tmp_path / "notes.txt"
        target.write_text("keep", encoding="utf-8")
    elif where == "a 256-character name":
        target = tmp_path / ("p" * 256)
    else:
        target = Path(where)
    code, out = run(env, "preview", "--date", DAY, "--out", str(target))
    assert code == 1 and "error: --out:" in out and "Traceback" not in out
    if where == "a file":
        assert target.read_text(encoding="utf-8") == "keep"


def test_preview_replaces_a_symlink_in_its_folder_and_never_writes_through_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    out_dir = tmp_path / "p"
    out_dir.mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not yours", encoding="utf-8")
    (out_dir / "briefing.txt").symlink_to(elsewhere)
    assert run(env, "preview", "--date", DAY, "--out", str(out_dir))[0] == 0
    assert elsewhere.read_text(encoding="utf-8") == "not yours"
    written = out_dir / "briefing.txt"
    assert not written.is_symlink() and "Budget passes" in written.read_text(encoding="utf-8")
    assert sorted(p.name for p in out_dir.iterdir()) == ["briefing.eml", "briefing.html", "briefing.txt"]


def test_preview_of_a_sent_edition_shows_the_frozen_copy(env: dict[str, str], tmp_path: Path) -> None:
    assert run(env, "send", "--date", DAY, "--force")[0] == 0
    out_dir = tmp_path / "p"
    code, out = run(env, "preview", "--date", DAY, "--out", str(out_dir))
    assert code == 0, out
    assert "the frozen copy of 2026-11-29 12:00: what was or will be sent" in out
    assert "there are no stories" not in out
    assert "Budget passes" in (out_dir / "briefing.html").read_text(encoding="utf-8")
    code, out = run(env, "preflight", "--date", DAY)
    assert code == 0 and "frozen copy" in out


def test_preview_says_when_the_queue_is_judged(env: dict[str, str], tmp_path: Path) -> None:
    code, out = run(env, "preview", "--date", DAY, "--out", str(tmp_path / "p"))
    assert code == 0 and f"the queue as of {DAY} 06:00" in out


def test_dry_run_names_the_first_twenty_readers_and_json_names_all(
    env: dict[str, str], tmp_path: Path
) -> None:
    listed = tmp_path / "readers.csv"
    listed.write_text(
        "email\n" + "".join(f"reader{i:02d}@example.net\n" for i in range(23)), encoding="utf-8"
    )
    ok(env, "subscribers", "import", str(listed))

    code, out = run(env, "send", "--date", DAY, "--dry-run")
    assert code == 0 and "25 active subscribers would get it" in out
    shown = [line.strip() for line in out.splitlines() if line.startswith("  ") and "@" in line]
    assert shown == ["ada@example.com", "perm@example.com"] + [
        f"reader{i:02d}@example.net" for i in range(18)
    ]
    assert "... and 5 more (--json lists them all)" in out

    code, out = run(env, "send", "--date", DAY, "--dry-run", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["recipients"] == 25 and len(result["emails"]) == 25
    assert result["emails"][-1] == "reader22@example.net"
    assert result["preflight"]["ok"] is True and result["status"] == "scheduled"
    assert result["judged_at"] == f"{DAY}T06:00:00+00:00"


def test_dry_run_of_a_started_edition_names_the_copies_still_to_send(env: dict[str, str]) -> None:
    run(env, "send", "--date", DAY, "--force")
    code, out = run(env, "send", "--date", DAY, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["emails"] == [] and json.loads(out)["status"] == "sent"


def test_json_goes_only_with_a_dry_run(env: dict[str, str]) -> None:
    code, out = run(env, "send", "--date", DAY, "--json")
    assert code == 1 and "--json: only goes with --dry-run" in out


def test_preflight_refuses_local_reader_links_when_mail_goes_to_a_real_relay(env: dict[str, str]) -> None:
    # BRIEFING_PUBLIC_BASE_URL left at its default, http://127.0.0.1:8000
    real = {k: v for k, v in env.items() if k != "BRIEFING_PUBLIC_BASE_URL"}
    real["BRIEFING_SMTP_URL"] = "smtp://smtp.example.com:587"
    code, out = run(real, "preflight", "--date", DAY)
    assert code == 1 and "BRIEFING_PUBLIC_BASE_URL: 'http://127.0.0.1:8000' is not https" in out
    code, out = run(real, "send", "--date", DAY, "--force")
    assert code == 1 and "BRIEFING_PUBLIC_BASE_URL" in out
    rehearsal = {**real, "BRIEFING_SMTP_URL": "memory://"}
    assert run(rehearsal, "preflight", "--date", DAY)[0] == 0


def test_watching_an_edition_that_is_not_sending_prints_it_once(env: dict[str, str]) -> None:
    code, out = run(env, "editions", "show", DAY, "--watch")
    assert code == 1 and f"no edition for {DAY}" in out
    assert run(env, "send", "--date", DAY, "--force")[0] == 0
    code, out = run(env, "editions", "show", DAY, "--watch")
    assert code == 0 and f"Edition of {DAY}: sent" in out and "sent: 2" in out
    assert "sending:" not in out and "ETA" not in out


def test_watch_is_for_people_and_json_for_scripts(env: dict[str, str]) -> None:
    code, out = run(env, "editions", "show", DAY, "--watch", "--json")
    assert code == 1 and "--watch: watches in a terminal; leave out --json" in out
