"""Settings from the environment and `.env` (prefix BRIEFING_), typed and checked once, here.

Operators write durations, rates, days and dates the way people do ("3h", "5/1m", "mon-fri",
"2026-12-25"); this module parses each one as the settings load and fails naming the variable, so
the rest of the project gets `timedelta`, `Rate`, `time` and date sets and never parses again.
Only the edges (CLI, web, scheduler) read settings; they pass plain values inward so that every
stage can be tested with explicit arguments. Every field here is listed in `.env.example`, and a
test keeps the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from briefing.calendar import parse_local_time
from briefing.errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_duration(value: str) -> timedelta:
    """Read "3h", "90m", "1d 2h" or a number of seconds; editors do not write ISO 8601."""
    text = value.strip().lower()
    if text.isdigit():
        return timedelta(seconds=int(text))
    match = _DURATION_RE.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"not a duration: {value!r} (write for example 3h, 90m or 1d 2h)")
    d, h, m, s = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


def parse_dates(value: str) -> frozenset[date]:
    """A comma-separated list of YYYY-MM-DD dates (holidays with no edition)."""
    found: set[date] = set()
    for part in value.replace(" ", "").split(","):
        if not part:
            continue
        try:
            found.add(date.fromisoformat(part))
        except ValueError:
            raise ValueError(f"{part!r} is not a date; write YYYY-MM-DD") from None
    return frozenset(found)


def parse_names(value: str) -> tuple[str, ...]:
    """A comma-separated list of names (sections), blanks dropped, in the order written."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` events per `window` seconds (a rate limit as operators write it: 5/1m)."""

    limit: int
    window: float  # seconds

    def __str__(self) -> str:
        return f"{self.limit} per {self.window:.0f} s"


def parse_rate(value: str, *, field: str = "") -> Rate:
    """Read "5/1m" or "3/1h" (count / duration); settings are typed by operators, not programmers."""
    prefix = f"{field}: " if field else ""
    count, sep, span = value.partition("/")
    try:
        limit = int(count.strip())
        window = parse_duration(span).total_seconds() if sep else 0.0
    except ValueError:
        raise ValueError(f"{prefix}not a rate: {value!r} (write a limit like 5/1m or 3/1h)") from None
    if limit < 1 or window <= 0:
        raise ValueError(f"{prefix}the count and the period must be positive (got {value!r})")
    return Rate(limit, window)


def parse_send_days(value: str) -> tuple[int, ...]:
    """Turn "mon-fri" or "mon,wed,fri" into weekday numbers (Monday = 0), as zoneinfo dates use."""
    days: set[int] = set()
    for part in value.lower().replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            start, _, end = part.partition("-")
            if start not in _DAYS or end not in _DAYS:
                raise ValueError(f"unknown day in {part!r} (use mon, tue, wed, thu, fri, sat, sun)")
            a, b = _DAYS.index(start), _DAYS.index(end)
            if a > b:
                raise ValueError(f"day range {part!r} runs backwards")
            days.update(range(a, b + 1))
        elif part in _DAYS:
            days.add(_DAYS.index(part))
        else:
            raise ValueError(f"unknown day {part!r} (use mon, tue, wed, thu, fri, sat, sun)")
    if not days:
        raise ValueError("no send days given")
    return tuple(sorted(days))


