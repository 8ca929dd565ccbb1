"""Fetch a feed document politely and without becoming a way into the private network.

A feed URL is data someone typed; fetching it from the server could reach the database host, a
cloud metadata address or an admin panel on localhost. So every host is resolved and every address
checked before connecting, again after each redirect (followed here, by hand, a few at most), and
once more at connect time inside the HTTP client we build, so DNS that answers differently the
second time (rebinding) still cannot reach a private address. Feeds added with `--allow-private`
skip these checks: that is how a newsroom polls its own CMS on the office network.

Politeness: conditional GET (ETag, Last-Modified), one deadline for the whole fetch (connect,
headers, body and every redirect), and a size limit counted while streaming (so neither a lying
Content-Length nor a gzip bomb gets past it). The deadline is checked between steps on the
caller's clock (`Clock.monotonic`), and held in real time by a watchdog that cuts the connection
(feeds.deadline), because a server trickling one byte at a time never trips a per-read timeout.
A Retry-After date is measured from the caller's `Clock.now`: nothing here reads the real clock.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from briefing import __version__, inputs
from briefing.domain import Clock
from briefing.errors import BriefingError, InvalidInput
from briefing.feeds.deadline import Watchdog, WatchedBackend, WatchedTransport, current
from briefing.urls import canonical_url

Resolver = Callable[[str, int], list[str]]

USER_AGENT = f"briefing/{__version__} (feed reader)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchFailed(BriefingError):
    """The feed could not be fetched; `retry_after` (seconds) is the server's own hint, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, http_status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.http_status = http_status


class AddressRefused(FetchFailed):
    """The host resolves to an address a feed without --allow-private must not reach."""


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int  # 200, or 304 when the conditional GET says nothing changed
    body: bytes
    url: str  # where the document finally came from, after redirects (the base for relative links)
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""  # the server's, for the charset of a document without an XML declaration


# --------------------------------------------------------------------------- addresses


