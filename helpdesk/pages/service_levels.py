"""The Service levels page: compliance per rule for today, this week, this month and any
range of UK dates, how quickly contacts were handled, and what is owed now. Figures come from
metrics.compliance, as /metrics, and metrics.handling, as the evidence pack's."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import Blueprint, render_template, request

from callbacks.queue import span_words as duration_words
from helpdesk.clock import day_problem, iso_day
from helpdesk.pages import format as fmt
from helpdesk.pages.access import role_required
from helpdesk.restore import overlapping, windows
from helpdesk.web import clock, database, settings
from metrics import compliance, handling

bp = Blueprint("service_levels", __name__)

PERIOD_HEADINGS = {"today": "Today", "week": "This week", "month": "This month"}


class BadRange(ValueError):
    """A date range that cannot be used; the message is shown to the user, at `field` ("from", "to")."""

    def __init__(self, message: str, field: str = "from"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PeriodTable:
    key: str
    heading: str
    words: str  # "Tuesday 24 November 2026", "Monday 23 to Sunday 29 November 2026"
    figures: dict[str, compliance.RuleFigures]
    # Windows a restore of the database lost that overlap the period (helpdesk db after-restore).
    lost: tuple[tuple[datetime, datetime], ...] = ()
    # How quickly its contacts were handled (metrics.handling.lines): not targets.
    handling: tuple = ()


def _day(text: str, what: str) -> date:
    day = iso_day(text)
    if day is not None:
        return day
    raise BadRange(f"The {what} date {fmt.quoted(text)} {day_problem(text)}.",
                   "from" if what == "first" else "to")


def requested_range(args) -> tuple[date, date] | None:
    """The range asked for in `from` and `to` (both UK dates, both included), or None."""
    first_text, last_text = (args.get("from") or "").strip(), (args.get("to") or "").strip()
    if not first_text and not last_text:
        return None
    if not first_text or not last_text:
        raise BadRange("Give both a first and a last date for the range.", "to" if first_text else "from")
    first, last = _day(first_text, "first"), _day(last_text, "last")
    if last < first:
        raise BadRange(f"The last day ({fmt.format_day(last)}) is before the first day ({fmt.format_day(first)}): "
                       "swap the dates.", "to")
    return first, last


def span_words(first: date, last: date) -> str:
    """"Tuesday 24 November 2026", or "Monday 23 November 2026 to Sunday 29 November 2026"."""
    if first == last:
        return fmt.format_day(first)
    return f"{fmt.format_day(first)} to {fmt.format_day(last)}"


def age_words(seconds: float) -> str:
    """An age in whole hours and minutes, as the agents' page words time left: "2 hours 5 minutes",
    "less than a minute"."""
    return duration_words(timedelta(seconds=seconds))[1]


@bp.get("/service-levels")
@role_required("manager", "auditor")
def service_levels():
    """Compliance per rule for today, this week and this month, a chosen range, how quickly
    contacts were handled in each, and what is owed now."""
    problem = None
    try:
        chosen = requested_range(request.args)
    except BadRange as refused:
        # The page as usual, with the form as typed and the reason at the field it is about.
        chosen, problem = None, refused
    now, config = clock(), settings()
    periods = [compliance.current_period(kind, now) for kind in compliance.PERIOD_KINDS]
    if chosen:
        periods.append(compliance.date_range_period(*chosen))
    with database().session() as session:
        by_period = compliance.figures_for_periods(session, periods, config, now)
        live = compliance.live_figures(session, config, now)
        handled = {label: handling.lines(figures)
                   for label, figures in handling.handling_for_periods(session, periods).items()}
        with session.begin():
            lost = windows(session)
    tables = []
    for period in periods:
        first = compliance.uk_date(period.start)
        last = compliance.uk_date(period.end) - timedelta(days=1)
        heading = PERIOD_HEADINGS.get(period.label, "Chosen dates")
        tables.append(PeriodTable(period.label, heading, span_words(first, last), by_period[period.label],
                                  tuple(overlapping(lost, period.start, period.end)), tuple(handled[period.label])))
    return render_template(
        "service_levels.html",
        tables=tables,
        chosen=chosen,
        live=live,
        rules=compliance.RULES,
        titles=compliance.rule_titles(config),
        fmt=fmt,
        oldest=age_words(live.oldest_open_callback_age_seconds) if live.callbacks_open else "None open",
        due_soon_minutes=config.callback.due_soon_minutes,
        ack_minutes=config.email.ack_within_minutes,
        max_rings=config.max_rings,
        today=compliance.uk_date(now),
        error=str(problem) if problem else None,
        error_field=problem.field if problem else None,
        typed={"from": request.args.get("from", ""), "to": request.args.get("to", "")},
    ), 400 if problem else 200
