"""Time `next_send_times`: the calendar's per-call cost across zones, weekday sets and DST changes.

tests/test_calendar.py checks what the calendar answers; how fast it answers is measured here, on a
quiet machine, instead of as a limit inside a test on a busy one. Prints one JSON line: the median
and worst per call for 40 send times ahead, over a fixed, seeded sample of zones and plans.
Target: under 1 s per call in the worst case (the scheduler asks for a handful at a time).

    .venv/bin/python benchmarks/send_times.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall_time
from zoneinfo import ZoneInfo, available_timezones

from briefing.calendar import SendPlan, next_send_times

START = datetime(2020, 1, 1, tzinfo=UTC)


def plans(count: int, seed: int) -> list[tuple[datetime, SendPlan, int]]:
    rng = random.Random(seed)
    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))
    cases = []
    for _ in range(count):
        zone = ZoneInfo(rng.choice(zones))
        start = START + timedelta(seconds=rng.randrange(16 * 365 * 86400))
        days = tuple(sorted(rng.sample(range(7), rng.randint(1, 7))))
        base: date = start.astimezone(zone).date()
        skips = frozenset(base + timedelta(days=rng.randint(0, 40)) for _ in range(rng.randint(0, 5)))
        plan = SendPlan(
            send_days=days,
            send_time=wall_time(rng.randint(0, 23), rng.randint(0, 59)),
            zone=zone,
            skip_dates=skips,
        )
        cases.append((start, plan, 40))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    cases = plans(args.plans, args.seed)
    per_call_ms = []
    for start, plan, n in cases:
        began = time.perf_counter()
        sends = next_send_times(start, plan, n)
        per_call_ms.append((time.perf_counter() - began) * 1e3)
        assert len(sends) == n
    print(
        json.dumps(
            {
                "benchmark": "send_times",
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "plans": args.plans,
                "send_times_per_call": 40,
                "median_ms_per_call": round(statistics.median(per_call_ms), 3),
                "max_ms_per_call": round(max(per_call_ms), 3),
                "target_max_ms": 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
