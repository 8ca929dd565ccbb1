"""Turn a feed document (RSS 0.9x/1.0/2.0 or Atom) into validated articles, or reasons to skip them.

feedparser reads every dialect and survives sloppy markup; this module decides what a newsroom can
use: a canonical link, text without markup, a UTC time that is not in the future, a section and an
image with its alt text. Nothing here touches the network or the database, so every odd feed can
be tested from a file.

A bad entry costs only itself: a link with a malformed host, a date no calendar holds, text that is
not valid Unicode (a lone surrogate such as `&#xD800;`, which feedparser cannot even read) each
skip that entry with a reason, and the others are stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from briefing import files, inputs
from briefing.domain import ArticleInput
from briefing.errors import InvalidInput
from briefing.feeds.text import (
    CONTROL,
    NOT_UNICODE,
    html_to_text,
    not_unicode,
    one_line_text,
    prepare_document,
    shorten,
)
from briefing.urls import canonical_url

MEDIA_NS = "http://search.yahoo.com/mrss/"
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_LOOKS_HTML = re.compile(r"<[a-zA-Z/!]|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+\d*);")
# The footer blogging platforms append to every feed item ("The post X appeared first on Y.").
_BOILERPLATE = re.compile(r"(?:^|\n\n)The post .{1,400} appeared first on .{1,200}$")


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One entry of the document: an article to store, or the reason it was skipped."""

    index: int  # 1-based position in the document, for messages
    item: ArticleInput | None
    guid: str = ""
    reason: str = ""  # why the entry was skipped (item is None)
    future_date: datetime | None = None  # the date the feed gave, when it was in the future and clamped
    guid_trusted: bool = True  # False when the document uses this guid for several links


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    entries: tuple[FeedEntry, ...]
    title: str = ""
    version: str = ""
    problem: str = ""  # the document is not well-formed; entries read before the fault are kept


# Servers mislabel feeds all the time; feedparser copes, and so do we.
_HARMLESS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


class NotAFeed(InvalidInput):
    """The document has no feed in it at all (HTML, JSON, garbage, empty)."""


# --------------------------------------------------------------------------- images


@dataclass(frozen=True, slots=True)
class _Image:
    url: str
    alt: str = ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _looks_like_image(url: str, medium: str, mime: str) -> bool:
    if medium:
        return medium == "image"
    if mime:
        return mime.lower().startswith("image/")
    return urlsplit(url).path.lower().endswith(_IMAGE_EXT)


def _media_text(element: ET.Element) -> str:
    for name in ("description", "title"):
        found = element.find(f"{{{MEDIA_NS}}}{name}")
        if found is not None and (found.text or "").strip():
            is_html = found.get("type", "plain").lower() == "html"
            return one_line_text(found.text or "", html=is_html, limit=300)
    return ""


def _item_image(item: ET.Element) -> _Image | None:
    """The first image in media:content / media:group / media:thumbnail, with its alt text.

    Alt text is read from the media element itself, else from its media:group, else from the item.
    """
    containers = [item, *item.findall(f"{{{MEDIA_NS}}}group")]
    for container in containers:
        for content in container.findall(f"{{{MEDIA_NS}}}content"):
            url = (content.get("url") or "").strip()
            if url and _looks_like_image(url, content.get("medium", ""), content.get("type", "")):
                alt = _media_text(content) or _media_text(container) or _media_text(item)
                return _Image(url, alt)
    for container in containers:
        for thumb in container.findall(f"{{{MEDIA_NS}}}thumbnail"):
            url = (thumb.get("url") or "").strip()
            if url:
                return _Image(url, _media_text(container) or _media_text(item))
    return None


def _media_images(data: bytes) -> list[_Image | None] | None:
    """Images per item, in document order; None when the document is not strict XML.

    feedparser keeps media URLs but folds media:title into the entry title and media:description
    into its content, so the alt text is read here from the XML itself.
    """
    try:
        root = ET.fromstring(data)  # noqa: S314  (expat >= 2.4 limits entity expansion; no external entities)
    except (ET.ParseError, ValueError):
        return None
    return [_item_image(el) for el in root.iter() if _local(str(el.tag)) in ("item", "entry")]


def _fallback_image(entry: Mapping[str, Any]) -> _Image | None:
    for media in entry.get("media_content") or []:
        url = (media.get("url") or "").strip()
        if url and _looks_like_image(url, media.get("medium", "") or "", media.get("type", "") or ""):
            return _Image(url)
    for thumb in entry.get("media_thumbnail") or []:
        url = (thumb.get("url") or "").strip()
        if url:
            return _Image(url)
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and str(link.get("type", "")).lower().startswith("image/"):
            url = (link.get("href") or "").strip()
            if url:
                return _Image(url)
    return None


