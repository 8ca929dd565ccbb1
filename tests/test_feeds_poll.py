"""Polling feeds into the article store: real HTTP on 127.0.0.1, a real database, every bad input."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from briefing.db import session_scope
from briefing.errors import BriefingError, InvalidInput
from briefing.feeds import poll as feed_poll
from briefing.feeds.fetch import feed_source
from briefing.feeds.poll import FeedPolicy, SkippedEntry
from briefing.models import Article, Feed
from briefing.service.feeds import (
    add_feed,
    load_feed_file,
    poll_due_feeds,
    poll_feeds,
    remove_feed,
)
from briefing.store import articles as article_store
from briefing.store import feeds as feed_store
from tests.fixtures.clock import ManualClock
from tests.fixtures.feed_server import FeedServer, Route, http_date

pytestmark = pytest.mark.timeout(60)

FEEDS = Path(__file__).parent / "data" / "feeds"
SAMPLE = Path(__file__).parent.parent / "briefing" / "sample_data" / "feed.xml"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
POLICY = FeedPolicy(
    timeout=2, max_bytes=200_000, min_interval=timedelta(minutes=10), max_backoff=timedelta(hours=6)
)


def at(moment: datetime) -> ManualClock:
    """The poller's clock, standing at the moment a test is about."""
    return ManualClock(moment)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


