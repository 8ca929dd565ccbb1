"""What a monitor asks: is the morning email healthy, and the numbers behind it.

`briefing status` and `GET /metrics` read the same facts (the last scheduled edition, its ledger,
the scheduler's heartbeat, the open alerts), so the exit code and the dashboard agree. Both only
read, and both are cheap: a handful of indexed queries, no render, nothing per reader.

Each newsletter has its own calendar, so each is judged on its own regular editions: a weekend
edition is never taken for the weekday briefing's last one, and a paused newsletter, which the
scheduler leaves alone, owes no edition.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from briefing import calendar as cal
from briefing.domain import EditionData, EditionStatus, LedgerCounts
from briefing.models import Newsletter
from briefing.newsletter import PRIMARY_ID, REGULAR, NewsletterData
from briefing.service import alerts, bounce_rates
from briefing.service.bounce_rates import EditionRates, RateLimits
from briefing.store import alerts as alert_store
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from briefing.store import schedule as schedule_store
from briefing.store import senders as sender_store

# Started and not finished: editors hear of these (a halted one waits for them to resume it).
UNFINISHED = (EditionStatus.PAUSED, EditionStatus.PARTIAL, EditionStatus.HALTED)
# The ledger of an edition in one of these states no longer changes by itself.
SETTLED = (EditionStatus.SENT, EditionStatus.EXPIRED, EditionStatus.CANCELLED)
BLOCKING = (alerts.PREFLIGHT, alerts.NOT_SENT)
# A sending edition with copies to send and no run heard from this long: nobody is sending it. The
# scheduler's minute watch takes such an edition over, so a healthy install never stays here.
ABANDONED_AFTER = timedelta(minutes=3)
ALERTS_COUNTED_FOR = timedelta(days=7)  # the metrics count the open alerts of this week's editions
LOOK_BACK = timedelta(days=14)  # how far back the last scheduled edition is looked for


@dataclass(frozen=True, slots=True)
class NewsletterStatus:
    """One newsletter's part of the answer: its next send in its own zone and its last edition."""

    newsletter: NewsletterData
    plan: cal.SendPlan
    next_send: cal.SendTime | None  # None while the newsletter is paused
    last: EditionData | None
    last_counts: LedgerCounts | None
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Status:
    next_send: cal.SendTime | None  # these three are the first newsletter's (see `newsletters`)
    last: EditionData | None
    last_counts: LedgerCounts | None
    heartbeat_at: datetime | None
    heartbeat_owner: str
    healthy: bool
    problems: tuple[str, ...]  # every newsletter's, each named when there are several
    last_rates: EditionRates | None = None  # of the newest edition that sent copies
    newsletters: tuple[NewsletterStatus, ...] = ()


def status(
    engine: sa.Engine,
    plan: cal.SendPlan,
    now: datetime,
    *,
    stale_after: timedelta,
    rate_limits: RateLimits = RateLimits(),
    newsletter_id: int = PRIMARY_ID,
) -> Status:
    """One newsletter's health (the first unless named) on the calendar given; see `overview`."""
    with Session(engine) as session:
        newsletter = newsletter_store.get_newsletter(session, newsletter_id)
    return overview(engine, [(newsletter, plan)], now, stale_after=stale_after, rate_limits=rate_limits)


