"""A relay that takes the message and never answers is the server's trouble: the send pauses.

Against a real aiosmtpd tarpit on loopback (it records each message and never sends the final
reply), with a short client timeout so that each wait costs half a second.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlmodel import Session

from briefing.domain import EditionStatus
from briefing.mail.pool import open_transport
from briefing.service import editions as edition_service
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import subscribers as subscriber_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.newsroom import EDITION, Newsroom
from tests.fixtures.smtp import FaultPlan

NOW = datetime(2026, 11, 30, 6, 0, 30, tzinfo=UTC)


def test_consecutive_timeouts_after_data_pause_the_send_and_blame_nobody(
    sqlite_newsroom: Newsroom, smtp_server_factory
) -> None:
    room = sqlite_newsroom
    room.readers(30)
    server = smtp_server_factory(FaultPlan(data_hold=True))
    mail = open_transport(server.url(), pool_size=room.setup.policy.workers, timeout=0.5)
    try:
        outcome = edition_service.send_edition(room.engine, room.setup, EDITION, mail, clock=ManualClock(NOW))
    finally:
        mail.close()

    assert outcome.edition.status == EditionStatus.PAUSED
    assert "never answered" in outcome.message
    tried = Counter(r for m in server.messages for r in m.rcpt_tos)
    assert len(tried) <= 3 + room.setup.policy.workers, f"{len(tried)} readers waited on the silent relay"
    assert set(tried.values()) == {1}, "no copy waited for the timeout twice in this run"
    with Session(room.engine) as s:
        edition = edition_store.get_edition(s, EDITION, newsletter_id=1)
        counts = ledger.counts(s, edition.id)
        states = Counter(sub.status for sub in subscriber_store.iter_subscribers(s))
    assert counts.failed == 0 and counts.pending + counts.ambiguous == 30
    assert states == Counter({"active": 30})
