"""Answered calls awaiting an outcome: calls a person answered whose enquiry nobody has yet said
was concluded on the call or needs a callback. The agents' page lists them (callbacks.queue), and
/metrics counts them (metrics.compliance): one definition for both. And when an outcome was
recorded late: the Calls page and the evidence pack use one definition of that too.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, Select, text

from helpdesk.clock import local
from helpdesk.models import Call, Enquiry
from helpdesk.models.enquiry import OPEN_PHONE
from helpdesk.settings import Settings
from metrics.periods import uk_midnight
from metrics.seconds_sql import over_days_after

# How far back to look for the last opening day before today (a long closure, such as Christmas).
LAST_OPENING_WITHIN = timedelta(days=31)
# How far back the agents' page goes when asked for older calls (older=yes): an outcome nobody
# recorded in time can still be, and a callback still owed, however late.
OLDER_DAYS = 28
# A phone enquiry is opened at its call's arrival as first worked out; a correction moves the
# arrival by minutes. This margin keeps such a call in, and the index's range small.
OPENED_MARGIN = timedelta(days=1)
# An outcome recorded more than this after its call was answered was recorded late: the Calls
# page marks it and lists such calls (recorded=late), and the evidence pack counts them. With
# older calls on the agents' page, one can be recorded weeks afterwards.
RECORDED_LATE_AFTER = timedelta(days=1)


def awaiting_since(settings: Settings, now: datetime) -> date:
    """The first UK day whose answered calls are still awaiting an outcome on the page: the last
    day before today the desk was open, so a call answered just before closing (or midnight)
    stays until an agent says what became of it; today when the desk has not opened for a month."""
    today = local(now).date()
    start = uk_midnight(today)
    opened = settings.calendar.open_intervals(start - LAST_OPENING_WITHIN, start)
    return local(opened[-1][0]).date() if opened else today


def awaiting(query: Select, since: date, until: date | None = None) -> Select:
    """`query`, over calls, narrowed to the answered calls since the UK day `since` (and before
    the UK day `until`, if given) whose enquiry nobody has concluded or turned into a callback
    yet: for a day before the agents' page's, the calls whose outcome was never recorded.

    Read from the open phone enquiries, a few among all, through the partial index
    ix_enquiries_open_phone (its condition as the index's own SQL text, so that SQLite sees it
    matches, which a bound parameter would not; calls have no columns of those names), and each
    one's call by its SID: at every /metrics scrape, not the last two days' calls (thousands)
    each looking up its enquiry, or every open enquiry, email ones included, hashed."""
    start = uk_midnight(since)
    query = (query.join(Enquiry, (Enquiry.call_sid == Call.call_sid) & (Enquiry.id == Call.enquiry_id))
             .where(text(OPEN_PHONE), Enquiry.opened_at >= start - OPENED_MARGIN,
                    Call.arrived_at >= start, Call.outcome == "answered"))
    if until is None:
        return query
    end = uk_midnight(until)
    return query.where(Enquiry.opened_at < end + OPENED_MARGIN, Call.arrived_at < end)


def recorded_late(call: Call, enquiry: Enquiry) -> bool:
    """Whether the outcome of the answered call's enquiry was recorded more than RECORDED_LATE_AFTER
    after the call was answered (or arrived, if its answer's time is not known)."""
    start = call.answer_moment
    return (enquiry.outcome_recorded_at is not None and start is not None
            and enquiry.outcome_recorded_at - start > RECORDED_LATE_AFTER)


def recorded_late_sql() -> ColumnElement[bool]:
    """`recorded_late` in SQL, over calls joined to their enquiries: exact to the microsecond on
    both databases, as whole seconds rounded up are over a day exactly when the time is."""
    return over_days_after(Call.answer_moment, Enquiry.outcome_recorded_at, int(RECORDED_LATE_AFTER.total_seconds()))
