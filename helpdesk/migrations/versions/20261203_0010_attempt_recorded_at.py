"""When each callback attempt was entered, so an attempt entered after it was made shows as such.

An attempt made by hand may be entered after its time (after the deadline, even, which
corrects a recorded breach to met); the evidence shows both times. Attempts stored before
this migration have none.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recorded_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_column('recorded_at')
