"""When editions go out: weekdays, a local time of day, skipped dates and a lateness window.

One function, `next_send_times`, answers "when is the next send?" for the scheduler's trigger, for
`briefing status` and for the tests, so the three can never disagree. Everything here is pure and
uses only the standard library: the clock is always an argument.

Daylight saving rules (checked by tests over 2020-2035 and every zone shipped with tzdata):

* A local send time that does not exist on a date (the hour skipped when clocks go forward) fires
  at the first valid instant after the gap. With a 01:30 send time in Europe/London that is 02:00
  BST on the last Sunday of March. Skipping the day would lose an edition without anyone noticing.
* A local send time that occurs twice (the hour repeated when clocks go back) fires once, at the
  first occurrence (``fold=0``): readers expect the email at the earlier of the two moments.
* Each eligible local date gives exactly one send time, and the UTC instants strictly increase.
  A date that never existed (Samoa skipped 30 December 2011) fires at the first instant after the
  gap, which is on the next local date; should two dates ever resolve to the same instant, the
  later one is dropped so that nothing fires twice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_MAX_LATENESS",
    "Decision",
    "DecisionState",
    "SendPlan",
    "SendTime",
    "decide",
    "is_send_day",
    "latest_send_time",
    "local_send_instant",
    "next_send_times",
    "parse_local_time",
    "previous_send_time",
    "send_time_for",
]

DEFAULT_MAX_LATENESS = timedelta(hours=3)

# No real zone has a gap longer than a day (Samoa's 2011 jump was exactly one day); the bisection
# below therefore needs at most ~17 halvings to reach one second.
_MAX_GAP = timedelta(days=1, hours=1)
_MAX_LOOKBACK = timedelta(days=400)
_TIME_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")

DecisionState = Literal["too_early", "due", "expired"]


@dataclass(frozen=True)
class SendPlan:
    """The schedule as plain values, so that neither this module nor the scheduler reads settings.

    `send_days` uses Python's weekday numbers (Monday = 0), as `config.parse_send_days` returns.
    `send_time` is a naive wall-clock time in `zone`.
    """

    send_days: tuple[int, ...]
    send_time: time
    zone: ZoneInfo
    skip_dates: frozenset[date] = field(default_factory=frozenset)
    max_lateness: timedelta = DEFAULT_MAX_LATENESS

    def __post_init__(self) -> None:
        days = tuple(sorted(set(self.send_days)))
        if not days:
            raise ValueError("a send plan needs at least one send day")
        if any(not isinstance(d, int) or not 0 <= d <= 6 for d in days):
            raise ValueError(f"send days must be weekday numbers 0-6 (Monday = 0), got {self.send_days!r}")
        if self.send_time.tzinfo is not None:
            raise ValueError("send_time must be a wall-clock time without tzinfo; the zone is separate")
        if not isinstance(self.zone, ZoneInfo):
            raise ValueError(f"zone must be a zoneinfo.ZoneInfo, got {self.zone!r}")
        if self.max_lateness < timedelta(0):
            raise ValueError("max_lateness cannot be negative")
        object.__setattr__(self, "send_days", days)
        object.__setattr__(self, "skip_dates", frozenset(self.skip_dates))


@dataclass(frozen=True)
class SendTime:
    """One scheduled edition: the local date it belongs to and the instant it fires."""

    edition_date: date
    local: datetime  # aware, in the plan's zone
    utc: datetime  # aware, UTC


@dataclass(frozen=True)
class Decision:
    """Where `now` sits relative to one edition's send window, for the send service and status."""

    state: DecisionState
    edition_date: date
    send_at: datetime  # UTC
    latest: datetime  # UTC; send_at + max_lateness, still "due"

    @property
    def is_due(self) -> bool:
        return self.state == "due"


def parse_local_time(value: str) -> time:
    """Read "06:00", "6:00" or "06:00:30"; a typo here would silently move the whole newsletter."""
    match = _TIME_RE.match(value or "")
    if not match:
        raise ValueError(f"not a time of day: {value!r} (write HH:MM in 24-hour form, for example 06:00)")
    hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a time of day: {value!r} (hours 00-23, minutes 00-59)")
    return time(hour, minute, second)


def is_send_day(edition_date: date, plan: SendPlan) -> bool:
    """Whether a date gets an edition at all; holidays in skip_dates do not."""
    return edition_date.weekday() in plan.send_days and edition_date not in plan.skip_dates


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value!r})")


