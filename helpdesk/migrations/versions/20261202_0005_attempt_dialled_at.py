"""callback_attempts.dialled_at: when the caller was dialled, which is what the three-hour rule counts.

A "Call back now" attempt rings the agent first and dials the caller only once the agent
answers; until then it has no dialled_at. An attempt an agent enters was dialled when it
started. Attempts stored before this revision, even one still under way, were counted when
they started, so they are taken as dialled then: they keep the judgement they were given.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dialled_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE callback_attempts SET dialled_at = started_at")


def downgrade() -> None:
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_column('dialled_at')
