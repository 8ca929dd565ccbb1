"""Suppressions kept across tools: Mailchimp and listmonk exports, suppression lists, sign-up again.

End to end through the real `briefing` command on a SQLite file, and through the sign-up page;
the sample files are the ones subscribers/README.md documents.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from briefing.db import make_engine, upgrade
from briefing.domain import SubscriberData, SubscriberStatus
from briefing.mail.transport import MemoryTransport
from briefing.store import subscribers as subscriber_store
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.web import add_subscriber, subscriber

SAMPLES = Path(__file__).resolve().parent.parent / "subscribers"
CLI_NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def listed(env: dict[str, str]) -> dict[str, SubscriberData]:
    engine = make_engine(env["BRIEFING_DATABASE_URL"])
    upgrade(engine)  # a command refused before its first query has not created the tables
    try:
        with Session(engine) as session:
            return {s.email: s for s in subscriber_store.iter_subscribers(session)}
    finally:
        engine.dispose()


def statuses(env: dict[str, str]) -> dict[str, str]:
    return {email: s.status for email, s in listed(env).items()}


def counts(out: str) -> dict[str, int]:
    """The one row of a command's counts table, by column name."""
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    row = next(line for line in out.splitlines() if line.startswith("│"))
    names = [c.strip() for c in header.strip("┃").split("┃")]
    return dict(zip(names, (int(c) for c in row.strip("│").split("│")), strict=True))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


# --------------------------------------------------------------------------- Mailchimp


def test_a_mailchimp_export_with_unsubscribed_and_cleaned_rows_leaves_them_suppressed(
    env: dict[str, str],
) -> None:
    out = ok(env, "subscribers", "import", str(SAMPLES / "mailchimp_audience.csv"))

    assert statuses(env) == {
        "ada.reader@example.com": "active",
        "ben.ortiz@example.com": "active",
        "carla.gone@example.com": "unsubscribed",
        "dan.bounce@example.net": "bounced",
    }
    ada = listed(env)["ada.reader@example.com"]
    assert ada.name == "Ada Reader", "First Name and Last Name are joined"
    assert ada.consent_at == datetime(2024, 3, 1, 9, 15, tzinfo=UTC), "OPTIN_TIME is the consent date"
    assert ada.attributes == {"member_rating": "4"}
    carla = listed(env)["carla.gone@example.com"]
    assert carla.confirmed_at is None and carla.unsubscribed_at is not None
    assert CLI_NOW <= carla.unsubscribed_at < CLI_NOW + timedelta(seconds=1)
    assert counts(out) == {
        "added": 2,
        "added suppressed": 2,
        "updated": 0,
        "unchanged": 0,
        "suppressed": 0,
        "kept suppressed": 0,
        "duplicates": 0,
        "rejected": 0,
    }
    mailed = json.loads(ok(env, "subscribers", "list", "--status", "active", "--json"))
    assert sorted(s["email"] for s in mailed) == ["ada.reader@example.com", "ben.ortiz@example.com"]


def test_mailchimp_per_status_files_suppress_readers_imported_before(
    env: dict[str, str], tmp_path: Path
) -> None:
    header = "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME\n"
    subscribed = tmp_path / "subscribed_members.csv"
    subscribed.write_text(
        header + "ada@example.com,Ada,Reader,4,2024-03-01 09:15:00\nleft@example.com,Lee,Left,1,\n",
        encoding="utf-8",
    )
    unsubscribed = tmp_path / "unsubscribed_members.csv"
    unsubscribed.write_text(header + "left@example.com,Lee,Left,1,\n", encoding="utf-8")
    cleaned = tmp_path / "cleaned_members.csv"
    cleaned.write_text(header + "dead@example.net,Dee,Dead,1,\n", encoding="utf-8")

    ok(env, "subscribers", "import", str(subscribed))
    ok(env, "subscribers", "suppress", str(unsubscribed), "--status", "unsubscribed")
    ok(env, "subscribers", "suppress", str(cleaned), "--status", "bounced")
    ok(env, "subscribers", "import", str(subscribed))  # imported again: nobody comes back

    assert statuses(env) == {
        "ada@example.com": "active",
        "left@example.com": "unsubscribed",
        "dead@example.net": "bounced",
    }


