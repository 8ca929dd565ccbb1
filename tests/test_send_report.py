"""The send report's pace: messages per second while sending, not while waiting to retry."""

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


def test_rate_leaves_out_the_time_spent_waiting() -> None:
    report = DeliveryReport(
        counts=LedgerCounts(sent=50),
        snapshot_size=50,
        run=RunTally(sent=50, waited=600.0),
        elapsed=605.0,
    )
    assert report.rate == pytest.approx(10.0)


def test_a_send_that_waited_for_a_retry_reports_its_sending_pace(sqlite_newsroom: Newsroom) -> None:
    room = sqlite_newsroom
    emails = room.readers(10)
    setup = room.with_policy(backoff_base=timedelta(minutes=5), backoff_max=timedelta(minutes=5))
    clock = ManualClock(T0)
    relay = SlowRelay(clock, refuse_once=emails[3])

    outcome = edition_service.send_edition(room.engine, setup, EDITION, relay, force=True, clock=clock)

    report = outcome.report
    assert report is not None and report.complete and report.run.sent == 10
    assert report.run.waited > 4 * 60  # most of the five-minute backoff before the retry, idle
    sending = report.elapsed - report.run.waited
    assert sending == pytest.approx(11 * SECONDS_PER_MESSAGE)  # ten copies and one refused attempt
    assert report.rate == pytest.approx(10 / sending)
