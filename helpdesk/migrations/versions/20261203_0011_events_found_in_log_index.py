"""A partial index of the calls found in Twilio's call log, which never reached the app.

`/metrics` counts them on every scrape (helpdesk_calls_found_in_twilio_log_total). They are
few among the journal's events, so the count reads this small index rather than the table.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    where = sa.text("kind = 'api_log'")
    op.create_index('ix_twilio_events_found_in_log', 'twilio_events', ['id'], unique=False, sqlite_where=where,
                    postgresql_where=where)


def downgrade() -> None:
    op.drop_index('ix_twilio_events_found_in_log', table_name='twilio_events')
