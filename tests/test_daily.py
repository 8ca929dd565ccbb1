"""The scheduler's jobs in-process: alerts, holds, skips and expiry decided from the database."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlmodel import Session

from briefing import wiring
from briefing.config import load_settings
from briefing.db import session_scope
from briefing.domain import DeliveryStatus
from briefing.errors import InvalidInput
from briefing.mail.transport import MemoryTransport
from briefing.service import editions as edition_service
from briefing.service import health as health_service
from briefing.service import schedule as schedule_service
from briefing.service.setup import EditionSetup
from briefing.store import editions as edition_store
from briefing.store import schedule as schedule_store
from tests.fixtures.clock import T0, ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom

SEND_AT = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def sender(room: Newsroom, mail: MemoryTransport, now: datetime, setup: EditionSetup | None = None):
    return schedule_service.DailySender(
        schedule_service.DailyContext(
            engine=room.engine,
            setup=lambda: setup or room.setup,
            transport=lambda: mail,
            alert_email="desk@example.org",
            stop=threading.Event(),
            log=logging.getLogger("test.daily"),
            clock=ManualClock(now),
        )
    )


def _alerts(mail: MemoryTransport) -> list[str]:
    return [
        str(message_from_bytes(m.data, policy=default_policy)["Subject"])
        for m in mail.messages
        if m.rcpt == "desk@example.org"
    ]


def test_preflight_problems_are_emailed_to_the_editors(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.queue_story(headline="Council leader quits over TK")
    mail = MemoryTransport()

    assert sender(room, mail, SEND_AT).preflight_job(EDITION) == "errors"

    [subject] = _alerts(mail)
    assert subject == f"[briefing] Preflight errors in the edition of {EDITION}"
    body = message_from_bytes(mail.messages[0].data, policy=default_policy).get_content()
    assert "TK" in body and "briefing preflight --date" in body


def test_send_job_sends_once_and_then_reports_already_sent(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(3)
    mail = MemoryTransport()
    job = sender(room, mail, SEND_AT.replace(minute=1))

    assert job.send_job(EDITION, SEND_AT) == "sent"
    assert job.send_job(EDITION, SEND_AT) == "already sent"
    assert len([m for m in mail.messages if m.rcpt != "desk@example.org"]) == 3


def test_a_held_edition_expires_when_its_window_closes(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(1)
    with session_scope(room.engine) as s:
        edition_service.hold(s, EDITION, True, newsletter_id=1, now=T0)
    mail = MemoryTransport()

    assert sender(room, mail, SEND_AT.replace(minute=5)).send_job(EDITION, SEND_AT) == "held"
    late = SEND_AT.replace(hour=9, minute=30)
    assert sender(room, mail, late).send_job(EDITION, SEND_AT) == "expired"
    with Session(room.engine) as s:
        assert edition_store.get_edition(s, EDITION, newsletter_id=1).status == "expired"
    assert [m.rcpt for m in mail.messages] == ["desk@example.org"]  # no reader; the editors, once
    assert _alerts(mail) == [f"[briefing] The edition of {EDITION} expired on hold"]


def test_a_missed_morning_expires_loudly(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(2)
    mail = MemoryTransport()

    result = sender(room, mail, SEND_AT.replace(hour=10)).send_job(EDITION, SEND_AT)

    assert result == "expired"
    assert _alerts(mail) == [f"[briefing] The edition of {EDITION} expired"]


def test_a_skipped_date_sends_nothing(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    room.readers(2)
    setup = replace(room.setup, plan=replace(room.setup.plan, skip_dates=frozenset({EDITION})))
    mail = MemoryTransport()
    assert sender(room, mail, SEND_AT, setup).send_job(EDITION, SEND_AT) == "skipped"
    assert mail.messages == []


def test_status_is_unhealthy_without_a_heartbeat(sqlite_newsroom: Newsroom) -> None:
    result = health_service.status(
        sqlite_newsroom.engine, sqlite_newsroom.setup.plan, SEND_AT, stale_after=timedelta(minutes=2)
    )
    assert not result.healthy
    assert any("no scheduler has ever run" in p for p in result.problems)


def test_status_is_healthy_with_a_fresh_heartbeat_and_a_sent_edition(sqlite_newsroom: Newsroom) -> None:
    from briefing.models import SchedulerHeartbeat

    room = sqlite_newsroom
    room.readers(1)
    sender(room, MemoryTransport(), SEND_AT.replace(minute=1)).send_job(EDITION, SEND_AT)
    now = SEND_AT.replace(hour=7)
    with session_scope(room.engine) as s:
        schedule_service.record_heartbeat(
            s, owner="host:1", started_at=SEND_AT, next_run_at=None, now=now.replace(minute=0, second=0)
        )
    with Session(room.engine) as s:
        beat = s.get(SchedulerHeartbeat, 1)
        assert beat is not None and beat.owner == "host:1"

    result = health_service.status(
        room.engine, room.setup.plan, now.replace(second=30), stale_after=timedelta(minutes=2)
    )

    assert result.problems == () and result.healthy
    assert result.last is not None and result.last.edition_date == EDITION
    stale = health_service.status(
        room.engine, room.setup.plan, now.replace(minute=5), stale_after=timedelta(minutes=2)
    )
    assert not stale.healthy and "heartbeat" in stale.problems[0]


def test_skip_and_unskip_are_use_cases_the_setup_reads_at_once(sqlite_newsroom: Newsroom) -> None:
    """A date skipped after start-up is in the very next setup the CLI, web or scheduler builds."""
    room = sqlite_newsroom
    settings = load_settings(_env_file=None, secret_key="daily-test-secret", skip_dates="2026-12-26")
    base = wiring.edition_setup(settings)
    assert wiring.edition_setup_now(settings, room.engine, base=base).plan.skip_dates == {date(2026, 12, 26)}
    with session_scope(room.engine) as s:
        assert schedule_service.skip_date(s, date(2026, 12, 25), "Christmas Day", now=SEND_AT) is True
        assert schedule_service.skip_date(s, date(2026, 12, 25), "again", now=SEND_AT) is False
    now = wiring.edition_setup_now(settings, room.engine, base=base)
    assert now.plan.skip_dates == {date(2026, 12, 25), date(2026, 12, 26)}
    assert now.renderer is base.renderer, "only the calendar is rebuilt"
    assert wiring.edition_setup_now(settings, room.engine).plan == now.plan
    with session_scope(room.engine) as s:
        assert schedule_service.unskip_date(s, date(2026, 12, 25)) is True
        assert schedule_service.unskip_date(s, date(2026, 12, 25)) is False
    assert wiring.edition_setup_now(settings, room.engine).plan.skip_dates == {date(2026, 12, 26)}


def test_a_skip_reason_is_one_short_line(sqlite_newsroom: Newsroom) -> None:
    with session_scope(sqlite_newsroom.engine) as s:
        for reason in ("x" * 201, "Christmas\nDay"):
            with pytest.raises(InvalidInput, match="one line"):
                schedule_service.skip_date(s, date(2026, 12, 25), reason, now=SEND_AT)
    with Session(sqlite_newsroom.engine) as s:
        assert schedule_store.skip_dates(s) == frozenset()


def test_the_send_job_waits_its_turn_while_a_briefing_send_holds_the_sqlite_file(
    sqlite_newsroom: Newsroom, tmp_path
) -> None:
    from briefing.errors import LockHeld
    from briefing.locks import acquire_send_lock

    room = sqlite_newsroom
    room.readers(2)
    mail = MemoryTransport()
    url = room.engine.url.render_as_string(hide_password=False)
    clock = ManualClock(SEND_AT.replace(minute=1))

    def guard():  # type: ignore[no-untyped-def]
        held = acquire_send_lock(url, clock=clock)
        return held.release if held is not None else None

    job = sender(room, mail, SEND_AT.replace(minute=1))
    job.ctx = replace(job.ctx, send_guard=guard)
    other = acquire_send_lock(url, clock=clock)  # a `briefing send` in another process
    assert other is not None
    try:
        assert job.send_job(EDITION, SEND_AT) == "another sender"
        assert mail.messages == []
    finally:
        other.release()
    assert job.send_job(EDITION, SEND_AT) == "sent"  # the next minute's watch, once it is free
    assert len(mail.messages) == 2
    with pytest.raises(LockHeld):  # and the guard was given back after the send
        held = acquire_send_lock(url, clock=clock)
        assert held is not None
        try:
            acquire_send_lock(url, clock=clock)
        finally:
            held.release()


def test_status_names_a_sending_edition_nobody_is_sending(sqlite_newsroom: Newsroom) -> None:
    """A worker that died with nobody to take over: the copies wait, and the monitor must hear of it."""
    from tests.fixtures import sending

    room = sqlite_newsroom
    room.readers(3)
    edition_id = sending.start_sending(room.engine, EDITION, now=SEND_AT)
    sending.add_run(
        room.engine,
        edition_id,
        "elsewhere.example.com:4242:abcd1234",
        host="elsewhere.example.com",
        at=SEND_AT,
    )
    plan = room.setup.plan

    def problems(at: datetime) -> list[str]:
        found = health_service.status(room.engine, plan, at, stale_after=timedelta(days=1)).problems
        return [p for p in found if "no sender has reported" in p]

    assert problems(SEND_AT + timedelta(minutes=1)) == [], "a run heard from a minute ago is at work"
    [problem] = problems(SEND_AT + timedelta(minutes=10))
    assert (
        f"the edition of {EDITION} is sending" in problem
        and "600 s" in problem
        and "3 copies wait" in problem
    )
    sending.settle(room.engine, edition_id, DeliveryStatus.DEFERRED, 3)
    assert problems(SEND_AT + timedelta(minutes=10)) == [], (
        "deferred copies wait for their next try on purpose"
    )
