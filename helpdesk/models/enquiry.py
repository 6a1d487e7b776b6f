"""Enquiries (one per call or email) and the yearly reference counter."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime


# The condition of the partial index ix_enquiries_open_email (migration 0013): the email
# enquiries on the agents' page, a few among every enquiry ever opened.
OPEN_EMAIL = "channel = 'email' AND status = 'open'"
# The condition of the partial index ix_enquiries_open_phone (migration 0023): the answered
# calls awaiting an outcome (callbacks.awaiting), and calls whose outcome was never recorded.
OPEN_PHONE = "channel = 'phone' AND status = 'open'"


class Enquiry(Base):
    __tablename__ = "enquiries"
    __table_args__ = (
        Index("ix_enquiries_open_email", "opened_at", "id", sqlite_where=text(OPEN_EMAIL),
              postgresql_where=text(OPEN_EMAIL)),
        Index("ix_enquiries_open_phone", "opened_at", sqlite_where=text(OPEN_PHONE), postgresql_where=text(OPEN_PHONE)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # HD-YYYY-NNNNNN, the year being the Europe/London year the contact arrived.
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    channel: Mapped[str] = mapped_column(String(8))  # phone, email
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # For phone enquiries: the inbound call that opened it.
    call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    # When an agent marked the enquiry answered (email enquiries leave the agents' list then).
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # For a phone enquiry: when an agent recorded what became of it (concluded on the call, or a
    # callback needed), so the evidence shows an outcome recorded late. None while none is.
    outcome_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReferenceCounter(Base):
    """The last sequence number given out per year; its row lock serialises allocation."""

    __tablename__ = "reference_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)
