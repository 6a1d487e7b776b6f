"""Reporting periods in UK time, and the compliance ratio. Pure: no database, no Flask.

A period is a half-open range of aware UTC instants [start, end) whose ends are UK
midnights, so a day is 23 or 25 hours long on the days the clocks change.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from helpdesk.clock import LONDON

PERIOD_KINDS = ("today", "week", "month")


@dataclass(frozen=True)
class Period:
    """A labelled reporting period: aware UTC, start inclusive, end exclusive."""

    label: str
    start: datetime
    end: datetime


def overlapping_groups(periods: list[Period]) -> list[list[Period]]:
    """The periods in groups whose spans overlap or touch, earliest first; apart, separate groups
    (so a query over a group's span reads no rows from the gap between two groups)."""
    groups: list[list[Period]] = []
    end = None
    for period in sorted(periods, key=lambda p: (p.start, p.end)):
        if groups and period.start <= end:
            groups[-1].append(period)
            end = max(end, period.end)
        else:
            groups.append([period])
            end = period.end
    return groups


def uk_midnight(day: date) -> datetime:
    """The UTC instant at which `day` starts in the UK (midnight always exists there)."""
    return datetime.combine(day, time(0), tzinfo=LONDON).astimezone(timezone.utc)


def uk_date(moment: datetime) -> date:
    """The UK calendar date of an aware instant."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given: use an aware UTC instant")
    return moment.astimezone(LONDON).date()


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def current_period(kind: str, now: datetime) -> Period:
    """Today, this week (Monday to Sunday) or this calendar month, in UK time, containing `now`."""
    today = uk_date(now)
    if kind == "today":
        first, after = today, today + timedelta(days=1)
    elif kind == "week":
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif kind == "month":
        first, after = _month_start(today), _next_month(today)
    else:
        raise ValueError(f"unknown period {kind!r}: use one of {', '.join(PERIOD_KINDS)}")
    return Period(kind, uk_midnight(first), uk_midnight(after))


def date_range_period(first: date, last: date) -> Period:
    """The UK days `first` to `last`, both included, as one period labelled "range"."""
    _check_range(first, last)
    return Period("range", uk_midnight(first), uk_midnight(last + timedelta(days=1)))


def day_periods(first: date, last: date) -> list[Period]:
    """Each UK day from `first` to `last` (both included), labelled "YYYY-MM-DD"."""
    _check_range(first, last)
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [Period(day.isoformat(), uk_midnight(day), uk_midnight(day + timedelta(days=1))) for day in days]


def week_periods(first: date, last: date) -> list[Period]:
    """ISO weeks (Monday start) overlapping `first`..`last`, clipped to it, labelled "YYYY-Www"."""
    _check_range(first, last)
    periods = []
    monday = first - timedelta(days=first.weekday())
    while monday <= last:
        year, week, _ = monday.isocalendar()
        start, after = max(monday, first), min(monday + timedelta(days=7), last + timedelta(days=1))
        periods.append(Period(f"{year}-W{week:02d}", uk_midnight(start), uk_midnight(after)))
        monday += timedelta(days=7)
    return periods


def month_periods(first: date, last: date) -> list[Period]:
    """Calendar months overlapping `first`..`last`, clipped to it, labelled "YYYY-MM"."""
    _check_range(first, last)
    periods = []
    month = _month_start(first)
    while month <= last:
        start, after = max(month, first), min(_next_month(month), last + timedelta(days=1))
        periods.append(Period(f"{month.year:04d}-{month.month:02d}", uk_midnight(start), uk_midnight(after)))
        month = _next_month(month)
    return periods


def compliance_ratio(met: int, countable: int) -> float | None:
    """met / countable, or None ("no data") when nothing was countable: never 0 or 1 by default."""
    if met < 0 or countable < 0 or met > countable:
        raise ValueError(f"met ({met}) must be between 0 and countable ({countable})")
    if countable == 0:
        return None
    return met / countable


def _check_range(first: date, last: date) -> None:
    if last < first:
        raise ValueError(f"the range ends ({last.isoformat()}) before it starts ({first.isoformat()})")
