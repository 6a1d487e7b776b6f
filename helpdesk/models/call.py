"""A call's record, recomputed from all its events in the journal."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, and_, false, func, select, text
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base, UTCDateTime
from helpdesk.models.event import TwilioEvent, found_in_log

# The condition of the partial index ix_calls_unfinished (the same on both databases): no
# ending yet, and not a conversation going on.
UNFINISHED = "ended_at IS NULL AND outcome <> 'answered'"


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_arrived_at", "arrived_at"),
        # Unfinished calls, by arrival: few, looked for on every scrape and reconcile run. A
        # partial index, so no other query's plan sees it (see `unfinished`).
        Index("ix_calls_unfinished", "arrived_at", sqlite_where=text(UNFINISHED), postgresql_where=text(UNFINISHED)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answer_seconds: Mapped[float | None] = mapped_column(Float)
    rings: Mapped[int | None] = mapped_column(Integer)
    # answered, abandoned, no_answer, voicemail, out_of_hours, failed, in_progress
    outcome: Mapped[str] = mapped_column(String(16), default="in_progress")
    in_hours: Mapped[bool] = mapped_column(Boolean, default=True)
    countable: Mapped[bool] = mapped_column(Boolean, default=False)
    # "met", "breached", or None while undecided or not counted.
    sla_result: Mapped[str | None] = mapped_column(String(8))
    caller_number: Mapped[str | None] = mapped_column(String(32))
    # dwp, customer, unknown
    caller_type: Mapped[str] = mapped_column(String(16), default="unknown")
    agent_leg_sid: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(128))
    # False when only status callbacks were seen: arrival is then estimated from them.
    incoming_seen: Mapped[bool] = mapped_column(Boolean, default=True)
    # True when Twilio's REST API finished the record: the call's last webhooks never came.
    from_api: Mapped[bool] = mapped_column(Boolean, server_default=false())
    config_version: Mapped[str | None] = mapped_column(String(32))
    enquiry_id: Mapped[int | None] = mapped_column(ForeignKey("enquiries.id"))

    enquiry = relationship("Enquiry")

    @hybrid_property
    def answer_moment(self) -> datetime | None:
        """When the call was answered, or arrived if that is not known: what an outcome recorded
        late (callbacks.awaiting) and who had the phone then (helpdesk.pages.taken_by) are judged
        from. In SQL too, the same."""
        return self.answered_at or self.arrived_at

    @answer_moment.inplace.expression
    @classmethod
    def _answer_moment_expression(cls):
        return func.coalesce(cls.answered_at, cls.arrived_at)


def unfinished():
    """Calls with no ending yet, other than answered calls (conversations going on): written so
    the planner uses ix_calls_unfinished, with the condition in the SQL itself, because a
    planner cannot tell that a bound parameter matches the index."""
    return text(UNFINISHED)


def never_reached():
    """Calls that never reached the help desk: found in Twilio's call log (helpdesk/voice/missed.py),
    with no incoming webhook since (one replayed from a spool would mean the app heard it)."""
    return and_(Call.incoming_seen.is_(False),
                Call.call_sid.in_(select(TwilioEvent.call_sid).where(found_in_log())))
