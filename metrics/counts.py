"""All-time counts behind the Prometheus counters and the answer-time histogram.

Counters must never go down, so each one counts items whose counted state is final:
finished calls (not `in_progress`), decided SLA results, stored inbound emails. One
grouped query over the calls table gives the call counters and the histogram together.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.orm import Session

from helpdesk.models import Call, Callback, EmailAcknowledgement, InboundEmail
from helpdesk.settings import Settings
from metrics.compliance import Scope

# Finished outcomes (helpdesk/models/call.py) and caller types, zero-initialised as labels.
CALL_OUTCOMES = ("answered", "abandoned", "no_answer", "voicemail", "out_of_hours", "failed")
CALLER_TYPES = ("customer", "dwp", "unknown")
# Beyond the target, in seconds: how late the late answers were.
LATE_BOUNDS = (45.0, 60.0, 90.0, 120.0, 300.0)


def answer_buckets(settings: Settings) -> tuple[float, ...]:
    """Histogram upper bounds: every ring boundary up to the target (3, 6, ... 30 s), then later."""
    rings = tuple(round(n * settings.ring_period_seconds, 6) for n in range(1, settings.max_rings + 1))
    return rings + tuple(bound for bound in LATE_BOUNDS if bound > rings[-1])


@dataclass
class Totals:
    """Counts since records began."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # (outcome, caller_type) -> finished calls
    calls_countable: int = 0
    calls_within_target: int = 0
    answer_bounds: tuple[float, ...] = ()
    answer_cumulative: list[int] = field(default_factory=list)  # per bound, then +Inf
    answer_sum: float = 0.0
    last_answered_at: datetime | None = None
    callbacks: dict[str, int] = field(default_factory=dict)  # met, breached
    emails_received: int = 0
    acknowledgements: dict[str, int] = field(default_factory=dict)  # met, late


def add_totals(a: Totals, b: Totals) -> Totals:
    """The counts of two disjoint sets of rows, together."""
    return Totals(
        calls={key: a.calls.get(key, 0) + b.calls.get(key, 0) for key in {**a.calls, **b.calls}},
        calls_countable=a.calls_countable + b.calls_countable,
        calls_within_target=a.calls_within_target + b.calls_within_target,
        answer_bounds=a.answer_bounds,
        answer_cumulative=[x + y for x, y in zip(a.answer_cumulative, b.answer_cumulative)],
        answer_sum=a.answer_sum + b.answer_sum,
        last_answered_at=max(filter(None, (a.last_answered_at, b.last_answered_at)), default=None),
        callbacks={key: a.callbacks[key] + b.callbacks[key] for key in a.callbacks},
        emails_received=a.emails_received + b.emails_received,
        acknowledgements={key: a.acknowledgements[key] + b.acknowledgements[key] for key in a.acknowledgements},
    )


def totals(session: Session, settings: Settings, scope: Scope | None = None) -> Totals:
    """Every all-time count, in one transaction (five aggregate queries).

    `scope` limits the rows counted (metrics.history adds a cached part to a live part).
    """
    bounds = answer_buckets(settings)
    result = Totals(calls={(o, t): 0 for o in CALL_OUTCOMES for t in CALLER_TYPES}, answer_bounds=bounds,
                    answer_cumulative=[0] * (len(bounds) + 1),
                    callbacks={"met": 0, "breached": 0}, acknowledgements={"met": 0, "late": 0})
    decided = and_(Call.countable == true(), Call.sla_result.in_(("met", "breached")))
    # The histogram covers answered countable calls; a NULL bucket keeps every other call out.
    timed = and_(Call.outcome == "answered", decided, Call.answer_seconds.is_not(None))
    bucket = case(
        (timed, case(*[(Call.answer_seconds <= bound, index) for index, bound in enumerate(bounds)],
                     else_=len(bounds))),
        else_=None,
    ).label("bucket")
    with session.begin():
        rows = session.execute(
            select(Call.outcome, Call.caller_type, bucket, func.count(),
                   func.sum(case((decided, 1), else_=0)),
                   func.sum(case((decided & (Call.sla_result == "met"), 1), else_=0)),
                   func.sum(Call.answer_seconds), func.max(Call.answered_at))
            .where(Call.outcome != "in_progress", *Scope.of(scope, Call))
            .group_by(Call.outcome, Call.caller_type, bucket)
        ).all()
        for outcome, caller_type, index, count, countable, met, seconds, answered_at in rows:
            key = (outcome, caller_type)
            result.calls[key] = result.calls.get(key, 0) + int(count)
            result.calls_countable += int(countable or 0)
            result.calls_within_target += int(met or 0)
            if index is not None:
                for position in range(int(index), len(bounds) + 1):
                    result.answer_cumulative[position] += int(count)
                result.answer_sum += float(seconds or 0.0)
            if outcome == "answered" and answered_at is not None:
                result.last_answered_at = max(filter(None, (result.last_answered_at, answered_at)))
        for sla_result, count in session.execute(
                select(Callback.sla_result, func.count())
                .where(Callback.sla_result.in_(("met", "breached")), *Scope.of(scope, Callback))
                .group_by(Callback.sla_result)):
            result.callbacks[sla_result] = int(count)
        result.emails_received = int(session.scalar(
            select(func.count()).select_from(InboundEmail).where(*Scope.of(scope, InboundEmail))))
        for sla_result, count in session.execute(
                select(EmailAcknowledgement.sla_result, func.count())
                .where(EmailAcknowledgement.sla_result.in_(("met", "late")), *Scope.of(scope, EmailAcknowledgement))
                .group_by(EmailAcknowledgement.sla_result)):
            result.acknowledgements[sla_result] = int(count)
    return result
