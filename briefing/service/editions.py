"""Use cases for an edition: prepare, preview, test send, the real send, holds and expiry.

Preview, test send and the real send all build messages through `service.setup.MailFactory`, from
the same rendered (or frozen) content, so what editors approved is what readers get.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from briefing import calendar as cal
from briefing import inputs
from briefing.db import session_scope
from briefing.domain import (
    ArticleData,
    Briefing,
    Clock,
    EditionData,
    EditionStatus,
    LedgerCounts,
    Recipient,
    RenderedEdition,
    StoryStatus,
    SubscriberStatus,
)
from briefing.edition.compose import compose_briefing
from briefing.edition.preflight import PreflightReport, preflight
from briefing.edition.topup import top_up
from briefing.errors import Conflict, NotFound, PreflightFailed
from briefing.mail.transport import Outcome, SendResult, Transport
from briefing.reader_copy import personalise
from briefing.service.delivery import DeliveryReport, DeliveryRun, RunTally
from briefing.service.send_window import send_refusal
from briefing.service.setup import EditionSetup, MailFactory, sample_recipient
from briefing.store import articles as article_store
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import stories as story_store
from briefing.store import subscribers as subscriber_store

MORE_FROM_CANDIDATES = 50
ALL_STORY_STATUSES = tuple(s.value for s in StoryStatus)


@dataclass(frozen=True, slots=True)
class Prepared:
    briefing: Briefing
    rendered: RenderedEdition
    report: PreflightReport
    frozen: bool = False  # content came from the frozen edition, not a fresh render


@dataclass(frozen=True, slots=True)
class SendOutcome:
    edition: EditionData
    message: str
    report: DeliveryReport | None = None
    preflight: PreflightReport | None = None


# --------------------------------------------------------------------------- preparing


def prepare(
    session: Session, setup: EditionSetup, edition_date: date, now: datetime | None = None
) -> Prepared:
    """Compose, render and check the edition as it would go out at its send time.

    A frozen edition is shown as frozen: that content, not today's queue, is what will be sent.
    """
    edition = edition_store.find_edition(session, edition_date)
    send_at = now or cal.send_time_for(edition_date, setup.plan)
    briefing = _compose(session, setup, edition_date, send_at, note=edition.note if edition else "")
    if edition is not None and edition.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
        html, text = edition_store.frozen_content(session, edition.id)
        rendered = RenderedEdition(
            edition_date=edition_date,
            subject=edition.subject,
            preheader=edition.preheader,
            html=html,
            text=text,
        )
        if edition.story_ids:
            briefing = replace(briefing, subject=edition.subject, preheader=edition.preheader)
        return Prepared(briefing, rendered, _check(briefing, rendered, setup), frozen=True)
    rendered = setup.renderer.render_edition(briefing)
    return Prepared(briefing, rendered, _check(briefing, rendered, setup))


def _compose(
    session: Session, setup: EditionSetup, edition_date: date, send_at: datetime, *, note: str
) -> Briefing:
    # Every status, so an article an editor dropped is not brought back by the top-up.
    stories = story_store.list_stories(session, edition_date=edition_date, statuses=ALL_STORY_STATUSES)
    articles: list[ArticleData] = article_store.recent_articles(session, limit=MORE_FROM_CANDIDATES)
    recent_urls = edition_store.recent_featured_urls(
        session, before=edition_date, editions=setup.compose.more_from_exclude_editions
    )
    if setup.min_stories:
        stories += top_up(
            stories,
            articles,
            minimum=setup.min_stories,
            now=send_at,
            recent_urls=recent_urls,
            edition_date=edition_date,
        )
    options = replace(setup.compose, editor_note=note) if note else setup.compose
    return compose_briefing(stories, articles, edition_date, send_at, options, recent_urls=recent_urls)


def _check(briefing: Briefing, rendered: RenderedEdition, setup: EditionSetup) -> PreflightReport:
    sample = sample_recipient(setup)
    html, _ = personalise(rendered, sample)
    return preflight(briefing, rendered, personalised_html=html)


def featured_urls(briefing: Briefing) -> list[str]:
    return [s.url for s in briefing.stories] + [a.url for a in briefing.more_from]


# --------------------------------------------------------------------------- preview and test


@dataclass(frozen=True, slots=True)
class Preview:
    prepared: Prepared
    html: str
    text: str
    eml: bytes
    recipient: Recipient


def preview(
    engine: sa.Engine, setup: EditionSetup, edition_date: date, *, clock: Clock, as_email: str = ""
) -> Preview:
    """The exact message one reader (or a sample reader) would get, without touching the ledger."""
    with Session(engine) as session:
        prepared = prepare(session, setup, edition_date)
        factory = MailFactory(
            setup,
            edition_date,
            prepared.rendered.subject,
            prepared.rendered.html,
            prepared.rendered.text,
            clock,
        )
        if as_email:
            sub = subscriber_store.find_by_email(session, as_email)
            if sub is None:
                raise NotFound(f"{as_email} is not on the list", field="--as")
            recipient = factory.recipient(sub.id, sub.email, sub.name)
        else:
            recipient = sample_recipient(setup)
    html, text = personalise(prepared.rendered, recipient)
    eml, _ = factory.message(recipient)
    return Preview(prepared=prepared, html=html, text=text, eml=eml, recipient=recipient)


def write_preview(result: Preview, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "html": out_dir / "briefing.html",
        "text": out_dir / "briefing.txt",
        "eml": out_dir / "briefing.eml",
    }
    paths["html"].write_text(result.html, encoding="utf-8")
    paths["text"].write_text(result.text, encoding="utf-8")
    paths["eml"].write_bytes(result.eml)
    return paths


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
        prepared = prepare(session, setup, edition_date)
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


# --------------------------------------------------------------------------- the real send


@dataclass(frozen=True, slots=True)
class DryRun:
    prepared: Prepared | None
    edition: EditionData | None
    recipients: int
    message: str


def dry_run(engine: sa.Engine, setup: EditionSetup, edition_date: date) -> DryRun:
    with Session(engine) as session:
        edition = edition_store.find_edition(session, edition_date)
        prepared = prepare(session, setup, edition_date)
        if edition is not None and edition.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
            c = ledger.counts(session, edition.id)
            waiting = c.pending + c.deferred + c.claimed
            return DryRun(
                prepared, edition, waiting, f"the edition is {edition.status}; {waiting} copies still to send"
            )
        active = subscriber_store.count_by_status(session)[SubscriberStatus.ACTIVE.value]
    return DryRun(prepared, edition, active, f"{active} active subscribers would get it")


def send_edition(
    engine: sa.Engine,
    setup: EditionSetup,
    edition_date: date,
    transport: Transport,
    *,
    clock: Clock,
    force: bool = False,
    retry_failed: bool = False,
    stop: threading.Event | None = None,
    on_progress: Callable[[RunTally], None] | None = None,
) -> SendOutcome:
    """Send (or resume) the edition of a date: freeze, snapshot, deliver, report.

    Safe to run any number of times, from any number of processes: the edition date is unique,
    the ledger has one row per reader, and `sent` rows are never sent again.
    """
    now = clock.now()
    send_at = cal.send_time_for(edition_date, setup.plan)
    window_end = send_at + setup.plan.max_lateness
    with session_scope(engine) as session:
        edition = edition_store.ensure_edition(session, edition_date, now=now, scheduled_for=send_at)
        done = send_refusal(
            session, edition, now, send_at, window_end, force=force, retry_failed=retry_failed
        )
        if done is not None:
            return SendOutcome(edition, done)
        if retry_failed:
            if ledger.retry_failed(session, edition.id, now=now) == 0:
                return SendOutcome(edition, "nothing to retry: no failed or deferred copies")
            edition = edition_store.set_status(session, edition.id, EditionStatus.SENDING, now=now)
    prepared: Prepared | None = None
    with session_scope(engine) as session:
        edition = edition_store.get_edition(session, edition_date)
        if edition.status == EditionStatus.EXPIRED and force:
            # Sent late on purpose: pick up where it stopped, or start it if it never began.
            reopened = EditionStatus.PARTIAL if edition.frozen_at else EditionStatus.SCHEDULED
            edition = edition_store.set_status(session, edition.id, reopened, now=now)
        if edition.status == EditionStatus.SCHEDULED:
            prepared = prepare(session, setup, edition_date, now=max(now, send_at) if not force else now)
            if not prepared.report.ok:
                raise PreflightFailed(
                    f"the edition of {edition_date} has preflight errors and was not sent",
                    [str(p) for p in prepared.report.errors],
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
        elif edition.status in (EditionStatus.PAUSED, EditionStatus.PARTIAL):
            edition = edition_store.set_status(session, edition.id, EditionStatus.SENDING, now=now)
        html, text = edition_store.frozen_content(session, edition.id)

    factory = MailFactory(setup, edition_date, edition.subject, html, text, clock)
    policy = replace(setup.policy, window_end=None if force else window_end)
    run = DeliveryRun(
        engine,
        edition.id,
        envelope_from=setup.mailing.from_address,
        build=factory.for_claim,
        transport=transport,
        policy=policy,
        stop=stop,
        on_progress=on_progress,
        clock=clock,
    )
    report = run.run()
    return _finish(engine, edition, report, now=clock.now())


def _finish(engine: sa.Engine, edition: EditionData, report: DeliveryReport, *, now: datetime) -> SendOutcome:
    day = edition.edition_date.isoformat()
    with session_scope(engine) as session:
        counts = report.counts
        edition_store.set_counts(session, edition.id, sent=counts.sent, failed=counts.failed, now=now)
        if report.complete:
            updated = edition_store.set_status(
                session, edition.id, EditionStatus.SENT, finished=True, error="", now=now
            )
            story_store.mark_used(session, list(edition.story_ids), edition.edition_date, now=now)
            subscriber_store.reset_soft_bounces(session, edition.id)
            message = f"the edition of {day} is sent: {counts.sent} delivered, {counts.failed} failed"
        elif report.paused_reason:
            updated = edition_store.set_status(
                session, edition.id, EditionStatus.PAUSED, error=report.paused_reason, now=now
            )
            message = f"sending paused: {report.paused_reason}"
        else:
            updated = edition_store.set_status(session, edition.id, EditionStatus.PARTIAL, now=now)
            waiting = counts.pending + counts.deferred + counts.claimed
            why = "stopped" if report.stopped else "some copies are still waiting"
            message = (
                f"the edition of {day} is partly sent ({why}); {waiting} copies remain. Run the send again"
            )
    return SendOutcome(updated, message, report=report)


# --------------------------------------------------------------------------- editions' state


def edition_counts(session: Session, edition_date: date) -> tuple[EditionData, LedgerCounts, int]:
    edition = edition_store.get_edition(session, edition_date)
    return edition, ledger.counts(session, edition.id), ledger.ambiguous_count(session, edition.id)


def set_note(session: Session, edition_date: date, note: str, *, now: datetime) -> EditionData:
    """The editor's note for one day (Markdown); empty removes it. Only before the edition is frozen."""
    edition = edition_store.ensure_edition(session, edition_date, now=now)
    text = inputs.multi_line(note, field="note", max_len=2000)
    return edition_store.set_note(session, edition.id, text, now=now)


def hold(session: Session, edition_date: date, held: bool, *, now: datetime) -> EditionData:
    edition = edition_store.ensure_edition(session, edition_date, now=now)
    return edition_store.set_hold(session, edition.id, held, now=now)


def expire_if_unsent(
    session: Session, edition_date: date, reason: str, *, now: datetime
) -> EditionData | None:
    edition = edition_store.ensure_edition(session, edition_date, now=now)
    if edition.status in (EditionStatus.SCHEDULED, EditionStatus.HELD):
        return edition_store.set_status(session, edition.id, EditionStatus.EXPIRED, error=reason, now=now)
    return None


def default_edition_date(plan: cal.SendPlan, now: datetime) -> date:
    """Today's edition while its window is open, otherwise the next one."""
    previous = cal.previous_send_time(now, plan, plan.max_lateness)
    if previous is not None:
        return previous.edition_date
    return cal.next_send_times(now, plan, 1)[0].edition_date
