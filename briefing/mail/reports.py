"""What a message that came back to the bounce address says: a bounce, a complaint, or nothing useful.

Pure functions on bytes. The database decides whose copy it was and what follows; this module only
reads the message, and never raises on one, however malformed: a bounce handler that fails on
bad input gets the input sent back to it, which is how mail loops start.

- Complaints: ARF (RFC 5965), a `multipart/report; report-type=feedback-report` with a
  `message/feedback-report` part, as mailbox providers' feedback loops send them.
- Delivery status notifications: RFC 3464 `message/delivery-status` parts are read here for each
  recipient's Action, Status and Diagnostic-Code; flufl.bounce finds the failed recipients in the
  non-standard shapes it knows (Exim, qmail, Exchange, Yahoo, ...) and in RFC 3464 ones.
- Hard or soft comes from the status: 5.x.x is hard, 4.x.x soft, none given follows the action.
  One exception: x.7.x (security or policy, such as "rejected as spam" or a DMARC failure) is
  soft even when permanent, because it is about the message or the sender, not the address, and
  must never take a whole list off at once.
- Delay warnings (Action: delayed) and positive notifications (delivered, relayed, expanded) are
  not failures: the server is still trying, or it worked.
- Auto-replies (RFC 3834 `Auto-Submitted`, `X-Autoreply`, `X-Autorespond`, `Precedence:
  auto_reply`, out-of-office subjects) are recognised so they change nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from enum import StrEnum

from flufl.bounce import all_failures

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 10 * 1024 * 1024  # far above any DSN; larger is not a report
MAX_TEXT = 500


class ReportKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    DELAY = "delay"
    DELIVERED = "delivered"
    AUTO_REPLY = "auto-reply"
    UNKNOWN = "unknown"

    @property
    def counts(self) -> bool:
        """Whether a report of this kind is recorded against a reader."""
        return self in (ReportKind.HARD, ReportKind.SOFT, ReportKind.COMPLAINT)


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient a report is about: who, how bad, and what the far end said."""

    recipient: str
    kind: ReportKind
    status: str = ""  # RFC 3463 status (5.1.1) or, for a complaint, the feedback type (abuse)
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    kind: ReportKind
    sha256: str
    format: str = ""  # rfc3464, arf, non-standard, auto-reply, ...
    failures: tuple[Failure, ...] = ()
    # Header values that may carry the return path the copy was sent with (envelope recipient first).
    return_paths: tuple[str, ...] = ()
    # Message-IDs of the original message, as quoted in the report.
    message_ids: tuple[str, ...] = ()
    note: str = ""  # why nothing counts, for the one line a command prints
    recipients: tuple[str, ...] = field(default=())

    @property
    def worst(self) -> Failure | None:
        """The failure that decides the copy's fate: a hard one beats a soft one."""
        order = {ReportKind.COMPLAINT: 0, ReportKind.HARD: 1, ReportKind.SOFT: 2}
        ranked = sorted(self.failures, key=lambda f: order.get(f.kind, 9))
        return ranked[0] if ranked else None


_ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "x-delivered-to", "to")
_MESSAGE_ID_RE = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\s]{3,250}>)")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_VACATION_SUBJECT_RE = re.compile(
    r"^\s*(auto(matic)?[ _-]?(reply|response|respond|answer|antwort)|autosvar|auto:|"
    r"out of (the )?office|ooo\b|on vacation|vacation|away from (my|the) |absence|abwesen|"
    r"r[ée]ponse automatique|respuesta autom|risposta automatica|automatisch)",
    re.IGNORECASE,
)
_COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})


def _text(value: object, limit: int = MAX_TEXT) -> str:
    """One printable line from a header or field value that came from a stranger."""
    text = str(value or "")
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())[:limit]


def _address(value: str) -> str:
    """The address in an RFC 3464 recipient field (`rfc822; a@example.com`) or a header."""
    _, _, rest = value.rpartition(";") if ";" in value else ("", "", value)
    found = _ADDRESS_RE.search(rest or value)
    return found.group(0).strip(".") if found else ""


def _status_kind(status: str, action: str) -> ReportKind:
    if status.startswith("5."):
        return ReportKind.SOFT if status.startswith("5.7.") else ReportKind.HARD
    if status.startswith("4."):
        return ReportKind.SOFT
    return ReportKind.HARD if action.startswith(("fail", "error")) else ReportKind.SOFT


