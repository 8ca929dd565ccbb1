"""What every command shares: settings, the engine, today's edition setup, error reporting, output helpers.

Commands stay thin: parse, call the service, print. Errors we raise on purpose become one red
line naming the field and a non-zero exit; they never show a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from typing import Annotated, Any, ParamSpec, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.markup import escape

from briefing import inputs, wiring
from briefing.config import Settings, load_settings
from briefing.db import make_engine, upgrade
from briefing.domain import Clock
from briefing.errors import BriefingError
from briefing.service import editions as edition_service
from briefing.service.setup import EditionSetup

# Piped output (logs, CI, scripts) gets a wide fixed width instead of rich's 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DateOpt = Annotated[
    str,
    typer.Option("--date", help="Edition date, YYYY-MM-DD (default: today's edition, else the next one)."),
]

P = ParamSpec("P")
R = TypeVar("R")


class AppState:
    """Settings and engine, created on first use so `--help` works without a database."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._engine: sa.Engine | None = None
        self._clock: Clock | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def clock(self) -> Clock:
        """The real clock, or the one BRIEFING_NOW pins (rehearsals and tests)."""
        if self._clock is None:
            self._clock = wiring.clock(self.settings)
        return self._clock

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
            upgrade(self._engine)
        return self._engine


_STATE = AppState()


def reset_state() -> None:
    """Called at the start of every invocation, so each run reads the environment afresh."""
    global _STATE
    _STATE = AppState()


def state() -> AppState:
    return _STATE


def current_setup() -> EditionSetup:
    """The edition setup with the skip dates in the database now (the same one the web and scheduler use)."""
    return wiring.edition_setup_now(state().settings, state().engine)


def edition_date(value: str, setup: EditionSetup) -> date:
    """The date given with --date, else today's edition if it is still to come, else the next one."""
    return parse_date(value) or edition_service.default_edition_date(setup.plan, state().now())


def fail(message: str, code: int = 1) -> typer.Exit:
    """One red line; the message may quote what someone typed, so it is printed as text, not markup."""
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}")
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors and a locked or unreachable database into a clear message and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BriefingError as exc:
            raise fail(str(exc)) from None
        except sa.exc.OperationalError as exc:
            raise fail(f"database: {exc.orig}") from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def parse_date(value: str | None, field: str = "--date") -> date | None:
    return inputs.local_date(value, field=field) if value else None


def parse_moment(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    return inputs.local_datetime(value, state().settings.zone, field=field)


def local(moment: datetime | None) -> str:
    """A stored UTC moment shown in the newsroom's zone."""
    if moment is None:
        return ""
    return moment.astimezone(state().settings.zone).strftime("%Y-%m-%d %H:%M")


def print_json(items: Iterable[Any]) -> None:
    out = [_plain(i) for i in items]
    sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2, default=_default) + "\n")


def _plain(item: Any) -> Any:
    if is_dataclass(item) and not isinstance(item, type):
        return asdict(item)
    return item


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
