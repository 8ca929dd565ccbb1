"""What a judged refusal does to its copy: failed and bounced, deferred to a later pass, or given up.

Apart from the send loop (service.delivery) because this is the rule for one copy's fate, which
changes with the retry policy, not with how the loop claims, sends and records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from briefing.mail.transport import Outcome, SendResult
from briefing.service.refusals import BounceBreaker
from briefing.service.send_policy import DeliveryPolicy
from briefing.service.send_report import RunTally
from briefing.store import deliveries as ledger


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal waiting for the judge, with what its row needs once judged."""

    claim: ledger.Claim
    result: SendResult
    at: datetime


def settle_refusals(
    writer: ledger.LedgerWriter,
    refusals: Iterable[Refused],
    *,
    policy: DeliveryPolicy,
    tally: RunTally,
    breaker: BounceBreaker,
    window_open: Callable[[datetime], bool],
    now: datetime,
) -> None:
    """Refusals that stand out now count against their readers (call inside the writer's transaction).

    A 5xx to RCPT fails the copy and bounces the address. A 4xx defers it to its next attempt,
    which a later pass sends (nothing waits for it); past the attempts or the edition's window it
    fails as a soft bounce.
    """
    for r in refusals:
        claim, code, reply = r.claim, r.result.code, r.result.reply
        if r.result.outcome is Outcome.REJECTED:  # a 5xx to RCPT: this address is refused
            if writer.settle(claim.delivery_id, failed=True, reply=reply, next_at=None, now=now):
                if code is not None and 500 <= code < 600:
                    writer.bounce(claim.subscriber_id, now=now)
                    breaker.bounce()
                tally.failed += 1
            continue
        attempts = claim.attempts + 1
        next_at = r.at + policy.backoff(attempts)
        if attempts >= policy.max_attempts or not window_open(next_at):
            why = f"gave up after {attempts} attempts: {reply}"
            if writer.settle(claim.delivery_id, failed=True, reply=why, next_at=None, now=now):
                writer.soft_bounce(claim.subscriber_id, limit=policy.soft_bounce_limit, now=now)
                tally.failed += 1
        elif writer.settle(claim.delivery_id, failed=False, reply=reply, next_at=next_at, now=now):
            tally.deferred += 1
