"""Restores of the database from a backup: what the database lost, so nothing reads the gap as real."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime


class Restore(Base):
    """Recorded by `helpdesk db after-restore`: the database was put back to a backup taken at
    `backup_taken_at`, so what it took in from then until `lost_until` (the failure) is missing
    from it. After `lost_until` the app was down: calls then never reached it."""

    __tablename__ = "restores"

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lost_until: Mapped[datetime] = mapped_column(UTCDateTime)
    restored_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # JSON: each year's reference counter before and after it was moved on.
    references: Mapped[str] = mapped_column(Text, default="{}")
