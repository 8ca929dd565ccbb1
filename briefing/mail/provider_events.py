"""What mail providers' webhooks say about a copy, as the bounce reports the rules already read.

Amazon SES (through SNS), Mailgun, Postmark and SendGrid each post their own JSON. Each parser here
takes the already-verified, already-parsed body and returns one `ProviderEvent` per reader it is
about; events that change nothing for a reader (delivered, opened, a provider's own retry) are left
out. `ProviderEvent.report` turns one into a `mail.reports.Report`, so a webhook goes through the
same identification (VERP return path, then Message-ID, then the recipient) and the same rules as a
DSN that came back by mail.

Bodies come from the network: every field is checked for its type, anything unexpected is skipped,
and nothing here raises on junk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from briefing.mail.reports import Failure, Report, ReportKind

MAX_FIELD = 1000
_KINDS = {"hard": ReportKind.HARD, "soft": ReportKind.SOFT, "complaint": ReportKind.COMPLAINT}
UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One thing a provider reports about one reader's copy."""

    provider: str  # ses, mailgun, postmark, sendgrid
    event_id: str  # the provider's id for the event: a replay carries the same one
    kind: str  # hard, soft, complaint or unsubscribe
    recipient: str
    message_id: str = ""  # the copy's Message-ID, when the provider passes it on
    return_path: str = ""  # the envelope sender the copy went out with (VERP), when passed on
    code: str = ""  # RFC 3463 status (5.1.1), or the complaint's feedback type
    diagnostic: str = ""

    def report(self) -> Report:
        kind = _KINDS.get(self.kind, ReportKind.UNKNOWN)
        key = "\0".join((self.provider, self.event_id, self.recipient.casefold()))
        message_id = self.message_id.strip()
        if message_id and not message_id.startswith("<"):
            message_id = f"<{message_id}>"
        return Report(
            kind=kind,
            sha256=hashlib.sha256(key.encode("utf-8", "replace")).hexdigest(),
            format=self.provider,
            failures=(Failure(self.recipient, kind, self.code, self.diagnostic),),
            return_paths=(self.return_path,) if self.return_path else (),
            message_ids=(message_id,) if message_id else (),
            recipients=(self.recipient,),
        )


def _text(value: object, limit: int = MAX_FIELD) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return ""
    # No lone surrogates or NULs: a database refuses them, and a provider would retry for days.
    clean = value.encode("utf-8", "replace").decode("utf-8").replace("\0", " ")
    return " ".join(clean.split())[:limit]


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _event(provider: str, event_id: str, kind: str, recipient: str, **extra: str) -> ProviderEvent | None:
    recipient = recipient.strip()
    if not event_id or "@" not in recipient or len(recipient) > 320:
        return None
    return ProviderEvent(provider, event_id[:200], kind, recipient, **extra)


# --------------------------------------------------------------------------- Amazon SES


def ses_events(notification: dict[str, Any], sns_message_id: str) -> list[ProviderEvent]:
    """An SES bounce or complaint notification (the `Message` of an SNS notification, parsed)."""
    kind_name = _text(notification.get("notificationType") or notification.get("eventType"))
    mail = _dict(notification.get("mail"))
    headers = {
        _text(h.get("name")).lower(): _text(h.get("value"))
        for h in _list(mail.get("headers"))
        if isinstance(h, dict)
    }
    extra = {
        "message_id": _text(_dict(mail.get("commonHeaders")).get("messageId"))
        or headers.get("message-id", ""),
        "return_path": _text(mail.get("source")) or headers.get("return-path", ""),
    }
    out: list[ProviderEvent | None] = []
    if kind_name == "Bounce":
        bounce = _dict(notification.get("bounce"))
        bounce_type = _text(bounce.get("bounceType"))
        kind = "hard" if bounce_type == "Permanent" else "soft"
        event_id = _text(bounce.get("feedbackId")) or sns_message_id
        for r in _list(bounce.get("bouncedRecipients")):
            r = _dict(r)
            out.append(
                _event(
                    "ses",
                    event_id,
                    kind,
                    _text(r.get("emailAddress")),
                    code=_text(r.get("status"), 20),
                    diagnostic=_text(r.get("diagnosticCode"))
                    or f"{bounce_type} {_text(bounce.get('bounceSubType'))}",
                    **extra,
                )
            )
    elif kind_name == "Complaint":
        complaint = _dict(notification.get("complaint"))
        feedback = _text(complaint.get("complaintFeedbackType"), 20) or "abuse"
        if feedback != "not-spam":
            event_id = _text(complaint.get("feedbackId")) or sns_message_id
            for r in _list(complaint.get("complainedRecipients")):
                address = _text(_dict(r).get("emailAddress"))
                out.append(_event("ses", event_id, "complaint", address, code=feedback, **extra))
    return [e for e in out if e is not None]