def _header_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part, however it was parsed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):
        blocks = re.split(r"\r?\n[ \t]*\r?\n", payload.strip())
        return [HeaderParser(policy=compat32).parsestr(b + "\n") for b in blocks if b.strip()]
    return []


def _original_messages(msg: Message) -> list[Message]:
    """The original message (or its headers) quoted in a report."""
    found: list[Message] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list):
                found.extend(p for p in payload if isinstance(p, Message))
        elif ctype in ("text/rfc822-headers", "text/global-headers"):
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                found.append(HeaderParser(policy=compat32).parsestr(body.decode("utf-8", "replace")))
    return found


def _message_ids(msg: Message, originals: list[Message]) -> tuple[str, ...]:
    ids: list[str] = []
    for original in originals:
        value = _text(original.get("message-id", ""), 300)
        if value.startswith("<") and value.endswith(">"):
            ids.append(value)
    own = _text(msg.get("message-id", ""), 300)
    for part in msg.walk():  # non-standard bounces quote the original inline in their text
        if part.get_content_maintype() == "text" and part.get_content_type() != "text/rfc822-headers":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                ids.extend(m for m in _MESSAGE_ID_RE.findall(body.decode("utf-8", "replace")[:200_000]))
    return tuple(dict.fromkeys(i for i in ids if i != own))


def _return_paths(msg: Message, originals: list[Message], extra: Iterable[str]) -> tuple[str, ...]:
    values = [v for v in extra if v]
    for name in _ENVELOPE_HEADERS:
        values.extend(str(v) for v in msg.get_all(name, []))
    for original in originals:
        values.extend(str(v) for v in original.get_all("return-path", []))
    return tuple(_text(v, 1000) for v in values if v)


def _failed_by_flufl(msg: Message) -> tuple[set[str], set[str]]:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:
        log.debug("a bounce detector failed on this message", exc_info=True)
        return set(), set()

    def decode(found: frozenset[bytes]) -> set[str]:
        return {a.decode("ascii", "replace").strip() for a in found if b"@" in a}

    return decode(temporary), decode(permanent)


def _is_auto_reply(msg: Message, *, loose: bool) -> bool:
    """RFC 3834 and the common vacation markers; `loose` also trusts a bare Auto-Submitted."""
    if any(msg.get(h) for h in ("x-autoreply", "x-autorespond", "x-autoresponder")):
        return True
    if _text(msg.get("precedence", "")).lower() == "auto_reply":
        return True
    if _VACATION_SUBJECT_RE.match(_text(msg.get("subject", ""))):
        return True
    submitted = _text(msg.get("auto-submitted", "")).lower()
    return loose and bool(submitted) and submitted != "no"


def _feedback(msg: Message, report: Message, digest: str, extra: tuple[str, ...]) -> Report:
    fields: Message | None = None
    for part in report.walk():
        if part.get_content_type() == "message/feedback-report":
            blocks = _header_blocks(part)
            fields = blocks[0] if blocks else None
            break
    originals = _original_messages(msg)
    if fields is None:
        return Report(ReportKind.UNKNOWN, digest, "arf", note="a feedback report without its fields")
    feedback_type = _text(fields.get("feedback-type", "")).lower()
    recipients = [_address(str(v)) for v in fields.get_all("original-rcpt-to", [])]
    recipients = [r for r in recipients if r]
    return_paths = _return_paths(
        msg, originals, (*extra, *map(str, fields.get_all("original-mail-from", [])))
    )
    if feedback_type not in _COMPLAINT_TYPES:
        return Report(
            ReportKind.UNKNOWN,
            digest,
            "arf",
            note=f"a feedback report of type {feedback_type or 'none'!r}, not a complaint",
        )
    detail = _text(fields.get("user-agent", "") or msg.get("from", ""))
    failures = tuple(Failure(r, ReportKind.COMPLAINT, feedback_type, detail) for r in recipients) or (
        Failure("", ReportKind.COMPLAINT, feedback_type, detail),
    )
    return Report(
        ReportKind.COMPLAINT,
        digest,
        "arf",
        failures=failures,
        return_paths=return_paths,
        message_ids=_message_ids(msg, originals),
        recipients=tuple(recipients),
    )


