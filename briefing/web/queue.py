"""Editors' pages: the story queue for any edition date, the preview, and the test send.

Every route here sits behind `require_editor` (a session for every request, a CSRF token for every
POST); the router carries the guard, so a new route cannot forget it. Forms post, then redirect
back to the page with a one-time message (post/redirect/get), so reloading never repeats an action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from briefing import inputs
from briefing.domain import StoryItem, StoryStatus
from briefing.errors import BriefingError, InvalidInput, NotFound
from briefing.newsletter import REGULAR, NewsletterData, check_kind
from briefing.service import editions as edition_service
from briefing.service import queue as queue_service
from briefing.service import stories as story_service
from briefing.service.editors import EditorAccount
from briefing.store import articles as article_store
from briefing.web.auth import logout_response, require_editor
from briefing.web.context import WebContext, get_ctx, newsletter_choice, newsletter_url
from briefing.web.errors import status_for
from briefing.web.params import RowId, form_id

router = APIRouter(prefix="/editor", dependencies=[Depends(require_editor)])
Ctx = Annotated[WebContext, Depends(get_ctx)]
Editor = Annotated[EditorAccount, Depends(require_editor)]
Text = Annotated[str, Form(max_length=10_000)]
Slug = Annotated[str, Form(max_length=60)]
READ = ["GET", "HEAD"]
NO_STORE = {"Cache-Control": "no-store"}

RECENT_ARTICLES = 50

# The email as it will go out, inside the preview page's frames: its own styles, no script ever,
# an opaque origin (no cookies, no access to the editors' pages).
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def _day(ctx: WebContext, value: str, newsletter: NewsletterData) -> date:
    return inputs.local_date(value) if value.strip() else ctx.next_edition(newsletter)


def _queue_url(day: date | None, newsletter: NewsletterData, anchor: str = "") -> str:
    return newsletter_url("/editor/queue", newsletter, anchor, date=day.isoformat() if day else "")


def _preview_url(path: str, day: date, newsletter: NewsletterData, kind: str) -> str:
    return newsletter_url(path, newsletter, date=day.isoformat(), kind="" if kind == REGULAR else kind)


def _moment(ctx: WebContext, value: str, field: str) -> datetime | None:
    return inputs.local_datetime(value, ctx.zone, field=field) if value.strip() else None


def _optional_day(value: str, field: str) -> date | None:
    return inputs.local_date(value, field=field) if value.strip() else None


@router.api_route("", methods=READ, include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/editor/queue", status_code=303)


@router.post("/logout")
def logout(request: Request, ctx: Ctx) -> Response:
    return logout_response(request, ctx)


# --------------------------------------------------------------------------- the queue


@dataclass(frozen=True, slots=True)
class QueueRow:
    entry: story_service.QueueEntry
    can_up: bool
    can_down: bool

    @property
    def story(self) -> StoryItem:
        return self.entry.story


def _rows(view: queue_service.EditionQueue) -> list[tuple[str, list[QueueRow]]]:
    """Sections in the email's order; each story knows if it can move within its (section, date) group."""
    groups: dict[tuple[str, date | None], list[int]] = {}
    for entry in view.entries:
        groups.setdefault((entry.story.section, entry.story.edition_date), []).append(entry.story.id)
    sections: list[tuple[str, list[QueueRow]]] = []
    for name, entries in view.sections:
        rows = []
        for entry in entries:
            group = groups[(entry.story.section, entry.story.edition_date)]
            index = group.index(entry.story.id)
            rows.append(QueueRow(entry, index > 0, index < len(group) - 1))
        sections.append((name, rows))
    return sections


def _blank_form(day: date) -> dict[str, Any]:
    return {
        "article_id": "",
        "url": "",
        "headline": "",
        "blurb": "",
        "section": "",
        "status": "draft",
        "edition_date": day.isoformat(),
        "embargo_until": "",
        "expires_at": "",
        "lead": False,
    }


