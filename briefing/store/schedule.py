"""The news calendar kept in the database: skipped dates and the scheduler's heartbeat."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session, col, select

from briefing.models import SchedulerHeartbeat, SkipDate


def skip_dates(session: Session) -> frozenset[date]:
    return frozenset(r.skip_date for r in session.exec(select(SkipDate)).all())


def list_skips(session: Session, *, since: date | None = None) -> list[tuple[date, str]]:
    stmt = select(SkipDate)
    if since is not None:
        stmt = stmt.where(col(SkipDate.skip_date) >= since)
    return [(r.skip_date, r.reason) for r in session.exec(stmt.order_by(col(SkipDate.skip_date))).all()]


def add_skip(session: Session, day: date, reason: str = "", *, now: datetime) -> bool:
    """True when the date was added, False when it was already skipped."""
    if session.get(SkipDate, day) is not None:
        return False
    session.add(SkipDate(skip_date=day, reason=reason, created_at=now))
    session.flush()
    return True


def remove_skip(session: Session, day: date) -> bool:
    row = session.get(SkipDate, day)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def beat(
    session: Session, *, owner: str, started_at: datetime, next_run_at: datetime | None, now: datetime
) -> None:
    row = session.get(SchedulerHeartbeat, 1)
    if row is None:
        row = SchedulerHeartbeat(id=1)
    row.owner = owner
    row.started_at = started_at
    row.beat_at = now
    row.next_run_at = next_run_at
    session.add(row)


def heartbeat(session: Session) -> SchedulerHeartbeat | None:
    return session.get(SchedulerHeartbeat, 1)
