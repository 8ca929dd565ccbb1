"""One place that turns every error into a clean page: the right status, a message, never a traceback.

Our own errors carry a field and a message written for people, so they are shown as they are.
Anything else (a bug, the database gone) becomes a generic page; the details go to the log only.
Paths under /api/ get JSON instead of HTML, for the programs that call them.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from briefing.errors import (
    BriefingError,
    ConfigError,
    Conflict,
    InvalidInput,
    LockHeld,
    NotFound,
    PreflightFailed,
    RenderError,
    SendPaused,
    TokenInvalid,
    TransportError,
)
from briefing.web.auth import Forbidden, LoginRequired, TooManyRequests, current_editor, login_url
from briefing.web.context import WebContext

log = logging.getLogger("briefing.web")

# Most specific first: TokenExpired is a TokenInvalid, AuthFailed a TransportError.
STATUS: tuple[tuple[type[BriefingError], int], ...] = (
    (TokenInvalid, 400),
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (PreflightFailed, 409),
    (LockHeld, 409),
    (TransportError, 503),
    (SendPaused, 503),
    (RenderError, 500),
    (ConfigError, 500),
)

TITLES = {
    400: "This did not work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not possible right now",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}

TOKEN_HELP = (
    "This link is not valid. It may have been copied incompletely from the email; "
    "try clicking it in the email again."
)


def status_for(exc: BriefingError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_page(
    request: Request, status: int, message: str, *, headers: dict[str, str] | None = None, field: str = ""
) -> Response:
    if wants_json(request):
        body: dict[str, Any] = {"error": message}
        if field:
            body["field"] = field
        return JSONResponse(body, status_code=status, headers=headers)
    ctx: WebContext | None = getattr(request.app.state, "ctx", None)
    title = TITLES.get(status, "This did not work")
    if ctx is None:
        return HTMLResponse(f"<h1>{title}</h1>", status_code=status, headers=headers)
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    return ctx.pages.render(
        request,
        "error.html",
        {"title": title, "status": status, "message": message},
        status_code=status,
        headers=all_headers,
    )


def slash_twin(request: Request) -> str | None:
    """The path with its trailing slash added or removed, when no route takes the path as sent
    but one takes that twin (the redirect Starlette would make, which is turned off in app.py)."""
    scope = request.scope
    path: str = scope["path"]
    if scope["type"] != "http" or path == "/":
        return None
    twin = path.rstrip("/") if path.endswith("/") else path + "/"
    routes = request.app.router.routes
    if not twin or any(route.matches(scope)[0] is not Match.NONE for route in routes):
        return None
    twin_scope = {**scope, "path": twin}
    if any(route.matches(twin_scope)[0] is not Match.NONE for route in routes):
        return twin
    return None


def slash_redirect(request: Request, twin: str) -> Response:
    """To the configured public address, never the Host header (which the client chooses)."""
    ctx: WebContext = request.app.state.ctx
    query = request.scope.get("query_string", b"").decode("latin-1")
    target = ctx.base_url + quote(twin, safe="/%:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")
    return RedirectResponse(target, status_code=307)


async def _know_editor(request: Request) -> None:
    """The editors' navigation on their error pages, too (read off the event loop)."""
    ctx: WebContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None or not request.url.path.startswith("/editor") or hasattr(request.state, "editor"):
        return
    try:
        await run_in_threadpool(current_editor, request, ctx)
    except sa.exc.SQLAlchemyError:
        request.state.editor = None


def install(app: FastAPI) -> None:
    @app.exception_handler(BriefingError)
    async def briefing_error(request: Request, exc: BriefingError) -> Response:
        status = status_for(exc)
        if isinstance(exc, TokenInvalid):
            message = TOKEN_HELP
        elif status >= 500:
            log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
            message = str(exc) if isinstance(exc, TransportError | SendPaused) else TITLES[500] + "."
        else:
            message = str(exc)
        await _know_editor(request)
        return error_page(request, status, message, field=exc.field or "")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.method in ("GET", "HEAD") and not wants_json(request):
            return RedirectResponse(login_url(request), status_code=303)
        return error_page(request, 401, "Please sign in first.")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        await _know_editor(request)
        return error_page(request, 403, exc.message)

    @app.exception_handler(TooManyRequests)
    async def too_many(request: Request, exc: TooManyRequests) -> Response:
        return error_page(request, 429, exc.message, headers={"Retry-After": str(max(1, exc.retry_after))})

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> Response:
        await _know_editor(request)
        if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
            # A path segment that cannot name a row (an id out of range, not a number) names no page.
            return error_page(request, 404, "There is no page at this address.")
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where}: {err.get('msg', 'invalid value')}" if where else str(err.get("msg")))
        return error_page(request, 400, "; ".join(problems) or "The request was not valid.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404:
            twin = slash_twin(request)
            if twin is not None and getattr(request.app.state, "ctx", None) is not None:
                return slash_redirect(request, twin)
            message = "There is no page at this address."
        elif exc.status_code == 405:
            message = "This address does not accept that kind of request."
        await _know_editor(request)
        return error_page(request, exc.status_code, message, headers=dict(exc.headers or {}))

    @app.exception_handler(sa.exc.OperationalError)
    async def database_trouble(request: Request, exc: sa.exc.OperationalError) -> Response:
        log.error("database error on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_page(request, 503, "The database is busy or unavailable. Please try again shortly.")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_page(request, 500, "Something went wrong on our side. Please try again later.")
