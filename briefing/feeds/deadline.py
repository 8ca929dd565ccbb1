"""One deadline for a whole fetch, held in real time whatever the server sends.

httpx's timeouts are per operation: a server that answers one header byte every few seconds never
lets a single read time out, and a fetch could last as long as the server likes. So each fetch runs
under a `Watchdog`: a thread that waits out the deadline and then shuts down every connection the
fetch is using, which ends a blocked read at once (shutdown wakes a thread blocked in recv; close
does not). The connections come from `WatchedBackend`, which wraps the streams httpcore reads and
writes, so the watchdog knows which sockets belong to the fetch running in this thread, including a
pooled connection reused from an earlier fetch and a TLS handshake in progress.

The watchdog waits the way a socket timeout does, in seconds that pass, and reads no clock: the
injected clock still decides the deadline between steps (fetch.py), and this is the backstop that
holds when the clock cannot move while the network blocks.
"""

from __future__ import annotations

import contextvars
import socket
import ssl
import threading
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

_current: contextvars.ContextVar[Watchdog | None] = contextvars.ContextVar("feed_watchdog", default=None)


class Watchdog:
    """Cuts the connections of one fetch when `seconds` have passed, unless the fetch ended first.

    The fetch runs inside it (`with Watchdog(timeout) as watchdog:`); `expired` then says whether
    whatever went wrong was the deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._streams: list[WatchedStream] = []
        self._expired = False
        self._token: contextvars.Token[Watchdog | None] | None = None
        self._thread = threading.Thread(target=self._run, name="feed-deadline", daemon=True)

    @property
    def expired(self) -> bool:
        with self._lock:
            return self._expired

    def __enter__(self) -> Watchdog:
        self._token = _current.set(self)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._finished.set()  # under the lock: once this returns, no connection is cut any more
            self._streams.clear()
        if self._token is not None:
            _current.reset(self._token)

    def watch(self, stream: WatchedStream) -> None:
        with self._lock:
            if self._expired:
                stream.cut()
            elif stream not in self._streams:
                self._streams.append(stream)

    def _run(self) -> None:
        if self._finished.wait(self.seconds):
            return
        with self._lock:  # cut under the lock, so nothing is cut once __exit__ has returned
            if self._finished.is_set():
                return
            self._expired = True
            for stream in self._streams:
                stream.cut()


def current() -> Watchdog | None:
    """The watchdog of the fetch running in this thread, if any."""
    return _current.get()


def _check() -> Watchdog | None:
    watchdog = _current.get()
    if watchdog is not None and watchdog.expired:
        raise httpcore.ReadTimeout(f"the deadline of {watchdog.seconds:g} s passed")
    return watchdog


class WatchedStream(httpcore.NetworkStream):
    """A connection the running fetch's watchdog can cut; otherwise it is the stream it wraps."""

    def __init__(self, inner: httpcore.NetworkStream, fd: int) -> None:
        self._inner = inner
        self._fd = fd
        self._lock = threading.Lock()
        self._closed = False

    def _enter(self) -> None:
        watchdog = _check()
        if watchdog is not None:
            watchdog.watch(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._enter()
        try:
            data = self._inner.read(max_bytes, timeout)
        except httpcore.NetworkError:
            _check()  # a read the watchdog ended fails: say it was the deadline
            raise
        _check()  # ... or returns b"" as if the server had closed
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._enter()
        try:
            self._inner.write(buffer, timeout)
        except httpcore.NetworkError:
            _check()
            raise

    def close(self) -> None:
        with self._lock:  # the fd is never shut down after it was closed (and maybe reused)
            self._closed = True
            self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self._enter()
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        except httpcore.NetworkError:
            _check()
            raise
        with self._lock:
            self._closed = True  # the TLS stream owns the descriptor from now on
        wrapped = WatchedStream(inner, self._fd)  # TLS keeps the same file descriptor
        wrapped._enter()
        return wrapped

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def cut(self) -> None:
        """Shut the socket down from another thread: a read blocked on it returns at once.

        By file descriptor, because during a TLS handshake the plain socket object is already
        detached and the TLS one does not exist yet; the descriptor is the same for both.
        """
        with self._lock:
            if self._closed:
                return
            try:
                view = socket.socket(fileno=self._fd)
            except OSError:
                return
            try:
                view.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already shut down or never connected
            finally:
                view.detach()  # the descriptor still belongs to the connection


class WatchedBackend(httpcore.SyncBackend):
    """httpcore's backend, with every connection watched by the deadline of the fetch using it."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        watchdog = _current.get()
        if watchdog is not None and watchdog.expired:
            raise httpcore.ConnectTimeout("the fetch's deadline passed before connecting")
        stream = self.open_tcp(host, port, timeout, local_address, socket_options)
        sock = stream.get_extra_info("socket")
        watched = WatchedStream(stream, sock.fileno())
        watched._enter()
        return watched

    def open_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """The plain connection; subclasses decide which addresses may be reached."""
        return super().connect_tcp(host, port, timeout, local_address, socket_options)


class WatchedTransport(httpx.HTTPTransport):
    """httpx's transport with the connection pool swapped for one on a WatchedBackend, so the
    deadline of each fetch can cut its connections.

    httpx has no public switch for the network backend; replacing `_pool` is the documented
    extension point of httpcore (`network_backend=`) reached through httpx's one private attribute.
    tests/test_feeds_fetch.py and tests/test_feed_deadlines.py check it still takes effect.
    """

    def __init__(self, backend: WatchedBackend | None = None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=10,
            max_keepalive_connections=5,
            network_backend=backend or WatchedBackend(),
        )