def _image_fields(image: _Image | None, base: str) -> tuple[str, str]:
    if image is None:
        return "", ""
    try:
        url = inputs.web_url(urljoin(base, image.url), field="image_url", required=False)
        if url:
            canonical_url(url)  # only to refuse what it refuses: a malformed host or port
    except (InvalidInput, ValueError):
        return "", ""  # an unusable image never costs the article
    return url, image.alt if url else ""


# --------------------------------------------------------------------------- entries


def _published(entry: Mapping[str, Any]) -> datetime | None:
    """The entry's date in UTC; None when it has none feedparser can read; InvalidInput when the
    date read is outside the window every article date keeps (inputs.moment)."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict.get maps a missing updated_parsed to published_parsed, with a warning.
        parsed = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
        if not parsed:
            continue
        name = key.removesuffix("_parsed")
        raw = dict.get(entry, name) if isinstance(entry, dict) else entry.get(name)
        refusal = InvalidInput(
            f"{str(raw or '')[:40]!r} is not a date from {inputs.FIRST_YEAR} to {inputs.LAST_YEAR}",
            field=name,
        )
        try:
            year, month, day, hour, minute, second = parsed[:6]
            moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)  # already UTC
            return inputs.moment(moment, field=name)
        except TypeError:
            continue
        except (ValueError, OverflowError, InvalidInput):
            raise refusal from None
    return None


# feedparser's names for what the reasons call by the names editors see.
_FIELD_NAMES = {
    "links": "url",
    "link": "url",
    "id": "guid",
    "authors": "author",
    "tags": "category",
    "media_content": "image",
    "media_thumbnail": "image",
}


def _not_unicode_reason(field: str) -> str:
    name = _FIELD_NAMES.get(field, field)
    return f"{name}: is not valid Unicode (a lone surrogate or a character past U+10FFFF)"


def _link_reason(entry: Mapping[str, Any]) -> str:
    """Why an entry has no link: none given, or one feedparser dropped because it could not parse it."""
    # feedparser keeps the key and blanks the value when urljoin refuses the link (or the permalink
    # guid); a link element cut off by the end of the document leaves no key at all.
    if "link" in entry and not entry["link"]:
        return "url: is not a valid address (a malformed host?)"
    return "no link"


def _summary(entry: Mapping[str, Any]) -> str:
    # summary_detail's type is not trusted: feedparser lets a media:description overwrite it.
    if entry.get("summary"):
        return _as_text(str(entry["summary"]))
    for content in entry.get("content") or []:
        if str(content.get("type", "")) in _HTML_TYPES and content.get("value"):
            return _as_text(str(content["value"]))
    return ""


def _as_text(value: str) -> str:
    text = html_to_text(value) if _LOOKS_HTML.search(value) else CONTROL.sub("", value).strip()
    text = _BOILERPLATE.sub("", text).strip()
    return shorten(text, inputs.MAX_SUMMARY)


def _guid(entry: Mapping[str, Any]) -> str:
    guid = " ".join(str(entry.get("id") or "").split())
    if len(guid) > 2000:
        guid = "sha256:" + hashlib.sha256(guid.encode()).hexdigest()
    return guid


def _entry(
    index: int,
    entry: Mapping[str, Any],
    image: _Image | None,
    *,
    base_url: str,
    section: str,
    now: datetime,
    tolerance: timedelta,
) -> FeedEntry:
    bad_field = not_unicode(entry)
    if bad_field is not None:
        return FeedEntry(
            index, None, NOT_UNICODE.sub("\ufffd", _guid(entry)), reason=_not_unicode_reason(bad_field)
        )
    guid = _guid(entry)
    title_detail = entry.get("title_detail") or {}
    base = str(title_detail.get("base") or base_url)
    link = str(entry.get("link") or "").strip()
    if not link:
        return FeedEntry(index, None, guid, reason=_link_reason(entry))
    try:
        link = canonical_url(urljoin(base, link))
    except ValueError as exc:  # urls.InvalidURL, or urllib's own refusal of a malformed host
        return FeedEntry(index, None, guid, reason=f"url: {exc}")
    title_html = str(title_detail.get("type", "text/plain")) in _HTML_TYPES
    title = one_line_text(str(entry.get("title") or ""), html=title_html, limit=inputs.MAX_HEADLINE)
    summary = _summary(entry)
    if image is not None and image.alt and summary == image.alt:
        summary = ""  # feedparser turned the image's media:description into the summary
    if not title and summary:
        title = shorten(" ".join(summary.split()), 120)  # RSS allows an item with only a description
    if not title:
        return FeedEntry(index, None, guid, reason="no title and no summary")
    detail = entry.get("author_detail") or {}
    author = str(detail.get("name") or entry.get("author") or "")
    tags = entry.get("tags") or []
    category = str((tags[0].get("term") or tags[0].get("label") or "") if tags else "")
    image_url, image_alt = _image_fields(image or _fallback_image(entry), base)
    record = {
        "url": link,
        "title": title,
        "summary": summary,
        "author": one_line_text(author, html=False, limit=inputs.MAX_NAME),
        "section": one_line_text(section or category, html=False, limit=inputs.MAX_SECTION),
        "image_url": image_url,
        "image_alt": image_alt,
    }
    bad_field = not_unicode(record)  # the image's alt text comes from the XML, not from feedparser
    if bad_field is not None:
        return FeedEntry(index, None, guid, reason=_not_unicode_reason(bad_field))
    try:
        item = files.article_input(record, source="feed")
        published = _published(entry)
    except InvalidInput as exc:
        return FeedEntry(index, None, guid, reason=str(exc))
    future: datetime | None = None
    if published is not None and published > now + tolerance:
        future, published = published, now
    return FeedEntry(
        index, dataclasses.replace(item, published_at=published, guid=guid), guid, future_date=future
    )


def parse_feed(
    data: bytes,
    *,
    base_url: str,
    now: datetime,
    section: str = "",
    tolerance: timedelta = timedelta(minutes=10),
    content_type: str = "",
) -> ParsedFeed:
    """Read a feed document; raises NotAFeed when there is nothing feed-like in it.

    `base_url` is where the document came from: relative links resolve against it (or xml:base).
    Entries repeating an earlier entry's link are skipped (the first, usually the newest, wins),
    and a guid used for several links is not trusted to identify an article.
    """
    # Bytes, never a URL: feedparser would fetch a URL itself, bypassing every check in fetch.py.
    headers = {"content-location": base_url, "content-type": content_type or "application/xml"}
    data = prepare_document(data)
    try:
        parsed = feedparser.parse(data, response_headers=headers)
    except (ValueError, OverflowError) as exc:  # feedparser's own failure on hostile markup
        raise InvalidInput(f"the feed could not be read ({type(exc).__name__})", field="feed") from None
    problem = ""
    fault = parsed.get("bozo_exception")
    if parsed.get("bozo") and not isinstance(fault, _HARMLESS):
        problem = f"the feed is not well-formed XML: {fault}"
    if not parsed.get("version") and not parsed.entries:
        raise NotAFeed(problem or "the document is not an RSS or Atom feed", field="feed")
    images = _media_images(data)
    if images is not None and len(images) != len(parsed.entries):
        images = None
    entries: list[FeedEntry] = []
    for i, raw in enumerate(parsed.entries):
        image = images[i] if images is not None else None
        try:
            entry = _entry(
                i + 1, raw, image, base_url=base_url, section=section, now=now, tolerance=tolerance
            )
        except (ValueError, OverflowError) as exc:  # one entry's surprise costs only that entry
            entry = FeedEntry(i + 1, None, reason=f"could not be read ({type(exc).__name__})")
        entries.append(entry)
    feed_title = str(parsed.feed.get("title") or "") if parsed.get("feed") else ""
    feed_title = NOT_UNICODE.sub("\ufffd", feed_title)
    return ParsedFeed(
        tuple(_dedupe(entries)),
        title=one_line_text(feed_title, html=False, limit=100),
        version=str(parsed.get("version") or ""),
        problem=problem,
    )


def _dedupe(entries: list[FeedEntry]) -> list[FeedEntry]:
    first_by_url: dict[str, int] = {}
    urls_by_guid: dict[str, set[str]] = {}
    for e in entries:
        if e.item is not None and e.guid:
            urls_by_guid.setdefault(e.guid, set()).add(e.item.url)
    out: list[FeedEntry] = []
    for e in entries:
        if e.item is None:
            out.append(e)
            continue
        earlier = first_by_url.get(e.item.url)
        if earlier is not None:
            out.append(FeedEntry(e.index, None, e.guid, reason=f"same link as entry {earlier}"))
            continue
        first_by_url[e.item.url] = e.index
        trusted = not e.guid or len(urls_by_guid.get(e.guid, ())) <= 1
        out.append(e if trusted else dataclasses.replace(e, guid_trusted=False))
    return out
