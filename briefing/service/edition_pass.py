"""One pass over a frozen edition, then the edition's state settled from the whole ledger.

`briefing send` (once it has frozen or joined the edition), a worker's pass and the scheduler's
watch all deliver through `deliver`, so every report describes the whole edition alike: sent by
this sender, by others, still in flight with other live senders, or deferred to a later pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import session_scope
from briefing.domain import Clock, EditionData, EditionStatus
from briefing.edition.preflight import PreflightReport, public_base_url_problem
from briefing.errors import PreflightFailed
from briefing.mail.transport import Transport
from briefing.newsletter import edition_label
from briefing.service import claim_owners
from briefing.service.claim_owners import HEARTBEAT_EVERY
from briefing.service.delivery import DeliveryRun
from briefing.service.edition_content import Prepared
from briefing.service.send_report import DeliveryReport, RunTally
from briefing.service.setup import EditionSetup, MailFactory, envelope_sender
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import ledger_recovery
from briefing.store import stories as story_store
from briefing.store import subscribers as subscriber_store
from briefing.store.deliveries import Claim

OTHERS = "others"  # live senders elsewhere hold the rest; whoever settles the last copy finishes it
DEFERRED = "deferred"  # only copies deferred by their servers remain, due at `next_try`


@dataclass(frozen=True, slots=True)
class SendOutcome:
    edition: EditionData
    message: str
    report: DeliveryReport | None = None
    preflight: PreflightReport | None = None  # the checks of the content it froze, when it froze it
    others_sending: int = 0  # copies other live senders still held claimed when this one finished
    waiting_for: str = ""  # OTHERS or DEFERRED while the edition stays `sending`, else ""
    next_try: datetime | None = None  # when the first deferred copy is due again


def refuse_unreachable_links(setup: EditionSetup, edition_date: date) -> None:
    """Every copy, also of a resumed edition, gets links built on the setting as it is now."""
    if not setup.reaches_readers:
        return
    problem = public_base_url_problem(setup.mailing.public_base_url)
    if problem is not None:
        raise PreflightFailed(
            f"the edition of {edition_date} was not sent: its reader links would not work", [str(problem)]
        )


def deliver(
    engine: sa.Engine,
    setup: EditionSetup,
    edition: EditionData,
    transport: Transport,
    *,
    clock: Clock,
    window_end: datetime | None,
    role: str,
    stop: threading.Event | None = None,
    on_progress: Callable[[RunTally], None] | None = None,
    prepared: Prepared | None = None,
    breaker: bool = True,
    heartbeat_every: float = HEARTBEAT_EVERY,
    settle_only: bool = False,
) -> SendOutcome:
    """Send what can be sent of a frozen edition now, with `setup.policy.workers` connections.

    `window_end` is the last moment for retries (None: a forced send, retried until the attempts
    run out); `breaker=False` when an editor resumed an edition the bounce breaker halted.
    `heartbeat_every` (seconds) paces the run's heartbeat and its look for stopped senders' claims.
    `settle_only`: send nothing (a pass after the window closed), only give deferred copies up,
    settle a stopped sender's claims as ambiguous, and finish the edition, `partial` if copies remain.
    """
    with Session(engine) as session:
        html, text = edition_store.frozen_content(session, edition.id)
        variants = edition_store.frozen_variants(session, edition.id)
    factories = {
        key: MailFactory(setup, edition.edition_date, subject, v_html, v_text, clock, kind=edition.kind)
        for key, (subject, v_html, v_text) in {"": (edition.subject, html, text), **variants}.items()
    }
    factory = factories[""]

    def build(claim: Claim) -> tuple[bytes, str]:
        # A reader's section set (copied to the ledger at snapshot) picks the rendering frozen for it.
        return factories.get(claim.variant, factory).for_claim(claim)

    policy = replace(setup.policy, window_end=window_end)
    halt = threading.Event() if settle_only else stop
    if halt is not None and settle_only:
        halt.set()  # its connections claim nothing; the run recovers claims and gives deferred up
    run = DeliveryRun(
        engine,
        edition.id,
        envelope_from=envelope_sender(setup, edition.id),
        build=build if len(factories) > 1 else factory.for_claim,
        transport=transport,
        policy=policy if breaker else replace(policy, breaker_rate=0.0),
        stop=halt,
        on_progress=on_progress,
        clock=clock,
        role=role,
    )
    run.heartbeat.every = heartbeat_every
    report = run.run()
    if settle_only:  # not stopped: it had nothing to send
        report = replace(report, stopped=bool(stop is not None and stop.is_set()))
    return finish(
        engine,
        edition,
        report,
        owner=run.owner,
        now=clock.now(),
        prepared=prepared,
        by_hand=role == "send" or settle_only,
        late=settle_only,
    )


def _at(moment: datetime, now: datetime) -> str:
    return f"{moment:%H:%M} UTC" if moment.date() == now.date() else f"{moment:%Y-%m-%d %H:%M} UTC"


def finish(
    engine: sa.Engine,
    edition: EditionData,
    report: DeliveryReport,
    *,
    owner: str,
    now: datetime,
    prepared: Prepared | None,
    by_hand: bool = True,
    late: bool = False,
) -> SendOutcome:
    """Settle the edition's state from the whole ledger and the sender table, not from this run alone.

    Under the edition's row lock, so that of several senders finishing together exactly one marks
    the edition sent; one that ran out of work while others still send leaves it sending, and so
    does one that leaves only deferred copies, which a later pass sends when they fall due.
    Every run writes its final heartbeat before this, so the last to finish sees the others done.
    A worker or the scheduler that is stopped (a restart, a deploy) leaves the edition `sending` for
    the next worker or the scheduler's watch to go on with; a person's `briefing send` that is
    stopped leaves it `partial`, for that person to run again; so does a pass that found the
    window closed (`late`) with copies never sent, which only a deliberate late send may send.
    """
    day = edition_label(edition.edition_date, edition.kind)
    with session_scope(engine) as session:
        current = edition_store.lock_edition(
            session, edition.edition_date, newsletter_id=edition.newsletter_id, kind=edition.kind
        )
        counts = ledger.counts(session, edition.id)
        others = claim_owners.others_at_work(session, edition.id, owner, now=now)
        next_try = ledger_recovery.next_attempt(session, edition.id)
        report = replace(
            report, counts=counts, other_senders=others.senders, others_in_flight=others.in_flight
        )
        edition_store.set_counts(session, edition.id, sent=counts.sent, failed=counts.failed, now=now)
        mine = f"{report.run.sent} by this sender, {report.by_others} by others"
        waiting_for = ""
        if report.complete:
            if current.status == EditionStatus.SENT:
                updated = current  # another sender settled the last row and marked it
            else:
                updated = edition_store.set_status(
                    session, edition.id, EditionStatus.SENT, finished=True, error="", now=now
                )
                story_store.mark_used(session, list(edition.story_ids), edition.edition_date, now=now)
                subscriber_store.reset_soft_bounces(session, edition.id)
            message = (
                f"the edition of {day} is sent: {counts.sent} delivered ({mine}), {counts.failed} failed"
            )
        elif report.paused_reason:
            status = EditionStatus.HALTED if report.halted else EditionStatus.PAUSED
            updated = edition_store.set_status(
                session, edition.id, status, error=report.paused_reason, now=now
            )
            message = f"sending {status}: {report.paused_reason}"
        elif others.in_flight or (others.senders and counts.pending):
            # Not partly sent: the rest is in other senders' hands, and whoever settles the last
            # row marks the edition sent. Nothing to run again.
            updated, waiting_for = current, OTHERS
            waiting = counts.pending + counts.deferred
            more = f"; {waiting} more waiting for them" if waiting else ""
            why = "stopped" if report.stopped else "nothing left for this sender"
            who = "another sender" if others.senders <= 1 else f"{others.senders} other senders"
            message = (
                f"the edition of {day} is still sending ({why}): {counts.sent} delivered ({mine}), "
                f"{others.in_flight} still being sent by {who}{more}"
            )
        elif counts.pending == 0 and counts.claimed == 0 and next_try is not None:
            updated, waiting_for = current, DEFERRED
            n = counts.deferred
            deferred = "1 copy was deferred by its server"
            if n != 1:
                deferred = f"{n} copies were deferred by their servers"
            message = (
                f"the edition of {day} is still sending: {counts.sent} delivered ({mine}). {deferred}; "
                f"the next try is at {_at(next_try, now)} (the scheduler or a worker sends "
                f"{'them' if n != 1 else 'it'}, or run the send again then)"
            )
        elif report.stopped and not by_hand:
            updated = current
            message = (
                f"the edition of {day} is still sending (stopped): {counts.sent} delivered ({mine}); "
                f"{counts.pending + counts.deferred} copies remain for the next worker or the scheduler"
            )
        elif late:
            updated = edition_store.set_status(session, edition.id, EditionStatus.PARTIAL, now=now)
            waiting = counts.pending + counts.claimed
            message = (
                f"the edition of {day} is partly sent (its window closed); {waiting} copies were never "
                f"sent. Send them late on purpose with: briefing send --date {day} --force"
            )
        else:
            updated = edition_store.set_status(session, edition.id, EditionStatus.PARTIAL, now=now)
            waiting = counts.pending + counts.deferred + counts.claimed
            why = "stopped" if report.stopped else "some copies are still waiting"
            message = (
                f"the edition of {day} is partly sent ({why}); {waiting} copies remain. Run the send again"
            )
    return SendOutcome(
        updated,
        message,
        report=report,
        preflight=prepared.report if prepared is not None else None,
        others_sending=others.in_flight,
        waiting_for=waiting_for,
        next_try=next_try if waiting_for == DEFERRED else None,
    )
