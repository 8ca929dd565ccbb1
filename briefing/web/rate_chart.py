"""The editions page's chart of bounce and complaint rates: geometry for an inline SVG, made here.

The page's CSP allows no script and no inline style, so the chart is plain SVG drawn on the server
with presentation attributes (fill, stroke) only. One strip per kind, each on its own scale:
complaints live around 0.1% and hard bounces around 1%, so one shared axis would flatten one of
them. A dashed line marks the limit `briefing status` holds the last edition to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from briefing.service.bounce_rates import EditionRates, RateLimits, percent

LABEL_WIDTH = 120  # the strip's name and scale, left of the bars
SLOT = 14  # one edition's column
BAR = 10
STRIP = 44  # a strip's height
GAP = 16  # between strips
TOP = 4
FLOOR = 0.001  # the smallest top of a scale: a few stray bounces do not fill the strip


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the bar's tooltip: date, count, copies sent, rate


@dataclass(frozen=True, slots=True)
class Strip:
    key: str  # hard, soft, complaint
    name: str
    colour: str
    top: float  # y of the strip's top edge
    base: float  # y of its baseline
    scale: str  # the rate at the strip's top, as shown
    limit_y: float | None  # y of the limit line, if this kind has a limit
    limit: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class RateChart:
    width: int
    height: int
    editions: int
    first: str  # the oldest edition's date
    last: str
    strips: tuple[Strip, ...]


_KINDS = (
    ("hard", "Hard bounces", "#b3261e", "hard bounce"),
    ("soft", "Soft bounces", "#b26a00", "soft bounce"),
    ("complaint", "Complaints", "#6a1b9a", "complaint"),
)


def _value(r: EditionRates, key: str) -> tuple[int, float | None]:
    if key == "hard":
        return r.hard, r.hard_rate
    if key == "soft":
        return r.soft, r.soft_rate
    return r.complaints, r.complaint_rate


def _limit(key: str, limits: RateLimits) -> float | None:
    return {"hard": limits.max_hard_bounce_rate, "complaint": limits.max_complaint_rate}.get(key)


def rate_chart(rates: Sequence[EditionRates], limits: RateLimits) -> RateChart | None:
    """The chart of these editions (oldest first), or None when no edition has sent a copy yet."""
    if not rates:
        return None
    strips = []
    for n, (key, name, colour, noun) in enumerate(_KINDS):
        top = TOP + n * (STRIP + GAP)
        base = top + STRIP
        limit = _limit(key, limits)
        values = [_value(r, key) for r in rates]
        peak = max((rate or 0.0 for _, rate in values), default=0.0)
        scale = max(peak, (limit or 0.0) * 1.5, FLOOR)
        bars = []
        for i, (r, (count, rate)) in enumerate(zip(rates, values, strict=True)):
            height = 0.0 if not rate else max(1.0, STRIP * rate / scale)
            plural = "" if count == 1 else "s"
            bars.append(
                Bar(
                    x=LABEL_WIDTH + i * SLOT + (SLOT - BAR) / 2,
                    y=round(base - height, 2),
                    width=BAR,
                    height=round(height, 2),
                    label=f"{r.edition_date.isoformat()}: {count} {noun}{plural} of {r.copies_sent} "
                    f"copies sent ({percent(rate)})",
                )
            )
        limit_y = None if limit is None or limit > scale else round(base - STRIP * limit / scale, 2)
        strips.append(
            Strip(
                key=key,
                name=name,
                colour=colour,
                top=top,
                base=base,
                scale=percent(scale),
                limit_y=limit_y,
                limit=percent(limit) if limit is not None else "",
                bars=tuple(bars),
            )
        )
    return RateChart(
        width=LABEL_WIDTH + len(rates) * SLOT + 4,
        height=TOP + len(_KINDS) * (STRIP + GAP),
        editions=len(rates),
        first=rates[0].edition_date.isoformat(),
        last=rates[-1].edition_date.isoformat(),
        strips=tuple(strips),
    )
