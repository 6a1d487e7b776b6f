"""Compliance figures from the stored records: the one source for /metrics, the pages,
the Grafana checks and the evidence exports.

Each item belongs to the period of its contact time (a call's arrival, a callback's
`owed_from`, an email's receipt). Counting is done by SQL aggregates; a period with
nothing countable has no compliance figure (None, shown as "No data"), never 0 or 1.
The period arithmetic is pure and lives in `metrics.periods`; it is re-exported here.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.orm import Session

from callbacks.awaiting import OLDER_DAYS, awaiting, awaiting_since
from callbacks.deadlines import due_soon_limits
from callbacks.owed import breach_unrecorded, due_soon_condition
from helpdesk.clock import local
from helpdesk.models import Call, Callback, EmailAcknowledgement
from helpdesk.models.call import unfinished
from helpdesk.settings import Settings
from metrics.periods import (
    PERIOD_KINDS,
    Period,
    compliance_ratio,
    current_period,
    date_range_period,
    day_periods,
    month_periods,
    overlapping_groups,
    uk_date,
    uk_midnight,
    week_periods,
)

__all__ = [
    "RULES", "rule_titles", "PERIOD_KINDS", "Period", "RuleFigures", "LiveFigures", "Scope", "add_figures",
    "current_period", "date_range_period", "day_periods", "week_periods", "month_periods",
    "compliance_ratio", "uk_date", "uk_midnight", "figures", "figures_for_periods", "figures_by_day", "live_figures",
]

RULES = ("answer_within_rings", "callback_within_3h", "email_ack")


def rule_titles(settings) -> dict[str, str]:
    """Each rule's name as people read it, with the configured limits (10 rings, 3 hours, 15 minutes)."""
    from helpdesk.pages.format import format_minutes

    return {
        "answer_within_rings": f"Calls answered within {settings.max_rings} ring{'' if settings.max_rings == 1 else 's'}",
        "callback_within_3h": f"Callbacks within {format_minutes(settings.callback.within_minutes)}",
        "email_ack": f"Emails acknowledged within {format_minutes(settings.email.ack_within_minutes)}",
    }

# Day buckets per grouped query: keeps the CASE expression and its parameters bounded.
_DAYS_PER_QUERY = 400
# Longer than any call can go unanswered within the configuration's limits (the longest queue
# wait, then the longest voicemail): a call not answered and with no ending after this lost its
# last webhooks.
UNFINISHED_AFTER = timedelta(hours=2)


@dataclass(frozen=True)
class RuleFigures:
    """How one rule did in one period."""

    rule: str
    countable: int
    met: int
    breached: int  # countable - met

    @property
    def compliance(self) -> float | None:
        """met / countable; None ("no data") when nothing was countable."""
        return compliance_ratio(self.met, self.countable)


@dataclass(frozen=True)
class Scope:
    """Which rows of each table to count: a SQL condition per model (None: every row)."""

    conditions: dict = field(default_factory=dict)  # model -> condition
    # False when the conditions pick few rows by themselves: the period's range is then left
    # to the per-period sums, so the database plans the query by the conditions' indexes.
    bounded: bool = True

    @staticmethod
    def of(scope: Scope | None, model) -> tuple:
        """The condition for `model` as a tuple for `.where(*...)` (empty when unscoped)."""
        condition = scope.conditions.get(model) if scope is not None else None
        return () if condition is None else (condition,)


def add_figures(a: RuleFigures, b: RuleFigures) -> RuleFigures:
    """The figures of two disjoint sets of items of the same rule, together."""
    return RuleFigures(a.rule, a.countable + b.countable, a.met + b.met, a.breached + b.breached)


@dataclass(frozen=True)
class _Rule:
    """What counts for a rule: the contact time column, the countable filter, and "met"."""

    name: str
    table: type
    contact: object
    countable: object
    met: object


def _rules(now: datetime) -> list[_Rule]:
    ack = EmailAcknowledgement
    return [
        _Rule("answer_within_rings", Call, Call.arrived_at,
              and_(Call.countable == true(), Call.sla_result.in_(("met", "breached"))),
              Call.sla_result == "met"),
        # Decided, or past its deadline undecided: a breach already, before the sweep records it.
        _Rule("callback_within_3h", Callback, Callback.owed_from,
              Callback.sla_result.in_(("met", "breached")) | breach_unrecorded(now),
              Callback.sla_result == "met"),
        # Sent (met or late), or still unsent once past its due time: a breach already.
        _Rule("email_ack", ack, ack.received_at,
              and_(ack.status != "suppressed",
                   ack.sla_result.in_(("met", "late")) | (ack.sla_result.is_(None) & (ack.due_at < now))),
              ack.sla_result == "met"),
    ]


