"""The `briefing` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from briefing.cli import (
    api_tokens,
    articles,
    database,
    editions,
    feeds,
    schedule,
    send,
    stories,
    subscribers,
    web,
)
from briefing.cli.common import reset_state

app = typer.Typer(
    name="briefing",
    help="Compose and send the morning briefing.\n\nExample: briefing stories list",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root() -> None:
    reset_state()


database.register(app)
editions.register(app)
send.register(app)
schedule.register(app)
feeds.register(app)
api_tokens.register(app)
web.register(app)
app.add_typer(articles.app, name="articles")
app.add_typer(stories.app, name="stories")
app.add_typer(subscribers.app, name="subscribers")


def main() -> None:
    app()
