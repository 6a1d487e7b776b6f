"""Evidence packs being built for scripts, so that each user has one at a time.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from helpdesk.models.base import UTCDateTime

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'pack_builds',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('claim', sa.String(length=32), nullable=False),
        sa.Column('started_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_pack_builds_user_id_users')),
        sa.PrimaryKeyConstraint('user_id', name=op.f('pk_pack_builds')),
    )


def downgrade() -> None:
    op.drop_table('pack_builds')
