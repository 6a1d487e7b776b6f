"""Two-step sign-in: each user's authenticator app key, since when it is set up, the last step
whose code was taken; and their recovery codes (as digests).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from helpdesk.models.base import UTCDateTime

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: ALTER TABLE on SQLite too, no rebuild of users (see 0016).
    op.add_column('users', sa.Column('two_step_secret', sa.String(length=32), nullable=True))
    op.add_column('users', sa.Column('two_step_since', UTCDateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('two_step_last_step', sa.Integer(), nullable=True))
    op.create_table(
        'recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_at', UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_recovery_codes_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes')),
    )
    op.create_index(op.f('ix_recovery_codes_user_id'), 'recovery_codes', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_recovery_codes_user_id'), table_name='recovery_codes')
    op.drop_table('recovery_codes')
    op.drop_column('users', 'two_step_last_step')
    op.drop_column('users', 'two_step_since')
    op.drop_column('users', 'two_step_secret')
