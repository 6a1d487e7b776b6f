"""Email enquiries, acknowledgements, IMAP positions, audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa
import helpdesk.models.base


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imap_mailbox_states',
    sa.Column('mailbox', sa.String(length=300), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('checked_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('mailbox', name=op.f('pk_imap_mailbox_states'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_audit_log_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('inbound_emails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('received_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=500), nullable=True),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.Column('raw_sha256', sa.String(length=64), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=True),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('enquiry_id', sa.Integer(), nullable=True),
    sa.Column('source_ref', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['enquiry_id'], ['enquiries.id'], name=op.f('fk_inbound_emails_enquiry_id_enquiries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_emails')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_inbound_emails_dedupe_key'))
    )
    with op.batch_alter_table('inbound_emails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_emails_enquiry_id'), ['enquiry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_emails_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_inbound_emails_received_at', ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_emails_sender'), ['sender'], unique=False)

    op.create_table('email_acknowledgements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enquiry_id', sa.Integer(), nullable=False),
    sa.Column('inbound_email_id', sa.Integer(), nullable=False),
    sa.Column('to_address', sa.String(length=320), nullable=False),
    sa.Column('received_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('sent_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('message_id', sa.String(length=500), nullable=True),
    sa.Column('sla_result', sa.String(length=8), nullable=True),
    sa.ForeignKeyConstraint(['enquiry_id'], ['enquiries.id'], name=op.f('fk_email_acknowledgements_enquiry_id_enquiries')),
    sa.ForeignKeyConstraint(['inbound_email_id'], ['inbound_emails.id'], name=op.f('fk_email_acknowledgements_inbound_email_id_inbound_emails')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_acknowledgements')),
    sa.UniqueConstraint('enquiry_id', name=op.f('uq_email_acknowledgements_enquiry_id'))
    )
    with op.batch_alter_table('email_acknowledgements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_acknowledgements_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_email_acknowledgements_received_at'), ['received_at'], unique=False)
        batch_op.create_index('ix_email_acknowledgements_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('closed_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_enquiries_closed_by_id_users'), 'users', ['closed_by_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('enquiries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_enquiries_closed_by_id_users'), type_='foreignkey')
        batch_op.drop_column('closed_by_id')
        batch_op.drop_column('closed_at')

    with op.batch_alter_table('email_acknowledgements', schema=None) as batch_op:
        batch_op.drop_index('ix_email_acknowledgements_status_next_attempt_at')
        batch_op.drop_index(batch_op.f('ix_email_acknowledgements_received_at'))
        batch_op.drop_index(batch_op.f('ix_email_acknowledgements_message_id'))

    op.drop_table('email_acknowledgements')
    with op.batch_alter_table('inbound_emails', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_emails_sender'))
        batch_op.drop_index('ix_inbound_emails_received_at')
        batch_op.drop_index(batch_op.f('ix_inbound_emails_message_id'))
        batch_op.drop_index(batch_op.f('ix_inbound_emails_enquiry_id'))

    op.drop_table('inbound_emails')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
    op.drop_table('imap_mailbox_states')
