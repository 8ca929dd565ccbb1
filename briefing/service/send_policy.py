"""The rules one send follows: workers, leases, retries and backoff, and when it stops itself.

Built from settings by wiring.delivery_policy; the send loop (service.delivery) only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from briefing.service.refusals import RelayRules


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    workers: int = 2
    lease: timedelta = timedelta(minutes=15)  # longer than SMTP's 10-minute end-of-data timeout
    max_attempts: int = 5
    backoff_base: timedelta = timedelta(minutes=1)
    backoff_max: timedelta = timedelta(minutes=15)
    window_end: datetime | None = None  # no attempt after this; deferred rows then fail
    resend_ambiguous: bool = True
    reconnect_delays: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    soft_bounce_limit: int = 3
    claim_batch: int = 20  # rows a connection leases at once; each is still recorded on its own
    relay: RelayRules = field(default_factory=RelayRules)
    breaker_rate: float = 0.05  # halt when more of the recipients tried than this bounced hard ...
    breaker_after: int = 500  # ... once this many were tried; rate 0 turns the breaker off

    def backoff(self, attempts: int) -> timedelta:
        """Doubling delay after each temporary failure, bounded (Postfix's queue manager does the same)."""
        seconds = self.backoff_base.total_seconds() * (2 ** max(0, attempts - 1))
        return timedelta(seconds=min(seconds, self.backoff_max.total_seconds()))
