"""Restores from a backup, recorded by `helpdesk db after-restore`: the window the database lost.
And an index of open callbacks by number, for the agents' page, which names the other
callbacks owed to the numbers it shows.

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
        sa.Column('lost_until', UTCDateTime(timezone=True), nullable=False),
        sa.Column('restored_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('recorded_by_id', sa.Integer(), nullable=False),
        sa.Column('references', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_callbacks_status_number', 'callbacks', ['status', 'caller_number'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_callbacks_status_number', table_name='callbacks')
    op.drop_table('restores')
