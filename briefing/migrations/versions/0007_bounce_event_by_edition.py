"""bounce events by edition

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 12:00:00.000000

The rates of an edition (`briefing editions show`, the editions page, `briefing status`) read its
bounce events by edition; without this index each of them scans every event ever recorded.
"""
from typing import Sequence, Union

from alembic import op


revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('bounce_event', schema=None) as batch_op:
        batch_op.create_index('ix_bounce_event_edition_kind', ['edition_id', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bounce_event', schema=None) as batch_op:
        batch_op.drop_index('ix_bounce_event_edition_kind')
