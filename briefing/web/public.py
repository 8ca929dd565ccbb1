"""Readers' pages: subscribe (double opt-in), confirm, unsubscribe (RFC 8058 one-click), preferences.

Every link a reader gets by email leads to a page that only shows (GET and HEAD never change
anything, because mail scanners fetch every link); the page's button POSTs. The one-click
unsubscribe POST needs no cookie, no CSRF token and no particular body, answers 200 without a
redirect, and is committed before the answer goes out; it leaves the newsletter its `?list=`
names (none: the first one, as in every email sent before there were several). Subscribe
answers with the same page whatever the address's state, so the form cannot be used to find
out who is on the list.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from briefing import inputs, wiring
from briefing.errors import BriefingError, InvalidInput, NotFound, TokenExpired
from briefing.newsletter import NewsletterData
from briefing.service import confirmations
from briefing.service import preferences as preference_service
from briefing.service import subscribers as subscriber_service
from briefing.service.setup import EditionSetup
from briefing.service.subscribers import Confirmation
from briefing.store import newsletters as newsletter_store
from briefing.store.subscribers import LinkState
from briefing.store.subscriptions import NewsletterRef
from briefing.web.auth import TooManyRequests
from briefing.web.context import WebContext, client_ip, get_ctx, mask_email

router = APIRouter()
Ctx = Annotated[WebContext, Depends(get_ctx)]
READ = ["GET", "HEAD"]
NO_STORE = {"Cache-Control": "no-store"}
MAX_CHOICES = 100  # more values of one form field than any page of ours sends
# The `?list=` of an unsubscribe link: a newsletter's slug (none: the first newsletter).
ListParam = Annotated[str, Query(alias="list", max_length=60)]
Choices = Annotated[list[str] | None, Form()]


@router.api_route("/", methods=READ, include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/subscribe", status_code=303)


@router.api_route("/healthz", methods=READ, include_in_schema=False)
def healthz(ctx: Ctx) -> PlainTextResponse:
    with ctx.reading() as session:
        session.execute(sa.text("SELECT 1"))
    return PlainTextResponse("ok")


# --------------------------------------------------------------------------- subscribe


def _open(ctx: WebContext) -> list[NewsletterData]:
    """The newsletters that take sign-ups, in the editors' order."""
    with ctx.reading() as session:
        return newsletter_store.list_newsletters(session, include_paused=False)


def _name(ctx: WebContext, newsletter: NewsletterData | NewsletterRef) -> str:
    return newsletter.name or ctx.settings.newsletter_name


def _subscribe_page(
    request: Request,
    ctx: WebContext,
    offered: list[NewsletterData],
    single: NewsletterData | None,
    *,
    email: str = "",
    name: str = "",
    chosen: frozenset[str] | None = None,
    error: str = "",
    status: int = 200,
) -> HTMLResponse:
    values: dict[str, object] = {
        "title": "Subscribe",
        "email": email,
        "name": name,
        "error": error,
        "action": f"/subscribe/{single.slug}" if single else "/subscribe",
        "offered": [] if single else [(n.slug, _name(ctx, n)) for n in offered],
        "chosen": chosen if chosen is not None else frozenset(n.slug for n in offered[:1]),
    }
    if single is not None:
        values["newsletter_name"] = _name(ctx, single)
    return ctx.pages.render(request, "subscribe.html", values, status_code=status)


def _single(offered: list[NewsletterData], slug: str) -> NewsletterData:
    found = next((n for n in offered if n.slug == slug.strip().lower()), None)
    if found is None:
        raise NotFound(f"there is no newsletter {slug[:40]!r} to sign up for", field="newsletter")
    return found


def _chosen(offered: list[NewsletterData], slugs: list[str], choosing: bool) -> list[NewsletterData]:
    """The newsletters a sign-up asks for; a form without the list (an old page) means the first."""
    if len(slugs) > MAX_CHOICES:
        raise InvalidInput("too many newsletters", field="newsletter")
    by_slug = {n.slug: n for n in offered}
    wanted = []
    for slug in dict.fromkeys(s.strip().lower() for s in slugs):
        if slug not in by_slug:
            raise InvalidInput(f"there is no newsletter {slug[:40]!r} to sign up for", field="newsletter")
        wanted.append(by_slug[slug])
    if not wanted and (choosing or not offered):
        raise InvalidInput("choose at least one newsletter", field="newsletter")
    return wanted or offered[:1]


