"""What report.pdf counts: the Tally, filled on the way past as the rows stream (callbacks'
lead times, what was not counted) and by a few grouped queries (answer rings, calls and emails
by what became of them, configuration versions). Counts only, never rows.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Connection

from callbacks.awaiting import recorded_late_sql
from helpdesk.models import Call, Callback, Enquiry, InboundEmail

DECIDED = ("met", "breached")
# What an agent recorded of an answered call's enquiry (calls.csv's enquiry_outcome).
ENQUIRY_OUTCOMES = {"concluded": "concluded", "callback_owed": "callback_needed", "open": "none_recorded"}
RECORDED_OUTCOMES = ("concluded", "callback_needed")  # the two an agent records


@dataclass
class Tally:
    """What report.pdf counts for its charts and its sentences: counts only, never rows."""

    rings: Counter = field(default_factory=Counter)  # counted, answered calls by rings
    unanswered_breaches: int = 0  # counted calls breached without an answer (hung up late, no answer, voicemail)
    lead: Counter = field(default_factory=Counter)  # decided callbacks by time to spare
    withdrawn: int = 0  # callbacks withdrawn before they were decided: not counted
    no_number: int = 0  # callbacks with no number to dial, closed as unreachable before they were decided: not counted
    reached: int = 0  # counted callbacks whose caller was reached
    corrected: int = 0  # counted callbacks met after their breach was recorded (an attempt entered late)
    pending_callbacks: int = 0  # open and not yet due when the pack was made: not counted yet
    pending_acks: int = 0  # not sent and not yet due when the pack was made: not counted yet
    calls: Counter = field(default_factory=Counter)  # calls by (in opening hours, counted, outcome)
    enquiry_outcomes: Counter = field(default_factory=Counter)  # answered calls by ENQUIRY_OUTCOMES
    outcomes_late: Counter = field(default_factory=Counter)  # of those, recorded late (callbacks.awaiting.recorded_late)
    outcomes_undated: Counter = field(default_factory=Counter)  # recorded, but with no time kept (outcome_recorded_at)
    versions: dict = field(default_factory=dict)  # "calls"/"callbacks" -> Counter of configuration versions
    emails: Counter = field(default_factory=Counter)  # emails received by the intake's decision
    awaiting_emails: int = 0  # email enquiries still awaiting a response when the pack was made


# Time to spare at the first attempt (due minus first attempt), in minutes: the charts' buckets.
LEAD_BUCKETS = (
    ("2 hours or more", 120), ("1 to 2 hours", 60), ("30 to 60 minutes", 30), ("0 to 30 minutes", 0),
)
LATE = "Late"
NO_ATTEMPT = "No attempt"


def lead_bucket(due_at: datetime, first_attempt_at: datetime | None) -> str:
    """Which bar of the lead-time chart a callback falls in."""
    if first_attempt_at is None:
        return NO_ATTEMPT
    spare = (due_at - first_attempt_at).total_seconds() / 60
    for label, minimum in LEAD_BUCKETS:
        if spare >= minimum:
            return label
    return LATE


def answer_rings(connection: Connection, start: datetime, end: datetime, tally: Tally) -> None:
    """Counted calls of [start, end) by the ring they were answered on, for the report's chart."""
    counted = and_(Call.countable.is_(True), Call.sla_result.in_(DECIDED))
    answered = Call.answered_at.is_not(None) & Call.rings.is_not(None)
    statement = (
        select(case((answered, Call.rings), else_=None).label("ring"), Call.sla_result, func.count())
        .where(Call.arrived_at >= start, Call.arrived_at < end, counted)
        .group_by(case((answered, Call.rings), else_=None), Call.sla_result)
    )
    for ring, result, count in connection.execute(statement):
        if ring is not None:
            tally.rings[int(ring)] += int(count)
        elif result == "breached":
            tally.unanswered_breaches += int(count)


def call_totals(connection: Connection, start: datetime, end: datetime, tally: Tally) -> None:
    """Calls of [start, end) by opening hours, counted or not, and outcome: what the report says
    was left out of the ten-ring figures, and why."""
    counted = case((and_(Call.countable.is_(True), Call.sla_result.in_(DECIDED)), True), else_=False)
    statement = (
        select(Call.in_hours, counted, Call.outcome, func.count())
        .where(Call.arrived_at >= start, Call.arrived_at < end)
        .group_by(Call.in_hours, counted, Call.outcome)
    )
    for in_hours, was_counted, outcome, count in connection.execute(statement):
        tally.calls[(bool(in_hours), bool(was_counted), outcome)] += int(count)
    # When each outcome was recorded: late, more than a day after the call was answered; undated,
    # recorded with no time kept.
    timing = case((Enquiry.outcome_recorded_at.is_(None), "undated"), (recorded_late_sql(), "late"),
                  else_="in_time")
    statement = (
        select(Enquiry.status, timing, func.count()).select_from(Call).join(Enquiry, Enquiry.id == Call.enquiry_id)
        .where(Call.arrived_at >= start, Call.arrived_at < end, Call.outcome == "answered")
        .group_by(Enquiry.status, timing)
    )
    for status, when, count in connection.execute(statement):
        outcome = ENQUIRY_OUTCOMES.get(status, status)
        tally.enquiry_outcomes[outcome] += int(count)
        if outcome in RECORDED_OUTCOMES and when != "in_time":
            (tally.outcomes_late if when == "late" else tally.outcomes_undated)[outcome] += int(count)


def outcome_facts(tally: Tally) -> dict:
    """manifest.json's enquiry_outcomes: the answered calls by what agents recorded (calls.csv's
    enquiry_outcome), and of the outcomes recorded, how many over a day after the call was answered
    and how many at a time not kept (enquiry_outcome_recorded blank)."""
    return {
        "answered_calls": {name: tally.enquiry_outcomes[name] for name in ENQUIRY_OUTCOMES.values()},
        "recorded_over_a_day_after_the_answer": {name: tally.outcomes_late[name] for name in RECORDED_OUTCOMES},
        "recorded_at_a_time_not_kept": {name: tally.outcomes_undated[name] for name in RECORDED_OUTCOMES},
    }


def email_totals(connection: Connection, start: datetime, end: datetime, tally: Tally) -> None:
    """Emails received in [start, end) by what the intake decided: the report says which were not enquiries."""
    statement = (select(InboundEmail.decision, func.count())
                 .where(InboundEmail.received_at >= start, InboundEmail.received_at < end)
                 .group_by(InboundEmail.decision))
    for decision, count in connection.execute(statement):
        tally.emails[decision] += int(count)


def config_versions(connection: Connection, start: datetime, end: datetime, tally: Tally) -> None:
    """Which configuration versions judged the calls and callbacks of [start, end), and how many each."""
    for name, model, contact in (("calls", Call, Call.arrived_at), ("callbacks", Callback, Callback.owed_from)):
        statement = (select(model.config_version, func.count()).where(contact >= start, contact < end)
                     .group_by(model.config_version))
        versions = tally.versions.setdefault(name, Counter())
        for version, count in connection.execute(statement):
            versions[version or ""] += int(count)  # None and "" alike: no version recorded
