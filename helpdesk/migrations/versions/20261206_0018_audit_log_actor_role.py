"""The role each audit log entry's user had when they acted: the Audit log page showed the role
they have now, which says nothing of what they could do then. Empty for entries written before
this revision, which it cannot know (the page says the role is the one they have now).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default: ALTER TABLE on SQLite too, no rebuild (see 0016).
    op.add_column('audit_log', sa.Column('actor_role', sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column('audit_log', 'actor_role')
