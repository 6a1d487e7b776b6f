"""Whether a user must choose their own password at their next sign-in: true once an
administrator has set it (`helpdesk users add` or `set-password`, unless `--permanent`), false
once the user has changed it themselves on the Change password page.

Users added before this revision keep the passwords they have, with nothing asked of them.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The default as a plain string, so that SQLite adds the column with ALTER TABLE: given an
    # expression (sa.false()), Alembic's batch mode rebuilds the table instead, copying every user.
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('must_change_password', sa.Boolean(), server_default='0', nullable=False))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN on SQLite too (3.35 and later), for the same reason.
    op.drop_column('users', 'must_change_password')
