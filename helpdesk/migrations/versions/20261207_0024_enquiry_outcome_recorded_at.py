"""When an agent recorded what became of an answered call's enquiry (concluded on the call, or
a callback needed): calls.csv says it, as callback_attempts.csv says when an attempt was
entered, so an outcome recorded days later (the agents' page shows answered calls with no
outcome for 28 days) is seen to be late.

Filled in for the enquiries recorded before: a concluded one's closed_at, and the time its
not-concluded callback was stored (found by its contact key, which is unique and indexed).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('enquiries', sa.Column('outcome_recorded_at', helpdesk.models.base.UTCDateTime(timezone=True),
                                           nullable=True))
    op.execute("UPDATE enquiries SET outcome_recorded_at = closed_at "
               "WHERE channel = 'phone' AND status = 'concluded'")
    op.execute("UPDATE enquiries SET outcome_recorded_at = (SELECT callbacks.created_at FROM callbacks "
               "WHERE callbacks.contact_key = 'call:' || enquiries.call_sid AND callbacks.reason = 'not_concluded') "
               "WHERE channel = 'phone' AND status = 'callback_owed'")


def downgrade() -> None:
    with op.batch_alter_table('enquiries') as batch:
        batch.drop_column('outcome_recorded_at')