def _delivery_status(msg: Message, digest: str, extra: tuple[str, ...]) -> Report | None:
    parts = [
        p
        for p in msg.walk()
        if p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
    ]
    if not parts:
        return None
    failures: list[Failure] = []
    delayed = delivered = 0
    per_message: list[str] = []
    for part in parts:
        blocks = _header_blocks(part)
        if blocks:
            per_message.extend(str(v) for v in blocks[0].get_all("x-postfix-sender", []))
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            action = _text(block.get("action", "")).lower()
            recipient = _address(str(block.get("original-recipient", ""))) or _address(
                str(block.get("final-recipient", ""))
            )
            status_match = _STATUS_RE.search(_text(block.get("status", "")))
            status = ".".join(status_match.groups()) if status_match else ""
            diagnostic = _text(block.get("diagnostic-code", ""))
            if action.startswith("delayed"):
                delayed += 1
            elif action.startswith(("delivered", "relayed", "expanded")):
                delivered += 1
            elif action.startswith(("fail", "error")):
                failures.append(Failure(recipient, _status_kind(status, action), status, diagnostic))
    _, permanent = _failed_by_flufl(msg)
    known = {f.recipient.casefold() for f in failures}
    failures.extend(Failure(a, ReportKind.HARD) for a in sorted(permanent) if a.casefold() not in known)
    originals = _original_messages(msg)
    common = {
        "return_paths": _return_paths(msg, originals, (*extra, *per_message)),
        "message_ids": _message_ids(msg, originals),
    }
    if failures:
        kind = ReportKind.HARD if any(f.kind is ReportKind.HARD for f in failures) else ReportKind.SOFT
        return Report(
            kind,
            digest,
            "rfc3464",
            failures=tuple(failures),
            recipients=tuple(f.recipient for f in failures if f.recipient),
            **common,  # type: ignore[arg-type]
        )
    if delayed:
        return Report(ReportKind.DELAY, digest, "rfc3464", note="a delay warning: the server is still trying")
    if delivered:
        return Report(ReportKind.DELIVERED, digest, "rfc3464", note="a delivery notice: it arrived")
    return Report(ReportKind.UNKNOWN, digest, "rfc3464", note="a delivery report that names no failure")


def read_report(raw: bytes, *, envelope_recipient: str = "") -> Report:
    """Classify one message that arrived at the bounce address. Never raises."""
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_REPORT_BYTES:
        return Report(ReportKind.UNKNOWN, digest, note=f"larger than {MAX_REPORT_BYTES} bytes")
    if not raw.strip():
        return Report(ReportKind.UNKNOWN, digest, note="an empty message")
    extra = (envelope_recipient,) if envelope_recipient else ()
    try:
        msg = message_from_bytes(raw, policy=compat32)
        ctype = msg.get_content_type()
        report_type = _text(msg.get_param("report-type", "", header="content-type") or "").lower()
        parts = {p.get_content_type() for p in msg.walk()}
        if (ctype == "multipart/report" and report_type == "feedback-report") or (
            "message/feedback-report" in parts
        ):
            return _feedback(msg, msg, digest, extra)
        found = _delivery_status(msg, digest, extra)
        if found is not None:
            return found
        if _is_auto_reply(msg, loose=False):
            return Report(ReportKind.AUTO_REPLY, digest, "auto-reply", note="an automatic reply")
        temporary, permanent = _failed_by_flufl(msg)
        if permanent:
            originals = _original_messages(msg)
            status = _first_status(msg)
            kind = _status_kind(status, "failed")
            failures = tuple(Failure(a, kind, status) for a in sorted(permanent))
            return Report(
                kind,
                digest,
                "non-standard",
                failures=failures,
                return_paths=_return_paths(msg, originals, extra),
                message_ids=_message_ids(msg, originals),
                recipients=tuple(sorted(permanent)),
            )
        if temporary:
            return Report(
                ReportKind.DELAY, digest, "non-standard", note="a delay warning: the server is still trying"
            )
        if _is_auto_reply(msg, loose=True):
            return Report(ReportKind.AUTO_REPLY, digest, "auto-reply", note="an automatic reply")
    except Exception:
        log.debug("could not read a returned message", exc_info=True)
        return Report(ReportKind.UNKNOWN, digest, note="not a readable message")
    return Report(ReportKind.UNKNOWN, digest, note="neither a bounce nor a complaint")


def _first_status(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                found = _STATUS_RE.search(body.decode("utf-8", "replace")[:50_000])
                if found:
                    return ".".join(found.groups())
    return ""
