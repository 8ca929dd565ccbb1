"""ids never reused, editor session epoch

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00.000000

Subscriber, editor and API token ids are in reader links, session cookies and tokens. Without
AUTOINCREMENT SQLite hands the highest deleted id to the next row, so a link kept by an erased
reader would point at whoever signs up next. SQLite can only gain AUTOINCREMENT by recreating the
table; every row keeps its id. PostgreSQL sequences never go back, so there only the new column
is added.

Recreating `subscriber` drops the old table, and with foreign keys on SQLite deletes the rows that
reference it (the ledger's ON DELETE CASCADE) before it does. The ledger rows are set aside in a
temporary table for the length of the recreate and put back unchanged.
"""

from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

KEEP = "_briefing_delivery_keep"


def _on_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _recreate(table: str, *, autoincrement: bool) -> None:
    with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def _recreate_subscriber(*, autoincrement: bool) -> None:
    op.execute(f"CREATE TEMP TABLE {KEEP} AS SELECT * FROM delivery")
    op.execute("DELETE FROM delivery")
    _recreate("subscriber", autoincrement=autoincrement)
    op.execute(f"INSERT INTO delivery SELECT * FROM {KEEP}")
    op.execute(f"DROP TABLE {KEEP}")


def upgrade() -> None:
    if not _on_sqlite():
        op.add_column("editor", sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))
        return
    _recreate_subscriber(autoincrement=True)
    _recreate("api_token", autoincrement=True)
    with op.batch_alter_table(
        "editor", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    if not _on_sqlite():
        op.drop_column("editor", "session_epoch")
        return
    with op.batch_alter_table(
        "editor", recreate="always", table_kwargs={"sqlite_autoincrement": False}
    ) as batch_op:
        batch_op.drop_column("session_epoch")
    _recreate("api_token", autoincrement=False)
    _recreate_subscriber(autoincrement=False)
