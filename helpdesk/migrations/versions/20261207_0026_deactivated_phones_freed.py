"""Phones of deactivated users are freed: from 0.28.0 deactivating a user keeps their phone as a
former phone, theirs until then, and takes it off them, so that "Answered by" no longer names
a leaver for calls answered on it after they left (it may have gone to someone else).

Done here for the users deactivated before: each one's phone is theirs until they were last
deactivated (the audit log's user.deactivated entry), or until this upgrade for a user with no
such entry or given the phone while deactivated. Nothing to undo: a downgrade leaves their
phones among their former phones.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""
import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

import helpdesk.models.base

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

when = helpdesk.models.base.UTCDateTime(timezone=True)
users = sa.table("users", sa.column("id", sa.Integer), sa.column("active", sa.Boolean),
                 sa.column("phone", sa.String), sa.column("phone_since", when))
former_phones = sa.table("former_phones", sa.column("user_id", sa.Integer), sa.column("phone", sa.String),
                         sa.column("since", when), sa.column("until", when))
audit_log = sa.table("audit_log", sa.column("at", when), sa.column("action", sa.String), sa.column("detail", sa.Text))


def upgrade() -> None:
    connection = op.get_bind()
    holding = connection.execute(sa.select(users.c.id, users.c.phone, users.c.phone_since)
                                 .where(users.c.active == sa.false(), users.c.phone.is_not(None))).all()
    if not holding:
        return
    last_deactivated: dict[int, datetime] = {}
    for at, detail in connection.execute(sa.select(audit_log.c.at, audit_log.c.detail)
                                         .where(audit_log.c.action == "user.deactivated")):
        try:
            user_id = json.loads(detail)["user_id"]
        except (ValueError, KeyError, TypeError):
            continue
        if user_id not in last_deactivated or at > last_deactivated[user_id]:
            last_deactivated[user_id] = at
    upgraded_at = datetime.now(timezone.utc)
    for user_id, phone, since in holding:
        until = last_deactivated.get(user_id, upgraded_at)
        if since is not None and since >= until:  # given to them while deactivated: theirs until now, as it was
            until = upgraded_at
        connection.execute(sa.insert(former_phones).values(user_id=user_id, phone=phone, since=since, until=until))
        connection.execute(sa.update(users).where(users.c.id == user_id).values(phone=None, phone_since=None))


def downgrade() -> None:
    pass
