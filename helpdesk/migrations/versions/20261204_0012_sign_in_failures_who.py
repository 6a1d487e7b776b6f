"""Refused sign-ins are counted under a user's id, or a keyed digest of the name typed, never
the name itself: people type passwords into the username box.

The rows so far held the names typed; they are only a day's count of refused sign-ins, so
they are deleted rather than converted (which would need SECRET_KEY here).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM sign_in_failures")
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_in_failures_username')
        batch_op.alter_column('username', new_column_name='who', existing_type=sa.String(length=64),
                              existing_nullable=False)
    op.create_index(op.f('ix_sign_in_failures_who'), 'sign_in_failures', ['who'], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM sign_in_failures")
    op.drop_index(op.f('ix_sign_in_failures_who'), table_name='sign_in_failures')
    with op.batch_alter_table('sign_in_failures', schema=None) as batch_op:
        batch_op.alter_column('who', new_column_name='username', existing_type=sa.String(length=64),
                              existing_nullable=False)
    op.create_index('ix_sign_in_failures_username', 'sign_in_failures', ['username'], unique=False)