def _figures(rule: str, countable, met) -> RuleFigures:
    countable, met = int(countable or 0), int(met or 0)
    return RuleFigures(rule, countable, met, countable - met)


def figures(session: Session, period: Period, settings: Settings, now: datetime) -> dict[str, RuleFigures]:
    """Countable, met and breached per rule for items whose contact time is in `period`."""
    return figures_for_periods(session, [period], settings, now)[period.label]


PERIODS_PER_QUERY = 400


def figures_for_periods(session: Session, periods: list[Period], settings: Settings,
                        now: datetime, scope: Scope | None = None) -> dict[str, dict[str, RuleFigures]]:
    """`figures` for several periods (distinct labels) at once: one query per rule, by label.

    `scope` limits the rows looked at (metrics.history adds a cached part to a live part).
    """
    if not periods:
        return {}
    if len({p.label for p in periods}) != len(periods):
        raise ValueError("periods must have distinct labels")
    result: dict[str, dict[str, RuleFigures]] = {p.label: {} for p in periods}
    with session.begin():
        for rule in _rules(now):
            scoped = Scope.of(scope, rule.table)
            spanned = not scoped or scope.bounded
            # Two columns a period, and SQLite takes at most 2,000 in a result: years of weeks are
            # asked for PERIODS_PER_QUERY at a time; periods apart in time (last December, and this
            # month), each group on its own, so no query reads the rows between them.
            for group in (overlapping_groups(periods) if spanned else [periods]):
                earliest, latest = min(p.start for p in group), max(p.end for p in group)
                span = (rule.contact >= earliest, rule.contact < latest) if spanned else ()
                for start in range(0, len(group), PERIODS_PER_QUERY):
                    chunk = group[start:start + PERIODS_PER_QUERY]
                    columns = []
                    for period in chunk:
                        inside = (rule.contact >= period.start) & (rule.contact < period.end)
                        columns.append(func.sum(case((inside, 1), else_=0)))
                        columns.append(func.sum(case((inside & rule.met, 1), else_=0)))
                    row = session.execute(
                        select(*columns).select_from(rule.table).where(*span, rule.countable, *scoped)
                    ).one()
                    for index, period in enumerate(chunk):
                        result[period.label][rule.name] = _figures(rule.name, row[2 * index], row[2 * index + 1])
    return result


def figures_by_day(session: Session, first: date, last: date, settings: Settings,
                   now: datetime) -> dict[date, dict[str, RuleFigures]]:
    """Per UK day from `first` to `last` (both included), per rule; every day present.

    Days are bucketed by UK-midnight boundaries computed here, in a CASE expression, so the
    grouping is the same on SQLite and PostgreSQL and needs no time-zone support in SQL.
    """
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)] if last >= first else []
    day_periods(first, last)  # validates the range with the same message as the other helpers
    result = {day: {rule: RuleFigures(rule, 0, 0, 0) for rule in RULES} for day in days}
    with session.begin():
        for chunk_start in range(0, len(days), _DAYS_PER_QUERY):
            chunk = days[chunk_start:chunk_start + _DAYS_PER_QUERY]
            bounds = [uk_midnight(day) for day in chunk] + [uk_midnight(chunk[-1] + timedelta(days=1))]
            for rule in _rules(now):
                bucket = case(*[(rule.contact < bound, index) for index, bound in enumerate(bounds[1:])],
                              else_=None).label("bucket")
                rows = session.execute(
                    select(bucket, func.count(), func.sum(case((rule.met, 1), else_=0)))
                    .select_from(rule.table)
                    .where(rule.contact >= bounds[0], rule.contact < bounds[-1], rule.countable)
                    .group_by(bucket)
                )
                for index, countable, met in rows:
                    result[chunk[index]][rule.name] = _figures(rule.name, countable, met)
    return result


