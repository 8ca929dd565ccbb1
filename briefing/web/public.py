"""Readers' pages: subscribe (double opt-in), confirm, unsubscribe (RFC 8058 one-click), preferences.

Every link a reader gets by email leads to a page that only shows (GET and HEAD never change
anything, because mail scanners fetch every link); the page's button POSTs. The one-click
unsubscribe POST needs no cookie, no CSRF token and no particular body, answers 200 without a
redirect, and is committed before the answer goes out. Subscribe answers with the same page
whatever the address's state, so the form cannot be used to find out who is on the list.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlmodel import Session

from briefing import inputs
from briefing.domain import SubscriberData, SubscriberInput, SubscriberStatus
from briefing.errors import BriefingError, InvalidInput, TokenExpired, TokenInvalid
from briefing.store import subscribers as subscriber_store
from briefing.store.subscribers import LinkState
from briefing.web import confirmations
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
        address = inputs.email_address(email)
        given = inputs.one_line(name, field="name", max_len=inputs.MAX_NAME)
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
    may_mail = ctx.limits.subscribe_address.allow(inputs.email_key(address))
    token, greet = _register(ctx, address, given)
    if token is not None and may_mail:
        background.add_task(
            confirmations.send_confirmation, ctx.setup, ctx.transport, address, token, greet, clock=ctx.clock
        )
    return done


def _greeting(subscriber: SubscriberData | None) -> str:
    """A name for the confirmation email only if the reader once confirmed it themselves.

    Anyone can type any name next to any address; greeting with it would let strangers put their
    words into a mail we send to someone else.
    """
    if subscriber is None or subscriber.confirmed_at is None:
        return ""
    return subscriber.name


def _register(ctx: WebContext, address: str, name: str) -> tuple[str | None, str]:
    """The pending row is committed before the page goes out; returns (confirm token, name to greet)."""
    with ctx.writing() as session:
        found = subscriber_store.find_by_email(session, address)
        greet = _greeting(found)
        if found is None:
            try:
                with session.begin_nested():
                    found = subscriber_store.add_subscriber(
                        session,
                        SubscriberInput(email=address, name=name),
                        status=SubscriberStatus.PENDING,
                        source="web",
                        now=ctx.now(),
                    )
            except sa.exc.IntegrityError:  # the same address, submitted twice at once
                found = subscriber_store.find_by_email(session, address)
        state = subscriber_store.link_state(session, found.id) if found is not None else None
    if state is None:
        return None, ""
    return confirmations.make_token(ctx.signer, state, now=ctx.now()), greet


# --------------------------------------------------------------------------- confirm


def _confirm_state(ctx: WebContext, token: str) -> tuple[confirmations.ConfirmClaim, LinkState]:
    claim = confirmations.read_token(ctx.signer, token, ctx.confirm_max_age, now=ctx.now())
    with ctx.reading() as session:
        state = subscriber_store.link_state(session, claim.subscriber_id)
    if state is None:
        raise TokenInvalid("this confirmation link is not valid")
    return claim, state


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
        claim, state = _confirm_state(ctx, token)
    except TokenExpired:
        return _expired_page(request, ctx, token)
    status = state.subscriber.status
    if status == SubscriberStatus.ACTIVE:
        page, code = "already", 200
    elif confirmations.still_valid(claim, state):
        page, code = "ask", 200
    else:
        page, code = "stale", 400
    return ctx.pages.render(
        request,
        "confirm.html",
        {"title": "Confirm your subscription", "state": page, "token": token},
        status_code=code,
        headers=NO_STORE,
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    try:
        claim = confirmations.read_token(ctx.signer, token, ctx.confirm_max_age, now=ctx.now())
    except TokenExpired:
        return _expired_page(request, ctx, token)
    with ctx.writing() as session:
        state = subscriber_store.link_state(session, claim.subscriber_id)
        if state is None:
            raise TokenInvalid("this confirmation link is not valid")
        status = state.subscriber.status
        if status == SubscriberStatus.ACTIVE:
            page, code = "already", 200
        elif not confirmations.still_valid(claim, state):
            page, code = "stale", 400
        elif status == SubscriberStatus.PENDING:
            subscriber_store.confirm(session, claim.subscriber_id, now=ctx.now())
            page, code = "done", 200
        else:  # they unsubscribed or bounced, then asked again with the subscribe form
            subscriber_store.set_status(session, claim.subscriber_id, SubscriberStatus.ACTIVE, now=ctx.now())
            page, code = "done", 200
    return ctx.pages.render(
        request,
        "confirm.html",
        {"title": "Subscription confirmed" if page == "done" else "Confirm", "state": page, "token": token},
        status_code=code,
        headers=NO_STORE,
    )


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
        state = subscriber_store.link_state(session, claim.subscriber_id)
    if state is not None and confirmations.still_valid(claim, state):
        address = state.subscriber.email
        fresh = confirmations.make_token(ctx.signer, state, now=ctx.now())
        if fresh is not None and ctx.limits.subscribe_address.allow(inputs.email_key(address)):
            background.add_task(
                confirmations.send_confirmation,
                ctx.setup,
                ctx.transport,
                address,
                fresh,
                _greeting(state.subscriber),
                clock=ctx.clock,
            )
    return ctx.pages.render(request, "subscribe_sent.html", {"title": "Check your inbox"}, headers=NO_STORE)


# --------------------------------------------------------------------------- unsubscribe and preferences


def _unsubscribe_state(ctx: WebContext, session: Session, token: str, *, exact: bool = False) -> LinkState:
    """Any token version up to the current one may unsubscribe: an opt-out link must keep working.

    Undoing an unsubscribe (`exact`) needs the current version, so a revoked link cannot resubscribe.
    """
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    state = subscriber_store.link_state(session, subscriber_id)
    if state is None or version > state.token_version or (exact and version != state.token_version):
        raise TokenInvalid("this link is not valid")
    return state


def _preferences_state(ctx: WebContext, session: Session, token: str) -> LinkState:
    subscriber_id, version = ctx.signer.read_preferences(token)
    state = subscriber_store.link_state(session, subscriber_id)
    if state is None or version != state.token_version:
        raise TokenInvalid("this link is not valid")
    return state


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
    with ctx.reading() as session:
        state = _unsubscribe_state(ctx, session, token)
    return _reader_page(request, ctx, "unsubscribe.html", state, token)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    """RFC 8058 one-click: the body (List-Unsubscribe=One-Click, or empty from our button) is not needed."""
    subscriber_id, version = ctx.signer.read_unsubscribe(token)
    with ctx.connecting() as conn:
        state = subscriber_store.unsubscribe_by_link(conn, subscriber_id, version, now=ctx.now())
    if state is None:
        raise TokenInvalid("this link is not valid")
    return _reader_page(request, ctx, "unsubscribe.html", state, token, outcome="unsubscribed")


@router.post("/unsubscribe/{token}/resubscribe", response_class=HTMLResponse)
def resubscribe(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    """Undo an unsubscribe from the page that confirmed it; only for the current link version."""
    with ctx.writing() as session:
        state = _resubscribe(session, _unsubscribe_state(ctx, session, token, exact=True), ctx.now())
    return _reader_page(request, ctx, "unsubscribe.html", state, token, outcome="resubscribed")


def _resubscribe(session: Session, state: LinkState, now: datetime) -> LinkState:
    if state.subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        return state  # active stays active; bounced and complained need the subscribe form
    data = subscriber_store.set_status(session, state.subscriber.id, SubscriberStatus.ACTIVE, now=now)
    return replace(state, subscriber=data)


@router.api_route("/preferences/{token}", methods=READ, response_class=HTMLResponse)
def preferences_page(request: Request, ctx: Ctx, token: str) -> HTMLResponse:
    with ctx.reading() as session:
        state = _preferences_state(ctx, session, token)
    return _reader_page(request, ctx, "preferences.html", state, token)


@router.post("/preferences/{token}", response_class=HTMLResponse)
def preferences(
    request: Request, ctx: Ctx, token: str, action: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    if action not in ("unsubscribe", "resubscribe"):
        raise InvalidInput("choose unsubscribe or resubscribe", field="action")
    with ctx.writing() as session:
        state = _preferences_state(ctx, session, token)
        if action == "unsubscribe":
            data, _ = subscriber_store.unsubscribe(session, state.subscriber.id, now=ctx.now())
            state = replace(state, subscriber=data)
            outcome = "unsubscribed"
        else:
            state = _resubscribe(session, state, ctx.now())
            outcome = "resubscribed"
    return _reader_page(request, ctx, "preferences.html", state, token, outcome=outcome)
