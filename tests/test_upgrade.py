"""A database of the previous release (one newsletter, schema 0008) upgraded by today's code loses nothing.

The old database is made by the previous release's own code, in its own process: `briefing init`,
a subscriber import, stories, one edition sent to a Maildir (tests/fixtures/previous_release.py).
Today's `briefing db upgrade` then carries it forward, and the readers' links in the messages the
old code sent must still work against today's web app. Runs on SQLite and on PostgreSQL.

One newsroom is built per database and shared by the module's tests: what the upgrade left is
recorded right after it, so the tests that follow a link (and so unsubscribe someone) change
nothing another test reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from briefing.db import current_revision, head_revision, make_engine
from briefing.mail.transport import MemoryTransport
from briefing.web.app import create_app
from tests.fixtures.clock import ManualClock
from tests.fixtures.db import postgres_url_or_skip, reset_postgres
from tests.fixtures.previous_release import (
    ACTIVE_READERS,
    EDITION_DAY,
    NEWSLETTER_NAME,
    PREVIOUS_SCHEMA,
    ROOT,
    STORIES,
    SUBSCRIBERS_CSV,
    OldNewsroom,
    build_old_newsroom,
    previous_release_in,
    run_briefing,
)
from tests.fixtures.web import BASE_URL, web_settings_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FIRST_SLUG = "example-morning-post"  # NEWSLETTER_NAME, slugified
READ_AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # the morning of the edition: readers open it
# Text fields of the carried-forward newsletter that stay blank, so they keep following the settings.
INHERITED = ("name", "sender_name", "sender_address", "reply_to", "list_id", "send_days", "send_time",
             "timezone", "brand_colour", "accent_colour", "logo_url", "template_set")  # fmt: skip

Rows = dict[str, list[dict[str, Any]]]


def snapshot(url: str) -> Rows:
    """Every row of every table, as the driver returns it (so before and after compare like for like)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {
                name: [
                    dict(row)
                    for row in conn.execute(sa.text(f'SELECT * FROM "{name}" ORDER BY 1')).mappings()
                ]
                for name in names
            }
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Upgraded:
    newsroom: OldNewsroom
    before: Rows
    after: Rows
    output: str
    engine: sa.Engine


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> OldNewsroom:
    """An empty database of its own, filled by the previous release."""
    workdir = tmp_path_factory.mktemp(f"old-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'briefing.db'}"
    else:
        url = postgres_url_or_skip()
        reset_postgres(url)
    return build_old_newsroom(previous_release_in(tmp_path_factory), url, workdir)


@pytest.fixture(scope="module")
def old_rows(old_database: OldNewsroom) -> Rows:
    return snapshot(old_database.database_url)


@pytest.fixture(scope="module")
def upgraded(old_database: OldNewsroom, old_rows: Rows) -> Iterator[Upgraded]:
    """Today's `briefing db upgrade`, run as the newsroom would run it: with its settings, in a process."""
    env = old_database.env(pythonpath=ROOT, templates=ROOT / "templates")
    output = run_briefing(env, old_database.workdir, "db", "upgrade")
    engine = make_engine(old_database.database_url)
    yield Upgraded(old_database, old_rows, snapshot(old_database.database_url), output, engine)
    engine.dispose()


def by_id(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {row["id"]: row for row in rows}


def as_list(value: Any) -> Any:
    """A JSON column: SQLite's driver returns the text, psycopg the value."""
    return json.loads(value) if isinstance(value, str) else value


def first_newsletter_id(state: Upgraded) -> int:
    newsletters = state.after.get("newsletter")
    assert newsletters is not None, "no newsletter table after the upgrade"
    assert len(newsletters) == 1, newsletters
    return int(newsletters[0]["id"])


def receives(engine: sa.Engine, address: str, newsletter_id: int) -> bool:
    """Whether the reader would be in the next edition's snapshot: active, and subscribed to it."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT s.status AS reader, sub.status AS subscription FROM subscriber s "
                "JOIN subscription sub ON sub.subscriber_id = s.id AND sub.newsletter_id = :newsletter "
                "WHERE s.email = :email"
            ),
            {"email": address, "newsletter": newsletter_id},
        ).one()
    return bool(row.reader == "active" and row.subscription == "active")


@pytest.fixture
def reader_client(upgraded: Upgraded) -> Iterator[TestClient]:
    """Today's web app on the upgraded database, with the old release's link key and base URL."""
    settings = web_settings_for(upgraded.newsroom.database_url, newsletter_name=NEWSLETTER_NAME)
    app = create_app(
        settings, engine=upgraded.engine, transport=MemoryTransport(), clock=ManualClock(READ_AT)
    )
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as client:
        yield client


# --------------------------------------------------------------------------- the old database


def test_the_previous_release_builds_a_newsroom_with_a_sent_edition(
    old_database: OldNewsroom, old_rows: Rows
) -> None:
    assert old_rows["alembic_version"] == [{"version_num": PREVIOUS_SCHEMA}]
    statuses = {row["email"]: row["status"] for row in old_rows["subscriber"]}
    assert len(statuses) == len(SUBSCRIBERS_CSV.splitlines()) - 1
    assert statuses["dev.patel@example.net"] == "unsubscribed"
    assert statuses["eve.lindqvist@example.com"] == "pending"
    assert {a for a, s in statuses.items() if s == "active"} == set(ACTIVE_READERS)
    assert len(old_rows["story"]) == len(STORIES)
    [edition] = old_rows["edition"]
    assert (str(edition["edition_date"]), edition["status"]) == (EDITION_DAY.isoformat(), "sent")
    assert sorted(d["email"] for d in old_rows["delivery"] if d["status"] == "sent") == sorted(ACTIVE_READERS)
    copies = old_database.copies.values()
    assert {c.list_id for c in copies} != {""} and len({c.list_id for c in copies}) == 1
    assert {c.message_id for c in copies} == {d["message_id"] for d in old_rows["delivery"]}


# --------------------------------------------------------------------------- the upgrade


def test_the_upgrade_reaches_todays_schema(upgraded: Upgraded) -> None:
    assert current_revision(upgraded.engine) == head_revision() != PREVIOUS_SCHEMA
    assert upgraded.after["alembic_version"] == [{"version_num": head_revision()}]
    assert f"from {PREVIOUS_SCHEMA} to {head_revision()}" in upgraded.output


def test_the_upgrade_keeps_every_subscriber_story_edition_and_delivery(upgraded: Upgraded) -> None:
    for table in ("subscriber", "story", "edition", "delivery", "article"):
        assert len(upgraded.after[table]) == len(upgraded.before[table]), table


def test_the_upgrade_changes_no_value_of_the_old_tables(upgraded: Upgraded) -> None:
    """Every old table, every old column, every row: new columns may be added, nothing else moves."""
    for table, rows in upgraded.before.items():
        if table == "alembic_version":
            continue
        assert table in upgraded.after, f"table {table} is gone"
        kept = [
            {column: row[column] for column in (rows[0] if rows else {})} for row in upgraded.after[table]
        ]
        assert kept == rows, table


def test_the_one_newsletter_becomes_the_first_of_several(upgraded: Upgraded) -> None:
    newsletter_id = first_newsletter_id(upgraded)
    [newsletter] = upgraded.after["newsletter"]
    assert newsletter_id == 1
    assert newsletter["slug"] == FIRST_SLUG
    assert {field: newsletter[field] for field in INHERITED} == dict.fromkeys(INHERITED, "")
    assert newsletter["archive"] == "web" and not newsletter["paused"]


def test_every_subscriber_has_an_active_subscription_to_the_first_newsletter(upgraded: Upgraded) -> None:
    newsletter_id = first_newsletter_id(upgraded)
    subscriptions = upgraded.after.get("subscription")
    assert subscriptions is not None, "no subscription table after the upgrade"
    readers = {row["id"] for row in upgraded.after["subscriber"]}
    assert sorted(s["subscriber_id"] for s in subscriptions) == sorted(readers)
    for subscription in subscriptions:
        assert subscription["newsletter_id"] == newsletter_id, subscription
        assert subscription["status"] == "active", subscription
        assert as_list(subscription["excluded_sections"]) == [] and subscription["variant"] == "", (
            subscription
        )
        assert bool(subscription["specials"]), subscription
    # The address-level state is the one the old release kept: nobody is (re)activated.
    old_status = {row["id"]: row["status"] for row in upgraded.before["subscriber"]}
    assert {row["id"]: row["status"] for row in upgraded.after["subscriber"]} == old_status


def test_editions_stories_and_the_ledger_belong_to_the_first_newsletter(upgraded: Upgraded) -> None:
    newsletter_id = first_newsletter_id(upgraded)
    for edition in upgraded.after["edition"]:
        assert (edition["newsletter_id"], edition["kind"]) == (newsletter_id, "regular"), edition
    assert {s["newsletter_id"] for s in upgraded.after["story"]} == {newsletter_id}
    assert {d["variant"] for d in upgraded.after["delivery"]} == {""}
    assert by_id(upgraded.after["delivery"]).keys() == by_id(upgraded.before["delivery"]).keys()


# --------------------------------------------------------------------------- links in the old messages


def test_an_old_unsubscribe_link_shows_its_page_and_one_click_unsubscribes(
    upgraded: Upgraded, reader_client: TestClient
) -> None:
    newsletter_id = first_newsletter_id(upgraded)
    link = upgraded.newsroom.copies["ada.reader@example.com"].unsubscribe_url

    page = reader_client.get(link)
    assert page.status_code == 200, page.text
    assert "Unsubscribe" in page.text and "a•••@example.com" in page.text
    assert receives(upgraded.engine, "ada.reader@example.com", newsletter_id), "a GET unsubscribed the reader"

    done = reader_client.post(link, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text
    assert not receives(upgraded.engine, "ada.reader@example.com", newsletter_id)
    assert receives(upgraded.engine, "chloe.martin@example.org", newsletter_id), "another reader was touched"


def test_an_old_preferences_link_shows_its_page_and_unsubscribes(
    upgraded: Upgraded, reader_client: TestClient
) -> None:
    newsletter_id = first_newsletter_id(upgraded)
    link = upgraded.newsroom.copies["ben.ortiz@example.com"].preferences_url

    page = reader_client.get(link)
    assert page.status_code == 200, page.text
    assert "b•••@example.com" in page.text and NEWSLETTER_NAME in page.text
    assert receives(upgraded.engine, "ben.ortiz@example.com", newsletter_id)

    done = reader_client.post(link, data={"action": "unsubscribe"})
    assert done.status_code == 200, done.text
    assert not receives(upgraded.engine, "ben.ortiz@example.com", newsletter_id)
    assert receives(upgraded.engine, "chloe.martin@example.org", newsletter_id), "another reader was touched"


def test_the_old_messages_archive_link_still_shows_the_edition(
    upgraded: Upgraded, reader_client: TestClient
) -> None:
    link = upgraded.newsroom.copies["chloe.martin@example.org"].archive_url
    assert link == f"{BASE_URL}/archive/{EDITION_DAY.isoformat()}"
    page = reader_client.get(link)
    assert page.status_code == 200, page.text
    assert "Budget passes" in page.text and "Bridge reopens" in page.text
