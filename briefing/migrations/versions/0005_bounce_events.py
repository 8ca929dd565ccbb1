"""bounce events

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00.000000

Bounces and complaints that came back to the bounce address, one row per (report, reader): the
unique (message_sha256, subscriber_id) makes the same report read twice count once.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import briefing.models


revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('bounce_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('edition_id', sa.Integer(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('diagnostic', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('message_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['edition_id'], ['edition.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscriber.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_sha256', 'subscriber_id', name='uq_bounce_event_message_subscriber')
    )
    with op.batch_alter_table('bounce_event', schema=None) as batch_op:
        batch_op.create_index('ix_bounce_event_subscriber_received', ['subscriber_id', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounce_event_received_at'), ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bounce_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bounce_event_received_at'))
        batch_op.drop_index('ix_bounce_event_subscriber_received')

    op.drop_table('bounce_event')
