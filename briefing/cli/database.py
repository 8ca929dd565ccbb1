"""`briefing db ...`: upgrade the database and show its schema version."""

import typer

from briefing.cli.common import handle_errors, show, state

db_app = typer.Typer(help="Database schema.\n\nExample: briefing db current", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")  # `briefing init` lives in cli/init.py


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply every pending migration.

    Example: briefing db upgrade
    """
    from briefing.db import current_revision, make_engine, upgrade

    engine = make_engine(state().settings.database_url)
    before = current_revision(engine)
    upgrade(engine, newsletter_name=state().settings.newsletter_name, now=state().now())
    after = current_revision(engine)
    if before == after:
        show(f"Already at the newest schema ({after}).")
    else:
        show(f"Upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
@handle_errors
def db_current() -> None:
    """Show the schema revision of the database and the newest one available.

    Example: briefing db current
    """
    from briefing.db import current_revision, head_revision, make_engine

    engine = make_engine(state().settings.database_url)
    current = current_revision(engine)
    head = head_revision()
    show(f"database: {current or 'empty'}\nnewest:   {head}")
    if current != head:
        show("Run `briefing db upgrade` to bring it up to date.")
