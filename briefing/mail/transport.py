"""Getting message bytes to a destination, and saying exactly what happened to each one.

The delivery ledger needs one of five answers per message, because each leads to a different,
safe next step:

- accepted:   the server replied 250 to the end of DATA; record `sent` now.
- deferred:   a 4xx about this recipient or message; retry it later.
- rejected:   a 5xx about this recipient or message; record `failed` (a bounce).
- connection: trouble before the end of DATA was sent (refused, timeout, 421, disconnect, a refused
              MAIL FROM): nothing was delivered and no reader is at fault; reconnect and resend.
- ambiguous:  the end of DATA went out but no reply came back. The server may have delivered it
              (RFC 1047); only the caller's policy may resend it, with the same Message-ID.

This module holds those answers, the `Transport` every sender implements, the bytes it takes, the
envelope rules all of them share, and the two local transports (memory, Maildir). The SMTP dialogue is in
`mail.session`, the pool of sessions and `open_transport` in `mail.pool`, the URL in `mail.smtp_url`.
"""

from __future__ import annotations

import mailbox
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from briefing.errors import InvalidInput
from briefing.mail.headers import utf8_text_ok


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    REJECTED = "rejected"
    CONNECTION = "connection"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one message; `code` and `reply` go to the ledger (smtp_code, smtp_reply)."""

    outcome: Outcome
    code: int | None = None
    reply: str = ""
    stage: str = ""  # connect, mail, rcpt, data, end-of-data, local

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPTED


class DotSafe(bytes):
    """Message bytes in which no line starts with ".", ending in CRLF.

    SMTP's dot-stuffing (RFC 5321 §4.5.2) has nothing to change in them, so the session sends them
    as they are, without a scan of the whole message per copy; a Maildir, a DKIM verifier and the
    reader see the same bytes. `mail.message` builds every copy this way; any other bytes (alerts,
    confirmation emails) are plain `bytes` and the session stuffs them.
    """

    __slots__ = ()


def keep_dot_safe(signed: bytes, unsigned: bytes) -> bytes:
    """`signed` (header lines put in front of `unsigned`, as DKIM does) as DotSafe when it still is.

    Only the new lines are read for a leading "."; the rest must be `unsigned` unchanged.
    """
    if not isinstance(unsigned, DotSafe) or isinstance(signed, DotSafe):
        return signed
    added = len(signed) - len(unsigned)
    head = signed[:added] if added >= 0 else b"."
    if head.startswith(b".") or b"\n." in head or not head.endswith(b"\r\n"):
        return signed
    if not signed.endswith(unsigned):
        return signed
    return DotSafe(signed)


class Transport(Protocol):
    """What the send loop talks to: an SMTP pool, a Maildir, or a list in memory."""

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult: ...

    def close(self) -> None: ...


def envelope_ok(address: str, *, smtputf8: bool = False) -> bool:
    # Anything that could end or split an SMTP command line is refused before it reaches the socket;
    # with `smtputf8` non-ASCII may pass too, as clean UTF-8 (an SMTPUTF8 address, RFC 6531).
    return (
        isinstance(address, str)
        and 3 <= len(address) <= 254
        and (address.isascii() or (smtputf8 and utf8_text_ok(address)))
        and "@" in address
        and not any(c in address for c in " \t\r\n\0<>")
    )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    envelope_from: str
    rcpt: str
    data: bytes


def check_local_envelope(envelope_from: str, rcpt: str) -> SendResult | None:
    """The same envelope rules as SMTP, so a preview or Maildir run refuses what a relay would."""
    if not envelope_ok(envelope_from, smtputf8=True):
        raise InvalidInput("not a usable envelope sender", field="envelope_from")
    if not envelope_ok(rcpt, smtputf8=True):
        return SendResult(
            Outcome.REJECTED, None, "recipient address not usable on the SMTP envelope", "local"
        )
    return None


class MemoryTransport:
    """Keeps every message in a list: previews and tests see exactly the bytes SMTP would carry."""

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []
        self._lock = threading.Lock()

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult:
        refused = check_local_envelope(envelope_from, rcpt)
        if refused is not None:
            return refused
        with self._lock:
            self.messages.append(StoredMessage(envelope_from, rcpt, bytes(data)))
        return SendResult(Outcome.ACCEPTED, 250, "2.0.0 kept in memory", "end-of-data")

    def close(self) -> None:
        return None


class MaildirTransport:
    """Delivers into a Maildir (readable by mutt, Thunderbird, or mailbox.Maildir) for demos and previews."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._box = mailbox.Maildir(str(self.path), create=True)
        self._lock = threading.Lock()

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult:
        refused = check_local_envelope(envelope_from, rcpt)
        if refused is not None:
            return refused
        # Added like a local delivery agent would; neither header is covered by DKIM, so it still verifies.
        trace = f"Return-Path: <{envelope_from}>\r\nDelivered-To: {rcpt}\r\n".encode()  # UTF-8: RFC 6532
        try:
            with self._lock:
                key = self._box.add(trace + data)
        except OSError as exc:
            return SendResult(
                Outcome.CONNECTION, None, f"cannot write to the Maildir: {exc.strerror}", "local"
            )
        return SendResult(Outcome.ACCEPTED, 250, f"2.0.0 stored as {key}", "end-of-data")

    def close(self) -> None:
        return None