def rss(*items: tuple[str, str, str]) -> bytes:
    body = "".join(
        f"<item><title>{t}</title><link>{u}</link><guid isPermaLink='false'>{g}</guid>"
        "<pubDate>Fri, 27 Nov 2026 20:00:00 GMT</pubDate></item>"
        for t, u, g in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def feed_row(engine: sa.Engine, name: str) -> Feed:
    with Session(engine) as s:
        return s.exec(select(Feed).where(Feed.name == name)).one()


def stored(engine: sa.Engine) -> dict[str, Article]:
    with Session(engine) as s:
        return {a.url: a for a in s.exec(select(Article)).all()}


def add(engine: sa.Engine, server: FeedServer, path: str, name: str, **kw: object) -> int:
    return add_feed(engine, server.url(path), name=name, allow_private=True, now=NOW, **kw).id  # type: ignore[arg-type]


def test_poll_stores_articles_and_a_304_changes_nothing(engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/feed"] = Route((FEEDS / "rss20_newsroom.xml").read_bytes(), etag='"abc"')
    add(engine, server, "/feed", "politics")
    (result,) = poll_due_feeds(engine, clock=at(NOW), policy=POLICY)
    assert (result.status, result.added, result.updated, result.skipped) == ("ok", 4, 0, ())
    articles = stored(engine)
    budget = articles[server.url("/2026/11/27/budget-schools/?page=2")]  # relative: against the feed URL
    assert budget.source == "feed" and budget.feed_id == result.feed_id
    assert budget.image_alt == "The Assembly chamber & its benches at midnight"
    row = feed_row(engine, "politics")
    assert (row.last_status, row.etag, row.articles_seen, row.consecutive_errors) == ("ok", '"abc"', 4, 0)
    assert row.last_polled_at == NOW and row.next_poll_at == NOW + POLICY.min_interval

    assert poll_due_feeds(engine, clock=at(NOW + timedelta(minutes=5)), policy=POLICY) == []  # not due yet
    later = NOW + timedelta(minutes=11)
    (again,) = poll_due_feeds(engine, clock=at(later), policy=POLICY)
    assert again.status == "not-modified" and (again.added, again.updated, again.unchanged) == (0, 0, 0)
    assert server.requests[-1].headers["if-none-match"] == '"abc"'
    assert stored(engine)[budget.url].updated_at == budget.updated_at
    row = feed_row(engine, "politics")
    assert (row.last_status, row.articles_seen, row.last_polled_at) == ("not-modified", 4, later)


def test_changed_feed_updates_and_adds(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    engine = sqlite_engine
    server.routes["/feed"] = Route(rss(("One", "https://news.example.com/1", "g1")), etag='"1"')
    feed_id = add(engine, server, "/feed", "site")
    poll_feeds(engine, [feed_id], clock=at(NOW), policy=POLICY)
    server.routes["/feed"] = Route(
        rss(
            ("One, revised", "https://news.example.com/1", "g1"), ("Two", "https://news.example.com/2", "g2")
        ),
        etag='"2"',
    )
    (result,) = poll_feeds(engine, [feed_id], clock=at(NOW + timedelta(minutes=10)), policy=POLICY)
    assert (result.added, result.updated, result.unchanged) == (1, 1, 0)
    assert stored(engine)["https://news.example.com/1"].title == "One, revised"
    assert feed_row(engine, "site").etag == '"2"'


def test_an_article_whose_link_changed_is_found_by_guid(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    engine = sqlite_engine
    server.routes["/feed"] = Route(rss(("Draft slug", "https://news.example.com/draft-slug", "p-9")))
    feed_id = add(engine, server, "/feed", "site")
    poll_feeds(engine, [feed_id], clock=at(NOW), policy=POLICY)
    first_id = stored(engine)["https://news.example.com/draft-slug"].id
    server.routes["/feed"] = Route(rss(("Final slug", "https://news.example.com/final-slug", "p-9")))
    (result,) = poll_feeds(engine, [feed_id], clock=at(NOW), force=True, policy=POLICY)
    assert (result.added, result.updated) == (0, 1)
    articles = stored(engine)
    assert list(articles) == ["https://news.example.com/final-slug"]
    assert articles["https://news.example.com/final-slug"].id == first_id


def test_guid_matching_is_per_feed(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    """Two feeds both numbering their items from 1 must not overwrite each other's articles."""
    engine = sqlite_engine
    server.routes["/a"] = Route(rss(("A one", "https://a.example.com/1", "1")))
    server.routes["/b"] = Route(rss(("B one", "https://b.example.com/1", "1")))
    add(engine, server, "/a", "a")
    add(engine, server, "/b", "b")
    poll_due_feeds(engine, clock=at(NOW), policy=POLICY)
    assert set(stored(engine)) == {"https://a.example.com/1", "https://b.example.com/1"}


def test_one_bad_feed_never_stops_the_others(engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/html"] = Route((FEEDS / "not_a_feed.html").read_bytes(), content_type="text/html")
    server.routes["/good"] = Route(rss(("Good", "https://news.example.com/good", "g")))
    add(engine, server, "/html", "broken")
    add(engine, server, "/good", "good")
    results = {r.name: r for r in poll_due_feeds(engine, clock=at(NOW), policy=POLICY)}
    assert results["broken"].status == "error"
    assert results["broken"].error == "feed: the document is not an RSS or Atom feed"
    assert results["good"].status == "ok" and results["good"].added == 1
    row = feed_row(engine, "broken")
    assert (row.last_status, row.consecutive_errors) == ("error", 1)
    assert row.last_error == "feed: the document is not an RSS or Atom feed"
    assert row.next_poll_at == NOW + POLICY.min_interval * 2


def test_errors_back_off_exponentially_up_to_the_cap(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    engine = sqlite_engine
    server.routes["/gone"] = Route(status=500)
    add(engine, server, "/gone", "flaky")
    now = NOW
    delays = []
    for _ in range(8):
        (result,) = poll_due_feeds(engine, clock=at(now), policy=POLICY)
        assert result.status == "error" and result.error == "HTTP 500 Internal Server Error"
        assert result.next_poll_at is not None
        delays.append(result.next_poll_at - now)
        now = result.next_poll_at
    minutes = [int(d.total_seconds() // 60) for d in delays]
    assert minutes == [20, 40, 80, 160, 320, 360, 360, 360]
    assert feed_row(engine, "flaky").consecutive_errors == 8

    server.routes["/gone"] = Route(rss(("Back", "https://news.example.com/back", "b")))
    (result,) = poll_due_feeds(engine, clock=at(now), policy=POLICY)
    assert result.status == "ok"
    row = feed_row(engine, "flaky")
    assert (row.consecutive_errors, row.last_error) == (0, "")


@pytest.mark.parametrize(
    "retry_after", ["7200", http_date(NOW + timedelta(hours=2))], ids=["seconds", "http-date"]
)
def test_retry_after_is_honoured(sqlite_engine: sa.Engine, server: FeedServer, retry_after: str) -> None:
    """A date is measured from the poller's clock, so it means the same on any day the test runs."""
    server.routes["/busy"] = Route(status=429, headers={"Retry-After": retry_after})
    add(sqlite_engine, server, "/busy", "busy")
    (result,) = poll_due_feeds(sqlite_engine, clock=at(NOW), policy=POLICY)
    assert result.next_poll_at == NOW + timedelta(hours=2)


def test_without_allow_private_a_loopback_feed_is_refused(
    sqlite_engine: sa.Engine, server: FeedServer
) -> None:
    server.routes["/feed"] = Route(rss(("A", "https://news.example.com/a", "a")))
    with pytest.raises(InvalidInput, match="loopback address; add --allow-private"):
        add_feed(sqlite_engine, server.url("/feed"), name="local", now=NOW)
    # A name that resolves to loopback passes `add` (DNS may change) but never gets fetched.
    add_feed(sqlite_engine, f"http://intranet.example.com:{server.port}/feed", name="local", now=NOW)
    policy = FeedPolicy(timeout=2, resolver=lambda host, port: ["127.0.0.1"])
    (result,) = poll_due_feeds(sqlite_engine, clock=at(NOW), policy=policy)
    assert result.status == "error" and "127.0.0.1 (loopback)" in result.error
    assert server.requests == []
    assert "refused" in feed_row(sqlite_engine, "local").last_error


def test_a_redirect_to_a_private_address_is_recorded(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/feed"] = Route(status=302, headers={"Location": "http://10.20.30.40/feed"})
    add_feed(sqlite_engine, f"http://public.example.com:{server.port}/feed", name="moved", now=NOW)
    fake = {"public.example.com": ["93.184.215.14"]}
    policy = FeedPolicy(timeout=2, resolver=lambda h, p: fake.get(h) or [h])
    # The client connects wherever the URL points; our own names go to the test server.
    import httpx

    transport = httpx.HTTPTransport()

    class ToTestServer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.url = request.url.copy_with(host="127.0.0.1")
            return transport.handle_request(request)

    with httpx.Client(transport=ToTestServer()) as client:
        (result,) = poll_due_feeds(sqlite_engine, clock=at(NOW), client=client, policy=policy)
    assert result.status == "error"
    assert result.error.startswith("refused: 10.20.30.40 resolves to 10.20.30.40 (private)")
    assert server.paths() == ["/feed"]


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (Route(b"<rss>" + b"x" * 300_000 + b"</rss>"), "feed is larger than the limit of 200000 bytes"),
        (Route(rss(("A", "https://news.example.com/a", "a")), hold=True), "timed out after 2 s"),
        (Route(b"\x00\x01 not xml"), "feed: the feed is not well-formed XML"),
    ],
    ids=["too-large", "timeout", "not-xml"],
)
def test_fetch_and_parse_failures_are_recorded_on_the_feed(
    sqlite_engine: sa.Engine, server: FeedServer, route: Route, message: str
) -> None:
    server.routes["/feed"] = route
    add(sqlite_engine, server, "/feed", "bad")
    (result,) = poll_due_feeds(sqlite_engine, clock=at(NOW), policy=POLICY)
    assert result.status == "error" and result.error.startswith(message)
    row = feed_row(sqlite_engine, "bad")
    assert row.last_status == "error" and row.last_error.startswith(message)
    assert stored(sqlite_engine) == {}


def test_truncated_feed_stores_what_it_can_and_fetches_in_full_next_time(
    engine: sa.Engine, server: FeedServer
) -> None:
    server.routes["/feed"] = Route((FEEDS / "truncated.xml").read_bytes(), etag='"cut"')
    add(engine, server, "/feed", "cut")
    (result,) = poll_due_feeds(engine, clock=at(NOW), policy=POLICY)
    assert result.status == "warning" and result.added == 2
    assert result.skipped == (SkippedEntry(3, "no link", ""),)
    assert "not well-formed XML" in result.error
    row = feed_row(engine, "cut")
    assert row.etag == "" and row.last_status == "warning"  # no validator kept: a 304 would hide the rest
    server.routes["/feed"] = Route((FEEDS / "rss20_newsroom.xml").read_bytes(), etag='"full"')
    (result,) = poll_due_feeds(engine, clock=at(NOW + timedelta(hours=1)), policy=POLICY)
    assert (result.status, result.added, result.updated) == ("ok", 2, 2)  # alt text only a full read gives
    assert "if-none-match" not in server.requests[-1].headers


def test_entries_without_links_are_skipped_and_reported(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/feed"] = Route((FEEDS / "no_links.xml").read_bytes())
    add(sqlite_engine, server, "/feed", "links")
    (result,) = poll_due_feeds(sqlite_engine, clock=at(NOW), policy=POLICY)
    assert result.status == "warning" and result.added == 2
    assert [(s.index, s.reason) for s in result.skipped] == [
        (2, "no link"),
        (3, "url: must start with http:// or https:// (got 'javascript:alert(1)')"),
        (5, "no title and no summary"),
    ]
    assert feed_row(sqlite_engine, "links").last_error.startswith("3 entries skipped: entry 2: no link")


def test_future_dates_are_clamped_once_and_do_not_creep(engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/feed"] = Route((FEEDS / "future_dates.xml").read_bytes())
    add(engine, server, "/feed", "clock")
    (result,) = poll_due_feeds(engine, clock=at(NOW), policy=POLICY)
    assert result.added == 3 and len(result.notes) == 1 and "2099-01-01" in result.notes[0]
    articles = stored(engine)
    assert articles["https://news.example.com/2099/01/01/future"].published_at == NOW
    assert articles["https://news.example.com/2026/11/27/no-date"].published_at is None
    assert articles["https://news.example.com/2026/11/27/bad-date"].published_at is None
    (again,) = poll_due_feeds(engine, clock=at(NOW + timedelta(hours=3)), policy=POLICY)
    assert again.unchanged == 3
    assert stored(engine)["https://news.example.com/2099/01/01/future"].published_at == NOW


def test_same_url_under_different_guids_is_one_article(engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/feed"] = Route((FEEDS / "duplicate_urls.xml").read_bytes())
    add(engine, server, "/feed", "dups")
    (result,) = poll_due_feeds(engine, clock=at(NOW), policy=POLICY)
    assert result.added == 3
    assert [(s.index, s.reason) for s in result.skipped] == [(2, "same link as entry 1")]
    articles = stored(engine)
    assert articles["https://news.example.com/2026/11/26/port-talks"].title == "Port talks resume (updated)"
    # The shared guid identifies nothing: both stories stay, and a re-poll keeps them apart.
    (again,) = poll_due_feeds(engine, clock=at(NOW + timedelta(hours=1)), policy=POLICY)
    assert again.unchanged == 3 and len(stored(engine)) == 3


def test_an_unexpected_failure_is_recorded_not_raised(
    sqlite_engine: sa.Engine,
    server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.routes["/feed"] = Route(rss(("A", "https://news.example.com/a", "a")))
    add(sqlite_engine, server, "/feed", "surprise")

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(feed_poll, "parse_feed", explode)
    with caplog.at_level(logging.ERROR):
        (result,) = poll_due_feeds(
            sqlite_engine, clock=at(NOW), policy=POLICY, log=logging.getLogger("test.feeds")
        )
    assert result.status == "error" and result.error == "unexpected error: RuntimeError: parser bug"
    assert feed_row(sqlite_engine, "surprise").consecutive_errors == 1
    assert "parser bug" in caplog.text


def test_a_claimed_feed_is_not_polled_twice(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/feed"] = Route(rss(("A", "https://news.example.com/a", "a")))
    feed_id = add(sqlite_engine, server, "/feed", "once")
    with session_scope(sqlite_engine) as session:
        assert feed_store.claim_feed(
            session, feed_id, now=NOW, until=NOW + timedelta(minutes=1), only_if_due=True
        )
    assert poll_due_feeds(sqlite_engine, clock=at(NOW), policy=POLICY) == []  # another poller holds it
    assert server.requests == []


def test_manual_poll_keeps_the_minimum_interval_unless_forced(
    sqlite_engine: sa.Engine, server: FeedServer
) -> None:
    server.routes["/feed"] = Route(rss(("A", "https://news.example.com/a", "a")))
    feed_id = add(sqlite_engine, server, "/feed", "manual")
    poll_feeds(sqlite_engine, [feed_id], clock=at(NOW), policy=POLICY)
    (result,) = poll_feeds(sqlite_engine, [feed_id], clock=at(NOW + timedelta(minutes=2)), policy=POLICY)
    assert result.status == "skipped" and "use --force" in result.error
    assert len(server.requests) == 1
    (result,) = poll_feeds(
        sqlite_engine, [feed_id], clock=at(NOW + timedelta(minutes=2)), force=True, policy=POLICY
    )
    assert result.status == "ok" and len(server.requests) == 2


def test_remove_keeps_the_articles(sqlite_engine: sa.Engine, server: FeedServer) -> None:
    server.routes["/feed"] = Route(rss(("A", "https://news.example.com/a", "a")))
    add(sqlite_engine, server, "/feed", "gone")
    poll_due_feeds(sqlite_engine, clock=at(NOW), policy=POLICY)
    removed = remove_feed(sqlite_engine, "gone")
    assert removed.article_count == 1
    (article,) = stored(sqlite_engine).values()
    assert article.feed_id is None


def test_feed_sources(tmp_path: Path) -> None:
    path = tmp_path / "site.xml"
    path.write_bytes(rss())
    assert feed_source(str(path)) == path.resolve().as_uri()
    assert feed_source(path.resolve().as_uri()) == path.resolve().as_uri()
    assert feed_source("site.xml", base_dir=tmp_path) == path.resolve().as_uri()
    assert feed_source("https://news.example.com/feed") == "https://news.example.com/feed"
    for bad, message in [
        ("ftp://news.example.com/feed", "only http"),
        ("javascript:alert(1)", "only http"),
        (str(tmp_path / "missing.xml"), "no such file"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://[::1]/feed", "loopback"),
        ("", "is required"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            feed_source(bad)
    assert feed_source("http://10.0.0.5/feed", allow_private=True) == "http://10.0.0.5/feed"


def test_feed_names_are_unique(sqlite_engine: sa.Engine) -> None:
    add_feed(sqlite_engine, "https://news.example.com/feed.xml", now=NOW)
    with pytest.raises(BriefingError, match="exists already"):
        add_feed(sqlite_engine, "https://news.example.com/feed.xml", now=NOW)
    assert feed_row(sqlite_engine, "news.example.com/feed.xml").url == "https://news.example.com/feed.xml"


def test_sample_feed_loads_through_the_feed_code(engine: sa.Engine) -> None:
    result = load_feed_file(engine, SAMPLE, name="Example News", clock=at(NOW))
    assert (result.status, result.added, result.skipped) == ("ok", 12, ())
    with Session(engine) as s:
        with_images = s.exec(select(Article).where(col(Article.image_url) != "")).all()
    assert len(with_images) >= 3 and all(a.image_alt for a in with_images)
    again = load_feed_file(engine, SAMPLE, name="Example News", clock=at(NOW))
    assert again.status == "not-modified"
    with session_scope(engine) as session:
        assert len(feed_store.list_feeds(session)) == 1


def test_sample_feed_matches_the_sample_articles(sqlite_engine: sa.Engine) -> None:
    """The demo's stories point at these URLs, so the feed must carry the same articles."""
    import json

    expected = {
        json.loads(line)["url"]
        for line in (SAMPLE.parent / "articles.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    }
    load_feed_file(sqlite_engine, SAMPLE, clock=at(NOW))
    with session_scope(sqlite_engine) as session:
        urls = {a.url for a in article_store.list_articles(session, limit=100)}
    assert urls == expected
