"""Workers that join: passes over editions already `sending`, from any number of processes and hosts.

A worker never freezes or snapshots (`briefing send` or the scheduler does that, once); it looks
for an edition in `sending` with something to do now (copies pending, deferred copies fallen due,
claims of a sender that is gone), sends it with its own connections like any sender, and settles
the edition's state the way `briefing send` does. The scheduler's watch uses the same rule to
pick up an edition that nobody is sending any more.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing import calendar as cal
from briefing.domain import Clock, EditionData, EditionStatus
from briefing.errors import BriefingError, LockHeld
from briefing.mail.transport import Transport
from briefing.newsletter import REGULAR, is_special
from briefing.service import claim_owners
from briefing.service.alerts import one_line
from briefing.service.claim_owners import HEARTBEAT_EVERY
from briefing.service.edition_pass import SendOutcome, deliver, refuse_unreachable_links
from briefing.service.send_report import RunTally
from briefing.service.setup import EditionSetup, transport_reaches_readers
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import ledger_recovery

__all__ = ["PassReport", "Worker", "WorkerContext", "pass_reason", "pass_window", "run_pass"]

SENDING_LOOKED_AT = 50  # editions in `sending` a round looks at, oldest first (normally one or two)
MAX_ONCE_ROUNDS = 1000  # `--once` ends after this many rounds even if work keeps appearing


def pass_window(edition: EditionData, plan: cal.SendPlan) -> datetime | None:
    """The last moment for retries of a sending edition, as `briefing send` set it when it started.

    The send time plus the maximum lateness; None (retries until the attempts run out) when the
    edition was started after that on purpose (`briefing send --force`).
    """
    send_at = cal.send_time_for(edition.edition_date, plan)
    if is_special(edition.kind) and edition.scheduled_for is not None:
        send_at = edition.scheduled_for
    window_end = send_at + plan.max_lateness
    if edition.started_at is not None and edition.started_at >= window_end:
        return None
    return window_end


def pass_reason(
    session: Session, edition: EditionData, *, now: datetime, window_end: datetime | None
) -> str | None:
    """Why a pass over this sending edition would do something now; None when it would not."""
    if ledger_recovery.claimable_now(session, edition.id, now=now):
        return "copies to send"
    if ledger_recovery.expired_claims(session, edition.id, now=now):
        return "claims whose lease ran out"
    owners = ledger.claim_owners(session, edition.id)
    if owners and claim_owners.gone_owners(session, edition.id, owners, now=now):
        return "claims of a sender that stopped"
    alone = not claim_owners.live_runs(session, edition.id, now=now)
    if alone and ledger_recovery.held_refusals(session, edition.id):
        return "refusals a stopped sender left unjudged"
    if window_end is not None and now >= window_end and ledger_recovery.next_attempt(session, edition.id):
        return "its window closed with deferred copies waiting"
    return None


def run_pass(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    transport: Transport,
    *,
    clock: Clock,
    role: str = "worker",
    kind: str = REGULAR,
    stop: threading.Event | None = None,
    on_progress: Callable[[RunTally], None] | None = None,
    heartbeat_every: float = HEARTBEAT_EVERY,
) -> SendOutcome | None:
    """One pass over the edition of a date if it is `sending` (None if it is not), then its report.

    The edition's frozen content, `setup.policy.workers` connections, and the window its send
    started with. A pass after that window sends nothing: deferred copies are given up, a stopped
    sender's claims settled as ambiguous, and the edition finishes (`partial` if copies remain).
    """
    if transport_reaches_readers(transport) and not setup.reaches_readers:
        setup = replace(setup, reaches_readers=True)  # judged by where the mail really goes
    with Session(engine) as session:
        edition = edition_store.find_edition(
            session, edition_date, newsletter_id=setup.newsletter.id, kind=kind
        )
    if edition is None or edition.status != EditionStatus.SENDING:
        return None
    refuse_unreachable_links(setup, edition_date)
    window_end = pass_window(edition, setup.plan)
    closed = window_end is not None and clock.now() >= window_end  # nothing goes out late unasked
    return deliver(
        engine,
        setup,
        edition,
        transport,
        clock=clock,
        window_end=window_end,
        role=role,
        stop=stop,
        on_progress=on_progress,
        heartbeat_every=heartbeat_every,
        settle_only=closed,
    )


@dataclass(frozen=True, slots=True)
class PassReport:
    """One line's worth: what a pass did and where the whole edition stands."""

    edition_date: date
    reason: str
    outcome: SendOutcome
    kind: str = REGULAR
    newsletter: str = ""  # its slug

    @property
    def mine(self) -> int:
        return self.outcome.report.run.sent if self.outcome.report is not None else 0

    @property
    def sent(self) -> int:
        return self.outcome.report.counts.sent if self.outcome.report is not None else 0

    @property
    def total(self) -> int:
        return self.outcome.report.snapshot_size if self.outcome.report is not None else 0


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """What a worker needs; `setup` (by newsletter id) and `transport` are factories, called per pass."""

    engine: sa.Engine
    setup: Callable[[int], EditionSetup]
    transport: Callable[[], Transport]
    clock: Clock
    stop: threading.Event
    log: logging.Logger
    # Taken around each pass, released after; raises LockHeld while another sender has the
    # SQLite database (one sender per file). None where many may send at once (PostgreSQL).
    send_guard: Callable[[], Callable[[], None] | None] | None = None
    on_pass: Callable[[PassReport], None] | None = None