def _mail_setup(ctx: WebContext, chosen: list[NewsletterData]) -> EditionSetup:
    """Who the email is from (the first newsletter chosen) and the newsletters it names."""
    try:
        setup = wiring.edition_setup_now(
            ctx.settings, ctx.engine, base=ctx.setup, gate=ctx.gate, newsletter=chosen[0]
        )
    except BriefingError:
        setup = ctx.setup
    names = [_name(ctx, n) for n in chosen]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return replace(setup, compose=replace(setup.compose, newsletter_name=joined))


@router.api_route("/subscribe", methods=READ, response_class=HTMLResponse)
def subscribe_form(request: Request, ctx: Ctx) -> HTMLResponse:
    return _subscribe_page(request, ctx, _open(ctx), None)


@router.api_route("/subscribe/{slug}", methods=READ, response_class=HTMLResponse)
def subscribe_one_form(request: Request, ctx: Ctx, slug: str) -> HTMLResponse:
    offered = _open(ctx)
    return _subscribe_page(request, ctx, offered, _single(offered, slug))


@router.post("/subscribe", response_class=HTMLResponse)
def subscribe(
    request: Request,
    background: BackgroundTasks,
    ctx: Ctx,
    email: Annotated[str, Form(max_length=1000)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    website: Annotated[str, Form(max_length=1000)] = "",  # a field people never see; bots fill it in
    newsletter: Choices = None,
    choosing: Annotated[str, Form(max_length=10)] = "",  # the page listed newsletters to tick
) -> HTMLResponse:
    offered = _open(ctx)
    try:
        chosen = _chosen(offered, newsletter or [], bool(choosing))
    except BriefingError as exc:
        picked = frozenset(s[:40] for s in (newsletter or [])[:MAX_CHOICES])
        return _subscribe_page(
            request, ctx, offered, None, email=email, name=name, chosen=picked, error=str(exc), status=400
        )
    return _sign_up(request, background, ctx, offered, None, chosen, email, name, website)


@router.post("/subscribe/{slug}", response_class=HTMLResponse)
def subscribe_one(
    request: Request,
    background: BackgroundTasks,
    ctx: Ctx,
    slug: str,
    email: Annotated[str, Form(max_length=1000)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    website: Annotated[str, Form(max_length=1000)] = "",
) -> HTMLResponse:
    offered = _open(ctx)
    single = _single(offered, slug)
    return _sign_up(request, background, ctx, offered, single, [single], email, name, website)


def _sign_up(
    request: Request,
    background: BackgroundTasks,
    ctx: WebContext,
    offered: list[NewsletterData],
    single: NewsletterData | None,
    chosen: list[NewsletterData],
    email: str,
    name: str,
    website: str,
) -> HTMLResponse:
    """Record the sign-up and mail what is due; the answer never depends on the list."""
    try:
        item = subscriber_service.subscriber_input(email, name, allow_smtputf8=ctx.settings.smtp_smtputf8)
    except BriefingError as exc:
        picked = frozenset(n.slug for n in chosen)
        return _subscribe_page(
            request, ctx, offered, single, email=email, name=name, chosen=picked, error=str(exc), status=400
        )
    if not ctx.limits.subscribe_ip.allow(client_ip(request)):
        raise TooManyRequests(
            "Too many sign-ups from your network. Please try again later.",
            int(ctx.limits.subscribe_ip.rate.window),
        )
    values: dict[str, object] = {"title": "Check your inbox"}
    if single is not None:
        values["newsletter_name"] = _name(ctx, single)
    done = ctx.pages.render(request, "subscribe_sent.html", values, headers=NO_STORE)
    if website.strip():
        return done
    may_mail = ctx.limits.subscribe_address.allow(inputs.email_key(item.email))
    with ctx.writing() as session:  # the rows are committed before the page goes out
        due = subscriber_service.register(
            session, ctx.signer, item, newsletter_ids=[n.id for n in chosen], now=ctx.now()
        )
    if due is not None and may_mail:
        setup = _mail_setup(ctx, chosen)
        background.add_task(confirmations.send_confirmation, setup, ctx.transport, due, clock=ctx.clock)
    return done


# --------------------------------------------------------------------------- confirm


def _confirm_page(
    request: Request, ctx: WebContext, token: str, outcome: Confirmation, title: str
) -> HTMLResponse:
    return ctx.pages.render(
        request,
        "confirm.html",
        {"title": title, "state": outcome.value, "token": token},
        status_code=400 if outcome is Confirmation.STALE else 200,
        headers=NO_STORE,
    )


def _expired_page(request: Request, ctx: WebContext, token: str) -> HTMLResponse:
    return ctx.pages.render(
        request,
        "confirm.html",
        {"title": "Link expired", "state": "expired", "token": token},
        status_code=400,
        headers=NO_STORE,
    )


@router.api_route("/confirm/{token}", methods=READ, response_class=HTMLResponse)
def confirm_page(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    try:
        claim = confirmations.read_token(ctx.signer, token, ctx.confirm_max_age, now=ctx.now())
    except TokenExpired:
        return _expired_page(request, ctx, token)
    with ctx.reading() as session:
        outcome = subscriber_service.confirmation_state(session, ctx.signer, claim)
    return _confirm_page(request, ctx, token, outcome, "Confirm your subscription")


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    try:
        claim = confirmations.read_token(ctx.signer, token, ctx.confirm_max_age, now=ctx.now())
    except TokenExpired:
        return _expired_page(request, ctx, token)
    with ctx.writing() as session:
        outcome = subscriber_service.confirm(session, ctx.signer, claim, now=ctx.now())
    title = "Subscription confirmed" if outcome is Confirmation.DONE else "Confirm"
    return _confirm_page(request, ctx, token, outcome, title)


@router.post("/confirm/{token}/resend", response_class=HTMLResponse)
def resend_confirmation(request: Request, background: BackgroundTasks, ctx: Ctx, token: str) -> HTMLResponse:
    """A fresh link for an expired one; the same answer whether or not a new email goes out."""
    claim = confirmations.read_token(
        ctx.signer, token, ctx.confirm_max_age, now=ctx.now(), ignore_expiry=True
    )
    if not ctx.limits.subscribe_ip.allow(client_ip(request)):
        raise TooManyRequests(
            "Too many requests from your network. Please try again later.",
            int(ctx.limits.subscribe_ip.rate.window),
        )
    with ctx.reading() as session:
        due = subscriber_service.renew_confirmation(session, ctx.signer, claim, now=ctx.now())
    if due is not None and ctx.limits.subscribe_address.allow(inputs.email_key(due.to_address)):
        background.add_task(confirmations.send_confirmation, ctx.setup, ctx.transport, due, clock=ctx.clock)
    return ctx.pages.render(request, "subscribe_sent.html", {"title": "Check your inbox"}, headers=NO_STORE)


# --------------------------------------------------------------------------- unsubscribe


def _unsubscribe_page(
    request: Request,
    ctx: WebContext,
    state: LinkState,
    token: str,
    version: int,
    newsletter: NewsletterRef,
    *,
    on: bool,
    outcome: str = "",
) -> HTMLResponse:
    """The page of one newsletter's unsubscribe link: that newsletter, leaving all, the preferences."""
    own = version == state.token_version  # only a current link leads on to the preferences page
    preferences = f"/preferences/{ctx.signer.preferences_token(state.subscriber.id, version)}" if own else ""
    return ctx.pages.render(
        request,
        "unsubscribe.html",
        {
            "title": "Your subscription",
            "status": state.subscriber.status,
            "masked": mask_email(state.subscriber.email),
            "token": token,
            "outcome": outcome,
            "on": on,
            "list_name": _name(ctx, newsletter),
            "list_query": f"?list={newsletter.slug}" if request.query_params.get("list") else "",
            "preferences_url": preferences,
        },
        headers=NO_STORE,
    )


@router.api_route("/unsubscribe/{token}", methods=READ, response_class=HTMLResponse)
def unsubscribe_page(request: Request, ctx: Ctx, token: str, list_: ListParam = "") -> HTMLResponse:
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.reading() as session:
        state = subscriber_service.unsubscribe_link_state(session, subscriber_id, version)
        newsletter = subscriber_service.link_newsletter(session.connection(), list_)
        on = subscriber_service.is_on(session, subscriber_id, newsletter.id)
    return _unsubscribe_page(request, ctx, state, token, version, newsletter, on=on)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, ctx: Ctx, token: str, list_: ListParam = "") -> HTMLResponse:
    """RFC 8058 one-click: the body (List-Unsubscribe=One-Click, or empty from our button) is not needed."""
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.connecting() as conn:
        newsletter = subscriber_service.link_newsletter(conn, list_)
        state = subscriber_service.unsubscribe_by_link(
            conn, subscriber_id, version, newsletter_id=newsletter.id, now=ctx.now()
        )
    return _unsubscribe_page(
        request, ctx, state, token, version, newsletter, on=False, outcome="unsubscribed"
    )


@router.post("/unsubscribe/{token}/resubscribe", response_class=HTMLResponse)
def resubscribe(request: Request, ctx: Ctx, token: str, list_: ListParam = "") -> HTMLResponse:
    """Undo an unsubscribe from the page that confirmed it: back on that newsletter (current link only)."""
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.writing() as session:
        newsletter = subscriber_service.link_newsletter(session.connection(), list_)
        state = subscriber_service.resubscribe(
            session, subscriber_id, version, newsletter_id=newsletter.id, now=ctx.now()
        )
        on = subscriber_service.is_on(session, subscriber_id, newsletter.id)
    return _unsubscribe_page(request, ctx, state, token, version, newsletter, on=on, outcome="resubscribed")


@router.post("/unsubscribe/{token}/all", response_class=HTMLResponse)
def leave_all(request: Request, ctx: Ctx, token: str, list_: ListParam = "") -> HTMLResponse:
    """The unsubscribe page's "leave all our newsletters": an opt-out, so any version of the link."""
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.writing() as session:
        newsletter = subscriber_service.link_newsletter(session.connection(), list_)
        state = subscriber_service.leave_everything(session, subscriber_id, version, now=ctx.now())
    return _unsubscribe_page(request, ctx, state, token, version, newsletter, on=False, outcome="left-all")


# --------------------------------------------------------------------------- preferences


def _preferences_page(
    request: Request,
    ctx: WebContext,
    token: str,
    subscriber_id: int,
    version: int,
    *,
    outcome: str = "",
    error: str = "",
) -> HTMLResponse:
    with ctx.reading() as session:
        state, rows = preference_service.preferences(
            session, subscriber_id, version, default_sections=ctx.settings.section_order
        )
    return ctx.pages.render(
        request,
        "preferences.html",
        {
            "title": "Your subscription",
            "status": state.subscriber.status,
            "masked": mask_email(state.subscriber.email),
            "token": token,
            "outcome": outcome,
            "rows": rows,
            "error": error,
        },
        status_code=400 if error else 200,
        headers=NO_STORE,
    )


@router.api_route("/preferences/{token}", methods=READ, response_class=HTMLResponse)
def preferences_page(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    subscriber_id, version = ctx.signer.read_preferences(token)
    return _preferences_page(request, ctx, token, subscriber_id, version)


def _choices(
    shown: list[str], newsletter: list[str], specials: list[str], sectioned: list[str], section: list[str]
) -> list[preference_service.NewsletterChoice]:
    """The form's fields as one choice per newsletter it showed (`section` values are "slug:name")."""
    if any(len(v) > MAX_CHOICES for v in (shown, newsletter, specials, sectioned)) or len(section) > 1000:
        raise InvalidInput("too many values", field="newsletter")
    ticked: dict[str, list[str]] = {}
    for value in section:
        slug, sep, name = value.partition(":")
        if not sep or len(value) > 300:
            raise InvalidInput("must be a newsletter and one of its sections", field="sections")
        ticked.setdefault(slug.strip().lower(), []).append(name)
    on, extra, with_sections = (
        {v.strip().lower() for v in values} for values in (newsletter, specials, sectioned)
    )
    return [
        preference_service.NewsletterChoice(
            slug=slug[:60],
            on=slug in on,
            specials=slug in extra,
            sections=tuple(ticked.get(slug, ())) if slug in with_sections else None,
        )
        for slug in dict.fromkeys(v.strip().lower() for v in shown)
    ]


@router.post("/preferences/{token}", response_class=HTMLResponse)
def preferences(
    request: Request,
    ctx: Ctx,
    token: str,
    action: Annotated[str, Form(max_length=20)] = "",
    shown: Choices = None,
    newsletter: Choices = None,
    specials: Choices = None,
    sectioned: Choices = None,
    section: Choices = None,
) -> Response:
    """Save the newsletters, sections and specials chosen; or leave everything, or come back."""
    if action not in ("save", "unsubscribe", "resubscribe"):
        raise InvalidInput("choose save, unsubscribe or resubscribe", field="action")
    subscriber_id, version = ctx.signer.read_preferences(token)
    if action == "save":
        choices = _choices(shown or [], newsletter or [], specials or [], sectioned or [], section or [])
        try:
            with ctx.writing() as session:
                preference_service.save_preferences(
                    session,
                    subscriber_id,
                    version,
                    choices,
                    default_sections=ctx.settings.section_order,
                    now=ctx.now(),
                )
        except InvalidInput as exc:  # nothing was written: show the page again with the reason
            return _preferences_page(request, ctx, token, subscriber_id, version, error=str(exc))
        return _preferences_page(request, ctx, token, subscriber_id, version, outcome="saved")
    with ctx.writing() as session:
        if action == "unsubscribe":
            subscriber_service.unsubscribe_from_preferences(session, subscriber_id, version, now=ctx.now())
        else:
            subscriber_service.resubscribe(session, subscriber_id, version, now=ctx.now())
    outcome = "unsubscribed" if action == "unsubscribe" else "resubscribed"
    return _preferences_page(request, ctx, token, subscriber_id, version, outcome=outcome)