def overview(
    engine: sa.Engine,
    plans: Sequence[tuple[NewsletterData, cal.SendPlan]],
    now: datetime,
    *,
    stale_after: timedelta,
    rate_limits: RateLimits = RateLimits(),
) -> Status:
    """Healthy, or why not: a dead scheduler; a newsletter's missed, expired, held-over, blocked or
    unfinished edition; the last edition sent bouncing or drawing complaints past `rate_limits`."""
    problems: list[str] = []
    watched: set[date] = set()
    parts: list[NewsletterStatus] = []
    with Session(engine) as session:
        beat = schedule_store.heartbeat(session)
        for newsletter, plan in plans:
            part, days = _newsletter_status(session, newsletter, plan, now)
            parts.append(part)
            watched.update(days)
        blocked = [a for a in alert_store.open_alerts(session, sorted(watched)) if a.problem in BLOCKING]
        rates = bounce_rates.last_sent(session)
    beat_at = beat.beat_at if beat else None
    if beat_at is None:
        problems.append("no scheduler has ever run against this database (start `briefing schedule`)")
    elif now - beat_at > stale_after:
        problems.append(f"the scheduler's last heartbeat was {int((now - beat_at).total_seconds())} s ago")
    named = len(parts) > 1
    for part in parts:
        problems.extend(f"{part.newsletter.slug}: {p}" if named else p for p in part.problems)
    for alert in blocked:
        hint = f"; check it with `briefing preflight --date {alert.edition_date}`"
        problems.append(
            f"the edition of {alert.edition_date} is blocked: {alert.subject} "
            f"(since {alert.raised_at:%Y-%m-%d %H:%M} UTC{hint if 'reflight' in alert.subject else ''})"
        )
    problems.extend(bounce_rates.problems(rates, rate_limits))
    first = parts[0] if parts else None
    return Status(
        next_send=first.next_send if first else None,
        last=first.last if first else None,
        last_counts=first.last_counts if first else None,
        heartbeat_at=beat_at,
        heartbeat_owner=beat.owner if beat else "",
        healthy=not problems,
        problems=tuple(problems),
        last_rates=rates,
        newsletters=tuple(parts),
    )


def _newsletter_status(
    session: Session, newsletter: NewsletterData, plan: cal.SendPlan, now: datetime
) -> tuple[NewsletterStatus, list[date]]:
    """One newsletter judged on its own calendar, and the dates whose open alerts concern it."""
    problems: list[str] = []
    upcoming = [] if newsletter.paused else cal.next_send_times(now, plan, 1)
    previous = cal.previous_send_time(now, plan, LOOK_BACK)
    watched = [d for d in (previous and previous.edition_date, upcoming and upcoming[0].edition_date) if d]
    recent = [
        e
        for e in edition_store.list_editions(session, limit=30, newsletter_id=newsletter.id)
        if e.kind == REGULAR
    ]
    last = next((e for e in recent if previous and e.edition_date <= previous.edition_date), None)
    counts = ledger.counts(session, last.id) if last else None
    runs = sender_store.for_edition(session, last.id) if last else []
    if previous is not None and not newsletter.paused and not _newer_than(session, newsletter, previous):
        window_end = previous.utc + plan.max_lateness
        day = previous.edition_date
        if last is None or last.edition_date != day:
            if now > window_end:
                problems.append(f"no edition was sent for {day}")
        elif last.status == EditionStatus.EXPIRED or last.status in UNFINISHED:
            problems.append(f"the edition of {day} is {last.status}")
        elif last.held or last.status == EditionStatus.HELD:
            if now > window_end:
                problems.append(
                    f"the edition of {day} is held past its window (closed {window_end:%Y-%m-%d %H:%M} UTC); "
                    "it will not be sent"
                )
        elif last.status == EditionStatus.SCHEDULED and now > window_end:
            problems.append(f"the edition of {day} was not sent and its window closed")
    if last is not None and counts is not None and last.status == EditionStatus.SENDING:
        abandoned = _abandoned_for(last, counts, runs, now)
        if abandoned is not None:
            problems.append(
                f"the edition of {last.edition_date} is sending, but no sender has reported for "
                f"{int(abandoned.total_seconds())} s and {counts.pending + counts.claimed} copies wait "
                "(start `briefing schedule` or `briefing worker`, or run `briefing send`)"
            )
    part = NewsletterStatus(
        newsletter=newsletter,
        plan=plan,
        next_send=upcoming[0] if upcoming else None,
        last=last,
        last_counts=counts,
        problems=tuple(problems),
    )
    return part, watched


# -------------------------------------------------------------------- metrics


