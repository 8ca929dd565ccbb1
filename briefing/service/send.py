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
from briefing.domain import Clock, DeliveryStatus, EditionData, EditionStatus
from briefing.edition.sections import VariantRenders
from briefing.errors import Conflict, PreflightFailed
from briefing.mail.transport import Outcome, SendResult, Transport
from briefing.newsletter import REGULAR, is_special
from briefing.service.edition_content import Prepared, featured_urls, prepare
from briefing.service.edition_pass import SendOutcome, deliver, refuse_unreachable_links
from briefing.service.send_report import RunTally
from briefing.service.send_window import send_refusal, skipped_date
from briefing.service.setup import (
    EditionSetup,
    MailFactory,
    sample_recipient,
    transport_reaches_readers,
)
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store

__all__ = [
    "DRY_RUN_LISTED",
    "DryRun",
    "SendOutcome",
    "dry_run",
    "send_edition",
    "send_test",
    "start_sending",
]

DRY_RUN_LISTED = 20  # readers a dry run names unless asked for all of them
_WAITING = (DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value, DeliveryStatus.CLAIMED.value)


def send_test(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    to_address: str,
    transport: Transport,
    *,
    clock: Clock,
    kind: str = REGULAR,
) -> SendResult:
    """One copy to one address, marked as a test; the ledger is not touched."""
    with Session(engine) as session:
        prepared = prepare(session, setup, edition_date, now=clock.now(), kind=kind)
        sub = subscriber_store.find_by_email(session, to_address)
    subject = f"[Test] {prepared.rendered.subject}"
    factory = MailFactory(
        setup, edition_date, subject, prepared.rendered.html, prepared.rendered.text, clock, kind=kind
    )
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
    kind: str = REGULAR,
) -> DryRun:
    """What a send would do now, and to whom (`listed=None`: everyone); nothing is written."""
    with Session(engine) as session:
        edition = edition_store.find_edition(
            session, edition_date, newsletter_id=setup.newsletter.id, kind=kind
        )
        prepared = prepare(session, setup, edition_date, now=now, kind=kind)
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
        readers = subscription_store.readers_of(
            session, setup.newsletter.id, specials_only=is_special(kind), limit=listed
        )
        active = readers.count
    return DryRun(prepared, edition, active, f"{active} active subscribers would get it", readers.emails)


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
    role: str = "send",
    kind: str = REGULAR,
) -> SendOutcome:
    """Send (or resume, or join) the edition of a date: freeze, snapshot, deliver, report.

    Safe to run any number of times, from any number of processes: the edition date is unique,
    the ledger has one row per reader, and `sent` rows are never sent again. It sends what can go
    now and returns; copies deferred by their servers stay for a later pass.
    """
    if transport_reaches_readers(transport) and not setup.reaches_readers:
        setup = replace(setup, reaches_readers=True)  # judged by where the mail really goes
    now = clock.now()
    nid = setup.newsletter.id
    with session_scope(engine) as session:
        if is_special(kind):  # made by `briefing special`, which set when it goes
            edition = edition_store.get_edition(session, edition_date, newsletter_id=nid, kind=kind)
            send_at = edition.scheduled_for or now
        else:
            send_at = cal.send_time_for(edition_date, setup.plan)
            edition = edition_store.ensure_edition(
                session, edition_date, newsletter_id=nid, now=now, scheduled_for=send_at
            )
        window_end = send_at + setup.plan.max_lateness
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
            skipped=None if is_special(kind) else skipped_date(edition_date, setup.plan),
        )
        if done is not None:
            return SendOutcome(edition, done)
        refuse_unreachable_links(setup, edition_date)
        if retry_failed:
            if ledger.retry_failed(session, edition.id, now=now) == 0:
                return SendOutcome(edition, "nothing to retry: no failed or deferred copies")
            edition = edition_store.set_status(session, edition.id, EditionStatus.SENDING, now=now)
    edition, prepared = start_sending(engine, setup, edition_date, now=now, force=force, kind=kind)
    return deliver(
        engine,
        setup,
        edition,
        transport,
        clock=clock,
        window_end=None if force else window_end,
        role=role,
        stop=stop,
        on_progress=on_progress,
        prepared=prepared,
        breaker=not resumed,
    )


def start_sending(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    *,
    now: datetime,
    force: bool = False,
    kind: str = REGULAR,
) -> tuple[EditionData, Prepared | None]:
    """Freeze and snapshot the edition unless someone has, and mark it `sending`; nothing is sent.

    Of several senders starting together one freezes and the rest join. Returns the edition and,
    when this call froze it, the content and checks it froze. The caller has asked `send_refusal`.
    """
    prepared: Prepared | None = None
    nid = setup.newsletter.id
    with session_scope(engine) as session:
        if not is_special(kind):
            send_at = cal.send_time_for(edition_date, setup.plan)
            edition_store.ensure_edition(
                session, edition_date, newsletter_id=nid, now=now, scheduled_for=send_at
            )
        # One freezes; the rest join.
        edition = edition_store.lock_edition(session, edition_date, newsletter_id=nid, kind=kind)
        if edition.status == EditionStatus.EXPIRED and force:
            # Sent late on purpose: pick up where it stopped, or start it if it never began.
            reopened = EditionStatus.PARTIAL if edition.frozen_at else EditionStatus.SCHEDULED
            edition = edition_store.set_status(session, edition.id, reopened, now=now)
        if edition.status == EditionStatus.SCHEDULED:
            prepared = prepare(session, setup, edition_date, now=now, kind=kind)
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
            freeze_variants(session, setup, edition, prepared)
            edition = edition_store.set_status(
                session, edition.id, EditionStatus.SENDING, started=True, now=now
            )
        elif edition.status in (EditionStatus.FROZEN,):
            size = ledger.snapshot(session, edition.id, now=now)
            edition_store.set_snapshot_size(session, edition.id, size, now=now)
            freeze_variants(
                session, setup, edition, prepare(session, setup, edition_date, now=now, kind=kind)
            )
            edition = edition_store.set_status(
                session, edition.id, EditionStatus.SENDING, started=True, now=now
            )
        elif edition.status in (EditionStatus.PAUSED, EditionStatus.PARTIAL, EditionStatus.HALTED):
            edition = edition_store.set_status(session, edition.id, EditionStatus.SENDING, now=now)
    return edition, prepared


def freeze_variants(session: Session, setup: EditionSetup, edition: EditionData, prepared: Prepared) -> int:
    """Render each section set the snapshot holds once, and freeze it with the edition.

    Readers who left sections out share one rendering per distinct set: a list of 100,000 with
    six optional sections yields at most 64, so "render once" becomes "render once per set".
    """
    keys = [key for key in ledger.variants_in_ledger(session, edition.id) if key]
    if not keys:
        return 0
    renders = VariantRenders(setup.renderer, prepared.briefing, known={"": prepared.rendered})
    frozen = {}
    for key in keys:
        copy = renders.get(key)
        frozen[key] = (prepared.rendered.subject, copy.html, copy.text)
    return edition_store.freeze_variants(session, edition.id, frozen)
