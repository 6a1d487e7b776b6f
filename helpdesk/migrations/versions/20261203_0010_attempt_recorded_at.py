"""When each callback attempt was entered, so an attempt entered after it was made shows as such;
and callbacks earlier versions withdrew as never owed are no longer counted.

An attempt made by hand may be entered after its time (after the deadline, even, which
corrects a recorded breach to met); the evidence shows both times. Attempts stored before
this migration have none.

A callback the app withdrew because its call turned out to be answered was never owed, but
earlier versions kept a breach recorded for it (by the sweep, before the answer came to light,
or after). Such results are cleared here, each with an entry in the audit log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""
import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recorded_at', helpdesk.models.base.UTCDateTime(timezone=True), nullable=True))
    _uncount_never_owed()


def _uncount_never_owed() -> None:
    when = helpdesk.models.base.UTCDateTime(timezone=True)
    callbacks = sa.table('callbacks', sa.column('id', sa.Integer), sa.column('reason', sa.String),
                         sa.column('outcome', sa.String), sa.column('closed_by_id', sa.Integer),
                         sa.column('sla_result', sa.String), sa.column('breached_at', when))
    audit = sa.table('audit_log', sa.column('at', when), sa.column('user_id', sa.Integer),
                     sa.column('actor', sa.String), sa.column('action', sa.String), sa.column('detail', sa.Text))
    never_owed = sa.and_(callbacks.c.outcome == 'withdrawn', callbacks.c.closed_by_id.is_(None),
                         callbacks.c.reason != 'not_concluded', callbacks.c.sla_result.is_not(None))
    bind = op.get_bind()
    found = bind.execute(sa.select(callbacks.c.id, callbacks.c.sla_result).where(never_owed)).all()
    if not found:
        return
    now = datetime.now(timezone.utc)
    bind.execute(sa.insert(audit), [
        {"at": now, "user_id": None, "actor": "helpdesk db upgrade", "action": "callback.not_owed_uncounted",
         "detail": json.dumps({"callback_id": callback_id, "was": result, "migration": "0010"}, sort_keys=True)}
        for callback_id, result in found])
    bind.execute(sa.update(callbacks).where(never_owed).values(sla_result=None, breached_at=None))


def downgrade() -> None:
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.drop_column('recorded_at')
