"""The calls of one UK day, as the Calls page lists them, with the day's answer figures."""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, contains_eager, joinedload

from callbacks.awaiting import awaiting, recorded_late, recorded_late_sql
from helpdesk.models import Call, Enquiry
from helpdesk.models.call import never_reached
from helpdesk.restore import overlapping, windows
from helpdesk.settings import Settings
from metrics import compliance
from metrics.periods import uk_midnight


@dataclass(frozen=True)
class Spell:
    """Calls that never reached the app, with no call that did reach it arriving among them."""
    first: datetime
    last: datetime
    calls: int


@dataclass(frozen=True)
class DaySummary:
    offered: int
    countable: int
    met: int
    breached: int
    # Calls that never reached the app, found later in Twilio's call log, and the spells in
    # which they arrived: how long callers heard Twilio's error message, at least.
    unheard: int = 0
    unheard_spells: tuple[Spell, ...] = ()
    # Windows a restore of the database lost that overlap the day (helpdesk db after-restore).
    lost: tuple[tuple[datetime, datetime], ...] = ()
    # Answered calls whose enquiry no agent has said was concluded on the call or needs a
    # callback (callbacks.awaiting): on the agents' page, or, for an earlier day, never recorded.
    no_outcome: int = 0


def spells(unheard: list[datetime], heard: list[datetime]) -> tuple[Spell, ...]:
    """Split the arrival times of calls that never reached the app (sorted) into spells: a call
    that reached the app arriving between two of them means the app could be reached again, so
    two outages on one day are told apart however close they were."""
    found: list[Spell] = []
    for arrived in unheard:
        if found and bisect_right(heard, found[-1].last) == bisect_left(heard, arrived):
            found[-1] = Spell(found[-1].first, arrived, found[-1].calls + 1)
        else:
            found.append(Spell(arrived, arrived, 1))
    return tuple(found)


@dataclass(frozen=True)
class CallsPage:
    day: date
    calls: list[Call]
    summary: DaySummary
    matching: int  # calls that pass the filters, on every page
    page: int
    pages: int
    # The call SIDs, among `calls`, of those that never reached the app (never_reached).
    unheard: frozenset[str] = frozenset()
    # The call SIDs, among `calls`, of the answered calls whose outcome was recorded late.
    recorded_late: frozenset[str] = frozenset()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants where a UK day starts and ends (23 or 25 hours on clock-change days)."""
    return uk_midnight(day), uk_midnight(day + timedelta(days=1))


def has_clock_change(day: date) -> bool:
    start, end = day_bounds(day)
    return end - start != timedelta(days=1)


def day_summary(session: Session, day: date, settings: Settings, now: datetime) -> DaySummary:
    """Calls offered on `day`, and the answer rule's countable, met and breached calls.

    The rule's figures come from metrics.compliance, as everywhere else they are shown.
    """
    figures = compliance.figures(session, compliance.day_periods(day, day)[0], settings, now)
    answer = figures["answer_within_rings"]
    start, end = day_bounds(day)
    on_day = (Call.arrived_at >= start, Call.arrived_at < end)
    with session.begin():
        offered = session.scalar(select(func.count(Call.id)).where(*on_day))
        unheard = list(session.scalars(
            select(Call.arrived_at).where(*on_day, never_reached()).order_by(Call.arrived_at)))
        # The calls that did reach the app, only where they could split the others into spells.
        heard = list(session.scalars(
            select(Call.arrived_at)
            .where(Call.arrived_at > unheard[0], Call.arrived_at < unheard[-1], ~never_reached())
            .order_by(Call.arrived_at))) if len(unheard) > 1 else []
        lost = overlapping(windows(session), start, end)
        no_outcome = session.scalar(awaiting(select(func.count(Call.id)), day, day + timedelta(days=1)))
    return DaySummary(int(offered or 0), answer.countable, answer.met, answer.breached, len(unheard),
                      spells(unheard, heard), tuple(lost), int(no_outcome or 0))


def calls_page(
    session: Session,
    day: date,
    *,
    settings: Settings,
    now: datetime,
    outcome: str | None = None,
    result: str | None = None,
    unheard: bool = False,
    recorded: str | None = None,
    page: int = 1,
    per_page: int = 200,
) -> CallsPage:
    """One page of `day`'s calls, newest first, optionally only one outcome or SLA result, only
    the calls that never reached the app (`unheard`), or only the answered calls with no outcome
    recorded (`recorded="no"`) or with one recorded late (`recorded="late"`: callbacks.awaiting.recorded_late)."""
    start, end = day_bounds(day)
    conditions = [Call.arrived_at >= start, Call.arrived_at < end]
    if outcome:
        conditions.append(Call.outcome == outcome)
    if result:
        conditions.append(Call.countable.is_(True))
        conditions.append(Call.sla_result == result)
    if unheard:
        conditions.append(never_reached())

    def narrowed(query: Select) -> Select:
        query = query.where(*conditions)
        if recorded == "no":
            return awaiting(query, day, day + timedelta(days=1))
        if recorded == "late":
            return (query.join(Enquiry, Enquiry.id == Call.enquiry_id)
                    .where(Call.outcome == "answered", Enquiry.channel == "phone", recorded_late_sql()))
        return query

    summary = day_summary(session, day, settings, now)
    with session.begin():
        matching = session.scalar(narrowed(select(func.count(Call.id)))) or 0
        pages = max(1, math.ceil(matching / per_page))
        # A page past the last has no calls: not asked for, as its offset may be too large for
        # the database's integers (page 10**17 was a 500).
        calls = [] if page > pages else list(
            session.scalars(
                # Filtered by its outcome, the enquiry is joined already: a second join would make
                # the index's condition, in its own unqualified words, ambiguous.
                narrowed(select(Call)).options(contains_eager(Call.enquiry) if recorded else joinedload(Call.enquiry))
                .order_by(Call.arrived_at.desc(), Call.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            ).unique()
        )
        listed = [call.id for call in calls]
        listed_unheard = frozenset(session.scalars(
            select(Call.call_sid).where(Call.id.in_(listed), never_reached()))) if listed else frozenset()
    late = frozenset(call.call_sid for call in calls
                     if call.outcome == "answered" and call.enquiry is not None and recorded_late(call, call.enquiry))
    return CallsPage(day=day, calls=calls, summary=summary, matching=matching, page=page, pages=pages,
                     unheard=listed_unheard, recorded_late=late)
