"""The ledger-driven send loop: claim, send, record, judge refusals, report.

Each worker leases a small batch and sends it in id order. Recording a result and looking up the
batch's readers again happen in one transaction, right after the SMTP reply: a `sent` row is
committed, and a reader who left is skipped, before the next message starts; a crash leaves at most
one copy in flight per connection, which a later run treats as ambiguous (maybe delivered).
A refusal counts against its reader only once it stands out from what others got (service.refusals).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from briefing.db import session_scope
from briefing.domain import Clock, LedgerCounts
from briefing.errors import AuthFailed, InvalidInput, TransportError
from briefing.mail.transport import Outcome, SendResult, Transport
from briefing.service import claim_owners
from briefing.service.claim_owners import make_owner
from briefing.service.refusals import BounceBreaker, RelayJudge
from briefing.service.refused_copies import Refused as _Refused
from briefing.service.refused_copies import settle_refusals
from briefing.service.send_policy import DeliveryPolicy
from briefing.service.send_report import DeliveryReport, RunTally
from briefing.service.sender_heartbeat import Heartbeat
from briefing.store import deliveries as ledger
from briefing.store import ledger_recovery
from briefing.store import subscribers as subscriber_store

log = logging.getLogger(__name__)
# Copies in a row sent without a reply after DATA (a timeout, a dropped connection) before the
# send pauses: a relay that takes mail and never answers would otherwise cost each reader a timeout.
NO_REPLY_PAUSE_AFTER = 3
# Passes over the ledger in one run: another starts only when claims recovered from a stopped
# sender (or copies falling due) left something to send once this run's connections had finished.
MAX_PASSES = 100

BuildMessage = Callable[[ledger.Claim], tuple[bytes, str]]  # -> (message bytes, Message-ID)
# One envelope sender for every copy, or one per copy (a VERP return path that names the copy).
EnvelopeFrom = str | Callable[[ledger.Claim], str]


class DeliveryRun:
    """One run over an edition's ledger with N workers sharing a transport.

    It sends what can be sent now and ends: a copy deferred by its server stays in the ledger,
    due at its next attempt, for a later run (the scheduler's watch, a worker, or the next send).
    """

    def __init__(
        self,
        engine: sa.Engine,
        edition_id: int,
        *,
        envelope_from: EnvelopeFrom,
        build: BuildMessage,
        transport: Transport,
        policy: DeliveryPolicy,
        stop: threading.Event | None = None,
        on_progress: Callable[[RunTally], None] | None = None,
        clock: Clock,
        role: str = "send",
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
        self._lock = threading.RLock()
        self._paused = threading.Event()
        self.paused_reason = ""
        self.halted = False
        self.judge: RelayJudge[_Refused] = RelayJudge(policy.relay)
        self.breaker = BounceBreaker(policy.breaker_rate, policy.breaker_after)
        self._connection_failures = 0
        self._no_reply_streak = 0  # copies in a row the relay took and never answered
        # SQLite allows one writer; queueing our own workers on a Python lock avoids SQLite's
        # busy-handler sleeps (milliseconds each) between them. PostgreSQL needs no such lock.
        self._db_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        self.heartbeat = Heartbeat(
            engine,
            self.owner,
            edition_id,
            role=role,
            connections=policy.workers,
            clock=clock,
            tally=lambda: self.tally,
            db_lock=self._db_lock,
            tick=self.recover_stale_claims,
        )

    def run(self) -> DeliveryReport:
        started = self.clock.monotonic()
        self.heartbeat.start()
        try:
            self.recover_stale_claims(first=True)
            waiting = self._settle_window()  # past the window, deferred copies are not tried again
            self.tally.total = waiting.pending + waiting.deferred + waiting.claimed
            for _ in range(MAX_PASSES):
                self._run_workers()
                self._settle_pass()
                if self.stop.is_set() or self._paused.is_set() or not self._more_now():
                    break
            counts = self._settle_window()
            with session_scope(self.engine) as session:
                size = ledger.ledger_size(session, self.edition_id)
        finally:
            self.heartbeat.stop()  # finished: from now on no other sender counts on this run
        return DeliveryReport(
            counts=counts,
            snapshot_size=size,
            run=self.tally,
            elapsed=self.clock.monotonic() - started,
            paused_reason=self.paused_reason,
            stopped=self.stop.is_set(),
            halted=self.halted,
        )

    def recover_stale_claims(self, *, first: bool = False) -> int:
        """Take over the claims of senders that are gone (claim_owners.recover); the rows freed.

        At the start and with the heartbeat, so live senders take over a crashed one's rows.
        """
        now = self.clock.now()
        resend = self.policy.resend_ambiguous and self._window_open(now)
        with self._db_lock, session_scope(self.engine) as session:
            in_flight, freed = claim_owners.recover(
                session, self.edition_id, self.owner, now=now, resend=resend, held=first
            )
        if in_flight:
            log.warning("%d message(s) were in flight when another sender stopped", len(in_flight))
            with self._lock:
                self.tally.ambiguous += len(in_flight)
                self.tally.ambiguous_emails.extend(in_flight)
        return freed

    def _settle_window(self) -> LedgerCounts:
        """Once the edition's window has closed, deferred copies fail (a soft bounce each); the counts."""
        now = self.clock.now()
        with self._db_lock, session_scope(self.engine) as session:
            if self.policy.window_end is not None and now >= self.policy.window_end:
                for subscriber_id in ledger.give_up_deferred(session, self.edition_id, now=now):
                    subscriber_store.record_soft_bounce(
                        session, subscriber_id, limit=self.policy.soft_bounce_limit, now=now
                    )
            return ledger.counts(session, self.edition_id)

    def _more_now(self) -> bool:
        """After a pass: anything to send now (freed from a stopped sender, or fallen due)?"""
        self.recover_stale_claims()
        with session_scope(self.engine) as session:
            return ledger_recovery.claimable_now(session, self.edition_id, now=self.clock.now())

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
        this worker still has claimed is the one that was in flight (see ledger_recovery.recover_claims).
        The batch's readers are looked up again after each copy, in the transaction that records
        it, and after any wait: an unsubscribe committed before that look-up is never sent.
        """
        owner = f"{self.owner}:w{index}"
        writer = ledger.LedgerWriter(self.engine)
        batch: deque[ledger.Claim] = deque()
        checked = False  # the batch's readers were looked up since the last copy (or wait) ended
        try:
            while True:
                if self.stop.is_set() or self._paused.is_set():
                    return
                if batch and not checked:  # after a wait, or a copy that reached no reply
                    with self._db_lock, writer.transaction():
                        self._drop_suppressed(writer, batch)
                if not batch:
                    batch.extend(self._claim(writer, owner))
                    if not batch:
                        return
                claim = batch.popleft()
                checked = False
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
                    refused = self._record(writer, claim, result, message_id, now=self.clock.now())
                    if refused is None:
                        checked = self._drop_suppressed(writer, batch)
                if refused is not None:  # judged only once its held row is committed, for any worker to see
                    with self._db_lock, writer.transaction(), self._lock:
                        self._judge(writer, refused)
                        checked = self._drop_suppressed(writer, batch)
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

    def _drop_suppressed(self, writer: ledger.LedgerWriter, batch: deque[ledger.Claim]) -> bool:
        """Skip the batch's next readers who are no longer active; call inside a transaction."""
        skipped = 0
        while batch and not writer.still_wanted(batch[0], now=self.clock.now()):
            batch.popleft()
            skipped += 1
        with self._lock:
            self.tally.skipped += skipped
        return True

    def _send_one(self, claim: ledger.Claim) -> tuple[SendResult, str]:
        try:
            data, message_id = self.build(claim)
        except InvalidInput as exc:
            return SendResult(Outcome.REJECTED, None, f"not sent: {exc}", "local"), ""
        try:
            sender = self.envelope_from if isinstance(self.envelope_from, str) else self.envelope_from(claim)
            return self.transport.send(sender, claim.email, data), message_id
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
    ) -> _Refused | None:
        """Record one result; a refusal is only held here and returned, for the judge."""
        code, reply = result.code, result.reply
        with self._lock:
            tally = self.tally
            if result.outcome is not Outcome.CONNECTION and result.stage != "local":
                self.breaker.attempt()
            if result.outcome is Outcome.ACCEPTED:
                writer.sent(claim.delivery_id, code=code or 250, reply=reply, message_id=message_id, now=now)
                tally.sent += 1
                self._no_reply_streak = 0
                self._judged(writer, self.judge.delivered(), now=now)
            elif result.outcome is Outcome.DEFERRED and claim.attempts > 0:
                # A retry: its first refusal was judged its reader's while others were delivered, and
                # a pass of retries alone has no deliveries to judge by. Deferred again (or given up).
                writer.hold(claim.delivery_id, code=code, reply=reply, now=now)
                self._judged(writer, [_Refused(claim, result, now)], now=now)
            elif result.outcome is Outcome.DEFERRED or (
                result.outcome is Outcome.REJECTED and result.stage == "rcpt"
            ):
                writer.hold(claim.delivery_id, code=code, reply=reply, now=now)
                return _Refused(claim, result, now)
            elif result.outcome is Outcome.REJECTED:
                writer.failed(claim.delivery_id, code=code, reply=reply, now=now)
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
                self._no_reply_streak += 1
                if self._no_reply_streak >= NO_REPLY_PAUSE_AFTER:
                    self._pause(
                        f"the SMTP server took {self._no_reply_streak} messages in a row and never answered "
                        f"({reply}); that is the server's trouble: nobody was marked failed, and the send "
                        "goes on when the server answers again (the scheduler retries on its own)"
                    )
        return None

    # ------------------------------------------------------------------ refusals judged

    def _judge(self, writer: ledger.LedgerWriter, refused: _Refused) -> None:
        judged = self.judge.refused(refused, refused.result.code, refused.result.reply)
        self._apply(writer, judged, now=self.clock.now())

    def _apply(self, writer: ledger.LedgerWriter, judged: list[_Refused], *, now: datetime) -> None:
        """What the judge decided (call with the lock held, inside a transaction)."""
        if self.judge.trouble:
            self._relay_trouble(writer, now=now)
        else:
            self._judged(writer, judged, now=now)

    def _judged(self, writer: ledger.LedgerWriter, refusals: list[_Refused], *, now: datetime) -> None:
        """Refusals that stand out: now they count against their readers (call with the lock held)."""
        settle_refusals(
            writer,
            refusals,
            policy=self.policy,
            tally=self.tally,
            breaker=self.breaker,
            window_open=self._window_open,
            now=now,
        )
        if self.breaker.tripped and not self.paused_reason:
            self.halted = True
            self._pause(self.breaker.reason)

    def _relay_trouble(self, writer: ledger.LedgerWriter, *, now: datetime) -> None:
        """The relay refuses everyone: every held row back to the queue, and the send pauses."""
        held = [r.claim.delivery_id for r in self.judge.release()]
        writer.release_held(held, reply=f"not sent yet: {self.judge.trouble}", now=now)
        self._pause(
            f"{self.judge.trouble}. That is the SMTP server's trouble, not the readers': nobody was marked "
            "failed or bounced, and the send goes on when the server accepts mail again "
            "(run the send again; the scheduler retries on its own)"
        )

    def _settle_pass(self) -> None:
        """At the end of a pass, judge the refusals still held (see RelayJudge.settle)."""
        if not self.judge.held:
            return
        writer = ledger.LedgerWriter(self.engine)
        try:
            with self._db_lock, writer.transaction(), self._lock:
                self._apply(writer, self.judge.settle(), now=self.clock.now())
        finally:
            writer.close()

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
