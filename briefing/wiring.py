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
from briefing.newsletter import STANDING_KEYS, NewsletterData

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


def newsletter_name(settings: Settings, newsletter: NewsletterData | None) -> str:
    return (newsletter.name if newsletter else "") or settings.newsletter_name


def compose_options(settings: Settings, newsletter: NewsletterData | None = None) -> ComposeOptions:
    """The look and words of a newsletter's editions: its own values, the settings where it has none."""
    n = newsletter or NewsletterData(id=1, slug="")
    public = settings.public_base_url.rstrip("/")
    if newsletter is None:
        web_url, subscribe = public + "/archive/{date}", public + "/subscribe"
    else:
        web_url = f"{public}/archive/{n.slug}/{{date}}" if n.on_web else ""
        subscribe = f"{public}/subscribe/{n.slug}"
    base = ComposeOptions()
    options = replace(
        base,
        newsletter_name=newsletter_name(settings, newsletter),
        site_name=settings.site_name,
        site_url=settings.site_url,
        section_order=n.section_order or settings.section_order,
        more_from_count=settings.more_from_count,
        more_from_exclude_editions=settings.more_from_exclude_editions,
        subject_template=settings.subject_template,
        preheader_template=settings.preheader_template,
        brand_colour=n.brand_colour or settings.brand_colour,
        accent_colour=n.accent_colour or settings.accent_colour,
        logo_url=n.logo_url or settings.logo_url,
        web_url_template=web_url,
        subscribe_url=subscribe,
        story_thumbnails=settings.story_thumbnails,
        tip_contact=settings.tip_contact,
        support_url=settings.support_url,
        partner_name=settings.partner_name,
        partner_text=settings.partner_text,
        partner_url=settings.partner_url,
        postal_address=settings.postal_address,
    )
    own = {k: v for k, v in n.standing.items() if k in STANDING_KEYS and v}
    return replace(options, **own) if own else options  # type: ignore[arg-type]


def mailing(settings: Settings, newsletter: NewsletterData | None = None) -> Mailing:
    """Who a newsletter's mail is from; each has its own List-Id, so readers can filter each one."""
    from briefing.service.setup import Mailing

    n = newsletter or NewsletterData(id=1, slug="")
    address = n.sender_address or settings.sender_address
    domain = address.rpartition("@")[2].lower()
    if n.list_id:
        list_id = n.list_id
    elif n.primary:
        list_id = settings.list_id or f"briefing.{domain}"
    else:
        list_id = f"{n.slug}.{domain}"
    return Mailing(
        from_name=n.sender_name or settings.sender_name or newsletter_name(settings, newsletter),
        from_address=address,
        public_base_url=settings.public_base_url.rstrip("/"),
        list_id=list_id,
        unsubscribe_mailto=settings.unsubscribe_mailto or f"unsubscribe@{domain}",
        reply_to=n.reply_to or settings.reply_to,
    )


