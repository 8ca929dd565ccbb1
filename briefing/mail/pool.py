"""A pool of SMTP sessions shared by the send threads, its rate limit, and the transport a URL names."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from briefing.domain import Clock
from briefing.errors import InvalidInput, TransportError
from briefing.mail.session import DEFAULT_TIMEOUT, SmtpConnection
from briefing.mail.smtp_url import SmtpConfig, parse_smtp_url
from briefing.mail.transport import MaildirTransport, MemoryTransport, Outcome, SendResult


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