def system_resolver(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def refused_kind(address: str) -> str | None:
    """Why this address is off limits ("loopback", "private", ...), or None for a public address."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback however it is written
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not public"  # shared (100.64/10), documentation and benchmark ranges
    return None


def check_host(host: str, port: int, *, resolver: Resolver | None = None) -> list[str]:
    """Resolve `host` and refuse it if any of its addresses is not public; returns the addresses."""
    try:
        addresses = (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"cannot resolve {host}: {exc}") from None
    if not addresses:
        raise FetchFailed(f"cannot resolve {host}: no addresses")
    for address in addresses:
        kind = refused_kind(address)
        if kind is not None:
            raise AddressRefused(
                f"refused: {host} resolves to {address} ({kind}); "
                "add the feed with --allow-private if this is your own network"
            )
    return addresses


class GuardedBackend(WatchedBackend):
    """Connects only to checked addresses, so the address used is the address that was checked."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._resolver = resolver

    def open_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = check_host(host, port, resolver=self._resolver)
        last: Exception | None = None
        for address in addresses:
            watchdog = current()
            if watchdog is not None and watchdog.expired:
                break  # the next address would start after the deadline
            try:
                return super().open_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        if last is None:
            raise httpcore.ConnectTimeout("the fetch's deadline passed while connecting")
        raise last


class GuardedTransport(WatchedTransport):
    """The transport of feeds without --allow-private: only checked addresses, and watched."""

    def __init__(self, *, resolver: Resolver | None = None) -> None:
        super().__init__(GuardedBackend(resolver))


def make_client(*, allow_private: bool, timeout: float, resolver: Resolver | None = None) -> httpx.Client:
    """A client that never follows redirects by itself and ignores proxy variables (a proxy would
    connect on our behalf, past every check)."""
    transport = WatchedTransport() if allow_private else GuardedTransport(resolver=resolver)
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


# --------------------------------------------------------------------------- what may be fetched


def feed_source(value: str, *, allow_private: bool = False, base_dir: Path | None = None) -> str:
    """Validate what was typed at `feeds add`: an http(s) URL, or a path to a readable local file.

    Paths become file:// URIs (absolute, so the scheduler finds them from any working directory).
    Only this command accepts files; a redirect or the API can never point a feed at one.
    """
    text = inputs.one_line(value, field="source", max_len=inputs.MAX_URL, required=True)
    try:  # urllib raises on a malformed host ("http://[zz]/"); so do the URL checks every link gets
        scheme = urlsplit(text).scheme.lower()
        if scheme == "file":
            text, scheme = unquote(urlsplit(text).path), ""
        url = inputs.web_url(text, field="source") if scheme in ("http", "https") else ""
        host = (urlsplit(canonical_url(url)).hostname or "") if url else ""
    except ValueError as exc:
        raise InvalidInput(f"is not a valid address: {exc}", field="source") from None
    if url:
        if not allow_private:
            _refuse_obvious_private(host)
        return url
    if "://" in text or (scheme and len(scheme) > 1 and not Path(text).exists()):
        raise InvalidInput(
            f"only http(s) addresses or a local file path are accepted (got {scheme}:)", field="source"
        )
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise InvalidInput(f"{text}: no such file (give an http(s) address or a feed file)", field="source")
    return path.resolve().as_uri()


def _refuse_obvious_private(host: str) -> None:
    """Refuse IP literals and localhost at once; names are checked when polled (DNS may change)."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        kind: str | None = "loopback"
    else:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        kind = refused_kind(host)
    if kind is not None:
        raise InvalidInput(
            f"{host} is a {kind} address; add --allow-private if this is your own network", field="source"
        )


# --------------------------------------------------------------------------- fetching


def fetch(
    url: str,
    *,
    clock: Clock,
    etag: str = "",
    last_modified: str = "",
    allow_private: bool = False,
    timeout: float = 10.0,
    max_bytes: int = 5_000_000,
    max_redirects: int = 5,
    client: httpx.Client | None = None,
    resolver: Resolver | None = None,
) -> Fetched:
    """Fetch an http(s) URL or a file:// URI (local files are only stored by `feeds add`).

    `timeout` is one deadline for the whole fetch, redirects and download included, measured on
    `clock.monotonic()`; each request is given what is left of it as its own timeout. With clients
    from make_client it also holds in real time: the connection is cut after `timeout` seconds.
    """
    if urlsplit(url).scheme.lower() == "file":
        return read_file(url, etag=etag, max_bytes=max_bytes)
    own = client is None
    http = client or make_client(allow_private=allow_private, timeout=timeout, resolver=resolver)
    with Watchdog(timeout) as watchdog:
        try:
            return _fetch_http(
                http,
                url,
                clock=clock,
                etag=etag,
                last_modified=last_modified,
                allow_private=allow_private,
                timeout=timeout,
                max_bytes=max_bytes,
                max_redirects=max_redirects,
                resolver=resolver,
            )
        except FetchFailed:
            if watchdog.expired:  # whatever broke when the connection was cut, it was the deadline
                raise FetchFailed(f"timed out after {timeout:g} s") from None
            raise
        finally:
            if own:
                http.close()


def _fetch_http(
    client: httpx.Client,
    url: str,
    *,
    clock: Clock,
    etag: str,
    last_modified: str,
    allow_private: bool,
    timeout: float,
    max_bytes: int,
    max_redirects: int,
    resolver: Resolver | None,
) -> Fetched:
    deadline = clock.monotonic() + timeout
    headers = {"Accept": ACCEPT, "User-Agent": USER_AGENT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current = url
    for _hop in range(max_redirects + 1):
        target = _checked_url(current, allow_private=allow_private, resolver=resolver)
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            raise FetchFailed(f"timed out after {timeout:g} s")
        try:
            with client.stream(
                "GET", target, headers=headers, timeout=httpx.Timeout(remaining), follow_redirects=False
            ) as response:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location", "")
                    if not location:
                        raise FetchFailed(f"HTTP {response.status_code} without a Location header")
                    current = str(httpx.URL(target).join(location))
                    continue
                if response.status_code == 304:
                    return Fetched(304, b"", target, etag, last_modified)
                if response.status_code != 200:
                    raise FetchFailed(
                        f"HTTP {response.status_code} {response.reason_phrase}".strip(),
                        retry_after=_retry_after(response.headers.get("retry-after", ""), clock),
                        http_status=response.status_code,
                    )
                body = _read_limited(
                    response, max_bytes=max_bytes, deadline=deadline, timeout=timeout, clock=clock
                )
                return Fetched(
                    200,
                    body,
                    target,
                    etag=response.headers.get("etag", "")[:500],
                    last_modified=response.headers.get("last-modified", "")[:100],
                    content_type=response.headers.get("content-type", ""),
                )
        except httpx.TimeoutException:
            raise FetchFailed(f"timed out after {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{type(exc).__name__}: {exc}") from None
    raise FetchFailed(f"more than {max_redirects} redirects")


def _checked_url(url: str, *, allow_private: bool, resolver: Resolver | None) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchFailed(f"not a valid URL: {url[:200]!r} ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchFailed(f"refused: only http and https addresses are fetched (got {parsed.scheme}:)")
    if not parsed.host:
        raise FetchFailed(f"no host name in {url[:200]!r}")
    if not allow_private:
        check_host(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80), resolver=resolver)
    return str(parsed)


def _read_limited(
    response: httpx.Response, *, max_bytes: int, deadline: float, timeout: float, clock: Clock
) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(f"feed is larger than the limit of {max_bytes} bytes ({declared} bytes)")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():  # decoded bytes, as they arrive: a gzip bomb hits the limit too
        size += len(chunk)
        if size > max_bytes:
            raise FetchFailed(f"feed is larger than the limit of {max_bytes} bytes")
        if clock.monotonic() > deadline:
            raise FetchFailed(f"timed out after {timeout:g} s (the feed arrived too slowly)")
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(value: str, clock: Clock) -> float | None:
    """Seconds to wait: the header's delay, or its HTTP date less the clock's now."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - clock.now()).total_seconds())


def read_file(uri: str, *, etag: str = "", max_bytes: int = 5_000_000) -> Fetched:
    """A local feed file; its size and modification time stand in for an ETag."""
    path = Path(unquote(urlsplit(uri).path))
    try:
        stat = path.stat()
    except OSError as exc:
        raise FetchFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise FetchFailed(f"{path} is not a file")
    version = f'"{stat.st_size}-{stat.st_mtime_ns}"'
    if etag and etag == version:
        return Fetched(304, b"", uri, etag)
    if stat.st_size > max_bytes:
        raise FetchFailed(f"feed is larger than the limit of {max_bytes} bytes ({stat.st_size} bytes)")
    try:
        with path.open("rb") as handle:
            body = handle.read(max_bytes + 1)
    except OSError as exc:
        raise FetchFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(body) > max_bytes:
        raise FetchFailed(f"feed is larger than the limit of {max_bytes} bytes")
    return Fetched(200, body, uri, etag=version)
