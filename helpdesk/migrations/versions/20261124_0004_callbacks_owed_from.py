"""An index on callbacks.owed_from: compliance figures select callbacks by their contact time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.create_index('ix_callbacks_owed_from', ['owed_from'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.drop_index('ix_callbacks_owed_from')
