"""What Twilio's REST API last said about a call the scheduler asked it about."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime


class TwilioLookup(Base):
    """One row per call asked about (an inbound call, or a "Call back now" call), kept up to date.

    The scheduler asks about a limited number of calls a run. It asks first about calls never
    asked about, then about those asked about longest ago, so calls Twilio does not know, or
    that stay live, cannot keep the others from being asked about.
    """

    __tablename__ = "twilio_lookups"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # ended, live (still going on, or a recording still being made), unknown (HTTP 404), failed
    answer: Mapped[str] = mapped_column(String(16))
    times: Mapped[int] = mapped_column(Integer)  # how often it has been asked about
