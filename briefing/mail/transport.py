"""Getting message bytes to a mail server, and saying exactly what happened to each one.

The delivery ledger needs one of five answers per message, because each leads to a different,
safe next step:

- accepted:   the server replied 250 to the end of DATA; record `sent` now.
- deferred:   a 4xx about this recipient or message; retry it later.
- rejected:   a 5xx about this recipient or message; record `failed` (a bounce).
- connection: trouble before the end of DATA was sent (refused, timeout, 421, disconnect, a refused
              MAIL FROM): nothing was delivered and no reader is at fault; reconnect and resend.
- ambiguous:  the end of DATA went out but no reply came back. The server may have delivered it
              (RFC 1047); only the caller's policy may resend it, with the same Message-ID.

To tell "connection" from "ambiguous" the SMTP transaction is driven step by step (MAIL, RCPT, DATA,
the content, then the final reply) instead of through `sendmail`, which hides where it failed.

Credentials are wrapped in `Secret` from the moment the URL is parsed, so neither reprs, logs nor
error messages can show them. TLS always verifies certificates (smtplib does not by default), and
AUTH is refused on a plaintext connection to anything but loopback.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging
import mailbox
import queue
import smtplib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from briefing.domain import Clock
from briefing.errors import AuthFailed, InvalidInput, TransportError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
_CRLF = b"\r\n"


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


class Secret:
    """A string that never shows itself in repr, str, f-strings or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where messages go; built by parse_smtp_url."""

    scheme: str  # smtp, smtps, maildir, memory
    host: str = ""
    port: int = 0
    username: str = ""
    password: Secret = field(default_factory=Secret)
    starttls: bool = False  # smtp:// only: STARTTLS is required before anything else
    path: str = ""  # maildir:// only

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "smtps"

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)

    @property
    def redacted_url(self) -> str:
        if self.scheme in ("maildir", "memory"):
            return f"{self.scheme}://{self.path}"
        auth = f"{self.username}:***@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "" if self.starttls or self.scheme == "smtps" or self.is_loopback else "?starttls=off"
        return f"{self.scheme}://{auth}{host}:{self.port}{query}"


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(url: str) -> str:
    """The URL with any password replaced, for error messages.

    Works on the raw text, not on urlsplit: an unencoded "?", "#" or "/" in a password would move
    part of it into the query or path, where a parsed redaction would miss it.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url if "@" not in url else "<URL with credentials>"
    userinfo = rest[:at]
    if ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{rest[at + 1 :]}"


