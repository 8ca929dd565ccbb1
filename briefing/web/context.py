"""What every request handler shares: settings turned into plain values, the engine, the pages.

Built once by `create_app` and stored on `app.state`, so handlers take it as a dependency instead
of reading settings, and tests can pass their own engine, transport and clock.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Hashable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlmodel import Session

from briefing.config import Settings
from briefing.db import session_scope
from briefing.domain import Clock
from briefing.links import ClockedTimestampSigner, LinkSigner
from briefing.mail.transport import Transport
from briefing.newsletter import NewsletterData
from briefing.service import editions as edition_service
from briefing.service import editors as editor_service
from briefing.service.setup import EditionSetup
from briefing.store import newsletters as newsletter_store
from briefing.web.ratelimit import SlidingWindow
from briefing.web.sessions import SessionManager
from briefing.wiring import edition_setup_now

PREVIEW_TTL = 120.0  # seconds a rendered preview serves the frames of the page that rendered it
FLASH_COOKIE = "briefing_flash"
FLASH_MAX_AGE = 120


class PreviewCache:
    """The last preview per edition, so the preview page's two frames do not render it again.

    Keyed by whatever names one edition (newsletter, date, kind): two newsletters' previews of
    the same morning never stand in for each other.
    """

    def __init__(self, clock: Clock, ttl: float = PREVIEW_TTL) -> None:
        self._clock = clock
        self._ttl = ttl
        self._items: dict[Hashable, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def put(self, key: Hashable, html: str) -> None:
        now = self._clock.monotonic()
        with self._lock:
            self._items = {d: v for d, v in self._items.items() if now - v[0] < self._ttl}
            self._items[key] = (now, html)

    def get(self, key: Hashable) -> str | None:
        with self._lock:
            found = self._items.get(key)
        if found is None or self._clock.monotonic() - found[0] >= self._ttl:
            return None
        return found[1]


@dataclass
class Limits:
    subscribe_ip: SlidingWindow
    subscribe_address: SlidingWindow
    login: SlidingWindow
    login_ip: SlidingWindow
    # Failed sign-ins per account, whatever address they come from.
    login_account: SlidingWindow


@dataclass
class WebContext:
    settings: Settings
    engine: sa.Engine
    setup: EditionSetup
    transport: Transport
    clock: Clock
    pages: Pages
    limits: Limits
    base_url: str
    secure_cookies: bool
    confirm_max_age: timedelta
    sessions: SessionManager
    session_max_age: timedelta
    web_dir: Path
    previews: PreviewCache
    stop: threading.Event = field(default_factory=threading.Event)
    # Background "retry failed" sends, by edition id; one at a time per edition in this process.
    retries: dict[int, threading.Thread] = field(default_factory=dict)
    retry_lock: threading.Lock = field(default_factory=threading.Lock)
    # SQLite takes its write lock at BEGIN (briefing.db), and a thread that finds it taken sleeps in
    # SQLite's busy handler (1, 2, 5 ... 100 ms). Under load that backoff, not the work, sets the
    # pace; queueing this process's transactions on a lock instead keeps each one a millisecond.
    gate: AbstractContextManager[Any] = field(default_factory=threading.RLock)
    # Checks sign-in passwords (argon2); never called with the gate held.
    hasher: editor_service.Hasher = editor_service.DEFAULT_HASHER
    # Each newsletter's last setup, the base its next one is built from (see current_setup).
    setups: dict[int, EditionSetup] = field(default_factory=dict)
    setup_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def signer(self) -> LinkSigner:
        return self.setup.signer

    @property
    def zone(self) -> ZoneInfo:
        return self.settings.zone

    def now(self) -> datetime:
        return self.clock.now()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self.gate, Session(self.engine) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One unit of work, committed before the caller answers (so a 2xx is durable)."""
        with self.gate, session_scope(self.engine) as session:
            yield session

    @contextmanager
    def connecting(self) -> Iterator[sa.Connection]:
        """A Core connection in one transaction, for the hot paths where an ORM session costs too much."""
        with self.gate, self.engine.begin() as conn:
            yield conn

    def current_setup(self, newsletter: NewsletterData | None = None) -> EditionSetup:
        """A newsletter's setup (the first one's by default) with its values and skip dates as
        stored now: editors may edit a newsletter or skip a date at any time.

        The renderer and signer of each newsletter are built once and reused (`base`), so a
        request costs a read of the newsletter, not a new template environment.
        """
        wanted = newsletter.id if newsletter is not None else self.setup.newsletter.id
        with self.setup_lock:
            base = self.setups.get(wanted, self.setup)
        current = edition_setup_now(
            self.settings, self.engine, base=base, gate=self.gate, newsletter=newsletter or wanted
        )
        with self.setup_lock:
            self.setups[current.newsletter.id] = current
        return current

    def newsletters(self) -> list[NewsletterData]:
        with self.reading() as session:
            return newsletter_store.list_newsletters(session)

    def newsletter(self, slug: str) -> NewsletterData:
        """The newsletter a page or form names (`?newsletter=<slug>`); none named means the first.

        An unknown slug is NotFound naming the field, so the page answers 404, never 500.
        """
        with self.reading() as session:
            if not slug.strip():
                return newsletter_store.primary(session)
            return newsletter_store.get_by_slug(session, slug[:60])

    def next_edition(self, newsletter: NewsletterData | None = None) -> date:
        return edition_service.default_edition_date(self.current_setup(newsletter).plan, self.now())


