"""The send report's pace: messages per second over the run, which never waits for a retry."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from briefing.domain import LedgerCounts
from briefing.mail.transport import MemoryTransport, Outcome, SendResult
from briefing.service import editions as edition_service
from briefing.service.send_report import DeliveryReport, RunTally
from tests.fixtures.clock import T0, ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom

SECONDS_PER_MESSAGE = 0.1


class SlowRelay:
    """Takes a tenth of a second per message on the test's clock and refuses one reader once (451)."""

    def __init__(self, clock: ManualClock, refuse_once: str) -> None:
        self.clock = clock
        self.inner = MemoryTransport()
        self.refuse_once = refuse_once
        self._lock = threading.Lock()

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult:
        self.clock.advance(SECONDS_PER_MESSAGE)
        with self._lock:
            if rcpt == self.refuse_once:
                self.refuse_once = ""
                return SendResult(Outcome.DEFERRED, 451, "4.7.1 try again later", stage="rcpt")
        return self.inner.send(envelope_from, rcpt, data)

    def close(self) -> None:
        self.inner.close()


def test_rate_is_the_copies_over_the_run_s_time() -> None:
    report = DeliveryReport(
        counts=LedgerCounts(sent=60),
        snapshot_size=60,
        run=RunTally(sent=50),
        elapsed=5.0,
    )
    assert report.rate == pytest.approx(10.0)
    assert report.by_others == 10  # delivered by other senders, or by earlier runs


def test_a_send_with_a_deferred_copy_ends_at_once_and_reports_its_sending_pace(
    sqlite_newsroom: Newsroom,
) -> None:
    room = sqlite_newsroom
    emails = room.readers(10)
    setup = room.with_policy(backoff_base=timedelta(minutes=5), backoff_max=timedelta(minutes=5))
    clock = ManualClock(T0)
    relay = SlowRelay(clock, refuse_once=emails[3])

    outcome = edition_service.send_edition(room.engine, setup, EDITION, relay, force=True, clock=clock)

    report = outcome.report
    assert report is not None and not report.complete and report.run.sent == 9
    assert clock.waited == []  # nothing waited for the five-minute backoff
    assert report.elapsed == pytest.approx(10 * SECONDS_PER_MESSAGE)  # nine copies and one refused attempt
    assert report.rate == pytest.approx(9 / report.elapsed)
    assert outcome.waiting_for == "deferred"
    assert outcome.next_try == T0 + timedelta(seconds=4 * SECONDS_PER_MESSAGE) + timedelta(minutes=5)

    clock.set(outcome.next_try)
    again = edition_service.send_edition(room.engine, setup, EDITION, relay, force=True, clock=clock)
    assert again.edition.status == "sent" and again.report is not None and again.report.run.sent == 1