@dataclass(frozen=True, slots=True)
class EditionNumbers:
    edition_date: date
    status: str
    counts: LedgerCounts
    newsletter: str = ""  # its slug: two newsletters' editions of one date are two series
    kind: str = "regular"


@dataclass(frozen=True, slots=True)
class Numbers:
    editions: tuple[EditionNumbers, ...]  # the recent ones with a ledger, newest first
    last: EditionData | None  # the newest edition due by now, whatever its state
    heartbeat_age: float | None  # seconds; None when no scheduler ever ran
    open_alerts: int
    # Each newsletter's newest regular edition due by now, by slug.
    last_by_newsletter: tuple[tuple[str, EditionData], ...] = ()


class MetricsReader:
    """The numbers behind `/metrics`; a settled edition's ledger is counted once, then remembered."""

    def __init__(self, engine: sa.Engine, *, editions: int = 7) -> None:
        self.engine = engine
        self.editions = editions
        self._settled: dict[tuple[int, str, datetime | None], LedgerCounts] = {}
        self._lock = threading.Lock()

    def read(self, now: datetime) -> Numbers:
        with Session(self.engine) as session:
            recent = edition_store.list_editions(session, limit=self.editions * 2)
            slugs = {n.id: n.slug for n in newsletter_store.list_newsletters(session)}
            with_ledger = [e for e in recent if e.snapshot_size][: self.editions]
            numbers = tuple(
                EditionNumbers(
                    e.edition_date, e.status, self._counts(session, e), slugs.get(e.newsletter_id, ""), e.kind
                )
                for e in with_ledger
            )
            regular = [e for e in recent if e.kind == "regular"]
            last = next((e for e in regular if _due_by(e, now)), None)
            lasts: dict[str, EditionData] = {}
            for e in regular:
                slug = slugs.get(e.newsletter_id, "")
                if slug not in lasts and _due_by(e, now):
                    lasts[slug] = e
            beat = schedule_store.heartbeat(session)
            open_count = len(alert_store.open_alerts(session, since=now.date() - ALERTS_COUNTED_FOR))
        age = (now - beat.beat_at).total_seconds() if beat and beat.beat_at else None
        return Numbers(
            editions=numbers,
            last=last,
            heartbeat_age=age,
            open_alerts=open_count,
            last_by_newsletter=tuple(lasts.items()),
        )

    def _counts(self, session: Session, edition: EditionData) -> LedgerCounts:
        if edition.status not in SETTLED:
            return ledger.counts(session, edition.id)
        key = (edition.id, edition.status, edition.updated_at)
        with self._lock:
            known = self._settled.get(key)
        if known is None:
            known = ledger.counts(session, edition.id)
            with self._lock:
                self._settled = {k: v for k, v in self._settled.items() if k[0] != edition.id}
                self._settled[key] = known
        return known


def _newer_than(session: Session, newsletter: NewsletterData, send: cal.SendTime) -> bool:
    """A newsletter added after a send time owed no edition then. The first newsletter always did:
    a database from before there were several dates it from its upgrade, not from its first send."""
    if newsletter.primary:
        return False
    row = session.get(Newsletter, newsletter.id)
    return row is not None and row.created_at > send.utc


def _abandoned_for(
    edition: EditionData, counts: LedgerCounts, runs: list[sender_store.SenderRow], now: datetime
) -> timedelta | None:
    """How long nobody has sent a sending edition that has copies ready to go (None: fine).

    Deferred copies waiting for their next try are not abandoned: they wait on purpose.
    """
    if counts.pending + counts.claimed == 0:
        return None
    heard = max((r.heartbeat_at for r in runs), default=edition.updated_at or now)
    silent = now - heard
    return silent if silent >= ABANDONED_AFTER else None


def _due_by(edition: EditionData, now: datetime) -> bool:
    """Due by now, or already on its way (sent early on purpose); not a future date someone held."""
    if edition.status not in (EditionStatus.SCHEDULED, EditionStatus.HELD):
        return True
    if edition.scheduled_for is not None:
        return edition.scheduled_for <= now
    return edition.edition_date <= now.date()