def test_a_status_column_suppresses_readers_already_on_the_list(env: dict[str, str], tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text("email\nada@example.com\nbob@example.com\ncy@example.com\n", encoding="utf-8")
    ok(env, "subscribers", "import", str(first))
    second = tmp_path / "second.csv"
    second.write_text(
        "email,status\nada@example.com,Unsubscribed\nbob@example.com,ABUSE\ncy@example.com,Blacklisted\n",
        encoding="utf-8",
    )

    ok(env, "subscribers", "import", str(second))
    ok(env, "subscribers", "import", str(first))

    assert statuses(env) == {
        "ada@example.com": "unsubscribed",
        "bob@example.com": "complained",
        "cy@example.com": "blocklisted",
    }


def test_an_unknown_status_rejects_its_row_with_the_line(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "list.csv"
    f.write_text("email,status\nada@example.com,subscribed\nold@example.com,archived\n", encoding="utf-8")

    code, out = run(env, "subscribers", "import", str(f))

    assert code == 1
    assert "line 3" in out and "status: 'archived' is not a status briefing knows" in out
    assert statuses(env) == {"ada@example.com": "active"}


# --------------------------------------------------------------------------- listmonk


def test_a_listmonk_export_keeps_its_attributes_and_blocklist(env: dict[str, str]) -> None:
    ok(env, "subscribers", "import", str(SAMPLES / "listmonk_export.csv"))

    found = listed(env)
    assert {e: s.status for e, s in found.items()} == {
        "elena.park@example.org": "active",
        "farid.haddad@example.org": "active",
        "spam.trap@example.net": "blocklisted",
    }
    elena = found["elena.park@example.org"]
    assert elena.name == "Elena Park"
    assert elena.attributes == {
        "city": "Leeds",
        "topics": ["politics", "courts"],
        "projects": 3,
        "uuid": "5e0f1a52-9c4e-4f0a-8a5e-0d6f2c1b7a01",
    }
    assert elena.created_at == datetime(2024, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    assert found["farid.haddad@example.org"].attributes["city"] == "York"


# --------------------------------------------------------------------------- suppression lists


def test_suppress_stores_every_address_suppressed_on_the_list_or_not(
    env: dict[str, str], tmp_path: Path
) -> None:
    ok(env, "subscribers", "add", "reader@example.com")
    ok(env, "subscribers", "add", "angry@example.com")
    plain = tmp_path / "do-not-mail.txt"
    plain.write_text("reader@example.com\nstranger@example.org\n\nREADER@example.com\n", encoding="utf-8")

    out = ok(env, "subscribers", "suppress", str(plain))

    assert statuses(env) == {
        "reader@example.com": "blocklisted",
        "angry@example.com": "active",
        "stranger@example.org": "blocklisted",
    }
    assert listed(env)["stranger@example.org"].source == "suppression"
    assert counts(out) == {
        "new, suppressed": 1,
        "on the list, now suppressed": 1,
        "already suppressed": 0,
        "duplicates": 1,
        "rejected": 0,
    }

    reasons = tmp_path / "provider.csv"
    reasons.write_text(
        "Email,Reason\nangry@example.com,Spam complaint\nbounced@example.net,Hard bounce\n"
        "gone@example.net,asked by phone\nreader@example.com,unsubscribe\n",
        encoding="utf-8",
    )
    ok(env, "subscribers", "suppress", str(reasons), "--status", "unsubscribed")

    found = listed(env)
    assert {e: s.status for e, s in found.items()} == {
        "reader@example.com": "blocklisted",  # a suppression only grows firmer
        "angry@example.com": "complained",
        "stranger@example.org": "blocklisted",
        "bounced@example.net": "bounced",
        "gone@example.net": "unsubscribed",
    }
    assert found["gone@example.net"].attributes == {"reason": "asked by phone"}


def test_suppress_dry_run_counts_and_changes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "subscribers", "add", "reader@example.com")
    plain = tmp_path / "list.txt"
    lines = [f"new{i}@example.com" for i in range(1500)] + ["reader@example.com", "new7@example.com"]
    plain.write_text("\n".join(lines) + "\n", encoding="utf-8")

    out = ok(env, "subscribers", "suppress", str(plain), "--dry-run")

    assert "dry run: nothing was changed" in out
    assert counts(out) == {
        "new, suppressed": 1500,
        "on the list, now suppressed": 1,
        "already suppressed": 0,
        "duplicates": 1,
        "rejected": 0,
    }
    assert statuses(env) == {"reader@example.com": "active"}


def test_suppress_refuses_a_status_that_is_not_a_suppression(env: dict[str, str], tmp_path: Path) -> None:
    plain = tmp_path / "list.txt"
    plain.write_text("reader@example.com\n", encoding="utf-8")

    code, out = run(env, "subscribers", "suppress", str(plain), "--status", "active")

    assert code == 1 and "--status" in out and "blocklisted" in out
    assert statuses(env) == {}


def test_suppress_reports_bad_addresses_by_line(env: dict[str, str], tmp_path: Path) -> None:
    plain = tmp_path / "list.txt"
    plain.write_text("ok@example.com\nnot-an-address\nzoë@example.com\n", encoding="utf-8")

    code, out = run(env, "subscribers", "suppress", str(plain))

    assert code == 1 and "line 2" in out
    assert statuses(env) == {"ok@example.com": "blocklisted", "zoë@example.com": "blocklisted"}


# --------------------------------------------------------------------------- export and import again


def test_an_export_imports_again_to_the_same_state(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "subscribers", "import", str(SAMPLES / "listmonk_export.csv"))
    ok(env, "subscribers", "import", str(SAMPLES / "mailchimp_audience.csv"))
    ok(env, "subscribers", "add", "--name", '=HYPERLINK("x")', "--", "-dash@example.com")
    ok(env, "subscribers", "add", "waiting@example.com", "--name", "'quoted", "--pending")
    exported = tmp_path / "all.csv"
    ok(env, "subscribers", "export", str(exported))
    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8"))))
    assert next(r for r in rows if r["email"] == "'-dash@example.com")["name"] == '\'=HYPERLINK("x")'
    assert (
        json.loads(next(r for r in rows if r["email"] == "elena.park@example.org")["attributes"])["projects"]
        == 3
    )

    elsewhere = cli_env(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    ok(elsewhere, "subscribers", "import", str(exported))

    def state(found: dict[str, SubscriberData]) -> dict[str, tuple[object, ...]]:
        return {
            e: (
                s.name,
                s.status,
                s.source,
                s.created_at,
                s.consent_at,
                s.confirmed_at,
                s.unsubscribed_at,
                s.attributes,
            )
            for e, s in found.items()
        }

    assert state(listed(elsewhere)) == state(listed(env))
    assert len(listed(env)) == 9


# --------------------------------------------------------------------------- signing up again


def test_sign_up_for_a_suppressed_address_needs_a_fresh_confirmation(
    client: TestClient, sqlite_engine: sa.Engine, mailbox: MemoryTransport
) -> None:
    for address, status in (
        ("gone@example.com", SubscriberStatus.UNSUBSCRIBED),
        ("bounce@example.com", SubscriberStatus.BOUNCED),
        ("angry@example.com", SubscriberStatus.COMPLAINED),
        ("blocked@example.com", SubscriberStatus.BLOCKLISTED),
    ):
        add_subscriber(sqlite_engine, address, status=status)
    pages = {}
    for address in (
        "new@example.com",
        "gone@example.com",
        "bounce@example.com",
        "angry@example.com",
        "blocked@example.com",
    ):
        response = client.post("/subscribe", data={"email": address})
        assert response.status_code == 200
        pages[address] = response.text

    assert len(set(pages.values())) == 1, "the page must not tell who is on the list or blocklisted"
    assert sorted(m.rcpt for m in mailbox.messages) == [
        "angry@example.com",
        "bounce@example.com",
        "gone@example.com",
        "new@example.com",
    ], "a blocklisted address gets no email at all"
    assert [
        subscriber(sqlite_engine, a).status
        for a in ("gone@example.com", "bounce@example.com", "angry@example.com", "blocked@example.com")
    ] == [
        "unsubscribed",
        "bounced",
        "complained",
        "blocklisted",
    ], "asking is not confirming: nobody is active before clicking the fresh link"
