"""The daily send and the news calendar: what the scheduler's jobs do, in the same terms as `briefing send`.

The scheduler only decides *when*; these functions decide *whether*, from the database: an edition
already sent is not sent again, a held one waits, one past its window expires and says so, a
paused newsletter sends nothing. The calendar's writes (skipping a date, the scheduler's
heartbeat) are use cases here too, so the CLI and any later door share one rule for what a skip
reason may be. One `DailySender` runs one newsletter's jobs; `every_newsletter.EveryNewsletter`
runs them all in one process, with one lock so that only one edition is sent at a time.
"""

from __future__ import annotations

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
from briefing.newsletter import REGULAR, edition_label, is_special
from briefing.service import alerts, claim_owners, send_alerts
from briefing.service import editions as edition_service
from briefing.service import worker as worker_service
from briefing.service.alerts import AlertMail, Alerts, Log, one_line
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
SPECIALS_LOOKED_AT = 50  # a newsletter's unsent editions the watch reads to find its specials
_SPECIAL_WATCHED = (
    EditionStatus.SCHEDULED.value,
    EditionStatus.HELD.value,
    EditionStatus.SENDING.value,
    EditionStatus.PAUSED.value,
    EditionStatus.PARTIAL.value,
)


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
    log: Log
    clock: Clock
    poll_feeds: Callable[[], object] | None = None  # refresh stored articles before the edition is built
    # Taken around each send, releasing on exit; raises LockHeld while a `briefing send` has the
    # SQLite database (one sender per file). None where many may send at once (PostgreSQL).
    send_guard: Callable[[], Callable[[], None] | None] | None = None


