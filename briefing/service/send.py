"""Use cases that mail an edition: one test copy, the dry run, and the real send.

Each takes its content from `edition_content.prepare` (or the frozen copy), judged at the same
moment as the preview, so a forced early send carries exactly the stories its preview showed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session

from briefing import calendar as cal
from briefing.db import session_scope
from briefing.domain import Clock, DeliveryStatus, EditionData, EditionStatus, SubscriberStatus
from briefing.edition.preflight import PreflightReport, public_base_url_problem
from briefing.errors import Conflict, PreflightFailed
from briefing.mail.transport import Outcome, SendResult, Transport
from briefing.service.claim_owners import owner_is_dead
from briefing.service.delivery import DeliveryRun
from briefing.service.edition_content import Prepared, featured_urls, prepare
from briefing.service.send_report import DeliveryReport, RunTally
from briefing.service.send_window import send_refusal, skipped_date
from briefing.service.setup import (
    EditionSetup,
    MailFactory,
    envelope_sender,
    sample_recipient,
    transport_reaches_readers,
)
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import stories as story_store
from briefing.store import subscribers as subscriber_store

__all__ = ["DRY_RUN_LISTED", "DryRun", "SendOutcome", "dry_run", "send_edition", "send_test"]

DRY_RUN_LISTED = 20  # readers a dry run names unless asked for all of them
_WAITING = (DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value, DeliveryStatus.CLAIMED.value)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    edition: EditionData
    message: str
    report: DeliveryReport | None = None
    preflight: PreflightReport | None = None  # the checks of the content it froze, when it froze it
    others_sending: int = 0  # copies other live senders still held claimed when this one finished


def send_test(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    to_address: str,
    transport: Transport,
    *,
    clock: Clock,
) -> SendResult:
    """One copy to one address, marked as a test; the ledger is not touched."""
    with Session(engine) as session:
        prepared = prepare(session, setup, edition_date, now=clock.now())
        sub = subscriber_store.find_by_email(session, to_address)
    subject = f"[Test] {prepared.rendered.subject}"
    factory = MailFactory(setup, edition_date, subject, prepared.rendered.html, prepared.rendered.text, clock)
    if sub is not None:
        recipient = factory.recipient(sub.id, sub.email, sub.name)
    else:
        recipient = replace(sample_recipient(setup), email=to_address, name="")
    data, _ = factory.message(recipient)
    result = transport.send(setup.mailing.from_address, to_address, data)
    if result.outcome is not Outcome.ACCEPTED:
        raise Conflict(
            f"the test copy was not accepted: {result.code or ''} {result.reply}".strip(), field="--to"
        )
    return result


# --------------------------------------------------------------------------- the dry run


@dataclass(frozen=True, slots=True)
class DryRun:
    prepared: Prepared | None
    edition: EditionData | None
    recipients: int
    message: str
    emails: tuple[str, ...] = ()  # who would get it, in ledger order; the first `listed` of them


def dry_run(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    *,
    now: datetime | None = None,
    listed: int | None = DRY_RUN_LISTED,
) -> DryRun:
    """What a send would do now, and to whom (`listed=None`: everyone); nothing is written."""
    with Session(engine) as session:
        edition = edition_store.find_edition(session, edition_date)
        prepared = prepare(session, setup, edition_date, now=now)
        if edition is not None and edition.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
            c = ledger.counts(session, edition.id)
            waiting = c.pending + c.deferred + c.claimed
            limit = waiting if listed is None else min(listed, waiting)
            rows = ledger.rows(session, edition.id, statuses=_WAITING, limit=limit) if limit > 0 else []
            return DryRun(
                prepared,
                edition,
                waiting,
                f"the edition is {edition.status}; {waiting} copies still to send",
                tuple(r.email for r in rows),
            )
        active = subscriber_store.count_by_status(session)[SubscriberStatus.ACTIVE.value]
        limit = active if listed is None else min(listed, active)
        readers = subscriber_store.iter_subscribers(
            session, status=SubscriberStatus.ACTIVE.value, limit=limit
        )
        emails = tuple(s.email for s in readers) if limit > 0 else ()
    return DryRun(prepared, edition, active, f"{active} active subscribers would get it", emails)


# --------------------------------------------------------------------------- the real send


def send_edition(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    transport: Transport,
    *,
    clock: Clock,
    force: bool = False,
    retry_failed: bool = False,
    resume: bool = False,
    stop: threading.Event | None = None,
    on_progress: Callable[[RunTally], None] | None = None,
) -> SendOutcome:
    """Send (or resume) the edition of a date: freeze, snapshot, deliver, report.

    Safe to run any number of times, from any number of processes: the edition date is unique,
    the ledger has one row per reader, and `sent` rows are never sent again.
    """
    if transport_reaches_readers(transport) and not setup.reaches_readers:
        setup = replace(setup, reaches_readers=True)  # judged by where the mail really goes
    now = clock.now()
    send_at = cal.send_time_for(edition_date, setup.plan)
    window_end = send_at + setup.plan.max_lateness
    with session_scope(engine) as session:
        edition = edition_store.ensure_edition(session, edition_date, now=now, scheduled_for=send_at)
        resumed = resume and edition.status == EditionStatus.HALTED  # an editor said go on: no breaker
        done = send_refusal(
            session,
            edition,
            now,
            send_at,
            window_end,
            force=force,
            retry_failed=retry_failed,
            resume=resume,
            skipped=skipped_date(edition_date, setup.plan),
        )
        if done is not None:
            return SendOutcome(edition, done)
        _refuse_unreachable_links(setup, edition_date)
        if retry_failed:
            if ledger.retry_failed(session, edition.id, now=now) == 0:
                return SendOutcome(edition, "nothing to retry: no failed or deferred copies")
            edition = edition_store.set_status(session, edition.id, EditionStatus.SENDING, now=now)
    prepared: Prepared | None = None
    with session_scope(engine) as session:
        edition = edition_store.lock_edition(session, edition_date)  # one freezes; the rest join
        if edition.status == EditionStatus.EXPIRED and force:
            # Sent late on purpose: pick up where it stopped, or start it if it never began.
            reopened = EditionStatus.PARTIAL if edition.frozen_at else EditionStatus.SCHEDULED
            edition = edition_store.set_status(session, edition.id, reopened, now=now)
        if edition.status == EditionStatus.SCHEDULED:
            prepared = prepare(session, setup, edition_date, now=now)
            if not prepared.report.ok:
                raise PreflightFailed(
                    f"the edition of {edition_date} has preflight errors and was not sent",
                    prepared.report.problems,
                )
            # Freeze and snapshot in one transaction: a crash leaves either nothing or both.
            edition_store.freeze(
                session,
                edition.id,
                subject=prepared.rendered.subject,
                preheader=prepared.rendered.preheader,
                html=prepared.rendered.html,
                text=prepared.rendered.text,
                story_ids=[s.id for s in prepared.briefing.stories if s.id > 0],
                featured_urls=featured_urls(prepared.briefing),
                now=now,
            )
            size = ledger.snapshot(session, edition.id, now=now)
            edition_store.set_snapshot_size(session, edition.id, size, now=now)
            edition = edition_store.set_status(
                session, edition.id, EditionStatus.SENDING, started=True, now=now
            )
        elif edition.status in (EditionStatus.FROZEN,):
            size = ledger.snapshot(session, edition.id, now=now)
            edition_store.set_snapshot_size(session, edition.id, size, now=now)
            edition = edition_store.set_status(
                session, edition.id, EditionStatus.SENDING, started=True, now=now
            )
        elif edition.status in (EditionStatus.PAUSED, EditionStatus.PARTIAL, EditionStatus.HALTED):
            edition = edition_store.set_status(session, edition.id, EditionStatus.SENDING, now=now)
        html, text = edition_store.frozen_content(session, edition.id)

    factory = MailFactory(setup, edition_date, edition.subject, html, text, clock)
    policy = replace(setup.policy, window_end=None if force else window_end)
    policy = replace(policy, breaker_rate=0.0) if resumed else policy
    run = DeliveryRun(
        engine,
        edition.id,
        envelope_from=envelope_sender(setup, edition.id),
        build=factory.for_claim,
        transport=transport,
        policy=policy,
        stop=stop,
        on_progress=on_progress,
        clock=clock,
    )
    report = run.run()
    return _finish(engine, edition, report, owner=run.owner, now=clock.now(), prepared=prepared)


def _refuse_unreachable_links(setup: EditionSetup, edition_date: date) -> None:
    # Every copy, also of a resumed edition, gets links built on the setting as it is now.
    if not setup.reaches_readers:
        return
    problem = public_base_url_problem(setup.mailing.public_base_url)
    if problem is not None:
        raise PreflightFailed(
            f"the edition of {edition_date} was not sent: its reader links would not work", [str(problem)]
        )


def _others_sending(session: Session, edition_id: int, owner: str, *, now: datetime) -> int:
    """Copies claimed by other senders that are still at work (a live lease, a process not gone)."""
    claims = ledger.live_claims(session, edition_id, now=now)
    return sum(n for o, n in claims.items() if not o.startswith(owner + ":") and not owner_is_dead(o))


def _finish(
    engine: sa.Engine,
    edition: EditionData,
    report: DeliveryReport,
    *,
    owner: str,
    now: datetime,
    prepared: Prepared | None,
) -> SendOutcome:
    """Settle the edition's state from the whole ledger, not from this run alone.

    Under the edition's row lock, so that of several senders finishing together exactly one marks
    the edition sent, and one that ran out of work while others still send leaves it sending.
    """
    day = edition.edition_date.isoformat()
    with session_scope(engine) as session:
        current = edition_store.lock_edition(session, edition.edition_date)
        counts = ledger.counts(session, edition.id)
        report = replace(report, counts=counts)
        others = _others_sending(session, edition.id, owner, now=now)
        edition_store.set_counts(session, edition.id, sent=counts.sent, failed=counts.failed, now=now)
        mine = f"{report.run.sent} by this sender"
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
        elif others:
            # Not partly sent: the rest is in other senders' hands, and whoever settles the last
            # row marks the edition sent. Nothing to run again.
            updated = current
            waiting = counts.pending + counts.deferred
            more = f"; {waiting} more waiting for them" if waiting else ""
            why = "stopped" if report.stopped else "nothing left for this sender"
            message = (
                f"the edition of {day} is still sending ({why}): {counts.sent} delivered ({mine}), "
                f"{others} still being sent by another sender{more}"
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
        others_sending=others,
    )
