"""When each user last signed in, for the Users page: an account nobody has used for months is
one to deactivate. Empty for users who have not signed in since this revision.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from helpdesk.models.base import UTCDateTime

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: ALTER TABLE on SQLite too, no rebuild (see 0016).
    op.add_column('users', sa.Column('last_signed_in_at', UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('users', 'last_signed_in_at')
