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


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    counts: LedgerCounts
    snapshot_size: int
    run: RunTally
    elapsed: float
    paused_reason: str = ""
    stopped: bool = False
    halted: bool = False  # paused by the bounce breaker: only an editor resumes it
    # The rest of the edition, as this run left it (filled in when the edition's state is settled):
    other_senders: int = 0  # other runs still sending it, on any host (from the sender table)
    others_in_flight: int = 0  # copies those runs hold claimed

    @property
    def complete(self) -> bool:
        return self.counts.settled == self.snapshot_size

    @property
    def by_others(self) -> int:
        """Delivered copies that other senders (or earlier runs) delivered."""
        return max(0, self.counts.sent - self.run.sent)

    @property
    def rate(self) -> float:  # a run never waits for deferred copies, so this is its sending pace
        return self.run.sent / self.elapsed if self.elapsed > 0 else 0.0
