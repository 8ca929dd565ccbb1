"""The public archive: sent editions as web pages, and an RSS 2.0 feed of them, per newsletter.

Each newsletter whose archive is "web" has its own: /archive/<slug>/ (the index),
/archive/<slug>/<date> (the regular edition), /archive/<slug>/<date>/<kind> (a special) and
/archive/<slug>/feed.xml. One whose archive is "email" answers 404 on all of them, exactly like a
slug nobody uses. The addresses from before there were several newsletters (/archive,
/archive/<date>, /archive/feed.xml) are in emails already sent: they keep answering for the first.

A web copy is the frozen HTML every reader got, personalised like any copy but for a neutral
recipient (links to the subscribe page, the greeting's fallback name), so it shows nobody's data.
The HTML is served under a CSP that allows no script at all.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
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
from briefing.errors import InvalidInput, NotFound
from briefing.newsletter import REGULAR, NewsletterData, check_kind, check_slug, is_special
from briefing.reader_copy import personalise
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from briefing.web.context import WebContext, get_ctx
from briefing.wiring import newsletter_name

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
PAGE_CACHE = {"Cache-Control": "max-age=300"}

# The web copy of an email: its own inline styles, remote images, no script, links open normally.
ARCHIVE_CSP = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; font-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
)
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# Where an edition's page is: (edition) -> path. The old addresses keep the date alone.
EditionPath = Callable[[EditionData], str]


def published(session: Session, limit: int, *, newsletter_id: int) -> list[EditionData]:
    return edition_store.list_editions(
        session, limit=limit, statuses=[s.value for s in PUBLISHED], newsletter_id=newsletter_id
    )


def slug_path(newsletter: NewsletterData) -> EditionPath:
    def path(edition: EditionData) -> str:
        day = f"/archive/{quote(newsletter.slug)}/{edition.edition_date.isoformat()}"
        return f"{day}/{quote(edition.kind)}" if is_special(edition.kind) else day

    return path


def old_path(newsletter: NewsletterData) -> EditionPath:
    """The first newsletter's regular editions at /archive/<date>, as emails sent before linked them."""
    by_slug = slug_path(newsletter)
    return lambda e: by_slug(e) if is_special(e.kind) else f"/archive/{e.edition_date.isoformat()}"


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


# --------------------------------------------------------------------------- which newsletter


def _on_web(session: Session, slug: str) -> NewsletterData:
    """The newsletter whose archive a path names; an unknown slug and an email-only one look alike."""
    try:
        found = newsletter_store.find_by_slug(session, check_slug(slug))
    except InvalidInput:
        found = None
    if found is None or not found.on_web:
        raise NotFound("there is no archive at this address", field="newsletter")
    return found


def _first(session: Session) -> NewsletterData:
    """The first newsletter, for the old addresses; email-only, it has no archive there either."""
    first = newsletter_store.primary(session)
    if not first.on_web:
        raise NotFound("there is no archive at this address", field="newsletter")
    return first


# --------------------------------------------------------------------------- pages


def _index(
    request: Request,
    ctx: WebContext,
    newsletter: NewsletterData | None,
    *,
    old: bool,
) -> HTMLResponse:
    with ctx.reading() as session:
        everyone = newsletter_store.list_newsletters(session)
        editions = published(session, ARCHIVE_LIMIT, newsletter_id=newsletter.id) if newsletter else []
    on_web = [n for n in everyone if n.on_web]
    others = [
        (newsletter_name(ctx.settings, n), f"/archive/{quote(n.slug)}/")
        for n in on_web
        if newsletter is None or n.id != newsletter.id
    ]
    values: dict[str, object] = {"title": "Archive", "others": others, "editions": [], "newsletter": None}
    if newsletter is not None:
        name = newsletter_name(ctx.settings, newsletter)
        path = old_path(newsletter) if old else slug_path(newsletter)
        values.update(
            {
                "newsletter": newsletter,
                "newsletter_name": name,
                "editions": [(e, path(e)) for e in editions],
                "feed_url": "/archive/feed.xml" if old else f"/archive/{quote(newsletter.slug)}/feed.xml",
                "subscribe_url": "/subscribe" if old else f"/subscribe/{quote(newsletter.slug)}",
            }
        )
    return ctx.pages.render(request, "archive.html", values, headers=PAGE_CACHE)


def _edition(
    ctx: WebContext, newsletter: NewsletterData, day: str, kind: str, subscribe: str
) -> HTMLResponse:
    edition_date = inputs.local_date(day)
    with ctx.reading() as session:
        edition = edition_store.find_edition(session, edition_date, newsletter_id=newsletter.id, kind=kind)
        if edition is None or edition.status not in PUBLISHED:
            which = edition_date.isoformat() if kind == REGULAR else f"{edition_date.isoformat()} ({kind})"
            raise NotFound(f"there is no published edition for {which}", field="date")
        frozen_html, _ = edition_store.frozen_content(session, edition.id)
    body = neutral_copy(edition, frozen_html, f"{ctx.base_url}{subscribe}")
    return HTMLResponse(body, headers={"Content-Security-Policy": ARCHIVE_CSP, **PAGE_CACHE})


