"""Whether an edition may be sent now: its state, its send time and its window (max lateness).

The one place these rules live; `send.send_edition` asks before it freezes or sends anything.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session

from briefing import calendar as cal
from briefing.domain import EditionData, EditionStatus
from briefing.errors import Conflict
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store


def send_refusal(
    session: Session,
    edition: EditionData,
    now: datetime,
    send_at: datetime,
    window_end: datetime,
    *,
    force: bool,
    retry_failed: bool,
    resume: bool = False,
    skipped: str | None = None,
) -> str | None:
    """Why this send must not go ahead: a Conflict for a refusal, a message when there is nothing to
    do (None: go ahead). An edition found past its window unsent is marked expired here."""
    status = EditionStatus(edition.status)
    day = edition.edition_date.isoformat()
    if status == EditionStatus.SENT and not retry_failed:
        counts = ledger.counts(session, edition.id)
        return (
            f"the edition of {day} was already sent ({counts.sent} copies); nothing to do. "
            "briefing never sends a second edition for one date; use --retry-failed to retry failed copies"
        )
    if status == EditionStatus.CANCELLED:
        raise Conflict(f"the edition of {day} was cancelled")
    if status == EditionStatus.HELD or edition.held:
        raise Conflict(f"the edition of {day} is on hold; release it with `briefing release {day}`")
    if status == EditionStatus.EXPIRED and not force:
        raise Conflict(
            f"the edition of {day} expired (not started by {_hhmm(window_end)}); "
            f"send it late on purpose with `briefing send --date {day} --force`"
        )
    if status == EditionStatus.HALTED and not resume:
        raise Conflict(
            f"the edition of {day} was halted because too many addresses bounced; check the list, "
            f"then resume it with `briefing send --date {day} --resume`"
        )
    if skipped and status == EditionStatus.SCHEDULED and not force and not retry_failed:
        raise Conflict(
            f"{skipped}; send it anyway with `briefing send --date {day} --force`, "
            f"or put the date back with `briefing unskip {day}`"
        )
    if retry_failed:
        if status not in (
            EditionStatus.SENT,
            EditionStatus.PARTIAL,
            EditionStatus.PAUSED,
            EditionStatus.SENDING,
        ):
            raise Conflict(f"the edition of {day} has not been sent yet; there is nothing to retry")
        return None
    if force:
        return None
    if now < send_at and status == EditionStatus.SCHEDULED:
        raise Conflict(
            f"the edition of {day} is due at {_hhmm(send_at)}; it is too early to send it. "
            "Use --force to send it now, or let the scheduler send it"
        )
    if now > window_end:
        if status == EditionStatus.SCHEDULED:
            edition_store.set_status(
                session,
                edition.id,
                EditionStatus.EXPIRED,
                error=f"not started by {window_end.isoformat()}",
                now=now,
            )
            session.commit()
        raise Conflict(
            f"the edition of {day} is past its window (send time {_hhmm(send_at)} + max lateness); "
            f"nothing was sent late. Use `briefing send --date {day} --force` to send it anyway"
        )
    return None


def skipped_date(edition_date: date, plan: cal.SendPlan) -> str | None:
    """The skip-list rule, for the scheduler and `briefing send` alike: a skipped date gets no edition
    unless someone forces one. The reason when the date is skipped, else None."""
    if edition_date in plan.skip_dates:
        return f"{edition_date.isoformat()} is on the skip list (`briefing skip` or BRIEFING_SKIP_DATES)"
    return None


def _hhmm(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
