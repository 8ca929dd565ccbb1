"""Reading feed documents: every dialect, odd but legal markup, and the bad inputs a real feed sends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from briefing.domain import ArticleInput
from briefing.feeds.parse import NotAFeed, ParsedFeed, parse_feed
from briefing.feeds.text import html_to_text
from briefing.urls import canonical_url

FEEDS = Path(__file__).parent / "data" / "feeds"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def parse(name: str, base: str = "https://news.example.com/politics/feed/", **kw: object) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), base_url=base, now=NOW, **kw)  # type: ignore[arg-type]


def items(feed: ParsedFeed) -> list[ArticleInput]:
    return [e.item for e in feed.entries if e.item is not None]


def test_rss20_with_cdata_entities_namespaces_and_relative_links() -> None:
    feed = parse("rss20_newsroom.xml")
    assert feed.version == "rss20" and not feed.problem
    assert feed.title == "Example News – Politics"
    first, levy, ethics, podcast = items(feed)

    # Relative link resolved against the feed URL; utm_* and the fragment gone, other params kept.
    assert first.url == "https://news.example.com/2026/11/27/budget-schools/?page=2"
    assert first.title == "Budget & schools: what the late vote means"  # markup in CDATA stripped
    assert (
        first.summary
        == "The plan passed by 52 votes to 47 — after a day of amendments.\n\nSchools get £40m more."
    )
    assert "alert" not in first.summary and "appeared first on" not in first.summary
    assert first.author == "Priya Natarajan"
    assert first.section == "Politics"  # the first category
    assert first.published_at == datetime(2026, 11, 27, 22, 40, tzinfo=UTC)  # +0100 converted to UTC
    assert first.image_url == "https://news.example.com/media/2026/11/chamber.jpg"
    assert first.image_alt == "The Assembly chamber & its benches at midnight"  # media:description first
    assert first.guid == "https://news.example.com/?p=1041"
    assert first.source == "feed"

    assert levy.url == "https://news.example.com/2026/11/27/levy-delayed"  # host case and :443 normalised
    assert levy.title == 'Levy delayed – traders "relieved"'
    assert levy.summary == "Councillors pushed back the levy by three months."  # escaped HTML as text
    assert levy.author == "Tom Okafor"  # "email (Name)" gives the name
    assert levy.image_url == "https://news.example.com/media/2026/11/levy-thumb.jpg"  # media:thumbnail
    assert levy.image_alt == "Traders outside the council offices"  # item-level media:title

    assert ethics.url == "https://news.example.com/2026/11/27/ethics-report?id=7"  # fbclid dropped
    assert ethics.image_url == "https://news.example.com/media/2026/11/committee.png"  # image enclosure
    assert podcast.image_url == ""  # an audio enclosure is not an image


def test_section_override_beats_categories() -> None:
    feed = parse("rss20_newsroom.xml", section="Newsdesk")
    assert {i.section for i in items(feed)} == {"Newsdesk"}


def test_rss10_rdf_in_latin1() -> None:
    feed = parse("rss10_rdf.xml", base="https://news.example.org/rss")
    assert feed.version == "rss10"
    cafe, harbour = items(feed)
    assert cafe.title == "Café owners fear closures"
    assert cafe.published_at == datetime(2026, 11, 27, 7, 15, tzinfo=UTC)
    assert cafe.section == "Local" and cafe.author == "Ana Souza"
    assert harbour.published_at == datetime(2026, 11, 26, 16, 0, tzinfo=UTC)


def test_atom_with_xml_base_and_html_titles() -> None:
    feed = parse("atom_xmlbase.xml", base="https://www.example.com/news/atom.xml")
    assert feed.version == "atom10"
    hospital, libraries = items(feed)
    assert hospital.url == "https://www.example.com/news/2026/11/hospital-lists"
    assert hospital.title == "Hospital lists shrink again"
    assert hospital.summary == "Waiting lists fell by 8%."
    assert hospital.published_at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # published, not updated
    assert hospital.section == "Health"
    assert hospital.image_url == "https://www.example.com/img/ward.jpg"
    assert libraries.url == "https://www.example.com/culture/libraries-saved"  # the entry's own xml:base
    assert libraries.summary == "Volunteers will run them two days a week."  # from html <content>
    assert libraries.published_at == datetime(2026, 11, 26, 8, 30, tzinfo=UTC)  # only <updated>


def test_rss091_without_dates_or_titles() -> None:
    feed = parse("rss091_nodates.xml", base="https://archive.example.com/rss")
    boundaries, wind = items(feed)
    assert boundaries.published_at is None and wind.published_at is None
    assert boundaries.guid == ""
    assert wind.title.startswith("The offshore wind farm has won final approval")  # from the description
    assert len(wind.title) <= 120


def test_entries_without_a_usable_link_are_skipped_with_a_reason() -> None:
    feed = parse("no_links.xml")
    reasons = {e.index: e.reason for e in feed.entries if e.item is None}
    assert reasons == {
        2: "no link",
        3: "url: must start with http:// or https:// (got 'javascript:alert(1)')",
        5: "no title and no summary",
    }
    assert [i.url for i in items(feed)] == [
        "https://news.example.com/2026/11/27/has-link",
        "https://news.example.com/2026/11/27/guid-permalink",  # a permalink guid is the link
    ]


def test_future_dates_are_clamped_and_flagged_unreadable_dates_are_none() -> None:
    feed = parse("future_dates.xml")
    future, bad, missing = feed.entries
    assert future.item is not None and future.item.published_at == NOW
    assert future.future_date == datetime(2099, 1, 1, 6, 0, tzinfo=UTC)
    assert bad.item is not None and bad.item.published_at is None and bad.future_date is None
    assert missing.item is not None and missing.item.published_at is None


def test_same_url_under_two_guids_is_stored_once_and_a_shared_guid_is_not_trusted() -> None:
    feed = parse("duplicate_urls.xml")
    first, second, a, b = feed.entries
    assert first.item is not None and first.item.title == "Port talks resume (updated)"
    assert second.item is None and second.reason == "same link as entry 1"
    assert a.item is not None and b.item is not None  # both stories kept
    assert not a.guid_trusted and not b.guid_trusted
    assert first.guid_trusted


def test_truncated_feed_keeps_the_complete_entries_and_reports_the_fault() -> None:
    feed = parse("truncated.xml")
    assert feed.problem.startswith("the feed is not well-formed XML")
    stored = items(feed)
    assert [i.url for i in stored] == [
        "https://news.example.com/2026/11/27/budget-schools/?page=2",
        "https://news.example.com/2026/11/27/levy-delayed",
    ]
    assert feed.entries[-1].item is None and feed.entries[-1].reason == "no link"


@pytest.mark.parametrize(
    "data",
    [
        (FEEDS / "not_a_feed.html").read_bytes(),
        b"",
        b"\x00\x01\x02 binary junk",
        b'{"items": [{"url": "https://news.example.com/a"}]}',
        b"<?xml version='1.0'?><nothing/>",
    ],
    ids=["html", "empty", "binary", "json", "other-xml"],
)
def test_documents_that_are_not_feeds_are_refused(data: bytes) -> None:
    with pytest.raises(NotAFeed):
        parse_feed(data, base_url="https://news.example.com/feed", now=NOW)


def test_overlong_fields_are_shortened_not_rejected() -> None:
    title = "Word " * 200
    doc = f"""<rss version="2.0"><channel><title>t</title><item><title>{title}</title>
    <link>https://news.example.com/long</link><description>{"x " * 4000}</description>
    <author>{"A" * 500}</author></item></channel></rss>""".encode()
    (entry,) = parse_feed(doc, base_url="https://news.example.com/feed", now=NOW).entries
    assert entry.item is not None
    assert len(entry.item.title) <= 300 and entry.item.title.endswith("…")
    assert len(entry.item.summary) <= 5000
    assert len(entry.item.author) <= 200


def test_bad_image_urls_drop_the_image_not_the_article() -> None:
    doc = b"""<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>t</title>
    <item><title>A</title><link>https://news.example.com/a</link>
    <media:content url="javascript:alert(1)" medium="image"><media:title>x</media:title></media:content>
    </item></channel></rss>"""
    (entry,) = parse_feed(doc, base_url="https://news.example.com/feed", now=NOW).entries
    assert entry.item is not None and entry.item.image_url == "" and entry.item.image_alt == ""


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://news.example.com/a?utm_source=rss&utm_medium=x", "https://news.example.com/a"),
        ("https://news.example.com/a?id=3&utm_campaign=y#frag", "https://news.example.com/a?id=3"),
        ("HTTPS://News.Example.COM:443/Path/Case", "https://news.example.com/Path/Case"),
        ("http://news.example.com:80", "http://news.example.com/"),
        ("http://news.example.com:8080/x", "http://news.example.com:8080/x"),
        ("https://news.example.com/a?b=2&a=1", "https://news.example.com/a?b=2&a=1"),  # order kept
        ("https://news.example.com/a?UTM_Source=x&q=a%20b", "https://news.example.com/a?q=a%20b"),
        ("https://news.example.com/a/?gclid=1&fbclid=2", "https://news.example.com/a/"),
        ("https://news.example.com/a?ref=home", "https://news.example.com/a?ref=home"),  # conservative
    ],
)
def test_canonical_url(given: str, expected: str) -> None:
    assert canonical_url(given) == expected


@settings(deadline=None)  # a busy machine is slow, not wrong
@given(st.text(max_size=300))
def test_html_to_text_never_leaves_markup_or_controls(text: str) -> None:
    html = f"<p>{text}</p><script>var x = '<b>';</script><br/>"
    out = html_to_text(html)
    assert "<script" not in out and "var x" not in out
    assert not any(ord(c) < 32 and c != "\n" for c in out)


def test_html_to_text_paragraphs_and_entities() -> None:
    # Paragraphs stay apart; a line break inside one reads as a space in a one-paragraph blurb.
    assert html_to_text("<p>One&amp;two</p><p>Three<br>four</p>") == "One&two\n\nThree four"
    assert html_to_text("A&nbsp;&nbsp;B &lt;tag&gt;") == "A B <tag>"
