"""Owed callbacks, their attempts, the warnings and breaches recorded for them, and leases."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base, UTCDateTime

# Why a callback is owed.
REASONS = ("abandoned", "no_answer", "voicemail", "out_of_hours", "failed", "not_concluded", "email")
# How a callback was closed.
CLOSING_OUTCOMES = ("resolved", "unreachable", "withdrawn")


# The conditions of the partial indexes ix_callbacks_undecided and ix_callbacks_breached.
UNDECIDED = "sla_result IS NULL"
BREACHED = "sla_result = 'breached'"


class Callback(Base):
    __tablename__ = "callbacks"
    __table_args__ = (
        Index("ix_callbacks_status_due_at", "status", "due_at"), Index("ix_callbacks_owed_from", "owed_from"),
        # What the sweep looks for every minute among every callback ever owed (migration 0013).
        Index("ix_callbacks_undecided", "id", sqlite_where=text(UNDECIDED), postgresql_where=text(UNDECIDED)),
        Index("ix_callbacks_breached", "id", sqlite_where=text(BREACHED), postgresql_where=text(BREACHED)),
        # The agents' page: the other open callbacks owed to the numbers it shows (migration 0015).
        Index("ix_callbacks_status_number", "status", "caller_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # One callback per contact: "call:<CallSid>", or "email:<reference>" for an email enquiry.
    contact_key: Mapped[str] = mapped_column(String(300), unique=True)
    enquiry_id: Mapped[int] = mapped_column(ForeignKey("enquiries.id"))
    call_sid: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    # None when the caller withheld their number: owed, but it cannot be dialled.
    caller_number: Mapped[str | None] = mapped_column(String(32))
    caller_type: Mapped[str] = mapped_column(String(16), default="unknown")
    owed_from: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    clock: Mapped[str] = mapped_column(String(8))
    # JSON: start, clock, what the deadline crossed (closures, holidays, DST), summary.
    explanation: Mapped[str] = mapped_column(Text)
    config_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # open or closed
    status: Mapped[str] = mapped_column(String(8), default="open")
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts_count: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # met (first attempt at or before due_at) or breached; None while still undecided. A breach
    # is corrected to met if an attempt made in time is entered after the deadline.
    sla_result: Mapped[str | None] = mapped_column(String(8))
    # When the sweep recorded a breach (its due_at); kept if the breach is corrected.
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")

    enquiry = relationship("Enquiry")
    claimed_by = relationship("User", foreign_keys=[claimed_by_id])
    attempts = relationship("CallbackAttempt", order_by="CallbackAttempt.started_at", back_populates="callback")


class CallbackAttempt(Base):
    """A call back to the caller: placed through Twilio or entered by an agent.

    Only an attempt with `dialled_at` rang the caller; only those count (attempts_count,
    first_attempt_at, the retries and the three-hour rule).
    """

    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(8))  # twilio, manual
    call_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # When the caller's phone was dialled, which is what the three-hour rule counts. "Call
    # back now" rings the agent first and dials the caller when they answer; None until then.
    dialled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # placing (Twilio call under way), reached, no_answer, busy, failed, voicemail_left, or
    # not_dialled ("Call back now" ended before the caller was dialled: not an attempt at all)
    outcome: Mapped[str] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
    # When the attempt was entered (an attempt made by hand may be entered after it was made);
    # None for attempts stored before migration 0010.
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    callback = relationship("Callback", back_populates="attempts")
    agent = relationship("User")


class CallbackNotice(Base):
    """A warning or a breach, recorded exactly once per callback and kind."""

    __tablename__ = "callback_notices"
    __table_args__ = (UniqueConstraint("callback_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id"))
    kind: Mapped[str] = mapped_column(String(16))  # warning_30, warning_10, breach
    fell_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_error: Mapped[str | None] = mapped_column(String(300))


class SchedulerLease(Base):
    """Which scheduler may run a job until when, so two never do the same work."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The job's last run that failed, and why (as its log says, numbers and addresses removed);
    # None once a run succeeds again (callbacks.leased_job).
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failure: Mapped[str | None] = mapped_column(String(400))
