"""DWP auditors have no phone: from 0.29.0 a DWP auditor cannot be given one, and making a user
an auditor frees theirs (kept as a former phone, theirs until then), so that no call names them.

Done here for the auditors who have a phone: it is theirs until this upgrade, so what the earlier
version said of the calls answered on it stands. Nothing to undo: a downgrade leaves their phones
among their former phones.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

when = helpdesk.models.base.UTCDateTime(timezone=True)
users = sa.table("users", sa.column("id", sa.Integer), sa.column("role", sa.String),
                 sa.column("phone", sa.String), sa.column("phone_since", when))
former_phones = sa.table("former_phones", sa.column("user_id", sa.Integer), sa.column("phone", sa.String),
                         sa.column("since", when), sa.column("until", when))


def upgrade() -> None:
    connection = op.get_bind()
    upgraded_at = datetime.now(timezone.utc)
    for user_id, phone, since in connection.execute(
            sa.select(users.c.id, users.c.phone, users.c.phone_since)
            .where(users.c.role == "auditor", users.c.phone.is_not(None))).all():
        connection.execute(sa.insert(former_phones).values(user_id=user_id, phone=phone, since=since,
                                                           until=upgraded_at))
        connection.execute(sa.update(users).where(users.c.id == user_id).values(phone=None, phone_since=None))


def downgrade() -> None:
    pass
