"""What one run of the send loop did, and the report its caller prints (the ledger holds the totals).

Kept apart from the loop (service.delivery) so the CLI's progress bar and report, the scheduler and
the web read the numbers without the machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from briefing.domain import LedgerCounts


@dataclass(slots=True)
class RunTally:
    """Counts of what this run did (the ledger holds the totals)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    ambiguous: int = 0
    ambiguous_emails: list[str] = field(default_factory=list)
    total: int = 0  # copies still to send when this run started (for progress and ETA)
    waited: float = 0.0  # seconds spent idle between passes, waiting for deferred copies to fall due


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    counts: LedgerCounts
    snapshot_size: int
    run: RunTally
    elapsed: float
    paused_reason: str = ""
    stopped: bool = False
    halted: bool = False  # paused by the bounce breaker: only an editor resumes it

    @property
    def complete(self) -> bool:
        return self.counts.settled == self.snapshot_size

    @property
    def rate(self) -> float:  # while sending: waiting for deferred copies says nothing of the pace
        return self.run.sent / (self.elapsed - self.run.waited) if self.elapsed > self.run.waited else 0.0
