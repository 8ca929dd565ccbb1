"""The `briefing` command: one Typer app, one module per command group."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from briefing.cli import (
    api_tokens,
    articles,
    bounces,
    database,
    editions,
    feeds,
    init,
    newsletters,
    schedule,
    send,
    specials,
    sponsors,
    status,
    stories,
    subscribers,
    web,
    worker,
)
from briefing.cli.common import err_console, refuse_undecodable, reset_state, show, styled
from briefing.cli.rich_help import install as install_light_help_renderer

install_light_help_renderer()  # --help and usage errors without markdown-it and pygments

DEBUG_ENV = "BRIEFING_DEBUG"  # set to 1 to see the traceback of an unexpected error


class _Root(TyperGroup):
    """The top-level group: sees every argument before any command parses, opens or writes anything."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        refuse_undecodable(args)
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="briefing",
    cls=_Root,
    help="Compose and send the morning briefing.\n\nExample: briefing stories list",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root() -> None:
    reset_state()


init.register(app)
database.register(app)
editions.register(app)
send.register(app)
specials.register(app)
worker.register(app)
schedule.register(app)
status.register(app)
feeds.register(app)
api_tokens.register(app)
web.register(app)
bounces.register(app)
app.add_typer(articles.app, name="articles")
app.add_typer(stories.app, name="stories")
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(newsletters.app, name="newsletters")
app.add_typer(sponsors.app, name="sponsors")


def main() -> None:
    """The installed `briefing` command.

    Each command turns the errors it expects into one clear line; this is the last resort for a
    bug, so a person still gets one line and exit 1 (and the traceback with BRIEFING_DEBUG=1).
    """
    try:
        app()
    except BrokenPipeError:
        # The reader of our output went away (`briefing subscribers list | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        show(
            styled("error:", "bold red"),
            f" unexpected {type(exc).__name__}: {first} (run again with {DEBUG_ENV}=1 to see the traceback)",
            err=True,
        )
        err_console.file.flush()
        sys.exit(1)
