"""The audit log: who did what, when (evidence exports and other sensitive actions)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, event, select
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime
from helpdesk.models.user import User


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # A signed-in user, or None for the command line (then `actor` names the system user).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(128))
    # The role `user_id` had when the entry was written (set as it is stored, below); None for
    # the command line and the help desk itself, and for entries older than revision 0018.
    actor_role: Mapped[str | None] = mapped_column(String(16))
    # e.g. "evidence.export"
    action: Mapped[str] = mapped_column(String(64))
    # JSON with the details (for exports: the date range, redaction, notes, via, manifest hash).
    detail: Mapped[str] = mapped_column(Text, default="{}")


@event.listens_for(AuditEntry, "before_insert")
def _role_then(mapper, connection, entry: AuditEntry) -> None:
    """Every entry by a user records their role as it is now, wherever it is written, in the
    same transaction: a role changed later does not change what the entry says they were."""
    if entry.user_id is not None and entry.actor_role is None:
        entry.actor_role = connection.scalar(select(User.role).where(User.id == entry.user_id))
