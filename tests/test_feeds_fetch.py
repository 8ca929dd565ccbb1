"""Fetching over real HTTP on 127.0.0.1: conditional GET, limits, timeouts, and the private-address guard."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from briefing.feeds import fetch as fetch_module
from briefing.feeds.fetch import (
    AddressRefused,
    Fetched,
    FetchFailed,
    GuardedBackend,
    check_host,
    refused_kind,
)
from tests.fixtures.clock import ManualClock
from tests.fixtures.feed_server import FeedServer, Route, http_date

pytestmark = pytest.mark.timeout(30)

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>A</title><link>https://news.example.com/a</link></item></channel></rss>"""
PUBLIC = "93.184.215.14"  # stands in for a public address in a fake resolver; never connected to
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def fetch(url: str, *, clock: ManualClock | None = None, **kwargs: object) -> Fetched:
    """The real fetch on a clock of the test's own (one standing at NOW unless a test passes one)."""
    return fetch_module.fetch(url, clock=clock or ManualClock(NOW), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


def test_etag_and_last_modified_make_the_second_fetch_a_304(server: FeedServer) -> None:
    stamp = http_date(NOW - timedelta(hours=1))
    server.routes["/feed"] = Route(FEED, etag='"v1"', last_modified=stamp)
    first = fetch(server.url("/feed"), allow_private=True, timeout=5)
    assert first.status == 200 and first.body == FEED
    assert first.etag == '"v1"' and first.last_modified == stamp
    second = fetch(
        server.url("/feed"), etag=first.etag, last_modified=first.last_modified, allow_private=True, timeout=5
    )
    assert second.status == 304 and second.body == b""
    sent = server.requests[-1].headers
    assert sent["if-none-match"] == '"v1"' and sent["if-modified-since"] == stamp
    assert "briefing" in sent["user-agent"]


def test_last_modified_alone_is_enough(server: FeedServer) -> None:
    stamp = http_date(NOW - timedelta(minutes=1))
    server.routes["/feed"] = Route(FEED, last_modified=stamp)
    first = fetch(server.url("/feed"), allow_private=True, timeout=5)
    assert first.etag == ""
    assert (
        fetch(server.url("/feed"), last_modified=first.last_modified, allow_private=True, timeout=5).status
        == 304
    )


def test_loopback_is_refused_without_allow_private(server: FeedServer) -> None:
    server.routes["/feed"] = Route(FEED)
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1 \(loopback\).*--allow-private"):
        fetch(server.url("/feed"), timeout=5)
    assert server.requests == []  # refused before connecting


def test_localhost_by_name_is_refused(server: FeedServer) -> None:
    server.routes["/feed"] = Route(FEED)
    with pytest.raises(AddressRefused, match="loopback"):
        fetch(f"http://localhost:{server.port}/feed", timeout=5)
    assert server.requests == []


def test_a_redirect_to_a_private_address_is_refused(server: FeedServer) -> None:
    """The first hop looks public (fake resolver); the redirect target is loopback and never fetched."""
    server.routes["/start"] = Route(
        status=302, headers={"Location": f"http://localhost:{server.port}/secret"}
    )
    server.routes["/secret"] = Route(FEED)

    def resolver(host: str, port: int) -> list[str]:
        return [PUBLIC] if host == "127.0.0.1" else ["127.0.0.1"]

    # A plain client connects to 127.0.0.1 as the URL says; the checks see only the fake answers.
    with httpx.Client() as client, pytest.raises(AddressRefused, match=r"localhost resolves to 127\.0\.0\.1"):
        fetch(server.url("/start"), timeout=5, client=client, resolver=resolver)
    assert server.paths() == ["/start"]


def test_redirects_are_followed_by_hand_up_to_a_limit(server: FeedServer) -> None:
    server.routes["/a"] = Route(status=301, headers={"Location": "/b"})
    server.routes["/b"] = Route(status=307, headers={"Location": server.url("/feed")})
    server.routes["/feed"] = Route(FEED)
    got = fetch(server.url("/a"), allow_private=True, timeout=5)
    assert got.status == 200 and got.url == server.url("/feed")
    server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    with pytest.raises(FetchFailed, match="more than 3 redirects"):
        fetch(server.url("/loop"), allow_private=True, timeout=5, max_redirects=3)
    assert server.paths().count("/loop") == 4


def test_a_redirect_to_another_scheme_is_refused(server: FeedServer) -> None:
    server.routes["/a"] = Route(status=302, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(FetchFailed, match="only http and https"):
        fetch(server.url("/a"), allow_private=True, timeout=5)


def test_connect_time_guard_stops_dns_rebinding(server: FeedServer) -> None:
    """The name passes the first check, then resolves to loopback when the client connects."""
    server.routes["/feed"] = Route(FEED)
    answers = iter([[PUBLIC], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    with pytest.raises(AddressRefused, match="loopback"):
        fetch(f"http://feeds.example.com:{server.port}/feed", timeout=5, resolver=rebinding)
    assert server.requests == []


def test_guarded_backend_refuses_loopback_directly(server: FeedServer) -> None:
    with pytest.raises(AddressRefused):
        GuardedBackend().connect_tcp("127.0.0.1", server.port, timeout=2)


def test_size_limit_by_content_length(server: FeedServer) -> None:
    server.routes["/big"] = Route(b"<rss>" + b" " * 2000 + b"</rss>")
    with pytest.raises(FetchFailed, match="larger than the limit of 1000 bytes"):
        fetch(server.url("/big"), allow_private=True, timeout=5, max_bytes=1000)


def test_size_limit_while_streaming_without_content_length(server: FeedServer) -> None:
    server.routes["/big"] = Route(b"<rss>" + b" " * 200_000 + b"</rss>", send_length=False)
    with pytest.raises(FetchFailed, match="larger than the limit of 50000 bytes"):
        fetch(server.url("/big"), allow_private=True, timeout=5, max_bytes=50_000)


def test_a_server_that_does_not_answer_times_out(server: FeedServer) -> None:
    """The server holds the request until the test ends: only the client's timeout can end the fetch."""
    server.routes["/slow"] = Route(FEED, hold=True)
    with pytest.raises(FetchFailed, match=r"timed out after 0\.5 s"):
        fetch(server.url("/slow"), allow_private=True, timeout=0.5)
    assert server.paths() == ["/slow"]  # it connected and asked; the answer never came


def test_a_feed_that_drips_in_hits_the_overall_deadline(server: FeedServer, clock: ManualClock) -> None:
    """Each byte arrives well within the read timeout, but the whole takes longer than the deadline."""
    server.routes["/drip"] = Route(FEED, drip=lambda: clock.advance(0.05))
    assert len(FEED) * 0.05 > 2  # the whole body would take more than twice the deadline
    started = clock.monotonic()
    with pytest.raises(FetchFailed, match=r"timed out after 1 s \(the feed arrived too slowly\)"):
        fetch(server.url("/drip"), allow_private=True, timeout=1, clock=clock)
    assert clock.monotonic() - started > 1  # the clock the deadline runs on did pass it


def test_a_feed_that_arrives_in_time_is_read_whatever_the_clock_says_at_the_start(
    server: FeedServer, clock: ManualClock
) -> None:
    server.routes["/drip"] = Route(FEED, drip=lambda: clock.advance(0.001))
    got = fetch(server.url("/drip"), allow_private=True, timeout=1, clock=clock)
    assert got.status == 200 and got.body == FEED


def test_the_deadline_covers_every_redirect(server: FeedServer, clock: ManualClock) -> None:
    """Each hop takes 0.6 s on the clock: the second hop starts in time, the third would start late."""

    def slow_hop(target: str) -> Route:
        clock.advance(0.6)
        return Route(status=302, headers={"Location": target})

    server.routes["/a"] = lambda _handler: slow_hop("/b")
    server.routes["/b"] = lambda _handler: slow_hop("/feed")
    server.routes["/feed"] = Route(FEED)
    with pytest.raises(FetchFailed, match=r"timed out after 1 s"):
        fetch(server.url("/a"), allow_private=True, timeout=1, clock=clock)
    assert server.paths() == ["/a", "/b"]  # the third request was never made


def test_http_errors_carry_status_and_retry_after(server: FeedServer) -> None:
    server.routes["/busy"] = Route(status=503, headers={"Retry-After": "120"})
    with pytest.raises(FetchFailed) as caught:
        fetch(server.url("/busy"), allow_private=True, timeout=5)
    assert caught.value.http_status == 503 and caught.value.retry_after == 120
    assert str(caught.value).startswith("HTTP 503")
    server.routes["/later"] = Route(
        status=429, headers={"Retry-After": http_date(NOW + timedelta(minutes=5))}
    )
    with pytest.raises(FetchFailed) as caught:
        fetch(server.url("/later"), allow_private=True, timeout=5)
    assert caught.value.retry_after == 300  # the date, measured from the clock's now
    with pytest.raises(FetchFailed, match="HTTP 404"):
        fetch(server.url("/missing"), allow_private=True, timeout=5)


def test_nothing_listening_is_a_fetch_error() -> None:
    with FeedServer() as gone:
        port = gone.port
    with pytest.raises(FetchFailed):
        fetch(f"http://127.0.0.1:{port}/feed", allow_private=True, timeout=2)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "not public"),
        ("240.0.0.1", "private"),
        (PUBLIC, None),
        ("2606:2800:220:1::1", None),
    ],
)
def test_refused_kinds(address: str, kind: str | None) -> None:
    assert refused_kind(address) == kind


def test_every_address_of_a_name_is_checked() -> None:
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.7"):
        check_host("mixed.example.com", 443, resolver=lambda h, p: [PUBLIC, "10.0.0.7"])
    assert check_host("ok.example.com", 443, resolver=lambda h, p: [PUBLIC]) == [PUBLIC]
    with pytest.raises(FetchFailed, match="cannot resolve"):
        check_host("nowhere.invalid", 443, resolver=lambda h, p: [])


def test_size_limit_counts_decompressed_bytes(server: FeedServer) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 3_000_000 + b"</rss>")
    assert len(bomb) < 10_000
    server.routes["/bomb"] = Route(bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(FetchFailed, match="larger than the limit of 100000 bytes"):
        fetch(server.url("/bomb"), allow_private=True, timeout=5, max_bytes=100_000)
