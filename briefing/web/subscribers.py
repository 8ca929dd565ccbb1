"""The list, for administrators only: counts by status, search, each reader's newsletters, unsubscribe
one, CSV export (of one newsletter's readers, too).

Editors who are not administrators get 403 here: the list is personal data, and the export in
particular should be in as few hands as possible.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlmodel import Session

from briefing.domain import SubscriberStatus
from briefing.errors import InvalidInput
from briefing.newsletter import NewsletterData, check_slug
from briefing.service import subscribers as subscriber_service
from briefing.store import newsletters as newsletter_store
from briefing.store import subscribers as subscriber_store
from briefing.store import subscriptions as subscription_store
from briefing.web.auth import require_admin
from briefing.web.context import WebContext, get_ctx
from briefing.web.params import RowId

router = APIRouter(prefix="/editor/subscribers", dependencies=[Depends(require_admin)])
Ctx = Annotated[WebContext, Depends(get_ctx)]
READ = ["GET", "HEAD"]
NO_STORE = {"Cache-Control": "no-store"}

SHOWN = 100
EXPORT_CHUNK = 64 * 1024
EXPORT_IN_MEMORY = 8 * 1024 * 1024  # larger exports spill to a temporary file


def _status(value: str) -> str | None:
    if not value:
        return None
    if value not in {s.value for s in SubscriberStatus}:
        raise InvalidInput(f"unknown status {value[:40]!r}", field="status")
    return value


def _newsletter(session: Session, slug: str) -> NewsletterData | None:
    if not slug:
        return None
    found = newsletter_store.find_by_slug(session, check_slug(slug[:60]))
    if found is None:
        raise InvalidInput(f"unknown newsletter {slug[:40]!r}", field="newsletter")
    return found


@router.api_route("", methods=READ, response_class=HTMLResponse)
def subscribers(
    request: Request, ctx: Ctx, q: str = "", status: str = "", newsletter: str = ""
) -> HTMLResponse:
    """The list, each reader with the newsletters they are on; `newsletter` keeps one newsletter's readers."""
    wanted = _status(status)
    search = q.strip()[:200]
    with ctx.reading() as session:
        only = _newsletter(session, newsletter.strip())
        counts = subscriber_store.count_by_status(session)
        found = list(
            subscriber_store.iter_subscribers(
                session, status=wanted, search=search, limit=SHOWN, newsletter_id=only.id if only else None
            )
        )
        on = subscription_store.active_slugs(session, [s.id for s in found])
        newsletters = newsletter_store.list_newsletters(session)
    names = {n.slug: n.name or ctx.settings.newsletter_name for n in newsletters}
    return ctx.pages.render(
        request,
        "subscribers.html",
        {
            "title": "Subscribers",
            "counts": counts,
            "total": sum(counts.values()),
            "found": found,
            "shown": SHOWN,
            "q": search,
            "status": wanted or "",
            "statuses": [s.value for s in SubscriberStatus],
            # Each reader's newsletters (slug, name), in the editors' order; and the filter's choices.
            "newsletters_of": {
                sid: [(slug, names.get(slug, slug)) for slug in slugs] for sid, slugs in on.items()
            },
            "newsletters": [(n.slug, names[n.slug]) for n in newsletters],
            "newsletter": only.slug if only else "",
        },
        headers=NO_STORE,
    )


@router.post("/{subscriber_id}/unsubscribe")
def unsubscribe(
    ctx: Ctx,
    subscriber_id: RowId,
    q: Annotated[str, Form(max_length=200)] = "",
    status: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    with ctx.writing() as session:
        sub, changed = subscriber_service.unsubscribe(session, subscriber_id, now=ctx.now())
    query = urlencode({k: v for k, v in (("q", q), ("status", status)) if v})
    message = f"{sub.email} is unsubscribed." if changed else f"{sub.email} was already {sub.status}."
    return ctx.pages.redirect(
        f"/editor/subscribers{'?' + query if query else ''}", message, secure=ctx.secure_cookies
    )


@router.get("/export.csv")
def export(ctx: Ctx, status: str = "", newsletter: str = "") -> StreamingResponse:
    """The same spreadsheet-safe CSV as `briefing subscribers export`, streamed from a spooled file."""
    wanted = _status(status)
    with ctx.reading() as session:
        only = _newsletter(session, newsletter.strip())
    spool: IO[str] = tempfile.SpooledTemporaryFile(  # closed by the stream below
        max_size=EXPORT_IN_MEMORY, mode="w+", encoding="utf-8", newline=""
    )
    try:
        with ctx.gate:
            subscriber_service.export_subscribers(
                ctx.engine, spool, status=wanted, newsletter_id=only.id if only else None
            )
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while block := spool.read(EXPORT_CHUNK):
                yield block.encode("utf-8")
        finally:
            spool.close()

    name = f"subscribers-{only.slug + '-' if only else ''}{wanted or 'all'}.csv"
    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
    )
