"""Bounces and complaints: whose copy a returned message is about, and what follows for that reader.

The rules, in one place for every door (`bounces receive`, `bounces poll`, the providers' webhooks):
- a hard bounce marks the reader `bounced` at once;
- soft bounces mark them `bounced` once `soft_limit` copies soft-bounced within `soft_window`,
  with no delivered copy in between (see store.bounces.soft_bounce_count);
- a complaint marks them `complained`: never mailed again, whatever they were;
- the same report read twice counts once (its SHA-256 is unique per reader);
- delay warnings, delivery notices, auto-replies and anything unreadable change nothing.

Whose copy it was: the signed VERP return path first (nobody can forge it); then the original
Message-ID the report quotes, looked up in the ledger; then the failed recipient's address, for a
reader we have sent to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from briefing.db import session_scope
from briefing.domain import Clock, SubscriberStatus
from briefing.mail.mailboxes import Mailbox
from briefing.mail.provider_events import UNSUBSCRIBE, ProviderEvent
from briefing.mail.reports import Failure, Report, ReportKind, read_report
from briefing.mail.returnpath import ReturnPath
from briefing.newsletter import PRIMARY_ID
from briefing.service import subscribers as subscriber_service
from briefing.store import bounces as bounce_store
from briefing.store import editions as edition_store
from briefing.store import subscribers as subscriber_store
from briefing.store.bounces import BounceEventData

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BounceRules:
    soft_limit: int = 3
    soft_window: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Effect:
    """What one returned message did to one reader."""

    subscriber_id: int
    email: str
    kind: str
    recorded: bool  # False: this report was already counted for them
    status_before: str
    status_after: str
    edition_id: int | None = None


@dataclass(frozen=True, slots=True)
class Handled:
    """The result of one returned message, and the one line that says so."""

    report: Report
    effects: tuple[Effect, ...] = ()
    reason: str = ""

    @property
    def line(self) -> str:
        kind = self.report.kind.value
        if not self.effects:
            return f"{kind}: nothing changed ({self.reason or self.report.note or 'no reader identified'})"
        parts = []
        for e in self.effects:
            if not e.recorded:
                parts.append(f"{e.email}: already counted")
            elif e.status_after != e.status_before:
                parts.append(f"{e.email}: {e.status_before} -> {e.status_after}")
            else:
                parts.append(f"{e.email}: recorded, still {e.status_after}")
        return f"{kind}: " + "; ".join(parts)


@dataclass(slots=True)
class PollReport:
    read: int = 0
    recorded: int = 0
    ignored: int = 0
    failed: int = 0  # left in the mailbox for the next poll
    lines: list[str] = field(default_factory=list)


def _identify(
    session: Session, report: Report, return_path: ReturnPath | None
) -> list[tuple[int, int | None, Failure]]:
    """(subscriber id, edition id, failure) for each reader the report is about."""
    worst = report.worst
    if worst is None:
        return []
    if return_path is not None:
        ref = return_path.find(report.return_paths)
        if ref is not None and _subscriber_exists(session, ref.subscriber_id):
            edition = ref.edition_id if bounce_store.edition_exists(session, ref.edition_id) else None
            return [(ref.subscriber_id, edition, worst)]
    for message_id in report.message_ids:
        copy = bounce_store.copy_by_message_id(session, message_id)
        if copy is not None:
            return [(copy[1], copy[0], worst)]
    found: dict[int, tuple[int, int | None, Failure]] = {}
    for failure in report.failures:
        if failure.recipient:
            subscriber_id = bounce_store.mailed_subscriber(session, failure.recipient)
            if subscriber_id is not None and subscriber_id not in found:
                found[subscriber_id] = (subscriber_id, None, failure)
    return list(found.values())


def _subscriber_exists(session: Session, subscriber_id: int) -> bool:
    return subscriber_store.link_state(session, subscriber_id) is not None


def _apply(
    session: Session,
    subscriber_id: int,
    edition_id: int | None,
    failure: Failure,
    report: Report,
    *,
    rules: BounceRules,
    source: str,
    now: datetime,
) -> Effect:
    before = subscriber_store.get_subscriber(session, subscriber_id)
    recorded = bounce_store.add_event(
        session,
        subscriber_id=subscriber_id,
        edition_id=edition_id,
        kind=failure.kind.value,
        code=failure.status,
        diagnostic=failure.diagnostic,
        source=source,
        message_sha256=report.sha256,
        now=now,
    )
    after = before.status
    if recorded:
        target: SubscriberStatus | None = None
        if failure.kind is ReportKind.COMPLAINT:
            if before.status != SubscriberStatus.COMPLAINED:
                target = SubscriberStatus.COMPLAINED
        elif before.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
            if failure.kind is ReportKind.HARD:
                target = SubscriberStatus.BOUNCED
            elif (
                bounce_store.soft_bounce_count(session, subscriber_id, since=now - rules.soft_window)
                >= rules.soft_limit
            ):
                target = SubscriberStatus.BOUNCED
        if target is not None:
            after = subscriber_store.set_status(session, subscriber_id, target, now=now).status
    return Effect(subscriber_id, before.email, failure.kind.value, recorded, before.status, after, edition_id)


def handle_report(
    session: Session,
    report: Report,
    *,
    return_path: ReturnPath | None,
    rules: BounceRules,
    source: str,
    now: datetime,
) -> Handled:
    """Apply the rules for one classified report inside the caller's transaction."""
    if not report.kind.counts:
        return Handled(report)
    copies = _identify(session, report, return_path)
    if not copies:
        return Handled(report, reason="no reader of ours is named in it")
    effects = tuple(
        _apply(session, sid, eid, failure, report, rules=rules, source=source, now=now)
        for sid, eid, failure in copies
    )
    return Handled(report, effects)


