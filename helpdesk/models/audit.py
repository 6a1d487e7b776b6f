"""The audit log: who did what, when (evidence exports and other sensitive actions)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # A signed-in user, or None for the command line (then `actor` names the system user).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(128))
    # e.g. "evidence.export"
    action: Mapped[str] = mapped_column(String(64))
    # JSON with the details (for exports: the date range, redaction, notes, via, manifest hash).
    detail: Mapped[str] = mapped_column(Text, default="{}")
