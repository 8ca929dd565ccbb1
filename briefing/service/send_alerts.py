"""What the editors are told about the scheduler's preflight, send or pass: blocked, refused,
expired, going out, unfinished, sent.

Apart from the jobs (service.schedule), which decide when and whether to send: this is the wording
and the one-alert-per-problem bookkeeping, which change for other reasons. Every function takes
the edition's kind, so a special's problems are its own and never close the regular edition's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from briefing import calendar as cal
from briefing.domain import EditionStatus
from briefing.edition.preflight import PreflightReport as Report
from briefing.newsletter import REGULAR, edition_label
from briefing.service import alerts
from briefing.service.alerts import Alerts, Log, problem_key, problem_keys
from briefing.service.edition_pass import SendOutcome
from briefing.service.health import UNFINISHED


def _check(edition_date: date, kind: str) -> str:
    if kind != REGULAR:
        return "Check it with: briefing specials list"
    return f"Check it with: briefing preflight --date {edition_date}"


def _again(edition_date: date, kind: str) -> str:
    if kind != REGULAR:
        return "To send it anyway, make it again with: briefing special"
    return f"To send it anyway: briefing send --date {edition_date} --force"


def preflight(box: Alerts, log: Log, edition_date: date, report: Report, subject: str, *, quiet: bool) -> str:
    """The preflight before send time: its errors alerted once, its fix reported once."""
    if report.ok:
        if not quiet:
            log.info("preflight for %s passed (%d warnings): %s", edition_date, len(report.warnings), subject)
        resolved = box.resolved(
            edition_date,
            [alerts.PREFLIGHT],
            f"Preflight passes for the edition of {edition_date}",
            f"The edition of {edition_date} passes preflight now and goes out at its send time.",
        )
        if resolved:
            log.info("preflight for %s passes now; the editors were told", edition_date)
        return "ok"
    problems = "\n".join(f"- {p}" for p in report.errors)
    new = box.problem(
        edition_date,
        alerts.PREFLIGHT,
        f"Preflight errors in the edition of {edition_date}",
        f"The edition of {edition_date} will not go out until these are fixed:\n\n{problems}\n\n"
        f"{_check(edition_date, REGULAR)}",
    )
    if new or not quiet:
        log.error("preflight for %s found %d errors:\n%s", edition_date, len(report.errors), problems)
    return "errors"


def preflight_not_run(box: Alerts, log: Log, edition_date: date, error: Exception) -> str:
    log.error("preflight for %s could not run: %s", edition_date, error)
    box.problem(edition_date, alerts.PREFLIGHT, f"Preflight could not run for {edition_date}", str(error))
    return "error"


def blocked(
    box: Alerts,
    log: Log,
    edition_date: date,
    errors: Sequence[str],
    latest: datetime,
    *,
    kind: str = REGULAR,
) -> str:
    """A send refused by preflight errors: alerted once, retried by the watch while the window is open."""
    label = edition_label(edition_date, kind)
    problems = "\n".join(f"- {p}" for p in errors)
    new = box.problem(
        edition_date,
        problem_key(alerts.NOT_SENT, kind),
        f"The edition of {label} was not sent: preflight errors",
        f"Preflight errors:\n\n{problems}\n\nIt goes out within a minute of the fix while its "
        f"window is open (until {latest:%H:%M} UTC). {_check(edition_date, kind)}",
    )
    if new:
        log.error("NOT SENT: the edition of %s has preflight errors:\n%s", label, problems)
    else:
        log.info("the edition of %s is still blocked by %d preflight errors", label, len(errors))
    return "preflight failed"


def refused(box: Alerts, log: Log, edition_date: date, error: Exception, *, kind: str = REGULAR) -> str:
    label = edition_label(edition_date, kind)
    key = problem_key(alerts.NOT_SENT, kind)
    if box.problem(edition_date, key, f"The edition of {label} was not sent", str(error)):
        log.error("the edition of %s was not sent: %s", label, error)
    return "refused"


def expired(
    box: Alerts,
    log: Log,
    edition_date: date,
    decision: cal.Decision,
    *,
    on_hold: bool,
    kind: str = REGULAR,
) -> str:
    """An edition that expired: logged, one alert, and its earlier blocking alerts closed quietly."""
    label = edition_label(edition_date, kind)
    again = _again(edition_date, kind)
    if on_hold:
        log.error(
            "EXPIRED: the edition of %s was on hold past its window (%s); nothing was sent",
            label,
            decision.latest,
        )
        subject = f"The edition of {label} expired on hold"
        body = (
            f"It was held and not released by {decision.latest} (due at {decision.send_at}). "
            f"Nothing was sent late. {again}"
        )
    else:
        log.error(
            "EXPIRED: the edition of %s was due at %s and the window closed at %s; nothing was sent. %s",
            label,
            decision.send_at,
            decision.latest,
            again,
        )
        subject = f"The edition of {label} expired"
        body = (
            f"It was due at {decision.send_at} and was not started by {decision.latest}. Nothing was "
            f"sent late. {again}"
        )
    box.problem(edition_date, problem_key(alerts.EXPIRED, kind), subject, body)
    blocking = problem_keys(kind, (alerts.PREFLIGHT, alerts.NOT_SENT))
    box.resolved(edition_date, blocking, "", "", follow_up=False)
    return "expired"


def after_send(
    box: Alerts, log: Log, edition_date: date, outcome: SendOutcome, *, stopping: bool, kind: str = REGULAR
) -> str:
    """Log a send's numbers and settle the alerts it calls for; returns the edition's status."""
    label = edition_label(edition_date, kind)
    report = outcome.report
    if report is not None:
        c = report.counts
        log.info(
            "edition of %s: %s (sent %d, failed %d, deferred %d, skipped %d, ambiguous %d, %.0f msg/s)",
            label,
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
        resolve_all(box, edition_date, outcome.message, kind=kind)
    elif report is not None:  # it started: whatever blocked it before is gone
        box.resolved(
            edition_date,
            problem_keys(kind, (alerts.PREFLIGHT, alerts.NOT_SENT)),
            f"The edition of {label} is going out",
            f"The edition of {label} started: {outcome.message}",
        )
    if status in UNFINISHED and not stopping:
        box.problem(
            edition_date,
            problem_key(alerts.UNFINISHED, kind),
            f"The edition of {label} is {status}",
            outcome.message,
        )
    return str(status)


def resolve_all(box: Alerts, edition_date: date, message: str, *, kind: str = REGULAR) -> None:
    label = edition_label(edition_date, kind)
    box.resolved(edition_date, problem_keys(kind), f"The edition of {label} is sent", message)