def _feed(ctx: WebContext, newsletter: NewsletterData, *, old: bool) -> Response:
    with ctx.reading() as session:
        editions = published(session, FEED_LIMIT, newsletter_id=newsletter.id)
    path = old_path(newsletter) if old else slug_path(newsletter)
    index = "/archive" if old else f"/archive/{quote(newsletter.slug)}/"
    return Response(
        rss(ctx, newsletter_name(ctx.settings, newsletter), index, editions, path),
        media_type="application/rss+xml; charset=utf-8",
        headers={"Cache-Control": "max-age=300"},
    )


@router.api_route("/archive", methods=READ, response_class=HTMLResponse)
def archive(request: Request, ctx: Ctx) -> HTMLResponse:
    """The first newsletter's archive (old links), with the others' archives listed beside it.

    When the first newsletter is email-only the page lists the other archives, if there are any.
    """
    with ctx.reading() as session:
        first = newsletter_store.primary(session)
        any_on_web = any(n.on_web for n in newsletter_store.list_newsletters(session))
    if not any_on_web:
        raise NotFound("there is no archive at this address", field="newsletter")
    return _index(request, ctx, first if first.on_web else None, old=True)


@router.api_route("/archive/feed.xml", methods=READ)
def feed(ctx: Ctx) -> Response:
    with ctx.reading() as session:
        first = _first(session)
    return _feed(ctx, first, old=True)


@router.api_route("/archive/{slug}/", methods=READ, response_class=HTMLResponse)
def newsletter_archive(request: Request, ctx: Ctx, slug: str) -> HTMLResponse:
    with ctx.reading() as session:
        newsletter = _on_web(session, slug)
    return _index(request, ctx, newsletter, old=False)


@router.api_route("/archive/{slug}/feed.xml", methods=READ)
def newsletter_feed(ctx: Ctx, slug: str) -> Response:
    with ctx.reading() as session:
        newsletter = _on_web(session, slug)
    return _feed(ctx, newsletter, old=False)


@router.api_route("/archive/{slug}/{day}", methods=READ, response_class=HTMLResponse)
def newsletter_edition(ctx: Ctx, slug: str, day: str) -> HTMLResponse:
    with ctx.reading() as session:
        newsletter = _on_web(session, slug)
    return _edition(ctx, newsletter, day, REGULAR, f"/subscribe/{quote(newsletter.slug)}")


@router.api_route("/archive/{slug}/{day}/{kind}", methods=READ, response_class=HTMLResponse)
def newsletter_special(ctx: Ctx, slug: str, day: str, kind: str) -> HTMLResponse:
    with ctx.reading() as session:
        newsletter = _on_web(session, slug)
    return _edition(ctx, newsletter, day, check_kind(kind), f"/subscribe/{quote(newsletter.slug)}")


@router.api_route("/archive/{day}", methods=READ, response_class=HTMLResponse)
def edition_page(ctx: Ctx, day: str) -> Response:
    """/archive/<date>: the first newsletter's edition; /archive/<slug> (no slash): that archive."""
    try:
        edition_date: date = inputs.local_date(day)
    except InvalidInput as not_a_date:
        with ctx.reading() as session:
            try:
                newsletter = _on_web(session, day)
            except NotFound:
                newsletter = None
        if newsletter is None:
            raise not_a_date from None  # no archive by that name either: a date was meant
        return RedirectResponse(f"{ctx.base_url}/archive/{quote(newsletter.slug)}/", status_code=308)
    with ctx.reading() as session:
        first = _first(session)
    return _edition(ctx, first, edition_date.isoformat(), REGULAR, "/subscribe")


# --------------------------------------------------------------------------- the feed


def _text(value: str) -> str:
    return _XML_INVALID.sub("", value)


def rss(ctx: WebContext, name: str, index: str, editions: list[EditionData], path: EditionPath) -> bytes:
    """RSS 2.0 built with ElementTree, so every title is escaped by the serialiser, not by hand."""
    root = ET.Element("rss", version="2.0")
    channel = ET.SubElement(root, "channel")
    ET.SubElement(channel, "title").text = _text(name)
    ET.SubElement(channel, "link").text = f"{ctx.base_url}{index}"
    ET.SubElement(channel, "description").text = _text(
        f"Past editions of {name} from {ctx.settings.site_name}"
    )
    ET.SubElement(channel, "language").text = "en"
    newest: datetime | None = None
    for edition in editions:
        url = f"{ctx.base_url}{path(edition)}"
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
