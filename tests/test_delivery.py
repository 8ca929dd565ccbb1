"""Delivering an edition over real SMTP on loopback: exactly once, resumable, and honest about faults."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlmodel import Session

from briefing.db import session_scope
from briefing.domain import DeliveryStatus
from briefing.mail.pool import open_transport
from briefing.service import editions as edition_service
from briefing.service.setup import EditionSetup
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import subscribers as subscriber_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom
from tests.fixtures.smtp import FaultPlan, SmtpTestServer

NOW = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)  # thirty seconds after the 06:00 send time


def send(
    room: Newsroom,
    server_url: str,
    setup: EditionSetup | None = None,
    *,
    clock: ManualClock | None = None,
    **kw: object,
):
    """Send at NOW on a clock that stands still until the send waits (a backoff costs no real time)."""
    mail = open_transport(server_url, pool_size=(setup or room.setup).policy.workers, timeout=5)
    try:
        return edition_service.send_edition(
            room.engine,
            setup or room.setup,
            EDITION,
            mail,
            clock=clock or ManualClock(NOW),
            **kw,  # type: ignore[arg-type]
        )
    finally:
        mail.close()


def ledger_rows(room: Newsroom) -> dict[str, ledger.LedgerRow]:
    with Session(room.engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        return {r.email: r for r in ledger.rows(s, edition.id, limit=100_000)}


def test_every_active_subscriber_gets_exactly_one_copy(
    newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    emails = newsroom.readers(25)
    newsroom.subscribe("left@example.com")
    with session_scope(newsroom.engine) as s:
        subscriber_store.unsubscribe(s, subscriber_store.get_by_email(s, "left@example.com").id, now=NOW)

    outcome = send(newsroom, smtp_server.url())

    assert outcome.edition.status == "sent"
    received = Counter(r for m in smtp_server.messages for r in m.rcpt_tos)
    assert received == Counter(emails)
    ids = [m.message_id for m in smtp_server.messages]
    assert len(set(ids)) == 25
    assert {r.status for r in ledger_rows(newsroom).values()} == {"sent"}
    assert outcome.report is not None and outcome.report.complete
    assert smtp_server.sessions <= 2  # connections are reused for many messages


def test_running_send_twice_sends_nothing_the_second_time(
    newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    newsroom.readers(5)
    send(newsroom, smtp_server.url())
    before = len(smtp_server.messages)

    again = send(newsroom, smtp_server.url())

    assert len(smtp_server.messages) == before == 5
    assert "already sent" in again.message and again.report is None


def test_forcing_never_sends_a_second_edition(newsroom: Newsroom, smtp_server: SmtpTestServer) -> None:
    newsroom.readers(3)
    send(newsroom, smtp_server.url())
    again = send(newsroom, smtp_server.url(), force=True)
    assert len(smtp_server.messages) == 3
    assert "never sends a second edition" in again.message


@pytest.mark.parametrize("pipelining", [False, True], ids=["step-by-step", "pipelined"])
def test_temporary_refusals_are_retried_by_a_later_pass_without_delaying_others(
    sqlite_newsroom: Newsroom, smtp_server_factory, pipelining: bool
) -> None:
    smtp_server = smtp_server_factory(FaultPlan(pipelining=pipelining))
    room = sqlite_newsroom
    room.readers(6)
    room.subscribe("temp1@example.com", "temp2@example.com")
    clock = ManualClock(NOW)

    first = send(room, smtp_server.url(), clock=clock)

    assert clock.waited == []  # the run never waits for the backoff: it ends with what it could send
    assert first.edition.status == "sending" and first.waiting_for == "deferred"
    assert first.next_try == NOW + timedelta(seconds=0.2)  # backoff_base
    assert "2 copies were deferred by their servers; the next try is at 06:00 UTC" in first.message
    rows = ledger_rows(room)
    deferred = {e for e, r in rows.items() if r.status == "deferred"}
    assert deferred == {"temp1@example.com", "temp2@example.com"}

    smtp_server.plan.temp_prefix = "no-longer-greylisted"
    clock.advance(0.2)
    outcome = send(room, smtp_server.url(), clock=clock)  # a later pass: the next send joins the edition

    rows = ledger_rows(room)
    assert outcome.edition.status == "sent"
    assert all(r.status == "sent" for r in rows.values())
    assert rows["temp1@example.com"].attempts == 2 and rows["temp2@example.com"].attempts == 2
    others = [r for e, r in rows.items() if not e.startswith("temp")]
    assert all(r.attempts == 1 for r in others)
    first_retry = min(rows[e].sent_at for e in ("temp1@example.com", "temp2@example.com"))  # type: ignore[type-var]
    assert first_retry == NOW + timedelta(seconds=0.2)
    assert all(r.sent_at == NOW for r in others)  # nobody waited for the greylisted two


def test_a_refusal_that_never_lifts_fails_as_a_soft_bounce(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    room.subscribe("temp9@example.com", "ok@example.com")
    setup = room.with_policy(max_attempts=2)
    clock = ManualClock(NOW)
    first = send(room, smtp_server.url(), setup, clock=clock)
    assert first.edition.status == "sending" and first.next_try is not None
    clock.set(first.next_try)
    outcome = send(room, smtp_server.url(), setup, clock=clock)  # the second and last attempt
    rows = ledger_rows(room)
    assert rows["temp9@example.com"].status == "failed"
    assert "gave up after 2 attempts" in rows["temp9@example.com"].smtp_reply
    assert room.status_of("temp9@example.com") == "active"  # one soft bounce is not a bounce
    assert outcome.edition.status == "sent"  # every row is settled

    smtp_server.plan.temp_prefix = "lifted"
    retried = send(room, smtp_server.url(), retry_failed=True)
    assert retried.edition.status == "sent"
    assert ledger_rows(room)["temp9@example.com"].status == "sent"
    assert Counter(r for m in smtp_server.messages for r in m.rcpt_tos)["ok@example.com"] == 1


def test_permanent_refusals_fail_and_bounce_the_subscriber(
    newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    newsroom.readers(4)
    newsroom.subscribe("perm1@example.com")

    outcome = send(newsroom, smtp_server.url())

    rows = ledger_rows(newsroom)
    assert rows["perm1@example.com"].status == "failed"
    assert rows["perm1@example.com"].smtp_code == 550
    assert "User unknown" in rows["perm1@example.com"].smtp_reply
    assert newsroom.status_of("perm1@example.com") == "bounced"
    assert sum(1 for r in rows.values() if r.status == "sent") == 4
    assert outcome.edition.status == "sent"

    with session_scope(newsroom.engine) as s:  # the next edition leaves the bounced address out
        next_edition = edition_store.ensure_edition(s, EDITION + timedelta(days=1), newsletter_id=1, now=NOW)
        assert ledger.snapshot(s, next_edition.id, now=NOW) == 4


@pytest.mark.parametrize("pipelining", [False, True], ids=["step-by-step", "pipelined"])
def test_dropped_connections_mid_session_lose_nothing_and_double_nothing(
    newsroom: Newsroom, smtp_server_factory, pipelining: bool
) -> None:
    server = smtp_server_factory(FaultPlan(drop_after=3, pipelining=pipelining))
    emails = newsroom.readers(20)

    outcome = send(newsroom, server.url())

    received = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert received == Counter(emails)
    assert outcome.edition.status == "sent"
    assert server.sessions >= 7  # 20 messages, at most 3 per connection


def test_a_connection_closed_without_reply_mid_session_is_retried(
    newsroom: Newsroom, smtp_server_factory
) -> None:
    server = smtp_server_factory(FaultPlan(drop_after=2, drop_mode="close"))
    emails = newsroom.readers(9)
    send(newsroom, server.url())
    assert Counter(r for m in server.messages for r in m.rcpt_tos) == Counter(emails)


def test_server_down_pauses_without_failing_anyone(sqlite_newsroom: Newsroom, smtp_server_factory) -> None:
    room = sqlite_newsroom
    room.readers(5)
    from tests.fixtures.smtp import free_port

    port = free_port()
    outcome = send(room, f"smtp://127.0.0.1:{port}?starttls=off")

    assert outcome.edition.status == "paused"
    assert "kept failing" in outcome.message and "no recipient was marked failed" in outcome.message
    assert {r.status for r in ledger_rows(room).values()} == {"pending"}

    server = smtp_server_factory(port=port)  # the relay comes back
    resumed = send(room, server.url())
    assert resumed.edition.status == "sent"
    assert len(server.messages) == 5


def test_wrong_password_pauses_with_a_clear_message(sqlite_newsroom: Newsroom, smtp_server_factory) -> None:
    room = sqlite_newsroom
    room.readers(3)
    server = smtp_server_factory(user="briefing", password="right-password")

    outcome = send(room, server.url(password="wrong-password"))

    assert outcome.edition.status == "paused"
    assert "SMTP authentication failed" in outcome.message
    assert "wrong-password" not in outcome.message
    assert {r.status for r in ledger_rows(room).values()} == {"pending"}
    assert server.messages == []


def test_no_reply_after_data_is_reported_and_resent_with_the_same_message_id(
    sqlite_newsroom: Newsroom, smtp_server_factory
) -> None:
    room = sqlite_newsroom
    room.readers(4)
    room.subscribe("ambig@example.com")
    server = smtp_server_factory(FaultPlan(ambiguous_prefix="never-matches", silent_data=1, pipelining=True))

    outcome = send(room, server.url())

    rows = ledger_rows(room)
    assert outcome.edition.status == "sent"
    assert all(r.status == "sent" for r in rows.values())
    flagged = [e for e, r in rows.items() if r.was_ambiguous]
    assert len(flagged) == 1
    copies = Counter(m.message_id for m in server.messages)
    assert len(copies) == 5 and sorted(copies.values()) == [1, 1, 1, 1, 2]
    assert outcome.report is not None and outcome.report.run.ambiguous_emails == flagged


def test_report_policy_leaves_ambiguous_rows_settled_but_unsent(
    sqlite_newsroom: Newsroom, smtp_server_factory
) -> None:
    room = sqlite_newsroom
    room.subscribe("ambig@example.com", "fine@example.com")
    server = smtp_server_factory(FaultPlan())
    outcome = send(room, server.url(), room.with_policy(resend_ambiguous=False, workers=1))
    rows = ledger_rows(room)
    assert rows["ambig@example.com"].status == "ambiguous"
    assert outcome.edition.status == "sent"  # settled: the report lists it
    assert Counter(m.message_id for m in server.messages).most_common(1)[0][1] == 1


def test_unsubscribed_after_the_snapshot_is_not_sent(sqlite_newsroom: Newsroom, smtp_server_factory) -> None:
    room = sqlite_newsroom
    emails = room.readers(6)
    leaving = emails[-1]

    def unsubscribe_the_last(_received: object) -> None:
        with session_scope(room.engine) as s:
            subscriber_store.unsubscribe(s, subscriber_store.get_by_email(s, leaving).id, now=NOW)

    server = smtp_server_factory(FaultPlan(), on_accept=unsubscribe_the_last)
    send(room, server.url(), room.with_policy(workers=1, claim_batch=1))

    rows = ledger_rows(room)
    assert rows[leaving].status == DeliveryStatus.SKIPPED
    assert leaving not in {r for m in server.messages for r in m.rcpt_tos}
    assert len(server.messages) == 5


def test_header_injection_through_a_stored_name_stays_in_its_header(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer
) -> None:
    room = sqlite_newsroom
    room.subscribe("eve@example.com", name="Eve\r\nBcc: spy@example.net")
    room.subscribe("mallory@example.com", name="=?UTF-8?Q?M=0ABcc:_spy@example.net?=")

    send(room, smtp_server.url())

    assert len(smtp_server.messages) == 2
    for m in smtp_server.messages:
        parsed = message_from_bytes(m.data, policy=default_policy)
        assert parsed["Bcc"] is None
        assert m.rcpt_tos in (("eve@example.com",), ("mallory@example.com",))
        names = [k.lower() for k in parsed.keys()]
        assert names.count("to") == 1 and names.count("list-unsubscribe") == 1
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["List-Unsubscribe"].startswith("<https://news.example.com/unsubscribe/")


@pytest.mark.parametrize("when", ["too early", "too late"])
def test_outside_the_window_nothing_is_sent_without_force(
    sqlite_newsroom: Newsroom, smtp_server: SmtpTestServer, when: str
) -> None:
    from briefing.errors import Conflict

    room = sqlite_newsroom
    room.readers(2)
    moment = (
        datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
        if when == "too early"
        else datetime(2026, 11, 30, 9, 1, tzinfo=UTC)
    )
    mail = open_transport(smtp_server.url())
    with pytest.raises(Conflict):
        edition_service.send_edition(room.engine, room.setup, EDITION, mail, clock=ManualClock(moment))
    assert smtp_server.messages == []
    with Session(room.engine) as s:
        edition = edition_store.find_edition(s, EDITION, newsletter_id=1)
    if when == "too early":
        assert edition is None  # a refused early send writes nothing
    else:
        assert edition is not None and edition.status == "expired"

    forced = edition_service.send_edition(
        room.engine, room.setup, EDITION, mail, clock=ManualClock(moment), force=True
    )
    mail.close()
    assert forced.edition.status == "sent" and len(smtp_server.messages) == 2


def test_preflight_errors_stop_the_send(sqlite_engine, smtp_server: SmtpTestServer) -> None:
    from briefing.errors import PreflightFailed
    from tests.fixtures.newsroom import make_setup

    room = Newsroom(sqlite_engine, make_setup())
    room.queue_story(headline="Minister resigns over TK")
    room.readers(2)
    with pytest.raises(PreflightFailed) as caught:
        send(room, smtp_server.url())
    assert any("TK" in p for p in caught.value.problems)
    assert smtp_server.messages == []
    with Session(room.engine) as s:
        assert edition_store.get_edition(s, EDITION, newsletter_id=1).status == "scheduled"
