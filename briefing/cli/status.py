"""`briefing status`: what a monitor asks each minute (the next send, the last edition, the
scheduler's heartbeat, the last edition's bounce rates), with an exit code that says healthy or not."""

import json
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from briefing.cli.common import current_plan, handle_errors, show, state, styled

if TYPE_CHECKING:
    from briefing.domain import LedgerCounts
    from briefing.service import health as health_service

HEARTBEAT_STALE_AFTER = timedelta(minutes=2)


def register(app: typer.Typer) -> None:
    app.command("status")(status)


@handle_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for monitors.")] = False,
) -> None:
    """Show the next send, the last edition and whether the scheduler is alive; exit 1 if not healthy.

    For monitoring: the exit code is 0 when healthy, 1 when the last scheduled edition failed,
    expired, is incomplete or held past its window, an edition is blocked by preflight errors, or
    the scheduler's heartbeat is stale. Each reason is printed on a "problem:" line.

    Example: briefing status || echo "the morning email needs attention"
    Example: briefing status --json
    """
    from briefing.service import health as health_service
    from briefing.service.bounce_rates import RateLimits, percent

    plan = current_plan()
    now = state().now()
    settings = state().settings
    limits = RateLimits(
        max_complaint_rate=settings.max_complaint_rate, max_hard_bounce_rate=settings.max_hard_bounce_rate
    )
    result = health_service.status(
        state().engine, plan, now, stale_after=HEARTBEAT_STALE_AFTER, rate_limits=limits
    )
    if as_json:
        sys.stdout.write(json.dumps(_status_json(result, now), ensure_ascii=False, indent=2) + "\n")
        if not result.healthy:
            raise typer.Exit(1)
        return
    zone = plan.zone
    if result.next_send:
        n = result.next_send
        show(
            f"next send:  {n.edition_date} at {n.local:%H:%M %Z} ({n.utc:%H:%M} UTC), in {_ago(n.utc - now)}"
        )
    if result.last:
        c = result.last_counts
        counts = (
            f" sent {c.sent}, failed {c.failed}, waiting {c.pending + c.deferred + c.claimed}" if c else ""
        )
        show(f"last:       {result.last.edition_date} {result.last.status}{counts}")
    else:
        show("last:       no edition yet")
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


def _status_json(result: "health_service.Status", now: datetime) -> dict[str, object]:
    from briefing.service import bounce_rates

    n, last, c, beat = result.next_send, result.last, result.last_counts, result.heartbeat_at
    rates = result.last_rates
    return {
        "healthy": result.healthy,
        "problems": list(result.problems),
        "next_send": (
            {
                "edition_date": n.edition_date.isoformat(),
                "local": n.local.isoformat(),
                "utc": n.utc.isoformat(),
            }
            if n
            else None
        ),
        "last": (
            {
                "edition_date": last.edition_date.isoformat(),
                "status": str(last.status),
                "held": last.held,
                "counts": _counts_json(c),
            }
            if last
            else None
        ),
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
