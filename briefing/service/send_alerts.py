"""What the editors are told after the scheduler's send or pass: expired, going out, unfinished, sent.

Apart from the jobs (service.schedule), which decide when and whether to send: this is the wording
and the one-alert-per-problem bookkeeping, which change for other reasons.
"""

from __future__ import annotations

import logging
from datetime import date

from briefing import calendar as cal
from briefing.domain import EditionStatus
from briefing.service import alerts
from briefing.service.alerts import Alerts
from briefing.service.edition_pass import SendOutcome
from briefing.service.health import UNFINISHED


def expired(
    box: Alerts, log: logging.Logger, edition_date: date, decision: cal.Decision, *, on_hold: bool
) -> str:
    """An edition that expired: logged, one alert, and its earlier blocking alerts closed quietly."""
    if on_hold:
        log.error(
            "EXPIRED: the edition of %s was on hold past its window (%s); nothing was sent",
            edition_date,
            decision.latest,
        )
        subject = f"The edition of {edition_date} expired on hold"
        body = (
            f"It was held and not released by {decision.latest} (due at {decision.send_at}). "
            f"Nothing was sent late. To send it anyway: briefing send --date {edition_date} --force"
        )
    else:
        log.error(
            "EXPIRED: the edition of %s was due at %s and the window closed at %s; nothing was sent. "
            "Send it on purpose with: briefing send --date %s --force",
            edition_date,
            decision.send_at,
            decision.latest,
            edition_date,
        )
        subject = f"The edition of {edition_date} expired"
        body = (
            f"It was due at {decision.send_at} and was not started by {decision.latest}. Nothing was "
            f"sent late. To send it anyway: briefing send --date {edition_date} --force"
        )
    box.problem(edition_date, alerts.EXPIRED, subject, body)
    box.resolved(edition_date, [alerts.PREFLIGHT, alerts.NOT_SENT], "", "", follow_up=False)
    return "expired"


def after_send(
    box: Alerts, log: logging.Logger, edition_date: date, outcome: SendOutcome, *, stopping: bool
) -> str:
    """Log a send's numbers and settle the alerts it calls for; returns the edition's status."""
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
    status = outcome.edition.status
    if status == EditionStatus.SENT:
        resolve_all(box, edition_date, outcome.message)
    elif report is not None:  # it started: whatever blocked it before is gone
        box.resolved(
            edition_date,
            [alerts.PREFLIGHT, alerts.NOT_SENT],
            f"The edition of {edition_date} is going out",
            f"The edition of {edition_date} started: {outcome.message}",
        )
    if status in UNFINISHED and not stopping:
        box.problem(
            edition_date, alerts.UNFINISHED, f"The edition of {edition_date} is {status}", outcome.message
        )
    return str(status)


def resolve_all(box: Alerts, edition_date: date, message: str) -> None:
    box.resolved(edition_date, None, f"The edition of {edition_date} is sent", message)
