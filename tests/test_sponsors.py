"""Sponsor slots: a booking replaces the standing partner block on its dates, the later booking wins,
an empty paid slot is a preflight warning, and `briefing sponsors` refuses bad input naming the field."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import make_engine, session_scope
from briefing.models import SponsorSlot
from briefing.service import sponsors as sponsor_service
from briefing.service.edition_content import Prepared, prepare
from briefing.service.setup import EditionSetup
from briefing.store import newsletters as newsletter_store
from briefing.store.sponsors import SponsorSlotData
from tests.fixtures.cli import cli_env, ok, run
from tests.fixtures.newsroom import EDITION, QUEUED_AT, Newsroom, make_setup

STANDING = ("Example Books", "https://books.example.org/shortlist")
BANK = ("Example Bank", "https://bank.example.net/savings")
ALPHA = ("Alpha Travel", "https://alpha.example.com/")
BETA = ("Beta Cars", "https://beta.example.com/")
MONDAY = EDITION  # 2026-11-30
BOOKED_AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def standing_setup() -> EditionSetup:
    setup = make_setup()
    compose = replace(
        setup.compose,
        partner_name=STANDING[0],
        partner_text="Read the essays behind this year's shortlist.",
        partner_url=STANDING[1],
    )
    return replace(setup, compose=compose)


@pytest.fixture
def room(engine: sa.Engine) -> Newsroom:
    """On SQLite and PostgreSQL: a ready story for the next edition, a standing partner in the settings."""
    newsroom = Newsroom(engine, standing_setup())
    newsroom.queue_story()
    return newsroom


def book(engine: sa.Engine, starts: date, ends: date, **fields: object) -> SponsorSlotData:
    request = sponsor_service.SlotRequest(starts_on=starts.isoformat(), ends_on=ends.isoformat(), **fields)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        return sponsor_service.add_slot(session, request, now=BOOKED_AT)


def prepared_on(room: Newsroom, day: date) -> Prepared:
    with Session(room.engine) as session:
        return prepare(session, room.setup, day, now=QUEUED_AT)


def partner_shown(prepared: Prepared) -> tuple[str, str] | None:
    """Which partner the rendered edition carries, checked in both the HTML and the text part."""
    shown = [
        (name, url)
        for name, url in (
            STANDING,
            BANK,
            ("Alpha Travel", "https://alpha.example.com/"),
            ("Beta Cars", "https://beta.example.com/"),
        )
        if url in prepared.rendered.html
    ]
    assert len(shown) <= 1, shown
    if not shown:
        return None
    name, url = shown[0]
    assert name in prepared.rendered.html and name in prepared.rendered.text and url in prepared.rendered.text
    return name, url


# --------------------------------------------------------------------------- what the edition shows


def test_a_booked_slot_replaces_the_standing_partner_on_the_dates_it_covers_only(room: Newsroom) -> None:
    book(
        room.engine,
        MONDAY + timedelta(days=1),
        MONDAY + timedelta(days=2),
        name=BANK[0],
        text="Savings that keep up with prices.",
        url=BANK[1],
        image_url="https://images.example.net/bank.png",
        label="Sponsored by",
    )

    shown = {
        day: partner_shown(prepared_on(room, day)) for day in (MONDAY + timedelta(days=n) for n in range(4))
    }

    assert shown == {
        MONDAY: STANDING,
        MONDAY + timedelta(days=1): BANK,
        MONDAY + timedelta(days=2): BANK,
        MONDAY + timedelta(days=3): STANDING,
    }
    booked = prepared_on(room, MONDAY + timedelta(days=1))
    assert "Savings that keep up with prices." in booked.rendered.text
    assert "SPONSORED BY" in booked.rendered.text and "Sponsored by" in booked.rendered.html
    assert "Read the essays behind" not in booked.rendered.text
    assert booked.briefing.blocks.partner_image_url == "https://images.example.net/bank.png"
    assert 'src="https://images.example.net/bank.png"' in booked.rendered.html
    assert "images.example.net" not in prepared_on(room, MONDAY).rendered.html
    assert sponsor_warnings(booked) == []


def test_overlapping_slots_the_later_booking_wins(room: Newsroom) -> None:
    week = (MONDAY, MONDAY + timedelta(days=6))
    book(room.engine, MONDAY + timedelta(days=2), MONDAY + timedelta(days=3), name=BETA[0], url=BETA[1])
    assert partner_shown(prepared_on(room, MONDAY + timedelta(days=2))) == BETA

    book(room.engine, *week, name=ALPHA[0], url=ALPHA[1])  # booked later, starting earlier

    assert partner_shown(prepared_on(room, MONDAY + timedelta(days=2))) == ALPHA

    book(room.engine, MONDAY + timedelta(days=3), MONDAY + timedelta(days=3), name=BANK[0], url=BANK[1])

    shown = [partner_shown(prepared_on(room, MONDAY + timedelta(days=n))) for n in range(2, 5)]
    assert shown == [ALPHA, BANK, ALPHA]


def test_removing_a_slot_brings_the_standing_partner_back(room: Newsroom) -> None:
    slot = book(room.engine, MONDAY, MONDAY, name=BANK[0], url=BANK[1])
    assert partner_shown(prepared_on(room, MONDAY)) == BANK

    with session_scope(room.engine) as session:
        sponsor_service.remove_slot(session, slot.id)

    assert partner_shown(prepared_on(room, MONDAY)) == STANDING


def sponsor_warnings(prepared: Prepared) -> list[str]:
    return [w.message for w in prepared.report.warnings if w.where == "sponsor"]


def test_an_empty_paid_slot_gives_the_preflight_warning(room: Newsroom) -> None:
    slot = book(room.engine, MONDAY, MONDAY + timedelta(days=1))  # paid, no partner yet
    named = book(room.engine, MONDAY + timedelta(days=1), MONDAY + timedelta(days=1), name=BANK[0])  # no link

    monday, tuesday = prepared_on(room, MONDAY), prepared_on(room, MONDAY + timedelta(days=1))

    [warning] = sponsor_warnings(monday)
    assert f"paid sponsor slot {slot.id} (2026-11-30 to 2026-12-01) has no partner name" in warning
    assert "the standing partner block shows instead" in warning
    [link_warning] = sponsor_warnings(tuesday)
    assert f"paid sponsor slot {named.id} (2026-12-01 to 2026-12-01) has no link" in link_warning
    assert monday.report.ok  # a warning: the edition can still go
    assert partner_shown(monday) == STANDING  # nothing of an empty booking is shown


def test_an_empty_paid_slot_without_a_standing_partner_says_the_block_will_be_missing(
    engine: sa.Engine,
) -> None:
    room = Newsroom(engine, make_setup())
    room.queue_story()
    book(room.engine, MONDAY, MONDAY)

    [warning] = sponsor_warnings(prepared_on(room, MONDAY))

    assert "the partner block will be missing" in warning


def test_an_unpaid_empty_slot_gives_no_warning(room: Newsroom) -> None:
    book(room.engine, MONDAY, MONDAY, paid=False)

    prepared = prepared_on(room, MONDAY)

    assert sponsor_warnings(prepared) == []
    assert partner_shown(prepared) == STANDING


def test_a_slot_of_another_newsletter_changes_nothing_here(room: Newsroom) -> None:
    with session_scope(room.engine) as session:
        newsletter_store.add_newsletter(session, "weekend", {"name": "The Weekend"}, now=QUEUED_AT)
    book(room.engine, MONDAY, MONDAY, newsletter="weekend", name=BANK[0], url=BANK[1])
    book(room.engine, MONDAY, MONDAY, newsletter="weekend")  # empty and paid, but not ours

    prepared = prepared_on(room, MONDAY)

    assert partner_shown(prepared) == STANDING and sponsor_warnings(prepared) == []


# --------------------------------------------------------------------------- the command


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def stored_slots(tmp_path: Path) -> int:
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        with Session(engine) as session:
            return len(session.exec(sa.select(SponsorSlot.id)).all())  # type: ignore[call-overload]
    finally:
        engine.dispose()


def test_the_command_books_lists_and_removes_slots(env: dict[str, str], tmp_path: Path) -> None:
    out = ok(
        env,
        "sponsors", "add", "--from", "2026-12-01", "--to", "2026-12-07",
        "--name", "Example Bank", "--text", "Savings that keep up.", "--url", BANK[1],
        "--image", "https://images.example.net/bank.png", "--label", "Sponsored by",
    )  # fmt: skip
    assert "Booked sponsor slot 1, 2026-12-01 to 2026-12-07: Example Bank" in out
    empty = ok(env, "sponsors", "add", "--from", "2026-12-08", "--to", "2026-12-08")
    assert "warning:" in empty and "preflight warns" in empty

    listed = json.loads(ok(env, "sponsors", "list", "--json"))
    assert [(s["id"], s["newsletter"], s["starts_on"], s["ends_on"], s["empty"]) for s in listed] == [
        (1, "the-morning-briefing", "2026-12-01", "2026-12-07", False),
        (2, "the-morning-briefing", "2026-12-08", "2026-12-08", True),
    ]
    assert listed[0] | {"newsletter_id": 1} == {
        "id": 1,
        "newsletter_id": 1,
        "newsletter": "the-morning-briefing",
        "starts_on": "2026-12-01",
        "ends_on": "2026-12-07",
        "name": "Example Bank",
        "text": "Savings that keep up.",
        "url": BANK[1],
        "image_url": "https://images.example.net/bank.png",
        "label": "Sponsored by",
        "paid": True,
        "empty": False,
    }
    table = ok(env, "sponsors", "list", "--newsletter", "the-morning-briefing")
    assert "Example Bank" in table and "(empty)" in table

    assert "Removed sponsor slot 2" in ok(env, "sponsors", "remove", "2")
    assert [s["id"] for s in json.loads(ok(env, "sponsors", "list", "--json"))] == [1]
    assert stored_slots(tmp_path) == 1


def test_an_unpaid_slot_is_booked_without_a_warning(env: dict[str, str]) -> None:
    out = ok(env, "sponsors", "add", "--from", "2026-12-01", "--to", "2026-12-01", "--unpaid")
    assert "warning" not in out
    [slot] = json.loads(ok(env, "sponsors", "list", "--json"))
    assert slot["paid"] is False and slot["label"] == "Partner"


GOOD = {"--from": "2026-12-01", "--to": "2026-12-07", "--name": "Example Bank", "--url": BANK[1]}


@pytest.mark.parametrize(
    ("option", "value", "field", "reason"),
    [
        ("--from", "2026-13-01", "from", "is not a date"),
        ("--from", "next week", "from", "is not a date"),
        ("--to", "2026-11-30", "to", "is before the first date 2026-12-01"),
        ("--to", "9999-01-01", "to", "is not between"),
        ("--url", "http://bank.example.net/", "url", "must be an https:// address"),
        ("--url", "javascript:alert(1)", "url", "must start with http:// or https://"),
        ("--url", "https://bank example.net/", "url", "must not contain spaces"),
        ("--image", "http://images.example.net/bank.png", "image", "must be an https:// address"),
        ("--image", "https://" + "a" * 2000 + ".example.net/", "image", "the limit is 2000"),
        ("--name", "Example\nBank", "name", "must be one line"),
        ("--name", "x" * 201, "name", "the limit is 200"),
        ("--text", "Two\r\nlines", "text", "must be one line"),
        ("--text", "y" * 1001, "text", "the limit is 1000"),
        ("--text", "bell\x07", "text", "contains control characters"),
        ("--label", "z" * 41, "label", "the limit is 40"),
        ("--newsletter", "weekend", "newsletter", "no newsletter 'weekend'"),
        ("--newsletter", "Not A Slug!", "newsletter", "is not a slug"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    env: dict[str, str], tmp_path: Path, option: str, value: str, field: str, reason: str
) -> None:
    args = dict(GOOD, **{option: value})

    code, out = run(env, "sponsors", "add", *(part for pair in args.items() for part in pair))

    assert code == 1, out
    [error] = [line for line in out.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {field}: ") and reason in error, error
    assert "Traceback" not in out
    assert stored_slots(tmp_path) == 0


def test_removing_a_slot_that_does_not_exist_names_it(env: dict[str, str], tmp_path: Path) -> None:
    ok(env, "sponsors", "add", "--from", "2026-12-01", "--to", "2026-12-01")

    code, out = run(env, "sponsors", "remove", "7")

    assert code == 1 and "error: slot: no sponsor slot 7" in out
    assert stored_slots(tmp_path) == 1
    code, out = run(env, "sponsors", "remove", "0")
    assert code == 2 and "0 is not an id" in out


def test_every_sponsors_command_has_an_example(env: dict[str, str]) -> None:
    for command in ("add", "list", "remove"):
        assert "Example: briefing sponsors " + command in ok(env, "sponsors", command, "--help")
