"""The partial index of unfinished calls covers every call with no ending, other than answered.

Revision 0006 indexed only the calls still "in progress". A call can have its outcome and
still no ending: the caller rang out to voicemail, or hung up during the <Dial>, and the
call's last status callback never came. Such a call owes its callback only once it has
ended, so the scheduler must ask Twilio about it too, and `helpdesk_calls_unfinished` must
count it. Answered calls with no ending yet are conversations going on: left out.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_calls_in_progress', table_name='calls')
    where = sa.text("ended_at IS NULL AND outcome <> 'answered'")
    op.create_index('ix_calls_unfinished', 'calls', ['arrived_at'], unique=False, sqlite_where=where,
                    postgresql_where=where)


def downgrade() -> None:
    op.drop_index('ix_calls_unfinished', table_name='calls')
    where = sa.text("outcome = 'in_progress'")
    op.create_index('ix_calls_in_progress', 'calls', ['arrived_at'], unique=False, sqlite_where=where,
                    postgresql_where=where)
