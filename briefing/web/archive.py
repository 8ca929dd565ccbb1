"""The public archive: sent editions as web pages, and an RSS 2.0 feed of them.

A web copy is the frozen HTML every reader got, personalised like any copy but for a neutral
recipient (links to the subscribe page, the greeting's fallback name), so it shows nobody's data.
The HTML is served under a CSP that allows no script at all.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from briefing import inputs
from briefing.domain import (
    TOKEN_PREFERENCES_URL,
    TOKEN_UNSUBSCRIBE_URL,
    EditionData,
    EditionStatus,
    Recipient,
    RenderedEdition,
)
from briefing.errors import NotFound
from briefing.newsletter import PRIMARY_ID
from briefing.reader_copy import personalise
from briefing.store import editions as edition_store
from briefing.web.context import WebContext, get_ctx

router = APIRouter()
Ctx = Annotated[WebContext, Depends(get_ctx)]
READ = ["GET", "HEAD"]

# Editions readers have received (in full or in part).
PUBLISHED = (
    EditionStatus.SENT,
    EditionStatus.PARTIAL,
    EditionStatus.SENDING,
    EditionStatus.PAUSED,
    EditionStatus.HALTED,
)
ARCHIVE_LIMIT = 200
FEED_LIMIT = 30

# The web copy of an email: its own inline styles, remote images, no script, links open normally.
ARCHIVE_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; font-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def published(session: Session, limit: int) -> list[EditionData]:
    return edition_store.list_editions(session, limit=limit, statuses=[s.value for s in PUBLISHED])


def _link(token: str) -> re.Pattern[str]:
    return re.compile(r'<a\b([^>]*?)href="' + re.escape(token) + r'"([^>]*)>.*?</a>', re.S)


# The reader's own links make no sense on the web: "Unsubscribe" becomes "Subscribe", and
# "Manage your preferences" goes (with the separator before it). The tokens cannot come from story
# text (render escapes "%" in data), so matching them in the HTML is safe.
_UNSUBSCRIBE_LINK = _link(TOKEN_UNSUBSCRIBE_URL)
_PREFERENCES_LINK = re.compile(
    r"(?:\s*&nbsp;(?:·|&middot;)&nbsp;\s*)?" + _link(TOKEN_PREFERENCES_URL).pattern, re.S
)


def neutral_copy(edition: EditionData, frozen_html: str, subscribe_url: str) -> str:
    """The email as a reader's copy for nobody in particular: the one personalisation path
    (reader_copy.personalise) with a recipient whose links lead to the subscribe page."""
    link = html.escape(subscribe_url, quote=True)
    body = _UNSUBSCRIBE_LINK.sub(
        lambda m: f'<a{m.group(1)}href="{link}"{m.group(2)}>Subscribe</a>', frozen_html
    )
    body = _PREFERENCES_LINK.sub("", body)
    # Whatever a customised template does with the tokens, none survives into the page.
    nobody = Recipient(0, "", unsubscribe_url=subscribe_url, preferences_url=subscribe_url)
    rendered = RenderedEdition(edition.edition_date, edition.subject, edition.preheader, body, "")
    return personalise(rendered, nobody)[0]


@router.api_route("/archive", methods=READ, response_class=HTMLResponse)
def archive(request: Request, ctx: Ctx) -> HTMLResponse:
    with ctx.reading() as session:
        editions = published(session, ARCHIVE_LIMIT)
    return ctx.pages.render(request, "archive.html", {"title": "Archive", "editions": editions})


@router.api_route("/archive/feed.xml", methods=READ)
def feed(ctx: Ctx) -> Response:
    with ctx.reading() as session:
        editions = published(session, FEED_LIMIT)
    return Response(
        rss(ctx, editions),
        media_type="application/rss+xml; charset=utf-8",
        headers={"Cache-Control": "max-age=300"},
    )


@router.api_route("/archive/{day}", methods=READ, response_class=HTMLResponse)
def edition_page(ctx: Ctx, day: str) -> HTMLResponse:
    edition_date = inputs.local_date(day)
    with ctx.reading() as session:
        edition = edition_store.find_edition(session, edition_date, newsletter_id=PRIMARY_ID)
        if edition is None or edition.status not in PUBLISHED:
            raise NotFound(f"there is no published edition for {edition_date.isoformat()}", field="date")
        frozen_html, _ = edition_store.frozen_content(session, edition.id)
    body = neutral_copy(edition, frozen_html, f"{ctx.base_url}/subscribe")
    return HTMLResponse(
        body, headers={"Content-Security-Policy": ARCHIVE_CSP, "Cache-Control": "max-age=300"}
    )


def _text(value: str) -> str:
    return _XML_INVALID.sub("", value)


def rss(ctx: WebContext, editions: list[EditionData]) -> bytes:
    """RSS 2.0 built with ElementTree, so every title is escaped by the serialiser, not by hand."""
    name = ctx.settings.newsletter_name
    root = ET.Element("rss", version="2.0")
    channel = ET.SubElement(root, "channel")
    ET.SubElement(channel, "title").text = _text(name)
    ET.SubElement(channel, "link").text = f"{ctx.base_url}/archive"
    ET.SubElement(channel, "description").text = _text(
        f"Past editions of {name} from {ctx.settings.site_name}"
    )
    ET.SubElement(channel, "language").text = "en"
    newest: datetime | None = None
    for edition in editions:
        url = f"{ctx.base_url}/archive/{edition.edition_date.isoformat()}"
        when = (
            edition.started_at
            or edition.scheduled_for
            or datetime.combine(edition.edition_date, datetime.min.time(), tzinfo=UTC)
        )
        newest = max(newest, when) if newest else when
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = _text(
            edition.subject or f"{name}, {edition.edition_date.isoformat()}"
        )
        ET.SubElement(item, "link").text = url
        ET.SubElement(item, "guid", isPermaLink="true").text = url
        ET.SubElement(item, "pubDate").text = format_datetime(when.astimezone(UTC))
        if edition.preheader:
            ET.SubElement(item, "description").text = _text(edition.preheader)
    if newest is not None:
        ET.SubElement(channel, "lastBuildDate").text = format_datetime(newest.astimezone(UTC))
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