def local_send_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """Resolve a wall-clock time on a date to one real instant (UTC), following the DST rules above.

    zoneinfo happily builds datetimes that never happen (in a gap), so existence is checked by a
    round trip through UTC; a gap resolves to the transition instant, found by bisection.
    """
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0)
    utc0 = first.astimezone(UTC)
    if utc0.astimezone(zone).replace(tzinfo=None) == naive:
        return utc0  # exists; if ambiguous, fold=0 is the first occurrence
    # In a gap: fold=0 uses the offset before the transition, fold=1 the offset after it, so the
    # transition instant T lies in (utc1, utc0].
    utc1 = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = min(utc0, utc1), max(utc0, utc1)
    if hi - lo > _MAX_GAP:  # pragma: no cover - no such zone exists
        raise ValueError(f"{naive} in {zone.key}: time zone gap longer than a day")
    after_offset = hi.astimezone(zone).utcoffset()
    # Transitions fall on whole seconds; bisect on integer timestamps.
    # Invariant: lo_ts is before the transition, hi_ts at or after it.
    lo_ts, hi_ts = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    for _ in range(64):
        if hi_ts - lo_ts <= 1:
            break
        mid = (lo_ts + hi_ts) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == after_offset:
            hi_ts = mid
        else:
            lo_ts = mid
    return datetime.fromtimestamp(hi_ts, UTC)


def send_time_for(edition_date: date, plan: SendPlan) -> datetime:
    """The UTC instant an edition is due, whether or not the date is a send day (forced sends)."""
    return local_send_instant(edition_date, plan.send_time, plan.zone)


def latest_send_time(edition_date: date, plan: SendPlan) -> datetime:
    """The last UTC instant an edition may start without a manual override (I8)."""
    return send_time_for(edition_date, plan) + plan.max_lateness


def _send_time(day: date, plan: SendPlan) -> SendTime:
    utc = send_time_for(day, plan)
    return SendTime(edition_date=day, local=utc.astimezone(plan.zone), utc=utc)


def _day_budget(plan: SendPlan, n: int) -> int:
    # Every 7 consecutive days hold at least one send day, and each skip date removes at most one
    # of them, so n sends are always found within 7 * (n + skips + 1) days.
    return 7 * (n + len(plan.skip_dates) + 1) + 3


def next_send_times(after: datetime, plan: SendPlan, n: int) -> list[SendTime]:
    """The next `n` sends strictly after `after`, in order; shared by the trigger and status."""
    _require_aware(after, "after")
    if n < 0:
        raise ValueError("n must be >= 0")
    result: list[SendTime] = []
    if n == 0:
        return result
    after_utc = after.astimezone(UTC)
    # Start a day early: a send whose wall time is pushed across midnight by a gap belongs to the
    # previous local date.
    day = after_utc.astimezone(plan.zone).date() - timedelta(days=1)
    for _ in range(_day_budget(plan, n)):
        if is_send_day(day, plan):
            st = _send_time(day, plan)
            if st.utc > after_utc and (not result or st.utc > result[-1].utc):
                result.append(st)
                if len(result) == n:
                    return result
        day += timedelta(days=1)
    raise RuntimeError(f"no {n} send times found after {after.isoformat()}; the plan looks empty")


def previous_send_time(before: datetime, plan: SendPlan, lookback: timedelta) -> SendTime | None:
    """The latest send at or before `before`, if it lies within `lookback`; used for catch-up.

    "At or before" matters: the scheduler names the edition of a firing by asking this at the
    moment it fires, which is never earlier than the scheduled instant.
    """
    _require_aware(before, "before")
    if lookback < timedelta(0):
        raise ValueError("lookback cannot be negative")
    before_utc = before.astimezone(UTC)
    earliest = before_utc - min(lookback, _MAX_LOOKBACK)
    day = before_utc.astimezone(plan.zone).date() + timedelta(days=1)
    last = earliest.astimezone(plan.zone).date() - timedelta(days=2)
    for _ in range((day - last).days + 1):
        if is_send_day(day, plan):
            st = _send_time(day, plan)
            if st.utc <= before_utc:
                return st if st.utc >= earliest else None
        day -= timedelta(days=1)
    return None


def decide(edition_date: date, now: datetime, plan: SendPlan) -> Decision:
    """Place `now` in an edition's window: before send time, inside it (inclusive), or past it.

    The window is closed at both ends: at exactly send time + max_lateness an edition is still
    due, one microsecond later it is expired and is never sent without a manual override.
    """
    _require_aware(now, "now")
    send_at = send_time_for(edition_date, plan)
    latest = send_at + plan.max_lateness
    now_utc = now.astimezone(UTC)
    state: DecisionState
    if now_utc < send_at:
        state = "too_early"
    elif now_utc <= latest:
        state = "due"
    else:
        state = "expired"
    return Decision(state=state, edition_date=edition_date, send_at=send_at, latest=latest)
