"""Deadlines that hold against a real server trickling one byte at a time, and a send that never
waits for a slow feed.

The trickle is paced in real time (a byte every 0.2 s, for as long as the client stays), so every
single read succeeds quickly and only a deadline over the whole fetch can end it. The clocks here
stand still: what ends each fetch is the real-time bound, which is the point. Each test has a
pytest timeout of a few seconds, so a deadline that stops holding fails instead of hanging.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from briefing.config import load_settings
from briefing.feeds.fetch import Fetched, FetchFailed, fetch, make_client
from briefing.feeds.poll import FeedPolicy
from briefing.mail.transport import MemoryTransport
from briefing.models import Article, Feed
from briefing.service import schedule as schedule_service
from briefing.service.feeds import add_feed, poll_due_feeds, poll_feeds
from briefing.wiring import feed_policy
from tests.fixtures.clock import ManualClock
from tests.fixtures.feed_server import FeedServer, Route
from tests.fixtures.newsroom import EDITION, Newsroom
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.timeout(15)

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
SEND_AT = datetime(2026, 11, 30, 6, 1, tzinfo=UTC)
TRICKLE = 0.2
FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>Harbour reopens after the storm</title><link>https://news.example.com/harbour</link></item>
</channel></rss>"""


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


def get(server: FeedServer, path: str, *, timeout: float, client: httpx.Client | None = None) -> Fetched:
    """A fetch on a clock that stands still: only the real-time bound can end a trickle."""
    return fetch(server.url(path), clock=ManualClock(NOW), client=client, allow_private=True, timeout=timeout)


def _feed(engine: sa.Engine, name: str) -> Feed:
    with Session(engine) as session:
        return session.exec(select(Feed).where(Feed.name == name)).one()


# --------------------------------------------------------------------------- one fetch


@pytest.mark.timeout(8)
def test_a_server_trickling_its_headers_is_cut_at_the_deadline(server: FeedServer) -> None:
    """`HTTP/1.1 200 OK\\r\\nX-Slow: ` and then a byte every 0.2 s: no read ever waits a second."""
    server.routes["/slow"] = Route(trickle=TRICKLE)
    with pytest.raises(FetchFailed, match=r"^timed out after 1 s$"):
        get(server, "/slow", timeout=1)
    assert server.trickled >= 2  # the server was still trickling: only the deadline ended the fetch


@pytest.mark.timeout(8)
def test_a_server_trickling_its_body_is_cut_at_the_deadline(server: FeedServer) -> None:
    server.routes["/slow"] = Route(trickle=TRICKLE, trickle_body=True)
    with pytest.raises(FetchFailed, match=r"^timed out after 1 s$"):
        get(server, "/slow", timeout=1)
    assert server.trickled >= 2


@pytest.mark.timeout(8)
def test_a_reused_connection_is_cut_by_the_deadline_of_the_fetch_using_it(server: FeedServer) -> None:
    """One client for two fetches: the second runs on the pooled connection of the first."""
    server.routes["/feed"] = Route(FEED)
    server.routes["/slow"] = Route(trickle=TRICKLE, trickle_body=True)
    with make_client(allow_private=True, timeout=1) as client:
        got = get(server, "/feed", client=client, timeout=1)
        assert got.status == 200
        with pytest.raises(FetchFailed, match=r"^timed out after 1 s$"):
            get(server, "/slow", client=client, timeout=1)
        # The connection was cut, not the client: the next fetch works.
        again = get(server, "/feed", client=client, timeout=1)
        assert again.body == FEED


def test_a_fetch_that_ends_in_time_leaves_nothing_to_cut_later(server: FeedServer) -> None:
    """The deadline of a finished fetch never fires on the connection another fetch now uses."""
    server.routes["/feed"] = Route(FEED)
    server.routes["/slowish"] = Route(trickle=TRICKLE, trickle_body=True)
    with make_client(allow_private=True, timeout=0.3) as client:
        get(server, "/feed", client=client, timeout=0.3)
        with pytest.raises(FetchFailed, match=r"^timed out after 2 s$"):
            # Well past the first fetch's 0.3 s: had its deadline fired, this would end at 0.3 s
            # with a broken connection, not a timeout of its own.
            get(server, "/slowish", client=client, timeout=2)


# --------------------------------------------------------------------------- a poll