class Worker:
    """Looks for sending editions with work now and runs a pass over each; idles on the stop event."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.passes = 0

    def due(self) -> list[tuple[EditionData, str]]:
        """The sending editions a pass would do something for now, oldest first, with the reason."""
        ctx = self.ctx
        now = ctx.clock.now()
        with Session(ctx.engine) as session:
            sending = edition_store.list_editions(
                session, limit=SENDING_LOOKED_AT, statuses=[EditionStatus.SENDING.value]
            )
        # Each newsletter's calendar, read outside the session: on SQLite every transaction takes
        # the write lock, and a second one opened inside the first would wait for it.
        setups = {nid: ctx.setup(nid) for nid in {e.newsletter_id for e in sending}}
        with Session(ctx.engine) as session:
            found = []
            for edition in sorted(sending, key=lambda e: (e.edition_date, e.id)):
                if setups[edition.newsletter_id].newsletter.paused:
                    continue  # paused by its editors: nobody sends it, as the scheduler does not
                window_end = pass_window(edition, setups[edition.newsletter_id].plan)
                reason = pass_reason(session, edition, now=now, window_end=window_end)
                if reason is not None:
                    found.append((edition, reason))
        return found

    def round(self) -> int | None:
        """One pass over each edition with work now: the passes run, or None when the lock was held."""
        ctx = self.ctx
        ran = 0
        for edition, reason in self.due():
            if ctx.stop.is_set():
                break
            release: Callable[[], None] | None = None
            if ctx.send_guard is not None:
                try:
                    release = ctx.send_guard()
                except LockHeld as exc:
                    ctx.log.info("waiting: %s", exc)
                    return None
            transport = ctx.transport()
            setup = ctx.setup(edition.newsletter_id)
            try:
                outcome = run_pass(
                    ctx.engine,
                    setup,
                    edition.edition_date,
                    transport,
                    clock=ctx.clock,
                    role="worker",
                    kind=edition.kind,
                    stop=ctx.stop,
                )
            finally:
                transport.close()
                if release is not None:
                    release()
            if outcome is None:
                continue
            ran += 1
            self.passes += 1
            if ctx.on_pass is not None:
                ctx.on_pass(
                    PassReport(edition.edition_date, reason, outcome, edition.kind, setup.newsletter.slug)
                )
        return ran

    def run(self, *, poll: float, once: bool = False) -> None:
        """Until stopped (or, with `once`, until no sending edition has anything to do now).

        A database that is down, or an edition a pass refuses (links readers could not open), is
        logged on one line and tried again after `poll` seconds; with `once` it is raised.
        """
        ctx = self.ctx
        rounds = 0
        while not ctx.stop.is_set():
            rounds += 1
            try:
                ran = self.round()
            except (sa.exc.SQLAlchemyError, BriefingError) as exc:
                if once:
                    raise
                ctx.log.error("the pass failed (%s); trying again in %.0f s", one_line(exc), poll)
                ran = None
            if once and (ran == 0 or rounds >= MAX_ONCE_ROUNDS):
                return
            if not ran:
                ctx.clock.wait(poll, ctx.stop)