class DailySender:
    """One newsletter's jobs. One lock serialises them, so a catch-up and a watch never overlap;
    pass the same `lock` to every newsletter's sender for one send at a time in the process.

    Every job reads the calendar (skip dates), the newsletter and the edition's state afresh from
    the database, so a skip, unskip, hold, release or pause made while the scheduler runs counts
    at the next minute. A job never raises: a database that is busy or down is logged on one line
    and the next run (the watch, every minute) tries again.
    """

    def __init__(self, ctx: DailyContext, *, lock: threading.Lock | None = None) -> None:
        self.ctx = ctx
        self._lock = lock if lock is not None else threading.Lock()
        mail = None
        if ctx.alert_email:
            mail = AlertMail(ctx.alert_email, self._alert_sender, ctx.transport, ctx.clock)
        self.alerts = Alerts(ctx.engine, mail, clock=ctx.clock, log=ctx.log)

    def _alert_sender(self) -> tuple[str, str]:
        mailing = self.ctx.setup().mailing
        return mailing.from_address, mailing.domain

    def _box(self, setup: EditionSetup) -> Alerts:
        """The alerts of this newsletter's editions, named by the newsletter unless it is the first."""
        n = setup.newsletter
        return self.alerts.of(n.id, "" if n.primary else setup.compose.newsletter_name or n.slug)

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
        copies still waiting when its window closed (given up, and the edition finishes). Special
        editions whose time has come are sent the same way, each on its own (`_watch_specials`).
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
        setup = self.ctx.setup()
        if setup.newsletter.paused:
            return "paused"
        now = self.ctx.clock.now()
        regular = self._watch_regular(setup, now)
        specials = self._watch_specials(setup, now)
        return "; ".join([regular, *specials])

    def _watch_regular(self, setup: EditionSetup, now: datetime) -> str:
        plan = setup.plan
        self._recheck_preflight(setup, now)
        latest = cal.previous_send_time(now, plan, plan.max_lateness + WATCH_LOOKBACK)
        if latest is None:
            return "nothing due"
        day = latest.edition_date
        decision = cal.decide(day, now, plan)
        with Session(self.ctx.engine) as session:
            edition = edition_store.find_edition(session, day, newsletter_id=setup.newsletter.id)
        status = edition.status if edition else None
        if status == EditionStatus.SENT:
            send_alerts.resolve_all(self._box(setup), day, "it has been sent")  # perhaps `send --force`
            return "edition is sent"
        if edition is not None and status == EditionStatus.SENDING and not edition.held:
            return self._watch_sending(edition, setup, now)
        if decision.state == "expired":
            if edition is None or status in (EditionStatus.SCHEDULED, EditionStatus.HELD):
                return self._locked(lambda: self._send(day, reason="past its window"))  # one alert
            return f"edition is {status}"
        waiting = _waiting(edition, now)
        if waiting:
            return waiting
        if edition is None:
            self.refresh_articles()  # never attempted (unskipped since start): as the send job does
        return self._locked(lambda: self._send(day, reason=f"watch ({status or 'not started'})"))

    def _watch_specials(self, setup: EditionSetup, now: datetime) -> list[str]:
        """Each special whose time has come: sent (by `send_edition` with its kind), or expired
        with an alert once its window has closed. The regular edition of its date is not looked at."""
        reach = setup.plan.max_lateness + WATCH_LOOKBACK
        with Session(self.ctx.engine) as session:
            found = edition_store.list_editions(
                session,
                limit=SPECIALS_LOOKED_AT,
                statuses=_SPECIAL_WATCHED,
                newsletter_id=setup.newsletter.id,
            )
        due = sorted(
            (
                e
                for e in found
                if is_special(e.kind)
                and e.scheduled_for is not None
                and e.scheduled_for <= now
                and now - e.scheduled_for <= reach
            ),
            key=lambda e: (e.scheduled_for, e.id),
        )
        return [f"{e.kind}: {self._watch_special(setup, e, now)}" for e in due if not self.ctx.stop.is_set()]

    def _watch_special(self, setup: EditionSetup, special: EditionData, now: datetime) -> str:
        assert special.scheduled_for is not None
        if special.status == EditionStatus.SENDING and not special.held:
            return self._watch_sending(special, setup, now)
        latest = special.scheduled_for + setup.plan.max_lateness
        if now > latest:
            if special.status in (EditionStatus.SCHEDULED, EditionStatus.HELD):
                return self._locked(lambda: self._expire_special(setup, special, now))
            return f"edition is {special.status}"
        waiting = _waiting(special, now)
        if waiting:
            return waiting
        day, kind = special.edition_date, special.kind
        return self._locked(
            lambda: self._deliver(
                setup,
                day,
                f"scheduled for {special.scheduled_for:%Y-%m-%d %H:%M} UTC",
                latest,
                lambda mail: edition_service.send_edition(
                    self.ctx.engine, setup, day, mail, clock=self.ctx.clock, stop=self.ctx.stop,
                    role="scheduler", kind=kind,
                ),
                kind=kind,
            )
        )  # fmt: skip

    def _expire_special(self, setup: EditionSetup, special: EditionData, now: datetime) -> str:
        assert special.scheduled_for is not None
        day, kind = special.edition_date, special.kind
        latest = special.scheduled_for + setup.plan.max_lateness
        with session_scope(self.ctx.engine) as session:
            current = edition_store.lock_edition(session, day, newsletter_id=setup.newsletter.id, kind=kind)
            if current.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
                return f"edition is {current.status}"
            held = current.held or current.status == EditionStatus.HELD
            why = "held past its window" if held else f"not started by {latest}"
            edition_store.set_status(session, current.id, EditionStatus.EXPIRED, error=why, now=now)
        decision = cal.Decision("expired", day, special.scheduled_for, latest)
        return send_alerts.expired(self._box(setup), self.ctx.log, day, decision, on_hold=held, kind=kind)

    def _watch_sending(self, edition: EditionData, setup: EditionSetup, now: datetime) -> str:
        """An edition in `sending`: left alone while any sender is live, else a pass if one would help."""
        with Session(self.ctx.engine) as session:
            if claim_owners.live_runs(session, edition.id, now=now):
                return "a sender is at work"
            window_end = worker_service.pass_window(edition, setup.plan)
            reason = worker_service.pass_reason(session, edition, now=now, window_end=window_end)
        if reason is None:
            return "waiting for deferred copies"
        day, kind = edition.edition_date, edition.kind
        latest = window_end or cal.decide(day, now, setup.plan).latest
        return self._locked(
            lambda: self._deliver(
                setup,
                day,
                reason,
                latest,
                lambda mail: worker_service.run_pass(
                    self.ctx.engine, setup, day, mail, clock=self.ctx.clock, role="scheduler",
                    kind=kind, stop=self.ctx.stop,
                ),
                kind=kind,
            )
        )  # fmt: skip

    def _locked(self, job: Callable[[], str]) -> str:
        if not self._lock.acquire(blocking=False):
            return "a send is running"
        try:
            return job()
        finally:
            self._lock.release()

    def _recheck_preflight(self, setup: EditionSetup, now: datetime) -> None:
        """An edition blocked by preflight before its send time: tell the editors once it passes."""
        upcoming = cal.next_send_times(now, setup.plan, 1)
        if not upcoming:
            return
        day = upcoming[0].edition_date
        with Session(self.ctx.engine) as session:
            found = alert_store.open_alerts(session, [day], newsletter_id=setup.newsletter.id)
        if any(a.problem == alerts.PREFLIGHT for a in found):
            self._preflight(day, refresh=False, quiet=True)

    # ---------------------------------------------------------------- preflight

    def _preflight(self, edition_date: date, *, refresh: bool, quiet: bool = False) -> str:
        setup = self.ctx.setup()
        if setup.newsletter.paused:
            return "paused"
        if skipped_date(edition_date, setup.plan):
            return "skipped date"
        if refresh:
            self.refresh_articles()
        box = self._box(setup)
        try:
            with Session(self.ctx.engine) as session:
                prepared = edition_service.prepare(session, setup, edition_date)
        except BriefingError as exc:
            return send_alerts.preflight_not_run(box, self.ctx.log, edition_date, exc)
        subject = prepared.rendered.subject
        return send_alerts.preflight(box, self.ctx.log, edition_date, prepared.report, subject, quiet=quiet)

    # ---------------------------------------------------------------- the send

    def _send(self, edition_date: date, *, reason: str) -> str:
        ctx = self.ctx
        log = ctx.log
        setup = ctx.setup()
        now = ctx.clock.now()
        if setup.newsletter.paused:
            log.info(
                "edition of %s not sent: the newsletter %s is paused", edition_date, setup.newsletter.slug
            )
            return "paused"
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
            return send_alerts.expired(self._box(setup), log, edition_date, decision, on_hold=expired_on_hold)
        return self._deliver(
            setup,
            edition_date,
            reason,
            decision.latest,
            lambda mail: edition_service.send_edition(
                ctx.engine, setup, edition_date, mail, clock=ctx.clock, stop=ctx.stop, role="scheduler"
            ),
        )

    def _deliver(
        self,
        setup: EditionSetup,
        edition_date: date,
        reason: str,
        latest: datetime,
        send: Callable[[Transport], edition_service.SendOutcome | None],
        *,
        kind: str = REGULAR,
    ) -> str:
        """Run one send (or pass) under the send guard, with the alerts its outcome calls for."""
        log = self.ctx.log
        label = edition_label(edition_date, kind)
        release: Callable[[], None] | None = None
        if self.ctx.send_guard is not None:
            try:
                release = self.ctx.send_guard()
            except LockHeld as exc:
                log.warning("edition of %s not sent now: %s; the watch tries again", label, exc)
                return "another sender"
        log.info("sending the edition of %s (%s)", label, reason)
        box = self._box(setup)
        transport = self.ctx.transport()
        try:
            outcome = send(transport)
        except PreflightFailed as exc:
            return send_alerts.blocked(box, log, edition_date, exc.problems, latest, kind=kind)
        except BriefingError as exc:
            return send_alerts.refused(box, log, edition_date, exc, kind=kind)
        finally:
            transport.close()
            if release is not None:
                release()
        if outcome is None:
            return "not sending"
        stopping = self.ctx.stop.is_set()
        return send_alerts.after_send(box, log, edition_date, outcome, stopping=stopping, kind=kind)


def _waiting(edition: EditionData | None, now: datetime) -> str:
    """Why the watch leaves an edition within its window alone for now ("" when it may go)."""
    if edition is None:
        return ""
    if edition.held:
        return "held"
    if edition.status in (EditionStatus.PAUSED, EditionStatus.PARTIAL):
        if edition.updated_at is not None and now - edition.updated_at < RETRY_PAUSED_AFTER:
            return "waiting before retrying"
    elif edition.status != EditionStatus.SCHEDULED:
        return f"edition is {edition.status}"
    return ""
