"""The composition root: Settings (already typed and checked) -> the values and objects the use cases take.

Used by the edges only (CLI, web, scheduler). Keeping this in one place means the CLI, the web app
and the scheduler build exactly the same edition setup, so a preview in the browser matches what
`briefing send` sends; `edition_setup_now` is the one way any of them adds the skip dates editors
keep in the database.

Each builder imports what it builds (the renderer, the mail pool, the feed poller) inside itself:
every command takes its clock from here, and one that never renders or sends should not load them.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from briefing.domain import Clock, ComposeOptions
from briefing.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    import sqlalchemy as sa

    from briefing import calendar as cal
    from briefing.config import Settings
    from briefing.feeds.poll import FeedPolicy
    from briefing.mail.dkim import DkimSigner
    from briefing.mail.pool import ConnectionPool
    from briefing.mail.returnpath import ReturnPath
    from briefing.mail.transport import MaildirTransport, MemoryTransport
    from briefing.service.bounces import BounceRules, PollReport
    from briefing.service.delivery import DeliveryPolicy
    from briefing.service.setup import EditionSetup, Mailing

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class SystemClock:
    """The real clock. Only the edges create one; everything below is handed a `Clock`."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, stop: threading.Event | None = None) -> bool:
        return (stop or threading.Event()).wait(max(0.0, seconds))


class PinnedClock(SystemClock):
    """Starts at a chosen instant and runs on at the real pace (BRIEFING_NOW: rehearsals and tests)."""

    def __init__(self, start: datetime) -> None:
        self._start = start.astimezone(UTC)
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin)


def clock(settings: Settings) -> Clock:
    """The process's clock: the real one, or the one BRIEFING_NOW pins to a chosen instant."""
    return PinnedClock(settings.now) if settings.now is not None else SystemClock()


def templates_dir(settings: Settings) -> Path:
    """The configured folder, relative to the working directory, else the one shipped with the project."""
    configured = Path(settings.templates_dir)
    if configured.is_dir():
        return configured.resolve()
    shipped = PACKAGE_ROOT / settings.templates_dir
    if shipped.is_dir():
        return shipped
    raise ConfigError(f"no templates folder at {configured}", field="BRIEFING_TEMPLATES_DIR")


def compose_options(settings: Settings) -> ComposeOptions:
    base = ComposeOptions()
    return replace(
        base,
        newsletter_name=settings.newsletter_name,
        site_name=settings.site_name,
        site_url=settings.site_url,
        section_order=settings.section_order,
        more_from_count=settings.more_from_count,
        more_from_exclude_editions=settings.more_from_exclude_editions,
        subject_template=settings.subject_template,
        preheader_template=settings.preheader_template,
        brand_colour=settings.brand_colour,
        accent_colour=settings.accent_colour,
        logo_url=settings.logo_url,
        web_url_template=settings.public_base_url.rstrip("/") + "/archive/{date}",
        subscribe_url=settings.public_base_url.rstrip("/") + "/subscribe",
        story_thumbnails=settings.story_thumbnails,
        tip_contact=settings.tip_contact,
        support_url=settings.support_url,
        partner_name=settings.partner_name,
        partner_text=settings.partner_text,
        partner_url=settings.partner_url,
        postal_address=settings.postal_address,
    )


def mailing(settings: Settings) -> Mailing:
    from briefing.service.setup import Mailing

    domain = settings.sender_address.rpartition("@")[2].lower()
    return Mailing(
        from_name=settings.sender_name or settings.newsletter_name,
        from_address=settings.sender_address,
        public_base_url=settings.public_base_url.rstrip("/"),
        list_id=settings.list_id or f"briefing.{domain}",
        unsubscribe_mailto=settings.unsubscribe_mailto or f"unsubscribe@{domain}",
        reply_to=settings.reply_to,
    )


def send_plan(settings: Settings, extra_skips: frozenset[date] | None = None) -> cal.SendPlan:
    """The calendar from settings; `extra_skips` are the dates editors skipped in the database."""
    from briefing import calendar as cal

    return cal.SendPlan(
        send_days=settings.send_days,
        send_time=settings.send_time,
        zone=settings.zone,
        skip_dates=settings.skip_dates | (extra_skips or frozenset()),
        max_lateness=settings.max_lateness,
    )


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    from briefing.service.delivery import DeliveryPolicy

    return DeliveryPolicy(
        workers=settings.smtp_pool_size,
        max_attempts=settings.max_attempts,
        backoff_base=settings.retry_backoff,
        resend_ambiguous=settings.ambiguous_policy == "resend",
        soft_bounce_limit=settings.soft_bounce_limit,
        breaker_rate=settings.bounce_breaker_rate,
        breaker_after=settings.bounce_breaker_after,
    )


