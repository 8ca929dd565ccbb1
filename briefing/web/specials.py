"""Editors' pages for special editions: the form, the preview of what was made, "send now", cancel.

A special made with "send now" is kept without a send time until an editor has seen its preview
and pressed the button: nothing sends it before that (the scheduler's watch only sends specials
whose time has come). One made "at HH:MM" is left to the scheduler. The send runs the same
`edition_service.send_edition(..., kind=...)` as `briefing special --now`, in a background thread
of this process (as the editions page's "retry failed" does), so the editor gets an answer at once
and reloads to follow it. Every route sits behind `require_editor` and its CSRF check.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from briefing import calendar as cal
from briefing import inputs
from briefing.domain import EditionData, EditionStatus
from briefing.errors import BriefingError, Conflict, InvalidInput, PreflightFailed
from briefing.newsletter import NewsletterData, check_kind, is_special, special_kind
from briefing.service import editions as edition_service
from briefing.service import specials as special_service
from briefing.service.setup import EditionSetup
from briefing.store import deliveries as ledger
from briefing.store import editions as edition_store
from briefing.store import newsletters as newsletter_store
from briefing.store import stories as story_store
from briefing.web.auth import require_editor
from briefing.web.context import WebContext, get_ctx
from briefing.web.errors import status_for
from briefing.wiring import edition_setup_now

log = logging.getLogger("briefing.web")

router = APIRouter(prefix="/editor/specials", dependencies=[Depends(require_editor)])
Ctx = Annotated[WebContext, Depends(get_ctx)]
Short = Annotated[str, Form(max_length=60)]
READ = ["GET", "HEAD"]
NO_STORE = {"Cache-Control": "no-store"}
REFRESH_SECONDS = 5  # a sending special's page reloads itself this often
SHOWN = 60
# The email inside the page's frames: its own styles, no script, an opaque origin (as the queue's preview).
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
FIRST = special_kind(1)  # the kind a special's page shows when none is named
SENDABLE = (EditionStatus.SCHEDULED, EditionStatus.PAUSED, EditionStatus.PARTIAL)


def _newsletter(ctx: WebContext, slug: str) -> NewsletterData:
    with ctx.reading() as session:
        if not slug.strip():
            return newsletter_store.primary(session)
        return newsletter_store.get_by_slug(session, slug[:60])


def _setup(ctx: WebContext, newsletter: NewsletterData) -> EditionSetup:
    return edition_setup_now(ctx.settings, ctx.engine, base=ctx.setup, gate=ctx.gate, newsletter=newsletter)


def _page_url(newsletter: NewsletterData, day: date, kind: str, action: str = "") -> str:
    """A special's page (or its frame): /editor/specials/<date>?newsletter=<slug>&kind=special-N."""
    path = f"/editor/specials/{quote(day.isoformat())}{action}"
    return f"{path}?{urlencode({'newsletter': newsletter.slug, 'kind': kind})}"


def _today(ctx: WebContext, setup: EditionSetup) -> date:
    return ctx.now().astimezone(setup.plan.zone).date()


# --------------------------------------------------------------------------- the list and the form


@router.api_route("", methods=READ, response_class=HTMLResponse)
def specials(request: Request, ctx: Ctx) -> HTMLResponse:
    with ctx.reading() as session:
        found = special_service.list_specials(session, limit=SHOWN)
        letters = {n.id: n for n in newsletter_store.list_newsletters(session)}
    rows = [
        (e, letters[e.newsletter_id], _page_url(letters[e.newsletter_id], e.edition_date, e.kind))
        for e in found
    ]
    return ctx.pages.render(
        request, "specials.html", {"title": "Special editions", "rows": rows}, headers=NO_STORE
    )


