"""Hostile feeds: one bad entry (a lone surrogate, a malformed host, a date no calendar holds, a
field of 100,000 letters) is skipped with its reason, the rest of the feed is stored, and nothing
reaches the log as a traceback. Parsed from bytes, then polled over real HTTP into a real database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from briefing.domain import ArticleInput
from briefing.errors import InvalidInput
from briefing.feeds.parse import ParsedFeed, parse_feed
from briefing.feeds.poll import FeedPolicy
from briefing.models import Article, Feed
from briefing.service.feeds import add_feed, poll_due_feeds
from tests.fixtures.clock import ManualClock
from tests.fixtures.feed_server import FeedServer, Route

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


def items(feed: ParsedFeed) -> list[ArticleInput]:
    return [e.item for e in feed.entries if e.item is not None]


def stored(engine: sa.Engine) -> dict[str, Article]:
    with Session(engine) as s:
        return {a.url: a for a in s.exec(select(Article)).all()}


def feed_row(engine: sa.Engine, name: str) -> Feed:
    with Session(engine) as s:
        return s.exec(select(Feed).where(Feed.name == name)).one()


def add(engine: sa.Engine, server: FeedServer, path: str, name: str) -> int:
    return add_feed(engine, server.url(path), name=name, allow_private=True, now=NOW).id


# --------------------------------------------------------------------------- parsed from bytes


GOOD = "<item><title>Good</title><link>https://news.example.com/good</link></item>"
MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'
NOT_UNICODE = "is not valid Unicode (a lone surrogate or a character past U+10FFFF)"


def one_bad(item: str, *, channel: str = "") -> ParsedFeed:
    doc = f'<?xml version="1.0"?><rss version="2.0" {MEDIA}><channel><title>t</title>{channel}{GOOD}{item}'
    return parse_feed(f"{doc}</channel></rss>".encode(), base_url="https://news.example.com/feed", now=NOW)


def good_and_reason(feed: ParsedFeed) -> tuple[list[str], str]:
    """The links stored, and the reason the second entry was skipped."""
    _good, second = feed.entries
    assert second.item is None, "the bad entry was kept"
    return [i.url for i in items(feed)], second.reason


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("<title>Bad &#xD800; title</title><link>https://news.example.com/b</link>", "title"),
        ("<title>B</title><link>https://news.example.com/&#xDBFF;</link>", "url"),
        (
            "<title>B</title><link>https://news.example.com/b</link><description>x &#xDFFF;</description>",
            "summary",
        ),
        ("<title>B</title><link>https://news.example.com/b</link><guid>g&#55296;</guid>", "guid"),
        ("<title>B</title><link>https://news.example.com/b</link><author>&#xD800;</author>", "author"),
        ("<title>B</title><link>https://news.example.com/b</link><category>&#xD800;</category>", "category"),
        (
            "<title>B</title><link>https://news.example.com/b</link>"
            "<media:content url='https://news.example.com/&#xD800;.jpg' medium='image'/>",
            "image",
        ),
        ("<title>B&#x110000;</title><link>https://news.example.com/b</link>", "title"),  # past U+10FFFF
        ("<title>B&#99999999999999999999;</title><link>https://news.example.com/b</link>", "title"),
    ],
    ids=["title", "link", "summary", "guid", "author", "category", "image", "past-max", "huge"],
)
def test_a_lone_surrogate_anywhere_skips_only_its_entry(item: str, reason: str) -> None:
    """feedparser raised on these and the whole feed was lost, on every poll."""
    kept, why = good_and_reason(one_bad(f"<item>{item}</item>"))
    assert kept == ["https://news.example.com/good"]
    assert why == f"{reason}: {NOT_UNICODE}"


def test_a_lone_surrogate_in_the_feed_title_is_replaced_not_fatal() -> None:
    feed = parse_feed(
        b'<rss version="2.0"><channel><title>Desk &#xD800;</title>' + GOOD.encode() + b"</channel></rss>",
        base_url="https://news.example.com/feed",
        now=NOW,
    )
    assert feed.title == "Desk \ufffd" and [i.url for i in items(feed)] == ["https://news.example.com/good"]


@pytest.mark.parametrize(
    "link",
    [
        "<link>http://[zz]/</link>",
        "<link>https://[::1/</link>",
        "<guid isPermaLink='true'>http://[zz]/</guid>",
        "<link>https://news.example.com:99999/b</link>",
        "<link>https://news.example.com:abc/b</link>",
        "<link>https://" + "a" * 300 + ".example.com/</link>",
    ],
    ids=["invalid-ipv6", "unclosed-ipv6", "permalink-guid", "port-range", "port-text", "long-host"],
)
def test_a_link_with_a_bad_host_skips_only_its_entry(link: str) -> None:
    kept, why = good_and_reason(one_bad(f"<item><title>B</title>{link}</item>"))
    assert kept == ["https://news.example.com/good"]
    assert why.startswith("url: ")


def test_an_image_with_a_bad_host_drops_the_image_not_the_article() -> None:
    for url in ("http://[zz]/x.jpg", "https://[::1/x.jpg", "https://news.example.com:99999/x.jpg"):
        feed = one_bad(
            f"<item><title>B</title><link>https://news.example.com/b</link>"
            f"<media:content url='{url}' medium='image'/></item>"
        )
        assert [(i.url, i.image_url) for i in items(feed)] == [
            ("https://news.example.com/good", ""),
            ("https://news.example.com/b", ""),
        ]


@pytest.mark.parametrize(
    ("element", "raw"),
    [
        ("<pubDate>0001-01-01T00:00:00+01:00</pubDate>", "0001-01-01T00:00:00+01:00"),  # year 0 in UTC
        ("<pubDate>9999-12-31T23:59:59-01:00</pubDate>", "9999-12-31T23:59:59-01:00"),  # year 10000
        ("<pubDate>Mon, 01 Jan 0001 00:00:00 +0100</pubDate>", "Mon, 01 Jan 0001 00:00:00 +0100"),
        ("<pubDate>1899-12-31T23:59:59Z</pubDate>", "1899-12-31T23:59:59Z"),
    ],
    ids=["year-0-in-utc", "year-10000-in-utc", "rfc822-year-1", "before-1900"],
)
def test_a_date_out_of_range_skips_only_its_entry(element: str, raw: str) -> None:
    kept, why = good_and_reason(
        one_bad(f"<item><title>B</title><link>https://news.example.com/b</link>{element}</item>")
    )
    assert kept == ["https://news.example.com/good"]
    assert why == f"published: {raw!r} is not a date from 1900 to 2200"


def test_atom_dates_out_of_range_name_their_element() -> None:
    doc = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        '<entry><title>A</title><link href="https://news.example.com/a"/>'
        "<updated>2026-11-27T08:00:00Z</updated></entry>"
        '<entry><title>B</title><link href="https://news.example.com/b"/>'
        "<updated>9999-12-31T23:59:59-01:00</updated></entry></feed>"
    )
    a, b = parse_feed(doc.encode(), base_url="https://news.example.com/feed", now=NOW).entries
    assert a.item is not None and a.item.published_at == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert (
        b.item is None and b.reason == "updated: '9999-12-31T23:59:59-01:00' is not a date from 1900 to 2200"
    )


@pytest.mark.timeout(10)
def test_absurdly_long_fields_are_cut_or_refused_and_the_rest_kept() -> None:
    """A 100,000-letter author held feedparser for two minutes (a regex quadratic in its length)."""
    feed = one_bad(
        f"<item><title>B</title><link>https://news.example.com/{'a' * 100_000}</link></item>"
        f"<item><title>{'word ' * 200_000}</title><link>https://news.example.com/c</link>"
        f"<guid>{'g' * 50_000}</guid><category>{'c' * 100_000}</category><author>{'n' * 100_000}</author>"
        f"<media:content url='https://news.example.com/x.jpg' medium='image'>"
        f"<media:title>{'t' * 100_000}</media:title></media:content></item>"
    )
    good, long_link, long_fields = feed.entries
    assert good.item is not None
    assert long_link.item is None and long_link.reason == "url: is 100025 characters; the limit is 2000"
    item = long_fields.item
    assert item is not None and item.url == "https://news.example.com/c"
    assert len(item.title) <= 300 and len(item.section) <= 100 and len(item.author) <= 200
    assert len(item.image_alt) <= 300 and item.guid.startswith("sha256:")
    assert item.author == "n" * 199 + "…"  # cut to the column, as every long field is


@pytest.mark.timeout(10)
@pytest.mark.parametrize("element", ["dc:creator", "managingEditor", "itunes:author"])
def test_a_long_author_in_cdata_is_cut_before_feedparser_reads_it(element: str) -> None:
    doc = (
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>t</title>'
        f"<{element}><![CDATA[{'x' * 100_000}]]></{element}>"
        "<item><title>B</title><link>https://news.example.com/b</link>"
        f"<{element}><![CDATA[{'y' * 100_000}]]></{element}></item></channel></rss>"
    )
    feed = parse_feed(doc.encode(), base_url="https://news.example.com/feed", now=NOW)
    assert not feed.problem  # the CDATA section was cut inside, and closed again
    (entry,) = feed.entries
    assert entry.item is not None and entry.item.url == "https://news.example.com/b"


# --------------------------------------------------------------------------- polled

POLICY = FeedPolicy(timeout=2, max_bytes=200_000)


HOSTILE = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><title>Harbour reopens</title><link>https://news.example.com/harbour</link></item>
<item><title>Bad &#xD800; title</title><link>https://news.example.com/surrogate</link></item>
<item><title>Bad host</title><link>http://[zz]/</link></item>
<item><title>Bad date</title><link>https://news.example.com/old</link>
<pubDate>0001-01-01T00:00:00+01:00</pubDate></item>
<item><title>Long author</title><link>https://news.example.com/author</link>
<author>{"n" * 100_000}</author></item>
<item><title>Bad port</title><link>https://news.example.com:99999/x</link></item>
<item><title>Library hours</title><link>https://news.example.com/library</link></item>
</channel></rss>""".encode()


