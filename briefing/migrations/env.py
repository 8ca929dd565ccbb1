"""Alembic environment: runs on the connection that briefing.db.upgrade() passes in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import briefing.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from briefing.db import make_engine

target_metadata = SQLModel.metadata
config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _configure_and_run(conn)
    engine.dispose()


def _configure_and_run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
