"""Send times across DST changes, skip dates and the lateness window.

Expected UTC values are written out by hand from the published rules, not computed with zoneinfo,
so that a bug shared by the code and the test cannot cancel out:

* Europe/London 2026: BST starts Sun 29 March at 01:00 UTC (01:00 GMT -> 02:00 BST) and ends
  Sun 25 October at 01:00 UTC (02:00 BST -> 01:00 GMT).
* America/New_York 2026: EDT starts Sun 8 March at 07:00 UTC (02:00 EST -> 03:00 EDT) and ends
  Sun 1 November at 06:00 UTC (02:00 EDT -> 01:00 EST).
* Australia/Lord_Howe 2026 (+10:30 standard, +11:00 summer): summer time ends Sun 5 April at
  02:00 +11:00 (-> 01:30 +10:30) and starts Sun 4 October at 02:00 +10:30 (-> 02:30 +11:00).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from briefing.calendar import (
    SendPlan,
    decide,
    is_send_day,
    latest_send_time,
    next_send_times,
    parse_local_time,
    previous_send_time,
    send_time_for,
)

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
WEEKDAYS = (0, 1, 2, 3, 4)
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def plan(zone: ZoneInfo, hhmm: str, days: tuple[int, ...] = WEEKDAYS, **kw: object) -> SendPlan:
    return SendPlan(send_days=days, send_time=parse_local_time(hhmm), zone=zone, **kw)  # type: ignore[arg-type]


def pairs(after: str, p: SendPlan, n: int) -> list[tuple[date, datetime]]:
    return [(s.edition_date, s.utc) for s in next_send_times(utc(after), p, n)]


# --- Europe/London -----------------------------------------------------------------------------


def test_london_0600_weekdays_across_spring_forward() -> None:
    got = pairs("2026-03-26T12:00", plan(LONDON, "06:00"), 4)
    assert got == [
        (date(2026, 3, 27), utc("2026-03-27T06:00")),  # Fri, GMT
        (date(2026, 3, 30), utc("2026-03-30T05:00")),  # Mon, BST; weekend skipped
        (date(2026, 3, 31), utc("2026-03-31T05:00")),
        (date(2026, 4, 1), utc("2026-04-01T05:00")),
    ]


def test_london_0600_weekdays_across_fall_back() -> None:
    got = pairs("2026-10-22T12:00", plan(LONDON, "06:00"), 3)
    assert got == [
        (date(2026, 10, 23), utc("2026-10-23T05:00")),  # Fri, BST
        (date(2026, 10, 26), utc("2026-10-26T06:00")),  # Mon, GMT
        (date(2026, 10, 27), utc("2026-10-27T06:00")),
    ]


def test_london_0130_in_the_spring_gap_fires_when_the_gap_ends() -> None:
    sends = next_send_times(utc("2026-03-27T12:00"), plan(LONDON, "01:30", EVERY_DAY), 3)
    assert [(s.edition_date, s.utc) for s in sends] == [
        (date(2026, 3, 28), utc("2026-03-28T01:30")),  # Sat 01:30 GMT
        (date(2026, 3, 29), utc("2026-03-29T01:00")),  # Sun: 01:30 does not exist -> 02:00 BST
        (date(2026, 3, 30), utc("2026-03-30T00:30")),  # Mon 01:30 BST
    ]
    gap = sends[1].local
    assert (gap.hour, gap.minute, gap.utcoffset()) == (2, 0, timedelta(hours=1))


def test_london_0130_in_the_repeated_hour_fires_once_at_the_first() -> None:
    sends = next_send_times(utc("2026-10-23T12:00"), plan(LONDON, "01:30", EVERY_DAY), 3)
    assert [(s.edition_date, s.utc) for s in sends] == [
        (date(2026, 10, 24), utc("2026-10-24T00:30")),  # Sat 01:30 BST
        (date(2026, 10, 25), utc("2026-10-25T00:30")),  # Sun: first 01:30 (BST), not 01:30Z
        (date(2026, 10, 26), utc("2026-10-26T01:30")),  # Mon 01:30 GMT
    ]
    assert sends[1].local.fold == 0
    assert sends[1].local.utcoffset() == timedelta(hours=1)


def test_no_second_fire_between_the_two_occurrences() -> None:
    # Right after the first 01:30 on 25 October the next send is Monday's, not the repeat.
    p = plan(LONDON, "01:30", EVERY_DAY)
    (nxt,) = next_send_times(utc("2026-10-25T00:30"), p, 1)
    assert nxt.edition_date == date(2026, 10, 26)


def test_skip_dates_and_weekends_are_excluded() -> None:
    p = plan(LONDON, "06:00", skip_dates=frozenset({date(2026, 12, 25), date(2026, 12, 28)}))
    got = [d for d, _ in pairs("2026-12-23T12:00", p, 3)]
    assert got == [date(2026, 12, 24), date(2026, 12, 29), date(2026, 12, 30)]
    assert not is_send_day(date(2026, 12, 25), p)
    assert not is_send_day(date(2026, 12, 26), p)  # Saturday
    assert is_send_day(date(2026, 12, 24), p)


def test_after_is_exclusive() -> None:
    p = plan(LONDON, "06:00")
    (first,) = next_send_times(utc("2026-03-30T05:00"), p, 1)
    assert first.edition_date == date(2026, 3, 31)
    (first,) = next_send_times(utc("2026-03-30T04:59:59"), p, 1)
    assert first.edition_date == date(2026, 3, 30)


# --- America/New_York -------------------------------------------------------------------------


def test_new_york_0230_in_the_spring_gap() -> None:
    got = pairs("2026-03-06T12:00", plan(NEW_YORK, "02:30", EVERY_DAY), 3)
    assert got == [
        (date(2026, 3, 7), utc("2026-03-07T07:30")),  # Sat 02:30 EST
        (date(2026, 3, 8), utc("2026-03-08T07:00")),  # Sun: gap -> 03:00 EDT
        (date(2026, 3, 9), utc("2026-03-09T06:30")),  # Mon 02:30 EDT
    ]


def test_new_york_0130_in_the_repeated_hour() -> None:
    got = pairs("2026-10-30T12:00", plan(NEW_YORK, "01:30", EVERY_DAY), 3)
    assert got == [
        (date(2026, 10, 31), utc("2026-10-31T05:30")),
        (date(2026, 11, 1), utc("2026-11-01T05:30")),  # first 01:30 (EDT)
        (date(2026, 11, 2), utc("2026-11-02T06:30")),  # 01:30 EST
    ]


def test_new_york_0600_weekdays() -> None:
    got = pairs("2026-03-05T12:00", plan(NEW_YORK, "06:00"), 2)
    assert got == [(date(2026, 3, 6), utc("2026-03-06T11:00")), (date(2026, 3, 9), utc("2026-03-09T10:00"))]


# --- Australia/Lord_Howe (30-minute shift) ----------------------------------------------------


def test_lord_howe_half_hour_gap() -> None:
    sends = next_send_times(utc("2026-10-02T00:00"), plan(LORD_HOWE, "02:15", EVERY_DAY), 3)
    assert [(s.edition_date, s.utc) for s in sends] == [
        (date(2026, 10, 3), utc("2026-10-02T15:45")),  # 02:15 +10:30
        (date(2026, 10, 4), utc("2026-10-03T15:30")),  # gap 02:00-02:30 -> 02:30 +11:00
        (date(2026, 10, 5), utc("2026-10-04T15:15")),  # 02:15 +11:00
    ]
    assert (sends[1].local.hour, sends[1].local.minute) == (2, 30)


def test_lord_howe_half_hour_repeat() -> None:
    got = pairs("2026-04-03T00:00", plan(LORD_HOWE, "01:45", EVERY_DAY), 3)
    assert got == [
        (date(2026, 4, 4), utc("2026-04-03T14:45")),  # 01:45 +11:00
        (date(2026, 4, 5), utc("2026-04-04T14:45")),  # first 01:45 (+11:00), once
        (date(2026, 4, 6), utc("2026-04-05T15:15")),  # 01:45 +10:30
    ]


def test_lord_howe_weekdays_0600() -> None:
    got = pairs("2026-09-30T12:00", plan(LORD_HOWE, "06:00"), 3)
    assert got == [
        (date(2026, 10, 1), utc("2026-09-30T19:30")),  # Thu 06:00 +10:30
        (date(2026, 10, 2), utc("2026-10-01T19:30")),  # Fri
        (date(2026, 10, 5), utc("2026-10-04T19:00")),  # Mon 06:00 +11:00
    ]


# --- send_time_for, decide, previous_send_time, parsing ----------------------------------------


def test_send_time_for_and_latest() -> None:
    p = plan(LONDON, "06:00", max_lateness=timedelta(hours=3))
    assert send_time_for(date(2026, 3, 30), p) == utc("2026-03-30T05:00")
    assert latest_send_time(date(2026, 3, 30), p) == utc("2026-03-30T08:00")
    assert send_time_for(date(2026, 3, 29), plan(LONDON, "01:30")) == utc("2026-03-29T01:00")
    assert send_time_for(date(2026, 3, 30), p).tzinfo is UTC


@pytest.mark.parametrize(
    ("now", "state"),
    [
        ("2026-03-30T04:59:59.999999", "too_early"),
        ("2026-03-30T05:00:00", "due"),
        ("2026-03-30T06:30:00", "due"),
        ("2026-03-30T08:00:00", "due"),  # send time + max_lateness is still inside
        ("2026-03-30T08:00:00.000001", "expired"),
        ("2026-03-31T05:00:00", "expired"),
    ],
)
def test_decide_boundaries(now: str, state: str) -> None:
    p = plan(LONDON, "06:00", max_lateness=timedelta(hours=3))
    decision = decide(date(2026, 3, 30), utc(now), p)
    assert decision.state == state
    assert decision.send_at == utc("2026-03-30T05:00")
    assert decision.latest == utc("2026-03-30T08:00")
    assert decision.is_due == (state == "due")


def test_decide_accepts_any_aware_now_and_rejects_naive() -> None:
    p = plan(LONDON, "06:00")
    local_now = datetime(2026, 3, 30, 6, 0, tzinfo=LONDON)
    assert decide(date(2026, 3, 30), local_now, p).state == "due"
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(date(2026, 3, 30), datetime(2026, 3, 30, 6, 0), p)


def test_decide_zero_lateness() -> None:
    p = plan(LONDON, "06:00", max_lateness=timedelta(0))
    assert decide(date(2026, 3, 30), utc("2026-03-30T05:00"), p).state == "due"
    assert decide(date(2026, 3, 30), utc("2026-03-30T05:00:00.000001"), p).state == "expired"


def test_previous_send_time() -> None:
    p = plan(LONDON, "06:00")
    found = previous_send_time(utc("2026-03-30T05:30"), p, timedelta(hours=3))
    assert found is not None and found.edition_date == date(2026, 3, 30)
    at_instant = previous_send_time(utc("2026-03-30T05:00"), p, timedelta(0))
    assert at_instant is not None and at_instant.edition_date == date(2026, 3, 30)
    # Monday 04:00 UTC: the previous send was Friday, far outside a 3 h window.
    assert previous_send_time(utc("2026-03-30T04:00"), p, timedelta(hours=3)) is None
    friday = previous_send_time(utc("2026-03-30T04:00"), p, timedelta(days=4))
    assert friday is not None and friday.edition_date == date(2026, 3, 27)


@pytest.mark.parametrize("text", ["06:00", "6:00", " 23:59 ", "00:00"])
def test_parse_local_time_ok(text: str) -> None:
    hour, minute = (int(part) for part in text.strip().split(":"))
    assert parse_local_time(text) == time(hour, minute)


def test_parse_local_time_with_seconds() -> None:
    assert parse_local_time("06:00:30") == time(6, 0, 30)


@pytest.mark.parametrize("text", ["", "6", "24:00", "06:60", "06:00:60", "6am", "-1:00", "06.00"])
def test_parse_local_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="time of day"):
        parse_local_time(text)


def test_empty_or_bad_plans_raise_instead_of_looping() -> None:
    with pytest.raises(ValueError, match="at least one send day"):
        SendPlan(send_days=(), send_time=time(6), zone=LONDON)
    with pytest.raises(ValueError, match="weekday numbers"):
        SendPlan(send_days=(7,), send_time=time(6), zone=LONDON)
    with pytest.raises(ValueError, match="tzinfo"):
        SendPlan(send_days=(0,), send_time=time(6, tzinfo=UTC), zone=LONDON)
    with pytest.raises(ValueError, match="negative"):
        SendPlan(send_days=(0,), send_time=time(6), zone=LONDON, max_lateness=timedelta(-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_send_times(datetime(2026, 1, 1), plan(LONDON, "06:00"), 1)
    assert next_send_times(utc("2026-01-01T00:00"), plan(LONDON, "06:00"), 0) == []


def test_every_day_skipped_for_a_long_stretch_still_terminates() -> None:
    skips = frozenset(date(2026, 1, 1) + timedelta(days=i) for i in range(400))
    p = plan(LONDON, "06:00", EVERY_DAY, skip_dates=skips)
    (first,) = next_send_times(utc("2026-01-01T00:00"), p, 1)
    assert first.edition_date == date(2027, 2, 5)


def test_weekly_plan_with_consecutive_skipped_weeks() -> None:
    # One send day a week and two of those skipped: the search must look weeks ahead, not days.
    p = plan(LONDON, "00:00", (6,), skip_dates=frozenset({date(2020, 1, 12), date(2020, 1, 19)}))
    got = [d for d, _ in pairs("2020-01-06T00:00", p, 2)]
    assert got == [date(2020, 1, 26), date(2020, 2, 2)]


# --- property: any zone, any time, 2020-2035 ----------------------------------------------------

ALL_ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
WEEKDAY_SETS = st.sets(st.integers(0, 6), min_size=1).map(lambda s: tuple(sorted(s)))


# No deadline: how fast next_send_times runs is benchmarks/send_times.py's business, not a test's.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 1), timezones=st.just(UTC)
    ),
    zone_name=st.sampled_from(ALL_ZONES),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    days=WEEKDAY_SETS,
    skip_offsets=st.sets(st.integers(0, 40), max_size=5),
    n=st.integers(1, 40),
)
def test_property_one_send_per_eligible_local_date(
    start: datetime,
    zone_name: str,
    hour: int,
    minute: int,
    days: tuple[int, ...],
    skip_offsets: set[int],
    n: int,
) -> None:
    zone = ZoneInfo(zone_name)
    wall = time(hour, minute)
    base = start.astimezone(zone).date()
    skips = frozenset(base + timedelta(days=k) for k in skip_offsets)
    p = SendPlan(send_days=days, send_time=wall, zone=zone, skip_dates=skips)

    sends = next_send_times(start, p, n)

    assert len(sends) == n
    assert all(s.utc > start for s in sends)
    assert all(a.utc < b.utc for a, b in itertools.pairwise(sends))
    dates = [s.edition_date for s in sends]
    assert len(set(dates)) == len(dates)
    for s in sends:
        assert s.edition_date.weekday() in days
        assert s.edition_date not in skips
        # Compare instants: PEP 495 makes an ambiguous local time unequal to every other zone's value.
        assert s.local.astimezone(UTC) == s.utc and s.local.tzinfo is zone
        assert s.utc == send_time_for(s.edition_date, p)
        wall_clock = s.local.replace(tzinfo=None)
        wanted = datetime.combine(s.edition_date, wall)
        if wall_clock != wanted:
            # Only a spring-forward gap may move the time, and only forward, to the gap's end.
            assert wall_clock > wanted
            before = (s.utc - timedelta(seconds=1)).astimezone(zone)
            assert before.utcoffset() != s.local.utcoffset(), "moved time must be a transition instant"
            assert before.replace(tzinfo=None) < wanted
        else:
            # A repeated wall time fires at its first occurrence.
            assert s.utc <= wanted.replace(tzinfo=zone, fold=1).astimezone(UTC)
    # Completeness: every eligible date between the first and the last got its send.
    eligible = [
        dates[0] + timedelta(days=i)
        for i in range((dates[-1] - dates[0]).days + 1)
        if is_send_day(dates[0] + timedelta(days=i), p)
    ]
    assert dates == eligible
    # Nothing eligible was skipped before the first result.
    prev = dates[0] - timedelta(days=1)
    for _ in range(20):
        if is_send_day(prev, p):
            assert send_time_for(prev, p) <= start
            break
        prev -= timedelta(days=1)