_DURATION_SETTINGS = (
    "max_lateness",
    "preflight_lead",
    "retry_backoff",
    "feed_min_interval",
    "feed_max_backoff",
    "feed_poll_every",
    "session_max_age",
    "confirm_max_age",
    "soft_bounce_window",
    "bounce_poll_every",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIEFING_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- storage
    database_url: str = "sqlite:///briefing.db"

    # --- identity of the newsletter
    newsletter_name: str = "The Morning Briefing"
    site_name: str = "Example News"
    site_url: str = "https://news.example.com"
    public_base_url: str = "http://127.0.0.1:8000"
    sender_address: str = "briefing@news.example.com"
    sender_name: str = ""
    reply_to: str = ""
    list_id: str = ""
    unsubscribe_mailto: str = ""

    # --- time
    timezone: str = "Europe/London"
    now: datetime | None = None  # pins the clock for rehearsals and tests; never set it in production

    # --- secrets
    secret_key: SecretStr = SecretStr("")
    secret_key_previous: SecretStr = SecretStr("")

    # --- the edition's content and look
    templates_dir: str = "templates"
    section_order: Annotated[tuple[str, ...], NoDecode] = ()
    more_from_count: int = Field(default=5, ge=0, le=20)
    more_from_exclude_editions: int = Field(default=3, ge=0, le=30)
    subject_template: str = "{lead} | {newsletter}"
    preheader_template: str = "Also today: {also}"
    brand_colour: str = "#14213d"
    accent_colour: str = "#b3261e"
    logo_url: str = ""
    story_thumbnails: bool = False  # images next to non-lead stories, not only the lead's
    tip_contact: str = ""
    support_url: str = ""
    partner_name: str = ""
    partner_text: str = ""
    partner_url: str = ""
    postal_address: str = ""

    # --- the web app
    session_secret: SecretStr = SecretStr("")
    session_max_age: timedelta = timedelta(hours=12)
    confirm_max_age: timedelta = timedelta(days=7)
    subscribe_rate_ip: Annotated[Rate, NoDecode] = Rate(5, 60.0)
    subscribe_rate_address: Annotated[Rate, NoDecode] = Rate(3, 3600.0)
    login_rate: Annotated[Rate, NoDecode] = Rate(5, 60.0)
    login_rate_ip: Annotated[Rate, NoDecode] = Rate(30, 60.0)
    # Failed sign-ins per account from anywhere: guessing from many addresses still stops.
    login_rate_account: Annotated[Rate, NoDecode] = Rate(10, 900.0)
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or CIDRs); none by default.
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = ()

    # --- feeds and the CMS push API
    feed_timeout: float = Field(default=10.0, gt=0, le=300)
    # Seconds the feeds polled before a send (and each scheduled round) may take; then the send goes on.
    feed_poll_budget: float = Field(default=30.0, gt=0, le=3600)
    feed_max_bytes: int = Field(default=5_000_000, ge=10_000)
    feed_min_interval: timedelta = timedelta(minutes=10)
    feed_max_backoff: timedelta = timedelta(hours=6)
    feed_poll_every: timedelta = timedelta(minutes=15)
    api_max_body_bytes: int = Field(default=1_000_000, ge=1_000)
    min_stories: int = Field(default=0, ge=0, le=50)

    # --- outgoing mail
    smtp_url: SecretStr = SecretStr("smtp://127.0.0.1:1025")
    smtp_pool_size: int = Field(default=2, ge=1, le=64)
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_rate_limit: float = Field(default=0.0, ge=0)
    smtp_messages_per_connection: int = Field(default=0, ge=0)
    smtp_ca_file: str = ""
    # Whether the relay takes SMTPUTF8 (non-ASCII before the @); addresses that need it are refused if not.
    smtp_smtputf8: bool = False
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_algorithm: str = "rsa-sha256"

    # --- delivery
    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_backoff: timedelta = timedelta(minutes=1)
    ambiguous_policy: str = "resend"
    soft_bounce_limit: int = Field(default=3, ge=1, le=50)
    # Soft bounces that came back by mail count within this window (a delivered copy resets them).
    soft_bounce_window: timedelta = timedelta(days=30)
    # VERP return paths (bounces+<token>@...) when set; bounces then name the copy they are about.
    bounce_address: str = ""
    # Where bounces arrive for `briefing bounces poll`: maildir:///, mbox:///, imaps:// or pop3s://.
    bounce_mailbox: SecretStr = SecretStr("")
    # PEM CA certificates the imaps:// or pop3s:// bounce mailbox's certificate must chain to (a
    # newsroom's own CA); empty: the system's trust store. Certificates are always verified.
    bounce_mailbox_ca_file: str = ""
    # How often `briefing schedule` reads the bounce mailbox, when one is set.
    bounce_poll_every: timedelta = timedelta(minutes=5)
    # A send halts (until `briefing send --resume`) when more than this share of the recipients
    # tried bounced hard, once BOUNCE_BREAKER_AFTER were tried: a bad list was probably imported.
    bounce_breaker_rate: float = Field(default=0.05, ge=0, le=1)
    bounce_breaker_after: int = Field(default=500, ge=1)
    # `briefing status` is unhealthy when the last edition sent passes these shares of its copies
    # sent (0.001 is 0.1%, what Gmail asks for complaints).
    max_complaint_rate: float = Field(default=0.001, ge=0, le=1)
    max_hard_bounce_rate: float = Field(default=0.02, ge=0, le=1)
    # Providers' bounce and complaint webhooks (POST /api/webhooks/...): each is off until set.
    ses_topic_arns: str = ""  # SNS topics (comma-separated ARNs) whose SES notifications are believed
    mailgun_signing_key: SecretStr = SecretStr("")
    postmark_webhook_user: str = ""
    postmark_webhook_password: SecretStr = SecretStr("")
    sendgrid_webhook_public_key: str = ""  # the verification key SendGrid shows (base64), or PEM

    # --- schedule
    send_days: Annotated[tuple[int, ...], NoDecode] = (0, 1, 2, 3, 4)
    send_time: time = time(6, 0)
    skip_dates: Annotated[frozenset[date], NoDecode] = frozenset()
    max_lateness: timedelta = timedelta(hours=3)
    preflight_lead: timedelta = timedelta(minutes=30)
    alert_email: str = ""
    # GET /metrics (Prometheus text) answers only requests with "Authorization: Bearer <this>";
    # unset, the endpoint is off (404).
    metrics_token: SecretStr = SecretStr("")

    # Each "before" validator turns the text an operator wrote into the typed value; a value that is
    # already typed (a test, `demo.py`) passes through to pydantic's own check of the type.

    @field_validator(*_DURATION_SETTINGS, mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator(
        "subscribe_rate_ip",
        "subscribe_rate_address",
        "login_rate",
        "login_rate_ip",
        "login_rate_account",
        mode="before",
    )
    @classmethod
    def _rate(cls, value: object) -> object:
        return parse_rate(value) if isinstance(value, str) else value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        networks = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            try:
                networks.append(ip_network(part, strict=False))
            except ValueError:
                raise ValueError(
                    f"not an IP address or network: {part[:60]!r} (write 10.0.0.5 or 10.0.0.0/24)"
                ) from None
        return tuple(networks)

    @field_validator("send_days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        return parse_send_days(value) if isinstance(value, str) else value

    @field_validator("send_days")
    @classmethod
    def _weekdays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 0 <= d <= 6 for d in value):
            raise ValueError("send days must be weekday numbers 0-6 (Monday = 0)")
        return tuple(sorted(set(value)))

    @field_validator("send_time", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        return parse_local_time(value) if isinstance(value, str) else value

    @field_validator("skip_dates", mode="before")
    @classmethod
    def _skip(cls, value: object) -> object:
        return parse_dates(value) if isinstance(value, str) else value

    @field_validator("section_order", mode="before")
    @classmethod
    def _sections(cls, value: object) -> object:
        return parse_names(value) if isinstance(value, str) else value

    @field_validator(*_DURATION_SETTINGS)
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"not a duration: {value} is negative")
        return value

    @field_validator("ambiguous_policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        if value not in ("resend", "report"):
            raise ValueError("must be resend or report")
        return value

    @field_validator("dkim_algorithm")
    @classmethod
    def _dkim_algorithm(cls, value: str) -> str:
        if value not in ("rsa-sha256", "ed25519-sha256"):
            raise ValueError("must be rsa-sha256 or ed25519-sha256")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/London)"
            ) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("database_url must start with sqlite:/// or postgresql+psycopg://")
        return value

    @field_validator("now", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, for example 2026-11-30T06:00:00+00:00")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secret_keys(self) -> list[str]:
        """Signing keys, oldest first, as itsdangerous expects for rotation."""
        keys = [self.secret_key_previous.get_secret_value(), self.secret_key.get_secret_value()]
        keys = [k for k in keys if k]
        if not keys:
            raise ConfigError(
                "no secret key: run `briefing init` to write a fresh one to .env, or set "
                "BRIEFING_SECRET_KEY in the environment "
                '(for example: python -c "import secrets; print(secrets.token_urlsafe(32))")',
                field="BRIEFING_SECRET_KEY",
            )
        return keys


def _field_label(loc: tuple[object, ...]) -> str:
    return "BRIEFING_" + "_".join(str(p) for p in loc).upper() if loc else "settings"


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning pydantic's report into one ConfigError that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(message, field=_field_label(tuple(first.get("loc", ())))) from None
