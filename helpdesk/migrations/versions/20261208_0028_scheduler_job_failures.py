"""Each scheduler job's last failure, with its lease: when (failed_at) and why (failure: the
exception as the scheduler's log says it, numbers and addresses removed), so that the System
page can say a job runs but fails. Cleared by the job's next run that succeeds.

Nothing to fill in: failures before the upgrade were only logged.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-08
"""
import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scheduler_leases') as batch:
        batch.add_column(sa.Column('failed_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('failure', sa.String(length=400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scheduler_leases') as batch:
        batch.drop_column('failure')
        batch.drop_column('failed_at')
