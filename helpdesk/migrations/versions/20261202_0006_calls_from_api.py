"""calls.from_api, and a partial index of the calls still in progress, by arrival.

`from_api` is true when Twilio's REST API finished a call's record because its last webhooks
never came (helpdesk/voice/reconcile.py); every call stored before this revision was not.
The index finds the calls still in progress without a scan: every scrape counts those two
hours old, and the scheduler looks for those to ask Twilio about. It is partial, so that no
other query's plan picks it (an index on (outcome, arrived_at) made SQLite count the settled
calls for /metrics through it, five times slower).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('from_api', sa.Boolean(), server_default=sa.false(), nullable=False))
    where = sa.text("outcome = 'in_progress'")
    op.create_index('ix_calls_in_progress', 'calls', ['arrived_at'], unique=False, sqlite_where=where,
                    postgresql_where=where)


def downgrade() -> None:
    op.drop_index('ix_calls_in_progress', table_name='calls')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('from_api')
