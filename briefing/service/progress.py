"""How far the whole edition has got, across every sender on every host.

`briefing send`, `briefing editions show --watch` and the web editions pages all show these numbers.
They ask every second or every few seconds, while the ledger may hold a million rows, so a sending
edition's numbers come from the sender table (one row per run, each with its own tally), never from
counting the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from briefing.domain import EditionStatus
from briefing.errors import NotFound
from briefing.models import Edition, Sender
from briefing.service.claim_owners import STALE_AFTER
from briefing.store import deliveries as ledger

S = Sender.__table__  # type: ignore[attr-defined]
E = Edition.__table__  # type: ignore[attr-defined]

# A run silent this long no longer counts as sending, and its rate is left out of the edition's:
# the same rule that frees its claims (service.claim_owners).
SILENT_AFTER = timedelta(seconds=STALE_AFTER)


@dataclass(frozen=True, slots=True)
class LiveSender:
    """A run that is sending now: not finished, and heard from within SILENT_AFTER."""

    host: str
    pid: int
    role: str
    connections: int
    sent: int
    rate: float
    silent_for: float  # seconds since its last heartbeat


@dataclass(frozen=True, slots=True)
class EditionProgress:
    edition_id: int
    edition_date: date
    status: str
    total: int  # the snapshot: copies the edition sends in all
    sent: int
    failed: int
    skipped: int
    ambiguous: int
    rate: float  # copies a second, all live senders together
    senders: tuple[LiveSender, ...]
    counted: bool  # True: exact counts from the ledger; False: summed from the senders' tallies
    last_heard: datetime | None  # the newest heartbeat of any run on the edition

    @property
    def sending(self) -> bool:
        return self.status == EditionStatus.SENDING

    @property
    def done(self) -> int:
        return min(self.total, self.sent + self.failed + self.skipped)

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.sent - self.failed - self.skipped)

    @property
    def eta(self) -> float | None:
        """Seconds until every copy is out at the present rate; None when nobody is sending."""
        if self.remaining == 0:
            return 0.0
        return self.remaining / self.rate if self.rate > 0 else None


def edition_progress(session: Session, edition_id: int, *, now: datetime) -> EditionProgress:
    """The whole edition's numbers, whoever sends it.

    While the edition is `sending` the ledger is never counted: a progress tick that counted a
    million-row ledger every second from every watcher would compete with the senders for the same
    rows. Each run keeps its own tally and writes it with each heartbeat, and each `sent` row was
    recorded by exactly one run, so the sum of the runs' `sent` is the edition's `sent` (as of their
    last heartbeats, at most a few seconds old). Editions partly sent before runs kept tallies have
    their `sent_count`, hence the max. `failed` and `skipped` are summed the same way; a retried
    failed copy then counts in both runs, so `remaining` is clamped at zero. Once the edition is not
    sending, nothing moves, and one grouped count of the ledger gives the exact figures.
    """
    edition = session.execute(
        sa.select(E.c.edition_date, E.c.status, E.c.snapshot_size, E.c.sent_count).where(E.c.id == edition_id)
    ).first()
    if edition is None:
        raise NotFound(f"no edition with id {edition_id}", field="edition")
    runs = session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(S.c.sent), 0),
            sa.func.coalesce(sa.func.sum(S.c.failed), 0),
            sa.func.coalesce(sa.func.sum(S.c.skipped), 0),
            sa.func.coalesce(sa.func.sum(S.c.ambiguous), 0),
            sa.func.max(S.c.heartbeat_at),
        ).where(S.c.edition_id == edition_id)
    ).one()
    live = live_senders(session, edition_id, now=now)
    status = str(edition.status)
    if status == EditionStatus.SENDING:
        sent = max(int(runs[0]), int(edition.sent_count))
        failed, skipped, ambiguous = int(runs[1]), int(runs[2]), int(runs[3])
        counted = False
    else:
        counts = ledger.counts(session, edition_id)
        sent, failed, skipped, ambiguous = counts.sent, counts.failed, counts.skipped, counts.ambiguous
        counted = True
    return EditionProgress(
        edition_id=edition_id,
        edition_date=edition.edition_date,
        status=status,
        total=int(edition.snapshot_size),
        sent=sent,
        failed=failed,
        skipped=skipped,
        ambiguous=ambiguous,
        rate=sum(s.rate for s in live),
        senders=live,
        counted=counted,
        last_heard=runs[4],
    )


def progress_on(
    session: Session, edition_date: date, *, now: datetime, newsletter_id: int = 1, kind: str = "regular"
) -> EditionProgress:
    """The progress of one newsletter's edition of a date; NotFound naming the date when there is none."""
    found = session.execute(
        sa.select(E.c.id).where(
            E.c.edition_date == edition_date, E.c.newsletter_id == newsletter_id, E.c.kind == kind
        )
    ).scalar()
    if found is None:
        raise NotFound(f"no edition for {edition_date.isoformat()}", field="date")
    return edition_progress(session, int(found), now=now)


def live_senders(session: Session, edition_id: int, *, now: datetime) -> tuple[LiveSender, ...]:
    """The runs sending the edition now, oldest first; finished and silent ones are left out."""
    rows = session.execute(
        sa.select(S.c.host, S.c.pid, S.c.role, S.c.connections, S.c.sent, S.c.rate, S.c.heartbeat_at)
        .where(
            S.c.edition_id == edition_id,
            S.c.finished_at.is_(None),
            S.c.heartbeat_at >= now - SILENT_AFTER,
        )
        .order_by(S.c.id)
    ).all()
    return tuple(
        LiveSender(
            host=str(r.host),
            pid=int(r.pid),
            role=str(r.role),
            connections=int(r.connections),
            sent=int(r.sent),
            rate=max(0.0, float(r.rate)),
            silent_for=max(0.0, (now - r.heartbeat_at).total_seconds()),
        )
        for r in rows
    )


def with_live_run(
    progress: EditionProgress, *, host: str, pid: int, sent: int, rate: float
) -> EditionProgress:
    """The progress with the caller's own run at its live figures instead of its last heartbeat's.

    A run's heartbeat is up to 5 s old, and before its first one it has no row at all; the sending
    process knows its own tally exactly, so its bar moves every second. Exact ledger counts (an
    edition no longer sending) are left as they are.
    """
    if progress.counted:
        return progress
    own = [s for s in progress.senders if s.host == host and s.pid == pid]
    recorded = sum(s.sent for s in own)
    others_rate = max(0.0, progress.rate - sum(s.rate for s in own))
    ceiling = max(0, progress.total - progress.failed - progress.skipped)
    whole = progress.sent + max(0, sent - recorded)
    return replace(progress, sent=max(progress.sent, min(whole, ceiling)), rate=others_rate + max(0.0, rate))


def duration(seconds: float | None) -> str:
    """An ETA for people: "40 s", "12 min", "1 h 05 min"; "unknown" when nobody is sending."""
    if seconds is None:
        return "unknown"
    whole = int(seconds + 0.5)
    if whole < 60:
        return f"{whole} s"
    minutes = (whole + 30) // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
