"""Callbacks owed to callers, their attempts, warnings and breaches (once each), scheduler leases, agent phones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa
import helpdesk.models.base


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scheduler_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduler_leases'))
    )
    op.create_table('callbacks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_key', sa.String(length=300), nullable=False),
    sa.Column('enquiry_id', sa.Integer(), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('caller_number', sa.String(length=32), nullable=True),
    sa.Column('caller_type', sa.String(length=16), nullable=False),
    sa.Column('owed_from', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('clock', sa.String(length=8), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('config_version', sa.String(length=32), nullable=False),
    sa.Column('created_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('claimed_by_id', sa.Integer(), nullable=True),
    sa.Column('claimed_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts_count', sa.Integer(), nullable=False),
    sa.Column('first_attempt_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reached_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sla_result', sa.String(length=8), nullable=True),
    sa.Column('breached_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('closed_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_by_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['claimed_by_id'], ['users.id'], name=op.f('fk_callbacks_claimed_by_id_users')),
    sa.ForeignKeyConstraint(['closed_by_id'], ['users.id'], name=op.f('fk_callbacks_closed_by_id_users')),
    sa.ForeignKeyConstraint(['enquiry_id'], ['enquiries.id'], name=op.f('fk_callbacks_enquiry_id_enquiries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callbacks')),
    sa.UniqueConstraint('contact_key', name=op.f('uq_callbacks_contact_key'))
    )
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.create_index('ix_callbacks_status_due_at', ['status', 'due_at'], unique=False)

    op.create_table('callback_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('callback_id', sa.Integer(), nullable=False),
    sa.Column('started_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('answered_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['users.id'], name=op.f('fk_callback_attempts_agent_id_users')),
    sa.ForeignKeyConstraint(['callback_id'], ['callbacks.id'], name=op.f('fk_callback_attempts_callback_id_callbacks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_attempts')),
    sa.UniqueConstraint('call_sid', name=op.f('uq_callback_attempts_call_sid'))
    )
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_attempts_callback_id'), ['callback_id'], unique=False)

    op.create_table('callback_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('callback_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('fell_due_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('emailed_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('email_error', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['callback_id'], ['callbacks.id'], name=op.f('fk_callback_notices_callback_id_callbacks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_callback_notices')),
    sa.UniqueConstraint('callback_id', 'kind', name=op.f('uq_callback_notices_callback_id'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=128), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('phone')

    op.drop_table('callback_notices')
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_callback_attempts_callback_id'))

    op.drop_table('callback_attempts')
    with op.batch_alter_table('callbacks', schema=None) as batch_op:
        batch_op.drop_index('ix_callbacks_status_due_at')

    op.drop_table('callbacks')
    op.drop_table('scheduler_leases')