def _form_page(
    request: Request,
    ctx: WebContext,
    newsletter: NewsletterData,
    *,
    form: dict[str, Any] | None = None,
    error: str = "",
    problems: list[str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    setup = _setup(ctx, newsletter)
    today = _today(ctx, setup)
    values = form or {
        "subject": "",
        "note": "",
        "stories": [],
        "when": "now",
        "at": "",
        "date": today.isoformat(),
    }
    with ctx.reading() as session:
        letters = newsletter_store.list_newsletters(session)
        queue = story_store.list_stories(session, newsletter_id=newsletter.id)  # any date
    return ctx.pages.render(
        request,
        "special_new.html",
        {
            "title": "New special edition",
            "newsletter": newsletter,
            "newsletters": letters,
            "queue": queue,
            "form": values,
            "error": error,
            "problems": problems or [],
            "zone": getattr(setup.plan.zone, "key", str(setup.plan.zone)),
        },
        status_code=status,
        headers=NO_STORE,
    )


@router.api_route("/new", methods=READ, response_class=HTMLResponse)
def new_special(request: Request, ctx: Ctx, newsletter: str = "") -> HTMLResponse:
    return _form_page(request, ctx, _newsletter(ctx, newsletter))


@router.post("", response_class=HTMLResponse)
def make_special(
    request: Request,
    ctx: Ctx,
    newsletter: Short = "",
    subject: Annotated[str, Form(max_length=2000)] = "",
    note: Annotated[str, Form(max_length=20_000)] = "",
    stories: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies form defaults
    when: Short = "now",
    at: Short = "",
    day: Annotated[str, Form(alias="date", max_length=20)] = "",
) -> Response:
    chosen = _newsletter(ctx, newsletter)
    form = {"subject": subject, "note": note, "stories": stories, "when": when, "at": at, "date": day}
    try:
        setup = _setup(ctx, chosen)
        edition_date = inputs.local_date(day, field="date") if day.strip() else _today(ctx, setup)
        send_at = _send_at(ctx, setup, edition_date, when, at)
        ids = special_service.parse_story_ids(stories)
        with ctx.writing() as session:
            made = special_service.create_special(
                session,
                setup,
                edition_date=edition_date,
                subject=subject,
                note=note,
                story_ids=ids,
                send_at=send_at,
                now=ctx.now(),
            )
    except PreflightFailed as exc:
        return _form_page(request, ctx, chosen, form=form, error=str(exc), problems=exc.problems, status=409)
    except BriefingError as exc:
        return _form_page(request, ctx, chosen, form=form, error=str(exc), status=status_for(exc))
    if send_at is None:
        message = f"The special {made.kind} is made. Check it below, then send it."
    else:
        message = f"The special {made.kind} is made; the scheduler sends it at {at.strip()}."
    return ctx.pages.redirect(
        _page_url(chosen, made.edition_date, made.kind), message, secure=ctx.secure_cookies
    )


def _send_at(ctx: WebContext, setup: EditionSetup, day: date, when: str, at: str) -> datetime | None:
    """None for "send now": the editor sends it from its preview page, not the scheduler."""
    if when == "now":
        if at.strip():
            raise InvalidInput("choose send now or a time, not both", field="at")
        return None
    if when != "at":
        raise InvalidInput("choose send now or at a time", field="when")
    try:
        wall = cal.parse_local_time(at.strip())
    except ValueError as exc:
        raise InvalidInput(str(exc), field="at") from None
    return cal.local_send_instant(day, wall, setup.plan.zone)


# --------------------------------------------------------------------------- one special


def _special(ctx: WebContext, newsletter: NewsletterData, day: str, kind: str) -> EditionData:
    edition_date = inputs.local_date(day)
    wanted = check_kind(kind)
    if not is_special(wanted):
        raise InvalidInput(
            "this page shows special editions; the regular one is on the editions page", field="kind"
        )
    with ctx.reading() as session:
        return edition_store.get_edition(session, edition_date, newsletter_id=newsletter.id, kind=wanted)


@router.api_route("/{day}", methods=READ, response_class=HTMLResponse)
def special(request: Request, ctx: Ctx, day: str, kind: str = FIRST, newsletter: str = "") -> HTMLResponse:
    chosen = _newsletter(ctx, newsletter)
    edition = _special(ctx, chosen, day, kind)
    setup = _setup(ctx, chosen)
    with ctx.gate:
        result = edition_service.preview(
            ctx.engine, setup, edition.edition_date, clock=ctx.clock, kind=edition.kind
        )
    with ctx.reading() as session:
        counts = ledger.counts(session, edition.id)
    sending = edition.status == EditionStatus.SENDING or _running(ctx, edition.id)
    headers = {**NO_STORE, "Refresh": str(REFRESH_SECONDS)} if sending else NO_STORE
    return ctx.pages.render(
        request,
        "special.html",
        {
            "title": f"Special {edition.kind} of {edition.edition_date.isoformat()}",
            "edition": edition,
            "newsletter": chosen,
            "result": result,
            "report": result.prepared.report,
            "counts": counts,
            "sending": sending,
            "can_send": edition.status in SENDABLE and edition.scheduled_for is None and not sending,
            "can_cancel": edition.status in special_service.CANCELLABLE and edition.frozen_at is None,
            "frame_url": _page_url(chosen, edition.edition_date, edition.kind, "/frame"),
            "send_url": f"/editor/specials/{quote(edition.edition_date.isoformat())}/send",
            "cancel_url": f"/editor/specials/{quote(edition.edition_date.isoformat())}/cancel",
        },
        headers=headers,
    )


@router.api_route("/{day}/frame", methods=READ, response_class=HTMLResponse)
def special_frame(ctx: Ctx, day: str, kind: str = FIRST, newsletter: str = "") -> HTMLResponse:
    """The email's HTML alone, for the sandboxed frames of the special's page."""
    chosen = _newsletter(ctx, newsletter)
    edition = _special(ctx, chosen, day, kind)
    setup = _setup(ctx, chosen)
    with ctx.gate:
        html = edition_service.preview(
            ctx.engine, setup, edition.edition_date, clock=ctx.clock, kind=edition.kind
        ).html
    return HTMLResponse(html, headers={"Content-Security-Policy": PREVIEW_CSP, **NO_STORE})


@router.post("/{day}/send")
def send_special(ctx: Ctx, day: str, kind: Short = FIRST, newsletter: Short = "") -> Response:
    chosen = _newsletter(ctx, newsletter)
    edition = _special(ctx, chosen, day, kind)
    back = _page_url(chosen, edition.edition_date, edition.kind)

    def refuse(message: str) -> Response:
        return ctx.pages.redirect(back, message, kind="error", secure=ctx.secure_cookies)

    if edition.status not in SENDABLE:
        return refuse(f"This special is {edition.status}; there is nothing to send.")
    if edition.scheduled_for is not None and edition.status == EditionStatus.SCHEDULED:
        return refuse("This special has a send time; the scheduler sends it then (cancel it to change that).")
    setup = _setup(ctx, chosen)
    with ctx.retry_lock:
        running = ctx.retries.get(edition.id)
        if running is not None and running.is_alive():
            return refuse("This special is already being sent.")
        thread = threading.Thread(
            target=_send, args=(ctx, setup, edition), name=f"special-{edition.id}", daemon=True
        )
        ctx.retries[edition.id] = thread
        thread.start()
    return ctx.pages.redirect(back, "Sending now. Reload this page to follow it.", secure=ctx.secure_cookies)


@router.post("/{day}/cancel")
def cancel_special(ctx: Ctx, day: str, kind: Short = FIRST, newsletter: Short = "") -> Response:
    chosen = _newsletter(ctx, newsletter)
    edition = _special(ctx, chosen, day, kind)
    back = _page_url(chosen, edition.edition_date, edition.kind)
    if _running(ctx, edition.id):
        return ctx.pages.redirect(back, "It is being sent.", kind="error", secure=ctx.secure_cookies)
    try:
        with ctx.writing() as session:
            special_service.cancel_special(
                session,
                newsletter_id=chosen.id,
                edition_date=edition.edition_date,
                kind=edition.kind,
                now=ctx.now(),
            )
    except Conflict as exc:
        return ctx.pages.redirect(back, exc.message, kind="error", secure=ctx.secure_cookies)
    return ctx.pages.redirect(back, "The special is cancelled; nothing is sent.", secure=ctx.secure_cookies)


def _running(ctx: WebContext, edition_id: int) -> bool:
    with ctx.retry_lock:
        thread = ctx.retries.get(edition_id)
        return thread is not None and thread.is_alive()


def _send(ctx: WebContext, setup: EditionSetup, edition: EditionData) -> None:
    label = f"{edition.kind} of {edition.edition_date}"
    try:
        outcome = edition_service.send_edition(
            ctx.engine,
            setup,
            edition.edition_date,
            ctx.transport,
            kind=edition.kind,
            stop=ctx.stop,
            clock=ctx.clock,
        )
    except BriefingError as exc:
        log.warning("the special %s stopped: %s", label, exc)
    except Exception:
        log.exception("the special %s failed", label)
    else:
        log.info("the special %s: %s", label, outcome.message)