def parse_smtp_url(url: str) -> SmtpConfig:
    """Read `smtp://user:pass@host:587`, `smtps://...:465`, `maildir:///path` or `memory://`.

    smtp:// requires STARTTLS unless the host is loopback or the URL says `?starttls=off`; a URL that
    would send a password in clear to another host is refused here rather than at 06:00.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("the SMTP URL is empty", field="smtp_url")
    shown = _redact(url.strip())
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise InvalidInput(f"cannot parse {shown}", field="smtp_url") from None
    scheme = parts.scheme.lower()

    def bad(part: str, problem: str) -> InvalidInput:
        return InvalidInput(f"{part}: {problem} (in {shown})", field="smtp_url")

    if scheme == "memory":
        return SmtpConfig(scheme="memory")
    if scheme == "maildir":
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise bad("path", "give a directory, e.g. maildir:///var/mail/briefing")
        return SmtpConfig(scheme="maildir", path=path)
    if scheme not in ("smtp", "smtps"):
        raise bad("scheme", "use smtp://, smtps://, maildir:// or memory://")

    after_scheme = url.strip().partition("://")[2]
    if "@" in after_scheme and "@" not in parts.netloc:
        raise bad("password", "percent-encode ?, # and / in the user or password (%3F, %23, %2F)")
    host = parts.hostname or ""
    if not host:
        raise bad("host", "missing")
    try:
        port = parts.port
    except ValueError:
        raise bad("port", "must be a number from 1 to 65535") from None
    if port is None:
        port = 465 if scheme == "smtps" else 587
    if not 1 <= port <= 65535:
        raise bad("port", "must be a number from 1 to 65535")
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if password and not username:
        raise bad("user", "a password was given without a user name")
    if any(c in username for c in "\r\n\0"):
        raise bad("user", "contains control characters")

    loopback = _is_loopback(host)
    starttls = scheme == "smtp" and not loopback
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "starttls":
            raise bad(f"query parameter {key!r}", "unknown (only starttls=on|off)")
        if scheme == "smtps":
            raise bad("starttls", "smtps:// is already TLS from the first byte")
        if value.lower() not in ("on", "off"):
            raise bad("starttls", "must be on or off")
        starttls = value.lower() == "on"
    if username and scheme == "smtp" and not starttls and not loopback:
        raise bad("starttls", "refusing to send a password without TLS to a host that is not loopback")
    return SmtpConfig(
        scheme=scheme,
        host=host,
        port=port,
        username=username,
        password=Secret(password),
        starttls=starttls,
    )


class Transport(Protocol):
    """What the send loop talks to: an SMTP pool, a Maildir, or a list in memory."""

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult: ...

    def close(self) -> None: ...


def _envelope_ok(address: str) -> bool:
    # Anything that could end or split an SMTP command line is refused before it reaches the socket.
    return (
        isinstance(address, str)
        and 3 <= len(address) <= 254
        and address.isascii()
        and "@" in address
        and not any(c in address for c in " \t\r\n\0<>")
    )


def _dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency plus the end-of-data marker; cheap when no line starts with '.'."""
    if data.startswith(b".") or b"\n." in data:
        data = data.replace(b"\n.", b"\n..")
        if data.startswith(b"."):
            data = b"." + data
    if not data.endswith(_CRLF):
        data += _CRLF
    return data + b".\r\n"


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())[:500]


