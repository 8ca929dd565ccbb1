"""The daily send and the news calendar: what the scheduler's jobs do, in the same terms as `briefing send`.

The scheduler only decides *when*; these functions decide *whether*, from the database: an edition
already sent is not sent again, a held one waits, one past its window expires and says so. The
calendar's writes (skipping a date, the scheduler's heartbeat) are use cases here too, so the CLI
and any later door share one rule for what a skip reason may be.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

import sqlalchemy as sa
from sqlmodel import Session

from briefing import calendar as cal
from briefing.db import session_scope
from briefing.domain import Clock, EditionData, EditionStatus, LedgerCounts
from briefing.errors import BriefingError, InvalidInput, PreflightFailed
from briefing.mail.transport import Outcome, Transport
from briefing.service import editions as edition_service
from briefing.service.setup import EditionSetup
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import schedule as schedule_store

RETRY_PAUSED_AFTER = timedelta(minutes=5)
MAX_SKIP_REASON = 200


# -------------------------------------------------------------------- the news calendar


def skip_date(session: Session, day: date, reason: str = "", *, now: datetime) -> bool:
    """Skip a date (holiday, recess); True when added, False when it was already skipped.

    The reason is shown in `briefing calendar` on one line, so it must be one short line.
    """
    if len(reason) > MAX_SKIP_REASON or "\n" in reason or "\r" in reason:
        raise InvalidInput(f"must be one line of at most {MAX_SKIP_REASON} characters", field="reason")
    return schedule_store.add_skip(session, day, reason, now=now)


def unskip_date(session: Session, day: date) -> bool:
    """Put a skipped date back in the calendar; False when it was not skipped."""
    return schedule_store.remove_skip(session, day)


def record_heartbeat(
    session: Session, *, owner: str, started_at: datetime, next_run_at: datetime | None, now: datetime
) -> None:
    """The running scheduler says it is alive, so `briefing status` can tell a dead one from a quiet one."""
    schedule_store.beat(session, owner=owner, started_at=started_at, next_run_at=next_run_at, now=now)


@dataclass(frozen=True, slots=True)
class DailyContext:
    """What the jobs need; `setup` and `transport` are factories so a job sees fresh settings and skips."""

    engine: sa.Engine
    setup: Callable[[], EditionSetup]
    transport: Callable[[], Transport]
    alert_email: str
    stop: threading.Event
    log: logging.Logger
    clock: Clock
    poll_feeds: Callable[[], object] | None = None  # refresh stored articles before the edition is built


class DailySender:
    """The scheduler's jobs. One lock serialises them, so a catch-up and a watch never overlap."""

    def __init__(self, ctx: DailyContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- jobs

    def send_job(self, edition_date: date, scheduled_utc: datetime) -> str:
        with self._lock:
            self.refresh_articles()
            return self._send(edition_date, reason=f"scheduled for {scheduled_utc:%Y-%m-%d %H:%M} UTC")

    def refresh_articles(self) -> None:
        """Poll the site's feeds; a feed problem is logged by the poller and never blocks a send."""
        if self.ctx.poll_feeds is None:
            return
        try:
            self.ctx.poll_feeds()
        except Exception:
            self.ctx.log.exception("polling the feeds failed")

    def watch_job(self) -> str:
        """Every minute: send an edition released from hold, or paused by SMTP trouble, within its window."""
        ctx = self.ctx
        setup = ctx.setup()
        now = ctx.clock.now()
        latest = cal.previous_send_time(now, setup.plan, setup.plan.max_lateness)
        if latest is None:
            return "nothing due"
        with Session(ctx.engine) as session:
            edition = edition_store.find_edition(session, latest.edition_date)
            status = edition.status if edition else EditionStatus.SCHEDULED.value
            updated = edition.updated_at if edition else None
        if edition is not None and edition.held:
            return "held"
        if status == EditionStatus.SCHEDULED and edition is not None:
            pass  # released from hold (or never started): send it
        elif status in (EditionStatus.PAUSED, EditionStatus.PARTIAL):
            if updated is not None and now - updated < RETRY_PAUSED_AFTER:
                return "waiting before retrying"
        else:
            return f"edition is {status}"
        if not self._lock.acquire(blocking=False):
            return "a send is running"
        try:
            return self._send(latest.edition_date, reason=f"watch ({status})")
        finally:
            self._lock.release()

    def preflight_job(self, edition_date: date) -> str:
        ctx = self.ctx
        setup = ctx.setup()
        if edition_date in setup.plan.skip_dates:
            return "skipped date"
        self.refresh_articles()
        try:
            with Session(ctx.engine) as session:
                prepared = edition_service.prepare(session, setup, edition_date)
        except BriefingError as exc:
            ctx.log.error("preflight for %s could not run: %s", edition_date, exc)
            self.alert(f"Preflight could not run for {edition_date}", str(exc))
            return "error"
        report = prepared.report
        if report.ok:
            ctx.log.info(
                "preflight for %s passed (%d warnings): %s",
                edition_date,
                len(report.warnings),
                prepared.rendered.subject,
            )
            return "ok"
        problems = "\n".join(f"- {p}" for p in report.errors)
        ctx.log.error("preflight for %s found %d errors:\n%s", edition_date, len(report.errors), problems)
        self.alert(
            f"Preflight errors in the edition of {edition_date}",
            f"The edition of {edition_date} will not go out until these are fixed:\n\n{problems}\n\n"
            f"Check it with: briefing preflight --date {edition_date}",
        )
        return "errors"

    # ---------------------------------------------------------------- the send

    def _send(self, edition_date: date, *, reason: str) -> str:
        ctx = self.ctx
        log = ctx.log
        setup = ctx.setup()
        now = ctx.clock.now()
        if edition_date in setup.plan.skip_dates:
            log.info("edition of %s skipped: the date is on the skip list", edition_date)
            return "skipped"
        decision = cal.decide(edition_date, now, setup.plan)
        with session_scope(ctx.engine) as session:
            edition = edition_store.find_edition(session, edition_date)
            if edition is not None and edition.status == EditionStatus.SENT:
                log.info("edition of %s was already sent; nothing to do", edition_date)
                return "already sent"
            if decision.state == "too_early":
                log.info("edition of %s is not due until %s", edition_date, decision.send_at)
                return "too early"
            if edition is not None and (edition.held or edition.status == EditionStatus.HELD):
                if decision.state == "expired":
                    edition_service.expire_if_unsent(session, edition_date, "held past its window", now=now)
                    log.error("edition of %s expired while on hold; nothing was sent", edition_date)
                    return "expired"
                log.warning(
                    "edition of %s is on hold; it goes out when released (until %s)",
                    edition_date,
                    decision.latest,
                )
                return "held"
            if decision.state == "expired":
                started = edition is not None and edition.status not in (
                    EditionStatus.SCHEDULED,
                    EditionStatus.EXPIRED,
                )
                if not started:
                    edition_service.expire_if_unsent(
                        session, edition_date, f"not started by {decision.latest}", now=now
                    )
                    log.error(
                        "EXPIRED: the edition of %s was due at %s and the window closed at %s; "
                        "nothing was sent. "
                        "Send it on purpose with: briefing send --date %s --force",
                        edition_date,
                        decision.send_at,
                        decision.latest,
                        edition_date,
                    )
                    self.alert(
                        f"The edition of {edition_date} expired",
                        f"It was due at {decision.send_at} and was not started by {decision.latest}. "
                        "Nothing was "
                        f"sent late. To send it anyway: briefing send --date {edition_date} --force",
                    )
                    return "expired"
        log.info("sending the edition of %s (%s)", edition_date, reason)
        transport = ctx.transport()
        try:
            outcome = edition_service.send_edition(
                ctx.engine, setup, edition_date, transport, clock=ctx.clock, stop=ctx.stop
            )
        except PreflightFailed as exc:
            problems = "\n".join(f"- {p}" for p in exc.problems)
            log.error("NOT SENT: the edition of %s has preflight errors:\n%s", edition_date, problems)
            self.alert(f"The edition of {edition_date} was not sent", f"Preflight errors:\n\n{problems}")
            return "preflight failed"
        except BriefingError as exc:
            log.error("the edition of %s was not sent: %s", edition_date, exc)
            self.alert(f"The edition of {edition_date} was not sent", str(exc))
            return "refused"
        finally:
            transport.close()
        report = outcome.report
        if report is not None:
            c = report.counts
            log.info(
                "edition of %s: %s (sent %d, failed %d, deferred %d, skipped %d, ambiguous %d, %.0f msg/s)",
                edition_date,
                outcome.edition.status,
                c.sent,
                c.failed,
                c.deferred,
                c.skipped,
                c.ambiguous,
                report.rate,
            )
        if outcome.edition.status in (EditionStatus.PAUSED, EditionStatus.PARTIAL) and not ctx.stop.is_set():
            self.alert(f"The edition of {edition_date} is {outcome.edition.status}", outcome.message)
        return str(outcome.edition.status)

    # ---------------------------------------------------------------- alerts

    def alert(self, subject: str, body: str) -> None:
        """Email the editors when configured; a failure to alert is logged, never raised."""
        ctx = self.ctx
        if not ctx.alert_email:
            return
        try:
            setup = ctx.setup()
            message = EmailMessage(policy=SMTP)
            message["From"] = setup.mailing.from_address
            message["To"] = ctx.alert_email
            message["Subject"] = f"[briefing] {subject}".replace("\r", " ").replace("\n", " ")
            message["Date"] = format_datetime(ctx.clock.now())
            message["Message-ID"] = make_msgid(domain=setup.mailing.domain)
            message.set_content(body)
            transport = ctx.transport()
            try:
                result = transport.send(setup.mailing.from_address, ctx.alert_email, message.as_bytes())
            finally:
                transport.close()
            if result.outcome is not Outcome.ACCEPTED:
                ctx.log.error("alert email not accepted: %s %s", result.code, result.reply)
        except Exception:
            ctx.log.exception("could not send the alert email")


# -------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class Status:
    next_send: cal.SendTime | None
    last: EditionData | None
    last_counts: LedgerCounts | None
    heartbeat_at: datetime | None
    heartbeat_owner: str
    healthy: bool
    problems: tuple[str, ...]


def status(engine: sa.Engine, plan: cal.SendPlan, now: datetime, *, stale_after: timedelta) -> Status:
    problems: list[str] = []
    upcoming = cal.next_send_times(now, plan, 1)
    with Session(engine) as session:
        beat = schedule_store.heartbeat(session)
        recent = edition_store.list_editions(session, limit=10)
        previous = cal.previous_send_time(now, plan, timedelta(days=14))
        last = next((e for e in recent if previous and e.edition_date <= previous.edition_date), None)
        counts = ledger.counts(session, last.id) if last else None
    beat_at = beat.beat_at if beat else None
    if beat_at is None:
        problems.append("no scheduler has ever run against this database (start `briefing schedule`)")
    elif now - beat_at > stale_after:
        problems.append(f"the scheduler's last heartbeat was {int((now - beat_at).total_seconds())} s ago")
    if previous is not None:
        if last is None or last.edition_date != previous.edition_date:
            if now > previous.utc + plan.max_lateness:
                problems.append(f"no edition was sent for {previous.edition_date}")
        elif last.status in (EditionStatus.EXPIRED, EditionStatus.PAUSED, EditionStatus.PARTIAL):
            problems.append(f"the edition of {last.edition_date} is {last.status}")
    return Status(
        next_send=upcoming[0] if upcoming else None,
        last=last,
        last_counts=counts,
        heartbeat_at=beat_at,
        heartbeat_owner=beat.owner if beat else "",
        healthy=not problems,
        problems=tuple(problems),
    )
