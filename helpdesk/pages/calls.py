"""The calls of one UK day, as the Calls page lists them, with the day's answer figures."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, joinedload

from helpdesk.clock import LONDON
from helpdesk.models import Call


@dataclass(frozen=True)
class DaySummary:
    offered: int
    countable: int
    met: int
    breached: int


@dataclass(frozen=True)
class CallsPage:
    day: date
    calls: list[Call]
    summary: DaySummary
    matching: int  # calls that pass the filters, on every page
    page: int
    pages: int


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants where a UK day starts and ends (23 or 25 hours on clock-change days)."""
    start = datetime(day.year, day.month, day.day, tzinfo=LONDON)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=LONDON)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def has_clock_change(day: date) -> bool:
    start, end = day_bounds(day)
    return end - start != timedelta(days=1)


def day_summary(session: Session, day: date) -> DaySummary:
    """Calls offered on `day`, and how many counted for, met and breached the answer rule."""
    start, end = day_bounds(day)
    counted = Call.countable.is_(True)
    offered, countable, met, breached = session.execute(
        select(
            func.count(Call.id),
            func.coalesce(func.sum(case((counted, 1), else_=0)), 0),
            func.coalesce(func.sum(case(((counted) & (Call.sla_result == "met"), 1), else_=0)), 0),
            func.coalesce(func.sum(case(((counted) & (Call.sla_result == "breached"), 1), else_=0)), 0),
        ).where(Call.arrived_at >= start, Call.arrived_at < end)
    ).one()
    return DaySummary(int(offered), int(countable), int(met), int(breached))


def calls_page(
    session: Session,
    day: date,
    *,
    outcome: str | None = None,
    result: str | None = None,
    page: int = 1,
    per_page: int = 200,
) -> CallsPage:
    """One page of `day`'s calls, newest first, optionally only one outcome or SLA result."""
    start, end = day_bounds(day)
    conditions = [Call.arrived_at >= start, Call.arrived_at < end]
    if outcome:
        conditions.append(Call.outcome == outcome)
    if result:
        conditions.append(Call.countable.is_(True))
        conditions.append(Call.sla_result == result)
    with session.begin():
        summary = day_summary(session, day)
        matching = session.scalar(select(func.count(Call.id)).where(*conditions)) or 0
        calls = list(
            session.scalars(
                select(Call)
                .options(joinedload(Call.enquiry))
                .where(*conditions)
                .order_by(Call.arrived_at.desc(), Call.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            ).unique()
        )
    return CallsPage(
        day=day,
        calls=calls,
        summary=summary,
        matching=matching,
        page=page,
        pages=max(1, math.ceil(matching / per_page)),
    )
