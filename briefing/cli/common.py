"""What every command shares: settings, the engine, today's edition setup, error reporting, output helpers.

Commands stay thin: parse, call the service, print. Errors we raise on purpose become one red
line naming the field and a non-zero exit; they never show a traceback.

Output has one rule: what the CLI prints is data, never markup. Both consoles parse no Rich markup
and replace no emoji codes, and every value goes through `show`, `styled` or `add_row`, which also
make control characters visible, so a headline like `[/x]` or an escape sequence in a feed's error
prints as the characters it is and can never fail after a write has been committed.
"""

from __future__ import annotations

import functools
import json
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from briefing.errors import BriefingError, InvalidInput

if TYPE_CHECKING:
    import sqlalchemy as sa
    from rich.table import Table

    from briefing.calendar import SendPlan
    from briefing.config import Settings
    from briefing.domain import Clock
    from briefing.newsletter import NewsletterData
    from briefing.service.setup import EditionSetup

# This module and the command modules keep their top level to typer, rich and the standard library:
# `briefing --help` builds every command, and a command imports the database, the renderer or the
# web framework inside its function, when it runs. The command modules also leave out
# `from __future__ import annotations`: typer reads every command's parameters on every start, and
# string annotations make it compile and evaluate each one again (half of building the app); a type
# imported only for checking is written in quotes there instead.

# Piped output (logs, CI, scripts) gets a wide fixed width instead of rich's 80 columns.
console = Console(highlight=False, markup=False, emoji=False, width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)

# The largest id SQLite's INTEGER and PostgreSQL's BIGINT hold; a bigger one is refused, not sent.
MAX_ID = 2**63 - 1