class Pages:
    """Jinja pages with autoescape on; every value from the database reaches HTML escaped."""

    def __init__(
        self, directory: Path, globals_: Mapping[str, Any], zone: ZoneInfo, secret: str, clock: Clock
    ) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(directory)),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(globals_)
        self.env.globals["newsletter_url"] = newsletter_url
        self.env.filters["local"] = lambda moment, fmt="%Y-%m-%d %H:%M": (
            moment.astimezone(zone).strftime(fmt) if moment else ""
        )
        self.env.filters["local_input"] = lambda moment: (
            moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if moment else ""
        )
        self.env.filters["day_label"] = lambda day: f"{day:%A} {day.day} {day:%B %Y}" if day else ""
        # The one-time message's age is measured on the app's clock, like every other signed value.
        self._flash = URLSafeTimedSerializer(
            secret,
            salt="briefing-flash-v1",
            signer=ClockedTimestampSigner,
            signer_kwargs={"now": clock.now},
        )

    def render(
        self,
        request: Request,
        name: str,
        values: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        flash = self._read_flash(request)
        token = getattr(request.state, "csrf_token", "")
        context: dict[str, Any] = {
            "request_path": request.url.path,
            "editor": getattr(request.state, "editor", None),
            "csrf_field": Markup('<input type="hidden" name="csrf_token" value="{}">').format(token),
            "flash": flash,
            "error": None,
            "title": "",
        }
        context.update(values or {})
        body = self.env.get_template(name).render(context)
        response = HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response

    def redirect(
        self, url: str, message: str = "", *, kind: str = "ok", secure: bool = False
    ) -> RedirectResponse:
        """Post/redirect/get with a one-time message in a signed cookie (never in the URL)."""
        response = RedirectResponse(url, status_code=303)
        if message:
            response.set_cookie(
                FLASH_COOKIE,
                self._flash.dumps([kind, message[:2000]]),
                max_age=FLASH_MAX_AGE,
                path="/",
                httponly=True,
                samesite="lax",
                secure=secure,
            )
        return response

    def _read_flash(self, request: Request) -> dict[str, str] | None:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw:
            return None
        try:
            kind, message = self._flash.loads(raw, max_age=FLASH_MAX_AGE)
        except (BadSignature, ValueError, TypeError):
            return {"kind": "ok", "message": ""}  # still delete the cookie
        return {"kind": str(kind), "message": str(message)}


def newsletter_url(path: str, newsletter: NewsletterData | None, anchor: str = "", **params: str) -> str:
    """An editors' page of a newsletter. The first one's keep the addresses they had before there
    were several (no `newsletter=`), so bookmarks and the links in alerts still work."""
    query: dict[str, str] = {}
    if newsletter is not None and not newsletter.primary:
        query["newsletter"] = newsletter.slug
    query.update({k: v for k, v in params.items() if v})
    return f"{path}{'?' + urlencode(query) if query else ''}{anchor}"


def newsletter_choice(ctx: WebContext, newsletter: NewsletterData | None) -> dict[str, Any]:
    """What the newsletter select at the top of an editors' page and its forms' hidden field need."""
    choices = [(n, n.name or ctx.settings.newsletter_name) for n in ctx.newsletters()]
    return {
        "newsletter": newsletter,
        "newsletter_label": (newsletter.name or ctx.settings.newsletter_name) if newsletter else "",
        "newsletter_choices": choices,
        "newsletter_field": Markup('<input type="hidden" name="newsletter" value="{}">').format(
            newsletter.slug if newsletter else ""
        ),
    }


def get_ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


def client_ip(request: Request) -> str:
    """The peer address, or the client a trusted proxy forwarded for (see briefing.web.proxies)."""
    return request.client.host if request.client else "unknown"


def random_token() -> str:
    return secrets.token_urlsafe(32)


def mask_email(address: str) -> str:
    """ "a•••@example.com": enough for readers to recognise their address, not enough to harvest it."""
    local, _, domain = address.partition("@")
    if not domain:
        return "•••"
    return f"{local[:1]}•••@{domain}"
