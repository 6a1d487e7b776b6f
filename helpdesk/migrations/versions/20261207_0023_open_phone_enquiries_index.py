"""A partial index for the answered calls awaiting an outcome: open phone enquiries, a few
among every enquiry ever opened. /metrics counts those calls at every scrape and the agents'
page lists them at every refresh.

Measured on PostgreSQL with 90 days of a busy desk (1,000,000 calls): found from the calls of
the last two days (about 4,700, each looking up its enquiry), the count took 4.7 ms more of
each scrape; a join with every open enquiry, 17 to 25 ms. From this index, a few lookups.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

OPEN_PHONE = "channel = 'phone' AND status = 'open'"


def upgrade() -> None:
    op.create_index('ix_enquiries_open_phone', 'enquiries', ['opened_at'], unique=False,
                    sqlite_where=sa.text(OPEN_PHONE), postgresql_where=sa.text(OPEN_PHONE))


def downgrade() -> None:
    op.drop_index('ix_enquiries_open_phone', table_name='enquiries')