@pytest.mark.timeout(20)
def test_one_bad_entry_is_skipped_with_its_reason_and_the_rest_are_stored(
    engine: sa.Engine, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the &#xD800; stopped the whole feed on every poll, with a traceback in the log."""
    server.routes["/feed"] = Route(HOSTILE)
    add(engine, server, "/feed", "hostile")
    with caplog.at_level(logging.DEBUG):
        (result,) = poll_due_feeds(engine, clock=ManualClock(NOW), policy=POLICY)
    assert (result.status, result.added) == ("warning", 3)
    assert set(stored(engine)) == {
        "https://news.example.com/harbour",
        "https://news.example.com/author",
        "https://news.example.com/library",
    }
    reasons = {s.index: s.reason for s in result.skipped}
    assert set(reasons) == {2, 3, 4, 6}
    assert reasons[2] == "title: is not valid Unicode (a lone surrogate or a character past U+10FFFF)"
    assert reasons[3].startswith("url: ") and reasons[6].startswith("url: ")
    assert reasons[4] == "published: '0001-01-01T00:00:00+01:00' is not a date from 1900 to 2200"
    row = feed_row(engine, "hostile")
    assert row.last_status == "warning" and row.last_error.startswith("4 entries skipped: entry 2: title:")
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []  # no traceback anywhere
    assert stored(engine)["https://news.example.com/author"].author == "n" * 199 + "…"


def test_a_document_feedparser_cannot_read_is_a_clean_error(
    sqlite_engine: sa.Engine, server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """In UTF-16 the bad reference cannot be found before feedparser reads it: the feed fails, cleanly."""
    doc = '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel><title>t</title>'
    doc += "<item><title>B &#xD800;</title><link>https://news.example.com/b</link></item></channel></rss>"
    server.routes["/feed"] = Route(doc.encode("utf-16"), content_type="application/rss+xml")
    add(sqlite_engine, server, "/feed", "wide")
    with caplog.at_level(logging.DEBUG):
        (result,) = poll_due_feeds(sqlite_engine, clock=ManualClock(NOW), policy=POLICY)
    assert (result.status, result.error) == ("error", "feed: the feed could not be read (UnicodeEncodeError)")
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


@pytest.mark.parametrize(
    "source", ["http://[zz]/feed", "https://[::1/feed", "https://news.example.com:99999/feed"]
)
def test_adding_a_feed_with_a_malformed_host_is_a_clear_error(sqlite_engine: sa.Engine, source: str) -> None:
    """urllib raised ValueError here, and `feeds add` printed a traceback."""
    with pytest.raises(InvalidInput) as refused:
        add_feed(sqlite_engine, source, now=NOW)
    assert refused.value.field == "source"
    with Session(sqlite_engine) as s:
        assert s.exec(select(Feed)).all() == []
