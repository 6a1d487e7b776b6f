"""summary.csv: each rule's figures per day, ISO week, month and for the whole range.

Every figure comes from `metrics.compliance`, the one module behind /metrics and the Service
levels page, so the pack can never disagree with them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterator

from sqlalchemy import false
from sqlalchemy.orm import Session

from helpdesk.models import Call, Callback, EmailAcknowledgement
from helpdesk.restore import overlapping, windows
from helpdesk.settings import Settings
from metrics import compliance
from metrics.evidence.fields import LONDON, london_times, ratio

SUMMARY_COLUMNS = [
    "level", "period", "first_day", "last_day", "rule", "countable", "met", "breached", "compliance",
    "lost_in_restore",
]


@dataclass(frozen=True)
class PeriodFigures:
    level: str  # day, week, month, range
    period: compliance.Period
    figures: dict[str, compliance.RuleFigures]
    # Windows a restore of the database lost that overlap the period (helpdesk db after-restore).
    lost: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def first_day(self) -> date:
        return self.period.start.astimezone(LONDON).date()

    @property
    def last_day(self) -> date:
        return self.period.end.astimezone(LONDON).date() - timedelta(days=1)


@dataclass(frozen=True)
class Summary:
    """The range's figures at every level, in the order summary.csv lists them."""

    whole: PeriodFigures
    months: list[PeriodFigures]
    weeks: list[PeriodFigures]
    days: list[PeriodFigures]
    # The whole range's calls and callbacks by the caller's type (dwp, customer, unknown); emails have none.
    by_caller_type: dict[str, dict[str, compliance.RuleFigures]] = field(default_factory=dict)

    def levels(self) -> Iterator[PeriodFigures]:
        yield from self.days
        yield from self.weeks
        yield from self.months
        yield self.whole


def build_summary(session: Session, first: date, last: date, settings: Settings, now: datetime) -> Summary:
    """Figures for `first`..`last` (UK dates, inclusive) from metrics.compliance."""
    by_day = compliance.figures_by_day(session, first, last, settings, now)
    with session.begin():
        lost = windows(session)

    def figures(level: str, period: compliance.Period, found: dict[str, compliance.RuleFigures]) -> PeriodFigures:
        return PeriodFigures(level, period, found, tuple(overlapping(lost, period.start, period.end)))

    days = [figures("day", period, by_day[date.fromisoformat(period.label)])
            for period in compliance.day_periods(first, last)]

    whole = compliance.date_range_period(first, last)
    months = compliance.month_periods(first, last)
    weeks = compliance.week_periods(first, last)
    # One query per rule for every week, month and the whole range together.
    by_label = compliance.figures_for_periods(session, [whole, *months, *weeks], settings, now)
    return Summary(
        whole=figures("range", whole, by_label[whole.label]),
        months=[figures("month", p, by_label[p.label]) for p in months],
        weeks=[figures("week", p, by_label[p.label]) for p in weeks],
        days=days,
        by_caller_type={kind: by_caller_type(session, whole, kind, settings, now) for kind in CALLER_TYPES},
    )


CALLER_TYPES = ("dwp", "customer", "unknown")


def by_caller_type(session: Session, period: compliance.Period, kind: str, settings: Settings,
                   now: datetime) -> dict[str, compliance.RuleFigures]:
    """The period's figures for the calls and callbacks of one caller type (emails have none)."""
    scope = compliance.Scope({Call: Call.caller_type == kind, Callback: Callback.caller_type == kind,
                              EmailAcknowledgement: false()})
    return compliance.figures_for_periods(session, [period], settings, now, scope)[period.label]


def summary_rows(summary: Summary) -> Iterator[list[str]]:
    """summary.csv's rows: compliance as a ratio (0 to 1) to four places, blank for no data."""
    uk_time = london_times()
    for entry in summary.levels():
        lost = "; ".join(f"{uk_time(start)}/{uk_time(end)}" for start, end in entry.lost)
        for rule in compliance.RULES:
            figures = entry.figures[rule]
            yield [
                entry.level, entry.period.label, entry.first_day.isoformat(), entry.last_day.isoformat(), rule,
                str(figures.countable), str(figures.met), str(figures.breached), ratio(figures.met, figures.countable),
                lost,
            ]
