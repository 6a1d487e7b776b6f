"""Links emailed to users to choose a password: each user's email address, and the links sent
and not yet used (their secret only as a digest).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from helpdesk.models.base import UTCDateTime

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column without a default, and a unique index rather than a constraint:
    # ALTER TABLE and CREATE INDEX on SQLite too, no rebuild of users (see 0016).
    op.add_column('users', sa.Column('email', sa.String(length=254), nullable=True))
    op.create_index(op.f('ix_users_email'), 'users', ['email'], unique=True)
    op.create_table(
        'password_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('password_mark', sa.String(length=32), nullable=False),
        sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_links_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_password_links')),
        sa.UniqueConstraint('digest', name=op.f('uq_password_links_digest')),
    )
    op.create_index(op.f('ix_password_links_user_id'), 'password_links', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_password_links_user_id'), table_name='password_links')
    op.drop_table('password_links')
    op.drop_index(op.f('ix_users_email'), table_name='users')
    op.drop_column('users', 'email')
