"""Build the FastAPI app from Settings; `briefing serve` runs what `create_app` returns.

The engine, the mail transport and the clock can be passed in, so tests run the real app on a real
SQLite file and a real (loopback) SMTP server without patching anything. Security headers are set
here for every response; pages that show an email set their own, stricter CSP.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from briefing import wiring
from briefing.config import Rate, Settings
from briefing.db import make_engine, upgrade
from briefing.domain import Clock
from briefing.errors import ConfigError
from briefing.mail.transport import Transport
from briefing.service import editors as editor_service
from briefing.web import archive, auth, editions, errors, metrics, public, queue, subscribers, webhooks
from briefing.web.context import Limits, Pages, PreviewCache, WebContext
from briefing.web.proxies import TrustedProxies
from briefing.web.ratelimit import SlidingWindow
from briefing.web.sessions import SessionManager
from briefing.wiring import PACKAGE_ROOT, edition_setup, templates_dir
from briefing.wiring import transport as open_transport

log = logging.getLogger("briefing.web")

MAX_BODY = 1024 * 1024  # forms are small; refuse anything larger before parsing it
RETRY_JOIN_SECONDS = 10.0

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    # Signed links carry their token in the path: never hand it to another site in a Referer.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class _BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    """Security headers on every response (a handler's own CSP wins) and a cap on request bodies."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/api/"):
            # The API router enforces its own (configurable) body limit and sets its own headers.
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._too_large(send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge()
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                headers.extend((k, v) for k, v in SECURITY_HEADERS if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send)

    @staticmethod
    async def _too_large(send: Send) -> None:
        body = b"Request body too large."
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _limit(rate: Rate, clock: Clock) -> SlidingWindow:
    """A limit counted on the app's clock, so a test that moves the clock lets a window pass."""
    return SlidingWindow(rate, clock=clock.monotonic)


def _session_secret(settings: Settings) -> str:
    value = settings.session_secret.get_secret_value()
    if value:
        if value in settings.secret_keys():
            raise ConfigError(
                "must differ from BRIEFING_SECRET_KEY (a session must never be usable as a link token)",
                field="BRIEFING_SESSION_SECRET",
            )
        return value
    log.warning(
        "BRIEFING_SESSION_SECRET is not set: using a random key, so editors must sign in again "
        "whenever the server restarts"
    )
    return secrets.token_urlsafe(32)


def web_templates(settings: Settings) -> Path:
    """The configured templates folder's web/ pages, else the shipped ones.

    Operators who customise only the email templates keep a folder without web/ pages; the app
    then serves the pages that ship with briefing.
    """
    configured = templates_dir(settings) / "web"
    if configured.is_dir():
        return configured
    shipped = PACKAGE_ROOT / "templates" / "web"
    if shipped.is_dir():
        return shipped
    raise ConfigError(f"no web templates at {configured}", field="BRIEFING_TEMPLATES_DIR")


def build_context(
    settings: Settings,
    engine: sa.Engine,
    transport: Transport,
    clock: Clock,
    hasher: editor_service.Hasher = editor_service.DEFAULT_HASHER,
) -> WebContext:
    """Every setting the web app uses is read here, once, at start-up (config.py has checked them).

    `clock` is the app's one clock: request handlers, session and flash cookies, rate limits and
    the preview cache all read it, so a test that moves it moves all of them.
    """
    setup = edition_setup(settings)
    base_url = settings.public_base_url.rstrip("/")
    web_dir = web_templates(settings)
    session_secret = _session_secret(settings)
    session_age = settings.session_max_age
    pages = Pages(
        web_dir,
        {
            "newsletter_name": settings.newsletter_name,
            "site_name": settings.site_name,
            "site_url": settings.site_url,
            "postal_address": settings.postal_address,
        },
        settings.zone,
        session_secret,
        clock,
    )
    return WebContext(
        settings=settings,
        engine=engine,
        setup=setup,
        transport=transport,
        clock=clock,
        pages=pages,
        limits=Limits(
            subscribe_ip=_limit(settings.subscribe_rate_ip, clock),
            subscribe_address=_limit(settings.subscribe_rate_address, clock),
            login=_limit(settings.login_rate, clock),
            login_ip=_limit(settings.login_rate_ip, clock),
            login_account=_limit(settings.login_rate_account, clock),
        ),
        base_url=base_url,
        secure_cookies=base_url.startswith("https://"),
        confirm_max_age=settings.confirm_max_age,
        sessions=SessionManager(session_secret, session_age.total_seconds(), clock),
        session_max_age=session_age,
        web_dir=web_dir,
        previews=PreviewCache(clock),
        # Only SQLite needs this process's transactions in single file (see WebContext.gate).
        gate=threading.RLock() if engine.dialect.name == "sqlite" else contextlib.nullcontext(),
        hasher=hasher,
    )


def _optional_router(module_name: str) -> Any:
    """Another part of the project may add a router module; the app works with or without it."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return getattr(module, "router", None)


def create_app(
    settings: Settings,
    *,
    engine: sa.Engine | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    hasher: editor_service.Hasher | None = None,
) -> FastAPI:
    """The whole web app. Without an engine or transport it makes its own (and closes them on shutdown).

    `hasher` checks sign-in passwords (argon2 by default; a test may pass one it controls).
    """
    own_engine = engine is None
    clock = clock or wiring.clock(settings)
    if engine is None:
        engine = make_engine(settings.database_url)
        upgrade(engine, newsletter_name=settings.newsletter_name, now=clock.now())
    own_transport = transport is None
    mail: Transport = transport if transport is not None else open_transport(settings, clock)
    ctx = build_context(settings, engine, mail, clock, hasher or editor_service.DEFAULT_HASHER)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.stop.set()
        for thread in list(ctx.retries.values()):
            thread.join(RETRY_JOIN_SECONDS)
        if own_transport:
            mail.close()
        if own_engine:
            engine.dispose()

    app = FastAPI(
        title=settings.newsletter_name,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        # Starlette builds that redirect from the Host header; errors.py builds it from the base URL.
        redirect_slashes=False,
    )
    app.state.ctx = ctx
    # For routers that only need the engine, the settings and the clock (briefing.web.api).
    app.state.engine = engine
    app.state.settings = settings
    app.state.clock = ctx.clock
    errors.install(app)
    app.include_router(public.router)
    app.include_router(archive.router)
    app.include_router(auth.router)
    app.include_router(queue.router)
    app.include_router(editions.router)
    app.include_router(_optional_router("briefing.web.specials"))  # special editions: form, preview, send
    app.include_router(subscribers.router)
    app.include_router(webhooks.router)  # bounces and complaints from mail providers
    app.include_router(metrics.router)  # GET /metrics for Prometheus, off until a token is set
    api_router = _optional_router("briefing.web.api")
    if api_router is not None:
        app.include_router(api_router)
    static_dir = ctx.web_dir / "static"
    app.mount("/static", StaticFiles(directory=str(static_dir), check_dir=True), name="static")
    app.add_middleware(SecurityMiddleware)
    # Outermost, so everything inside sees the client a trusted proxy forwarded for.
    app.add_middleware(TrustedProxies, trusted=settings.trusted_proxies)
    return app