@dataclass(frozen=True)
class LiveFigures:
    """What is owed right now: open callbacks and unacknowledged emails."""

    callbacks_open: int
    callbacks_due_soon: int
    callbacks_due_soon_unclaimed: int
    callbacks_overdue: int
    oldest_open_callback_age_seconds: float  # 0 when nothing is open
    emails_unacknowledged: int
    emails_unacknowledged_overdue: int
    calls_unfinished: int  # not answered and with no ending UNFINISHED_AFTER after they arrived
    # Answered calls on the agents' page whose enquiry has no outcome yet (callbacks.awaiting), and
    # how long ago the earliest of them to end ended (0 when none has): a callback needed is owed
    # from the call's arrival, so an outcome not recorded eats into its three hours.
    calls_awaiting_outcome: int
    oldest_awaiting_outcome_seconds: float
    # And those answered before, back to OLDER_DAYS: on the agents' page only when older calls are
    # asked for, their outcome never recorded on the day.
    calls_awaiting_outcome_older: int


def live_figures(session: Session, settings: Settings, now: datetime, older: int | None = None) -> LiveFigures:
    """Open callbacks (due soon, overdue, oldest), unacknowledged emails, unfinished calls and
    answered calls awaiting an outcome at `now`.

    Due soon counts only callbacks whose first attempt is still owed (not met), the same as
    the agents' queue page. Overdue counts those past due that nobody has attempted yet: the
    callers still waiting for a first call (one attempted late is a breach already, and waits
    for its retry). The older calls awaiting an outcome are `older` when given (OlderAwaiting's).
    """
    soon = due_soon_condition(due_soon_limits(settings, now), now)
    ack = EmailAcknowledgement
    with session.begin():
        open_, due_soon, unclaimed, overdue, oldest = session.execute(select(
            func.count(),
            func.sum(case((soon, 1), else_=0)),
            func.sum(case((soon & Callback.claimed_by_id.is_(None), 1), else_=0)),
            func.sum(case((Callback.first_attempt_at.is_(None) & (Callback.due_at < now), 1), else_=0)),
            func.min(Callback.owed_from),
        ).select_from(Callback).where(Callback.status == "open")).one()
        # Pending (to send or retry) and failed (gave up) acknowledgements were never sent.
        unacknowledged, unacknowledged_overdue = session.execute(select(
            func.count(), func.sum(case((ack.due_at < now, 1), else_=0)),
        ).select_from(ack).where(ack.status.in_(("pending", "failed")))).one()
        calls_unfinished = session.scalar(select(func.count()).select_from(Call).where(
            unfinished(), Call.arrived_at < now - UNFINISHED_AFTER))
        awaiting_count, first_ended = session.execute(awaiting(
            select(func.count(Call.id), func.min(Call.ended_at)), awaiting_since(settings, now))).one()
    return LiveFigures(int(open_), int(due_soon or 0), int(unclaimed or 0), int(overdue or 0), _age(now, oldest),
                       int(unacknowledged), int(unacknowledged_overdue or 0), int(calls_unfinished),
                       int(awaiting_count), _age(now, first_ended),
                       older_awaiting(session, settings, now) if older is None else older)


def older_awaiting(session: Session, settings: Settings, now: datetime) -> int:
    """Answered calls of the OLDER_DAYS before the agents' page's usual ones (awaiting_since)
    whose enquiry still has no outcome: the page shows them only with older calls."""
    recent = awaiting_since(settings, now)
    with session.begin():
        return int(session.scalar(awaiting(select(func.count(Call.id)),
                                           local(now).date() - timedelta(days=OLDER_DAYS), until=recent)) or 0)


# How long a process's /metrics shows the same older_awaiting: calls of earlier days, whose
# outcome is seldom recorded late, and tens of thousands of them on a desk that never records
# outcomes, which would double a scrape's time if read at each.
OLDER_EVERY = timedelta(minutes=1)


class OlderAwaiting:
    """older_awaiting for one process's scrapes, read again once OLDER_EVERY of the app's clock
    has passed, the UK day has changed (the window moves), the clock has gone back, or the
    configuration has changed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._read: tuple[datetime, date, str, int] | None = None  # when, its UK day, configuration, count

    def __call__(self, session: Session, settings: Settings, now: datetime) -> int:
        day = local(now).date()
        with self._lock:
            read = self._read
            if (read is None or now < read[0] or now - read[0] >= OLDER_EVERY or day != read[1]
                    or settings.version != read[2]):
                read = self._read = (now, day, settings.version, older_awaiting(session, settings, now))
            return read[3]


def _age(now: datetime, since: datetime | None) -> float:
    """Seconds from `since` to `now`; 0 for none, or for one in the future."""
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0