@pytest.mark.timeout(8)
def test_a_trickling_feed_is_recorded_as_timed_out(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/slow"] = Route(trickle=TRICKLE)
    feed = add_feed(sqlite_engine, server.url("/slow"), name="slow", allow_private=True, now=NOW)
    (result,) = poll_feeds(sqlite_engine, [feed.id], clock=ManualClock(NOW), policy=FeedPolicy(timeout=1))
    assert (result.status, result.error) == ("error", "timed out after 1 s")
    row = _feed(sqlite_engine, "slow")
    assert (row.last_status, row.last_error, row.consecutive_errors) == ("error", "timed out after 1 s", 1)


# --------------------------------------------------------------------------- the send


def _sender(room: Newsroom, mail: MemoryTransport, poll: object) -> schedule_service.DailySender:
    return schedule_service.DailySender(
        schedule_service.DailyContext(
            engine=room.engine,
            setup=lambda: room.setup,
            transport=lambda: mail,
            alert_email="",
            stop=threading.Event(),
            log=logging.getLogger("test.deadlines"),
            clock=ManualClock(SEND_AT),
            poll_feeds=poll,  # type: ignore[arg-type]
        )
    )


def test_the_send_starts_when_the_feed_budget_ends_while_a_feed_trickles(
    sqlite_newsroom: Newsroom, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The trickling feed's own deadline (30 s) is past this test's timeout: the send must not wait
    for it. The quick feed finishes within the 0.5 s budget and its article is in the store."""
    room = sqlite_newsroom
    room.readers(2)
    server.routes["/quick"] = Route(FEED)
    server.routes["/slow"] = Route(trickle=TRICKLE)
    add_feed(room.engine, server.url("/quick"), name="quick", allow_private=True, now=NOW)
    add_feed(room.engine, server.url("/slow"), name="slow desk", allow_private=True, now=NOW)
    policy = FeedPolicy(timeout=30, poll_budget=0.5)
    mail = MemoryTransport()
    polled: list[object] = []

    def poll() -> object:
        polled.append(poll_due_feeds(room.engine, clock=ManualClock(SEND_AT), policy=policy))
        return polled[-1]

    with caplog.at_level(logging.INFO):
        assert _sender(room, mail, poll).send_job(EDITION, SEND_AT) == "sent"

    assert len(mail.messages) == 2
    (results,) = polled
    assert [r.name for r in results] == ["quick"]  # only the feed that finished in time
    with Session(room.engine) as session:
        assert session.exec(select(Article.url)).all() == ["https://news.example.com/harbour"]
    missed = [r.getMessage() for r in caplog.records if "missed the 0.5 s budget" in r.getMessage()]
    assert missed == [
        "feeds: 1 of 2 feeds missed the 0.5 s budget and the caller goes on without them: "
        "still running: 'slow desk'; not started (due next round): none"
    ]
    assert _feed(room.engine, "slow desk").last_polled_at is None  # still fetching when the send ended

    server.release()  # the server stops trickling and hangs up; the late feed records that, on its own
    assert wait_until(lambda: _feed(room.engine, "slow desk").last_status == "error", timeout=10)


def test_feeds_not_started_within_the_budget_stay_due(
    sqlite_engine: sa.Engine, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """One worker: the first trickling feed holds it past the budget, the second never starts."""
    server.routes["/a"] = Route(trickle=TRICKLE)
    server.routes["/b"] = Route(FEED)
    add_feed(sqlite_engine, server.url("/a"), name="a", allow_private=True, now=NOW)
    add_feed(sqlite_engine, server.url("/b"), name="b", allow_private=True, now=NOW)
    policy = FeedPolicy(timeout=1, poll_budget=0.3, poll_workers=1)
    with caplog.at_level(logging.WARNING):
        assert poll_due_feeds(sqlite_engine, clock=ManualClock(NOW), policy=policy) == []
    assert "still running: 'a'; not started (due next round): 'b'" in caplog.text
    assert server.paths() == ["/a"]
    assert wait_until(lambda: _feed(sqlite_engine, "a").last_error == "timed out after 1 s", timeout=5)
    b = _feed(sqlite_engine, "b")
    assert b.last_polled_at is None and b.next_poll_at is None  # never claimed: due at the next round
    (result,) = poll_due_feeds(sqlite_engine, clock=ManualClock(NOW), policy=policy)
    assert (result.name, result.added) == ("b", 1)


def test_the_budget_setting_reaches_the_poller() -> None:
    settings = load_settings(_env_file=None, feed_poll_budget=5, feed_timeout=2)
    policy = feed_policy(settings)
    assert (policy.poll_budget, policy.timeout) == (5.0, 2.0)
    assert load_settings(_env_file=None).feed_poll_budget == 30.0
