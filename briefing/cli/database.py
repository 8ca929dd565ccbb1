"""`briefing init` and `briefing db ...`: create and upgrade the database."""

from __future__ import annotations

import typer

from briefing.cli.common import console, handle_errors, state
from briefing.db import current_revision, head_revision, make_engine, upgrade

db_app = typer.Typer(help="Database schema.\n\nExample: briefing db current", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(db_app, name="db")


@handle_errors
def init() -> None:
    """Create the database, or upgrade it to the current schema.

    Example: BRIEFING_DATABASE_URL=sqlite:///briefing.db briefing init
    """
    engine = make_engine(state().settings.database_url)
    upgrade(engine)
    console.print(f"Database ready at schema {current_revision(engine)} ({engine.url.render_as_string()}).")


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply every pending migration.

    Example: briefing db upgrade
    """
    engine = make_engine(state().settings.database_url)
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if before == after:
        console.print(f"Already at the newest schema ({after}).")
    else:
        console.print(f"Upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
@handle_errors
def db_current() -> None:
    """Show the schema revision of the database and the newest one available.

    Example: briefing db current
    """
    engine = make_engine(state().settings.database_url)
    current = current_revision(engine)
    head = head_revision()
    console.print(f"database: {current or 'empty'}\nnewest:   {head}")
    if current != head:
        console.print("Run `briefing db upgrade` to bring it up to date.")
