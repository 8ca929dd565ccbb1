"""The alerts the editors were sent, one row per (newsletter, edition date, problem), kept across restarts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from briefing.models import AlertState
from briefing.newsletter import PRIMARY_ID


@dataclass(frozen=True, slots=True)
class AlertData:
    edition_date: date
    problem: str
    subject: str
    raised_at: datetime
    notified_at: datetime | None
    resolved_at: datetime | None
    newsletter_id: int = PRIMARY_ID


def _data(row: AlertState) -> AlertData:
    return AlertData(
        edition_date=row.edition_date,
        problem=row.problem,
        subject=row.subject,
        raised_at=row.raised_at,
        notified_at=row.notified_at,
        resolved_at=row.resolved_at,
        newsletter_id=row.newsletter_id,
    )


def _find(session: Session, newsletter_id: int, day: date, problem: str) -> AlertState | None:
    stmt = select(AlertState).where(
        col(AlertState.newsletter_id) == newsletter_id,
        col(AlertState.edition_date) == day,
        col(AlertState.problem) == problem,
    )
    return session.exec(stmt).first()


def raise_alert(
    session: Session, day: date, problem: str, subject: str, *, newsletter_id: int, now: datetime
) -> bool:
    """Record the problem as open; True when the editors still have to be told about it.

    False when they were already told and it has not been resolved since: that is the one rule
    that keeps a problem retried every minute (or across restarts) to a single email.
    """
    row = _find(session, newsletter_id, day, problem)
    if row is None:
        session.add(
            AlertState(
                newsletter_id=newsletter_id,
                edition_date=day,
                problem=problem,
                subject=subject[:300],
                raised_at=now,
            )
        )
        session.flush()
        return True
    if row.resolved_at is None and row.notified_at is not None:
        return False
    if row.resolved_at is not None:  # it came back after it was resolved: a new problem
        row.raised_at = now
        row.resolved_at = None
        row.notified_at = None
    row.subject = subject[:300]
    session.add(row)
    session.flush()
    return True


def mark_notified(session: Session, day: date, problem: str, *, newsletter_id: int, now: datetime) -> None:
    row = _find(session, newsletter_id, day, problem)
    if row is not None:
        row.notified_at = now
        session.add(row)
        session.flush()


def resolve(
    session: Session, day: date, problems: Iterable[str] | None, *, newsletter_id: int, now: datetime
) -> list[AlertData]:
    """Close a newsletter's open problems of a date (all of them when `problems` is None); the ones closed."""
    stmt = select(AlertState).where(
        col(AlertState.newsletter_id) == newsletter_id,
        col(AlertState.edition_date) == day,
        col(AlertState.resolved_at).is_(None),
    )
    if problems is not None:
        stmt = stmt.where(col(AlertState.problem).in_(list(problems)))
    closed = []
    for row in session.exec(stmt).all():
        row.resolved_at = now
        session.add(row)
        closed.append(_data(row))
    session.flush()
    return closed


def open_alerts(
    session: Session,
    days: Iterable[date] | None = None,
    *,
    since: date | None = None,
    newsletter_id: int | None = None,
) -> list[AlertData]:
    """Problems not yet resolved, oldest first (of one newsletter, or of all when None); for
    `briefing status`, the metrics and the scheduler's re-check of a blocked edition."""
    stmt = select(AlertState).where(col(AlertState.resolved_at).is_(None))
    if newsletter_id is not None:
        stmt = stmt.where(col(AlertState.newsletter_id) == newsletter_id)
    if days is not None:
        stmt = stmt.where(col(AlertState.edition_date).in_(list(days)))
    if since is not None:
        stmt = stmt.where(col(AlertState.edition_date) >= since)
    return [_data(r) for r in session.exec(stmt.order_by(col(AlertState.raised_at))).all()]
