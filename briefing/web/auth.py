"""Editors' login: signed session cookies, per-session CSRF tokens, login rate limits.

The session lives in a signed cookie (itsdangerous, its own secret, never the link secret), so a
restart keeps editors logged in when BRIEFING_SESSION_SECRET is set. Each request re-reads the
editor: a disabled account or a changed password ends every session at once. Logging out also
revokes the session id in this process's memory until the cookie would have expired anyway.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

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
        if found is not None and found.active and hmac.compare_digest(found.password_stamp, data.stamp):
            editor = found
            request.state.csrf_token = data.csrf
            request.state.session_id = data.sid
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
    key = f"{ip}|{email.strip().lower()}"
    if not ctx.limits.login.allow(key) or not ctx.limits.login_ip.allow(ip):
        raise TooManyRequests(
            "Too many sign-in attempts. Wait a minute and try again.", int(ctx.limits.login.rate.window)
        )
    with ctx.writing() as session:
        editor = editor_service.authenticate(session, email, password, now=ctx.now())
    if editor is None:
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


def logout_response(request: Request, ctx: WebContext) -> Response:
    sid = getattr(request.state, "session_id", "")
    if sid:
        ctx.sessions.revoke(sid)
    response = ctx.pages.redirect("/login", "You are signed out.", secure=ctx.secure_cookies)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
