"""Each user's PIN for the agents' line (queue mode's `routing.agents_pin`), as a password
hash, and how many wrong PINs have been typed since the last right one: the PIN locks at 5.

Nothing to fill in: nobody has a PIN until they set one.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('agents_pin_hash', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('agents_pin_failures', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.drop_column('agents_pin_failures')
        batch.drop_column('agents_pin_hash')
