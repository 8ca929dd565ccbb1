"""Bounce and complaint rates per edition, and when they are bad enough to call the briefing unhealthy.

Mailbox providers judge a sender by these numbers: Gmail and Yahoo want the complaint rate under
0.3% (Gmail asks for under 0.1%), and a hard-bounce rate of a few percent says the list is going
stale. Editors see them in `briefing editions show`, on the editions page, and `briefing status`
fails when the last edition that went out passes the limits (BRIEFING_MAX_COMPLAINT_RATE,
BRIEFING_MAX_HARD_BOUNCE_RATE).

Every rate here is readers over copies sent, for one edition: hard bounces, soft bounces and
complaints each count a reader once (see briefing.store.bounce_rates for exactly what counts), and
copies sent are the ledger rows the SMTP server took or refused for their reader (sent, sent with
no reply, or refused with a reply code). An edition with no copy sent has no rate (None), not 0%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlmodel import Session

from briefing.store import bounce_rates as rate_store
from briefing.store import editions as edition_store
from briefing.store.bounce_rates import BounceCounts

CHART_EDITIONS = 30
DENOMINATOR = "copies sent (delivered, sent without a reply, or refused with an SMTP code)"


@dataclass(frozen=True, slots=True)
class EditionRates:
    edition_id: int
    edition_date: date
    copies_sent: int
    hard: int
    soft: int
    complaints: int
    hard_rate: float | None  # None: no copy was sent
    soft_rate: float | None
    complaint_rate: float | None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Above these, `briefing status` is unhealthy (a share of copies sent: 0.001 is 0.1%)."""

    max_complaint_rate: float = 0.001
    max_hard_bounce_rate: float = 0.02


def edition_rates_from(c: BounceCounts) -> EditionRates:
    def share(n: int) -> float | None:
        return n / c.copies_sent if c.copies_sent else None

    return EditionRates(
        edition_id=c.edition_id,
        edition_date=c.edition_date,
        copies_sent=c.copies_sent,
        hard=c.hard,
        soft=c.soft,
        complaints=c.complaints,
        hard_rate=share(c.hard),
        soft_rate=share(c.soft),
        complaint_rate=share(c.complaints),
    )


def edition_rates(
    session: Session, edition_date: date, *, newsletter_id: int, kind: str = "regular"
) -> EditionRates:
    """The rates of one edition; NotFound (field `date`) when there is no edition that day."""
    edition = edition_store.get_edition(session, edition_date, newsletter_id=newsletter_id, kind=kind)
    return edition_rates_from(rate_store.for_editions(session, [edition.id])[0])


def rates_of(session: Session, edition_ids: Sequence[int]) -> dict[int, EditionRates]:
    """The rates of many editions in one query, by edition id (for a list of editions)."""
    return {c.edition_id: edition_rates_from(c) for c in rate_store.for_editions(session, edition_ids)}


def recent_rates(
    session: Session,
    *,
    limit: int = CHART_EDITIONS,
    until: date | None = None,
    newsletter_id: int | None = None,
) -> list[EditionRates]:
    """The newest `limit` editions that sent copies (of one newsletter, or all), oldest first."""
    found = rate_store.recent(session, limit=limit, until=until, newsletter_id=newsletter_id)
    return [edition_rates_from(c) for c in reversed(found)]


def last_sent(session: Session, *, until: date | None = None) -> EditionRates | None:
    """The newest edition that sent at least one copy, with its rates; None before the first send."""
    found = rate_store.recent(session, limit=1, until=until)
    return edition_rates_from(found[0]) if found else None


def percent(rate: float | None) -> str:
    """A rate for people: 0.25%, <0.01% for a small non-zero share, "-" when nothing was sent."""
    if rate is None:
        return "-"
    if rate == 0:
        return "0%"
    if rate < 0.0001:
        return "<0.01%"
    return f"{rate * 100:.2f}%"


def problems(rates: EditionRates | None, limits: RateLimits) -> list[str]:
    """Why these rates make the briefing unhealthy, one sentence each; [] when they are within limits."""
    if rates is None:
        return []
    out = []
    day, sent = rates.edition_date, rates.copies_sent
    if rates.complaint_rate is not None and rates.complaint_rate > limits.max_complaint_rate:
        out.append(
            f"the edition of {day} drew spam complaints from {percent(rates.complaint_rate)} of the copies "
            f"sent ({rates.complaints} of {sent}), above the limit of {percent(limits.max_complaint_rate)} "
            "(BRIEFING_MAX_COMPLAINT_RATE); mailbox providers junk senders past 0.3%"
        )
    if rates.hard_rate is not None and rates.hard_rate > limits.max_hard_bounce_rate:
        out.append(
            f"the edition of {day} bounced hard for {percent(rates.hard_rate)} of the copies sent "
            f"({rates.hard} of {sent}), above the limit of {percent(limits.max_hard_bounce_rate)} "
            "(BRIEFING_MAX_HARD_BOUNCE_RATE); check where the latest addresses came from"
        )
    return out


def as_json(rates: EditionRates) -> dict[str, object]:
    """The rates for scripts: counts, rates as fractions (null when nothing was sent), the denominator."""
    return {
        "copies_sent": rates.copies_sent,
        "hard_bounces": rates.hard,
        "soft_bounces": rates.soft,
        "complaints": rates.complaints,
        "hard_bounce_rate": rates.hard_rate,
        "soft_bounce_rate": rates.soft_rate,
        "complaint_rate": rates.complaint_rate,
    }
