"""Who had a phone when: users.phone_since, and a table of the phones users had before
(former_phones), so that "Answered by" names whoever had the phone when the call was answered,
not whoever has it now.

Nothing to fill in: when the phones users have now were set was not kept (phone_since stays
None: had since before), nor the phones they had before.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('users', sa.Column('phone_since', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        'former_phones',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=128), nullable=False),
        sa.Column('since', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column('until', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_former_phones_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_former_phones')),
    )
    op.create_index(op.f('ix_former_phones_user_id'), 'former_phones', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_former_phones_user_id'), table_name='former_phones')
    op.drop_table('former_phones')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('phone_since')
