"""Alerts to the editors: one email per problem per edition, and one more when it is resolved.

Each newsletter's editions have their own problems (the same date can be blocked in one and sent
in another), and a special edition's are named with its kind, so its alerts never close the
regular edition's. An alert about a newsletter other than the first names it in its subject.

The scheduler retries a blocked edition every minute and may be restarted at any time, so whether
the editors were already told is kept in the database (`alert_state`), not in the process. Nothing
here raises: an alert that cannot be recorded or sent is logged on one line and tried again the
next time the same problem is seen. Alerts are never sent from inside a database transaction, so
on SQLite an alert cannot wait on the write lock its own caller holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any

import sqlalchemy as sa

from briefing.db import session_scope
from briefing.domain import Clock
from briefing.mail.transport import Outcome, Transport
from briefing.newsletter import PRIMARY_ID, REGULAR
from briefing.store import alerts as alert_store

# The problems an edition can have; each is alerted once until it is resolved.
PREFLIGHT = "preflight"  # the preflight before send time found errors
NOT_SENT = "not_sent"  # the send was refused (preflight errors at send time, or another refusal)
EXPIRED = "expired"  # the window closed before the edition started (also: held past its window)
UNFINISHED = "unfinished"  # started and not finished: paused, partial or halted
PROBLEMS = (PREFLIGHT, NOT_SENT, EXPIRED, UNFINISHED)

Mailer = Callable[[str, str], bool]  # (subject, body) -> accepted
# Headers on one line up to RFC 5322's limit: Python folds a long Subject right after its name,
# and some clients then show it with a leading space.
_ALERT_POLICY = SMTP.clone(max_line_length=998)
Log = logging.Logger | logging.LoggerAdapter[Any]


def problem_key(problem: str, kind: str = REGULAR) -> str:
    """How a problem of one edition kind is stored: "not_sent", or "not_sent:special-1" for a special."""
    return problem if kind == REGULAR else f"{problem}:{kind}"


def problem_keys(kind: str = REGULAR, problems: Iterable[str] = PROBLEMS) -> list[str]:
    return [problem_key(p, kind) for p in problems]


@dataclass(frozen=True, slots=True)
class AlertMail:
    """How an alert email is addressed and sent; `sender` is read when an alert goes out."""

    to: str
    sender: Callable[[], tuple[str, str]]  # (From address, Message-ID domain)
    transport: Callable[[], Transport]
    clock: Clock

    def __call__(self, subject: str, body: str) -> bool:
        from_address, domain = self.sender()
        message = EmailMessage(policy=_ALERT_POLICY)
        message["From"] = from_address
        message["To"] = self.to
        message["Subject"] = f"[briefing] {subject}".replace("\r", " ").replace("\n", " ")
        message["Date"] = format_datetime(self.clock.now())
        message["Message-ID"] = make_msgid(domain=domain)
        message.set_content(body)
        transport = self.transport()
        try:
            result = transport.send(from_address, self.to, message.as_bytes())
        finally:
            transport.close()
        if result.outcome is not Outcome.ACCEPTED:
            raise RuntimeError(f"not accepted: {result.code or ''} {result.reply}".strip())
        return True


class Alerts:
    """Raise and resolve the problems of one newsletter's editions; `mail` is None when no alert
    address is set. `label` (the newsletter's name, empty for the first one) leads each subject."""

    def __init__(
        self,
        engine: sa.Engine,
        mail: Mailer | None,
        *,
        clock: Clock,
        log: Log,
        newsletter_id: int = PRIMARY_ID,
        label: str = "",
    ) -> None:
        self.engine = engine
        self.mail = mail
        self.clock = clock
        self.log = log
        self.newsletter_id = newsletter_id
        self.label = label

    def of(self, newsletter_id: int, label: str = "") -> Alerts:
        """The same mail and clock, for another newsletter's editions."""
        return Alerts(
            self.engine, self.mail, clock=self.clock, log=self.log, newsletter_id=newsletter_id, label=label
        )

    def _subject(self, subject: str) -> str:
        return f"[{self.label}] {subject}" if self.label and subject else subject

    def problem(self, day: date, key: str, subject: str, body: str) -> bool:
        """Record the problem and email it unless the editors were told already; True when new.

        A problem that cannot be recorded is not emailed: it is seen again at the next run (the
        scheduler retries every minute), and an email sent without its record would be repeated.
        """
        now = self.clock.now()
        nid = self.newsletter_id
        subject = self._subject(subject)
        try:
            with session_scope(self.engine) as session:
                new = alert_store.raise_alert(session, day, key, subject, newsletter_id=nid, now=now)
                if new and self.mail is None:  # nobody to email: the log line is the alert
                    alert_store.mark_notified(session, day, key, newsletter_id=nid, now=now)
        except sa.exc.SQLAlchemyError as exc:
            self.log.error(
                "could not record the alert %r for %s (%s); trying again at the next run",
                subject,
                day,
                one_line(exc),
            )
            return False
        if not new or self.mail is None:
            return new
        if self._send(subject, body):
            try:
                with session_scope(self.engine) as session:
                    alert_store.mark_notified(session, day, key, newsletter_id=nid, now=self.clock.now())
            except sa.exc.SQLAlchemyError as exc:
                self.log.error("the alert %r was sent but could not be recorded (%s)", subject, one_line(exc))
        return True

    def resolved(
        self, day: date, keys: Iterable[str] | None, subject: str, body: str, *, follow_up: bool = True
    ) -> int:
        """Close the edition's open problems (all when `keys` is None); a follow-up for the ones told.

        `follow_up=False` closes them without an email: another alert has replaced them (an edition
        blocked until its window closed is now expired, and that alert says so).
        """
        try:
            with session_scope(self.engine) as session:
                closed = alert_store.resolve(
                    session, day, keys, newsletter_id=self.newsletter_id, now=self.clock.now()
                )
        except sa.exc.SQLAlchemyError as exc:
            self.log.error("could not record that the problems of %s were resolved (%s)", day, one_line(exc))
            return 0
        told = [a for a in closed if a.notified_at is not None]
        if told and follow_up and self.mail is not None:
            earlier = "\n".join(f"- {a.subject}" for a in told)
            self._send(self._subject(subject), f"{body}\n\nThis resolves the earlier alert(s):\n{earlier}")
        return len(closed)

    def _send(self, subject: str, body: str) -> bool:
        assert self.mail is not None
        try:
            return self.mail(subject, body)
        except Exception as exc:  # noqa: BLE001 - an alert never takes the scheduler down
            self.log.error("could not send the alert email %r: %s", subject, one_line(exc))
            return False


def one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return text.splitlines()[0][:300]
