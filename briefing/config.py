"""Settings from the environment and `.env` (prefix BRIEFING_).

Only the edges (CLI, web, scheduler) read settings; they pass plain values inward so that every
stage can be tested with explicit arguments. Every field here is listed in `.env.example`, and a
test keeps the two in step.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    # --- secrets
    secret_key: SecretStr = SecretStr("")
    secret_key_previous: SecretStr = SecretStr("")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
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

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secret_keys(self) -> list[str]:
        """Signing keys, oldest first, as itsdangerous expects for rotation."""
        keys = [self.secret_key_previous.get_secret_value(), self.secret_key.get_secret_value()]
        keys = [k for k in keys if k]
        if not keys:
            raise ConfigError(
                "no secret key: set BRIEFING_SECRET_KEY in the environment or .env "
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


_ = Field  # re-exported for modules that add fields with metadata
