"""Calls, their Twilio events (the journal), enquiries with yearly references, and users.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa
import helpdesk.models.base


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enquiries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('opened_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enquiries')),
    sa.UniqueConstraint('call_sid', name=op.f('uq_enquiries_call_sid')),
    sa.UniqueConstraint('reference', name=op.f('uq_enquiries_reference'))
    )
    op.create_table('reference_counters',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_reference_counters'))
    )
    op.create_table('twilio_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('leg_sid', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('idempotency_token', sa.String(length=128), nullable=True),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('decision', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_twilio_events')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_twilio_events_fingerprint'))
    )
    with op.batch_alter_table('twilio_events', schema=None) as batch_op:
        batch_op.create_index('ix_twilio_events_call_sid_id', ['call_sid', 'id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('arrived_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('answered_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('answer_seconds', sa.Float(), nullable=True),
    sa.Column('rings', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('in_hours', sa.Boolean(), nullable=False),
    sa.Column('countable', sa.Boolean(), nullable=False),
    sa.Column('sla_result', sa.String(length=8), nullable=True),
    sa.Column('caller_number', sa.String(length=32), nullable=True),
    sa.Column('caller_type', sa.String(length=16), nullable=False),
    sa.Column('agent_leg_sid', sa.String(length=64), nullable=True),
    sa.Column('agent', sa.String(length=128), nullable=True),
    sa.Column('incoming_seen', sa.Boolean(), nullable=False),
    sa.Column('config_version', sa.String(length=32), nullable=True),
    sa.Column('enquiry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['enquiry_id'], ['enquiries.id'], name=op.f('fk_calls_enquiry_id_enquiries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('call_sid', name=op.f('uq_calls_call_sid'))
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_arrived_at', ['arrived_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_arrived_at')

    op.drop_table('calls')
    op.drop_table('users')
    with op.batch_alter_table('twilio_events', schema=None) as batch_op:
        batch_op.drop_index('ix_twilio_events_call_sid_id')

    op.drop_table('twilio_events')
    op.drop_table('reference_counters')
    op.drop_table('enquiries')
