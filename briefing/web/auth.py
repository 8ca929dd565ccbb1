"""Editors' login: signed session cookies, per-session CSRF tokens, login rate limits.

The session lives in a signed cookie (itsdangerous, its own secret, never the link secret), so a
restart keeps editors logged in when BRIEFING_SESSION_SECRET is set. Each request re-reads the
editor: a disabled account, a changed password or a sign-out ends every session at once. Signing
out raises the account's session epoch in the database, so a copied cookie stays dead in every
process and after a restart.

Sign-in is limited three ways: per address and account, per address, and per account whatever
the address (failures only), so guessing one editor's password from many addresses stops too.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from briefing.errors import NotFound
from briefing.service import editors as editor_service
from briefing.service.editors import EditorAccount
from briefing.web.context import WebContext, client_ip, get_ctx, random_token

SESSION_COOKIE = "briefing_session"
LOGIN_COOKIE = "briefing_login"  # pre-session CSRF token for the login form itself
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

router = APIRouter()


class LoginRequired(Exception):
    """No valid session: GET goes to the login page, anything else gets 401."""


class Forbidden(Exception):
    """Logged in, but the CSRF token is missing or wrong, or the page is for admins only."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooManyRequests(Exception):
    """A rate limit was hit; the answer is 429 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def current_editor(request: Request, ctx: WebContext) -> EditorAccount | None:
    """The logged-in, still active editor for this request, or None; cached on request.state."""
    if hasattr(request.state, "editor"):
        cached: EditorAccount | None = request.state.editor
        return cached
    data = ctx.sessions.read(request.cookies.get(SESSION_COOKIE))
    editor = None
    if data is not None:
        with ctx.reading() as session:
            found = editor_service.get_editor(session, data.editor_id)
        if (
            found is not None
            and found.active
            and found.session_epoch == data.epoch
            and hmac.compare_digest(found.password_stamp, data.stamp)
        ):
            editor = found
            request.state.csrf_token = data.csrf
    request.state.editor = editor
    return editor


async def require_editor(request: Request, ctx: Annotated[WebContext, Depends(get_ctx)]) -> EditorAccount:
    """Router-wide guard for /editor: a session for every method, a CSRF token for every unsafe one."""
    # A database read: off the event loop, which must never wait for SQLite's lock.
    editor = await run_in_threadpool(current_editor, request, ctx)
    if editor is None:
        raise LoginRequired()
    if request.method not in SAFE_METHODS:
        await check_csrf(request, request.state.csrf_token)
    return editor


async def require_admin(editor: Annotated[EditorAccount, Depends(require_editor)]) -> EditorAccount:
    if not editor.is_admin:
        raise Forbidden("This page is for administrators.")
    return editor


async def check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get("x-csrf-token", "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else ""
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Forbidden("The form has expired or did not come from this site. Reload the page and try again.")


def safe_next(value: str) -> str:
    """Only local editor paths: `next=//evil.example` or `next=https://...` would be an open redirect."""
    if not value.startswith("/editor") or value.startswith("//") or "\\" in value:
        return "/editor"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/editor"
    return value


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(target, safe="")


def _login_page(
    request: Request, ctx: WebContext, *, next_url: str, email: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    token = request.cookies.get(LOGIN_COOKIE) or random_token()
    response = ctx.pages.render(
        request,
        "login.html",
        {"title": "Sign in", "next_url": next_url, "email": email, "login_token": token, "error": error},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="lax",
        secure=ctx.secure_cookies,
    )
    return response


@router.api_route("/login", methods=["GET", "HEAD"], response_class=HTMLResponse)
def login_form(request: Request, ctx: Annotated[WebContext, Depends(get_ctx)], next: str = "") -> Response:
    if current_editor(request, ctx) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, ctx, next_url=safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    ctx: Annotated[WebContext, Depends(get_ctx)],
    email: Annotated[str, Form(max_length=400)] = "",
    password: Annotated[str, Form(max_length=editor_service.MAX_PASSWORD)] = "",
    login_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    target = safe_next(next)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), login_token.encode()):
        raise Forbidden("The sign-in form has expired. Reload the page and try again.")
    ip = client_ip(request)
    account = email.strip().lower()
    # Taken before the check and given back on success, so parallel guesses cannot overshoot it.
    locked = ctx.limits.login_account.take(account)
    if locked:
        raise TooManyRequests(
            f"Too many failed sign-ins for this account. Try again in {_minutes(locked)}.", locked
        )
    wait = ctx.limits.login.take(f"{ip}|{account}") or ctx.limits.login_ip.take(ip)
    if wait:
        ctx.limits.login_account.give_back(account)
        raise TooManyRequests("Too many sign-in attempts. Wait a minute and try again.", wait)
    # Off the gate: argon2 runs with no transaction open (see briefing.service.editors).
    editor = editor_service.authenticate(
        ctx.engine, email, password, now=ctx.now(), gate=ctx.gate, hasher=ctx.hasher
    )
    if editor is not None:
        ctx.limits.login_account.give_back(account)
    else:
        return _login_page(
            request, ctx, next_url=target, email=email, error="Wrong email or password.", status=401
        )
    value, _ = ctx.sessions.issue(editor)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(ctx.session_max_age.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=ctx.secure_cookies,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def logout_response(request: Request, ctx: WebContext) -> Response:
    """Sign the account out everywhere: raising its epoch ends this cookie and every copy of it."""
    editor: EditorAccount | None = getattr(request.state, "editor", None)
    if editor is not None:
        try:
            with ctx.writing() as session:
                editor_service.sign_out(session, editor.id)
        except NotFound:
            pass  # the account is gone, and with it every session
    response = ctx.pages.redirect("/login", "You are signed out.", secure=ctx.secure_cookies)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
