"""Readers' pages: subscribe (double opt-in), confirm, unsubscribe (RFC 8058 one-click), preferences.

Every link a reader gets by email leads to a page that only shows (GET and HEAD never change
anything, because mail scanners fetch every link); the page's button POSTs. The one-click
unsubscribe POST needs no cookie, no CSRF token and no particular body, answers 200 without a
redirect, and is committed before the answer goes out. Subscribe answers with the same page
whatever the address's state, so the form cannot be used to find out who is on the list.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from briefing import inputs
from briefing.errors import BriefingError, InvalidInput, TokenExpired
from briefing.service import confirmations
from briefing.service import subscribers as subscriber_service
from briefing.service.subscribers import Confirmation
from briefing.store.subscribers import LinkState
from briefing.web.auth import TooManyRequests
from briefing.web.context import WebContext, client_ip, get_ctx, mask_email

router = APIRouter()
Ctx = Annotated[WebContext, Depends(get_ctx)]
READ = ["GET", "HEAD"]
NO_STORE = {"Cache-Control": "no-store"}


@router.api_route("/", methods=READ, include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/subscribe", status_code=303)


@router.api_route("/healthz", methods=READ, include_in_schema=False)
def healthz(ctx: Ctx) -> PlainTextResponse:
    with ctx.reading() as session:
        session.execute(sa.text("SELECT 1"))
    return PlainTextResponse("ok")


# --------------------------------------------------------------------------- subscribe


def _subscribe_page(
    request: Request, ctx: WebContext, *, email: str = "", name: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    return ctx.pages.render(
        request,
        "subscribe.html",
        {"title": "Subscribe", "email": email, "name": name, "error": error},
        status_code=status,
    )


@router.api_route("/subscribe", methods=READ, response_class=HTMLResponse)
def subscribe_form(request: Request, ctx: Ctx) -> HTMLResponse:
    return _subscribe_page(request, ctx)


@router.post("/subscribe", response_class=HTMLResponse)
def subscribe(
    request: Request,
    background: BackgroundTasks,
    ctx: Ctx,
    email: Annotated[str, Form(max_length=1000)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    website: Annotated[str, Form(max_length=1000)] = "",  # a field people never see; bots fill it in
) -> HTMLResponse:
    """Create a pending subscriber and mail a confirmation link; the answer never depends on the list."""
    try:
        item = subscriber_service.subscriber_input(email, name, allow_smtputf8=ctx.settings.smtp_smtputf8)
    except BriefingError as exc:
        return _subscribe_page(request, ctx, email=email, name=name, error=str(exc), status=400)
    if not ctx.limits.subscribe_ip.allow(client_ip(request)):
        raise TooManyRequests(
            "Too many sign-ups from your network. Please try again later.",
            int(ctx.limits.subscribe_ip.rate.window),
        )
    done = ctx.pages.render(request, "subscribe_sent.html", {"title": "Check your inbox"}, headers=NO_STORE)
    if website.strip():
        return done
    may_mail = ctx.limits.subscribe_address.allow(inputs.email_key(item.email))
    with ctx.writing() as session:  # the pending row is committed before the page goes out
        due = subscriber_service.register(session, ctx.signer, item, now=ctx.now())
    if due is not None and may_mail:
        background.add_task(confirmations.send_confirmation, ctx.setup, ctx.transport, due, clock=ctx.clock)
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


# --------------------------------------------------------------------------- unsubscribe and preferences


def _reader_page(
    request: Request, ctx: WebContext, template: str, state: LinkState, token: str, outcome: str = ""
) -> HTMLResponse:
    return ctx.pages.render(
        request,
        template,
        {
            "title": "Your subscription",
            "status": state.subscriber.status,
            "masked": mask_email(state.subscriber.email),
            "token": token,
            "outcome": outcome,
        },
        headers=NO_STORE,
    )


@router.api_route("/unsubscribe/{token}", methods=READ, response_class=HTMLResponse)
def unsubscribe_page(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.reading() as session:
        state = subscriber_service.unsubscribe_link_state(session, subscriber_id, version)
    return _reader_page(request, ctx, "unsubscribe.html", state, token)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    """RFC 8058 one-click: the body (List-Unsubscribe=One-Click, or empty from our button) is not needed."""
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.connecting() as conn:
        state = subscriber_service.unsubscribe_by_link(conn, subscriber_id, version, now=ctx.now())
    return _reader_page(request, ctx, "unsubscribe.html", state, token, outcome="unsubscribed")


@router.post("/unsubscribe/{token}/resubscribe", response_class=HTMLResponse)
def resubscribe(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    """Undo an unsubscribe from the page that confirmed it; only for the current link version."""
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.writing() as session:
        state = subscriber_service.resubscribe(session, subscriber_id, version, now=ctx.now())
    return _reader_page(request, ctx, "unsubscribe.html", state, token, outcome="resubscribed")


@router.api_route("/preferences/{token}", methods=READ, response_class=HTMLResponse)
def preferences_page(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    subscriber_id, version = ctx.signer.read_preferences(token)
    with ctx.reading() as session:
        state = subscriber_service.current_link_state(session, subscriber_id, version)
    return _reader_page(request, ctx, "preferences.html", state, token)


@router.post("/preferences/{token}", response_class=HTMLResponse)
def preferences(
    request: Request, ctx: Ctx, token: str, action: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    if action not in ("unsubscribe", "resubscribe"):
        raise InvalidInput("choose unsubscribe or resubscribe", field="action")
    subscriber_id, version = ctx.signer.read_preferences(token)
    with ctx.writing() as session:
        if action == "unsubscribe":
            state = subscriber_service.unsubscribe_from_preferences(
                session, subscriber_id, version, now=ctx.now()
            )
            outcome = "unsubscribed"
        else:
            state = subscriber_service.resubscribe(session, subscriber_id, version, now=ctx.now())
            outcome = "resubscribed"
    return _reader_page(request, ctx, "preferences.html", state, token, outcome=outcome)