class SmtpConnection:
    """One SMTP session, reused for many messages; not thread-safe (the pool hands it to one thread)."""

    def __init__(
        self,
        config: SmtpConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if config.scheme not in ("smtp", "smtps"):
            raise InvalidInput("not an SMTP URL", field="smtp_url")
        self.config = config
        self.timeout = timeout
        self.ca_file = ca_file
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None
        self._pipelining = False
        self.messages_sent = 0  # in the current session
        self.sessions_opened = 0

    def __repr__(self) -> str:
        state = "open" if self._smtp else "closed"
        return f"SmtpConnection({self.config.redacted_url}, {state})"

    @property
    def is_connected(self) -> bool:
        return self._smtp is not None

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def _scrub(self, text: str) -> str:
        secret = self.config.password.get()
        if not secret:
            return text
        user = self.config.username
        for needle in (
            secret,
            base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"\0{user}\0{secret}".encode()).decode(),
        ):
            text = text.replace(needle, "***")
        return text

    def connect(self) -> None:
        """Open, greet, STARTTLS and log in; raises TransportError (or AuthFailed) with a safe message."""
        self.close()
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        context = self._context()
        smtp: smtplib.SMTP | None = None
        try:
            if cfg.implicit_tls:
                smtp = smtplib.SMTP_SSL(
                    cfg.host,
                    cfg.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=context,
                )
            else:
                smtp = smtplib.SMTP(
                    cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            code, reply = smtp.ehlo()
            if code != 250:
                code, reply = smtp.helo()
                if code != 250:
                    raise TransportError(f"{where} refused our greeting: {code} {_text(reply)}")
            if cfg.starttls:
                if not smtp.has_extn("starttls"):
                    raise TransportError(f"{where} does not offer STARTTLS, and the URL requires it")
                code, reply = smtp.starttls(context=context)
                if code != 220:
                    raise TransportError(f"{where} refused STARTTLS: {code} {_text(reply)}")
                smtp.ehlo()
            if cfg.username:
                if not (cfg.starttls or cfg.implicit_tls or cfg.is_loopback):
                    raise TransportError("refusing to authenticate without TLS")
                try:
                    smtp.login(cfg.username, cfg.password.get())
                except smtplib.SMTPAuthenticationError as exc:
                    raise AuthFailed(
                        self._scrub(
                            f"{where} refused the credentials of {cfg.username!r}: "
                            f"{exc.smtp_code} {_text(exc.smtp_error)}"
                        )
                    ) from None
                except smtplib.SMTPNotSupportedError:
                    raise AuthFailed(f"{where} offers no AUTH mechanism we can use") from None
                except smtplib.SMTPException as exc:
                    raise AuthFailed(self._scrub(f"{where}: login failed ({type(exc).__name__})")) from None
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise TransportError(f"TLS certificate of {where} not trusted: {exc.verify_message}") from None
        except TransportError:
            _close_quietly(smtp)
            raise
        except smtplib.SMTPResponseException as exc:
            _close_quietly(smtp)
            raise TransportError(self._scrub(f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}")) from None
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(smtp)
            reason = _text(str(exc)) or type(exc).__name__
            raise TransportError(self._scrub(f"cannot talk to {where}: {reason}")) from None
        self._smtp = smtp
        self._pipelining = bool(smtp.has_extn("pipelining"))
        self.messages_sent = 0
        self.sessions_opened += 1
        log.debug("SMTP session opened to %s", where)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        _close_quietly(smtp)

    def rset(self) -> None:
        """Abandon the current transaction; a failing RSET means the session is unusable."""
        if self._smtp is None:
            return
        try:
            code, _ = self._smtp.rset()
            if code != 250:
                self._drop()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            _close_quietly(smtp)

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult:
        """One transaction with one recipient; opens the session if needed. Raises only AuthFailed."""
        if not _envelope_ok(envelope_from):
            raise InvalidInput("not a usable envelope sender", field="envelope_from")
        if not _envelope_ok(rcpt):
            return SendResult(
                Outcome.REJECTED, None, "recipient address not usable on the SMTP envelope", "local"
            )
        if self._smtp is None:
            try:
                self.connect()
            except AuthFailed:
                raise
            except TransportError as exc:
                return SendResult(Outcome.CONNECTION, None, str(exc), "connect")
        smtp = self._smtp
        assert smtp is not None

        if self._pipelining:
            refused = self._envelope_pipelined(smtp, envelope_from, rcpt)
            if refused is not None:
                return refused
            return self._content(smtp, data)

        # MAIL FROM: any refusal here is about us (sender, policy, load), never about the reader.
        try:
            code, reply = smtp.mail(envelope_from)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "mail")
        if code != 250:
            if code == 421:
                self._drop()
            else:
                self.rset()
            return SendResult(Outcome.CONNECTION, code, _text(reply), "mail")

        # RCPT TO: 4xx defers, 5xx rejects this reader.
        try:
            code, reply = smtp.rcpt(rcpt)
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "rcpt")
        if code not in (250, 251):
            return self._refused(code, reply, "rcpt")

        # DATA, then the content. Until the final "." is written nothing can have been delivered.
        try:
            smtp.putcmd("data")
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "data")
        if code != 354:
            return self._refused(code, reply, "data")
        return self._content(smtp, data)

    def _envelope_pipelined(self, smtp: smtplib.SMTP, envelope_from: str, rcpt: str) -> SendResult | None:
        """MAIL, RCPT and DATA in one write (RFC 2920), then their three replies; None means "go on".

        Saves two round trips per message. The replies are read in order and classified exactly
        as in the step-by-step dialogue; a server that says 354 after refusing the envelope gets
        its session dropped, so no half-addressed message can follow.
        """
        try:
            smtp.send(f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n")
            mail_code, mail_reply = smtp.getreply()
            rcpt_code, rcpt_reply = smtp.getreply()
            data_code, data_reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "mail")
        envelope_ok = mail_code == 250 and rcpt_code in (250, 251)
        if data_code == 354 and envelope_ok:
            return None
        if data_code == 354:
            self._drop()  # the server waits for content we will not send
        if mail_code != 250:
            if mail_code == 421 or self._smtp is None:
                self._drop()
            else:
                self.rset()
            return SendResult(Outcome.CONNECTION, mail_code, _text(mail_reply), "mail")
        if rcpt_code not in (250, 251):
            if self._smtp is None:
                return self._classify(rcpt_code, rcpt_reply, "rcpt")
            return self._refused(rcpt_code, rcpt_reply, "rcpt")
        if self._smtp is None:
            return self._classify(data_code, data_reply, "data")
        return self._refused(data_code, data_reply, "data")

    def _content(self, smtp: smtplib.SMTP, data: bytes) -> SendResult:
        try:
            smtp.send(_dot_stuff(data))
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.CONNECTION, None, _text(str(exc)), "data")

        # The end of data is out: from here a missing reply is ambiguous, never "not sent".
        try:
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            return SendResult(Outcome.AMBIGUOUS, None, _text(str(exc)) or "no reply", "end-of-data")
        if code == 250:
            self.messages_sent += 1
            return SendResult(Outcome.ACCEPTED, code, _text(reply), "end-of-data")
        return self._refused(code, reply, "end-of-data")

    def _refused(self, code: int, reply: bytes, stage: str) -> SendResult:
        if code == 421 or code < 400:
            self._drop()  # closing, or a reply that makes no sense here: start a fresh session
            return self._classify(code, reply, stage)
        self.rset()
        return self._classify(code, reply, stage)

    @staticmethod
    def _classify(code: int, reply: bytes, stage: str) -> SendResult:
        text = _text(reply)
        if code == 421 or code < 400:
            return SendResult(Outcome.CONNECTION, code, text, stage)
        # RFC 5321 §4.5.3.1.10: 552 on RCPT is to be treated as temporary.
        if 400 <= code < 500 or (code == 552 and stage == "rcpt"):
            return SendResult(Outcome.DEFERRED, code, text, stage)
        return SendResult(Outcome.REJECTED, code, text, stage)


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        smtp.close()
    except OSError:
        pass


