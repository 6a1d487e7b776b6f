"""What Twilio's REST API last said about each call the scheduler asked it about.

The scheduler asks about 50 unfinished calls a run, oldest first. Calls that Twilio does not
know, or that stay live, were asked about again every run, for two days, before any newer
call: 50 of them kept every other call from being finished. With this table, calls never
asked about come first, then those asked about longest ago.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('twilio_lookups',
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('asked_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answer', sa.String(length=16), nullable=False),
    sa.Column('times', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('call_sid', name=op.f('pk_twilio_lookups'))
    )


def downgrade() -> None:
    op.drop_table('twilio_lookups')
