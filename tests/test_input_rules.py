"""The input rules every door shares (briefing.inputs, briefing.urls), and `articles import`
rejecting one bad line with its number and reason while keeping the good ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from briefing import files, inputs
from briefing.domain import MAX_ID
from briefing.errors import InvalidInput
from briefing.models import Article
from briefing.service import articles as article_service
from briefing.urls import InvalidURL, canonical_url, url_key
from tests.fixtures.clock import T0

BAD_HOSTS = [
    "http://[zz]/",
    "https://[::1/",
    "https://[::1]:99999/",
    "https://news.example.com:99999/a",
    "https://news.example.com:0/a",
    "https://news.example.com:+80/a",
    "http://[v1.future]/",
    "http://[::1]junk/",
    "http://news..example.com/",
    "http://-news.example.com/",
    "http://999.1.1.1/",
    "http://1.2.3/",
    "http://a%2e.example.com/",
    "http://news\uff0eexample\uff03com/",  # full-width punctuation that NFKC would turn into a host
    "http://" + "a" * 64 + ".example.com/",
    "http:///path-only",
    "http://news.example.com\x00.evil.example/",
    "http://news.example.com\t/",
    "http://exa\ud800mple.com/",
]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_a_malformed_link_is_refused_by_every_url_rule(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        inputs.web_url(url, field="image_url")
    assert refused.value.field == "image_url"
    with pytest.raises(InvalidURL):
        canonical_url(url)
    # Compose must not crash on a stored link: the key is the text as written, so it matches
    # only itself and never a well-formed link's key.
    assert url_key(url) == url.strip()


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://news.example.com/a", "https://news.example.com/a"),
        ("https://[2001:db8::1]:8443/a", "https://[2001:db8::1]:8443/a"),
        ("http://[::1]:80/a", "http://[::1]/a"),
        ("http://192.0.2.1/a", "http://192.0.2.1/a"),
        ("https://bücher.example/a", "https://bücher.example/a"),
        ("https://a_b.example.com:443/a", "https://a_b.example.com/a"),
        ("https://news.example.com:/a", "https://news.example.com/a"),
        ("https://user@news.example.com/a", "https://user@news.example.com/a"),
    ],
)
def test_well_formed_links_still_pass(url: str, canonical: str) -> None:
    assert inputs.web_url(url) == url
    assert canonical_url(url) == canonical


def test_text_with_a_lone_surrogate_is_refused_naming_the_field() -> None:
    for check in (
        lambda: inputs.one_line("Budget \ud800", field="headline", max_len=300),
        lambda: inputs.multi_line("Budget\n\udfff", field="blurb", max_len=5000),
    ):
        with pytest.raises(InvalidInput, match="lone surrogate") as refused:
            check()
        assert refused.value.field in ("headline", "blurb")
    assert inputs.one_line("Budget 😀 passes", field="headline", max_len=300) == "Budget 😀 passes"


def test_text_far_over_its_limit_is_refused_before_it_is_scanned() -> None:
    with pytest.raises(InvalidInput, match="the limit is 300") as refused:
        inputs.one_line("x" * 10_000_000, field="headline", max_len=300)
    assert refused.value.field == "headline"


@pytest.mark.parametrize(
    ("zone", "typed"),
    [
        ("Europe/Berlin", "0001-01-01 00:00"),
        ("America/New_York", "9999-12-31 23:59"),
        ("UTC", "0001-01-01T00:00:00+01:00"),
        ("UTC", "9999-12-31T23:59:59-01:00"),
        ("UTC", "1899-12-31T23:59:59Z"),
        ("UTC", "2201-01-01"),
    ],
)
def test_a_moment_outside_the_window_is_refused_naming_the_field(zone: str, typed: str) -> None:
    with pytest.raises(InvalidInput, match="not between 1900 and 2200") as refused:
        inputs.local_datetime(typed, ZoneInfo(zone), field="embargo_until")
    assert refused.value.field == "embargo_until"


def test_moments_inside_the_window_are_utc() -> None:
    got = inputs.local_datetime("2026-11-28 05:30", ZoneInfo("Europe/Berlin"), field="embargo_until")
    assert got == datetime(2026, 11, 28, 4, 30, tzinfo=UTC)
    assert inputs.local_datetime("1900-01-01T00:00:00Z", UTC, field="x").year == 1900


def test_moments_handed_in_as_values_get_the_same_window() -> None:
    east = timezone(timedelta(hours=1))
    with pytest.raises(InvalidInput, match="not between") as refused:
        inputs.moment(datetime(1, 1, 1, tzinfo=east), field="published_at")
    assert refused.value.field == "published_at"
    with pytest.raises(InvalidInput, match="time zone"):
        inputs.moment(datetime(2026, 1, 1), field="published_at")
    with pytest.raises(InvalidInput) as refused:
        inputs.embargo_and_expiry(datetime(2026, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))
    assert refused.value.field == "expires_at"


@pytest.mark.parametrize("typed", ["0001-01-01", "9999-12-31", "1899-12-31", "2201-01-01"])
def test_an_edition_date_outside_the_window_is_refused(typed: str) -> None:
    with pytest.raises(InvalidInput, match="not between 1900 and 2200") as refused:
        inputs.local_date(typed, field="--date")
    assert refused.value.field == "--date"


@pytest.mark.parametrize("value", ["0", "-1", str(MAX_ID + 1), "9" * 5000, "1e3", "٣", " ", True, 0, 2**64])
def test_ids_outside_the_database_range_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="from 1 to") as refused:
        inputs.record_id(value, field="article")
    assert refused.value.field == "article"


def test_ids_inside_the_range_pass() -> None:
    assert inputs.record_id(str(MAX_ID), field="article") == MAX_ID
    assert inputs.record_id(" 7 ", field="article") == 7


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[" * 33 + "]" * 33, "nested deeper than 32 levels"),
        ("[" * 100_000, "nested deeper than 32 levels"),
        ('{"a":' * 40 + "1" + "}" * 40, "nested deeper than 32 levels"),
        ("1" * 4301, "more than 20 digits"),
        ("[-" + "1" * 21 + "]", "more than 20 digits"),
        ("[0." + "1" * 30 + "]", "more than 20 digits"),
        ("[1e400]", "too large"),
        ("[Infinity]", "not valid JSON"),
        ("{'a': 1}", "not valid JSON"),
    ],
)
def test_json_documents_beyond_the_limits_are_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        inputs.json_value(text)


def test_json_within_the_limits_parses() -> None:
    text = '{"title": "[[[[{{{{ \\" ]]", "n": 12345678901234567890, "f": 0.5, "s": "\\ud800"}'
    assert inputs.json_value(text) == {
        "title": '[[[[{{{{ " ]]',
        "n": 12345678901234567890,
        "f": 0.5,
        "s": "\ud800",  # left to the field rules, so one article is rejected alone
    }
    assert inputs.json_value("[" * 32 + "]" * 32) is not None


# --- articles import: one bad line is rejected with its number, the good ones are kept ----------


def _stored(engine: sa.Engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [(a.url, a.title) for a in s.exec(select(Article).order_by(Article.url)).all()]  # type: ignore[arg-type]


def _line(n: int, **fields: object) -> str:
    return json.dumps({"url": f"https://news.example.com/{n}", "title": f"Story {n}", **fields})


def test_a_jsonl_import_rejects_each_hostile_line_and_keeps_the_good_ones(
    tmp_path: Path, sqlite_engine: sa.Engine
) -> None:
    lines = [
        _line(1),
        '{"url": "https://news.example.com/2", "title": "Two", "summary": "' + "x" * 140_000 + '"}',
        '{"url": "https://news.example.com/3", "title": "Three", "n": ' + "9" * 5000 + "}",
        "[" * 5000 + "]" * 5000,
        _line(5, title="\ud800"),  # json.dumps writes the lone surrogate as the escape \ud800
        _line(6, url="http://[zz]/"),
        _line(7, published_at="0001-01-01T00:00:00+01:00"),
        _line(8, published_at="9999-12-31T23:59:59-01:00"),
        _line(9, image_url="https://[::1/"),
        _line(10),
    ]
    path = tmp_path / "articles.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = article_service.import_articles(sqlite_engine, path, now=T0)

    assert (report.imported, report.added, len(report.rejected)) == (2, 2, 8)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert reasons[2].startswith("summary: is 140000 characters")
    assert "more than 20 digits" in reasons[3]
    assert "nested deeper than 32 levels" in reasons[4]
    assert reasons[5].startswith("title: is not valid Unicode")
    assert reasons[6].startswith("url: has a malformed host")
    assert reasons[7].startswith("published_at: ") and "not between 1900 and 2200" in reasons[7]
    assert reasons[8].startswith("published_at: ") and "not between 1900 and 2200" in reasons[8]
    assert reasons[9].startswith("image_url: has a malformed host")
    assert _stored(sqlite_engine) == [
        ("https://news.example.com/1", "Story 1"),
        ("https://news.example.com/10", "Story 10"),
    ]


def test_an_overlong_jsonl_line_is_rejected_without_losing_the_next(
    tmp_path: Path, sqlite_engine: sa.Engine
) -> None:
    path = tmp_path / "articles.jsonl"
    path.write_text(
        _line(1) + "\n" + " " * (files.MAX_JSON_LINE + 10) + _line(2) + "\n" + _line(3) + "\n",
        encoding="utf-8",
    )
    report = article_service.import_articles(sqlite_engine, path, now=T0)
    assert [(r.line, r.reason) for r in report.rejected] == [
        (2, f"is longer than {files.MAX_JSON_LINE} characters; one article per line")
    ]
    assert [url for url, _ in _stored(sqlite_engine)] == [
        "https://news.example.com/1",
        "https://news.example.com/3",
    ]


def test_a_csv_import_rejects_a_cell_over_the_csv_limit_by_its_line(
    tmp_path: Path, sqlite_engine: sa.Engine
) -> None:
    path = tmp_path / "articles.csv"
    path.write_text(
        "url,title,summary\r\n"
        "https://news.example.com/1,One,fine\r\n"
        f"https://news.example.com/2,Two,{'x' * 140_000}\r\n"
        "http://[zz]/,Three,bad host\r\n"
        "https://news.example.com/4,Four,fine\r\n",
        encoding="utf-8",
    )
    report = article_service.import_articles(sqlite_engine, path, now=T0)
    assert [(r.line, r.reason.split(":")[0]) for r in report.rejected] == [(3, "unreadable CSV"), (4, "url")]
    assert "field larger than field limit" in report.rejected[0].reason
    assert [url for url, _ in _stored(sqlite_engine)] == [
        "https://news.example.com/1",
        "https://news.example.com/4",
    ]


def test_an_article_typed_in_with_an_impossible_moment_is_refused(sqlite_engine: sa.Engine) -> None:
    with Session(sqlite_engine) as session, pytest.raises(InvalidInput) as refused:
        article_service.add_article(
            session,
            url="https://news.example.com/typed",
            title="Typed",
            published_at=datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))),
            now=T0,
        )
    assert refused.value.field == "published_at"
