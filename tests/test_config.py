"""Settings: every one documented in .env.example, typed once from what operators write, bad values named."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from briefing.config import Rate, Settings, load_settings, parse_duration, parse_send_days
from briefing.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def _span(seconds: float) -> str:
    """A whole number of seconds in the largest unit that divides it: 3600 -> 1h."""
    whole = int(seconds)
    return next(f"{whole // size}{unit}" for unit, size in _UNITS if whole % size == 0)


def as_written(value: object) -> str:
    """A typed setting back in the form an operator writes it in .env (the inverse of config's parsers)."""
    if value is None:
        return ""
    if hasattr(value, "get_secret_value"):
        return str(value.get_secret_value())
    if isinstance(value, timedelta):
        return _span(value.total_seconds())
    if isinstance(value, Rate):
        return f"{value.limit}/{_span(value.window)}"
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, frozenset):
        return ",".join(sorted(d.isoformat() for d in value))
    if isinstance(value, tuple) and all(isinstance(d, int) for d in value) and value:
        days = [_DAY_NAMES[d] for d in value]
        contiguous = list(value) == list(range(value[0], value[-1] + 1))
        return f"{days[0]}-{days[-1]}" if contiguous and len(days) > 2 else ",".join(days)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def test_every_setting_is_in_env_example_with_its_default() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^#?\s*(BRIEFING_[A-Z0-9_]+)=(.*)$", text, flags=re.M))
    fields = {f"BRIEFING_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert sorted(documented) == sorted(fields)
    defaults = Settings.model_construct()
    for key in fields:
        value = getattr(defaults, key.removeprefix("BRIEFING_").lower())
        assert documented[key] == as_written(value), key
    # and what .env.example shows loads back to exactly the typed defaults
    shown = {k.removeprefix("BRIEFING_").lower(): v for k, v in documented.items()}
    assert load_settings(_env_file=None, **shown) == load_settings(_env_file=None)
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


def test_settings_are_typed_once_from_the_strings_operators_write(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "BRIEFING_MAX_LATENESS": "2h 30m",
        "BRIEFING_SESSION_MAX_AGE": "1d",
        "BRIEFING_LOGIN_RATE": "5/1m",
        "BRIEFING_SUBSCRIBE_RATE_ADDRESS": "3/1h",
        "BRIEFING_SEND_DAYS": "mon-fri",
        "BRIEFING_SEND_TIME": "6:30",
        "BRIEFING_SKIP_DATES": "2026-12-25, 2026-12-26",
        "BRIEFING_SECTION_ORDER": "Politics, Economy,,World",
    }.items():
        monkeypatch.setenv(name, value)
    s = load_settings(_env_file=None)
    assert s.max_lateness == timedelta(hours=2, minutes=30)
    assert s.session_max_age == timedelta(days=1)
    assert s.login_rate == Rate(5, 60.0) and s.subscribe_rate_address == Rate(3, 3600.0)
    assert s.send_days == (0, 1, 2, 3, 4)
    assert s.send_time == time(6, 30)
    assert s.skip_dates == frozenset({date(2026, 12, 25), date(2026, 12, 26)})
    assert s.section_order == ("Politics", "Economy", "World")


def test_typed_values_pass_through() -> None:
    s = load_settings(
        _env_file=None, max_lateness=timedelta(hours=1), send_days=(4, 0), login_rate=Rate(2, 30.0)
    )
    assert s.max_lateness == timedelta(hours=1)
    assert s.send_days == (0, 4)
    assert s.login_rate == Rate(2, 30.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_lateness", "soon", "BRIEFING_MAX_LATENESS: not a duration: 'soon'"),
        ("preflight_lead", "3 hours", "BRIEFING_PREFLIGHT_LEAD: not a duration"),
        ("feed_poll_every", "", "BRIEFING_FEED_POLL_EVERY: not a duration"),
        ("confirm_max_age", timedelta(-1), "BRIEFING_CONFIRM_MAX_AGE: not a duration"),
        ("login_rate", "5/x", "BRIEFING_LOGIN_RATE: not a rate: '5/x'"),
        (
            "subscribe_rate_ip",
            "0/1m",
            "BRIEFING_SUBSCRIBE_RATE_IP: the count and the period must be positive",
        ),
        ("send_days", "mon-fry", "BRIEFING_SEND_DAYS: unknown day"),
        ("send_days", (7,), "BRIEFING_SEND_DAYS: send days must be weekday numbers"),
        ("send_time", "25:00", "BRIEFING_SEND_TIME: not a time of day"),
        ("skip_dates", "2026-12-25,25/12/2026", "BRIEFING_SKIP_DATES: '25/12/2026' is not a date"),
    ],
)
def test_a_bad_value_fails_naming_the_setting(name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(_env_file=None, **{name: value})


def test_a_bad_value_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIEFING_SKIP_DATES", "Christmas")
    with pytest.raises(ConfigError, match="BRIEFING_SKIP_DATES: 'Christmas' is not a date"):
        load_settings(_env_file=None)


def test_the_messages_per_connection_limit_reaches_the_smtp_pool() -> None:
    from briefing.mail.pool import ConnectionPool
    from briefing.wiring import transport
    from tests.fixtures.clock import ManualClock

    settings = Settings(smtp_url="smtp://127.0.0.1:2525", smtp_messages_per_connection=90)  # type: ignore[arg-type]
    pool = transport(settings, ManualClock(datetime(2030, 1, 7, 6, 0, tzinfo=UTC)))
    try:
        assert isinstance(pool, ConnectionPool)
        assert pool.max_messages_per_connection == 90
    finally:
        pool.close()
