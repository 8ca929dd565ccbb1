"""A catch-all SMTP server on 127.0.0.1 that files every message into a Maildir.

It lets the demo and local development run the real send path (SMTP, the ledger, DKIM) without a
mail account: point the SMTP URL at `smtp://127.0.0.1:1025` and read the Maildir with any mail
client. Messages are stored byte for byte as received (plus trace headers in front), so DKIM
signatures still verify. It listens on loopback only and accepts every recipient; it is not a relay.
The caller's clock stamps each message as it arrives and runs `run`'s optional time limit.
"""

from __future__ import annotations

import errno
import logging
import mailbox
import signal
import socket
import sys
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from briefing.domain import Clock
from briefing.errors import InvalidInput

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 1025
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    message_id: str
    key: str  # the Maildir key
    size: int

    def summary(self) -> str:
        """One line for the terminal: time, from, to, subject."""
        to = ", ".join(self.rcpt_tos)
        return f"{self.received_at:%H:%M:%S} {self.mail_from} -> {to}: {self.subject}"


def _one_line(value: object) -> str:
    # A decoded Subject can contain anything, including newlines smuggled in encoded words and
    # escape sequences that would drive the terminal: those are shown as \x1b, not sent to it.
    text = " ".join(str(value or "").split())[:200]
    return text if text.isprintable() else "".join(_visible(ch) for ch in text)


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(ch: str) -> str:
    if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs"):
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
    return ch


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago; aiosmtpd cannot bind port 0 itself (it probes the port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def open_maildir(folder: Path) -> mailbox.Maildir:
    """The Maildir at `folder`, made complete: `Maildir(create=True)` adds cur/, new/ and tmp/ only when
    the folder itself is new, so an existing empty folder would refuse every message."""
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder", field="--maildir")
    try:
        for part in ("cur", "new", "tmp"):
            (folder / part).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot use {folder}: {exc.strerror or exc}", field="--maildir") from None
    return mailbox.Maildir(str(folder), create=False)


class _MaildirHandler:
    def __init__(
        self, maildir: Path, on_message: Callable[[ReceivedMessage], None] | None, clock: Clock
    ) -> None:
        self.box = open_maildir(maildir)
        self.on_message = on_message
        self.clock = clock
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content or b""
        rcpts = tuple(str(r) for r in envelope.rcpt_tos)
        mail_from = str(envelope.mail_from or "")
        peer = session.peer[0] if session.peer else "unknown"
        trace = (
            f"Return-Path: <{_one_line(mail_from)}>\r\n"
            f"X-RcptTo: {_one_line(', '.join(rcpts))}\r\n"
            f"X-Peer: {_one_line(peer)}\r\n"
        ).encode("utf-8", "replace")
        headers = BytesHeaderParser(policy=default_policy).parsebytes(data)
        try:
            with self._lock:
                key = self.box.add(trace + data)
                self.count += 1
        except OSError as exc:
            log.error("cannot store a message in the Maildir: %s", exc.strerror)
            return "451 4.3.0 cannot store the message right now"
        received = ReceivedMessage(
            received_at=self.clock.now().astimezone(),
            mail_from=_one_line(mail_from),
            rcpt_tos=tuple(_one_line(r) for r in rcpts),
            subject=_one_line(headers.get("subject", "")),
            message_id=_one_line(headers.get("message-id", "")),
            key=key,
            size=len(data),
        )
        if self.on_message is not None:
            try:
                self.on_message(received)
            except Exception:  # a faulty printer must not lose mail
                log.exception("on_message callback failed")
        return "250 2.0.0 stored"


class DevSmtpServer:
    """Start and stop the server in-process (`with DevSmtpServer(...) as server:`)."""

    def __init__(
        self,
        maildir: str | Path,
        port: int = DEFAULT_PORT,
        *,
        clock: Clock,
        on_message: Callable[[ReceivedMessage], None] | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError("port must be from 0 to 65535")
        self.maildir = Path(maildir)
        self.host = HOST
        self.requested_port = port
        self.port = port
        self._handler = _MaildirHandler(self.maildir, on_message, clock)
        self._controller: Controller | None = None

    @property
    def count(self) -> int:
        return self._handler.count

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> DevSmtpServer:
        if self._controller is not None:
            return self
        attempts = 5 if self.requested_port == 0 else 1
        for attempt in range(attempts):
            port = free_port() if self.requested_port == 0 else self.requested_port
            controller = Controller(
                self._handler,
                hostname=HOST,
                port=port,
                data_size_limit=MAX_MESSAGE_BYTES,
                ready_timeout=10.0,
                enable_SMTPUTF8=True,  # so readers with international addresses can be tried locally
            )
            try:
                controller.start()
            except OSError as exc:
                # With port 0, another process took the port between the probe and the bind: try another.
                if attempt + 1 < attempts:
                    continue
                if exc.errno == errno.EADDRINUSE:
                    raise InvalidInput(
                        f"port {port} is in use on {HOST}; stop the program using it or pick another port",
                        field="--port",
                    ) from None
                raise InvalidInput(
                    f"cannot listen on {HOST} port {port}: {exc.strerror or exc}", field="--port"
                ) from None
            except RuntimeError:
                if attempt + 1 == attempts:
                    raise
                continue
            self._controller = controller
            self.port = port
            break
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> DevSmtpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _print_line(message: ReceivedMessage) -> None:
    print(message.summary(), flush=True)


def run(
    port: int = DEFAULT_PORT,
    maildir: str | Path = "maildir",
    *,
    clock: Clock,
    on_message: Callable[[ReceivedMessage], None] | None = None,
    max_seconds: float | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM (or max_seconds on `clock`); returns the number of messages stored.

    Meant for `briefing dev-smtp`; it installs signal handlers, so call it from the main thread.
    """
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    server = DevSmtpServer(maildir, port, clock=clock, on_message=on_message or _print_line)
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(
            f"dev SMTP server on {server.url}, storing messages in {Path(maildir).resolve()}"
            " (Ctrl-C to stop)",
            flush=True,
        )
        deadline = None if max_seconds is None else clock.monotonic() + max_seconds
        while not stop.is_set():
            remaining = 0.5 if deadline is None else min(0.5, deadline - clock.monotonic())
            if remaining <= 0:
                break
            clock.wait(remaining, stop)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"stopped after {server.count} message(s)", file=sys.stderr, flush=True)
    return server.count
