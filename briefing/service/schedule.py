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

import sqlalchemy as sa
from sqlmodel import Session

from briefing import calendar as cal
from briefing.db import session_scope
from briefing.domain import Clock, EditionData, EditionStatus
from briefing.errors import BriefingError, InvalidInput, LockHeld, PreflightFailed
from briefing.mail.transport import Transport
from briefing.service import alerts, claim_owners, send_alerts
from briefing.service import editions as edition_service
from briefing.service import worker as worker_service
from briefing.service.alerts import AlertMail, Alerts, one_line
from briefing.service.send_window import skipped_date
from briefing.service.setup import EditionSetup
from briefing.store import alerts as alert_store
from briefing.store import editions as edition_store
from briefing.store import schedule as schedule_store

RETRY_PAUSED_AFTER = timedelta(minutes=5)
# How far past its window the watch still looks at an edition: far enough to expire a held one
# (and alert) even when the scheduler was down when the window closed.
WATCH_LOOKBACK = timedelta(hours=12)
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
    # Taken around each send, releasing on exit; raises LockHeld while a `briefing send` has the
    # SQLite database (one sender per file). None where many may send at once (PostgreSQL).
    send_guard: Callable[[], Callable[[], None] | None] | None = None


class DailySender:
    """The scheduler's jobs. One lock serialises them, so a catch-up and a watch never overlap.

    Every job reads the calendar (skip dates) and the edition's state afresh from the database,
    so a skip, unskip, hold or release made while the scheduler runs counts at the next minute.
    A job never raises: a database that is busy or down is logged on one line and the next run
    (the watch, every minute) tries again.
    """

    def __init__(self, ctx: DailyContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        mail = None
        if ctx.alert_email:
            mail = AlertMail(ctx.alert_email, self._alert_sender, ctx.transport, ctx.clock)
        self.alerts = Alerts(ctx.engine, mail, clock=ctx.clock, log=ctx.log)

    def _alert_sender(self) -> tuple[str, str]:
        mailing = self.ctx.setup().mailing
        return mailing.from_address, mailing.domain

    # ---------------------------------------------------------------- jobs

    def send_job(self, edition_date: date, scheduled_utc: datetime) -> str:
        with self._lock:
            self.refresh_articles()
            return self._guarded(
                lambda: self._send(edition_date, reason=f"scheduled for {scheduled_utc:%Y-%m-%d %H:%M} UTC")
            )

    def refresh_articles(self) -> None:
        """Poll the site's feeds; a feed problem is logged by the poller and never blocks a send."""
        if self.ctx.poll_feeds is None:
            return
        try:
            self.ctx.poll_feeds()
        except Exception:
            self.ctx.log.exception("polling the feeds failed")

    def watch_job(self) -> str:
        """Every minute: send what is due and not started, expire what is past its window.

        That covers an edition released from hold, a date unskipped after the scheduler started
        (no edition row yet), a send refused earlier (preflight errors since fixed), a send paused
        by SMTP trouble, a held edition whose window closed, and an edition left `sending` with
        nobody sending it: deferred copies fallen due, a crashed sender's claims, or deferred
        copies still waiting when its window closed (given up, and the edition finishes).
        """
        return self._guarded(self._watch)

    def preflight_job(self, edition_date: date) -> str:
        return self._guarded(lambda: self._preflight(edition_date, refresh=True))

    def _guarded(self, job: Callable[[], str]) -> str:
        try:
            return job()
        except sa.exc.SQLAlchemyError as exc:
            self.ctx.log.error(
                "the database is unavailable (%s); trying again at the next run", one_line(exc)
            )
            return "database unavailable"

    # ---------------------------------------------------------------- watch

    def _watch(self) -> str:
        ctx = self.ctx
        setup = ctx.setup()
        now = ctx.clock.now()
        plan = setup.plan
        self._recheck_preflight(setup, now)
        latest = cal.previous_send_time(now, plan, plan.max_lateness + WATCH_LOOKBACK)
        if latest is None:
            return "nothing due"
        day = latest.edition_date
        decision = cal.decide(day, now, plan)
        with Session(ctx.engine) as session:
            edition = edition_store.find_edition(session, day, newsletter_id=setup.newsletter.id)
        status = edition.status if edition else None
        if status == EditionStatus.SENT:
            self._resolve_all(day, "it has been sent")  # perhaps by hand: `briefing send --force`
            return "edition is sent"
        if edition is not None and status == EditionStatus.SENDING and not edition.held:
            return self._watch_sending(edition, setup, now)
        if decision.state == "expired":
            if edition is None or status in (EditionStatus.SCHEDULED, EditionStatus.HELD):
                return self._locked(day, "past its window")  # expired, with one alert
            return f"edition is {status}"
        if edition is not None and edition.held:
            return "held"
        if status in (EditionStatus.PAUSED, EditionStatus.PARTIAL):
            updated = edition.updated_at if edition else None
            if updated is not None and now - updated < RETRY_PAUSED_AFTER:
                return "waiting before retrying"
        elif status not in (None, EditionStatus.SCHEDULED):
            return f"edition is {status}"
        if edition is None:
            self.refresh_articles()  # never attempted (unskipped since start): as the send job does
        return self._locked(day, f"watch ({status or 'not started'})")

    def _watch_sending(self, edition: EditionData, setup: EditionSetup, now: datetime) -> str:
        """An edition in `sending`: left alone while any sender is live, else a pass if one would help."""
        with Session(self.ctx.engine) as session:
            if claim_owners.live_runs(session, edition.id, now=now):
                return "a sender is at work"
            window_end = worker_service.pass_window(edition, setup.plan)
            reason = worker_service.pass_reason(session, edition, now=now, window_end=window_end)
        if reason is None:
            return "waiting for deferred copies"
        if not self._lock.acquire(blocking=False):
            return "a send is running"
        day = edition.edition_date
        try:
            return self._deliver(
                day,
                reason,
                cal.decide(day, now, setup.plan).latest,
                lambda mail: worker_service.run_pass(
                    self.ctx.engine,
                    setup,
                    day,
                    mail,
                    clock=self.ctx.clock,
                    role="scheduler",
                    stop=self.ctx.stop,
                ),
            )
        finally:
            self._lock.release()

    def _locked(self, day: date, reason: str) -> str:
        if not self._lock.acquire(blocking=False):
            return "a send is running"
        try:
            return self._send(day, reason=reason)
        finally:
            self._lock.release()

    def _recheck_preflight(self, setup: EditionSetup, now: datetime) -> None:
        """An edition blocked by preflight before its send time: tell the editors once it passes."""
        upcoming = cal.next_send_times(now, setup.plan, 1)
        if not upcoming:
            return
        day = upcoming[0].edition_date
        with Session(self.ctx.engine) as session:
            blocked = any(a.problem == alerts.PREFLIGHT for a in alert_store.open_alerts(session, [day]))
        if blocked:
            self._preflight(day, refresh=False, quiet=True)

    # ---------------------------------------------------------------- preflight

    def _preflight(self, edition_date: date, *, refresh: bool, quiet: bool = False) -> str:
        ctx = self.ctx
        setup = ctx.setup()
        if skipped_date(edition_date, setup.plan):
            return "skipped date"
        if refresh:
            self.refresh_articles()
        try:
            with Session(ctx.engine) as session:
                prepared = edition_service.prepare(session, setup, edition_date)
        except BriefingError as exc:
            ctx.log.error("preflight for %s could not run: %s", edition_date, exc)
            self.alerts.problem(
                edition_date, alerts.PREFLIGHT, f"Preflight could not run for {edition_date}", str(exc)
            )
            return "error"
        report = prepared.report
        if report.ok:
            if not quiet:
                ctx.log.info(
                    "preflight for %s passed (%d warnings): %s",
                    edition_date,
                    len(report.warnings),
                    prepared.rendered.subject,
                )
            resolved = self.alerts.resolved(
                edition_date,
                [alerts.PREFLIGHT],
                f"Preflight passes for the edition of {edition_date}",
                f"The edition of {edition_date} passes preflight now and goes out at its send time.",
            )
            if resolved:
                ctx.log.info("preflight for %s passes now; the editors were told", edition_date)
            return "ok"
        problems = "\n".join(f"- {p}" for p in report.errors)
        new = self.alerts.problem(
            edition_date,
            alerts.PREFLIGHT,
            f"Preflight errors in the edition of {edition_date}",
            f"The edition of {edition_date} will not go out until these are fixed:\n\n{problems}\n\n"
            f"Check it with: briefing preflight --date {edition_date}",
        )
        if new or not quiet:
            ctx.log.error("preflight for %s found %d errors:\n%s", edition_date, len(report.errors), problems)
        return "errors"

    # ---------------------------------------------------------------- the send

    def _send(self, edition_date: date, *, reason: str) -> str:
        ctx = self.ctx
        log = ctx.log
        setup = ctx.setup()
        now = ctx.clock.now()
        why_skipped = skipped_date(edition_date, setup.plan)
        if why_skipped:
            log.info("edition of %s skipped: %s", edition_date, why_skipped)
            return "skipped"
        decision = cal.decide(edition_date, now, setup.plan)
        expired_on_hold: bool | None = None  # set when this run expires the edition
        with session_scope(ctx.engine) as session:
            edition = edition_store.find_edition(session, edition_date, newsletter_id=setup.newsletter.id)
            if edition is not None and edition.status == EditionStatus.SENT:
                log.info("edition of %s was already sent; nothing to do", edition_date)
                return "already sent"
            if decision.state == "too_early":
                log.info("edition of %s is not due until %s", edition_date, decision.send_at)
                return "too early"
            held = edition is not None and (edition.held or edition.status == EditionStatus.HELD)
            unstarted = edition is None or edition.status in (EditionStatus.SCHEDULED, EditionStatus.HELD)
            if decision.state == "expired" and unstarted:
                why = "held past its window" if held else f"not started by {decision.latest}"
                edition_service.expire_if_unsent(
                    session, edition_date, why, newsletter_id=setup.newsletter.id, now=now
                )
                expired_on_hold = held
            elif held:
                log.warning(
                    "edition of %s is on hold; it goes out when released (until %s)",
                    edition_date,
                    decision.latest,
                )
                return "held"
        if expired_on_hold is not None:  # alerted after the commit, never inside the transaction
            return self._expired(edition_date, decision, on_hold=expired_on_hold)
        return self._deliver(
            edition_date,
            reason,
            decision.latest,
            lambda mail: edition_service.send_edition(
                ctx.engine, setup, edition_date, mail, clock=ctx.clock, stop=ctx.stop, role="scheduler"
            ),
        )

    def _deliver(
        self,
        edition_date: date,
        reason: str,
        latest: datetime,
        send: Callable[[Transport], edition_service.SendOutcome | None],
    ) -> str:
        """Run one send (or pass) under the send guard, with the alerts its outcome calls for."""
        log = self.ctx.log
        release: Callable[[], None] | None = None
        if self.ctx.send_guard is not None:
            try:
                release = self.ctx.send_guard()
            except LockHeld as exc:
                log.warning("edition of %s not sent now: %s; the watch tries again", edition_date, exc)
                return "another sender"
        log.info("sending the edition of %s (%s)", edition_date, reason)
        transport = self.ctx.transport()
        try:
            outcome = send(transport)
        except PreflightFailed as exc:
            problems = "\n".join(f"- {p}" for p in exc.problems)
            new = self.alerts.problem(
                edition_date,
                alerts.NOT_SENT,
                f"The edition of {edition_date} was not sent: preflight errors",
                f"Preflight errors:\n\n{problems}\n\nIt goes out within a minute of the fix while its "
                f"window is open (until {latest:%H:%M} UTC). "
                f"Check it with: briefing preflight --date {edition_date}",
            )
            if new:
                log.error("NOT SENT: the edition of %s has preflight errors:\n%s", edition_date, problems)
            else:
                log.info(
                    "the edition of %s is still blocked by %d preflight errors",
                    edition_date,
                    len(exc.problems),
                )
            return "preflight failed"
        except BriefingError as exc:
            if self.alerts.problem(
                edition_date, alerts.NOT_SENT, f"The edition of {edition_date} was not sent", str(exc)
            ):
                log.error("the edition of %s was not sent: %s", edition_date, exc)
            return "refused"
        finally:
            transport.close()
            if release is not None:
                release()
        if outcome is None:
            return "not sending"
        return self._after_send(edition_date, outcome)

    def _expired(self, edition_date: date, decision: cal.Decision, *, on_hold: bool) -> str:
        return send_alerts.expired(self.alerts, self.ctx.log, edition_date, decision, on_hold=on_hold)

    def _after_send(self, edition_date: date, outcome: edition_service.SendOutcome) -> str:
        return send_alerts.after_send(
            self.alerts, self.ctx.log, edition_date, outcome, stopping=self.ctx.stop.is_set()
        )

    def _resolve_all(self, edition_date: date, message: str) -> None:
        send_alerts.resolve_all(self.alerts, edition_date, message)