DateOpt = Annotated[
    str,
    typer.Option("--date", help="Edition date, YYYY-MM-DD (default: today's edition, else the next one)."),
]
# Which newsletter a command acts on, by slug (`briefing newsletters list`); blank: the first one.
NewsletterOpt = Annotated[
    str,
    typer.Option(
        "--newsletter",
        "-n",
        help="The newsletter, by slug (default: the first; see `briefing newsletters list`).",
    ),
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
            from briefing.config import load_settings

            self._settings = load_settings()
        return self._settings

    @property
    def clock(self) -> Clock:
        """The real clock, or the one BRIEFING_NOW pins (rehearsals and tests)."""
        if self._clock is None:
            from briefing import wiring

            self._clock = wiring.clock(self.settings)
        return self._clock

    def now(self) -> datetime:
        return self.clock.now()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            from briefing.db import make_engine, upgrade

            self._engine = make_engine(self.settings.database_url)
            upgrade(self._engine, newsletter_name=self.settings.newsletter_name, now=self.now())
        return self._engine


_STATE = AppState()


def reset_state() -> None:
    """Called at the start of every invocation, so each run reads the environment afresh."""
    global _STATE
    _STATE = AppState()


def state() -> AppState:
    return _STATE


def chosen_newsletter(slug: str = "") -> NewsletterData:
    """The newsletter named with --newsletter, else the first one; an unknown slug lists the known ones."""
    from sqlmodel import Session

    from briefing.errors import NotFound
    from briefing.newsletter import PRIMARY_ID
    from briefing.store import newsletters as newsletter_store

    with Session(state().engine) as session:
        if not slug.strip():
            return newsletter_store.get_newsletter(session, PRIMARY_ID)
        try:
            return newsletter_store.get_by_slug(session, slug)
        except NotFound as exc:
            raise NotFound(exc.message, field="--newsletter") from None


def current_setup(newsletter: str = "") -> EditionSetup:
    """The chosen newsletter's edition setup with the skip dates in the database now (the same one
    the web and scheduler use)."""
    from briefing import wiring

    found = chosen_newsletter(newsletter) if newsletter.strip() else None  # None: the first, read there
    return wiring.edition_setup_now(state().settings, state().engine, newsletter=found)


def current_plan(newsletter: str = "") -> SendPlan:
    """The send calendar with today's skip dates, for commands that only ask about dates (status, calendar).

    The same calendar `current_setup` holds, without building the renderer, the signer and the DKIM
    key that the commands which compose or send need.
    """
    from briefing import wiring

    found = chosen_newsletter(newsletter) if newsletter.strip() else None
    return wiring.send_plan_now(state().settings, state().engine, found)


def newsletter_zone(newsletter: NewsletterData) -> tzinfo:
    """Where a newsletter's readers are: its own time zone, else the newsroom's."""
    from briefing import wiring

    return wiring.send_plan(state().settings, newsletter=newsletter).zone


def newsletter_flag(newsletter: NewsletterData) -> str:
    """What to add to a suggested command so it acts on the same newsletter ("" for the first)."""
    return "" if newsletter.primary else f" --newsletter {newsletter.slug}"


def of_newsletter(newsletter: NewsletterData) -> str:
    """The " (weekend)" after an edition's date, so nobody takes another newsletter's for the first's."""
    return "" if newsletter.primary else f" ({newsletter.slug})"


def edition_date(value: str, setup: EditionSetup) -> date:
    """The date given with --date, else today's edition if it is still to come, else the next one."""
    from briefing.service import editions as edition_service

    return parse_date(value) or edition_service.default_edition_date(setup.plan, state().now())


def fail(message: str, code: int = 1) -> typer.Exit:
    """One red line; the message may quote what someone typed, so it is shown as data."""
    show(styled("error:", "bold red"), " ", plain(message, one_line=True), err=True)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors, a locked or unreachable database and a refused file into one line and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except BriefingError as exc:
            raise fail(str(exc)) from None
        except BrokenPipeError:
            raise  # the reader of our output went away (`| head`); the entry point ends quietly
        except OSError as exc:
            # A file the command was told to read or write; the command checked what it could first.
            where = f"{exc.filename}: " if exc.filename else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as exc:
            # Locked, unreachable, not a database, a value it refused. Looked up rather than imported:
            # a command that never opened the database cannot meet its errors, and stays light.
            database = sys.modules.get("sqlalchemy.exc")
            if database is None or not isinstance(exc, database.DatabaseError):
                raise
            detail = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
            raise fail(f"database: {detail}") from None

    return wrapper


# --------------------------------------------------------------------------- arguments


def _check_whole_numbers(low: int, high: int, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        for number in value if isinstance(value, list | tuple) else [value]:
            if number is not None and not low <= number <= high:
                raise typer.BadParameter(f"{number} is not {what}; give a whole number from {low} to {high}")
        return value

    return check


check_id = _check_whole_numbers(1, MAX_ID, "an id")
check_place = _check_whole_numbers(1, MAX_ID, "a place")


def id_argument(help: str) -> Any:
    """A stored row's id (or several): refused before any query when the database could not hold it."""
    return typer.Argument(help=help, callback=check_id)


def id_option(*decls: str, help: str) -> Any:
    return typer.Option(*decls, help=help, callback=check_id)


def place_option(*decls: str, help: str) -> Any:
    """A place in a section, 1 = top, bounded like an id so it fits the column."""
    return typer.Option(*decls, help=help, callback=check_place)


def refuse_undecodable(args: Sequence[str]) -> None:
    """Arguments whose bytes were not UTF-8 (Python keeps them as lone surrogates) are refused whole.

    Checked before any command runs, so nothing is written; the error names the option it belongs to.
    """
    for i, arg in enumerate(args):
        if not _has_surrogate(arg):
            continue
        if arg.startswith("--") and "=" in arg and not _has_surrogate(arg.split("=", 1)[0]):
            where = arg.split("=", 1)[0]
        elif arg.startswith("-"):
            where = f"option {i + 1}"
        elif i > 0 and args[i - 1].startswith("-") and not _has_surrogate(args[i - 1]):
            where = args[i - 1]
        elif i > 0:
            where = f"the argument after {args[i - 1]!r}"
        else:
            where = "the first argument"
        raise typer.BadParameter(
            "not valid UTF-8 text (the terminal or script passed bytes in another encoding)",
            param_hint=plain(where),
        )


def _has_surrogate(value: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in value)


def output_folder(path: Path, field: str) -> Path:
    """A folder the command may write files into: created if missing, refused if it is anything else."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(f"{path} exists and is not a folder", field=field) from None
    except OSError as exc:
        raise InvalidInput(f"cannot create the folder {path}: {exc.strerror or exc}", field=field) from None
    if not path.is_dir():
        raise InvalidInput(f"{path} is not a folder", field=field)
    return path


def output_file(path: Path, field: str) -> Path:
    """A file the command will create or replace, checked before anything else is written."""
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; give a file name", field=field)
    if path.exists() and not path.is_file():
        raise InvalidInput(f"{path} is not a regular file", field=field)
    if not path.parent.is_dir():
        raise InvalidInput(f"the folder {path.parent} does not exist", field=field)
    return path


def parse_date(value: str | None, field: str = "--date") -> date | None:
    from briefing import inputs

    return inputs.local_date(value, field=field) if value else None


def parse_moment(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    from briefing import inputs

    return inputs.local_datetime(value, state().settings.zone, field=field)


def moment_ago(value: str, field: str) -> datetime:
    """Now minus a duration someone typed (`--since 7d`); one reaching past the calendar is refused."""
    from briefing.config import parse_duration

    try:
        return state().now() - parse_duration(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from None
    except OverflowError:
        raise InvalidInput(f"{value!r} reaches too far back", field=field) from None


def local(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """A stored UTC moment shown in the newsroom's zone, or in a newsletter's own (`zone`)."""
    if moment is None:
        return ""
    return moment.astimezone(zone or state().settings.zone).strftime("%Y-%m-%d %H:%M")


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


# --------------------------------------------------------------------------- output

# Right-to-left overrides and isolates can make a line read differently from what it holds.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def plain(value: object, *, one_line: bool = False) -> str:
    """A value as text for the terminal: control characters, bidi overrides and stray surrogates shown
    as escapes (\\x1b), so data can neither move the cursor nor fail to encode. Tabs stay, and so do
    newlines unless the value must stay on one line (an error message)."""
    text = "" if value is None else str(value)
    if not text.isprintable():
        text = "".join(_visible(ch) for ch in text)
    return text.replace("\n", "\\n") if one_line else text


def _visible(ch: str) -> str:
    if ch in "\n\t":
        return ch
    if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return ch


def styled(value: object, style: str) -> Text:
    """A value in colour; still data, never markup."""
    return Text(plain(value), style=style)


def line(*pieces: object) -> Text:
    """Pieces joined into one line: `Text` pieces keep their style, everything else is data."""
    out = Text()
    for piece in pieces:
        out.append(piece if isinstance(piece, Text) else plain(piece))
    return out


def show(*pieces: object, err: bool = False) -> None:
    """Print one line of data (to standard error with err=True); see `line`."""
    (err_console if err else console).print(line(*pieces))


def new_table(*columns: str, title: object) -> Table:
    """A table whose cells fold rather than end in an ellipsis: a narrow terminal never hides data."""
    from rich.table import Table

    table = Table(title=line(title))
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def add_row(table: Table, *cells: object) -> None:
    """A table row whose cells are data: never read as markup, control characters visible."""
    table.add_row(*(line(c) for c in cells))