class RateLimiter:
    """Token bucket shared by all connections: at most `rate` messages per second, bursts of `burst`.

    Time is the caller's `clock`: its `monotonic()` refills the bucket and its `wait()` paces the sends.
    """

    def __init__(self, rate: float, burst: float | None = None, *, clock: Clock) -> None:
        if rate <= 0:
            raise InvalidInput("must be above 0", field="rate_limit")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self.burst
        self._clock = clock
        self._last = clock.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Reserve one slot and wait for it outside the lock; returns the seconds waited."""
        with self._lock:
            now = self._clock.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._clock.wait(wait)
        return wait


class ConnectionPool:
    """N persistent SMTP sessions shared by threads; each session carries many messages.

    Sessions open lazily and reopen on demand. A reused session that the server dropped while idle
    fails at MAIL FROM, before anything was sent, so that one case is retried once on a fresh session.
    """

    def __init__(
        self,
        config: SmtpConfig,
        *,
        size: int = 2,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        rate_limit: float = 0.0,
        max_messages_per_connection: int = 0,
        checkout_timeout: float | None = None,
        local_hostname: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`clock` paces a `rate_limit`; it is required with one (nothing here reads the real clock)."""
        if not 1 <= size <= 64:
            raise InvalidInput("must be from 1 to 64", field="smtp_pool_size")
        if timeout <= 0:
            raise InvalidInput("must be above 0", field="smtp_timeout")
        self.config = config
        self.size = size
        self.max_messages_per_connection = max_messages_per_connection
        self.checkout_timeout = checkout_timeout if checkout_timeout is not None else timeout * 4
        self._limiter: RateLimiter | None = None
        if rate_limit > 0:
            if clock is None:
                raise InvalidInput("a rate limit needs the caller's clock", field="rate_limit")
            self._limiter = RateLimiter(rate_limit, clock=clock)
        self._connections = [
            SmtpConnection(config, timeout=timeout, ca_file=ca_file, local_hostname=local_hostname)
            for _ in range(size)
        ]
        self._free: queue.LifoQueue[SmtpConnection] = queue.LifoQueue()
        for conn in self._connections:
            self._free.put(conn)
        self._closed = False

    def __repr__(self) -> str:
        return f"ConnectionPool({self.config.redacted_url}, size={self.size})"

    @property
    def sessions_opened(self) -> int:
        return sum(c.sessions_opened for c in self._connections)

    @contextmanager
    def checkout(self) -> Iterator[SmtpConnection]:
        if self._closed:
            raise TransportError("the SMTP pool is closed")
        try:
            conn = self._free.get(timeout=self.checkout_timeout)
        except queue.Empty:
            raise TransportError(f"no SMTP connection free within {self.checkout_timeout:g} s") from None
        try:
            yield conn
        finally:
            if self._closed:
                conn.close()
            self._free.put(conn)

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> SendResult:
        if self._limiter is not None:
            self._limiter.acquire()
        with self.checkout() as conn:
            limit = self.max_messages_per_connection
            if limit and conn.messages_sent >= limit:
                conn.close()
            reused = conn.is_connected
            result = conn.send(envelope_from, rcpt, data)
            if reused and result.outcome is Outcome.CONNECTION and result.stage == "mail":
                result = conn.send(envelope_from, rcpt, data)
            return result

    def close(self) -> None:
        """Close idle sessions now; busy ones close when they come back."""
        self._closed = True
        for conn in self._connections:
            if conn.is_connected:
                try:
                    conn.close()
                except OSError:
                    pass