def send_plan(
    settings: Settings, extra_skips: frozenset[date] | None = None, newsletter: NewsletterData | None = None
) -> cal.SendPlan:
    """A newsletter's calendar; `extra_skips` are the dates editors skipped in the database."""
    from zoneinfo import ZoneInfo

    from briefing import calendar as cal
    from briefing.config import parse_send_days

    n = newsletter or NewsletterData(id=1, slug="")
    try:
        days = parse_send_days(n.send_days) if n.send_days else settings.send_days
        at = cal.parse_local_time(n.send_time) if n.send_time else settings.send_time
        zone = ZoneInfo(n.timezone) if n.timezone else settings.zone
    except (ValueError, KeyError) as exc:  # stored values were checked when written; say which
        raise ConfigError(f"newsletter {n.slug}: {exc}", field="newsletter") from None
    return cal.SendPlan(
        send_days=days,
        send_time=at,
        zone=zone,
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


def edition_setup(
    settings: Settings, extra_skips: frozenset[date] | None = None, newsletter: NewsletterData | None = None
) -> EditionSetup:
    """Everything a newsletter's edition needs, with only the skip dates given (see `edition_setup_now`)."""
    from briefing.edition.render import Renderer
    from briefing.links import LinkSigner
    from briefing.service.setup import EditionSetup, reaches_readers

    email_templates = templates_dir(settings) / "email"
    if newsletter is not None and newsletter.template_set:
        email_templates = email_templates / newsletter.template_set
        if not email_templates.is_dir():
            raise ConfigError(
                f"no template set {newsletter.template_set!r} at {email_templates}", field="newsletter"
            )
    extra: dict[str, Any] = {"newsletter": newsletter} if newsletter is not None else {}
    return EditionSetup(
        compose=compose_options(settings, newsletter),
        renderer=Renderer(email_templates),
        mailing=mailing(settings, newsletter),
        signer=LinkSigner(settings.secret_keys()),
        plan=send_plan(settings, extra_skips, newsletter),
        policy=delivery_policy(settings),
        dkim=dkim_signer(settings),
        min_stories=settings.min_stories,
        return_path=return_path(settings),
        smtputf8=settings.smtp_smtputf8,
        reaches_readers=reaches_readers(settings.smtp_url.get_secret_value()),
        **extra,
    )


def edition_setup_now(
    settings: Settings,
    engine: sa.Engine,
    *,
    base: EditionSetup | None = None,
    gate: AbstractContextManager[Any] | None = None,
    newsletter: NewsletterData | int | None = None,
) -> EditionSetup:
    """A newsletter's edition setup as of now: settings, its stored values, and the skip dates.

    Editors may skip a date or edit a newsletter at any time, so every command, every scheduler
    job and every web request that decides on a date calls this rather than keeping a setup from
    start-up. A long-running edge passes the `base` it built once (the renderer, the signer), so
    only the newsletter's values and calendar are rebuilt; the web app passes its `gate` so the
    read queues like its others. No `newsletter` means the first one; the one given is read afresh.
    """
    skips, current = _state_now(
        engine, gate, newsletter if newsletter is not None else (base.newsletter.id if base else None)
    )
    if (
        base is None
        or base.newsletter.template_set != current.template_set
        or base.newsletter.id != current.id
    ):
        return edition_setup(settings, skips, current)
    return replace(
        base,
        newsletter=current,
        compose=compose_options(settings, current),
        mailing=mailing(settings, current),
        plan=send_plan(settings, skips, current),
    )


def send_plan_now(
    settings: Settings, engine: sa.Engine, newsletter: NewsletterData | int | None = None
) -> cal.SendPlan:
    """A newsletter's calendar as of now, as `edition_setup_now` builds it, without the rest of the setup.

    For the commands that only ask about dates (`briefing status`, `calendar`): a monitor runs
    status every minute, and should not load the renderer, the link signer and the DKIM key to do it.
    """
    skips, current = _state_now(engine, None, newsletter)
    return send_plan(settings, skips, current)


def newsletters_now(engine: sa.Engine, *, include_paused: bool = True) -> list[NewsletterData]:
    from sqlmodel import Session

    from briefing.store import newsletters as newsletter_store

    with Session(engine) as session:
        return newsletter_store.list_newsletters(session, include_paused=include_paused)


def _state_now(
    engine: sa.Engine, gate: AbstractContextManager[Any] | None, newsletter: NewsletterData | int | None
) -> tuple[frozenset[date], NewsletterData]:
    from sqlmodel import Session

    from briefing.newsletter import PRIMARY_ID
    from briefing.store import newsletters as newsletter_store
    from briefing.store import schedule as schedule_store

    wanted = newsletter.id if isinstance(newsletter, NewsletterData) else (newsletter or PRIMARY_ID)
    with gate if gate is not None else nullcontext(), Session(engine) as session:
        return schedule_store.skip_dates(session), newsletter_store.get_newsletter(session, wanted)


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