def dkim_signer(settings: Settings) -> DkimSigner | None:
    from briefing.mail.dkim import DkimSigner

    if not settings.dkim_key_file:
        return None
    if not settings.dkim_selector or not settings.dkim_domain:
        raise ConfigError(
            "set BRIEFING_DKIM_SELECTOR and BRIEFING_DKIM_DOMAIN too", field="BRIEFING_DKIM_KEY_FILE"
        )
    try:
        key = Path(settings.dkim_key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the key: {exc.strerror}", field="BRIEFING_DKIM_KEY_FILE") from None
    return DkimSigner(key, settings.dkim_selector, settings.dkim_domain, settings.dkim_algorithm)


def return_path(settings: Settings) -> ReturnPath | None:
    """VERP return paths when BRIEFING_BOUNCE_ADDRESS is set; None keeps the From address as MAIL FROM."""
    from briefing.mail.returnpath import ReturnPath

    if not settings.bounce_address:
        return None
    try:
        return ReturnPath(settings.bounce_address, settings.secret_keys())
    except InvalidInput as exc:
        raise ConfigError(exc.message, field="BRIEFING_BOUNCE_ADDRESS") from None


def bounce_rules(settings: Settings) -> BounceRules:
    from briefing.service.bounces import BounceRules

    return BounceRules(soft_limit=settings.soft_bounce_limit, soft_window=settings.soft_bounce_window)


def poll_bounce_mailbox(
    settings: Settings, engine: sa.Engine, clock: Clock, *, limit: int = 1000
) -> PollReport:
    """One read of BRIEFING_BOUNCE_MAILBOX, for `briefing bounces poll` and the scheduler alike."""
    from briefing.mail.mailboxes import open_mailbox
    from briefing.service import bounces as bounce_service

    url = settings.bounce_mailbox.get_secret_value()
    if not url:
        raise ConfigError(
            "set it to maildir:///path, mbox:///path, imaps://user:pass@host/INBOX or pop3s://...",
            field="BRIEFING_BOUNCE_MAILBOX",
        )
    mailbox = open_mailbox(
        url, timeout=settings.smtp_timeout, ca_file=settings.bounce_mailbox_ca_file or None
    )
    return bounce_service.poll(
        engine,
        mailbox,
        return_path=return_path(settings),
        rules=bounce_rules(settings),
        clock=clock,
        limit=limit,
    )


def edition_setup(settings: Settings, extra_skips: frozenset[date] | None = None) -> EditionSetup:
    """Everything an edition needs, with only the skip dates given (see `edition_setup_now`)."""
    from briefing.edition.render import Renderer
    from briefing.links import LinkSigner
    from briefing.service.setup import EditionSetup, reaches_readers

    return EditionSetup(
        compose=compose_options(settings),
        renderer=Renderer(templates_dir(settings) / "email"),
        mailing=mailing(settings),
        signer=LinkSigner(settings.secret_keys()),
        plan=send_plan(settings, extra_skips),
        policy=delivery_policy(settings),
        dkim=dkim_signer(settings),
        min_stories=settings.min_stories,
        return_path=return_path(settings),
        smtputf8=settings.smtp_smtputf8,
        reaches_readers=reaches_readers(settings.smtp_url.get_secret_value()),
    )


def edition_setup_now(
    settings: Settings,
    engine: sa.Engine,
    *,
    base: EditionSetup | None = None,
    gate: AbstractContextManager[Any] | None = None,
) -> EditionSetup:
    """The edition setup as of now: settings plus the skip dates editors keep in the database.

    Editors may skip a date at any time (`briefing skip`), so every command, every scheduler job
    and every web request that decides on a date calls this rather than keeping a setup from
    start-up. A long-running edge passes the `base` it built once (the renderer, the signer), so
    only the calendar is rebuilt; the web app passes its `gate` so the read queues like its others.
    """
    skips = _skip_dates_now(engine, gate)
    if base is None:
        return edition_setup(settings, skips)
    return replace(base, plan=send_plan(settings, skips))


def send_plan_now(settings: Settings, engine: sa.Engine) -> cal.SendPlan:
    """The calendar as of now, the same one `edition_setup_now` builds, without the rest of the setup.

    For the commands that only ask about dates (`briefing status`, `calendar`): a monitor runs
    status every minute, and should not load the renderer, the link signer and the DKIM key to do it.
    """
    return send_plan(settings, _skip_dates_now(engine, None))


def _skip_dates_now(engine: sa.Engine, gate: AbstractContextManager[Any] | None) -> frozenset[date]:
    from sqlmodel import Session

    from briefing.store import schedule as schedule_store

    with gate if gate is not None else nullcontext(), Session(engine) as session:
        return schedule_store.skip_dates(session)


def transport(settings: Settings, clock: Clock) -> ConnectionPool | MaildirTransport | MemoryTransport:
    """The configured outgoing mail; the clock paces sends when BRIEFING_SMTP_RATE_LIMIT is set."""
    from briefing.mail.pool import open_transport

    return open_transport(
        settings.smtp_url.get_secret_value(),
        pool_size=settings.smtp_pool_size,
        timeout=settings.smtp_timeout,
        ca_file=settings.smtp_ca_file or None,
        rate_limit=settings.smtp_rate_limit,
        max_messages_per_connection=settings.smtp_messages_per_connection,
        clock=clock,
    )


def feed_policy(settings: Settings) -> FeedPolicy:
    from briefing.feeds.poll import DEFAULT_POLICY

    return replace(
        DEFAULT_POLICY,
        timeout=settings.feed_timeout,
        max_bytes=settings.feed_max_bytes,
        min_interval=settings.feed_min_interval,
        max_backoff=settings.feed_max_backoff,
        poll_budget=settings.feed_poll_budget,
    )
