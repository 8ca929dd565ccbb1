"""A sending edition in the terminal: one bar for all its senders together, and who is sending.

`briefing editions show DATE --watch` follows an edition with it, and `briefing send` draws the same
line under its own bar. The numbers come from `service.progress`, which reads the senders' tallies
instead of counting the ledger while an edition is sending, so watching costs the senders nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from briefing.cli.common import (
    add_row,
    console,
    line,
    local,
    new_table,
    newsletter_flag,
    newsletter_zone,
    of_newsletter,
    show,
    state,
)

if TYPE_CHECKING:
    from briefing.newsletter import NewsletterData
    from briefing.service.progress import EditionProgress

REFRESH_EVERY = 1.0  # seconds between two readings of the edition's progress
# A sending edition that no run has reported on for this long is sending no more: its senders
# stopped (or crashed) and left the rest to a later pass, so the watch ends instead of waiting.
IDLE_LIMIT = timedelta(minutes=2)
MAX_TICKS = 24 * 3600  # a watch never outlives a day, whatever the edition's state says
WATCH_STOPPED_EXIT = 130  # Ctrl-C: stop watching; the senders go on


def summary(progress: EditionProgress, *, mine: int | None = None) -> str:
    """One line for people, such as "sent 4,200 of 10,000 · 1,150/s · ETA 5 min · 2 senders"."""
    from briefing.service.progress import duration

    head = f"sent {progress.sent:,} of {progress.total:,}"
    if mine is not None:
        head += f" ({mine:,} by this sender)"
    parts = [head]
    if progress.failed:
        parts.append(f"{progress.failed:,} failed")
    parts.append(f"{progress.rate:,.0f}/s")
    parts.append("ETA " + ("done" if progress.remaining == 0 else duration(progress.eta)))
    n = len(progress.senders)
    parts.append(f"{n} sender{'' if n == 1 else 's'}")
    return " · ".join(parts)


def render(progress: EditionProgress) -> RenderableType:
    """The bar for the whole edition, then a small table of the runs sending it now."""
    head = Table.grid(padding=(0, 1))
    head.add_row(
        Text(progress.status),
        ProgressBar(total=float(max(progress.total, 1)), completed=float(progress.done), width=40),
        line(summary(progress)),
    )
    if not progress.senders:
        return head
    table = new_table("host", "pid", "role", "connections", "sent", "rate", "heard", title="Live senders")
    for s in progress.senders:
        add_row(
            table,
            s.host,
            s.pid,
            s.role,
            s.connections,
            f"{s.sent:,}",
            f"{s.rate:,.0f}/s",
            f"{s.silent_for:.0f} s ago",
        )
    return Group(head, table)


def watch(day: date, newsletter: NewsletterData) -> None:
    """Follow a newsletter's edition of `day` while it is sending; returns once it is not, or nobody
    sends it.

    Ctrl-C ends the watch with exit code 130 and no message: watching is all it stops.
    """
    from sqlmodel import Session

    from briefing.service import progress as progress_service
    from briefing.store import editions as edition_store

    engine, clock = state().engine, state().clock
    with Session(engine) as session:
        edition_id = edition_store.get_edition(session, day, newsletter_id=newsletter.id).id

    def read() -> EditionProgress:
        with Session(engine) as session:
            return progress_service.edition_progress(session, edition_id, now=clock.now())

    current = read()
    if not current.sending:
        return
    since = clock.now()
    never = threading.Event()  # nothing sets it: each tick waits its second out on the clock
    try:
        with _ctrl_c_interrupts(), _display() as draw:
            for _ in range(MAX_TICKS):
                draw(current)
                if not current.sending or _nobody_sending(current, since, clock.now()):
                    break
                clock.wait(REFRESH_EVERY, never)
                current = read()
    except KeyboardInterrupt:
        raise typer.Exit(WATCH_STOPPED_EXIT) from None
    if current.sending:
        heard = local(current.last_heard, newsletter_zone(newsletter)) if current.last_heard else "never"
        show(
            f"No sender is running on the edition of {day}{of_newsletter(newsletter)} (last heard from: "
            f"{heard}); it stays sending until one goes on with it (briefing send --date {day}"
            f"{newsletter_flag(newsletter)}, a worker or the scheduler).",
            err=True,
        )


def _nobody_sending(progress: EditionProgress, since: datetime, now: datetime) -> bool:
    if progress.senders:
        return False
    heard = progress.last_heard if progress.last_heard is not None else since
    return now - heard >= IDLE_LIMIT


@contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """Ctrl-C interrupts the watch even when the shell started it with SIGINT ignored (as it does
    for a background job), so stopping a watch never depends on how it was started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _display() -> Iterator[Callable[[EditionProgress], None]]:
    """A live bar in a terminal; in a pipe or a log, one plain line each time the numbers change."""
    if console.is_terminal and not console.is_dumb_terminal:
        with Live(console=console, auto_refresh=False, transient=True) as live:
            yield lambda progress: live.update(render(progress), refresh=True)
        return
    last: list[str] = []

    def print_line(progress: EditionProgress) -> None:
        text = f"{progress.status}: {summary(progress)}"
        if last != [text]:
            last[:] = [text]
            show(text)

    yield print_line
