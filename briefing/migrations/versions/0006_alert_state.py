"""alert state

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:00:00.000000

One row per (edition date, problem) the editors were alerted to: a restarted scheduler reads it and
does not alert again, and the row's resolved_at says when the follow-up went out.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
import briefing.models


revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('alert_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('edition_date', sa.Date(), nullable=False),
    sa.Column('problem', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('raised_at', briefing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('notified_at', briefing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', briefing.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('edition_date', 'problem', name='uq_alert_state_edition_problem')
    )
    with op.batch_alter_table('alert_state', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_state_resolved_at'), ['resolved_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_state', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_state_resolved_at'))

    op.drop_table('alert_state')
