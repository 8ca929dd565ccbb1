"""The ledger-driven send loop: claim, send, record, retry, report.

Each worker holds at most one claimed row. Recording the previous result and claiming the next row
happen in one transaction, right after the SMTP reply: a `sent` row is committed before the next
message starts, and a crash leaves at most one claimed row per connection, which the next run
treats as ambiguous (it may or may not have been delivered).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from briefing.db import session_scope
from briefing.domain import Clock, LedgerCounts
from briefing.errors import AuthFailed, InvalidInput, TransportError
from briefing.mail.transport import Outcome, SendResult, Transport
from briefing.store import deliveries as ledger
from briefing.store import subscribers as subscriber_store

log = logging.getLogger(__name__)

BuildMessage = Callable[[ledger.Claim], tuple[bytes, str]]  # -> (message bytes, Message-ID)


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

    def backoff(self, attempts: int) -> timedelta:
        """Doubling delay after each temporary failure, bounded (Postfix's queue manager does the same)."""
        seconds = self.backoff_base.total_seconds() * (2 ** max(0, attempts - 1))
        return timedelta(seconds=min(seconds, self.backoff_max.total_seconds()))


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

    @property
    def complete(self) -> bool:
        return self.counts.settled == self.snapshot_size

    @property
    def rate(self) -> float:
        return self.run.sent / self.elapsed if self.elapsed > 0 else 0.0


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """True when the owner ran on this host and its process is gone (its claims were in flight)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class DeliveryRun:
    """One pass over an edition's ledger with N workers sharing a transport."""

    def __init__(
        self,
        engine: sa.Engine,
        edition_id: int,
        *,
        envelope_from: str,
        build: BuildMessage,
        transport: Transport,
        policy: DeliveryPolicy,
        stop: threading.Event | None = None,
        on_progress: Callable[[RunTally], None] | None = None,
        clock: Clock,
    ) -> None:
        self.engine = engine
        self.edition_id = edition_id
        self.envelope_from = envelope_from
        self.build = build
        self.transport = transport
        self.policy = policy
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.clock = clock
        self.owner = make_owner()
        self.tally = RunTally()
        self._lock = threading.Lock()
        self._paused = threading.Event()
        self.paused_reason = ""
        self._connection_failures = 0
        # SQLite allows one writer; queueing our own workers on a Python lock avoids SQLite's
        # busy-handler sleeps (milliseconds each) between them. PostgreSQL needs no such lock.
        self._db_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )

    # ------------------------------------------------------------------ public

    def run(self) -> DeliveryReport:
        started = self.clock.monotonic()
        self.recover_stale_claims()
        with session_scope(self.engine) as session:
            waiting = ledger.counts(session, self.edition_id)
        self.tally.total = waiting.pending + waiting.deferred + waiting.claimed
        while not self.stop.is_set() and not self._paused.is_set():
            self._run_workers()
            if self.stop.is_set() or self._paused.is_set():
                break
            if not self._wait_for_deferred():
                break
        now = self.clock.now()
        with session_scope(self.engine) as session:
            if self.policy.window_end is not None and now >= self.policy.window_end:
                for subscriber_id in ledger.give_up_deferred(session, self.edition_id, now=now):
                    subscriber_store.record_soft_bounce(
                        session, subscriber_id, limit=self.policy.soft_bounce_limit, now=now
                    )
            counts = ledger.counts(session, self.edition_id)
            size = ledger.ledger_size(session, self.edition_id)
        return DeliveryReport(
            counts=counts,
            snapshot_size=size,
            run=self.tally,
            elapsed=self.clock.monotonic() - started,
            paused_reason=self.paused_reason,
            stopped=self.stop.is_set(),
        )

    def recover_stale_claims(self) -> None:
        """Rows left claimed by a crashed sender: the one in flight per connection is ambiguous."""
        now = self.clock.now()
        with session_scope(self.engine) as session:
            dead = [o for o in ledger.claim_owners(session, self.edition_id) if owner_is_dead(o)]
            in_flight = ledger.recover_claims(
                session,
                self.edition_id,
                now=now,
                dead_owners=dead,
                resend=self.policy.resend_ambiguous and self._window_open(now),
            )
        if in_flight:
            log.warning("%d message(s) were in flight when a previous send stopped", len(in_flight))
            with self._lock:
                self.tally.ambiguous += len(in_flight)
                self.tally.ambiguous_emails.extend(in_flight)

    # ------------------------------------------------------------------ workers

    def _run_workers(self) -> None:
        threads = [
            threading.Thread(target=self._worker, args=(i,), name=f"send-{i}", daemon=True)
            for i in range(self.policy.workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _worker(self, index: int) -> None:
        """One connection's loop: claim a small batch, then send and record each message in id order.

        Each result is committed before the next message starts, so after a crash the lowest row
        this worker still has claimed is the one that was in flight (see ledger.recover_claims).
        """
        owner = f"{self.owner}:w{index}"
        writer = ledger.LedgerWriter(self.engine)
        batch: deque[ledger.Claim] = deque()
        try:
            while True:
                if self.stop.is_set() or self._paused.is_set():
                    return
                if not batch:
                    batch.extend(self._claim(writer, owner))
                    if not batch:
                        return
                claim = batch.popleft()
                result, message_id = self._send_one(claim)
                if result.outcome is Outcome.CONNECTION:
                    with self._db_lock, writer.transaction():
                        writer.release([claim.delivery_id], now=self.clock.now())
                    if result.stage == "auth" or not self._connection_trouble(result):
                        return
                    continue
                with self._lock:
                    self._connection_failures = 0
                with self._db_lock, writer.transaction():
                    self._record(writer, claim, result, message_id, now=self.clock.now())
                if self.on_progress is not None:
                    self.on_progress(self.tally)
        finally:
            if batch:  # claimed but never attempted: straight back to the queue
                with self._db_lock, writer.transaction():
                    writer.release([c.delivery_id for c in batch], now=self.clock.now())
            writer.close()

    def _claim(self, writer: ledger.LedgerWriter, owner: str) -> list[ledger.Claim]:
        now = self.clock.now()
        with self._db_lock, writer.transaction():
            claims, skipped = writer.claim_batch(
                self.edition_id, owner, now + self.policy.lease, now, self.policy.claim_batch
            )
        if skipped:
            with self._lock:
                self.tally.skipped += skipped
        return claims

    def _send_one(self, claim: ledger.Claim) -> tuple[SendResult, str]:
        try:
            data, message_id = self.build(claim)
        except InvalidInput as exc:
            return SendResult(Outcome.REJECTED, None, f"not sent: {exc}", "local"), ""
        try:
            return self.transport.send(self.envelope_from, claim.email, data), message_id
        except AuthFailed as exc:
            self._pause(f"SMTP authentication failed: {exc}")
            return SendResult(Outcome.CONNECTION, None, str(exc), "auth"), message_id
        except TransportError as exc:
            return SendResult(Outcome.CONNECTION, None, str(exc), "connect"), message_id

    def _record(
        self,
        writer: ledger.LedgerWriter,
        claim: ledger.Claim,
        result: SendResult,
        message_id: str,
        *,
        now: datetime,
    ) -> None:
        code, reply = result.code, result.reply
        with self._lock:
            tally = self.tally
            if result.outcome is Outcome.ACCEPTED:
                writer.sent(claim.delivery_id, code=code or 250, reply=reply, message_id=message_id, now=now)
                tally.sent += 1
            elif result.outcome is Outcome.DEFERRED:
                attempts = claim.attempts + 1
                next_at = now + self.policy.backoff(attempts)
                if attempts >= self.policy.max_attempts or not self._window_open(next_at):
                    writer.failed(
                        claim.delivery_id,
                        code=code,
                        reply=f"gave up after {attempts} attempts: {reply}",
                        now=now,
                    )
                    writer.soft_bounce(claim.subscriber_id, limit=self.policy.soft_bounce_limit, now=now)
                    tally.failed += 1
                else:
                    writer.deferred(
                        claim.delivery_id, code=code, reply=reply, next_attempt_at=next_at, now=now
                    )
                    tally.deferred += 1
            elif result.outcome is Outcome.REJECTED:
                writer.failed(claim.delivery_id, code=code, reply=reply, now=now)
                if result.stage == "rcpt" and code is not None and 500 <= code < 600:
                    writer.bounce(claim.subscriber_id, now=now)
                tally.failed += 1
            elif result.outcome is Outcome.AMBIGUOUS:
                resend = self.policy.resend_ambiguous and not claim.was_ambiguous and self._window_open(now)
                writer.ambiguous(
                    claim.delivery_id,
                    reply=f"no reply after the message was sent ({reply})"
                    + ("; will be sent again with the same Message-ID" if resend else ""),
                    resend=resend,
                    now=now,
                )
                tally.ambiguous += 1
                tally.ambiguous_emails.append(claim.email)

    def _connection_trouble(self, result: SendResult) -> bool:
        """Back off before reconnecting; pause the edition after repeated failures. False = stop."""
        with self._lock:
            self._connection_failures += 1
            failures = self._connection_failures
        delays = self.policy.reconnect_delays
        if failures > len(delays):
            detail = f"{result.code} " if result.code else ""
            self._pause(
                f"the SMTP server kept failing ({failures} times in a row; last: {detail}{result.reply}); "
                "no recipient was marked failed. Run the send again when the server is back."
            )
            return False
        log.warning(
            "SMTP trouble (%s %s); reconnecting in %.0f s",
            result.code or "",
            result.reply,
            delays[failures - 1],
        )
        return not self.clock.wait(delays[failures - 1], self.stop)

    def _pause(self, reason: str) -> None:
        with self._lock:
            if not self.paused_reason:
                self.paused_reason = reason
        self._paused.set()
        log.error("sending paused: %s", reason)

    # ------------------------------------------------------------------ deferred rows

    def _window_open(self, at: datetime) -> bool:
        return self.policy.window_end is None or at < self.policy.window_end

    def _wait_for_deferred(self) -> bool:
        """Sleep until the next deferred row is due; False when nothing more can be tried in this run."""
        with session_scope(self.engine) as session:
            due = ledger.next_due(session, self.edition_id)
        if due is None or not self._window_open(due):
            return False
        delay = (due - self.clock.now()).total_seconds()
        if delay > 0:
            log.info("waiting %.0f s for temporarily refused messages", delay)
            return not self.clock.wait(delay, self.stop)
        return not self.stop.is_set()
