"""Settings: every one documented in .env.example, bad values named."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from briefing.config import Settings, load_settings, parse_duration, parse_send_days
from briefing.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_env_example_with_its_default() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^#?\s*(BRIEFING_[A-Z0-9_]+)=(.*)$", text, flags=re.M))
    fields = {f"BRIEFING_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert sorted(documented) == sorted(fields)
    defaults = Settings.model_construct()
    for key in fields:
        value = getattr(defaults, key.removeprefix("BRIEFING_").lower())
        shown = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        assert documented[key] == ("" if shown is None else str(shown)), key
    for key in fields:  # each has a comment line right above it
        assert re.search(rf"^# .+\n#?\s*{key}=", text, flags=re.M), key


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(ConfigError, match="BRIEFING_TIMEZONE: unknown time zone 'Europe/Lundun'"):
        load_settings(timezone="Europe/Lundun", _env_file=None)


def test_secrets_do_not_show_in_repr() -> None:
    s = load_settings(secret_key="s3cret-value", _env_file=None)
    assert "s3cret-value" not in repr(s) and "s3cret-value" not in str(s)


def test_missing_secret_key_says_how_to_make_one() -> None:
    with pytest.raises(ConfigError, match="BRIEFING_SECRET_KEY"):
        load_settings(secret_key="", _env_file=None).secret_keys()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3h", timedelta(hours=3)),
        ("90m", timedelta(minutes=90)),
        ("1d 2h", timedelta(days=1, hours=2)),
        ("45", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "soon", "3 hours", "h"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_send_days() -> None:
    assert parse_send_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_send_days("sun, wed") == (2, 6)
    with pytest.raises(ValueError, match="unknown day"):
        parse_send_days("mon-fry")
