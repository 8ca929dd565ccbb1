"""sender heartbeats and tallies

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 12:00:00.000000

One row per sending run on an edition: its heartbeat says it is alive from any host, and its
tally is what the whole edition's progress is summed from (no count of the ledger per tick).
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import briefing.models


revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('sender',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('edition_id', sa.Integer(), nullable=False),
    sa.Column('host', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('connections', sa.Integer(), nullable=False),
    sa.Column('started_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', briefing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('deferred', sa.Integer(), nullable=False),
    sa.Column('ambiguous', sa.Integer(), nullable=False),
    sa.Column('rate', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['edition_id'], ['edition.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner')
    )
    with op.batch_alter_table('sender', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sender_edition_id'), ['edition_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sender', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sender_edition_id'))

    op.drop_table('sender')