def _queue_page(
    request: Request,
    ctx: WebContext,
    day: date,
    newsletter: NewsletterData,
    *,
    error: str = "",
    form: dict[str, Any] | None = None,
    edits: dict[int, dict[str, Any]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The queue; after a refused add or edit, that form shows what the editor typed (escaped)."""
    setup = ctx.current_setup(newsletter)
    with ctx.reading() as session:
        view = queue_service.queue_view(
            session,
            setup.plan,
            setup.compose,
            now=ctx.now(),
            edition_date=day,
            newsletter_id=setup.newsletter.id,
        )[0]
        articles = article_store.list_articles(session, not_queued=True, limit=RECENT_ARTICLES)
    stories = [entry.story for entry in view.entries]
    next_day = edition_service.default_edition_date(setup.plan, ctx.now())
    return ctx.pages.render(
        request,
        "queue.html",
        {
            **newsletter_choice(ctx, setup.newsletter),
            "title": f"Queue for {day.isoformat()}",
            "day": day,
            "next_day": next_day,
            "sections": _rows(view),
            "count": len(stories),
            "ready": sum(1 for s in stories if s.status == StoryStatus.READY),
            "going": sum(1 for entry in view.entries if entry.goes_in),
            "judged_at": view.judged_at,
            "articles": articles,
            "edition": view.edition,
            "error": error,
            "form": form or _blank_form(day),
            "edits": edits or {},
            "zone": ctx.settings.timezone,
        },
        status_code=status,
        headers=NO_STORE,
    )


@router.api_route("/queue", methods=READ, response_class=HTMLResponse)
def queue(request: Request, ctx: Ctx, date: str = "", newsletter: str = "") -> HTMLResponse:
    chosen = ctx.newsletter(newsletter)
    return _queue_page(request, ctx, _day(ctx, date, chosen), chosen)


@router.post("/stories", response_class=HTMLResponse)
def add_story(
    request: Request,
    ctx: Ctx,
    editor: Editor,
    day: Annotated[str, Form(max_length=20)] = "",
    newsletter: Slug = "",
    article_id: Annotated[str, Form(max_length=20)] = "",
    url: Text = "",
    headline: Text = "",
    blurb: Text = "",
    section: Text = "",
    status: Annotated[str, Form(max_length=20)] = "draft",
    edition_date: Annotated[str, Form(max_length=20)] = "",
    embargo_until: Annotated[str, Form(max_length=40)] = "",
    expires_at: Annotated[str, Form(max_length=40)] = "",
    lead: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    chosen = ctx.newsletter(newsletter)
    back = _day(ctx, day, chosen)
    form = {
        "article_id": article_id,
        "url": url,
        "headline": headline,
        "blurb": blurb,
        "section": section,
        "status": status,
        "edition_date": edition_date,
        "embargo_until": embargo_until,
        "expires_at": expires_at,
        "lead": bool(lead),
    }
    try:
        article = form_id(article_id, field="article")
        if article is not None and url.strip():
            raise InvalidInput("pick a stored article or give a URL, not both", field="url")
        request_ = story_service.StoryRequest(
            article_id=article,
            url=url,
            headline=headline,
            blurb=blurb,
            section=section,
            status=status,
            edition_date=_optional_day(edition_date, "edition date"),
            embargo_until=_moment(ctx, embargo_until, "embargo"),
            expires_at=_moment(ctx, expires_at, "expiry"),
            lead=bool(lead),
            created_by=editor.email,
            newsletter_id=chosen.id,
        )
        with ctx.writing() as session:
            story = story_service.add_story(session, request_, now=ctx.now())
    except BriefingError as exc:
        return _queue_page(request, ctx, back, chosen, error=str(exc), form=form, status=400)
    return ctx.pages.redirect(
        _queue_url(back, chosen, f"#story-{story.id}"),
        f"Queued “{story.headline}”.",
        secure=ctx.secure_cookies,
    )


@router.post("/stories/{story_id}", response_class=HTMLResponse)
def edit_story(
    request: Request,
    ctx: Ctx,
    story_id: RowId,
    day: Annotated[str, Form(max_length=20)] = "",
    newsletter: Slug = "",
    headline: Text = "",
    url: Text = "",
    blurb: Text = "",
    section: Text = "",
    status: Annotated[str, Form(max_length=20)] = "draft",
    edition_date: Annotated[str, Form(max_length=20)] = "",
    embargo_until: Annotated[str, Form(max_length=40)] = "",
    expires_at: Annotated[str, Form(max_length=40)] = "",
    lead: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    chosen = ctx.newsletter(newsletter)
    back = _day(ctx, day, chosen)
    typed = {
        "headline": headline,
        "url": url,
        "blurb": blurb,
        "section": section,
        "status": status,
        "edition_date": edition_date,
        "embargo_until": embargo_until,
        "expires_at": expires_at,
        "lead": bool(lead),
    }
    try:
        changes: dict[str, object] = {
            "headline": headline,
            "url": url,
            "blurb": blurb,
            "section": section,
            "status": status,
            "edition_date": _optional_day(edition_date, "edition date"),
            "embargo_until": _moment(ctx, embargo_until, "embargo"),
            "expires_at": _moment(ctx, expires_at, "expiry"),
            "lead": bool(lead),
        }
        with ctx.writing() as session:
            story = story_service.edit_story(session, story_id, changes, now=ctx.now())
    except BriefingError as exc:
        error = f"Story {story_id} was not saved. {exc}"
        return _queue_page(
            request, ctx, back, chosen, error=error, edits={story_id: typed}, status=status_for(exc)
        )
    return ctx.pages.redirect(
        _queue_url(back, chosen, f"#story-{story.id}"),
        f"Saved “{story.headline}”.",
        secure=ctx.secure_cookies,
    )


@router.post("/stories/{story_id}/move")
def move_story(
    ctx: Ctx,
    story_id: RowId,
    direction: Annotated[str, Form(max_length=10)] = "",
    day: Annotated[str, Form(max_length=20)] = "",
    newsletter: Slug = "",
) -> Response:
    chosen = ctx.newsletter(newsletter)
    back = _day(ctx, day, chosen)
    with ctx.writing() as session:
        story = story_service.nudge_story(session, story_id, direction, now=ctx.now())
    return ctx.pages.redirect(_queue_url(back, chosen, f"#story-{story.id}"), "", secure=ctx.secure_cookies)


@router.post("/note")
def set_note(
    ctx: Ctx,
    note: Annotated[str, Form(max_length=2000)] = "",
    day: Annotated[str, Form(max_length=20)] = "",
    newsletter: Slug = "",
) -> Response:
    """The editor's note for one edition, shown near its top; empty removes it."""
    chosen = ctx.newsletter(newsletter)
    back = _day(ctx, day, chosen)
    with ctx.writing() as session:
        edition_service.set_note(session, back, note, newsletter_id=chosen.id, now=ctx.now())
    message = "The editor's note is saved." if note.strip() else "The editor's note is removed."
    return ctx.pages.redirect(_queue_url(back, chosen, "#note"), message, secure=ctx.secure_cookies)


@router.post("/stories/{story_id}/status")
def set_story_status(
    ctx: Ctx,
    story_id: RowId,
    status: Annotated[str, Form(max_length=20)] = "",
    day: Annotated[str, Form(max_length=20)] = "",
    newsletter: Slug = "",
) -> Response:
    """Mark ready, back to draft, or drop (a dropped story leaves the queue but stays on record)."""
    chosen = ctx.newsletter(newsletter)
    back = _day(ctx, day, chosen)
    with ctx.writing() as session:
        story = story_service.change_status(session, story_id, status, now=ctx.now())
    words = {"ready": "is ready", "draft": "is back to draft", "dropped": "was dropped"}
    return ctx.pages.redirect(
        _queue_url(back, chosen, "" if status == "dropped" else f"#story-{story.id}"),
        f"“{story.headline}” {words[status]}.",
        secure=ctx.secure_cookies,
    )


# --------------------------------------------------------------------------- preview and test send


@router.api_route("/preview", methods=READ, response_class=HTMLResponse)
def preview(request: Request, ctx: Ctx, date: str = "", newsletter: str = "", kind: str = "") -> HTMLResponse:
    chosen = ctx.newsletter(newsletter)
    which = check_kind(kind) if kind.strip() else REGULAR
    day = _day(ctx, date, chosen)
    values: dict[str, Any] = {
        **newsletter_choice(ctx, chosen),
        "title": f"Preview of {day.isoformat()}",
        "day": day,
        "kind": which,
        "result": None,
        "frame_url": _preview_url("/editor/preview/frame", day, chosen, which),
        "queue_url": _queue_url(day, chosen),
    }
    try:
        setup = ctx.current_setup(chosen)
        with ctx.gate:
            result = edition_service.preview(ctx.engine, setup, day, clock=ctx.clock, kind=which)
    except BriefingError as exc:
        values["error"] = str(exc)
        status = 404 if isinstance(exc, NotFound) else 409
        return ctx.pages.render(request, "preview.html", values, status_code=status, headers=NO_STORE)
    ctx.previews.put((chosen.id, day, which), result.html)
    values["result"] = result
    values["report"] = result.prepared.report
    return ctx.pages.render(request, "preview.html", values, headers=NO_STORE)


@router.api_route("/preview/frame", methods=READ, response_class=HTMLResponse)
def preview_frame(ctx: Ctx, date: str = "", newsletter: str = "", kind: str = "") -> HTMLResponse:
    """The email's HTML alone, for the sandboxed frames of the preview page."""
    chosen = ctx.newsletter(newsletter)
    which = check_kind(kind) if kind.strip() else REGULAR
    day = _day(ctx, date, chosen)
    html = ctx.previews.get((chosen.id, day, which))
    if html is None:
        setup = ctx.current_setup(chosen)
        with ctx.gate:
            html = edition_service.preview(ctx.engine, setup, day, clock=ctx.clock, kind=which).html
        ctx.previews.put((chosen.id, day, which), html)
    return HTMLResponse(html, headers={"Content-Security-Policy": PREVIEW_CSP, **NO_STORE})


@router.post("/preview/test")
def send_test(
    ctx: Ctx,
    editor: Editor,
    day: Annotated[str, Form(max_length=20)] = "",
    newsletter: Slug = "",
    kind: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    chosen = ctx.newsletter(newsletter)
    which = check_kind(kind) if kind.strip() else REGULAR
    when = _day(ctx, day, chosen)
    back = _preview_url("/editor/preview", when, chosen, which)
    try:
        edition_service.send_test(
            ctx.engine,
            ctx.current_setup(chosen),
            when,
            editor.email,
            ctx.transport,
            clock=ctx.clock,
            kind=which,
        )
    except BriefingError as exc:
        return ctx.pages.redirect(
            back, f"The test copy was not sent: {exc}", kind="error", secure=ctx.secure_cookies
        )
    return ctx.pages.redirect(
        back, f"A test copy is on its way to {editor.email}.", secure=ctx.secure_cookies
    )