def receive(
    engine: sa.Engine,
    raw: bytes,
    *,
    return_path: ReturnPath | None,
    rules: BounceRules,
    source: str = "receive",
    envelope_recipient: str = "",
    now: datetime,
) -> Handled:
    """One returned message: classify, identify, record and apply the rules in one transaction."""
    report = read_report(raw, envelope_recipient=envelope_recipient)
    with session_scope(engine) as session:
        return handle_report(session, report, return_path=return_path, rules=rules, source=source, now=now)


def record_events(
    engine: sa.Engine,
    events: list[ProviderEvent],
    *,
    return_path: ReturnPath | None,
    rules: BounceRules,
    now: datetime,
) -> list[Handled]:
    """A provider's webhook batch, in one transaction: bounces and complaints by the same rules as a
    DSN (a replayed event counts once), and a reader's unsubscribe through the one unsubscribe rule."""
    out = []
    with session_scope(engine) as session:
        for event in events:
            report = event.report()
            if event.kind == UNSUBSCRIBE:
                out.append(_unsubscribe(session, report, return_path, now=now))
            else:
                out.append(
                    handle_report(
                        session, report, return_path=return_path, rules=rules, source=event.provider, now=now
                    )
                )
    return out


def _unsubscribe(
    session: Session, report: Report, return_path: ReturnPath | None, *, now: datetime
) -> Handled:
    copies = _identify(session, report, return_path)
    effects = []
    for subscriber_id, edition_id, _failure in copies:
        before = subscriber_store.get_subscriber(session, subscriber_id)
        after, changed = subscriber_service.unsubscribe(session, subscriber_id, now=now)
        effects.append(
            Effect(subscriber_id, before.email, UNSUBSCRIBE, changed, before.status, after.status, edition_id)
        )
    return Handled(report, tuple(effects), reason="" if copies else "no reader of ours is named in it")


def poll(
    engine: sa.Engine,
    mailbox: Mailbox,
    *,
    return_path: ReturnPath | None,
    rules: BounceRules,
    clock: Clock,
    limit: int = 1000,
) -> PollReport:
    """Read every message in the bounce mailbox once; each is removed only after its result is committed.

    A message whose result could not be committed (the database is away) stays for the next poll;
    reading one twice is harmless, since a report counts once per reader.
    """
    out = PollReport()
    try:
        for key, raw in mailbox.messages(limit=limit):
            out.read += 1
            try:
                handled = receive(
                    engine, raw, return_path=return_path, rules=rules, source="poll", now=clock.now()
                )
            except sa.exc.SQLAlchemyError as exc:
                out.failed += 1
                out.lines.append(f"{key}: kept for the next poll (database: {type(exc).__name__})")
                log.warning("bounce poll: could not record message %s", key, exc_info=True)
                continue
            mailbox.remove(key)
            if handled.effects:
                out.recorded += sum(1 for e in handled.effects if e.recorded)
            else:
                out.ignored += 1
            out.lines.append(handled.line)
    finally:
        mailbox.close()
    return out


def recent(
    engine: sa.Engine,
    *,
    since: datetime | None,
    edition: date | None = None,
    newsletter_id: int = PRIMARY_ID,
    limit: int = 1000,
) -> list[BounceEventData]:
    """Recent events, or (with `edition`) those about one edition; NotFound if it does not exist."""
    with session_scope(engine) as session:
        edition_id = None
        if edition is not None:
            edition_id = edition_store.get_edition(session, edition, newsletter_id=newsletter_id).id
        return bounce_store.recent_events(session, since=since, edition_id=edition_id, limit=limit)
