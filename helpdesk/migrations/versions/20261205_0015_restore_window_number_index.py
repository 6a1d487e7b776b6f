"""A restore's window ends at the failure (`lost_until`), not when it was recorded; and an index
of callbacks by status and number, for the agents' page, which names the other callbacks owed
to the numbers it shows.

Both were first written into 0014 before 0.9.0 was released: a database migrated then may
have either already, so each is added only where it is missing. A restore recorded without
`lost_until` keeps the window it was recorded with (up to `restored_at`).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

from helpdesk.models.base import UTCDateTime

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

INDEX = 'ix_callbacks_status_number'


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if 'lost_until' not in {column['name'] for column in inspector.get_columns('restores')}:
        with op.batch_alter_table('restores') as batch:
            batch.add_column(sa.Column('lost_until', UTCDateTime(timezone=True), nullable=True))
        op.execute("UPDATE restores SET lost_until = restored_at")
        with op.batch_alter_table('restores') as batch:
            batch.alter_column('lost_until', existing_type=UTCDateTime(timezone=True), nullable=False)
    if INDEX not in {index['name'] for index in inspector.get_indexes('callbacks')}:
        op.create_index(INDEX, 'callbacks', ['status', 'caller_number'], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name='callbacks')
    with op.batch_alter_table('restores') as batch:
        batch.drop_column('lost_until')
