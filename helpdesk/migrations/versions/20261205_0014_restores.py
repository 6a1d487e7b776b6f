"""Restores from a backup, recorded by `helpdesk db after-restore`: the window the database lost.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

from helpdesk.models.base import UTCDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'restores',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('backup_taken_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('restored_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('recorded_by_id', sa.Integer(), nullable=False),
        sa.Column('references', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('restores')