@dataclass(frozen=True, slots=True)
class StoredMessage:
    envelope_from: str
    rcpt: str
    data: bytes


def _check_local_envelope(envelope_from: str, rcpt: str) -> SendResult | None:
    """The same envelope rules as SMTP, so a preview or Maildir run refuses what a relay would."""
    if not _envelope_ok(envelope_from):
        raise InvalidInput("not a usable envelope sender", field="envelope_from")
    if not _envelope_ok(rcpt):
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
        refused = _check_local_envelope(envelope_from, rcpt)
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
        refused = _check_local_envelope(envelope_from, rcpt)
        if refused is not None:
            return refused
        # Added like a local delivery agent would; neither header is covered by DKIM, so it still verifies.
        trace = f"Return-Path: <{envelope_from}>\r\nDelivered-To: {rcpt}\r\n".encode("ascii")
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


def open_transport(
    config: SmtpConfig | str,
    *,
    pool_size: int = 2,
    timeout: float = DEFAULT_TIMEOUT,
    ca_file: str | None = None,
    rate_limit: float = 0.0,
    max_messages_per_connection: int = 0,
    clock: Clock | None = None,
) -> ConnectionPool | MaildirTransport | MemoryTransport:
    """The transport an SMTP URL names, with the same `send` for all of them.

    A `rate_limit` needs `clock` (the edge's), which paces the sends."""
    cfg = parse_smtp_url(config) if isinstance(config, str) else config
    if cfg.scheme == "memory":
        return MemoryTransport()
    if cfg.scheme == "maildir":
        return MaildirTransport(cfg.path)
    return ConnectionPool(
        cfg,
        size=pool_size,
        timeout=timeout,
        ca_file=ca_file,
        rate_limit=rate_limit,
        max_messages_per_connection=max_messages_per_connection,
        clock=clock,
    )
