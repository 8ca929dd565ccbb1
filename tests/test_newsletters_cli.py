"""`briefing newsletters ...` and --newsletter on the editors' commands, on a real SQLite file.

The CLI's clock is Sunday 29 November 2026, noon in London (tests/fixtures/cli.py). The weekend
newsletter in these tests sends at 11:30 on Saturdays and Sundays, so its Sunday edition is due and
inside its window; the first newsletter's next edition is Monday's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import make_engine, session_scope, upgrade
from briefing.store import newsletters as newsletter_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.smtp import SmtpTestServer

SUNDAY = "2026-11-29"
MONDAY = "2026-11-30"
SET_UP_AT = datetime(2026, 11, 29, 11, 0, tzinfo=UTC)
WEEKEND = (
    "newsletters",
    "add",
    "weekend",
    "--name",
    "The Weekend",
    "--send-days",
    "sat-sun",
    "--send-time",
    "11:30",
    "--sections",
    "Culture, Food",
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(
        tmp_path, secret_key="cli-secret", smtp_url="memory://", public_base_url="https://news.example.com"
    )


@pytest.fixture
def engine(env: dict[str, str]) -> Iterator[sa.Engine]:
    made = make_engine(env["BRIEFING_DATABASE_URL"])
    upgrade(made)
    yield made
    made.dispose()


def newsletters(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {n["slug"]: n for n in json.loads(ok(env, "newsletters", "list", "--json"))}


def stored_rows(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT * FROM newsletter ORDER BY id")).all()]


def primary_slug(engine: sa.Engine) -> str:
    with Session(engine) as session:
        return newsletter_store.primary(session).slug


def readers_of_weekend(engine: sa.Engine, *, also: tuple[str, ...], only: tuple[str, ...]) -> None:
    """`also` get both newsletters; `only` leave the first and get the weekend one alone."""
    with session_scope(engine) as session:
        weekend = newsletter_store.get_by_slug(session, "weekend")
        for email in (*also, *only):
            reader = subscriber_store.find_by_email(session, email)
            assert reader is not None
            subscription_store.subscribe(session, [reader.id], [weekend.id], now=SET_UP_AT)
            if email in only:
                subscription_store.leave(session, reader.id, 1, now=SET_UP_AT)


# --------------------------------------------------------------------------- newsletters add/list/edit/pause


def test_add_list_edit_pause_and_resume_round_trip(env: dict[str, str]) -> None:
    out = ok(
        env, *WEEKEND, "--timezone", "America/New_York", "--archive", "email", "--brand-colour", "#AA3300"
    )
    assert "Added newsletter weekend (The Weekend): sat,sun 11:30 America/New_York." in out

    listed = newsletters(env)
    weekend = listed["weekend"]
    assert (weekend["name"], weekend["send_days"], weekend["send_time"], weekend["timezone"]) == (
        "The Weekend",
        "sat,sun",
        "11:30",
        "America/New_York",
    )
    assert weekend["next_send"] == {
        "edition_date": SUNDAY,
        "local": "2026-11-29T11:30:00-05:00",
        "utc": "2026-11-29T16:30:00+00:00",
    }
    assert (weekend["readers"], weekend["archive"], weekend["paused"]) == (0, "email", False)
    assert weekend["section_order"] == ["Culture", "Food"]
    first = next(n for slug, n in listed.items() if slug != "weekend")
    assert (first["send_days"], first["send_time"], first["timezone"]) == (
        "mon-fri",
        "06:00",
        "Europe/London",
    )

    out = ok(
        env,
        "newsletters",
        "edit",
        "weekend",
        "--send-days",
        "mon,wed,fri",
        "--timezone",
        "",
        "--sections-optional",
    )
    assert "sections_optional, send_days, timezone" in out and "mon,wed,fri 11:30 Europe/London" in out
    weekend = newsletters(env)["weekend"]
    assert (weekend["send_days"], weekend["timezone"], weekend["sections_optional"]) == (
        "mon,wed,fri",
        "Europe/London",
        True,
    )
    assert weekend["next_send"]["edition_date"] == MONDAY

    assert "Paused weekend" in ok(env, "newsletters", "pause", "weekend")
    assert "already paused" in ok(env, "newsletters", "pause", "weekend")
    weekend = newsletters(env)["weekend"]
    assert weekend["paused"] is True and weekend["next_send"] is None
    table = ok(env, "newsletters", "list")
    assert "weekend" in table and "paused" in table and "The Weekend" in table

    assert "Resumed weekend: next edition 2026-11-30, at 11:30 GMT" in ok(
        env, "newsletters", "resume", "weekend"
    )
    assert newsletters(env)["weekend"]["paused"] is False


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--send-days", "moon-fri", "--send-days: unknown day"),
        ("--send-days", "fri-mon", "--send-days: day range"),
        ("--send-time", "25:00", "--send-time: not a time of day"),
        ("--send-time", "06:00:30", "--send-time:"),
        ("--timezone", "Mars/Olympus_Mons", "--timezone: unknown time zone"),
        ("--timezone", "America", "--timezone: unknown time zone"),
        ("--timezone", "../../etc/passwd", "--timezone: unknown time zone"),
        ("--sender-address", "desk@", "--sender-address:"),
        ("--reply-to", "not an address", "--reply-to:"),
        ("--sender-name", "Desk\r\nBcc: all@example.net", "--sender-name: must be one line"),
        ("--list-id", "weekend", "--list-id: 'weekend' is not a list id"),
        ("--list-id", "weekend.news.example.com\nX-Evil: 1", "--list-id: must be one line"),
        ("--brand-colour", "red", "--brand-colour:"),
        ("--accent-colour", "#12345", "--accent-colour:"),
        ("--logo-url", "http://news.example.com/logo.png", "--logo-url: must be an https:// address"),
        ("--logo-url", "javascript:alert(1)", "--logo-url:"),
        ("--template-set", "missing", "--template-set: there is no folder"),
        ("--template-set", "../web", "--template-set:"),
        ("--archive", "ftp", "--archive: must be web"),
        ("--sections", "World,world", "--sections: names 'world' twice"),
        ("--name", "", "--name:"),
        ("--name", "x" * 201, "--name:"),
        ("--block", "nope=1", "--block: 'nope' is not a block"),
        ("--block", "tip_contact", "--block: 'tip_contact' is not KEY=VALUE"),
        ("--block", "support_url=http://news.example.com/s", "--block support_url: must be an https://"),
        ("--block", "tip_contact=not an address", "--block tip_contact:"),
        ("--block", "why_text=You get {secret}", "--block why_text: unknown field {secret}"),
        (
            "--block",
            "postal_address=1 Road\r\nBcc: x@example.net",
            "--block postal_address: must be one line",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_option_and_nothing_is_written(
    env: dict[str, str], engine: sa.Engine, option: str, value: str, named: str
) -> None:
    ok(env, *WEEKEND)
    before = stored_rows(engine)

    code, out = run(env, "newsletters", "edit", "weekend", option, value)
    assert code == 1 and f"error: {named}" in out and "Traceback" not in out
    code, out = run(env, "newsletters", "add", "other", "--name", "Other", option, value)
    if option == "--name":  # the add's own --name is the one given last
        assert code == 1 and "error: --name:" in out
    else:
        assert code == 1 and f"error: {named}" in out

    assert stored_rows(engine) == before


def test_a_bad_slug_a_taken_slug_and_an_unknown_one_are_refused(
    env: dict[str, str], engine: sa.Engine
) -> None:
    ok(env, *WEEKEND)
    before = stored_rows(engine)
    code, out = run(env, "newsletters", "add", "Week End", "--name", "X")
    assert code == 1 and "error: SLUG: 'Week End' is not a slug" in out
    code, out = run(env, "newsletters", "add", "weekend", "--name", "Again")
    assert code == 1 and "error: SLUG: there is already a newsletter 'weekend'" in out
    code, out = run(env, "newsletters", "pause", "nope")
    assert code == 1 and "error: SLUG: no newsletter 'nope'" in out and "weekend" in out
    code, out = run(env, "newsletters", "edit", "weekend")
    assert code == 1 and "give at least one option" in out
    ok(env, "newsletters", "edit", "weekend", "--list-id", "weekend.news.example.com")
    code, out = run(
        env, "newsletters", "add", "other", "--name", "Other", "--list-id", "<Weekend.news.example.com>"
    )
    assert code == 1 and "--list-id: 'Weekend.news.example.com' is the list id of weekend" in out
    assert len(stored_rows(engine)) == len(before)


# ------------------------------------------------------------------- --newsletter on the editors' commands


def test_stories_add_with_newsletter_queues_into_that_newsletter_only(
    env: dict[str, str], engine: sa.Engine
) -> None:
    ok(env, *WEEKEND)
    ok(env, "stories", "add", "--url", "https://news.example.com/budget", "--headline", "Budget passes")
    out = ok(
        env,
        "stories",
        "add",
        "--newsletter",
        "weekend",
        "--url",
        "https://news.example.com/long-read",
        "--headline",
        "The long read",
        "--section",
        "Culture",
    )
    assert "Queued story 2 for the next edition (weekend): The long read" in out

    weekend = json.loads(ok(env, "stories", "list", "--newsletter", "weekend", "--json"))
    first = json.loads(ok(env, "stories", "list", "--json"))
    assert [s["headline"] for s in weekend] == ["The long read"]
    assert [s["headline"] for s in first] == ["Budget passes"]
    assert weekend[0]["for_edition"] == SUNDAY and first[0]["for_edition"] == MONDAY
    assert "Queue for 2026-11-29 (weekend)" in ok(env, "stories", "list", "--newsletter", "weekend")

    # An id names one story; --newsletter makes sure it is the newsletter meant, before any change.
    code, out = run(env, "stories", "edit", "1", "--newsletter", "weekend", "--headline", "Moved?")
    assert code == 1 and "error: --newsletter: story 1 is not in the queue of weekend" in out
    code, out = run(env, "stories", "ready", "2", "1", "--newsletter", "weekend")
    assert code == 1 and "story 1 is not in the queue of weekend" in out
    assert json.loads(ok(env, "stories", "list", "--json"))[0]["headline"] == "Budget passes"
    assert json.loads(ok(env, "stories", "list", "--newsletter", "weekend", "--json"))[0]["status"] == "draft"
    ok(env, "stories", "ready", "2", "--newsletter", "weekend")
    assert json.loads(ok(env, "stories", "list", "--newsletter", "weekend", "--json"))[0]["status"] == "ready"

    code, out = run(
        env, "stories", "add", "--newsletter", "nope", "--url", "https://example.org/x", "--headline", "X"
    )
    assert code == 1 and "error: --newsletter: no newsletter 'nope'" in out and "weekend" in out
    assert len(json.loads(ok(env, "stories", "list", "--newsletter", "weekend", "--json"))) == 1


@pytest.fixture
def smtp_env(tmp_path: Path, smtp_server: SmtpTestServer, engine: sa.Engine) -> dict[str, str]:
    """Ada reads the first newsletter, Bob both, Cy the weekend one alone; each has a ready story."""
    env = cli_env(
        tmp_path,
        secret_key="cli-secret",
        smtp_url=smtp_server.url(),
        public_base_url="https://news.example.com",
        sender_address="desk@news.example.com",
    )
    ok(env, *WEEKEND)
    for email in ("ada@example.com", "bob@example.org", "cy@example.net"):
        ok(env, "subscribers", "add", email)
    readers_of_weekend(engine, also=("bob@example.org",), only=("cy@example.net",))
    ok(
        env,
        "stories",
        "add",
        "--url",
        "https://news.example.com/budget",
        "--headline",
        "Budget",
        "--status",
        "ready",
    )
    ok(
        env,
        *("stories", "add", "--newsletter", "weekend", "--url", "https://news.example.com/read"),
        *("--headline", "The long read", "--section", "Culture", "--status", "ready"),
    )
    return env


def test_send_with_newsletter_sends_only_to_that_newsletters_readers(
    smtp_env: dict[str, str], smtp_server: SmtpTestServer
) -> None:
    env = smtp_env
    dry = json.loads(ok(env, "send", "--newsletter", "weekend", "--date", SUNDAY, "--dry-run", "--json"))
    assert dry["newsletter"] == "weekend" and dry["recipients"] == 2
    assert sorted(dry["emails"]) == ["bob@example.org", "cy@example.net"]
    assert smtp_server.messages == []

    out = ok(env, "send", "--newsletter", "weekend", "--date", SUNDAY)
    assert "is sent: 2 delivered" in out

    got = sorted(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert got == ["bob@example.org", "cy@example.net"]
    for message in smtp_server.messages:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(message.data)
        assert "The long read" in message.data.decode("utf-8", "replace")
        assert "weekend" in str(headers["Message-ID"]) and "weekend.news.example.com" in str(
            headers["List-Id"]
        )
    editions = json.loads(ok(env, "editions", "list", "--json"))
    assert [(e["newsletter"], e["edition_date"], e["kind"], e["status"]) for e in editions] == [
        ("weekend", SUNDAY, "regular", "sent")
    ]
    shown = json.loads(ok(env, "editions", "show", SUNDAY, "--newsletter", "weekend", "--json"))
    assert (shown["newsletter"], shown["counts"]["sent"]) == ("weekend", 2)
    code, out = run(env, "editions", "show", SUNDAY)
    assert code == 1 and "no edition for 2026-11-29" in out  # the first newsletter has none that day
    first = json.loads(ok(env, "stories", "list", "--json"))
    assert [(s["headline"], s["status"]) for s in first] == [("Budget", "ready")]  # its queue untouched

    test_copy = ok(env, "send", "--newsletter", "weekend", "--date", SUNDAY, "--to", "editor@example.com")
    assert "Test copy of 2026-11-29 (weekend) sent to editor@example.com" in test_copy
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos)[-1] == "editor@example.com"


def test_a_paused_newsletter_sends_nothing_unless_forced(
    smtp_env: dict[str, str], smtp_server: SmtpTestServer
) -> None:
    ok(smtp_env, "newsletters", "pause", "weekend")
    code, out = run(smtp_env, "send", "--newsletter", "weekend", "--date", SUNDAY)
    assert code == 1 and "weekend is paused" in out and "briefing newsletters resume weekend" in out
    assert smtp_server.messages == []
    assert json.loads(ok(smtp_env, "editions", "list", "--json")) == []


def test_hold_note_and_editions_list_act_on_the_chosen_newsletter(
    smtp_env: dict[str, str], engine: sa.Engine
) -> None:
    env = smtp_env
    out = ok(env, "hold", SUNDAY, "--newsletter", "weekend")
    assert "The edition of 2026-11-29 (weekend) is on hold" in out and "--newsletter weekend" in out
    ok(env, "note", "Polls open at 7am.", "--date", MONDAY)
    code, out = run(env, "send", "--newsletter", "weekend", "--date", SUNDAY)
    assert code == 1 and "on hold" in out

    table = ok(env, "editions", "list")
    assert "newsletter" in table and "kind" in table and "weekend" in table and primary_slug(engine) in table
    mine = json.loads(ok(env, "editions", "list", "--newsletter", "weekend", "--json"))
    assert [(e["edition_date"], e["held"]) for e in mine] == [(SUNDAY, True)]
    everyone = json.loads(ok(env, "editions", "list", "--json"))
    assert sorted((e["newsletter"], e["edition_date"]) for e in everyone) == sorted(
        [("weekend", SUNDAY), (primary_slug(engine), MONDAY)]
    )
    assert "released" in ok(env, "release", SUNDAY, "--newsletter", "weekend")
    assert json.loads(ok(env, "editions", "list", "--newsletter", "weekend", "--json"))[0]["held"] is False
    code, out = run(env, "editions", "list", "--newsletter", "nope")
    assert code == 1 and "error: --newsletter: no newsletter 'nope'" in out


def test_preview_and_preflight_build_the_chosen_newsletters_edition(
    smtp_env: dict[str, str], tmp_path: Path
) -> None:
    out = ok(smtp_env, "preview", "--newsletter", "weekend", "--date", SUNDAY, "--out", str(tmp_path / "p"))
    assert "Edition of 2026-11-29 (weekend)" in out
    html = (tmp_path / "p" / "briefing.html").read_text(encoding="utf-8")
    assert "The long read" in html and "Budget" not in html
    assert "Edition of 2026-11-29 (weekend)" in ok(
        smtp_env, "preflight", "--newsletter", "weekend", "--date", SUNDAY
    )


def test_a_newsletters_own_standing_blocks_show_in_its_edition_only_and_an_empty_one_goes_back(
    smtp_env: dict[str, str], tmp_path: Path
) -> None:
    ok(
        smtp_env,
        *("newsletters", "edit", "weekend"),
        *("--block", "postal_address=Weekend Desk, 2 Side Street"),
        *("--block", "support_url=https://news.example.com/weekend-support"),
    )

    ok(smtp_env, "preview", "--newsletter", "weekend", "--date", SUNDAY, "--out", str(tmp_path / "w"))
    ok(smtp_env, "preview", "--date", MONDAY, "--out", str(tmp_path / "m"))
    weekend = (tmp_path / "w" / "briefing.html").read_text(encoding="utf-8")
    first = (tmp_path / "m" / "briefing.html").read_text(encoding="utf-8")
    assert "Weekend Desk, 2 Side Street" in weekend and "weekend-support" in weekend
    assert "Weekend Desk" not in first and "weekend-support" not in first

    ok(smtp_env, "newsletters", "edit", "weekend", "--block", "postal_address=")
    ok(smtp_env, "preview", "--newsletter", "weekend", "--date", SUNDAY, "--out", str(tmp_path / "w2"))
    again = (tmp_path / "w2" / "briefing.html").read_text(encoding="utf-8")
    assert "Weekend Desk" not in again and "weekend-support" in again  # only the emptied one went back


# --------------------------------------------------------------------------- status


def test_status_shows_each_newsletter_on_its_own_line(smtp_env: dict[str, str], engine: sa.Engine) -> None:
    ok(smtp_env, "send", "--newsletter", "weekend", "--date", SUNDAY)
    code, out = run(smtp_env, "status")
    assert code == 1  # no scheduler has run against this database
    lines = out.splitlines()
    first = next(line for line in lines if line.startswith(primary_slug(engine)))
    weekend = next(line for line in lines if line.startswith("weekend "))
    assert "next 2026-11-30 at 06:00 GMT" in first and "no edition yet" in first
    assert "next 2026-12-05 at 11:30 GMT" in weekend and "last 2026-11-29 sent sent 2, failed 0" in weekend

    report = json.loads(run(smtp_env, "status", "--json")[1])
    parts = {n["slug"]: n for n in report["newsletters"]}
    assert set(parts) == {primary_slug(engine), "weekend"}
    assert parts["weekend"]["last"]["status"] == "sent" and parts["weekend"]["problems"] == []
    assert report["next_send"]["edition_date"] == MONDAY  # the first newsletter's, as before

    ok(smtp_env, "newsletters", "pause", "weekend")
    weekend = next(line for line in run(smtp_env, "status")[1].splitlines() if line.startswith("weekend "))
    assert "paused, sends nothing" in weekend
