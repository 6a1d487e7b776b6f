"""The event journal: every accepted Twilio webhook, as received, append-only."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from helpdesk.models.base import Base, UTCDateTime


# Calls found in Twilio's call log that never reached the app (helpdesk/voice/missed.py):
# few, counted on every scrape. The condition is in the SQL itself (see `found_in_log`).
FOUND_IN_LOG = "kind = 'api_log'"


class TwilioEvent(Base):
    __tablename__ = "twilio_events"
    __table_args__ = (
        Index("ix_twilio_events_call_sid_id", "call_sid", "id"),
        Index("ix_twilio_events_found_in_log", "id", sqlite_where=text(FOUND_IN_LOG),
              postgresql_where=text(FOUND_IN_LOG)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Which webhook it came to: incoming, status, gather, dial_action, agent_status, queue_wait, ...
    kind: Mapped[str] = mapped_column(String(32))
    # The inbound call the event belongs to (the parent leg for agent legs).
    call_sid: Mapped[str] = mapped_column(String(64))
    # The leg the event is about (the CallSid parameter).
    leg_sid: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the webhook path and its parameters: a redelivery has the same fingerprint.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    idempotency_token: Mapped[str | None] = mapped_column(String(128))
    # The form parameters exactly as received, as JSON pairs in arrival order.
    params: Mapped[str] = mapped_column(Text)
    # What the app decided when it answered (e.g. "agents", "out_of_hours"), for TwiML requests.
    decision: Mapped[str | None] = mapped_column(String(32))


def found_in_log():
    """The events of calls found in Twilio's call log, written so the planner uses
    ix_twilio_events_found_in_log: it cannot tell that a bound parameter matches the index."""
    return text(FOUND_IN_LOG)
