"""`briefing status`: what a monitor asks each minute (each newsletter's next send and last edition,
the scheduler's heartbeat, the last edition's bounce rates), with an exit code that says healthy or not."""

import json
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import handle_errors, show, state, styled

if TYPE_CHECKING:
    from briefing import calendar as cal
    from briefing.domain import EditionData, LedgerCounts
    from briefing.newsletter import NewsletterData
    from briefing.service import health as health_service

HEARTBEAT_STALE_AFTER = timedelta(minutes=2)


def register(app: typer.Typer) -> None:
    app.command("status")(status)


@handle_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for monitors.")] = False,
) -> None:
    """Show each newsletter's next send and last edition, and whether the scheduler is alive; exit 1
    if not healthy.

    For monitoring: the exit code is 0 when healthy, 1 when a newsletter's last scheduled edition
    failed, expired, is incomplete or held past its window, an edition is blocked by preflight
    errors, or the scheduler's heartbeat is stale. Each reason is printed on a "problem:" line.
    A paused newsletter owes no edition.

    Example: briefing status || echo "the morning email needs attention"
    Example: briefing status --json
    """
    from briefing.service import health as health_service
    from briefing.service.bounce_rates import RateLimits, percent

    now = state().now()
    settings = state().settings
    limits = RateLimits(
        max_complaint_rate=settings.max_complaint_rate, max_hard_bounce_rate=settings.max_hard_bounce_rate
    )
    result = health_service.overview(
        state().engine, _plans(), now, stale_after=HEARTBEAT_STALE_AFTER, rate_limits=limits
    )
    if as_json:
        sys.stdout.write(json.dumps(_status_json(result, now), ensure_ascii=False, indent=2) + "\n")
        if not result.healthy:
            raise typer.Exit(1)
        return
    zone = settings.zone
    if len(result.newsletters) > 1:
        width = max(len(part.newsletter.slug) for part in result.newsletters)
        for part in result.newsletters:
            show(_newsletter_line(part, now, width))
    else:
        _first_lines(result, now)
    if result.last_rates:
        r = result.last_rates
        show(
            f"bounces:    {r.edition_date}: hard {percent(r.hard_rate)}, soft {percent(r.soft_rate)}, "
            f"complaints {percent(r.complaint_rate)} of {r.copies_sent} copies sent"
        )
    if result.heartbeat_at:
        beat = result.heartbeat_at
        show(
            f"scheduler:  {result.heartbeat_owner}, last heartbeat "
            f"{beat.astimezone(zone):%Y-%m-%d %H:%M:%S %Z} ({_ago(now - beat)} ago)"
        )
    for problem in result.problems:
        show(styled("problem:", "bold red"), " ", problem)
    if not result.healthy:
        raise typer.Exit(1)
    show(styled("healthy", "green"))


def _plans() -> "list[tuple[NewsletterData, cal.SendPlan]]":
    """Every newsletter with its calendar as of now: one read of the skip dates, no edition setup."""
    from sqlmodel import Session

    from briefing import wiring
    from briefing.store import newsletters as newsletter_store
    from briefing.store import schedule as schedule_store

    settings = state().settings
    with Session(state().engine) as session:
        skips = schedule_store.skip_dates(session)
        newsletters = newsletter_store.list_newsletters(session)
    return [(n, wiring.send_plan(settings, skips, n)) for n in newsletters]


def _first_lines(result: "health_service.Status", now: datetime) -> None:
    """The one newsletter's next send and last edition, as status has always printed them."""
    if result.next_send:
        n = result.next_send
        show(
            f"next send:  {n.edition_date} at {n.local:%H:%M %Z} ({n.utc:%H:%M} UTC), in {_ago(n.utc - now)}"
        )
    elif result.newsletters and result.newsletters[0].newsletter.paused:
        show("next send:  none, the newsletter is paused (briefing newsletters resume)")
    if result.last:
        show(f"last:       {result.last.edition_date} {result.last.status}{_counts_text(result.last_counts)}")
    else:
        show("last:       no edition yet")


def _newsletter_line(part: "health_service.NewsletterStatus", now: datetime, width: int) -> str:
    """One newsletter on one line: its next send in its own zone, then its last edition's state."""
    n = part.next_send
    if n is not None:
        upcoming = f"next {n.edition_date} at {n.local:%H:%M %Z} ({n.utc:%H:%M} UTC), in {_ago(n.utc - now)}"
    elif part.newsletter.paused:
        upcoming = "paused, sends nothing"
    else:
        upcoming = "no send day ahead"
    if part.last is not None:
        latest = f"last {part.last.edition_date} {part.last.status}{_counts_text(part.last_counts)}"
    else:
        latest = "no edition yet"
    return f"{part.newsletter.slug:<{width}}  {upcoming}; {latest}"


def _counts_text(c: "LedgerCounts | None") -> str:
    if c is None:
        return ""
    return f" sent {c.sent}, failed {c.failed}, waiting {c.pending + c.deferred + c.claimed}"


def _send_json(n: "cal.SendTime | None") -> dict[str, str] | None:
    if n is None:
        return None
    return {
        "edition_date": n.edition_date.isoformat(),
        "local": n.local.isoformat(),
        "utc": n.utc.isoformat(),
    }


def _last_json(last: "EditionData | None", c: "LedgerCounts | None") -> dict[str, object] | None:
    if last is None:
        return None
    return {
        "edition_date": last.edition_date.isoformat(),
        "status": str(last.status),
        "held": last.held,
        "counts": _counts_json(c),
    }


def _status_json(result: "health_service.Status", now: datetime) -> dict[str, object]:
    from briefing.service import bounce_rates

    beat = result.heartbeat_at
    rates = result.last_rates
    return {
        "healthy": result.healthy,
        "problems": list(result.problems),
        "next_send": _send_json(result.next_send),
        "last": _last_json(result.last, result.last_counts),
        "newsletters": [
            {
                "slug": part.newsletter.slug,
                "paused": part.newsletter.paused,
                "timezone": getattr(part.plan.zone, "key", str(part.plan.zone)),
                "next_send": _send_json(part.next_send),
                "last": _last_json(part.last, part.last_counts),
                "problems": list(part.problems),
            }
            for part in result.newsletters
        ],
        "last_sent_rates": (
            {"edition_date": rates.edition_date.isoformat(), **bounce_rates.as_json(rates)} if rates else None
        ),
        "scheduler": {
            "owner": result.heartbeat_owner,
            "heartbeat_at": beat.isoformat() if beat else None,
            "heartbeat_age_seconds": int((now - beat).total_seconds()) if beat else None,
        },
    }


def _counts_json(c: "LedgerCounts | None") -> dict[str, int] | None:
    if c is None:
        return None
    return {
        "sent": c.sent,
        "failed": c.failed,
        "deferred": c.deferred,
        "pending": c.pending,
        "claimed": c.claimed,
        "ambiguous": c.ambiguous,
        "skipped": c.skipped,
    }


def _ago(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