def ses_message(raw: str) -> dict[str, Any]:
    """The SES notification inside an SNS `Message`; {} for anything that is not a JSON object."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return _dict(value)


# --------------------------------------------------------------------------- Mailgun


def mailgun_events(body: dict[str, Any]) -> list[ProviderEvent]:
    """One Mailgun webhook (`event-data`): failed (permanent or temporary), complained, unsubscribed."""
    data = _dict(body.get("event-data"))
    name = _text(data.get("event"))
    if name == "failed":
        kind = "hard" if _text(data.get("severity")) == "permanent" else "soft"
    elif name in ("complained", "unsubscribed"):
        kind = "complaint" if name == "complained" else UNSUBSCRIBE
    else:
        return []
    status = _dict(data.get("delivery-status"))
    headers = _dict(_dict(data.get("message")).get("headers"))
    event = _event(
        "mailgun",
        _text(data.get("id")),
        kind,
        _text(data.get("recipient")),
        message_id=_text(headers.get("message-id")),
        return_path=_text(_dict(data.get("envelope")).get("sender")),
        code=_text(status.get("enhanced-code"), 20) or _text(status.get("code"), 20),
        diagnostic=_text(status.get("message"))
        or _text(status.get("description"))
        or _text(data.get("reason")),
    )
    return [event] if event else []


# --------------------------------------------------------------------------- Postmark

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError"}


def postmark_events(body: dict[str, Any]) -> list[ProviderEvent]:
    """One Postmark webhook: a Bounce, a SpamComplaint, or a reader's own SubscriptionChange."""
    record = _text(body.get("RecordType"))
    extra = {"message_id": "", "diagnostic": _text(body.get("Details")) or _text(body.get("Description"))}
    if record == "Bounce":
        bounce_type = _text(body.get("Type"))
        if bounce_type in _POSTMARK_HARD:
            kind = "hard"
        elif bounce_type in _POSTMARK_SOFT:
            kind = "soft"
        else:
            return []
        event = _event("postmark", f"bounce:{_text(body.get('ID'))}", kind, _text(body.get("Email")), **extra)
    elif record == "SpamComplaint":
        event = _event(
            "postmark", f"spam:{_text(body.get('ID'))}", "complaint", _text(body.get("Email")), **extra
        )
    elif record == "SubscriptionChange":
        if (
            body.get("SuppressSending") is not True
            or _text(body.get("SuppressionReason")) != "ManualSuppression"
        ):
            return []  # a resubscribe, or the echo of a bounce or complaint reported on its own
        recipient = _text(body.get("Recipient"))
        key = f"unsubscribe:{_text(body.get('MessageID'))}:{_text(body.get('ChangedAt'))}"
        event = _event("postmark", key, UNSUBSCRIBE, recipient, **extra)
    else:
        return []
    return [event] if event else []


# --------------------------------------------------------------------------- SendGrid


def sendgrid_events(body: list[Any]) -> list[ProviderEvent]:
    """A SendGrid event batch: bounce (or blocked), spamreport, unsubscribe, group_unsubscribe."""
    out: list[ProviderEvent | None] = []
    for item in body:
        e = _dict(item)
        name = _text(e.get("event"))
        if name == "bounce":
            kind = "soft" if _text(e.get("type")) == "blocked" else "hard"
        elif name == "spamreport":
            kind = "complaint"
        elif name in ("unsubscribe", "group_unsubscribe"):
            kind = UNSUBSCRIBE
        else:
            continue  # delivered, deferred (SendGrid is still trying), dropped, opens, clicks
        out.append(
            _event(
                "sendgrid",
                _text(e.get("sg_event_id")),
                kind,
                _text(e.get("email")),
                message_id=_text(e.get("smtp-id")),
                code=_text(e.get("status"), 20),
                diagnostic=_text(e.get("reason")),
            )
        )
    return [e for e in out if e is not None]
