"""Compliance figures from stored records, on SQLite and PostgreSQL.

The clock stands at Tuesday 24 November 2026, 10:00 UK time (GMT): the week started on
Monday 23rd, the month on 1 November.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from helpdesk.models import User
from metrics.compliance import (
    RULES,
    current_period,
    date_range_period,
    figures,
    figures_by_day,
    figures_for_periods,
    live_figures,
)
from tests.integration.compliance_data import add_call, add_callback, add_email

UTC = timezone.utc
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def store_known_mix(session) -> None:
    """Today: calls 5 countable / 3 met, callbacks 3 / 2, emails 4 / 1. Earlier this week and month: more."""
    with session.begin():
        today = utc(2026, 11, 24, 8, 30)
        add_call(session, today, answer_seconds=5.0)
        add_call(session, today, answer_seconds=29.9)
        add_call(session, today, answer_seconds=30.0)  # exactly at the target: met
        add_call(session, today, answer_seconds=31.0)
        add_call(session, today, outcome="abandoned", sla_result="breached")  # hung up after the target
        add_call(session, today, outcome="abandoned", countable=False)  # hung up before the target
        add_call(session, today, outcome="out_of_hours", countable=False, in_hours=False)
        add_call(session, utc(2026, 11, 24, 9, 59, 50), outcome="in_progress", countable=False)  # undecided
        add_call(session, utc(2026, 11, 23, 9), answer_seconds=3.0)  # Monday
        add_call(session, utc(2026, 11, 23, 17), answer_seconds=12.0)
        add_call(session, utc(2026, 11, 1, 0, 0), answer_seconds=4.0)  # first instant of November
        add_call(session, utc(2026, 11, 2, 9), outcome="no_answer", sla_result="breached")
        add_call(session, utc(2026, 10, 31, 23, 59, 59), answer_seconds=90.0)  # still October

        add_callback(session, utc(2026, 11, 24, 8), result="met")
        add_callback(session, utc(2026, 11, 24, 8, 5), result="met")
        add_callback(session, utc(2026, 11, 24, 6), result="breached")
        add_callback(session, utc(2026, 11, 24, 9), result=None)  # open, not yet due: undecided
        add_callback(session, utc(2026, 11, 23, 12), result="breached")

        add_email(session, utc(2026, 11, 24, 9), result="met")
        add_email(session, utc(2026, 11, 24, 9), result="late")
        add_email(session, utc(2026, 11, 24, 9, 30), status="pending", result=None)  # due 09:45: breached
        add_email(session, utc(2026, 11, 24, 9, 50), status="pending", result=None)  # due 10:05: undecided
        add_email(session, utc(2026, 11, 24, 9), status="suppressed", result=None)  # not counted
        add_email(session, utc(2026, 11, 24, 7), status="failed", result=None)  # gave up: breached


def as_tuples(figs) -> dict[str, tuple[int, int, int]]:
    return {rule: (f.countable, f.met, f.breached) for rule, f in figs.items()}


def test_today_this_week_and_this_month_count_each_item_in_the_period_of_its_contact(app, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    with database.session() as session:
        today = figures(session, current_period("today", NOW), settings, NOW)
    with database.session() as session:
        week = figures(session, current_period("week", NOW), settings, NOW)
    with database.session() as session:
        month = figures(session, current_period("month", NOW), settings, NOW)
    assert as_tuples(today) == {"answer_within_rings": (5, 3, 2), "callback_within_3h": (3, 2, 1), "email_ack": (4, 1, 3)}
    assert as_tuples(week) == {"answer_within_rings": (7, 5, 2), "callback_within_3h": (4, 2, 2), "email_ack": (4, 1, 3)}
    assert as_tuples(month) == {"answer_within_rings": (9, 6, 3), "callback_within_3h": (4, 2, 2), "email_ack": (4, 1, 3)}
    assert today["answer_within_rings"].compliance == pytest.approx(0.6)
    assert today["email_ack"].compliance == pytest.approx(0.25)


def test_an_unsent_acknowledgement_becomes_countable_once_past_its_due_time(app, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    later = NOW + timedelta(minutes=10)  # the 09:50 email was due at 10:05
    with database.session() as session:
        email = figures(session, current_period("today", later), settings, later)["email_ack"]
    assert (email.countable, email.met) == (5, 1)


def test_a_callback_past_due_with_no_attempt_is_a_breach_before_the_sweep_records_it(app, settings):
    """The scheduler may be down or behind: the figures do not wait for it (as for an unsent
    acknowledgement past its due time), and one withdrawn as never owed still never counts."""
    from sqlalchemy import update

    from helpdesk.models import Callback

    database = app.extensions["helpdesk.db"]
    yesterday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    with database.session() as session, session.begin():
        add_callback(session, yesterday, result=None)  # due 12:00 yesterday, never attempted
        add_callback(session, NOW - timedelta(hours=1), result=None)  # due 12:00 today: not yet
        never_owed = add_callback(session, yesterday, result=None, status="closed")
        session.flush()
        session.execute(update(Callback).where(Callback.id == never_owed.id).values(
            outcome="withdrawn", closed_at=yesterday + timedelta(hours=4), closed_by_id=None))
    with database.session() as session:
        day = figures(session, date_range_period(date(2026, 11, 23), date(2026, 11, 23)), settings, NOW)
        today = figures(session, current_period("today", NOW), settings, NOW)
    assert (day["callback_within_3h"].countable, day["callback_within_3h"].met) == (1, 0)
    assert today["callback_within_3h"].countable == 0
    later = NOW + timedelta(hours=3)  # today's is past due now too
    with database.session() as session:
        today = figures(session, current_period("today", later), settings, later)
    assert (today["callback_within_3h"].countable, today["callback_within_3h"].met) == (1, 0)


def test_a_period_with_nothing_countable_has_no_compliance_figure(app, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    with database.session() as session:
        quiet = figures(session, date_range_period(date(2026, 9, 1), date(2026, 9, 30)), settings, NOW)
    assert set(quiet) == set(RULES)
    for rule in RULES:
        assert (quiet[rule].countable, quiet[rule].met, quiet[rule].breached) == (0, 0, 0)
        assert quiet[rule].compliance is None


def test_several_periods_at_once_give_the_same_figures_as_one_at_a_time(app, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    periods = [current_period(kind, NOW) for kind in ("today", "week", "month")]
    with database.session() as session:
        together = figures_for_periods(session, periods, settings, NOW)
    for period in periods:
        with database.session() as session:
            assert together[period.label] == figures(session, period, settings, NOW)


def test_an_old_range_with_this_month_reads_each_apart_not_everything_between(app, settings):
    # The Service levels page asks for the chosen range with today, this week and this month.
    # One span from last year to today would read a whole year of rows to count two months.
    from sqlalchemy import event

    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
        with session.begin():
            add_call(session, utc(2025, 12, 3, 9), answer_seconds=4.0)
            add_call(session, utc(2026, 6, 3, 9), answer_seconds=4.0)  # between the two: read by neither
    old = date_range_period(date(2025, 12, 1), date(2025, 12, 31))
    periods = [old] + [current_period(kind, NOW) for kind in ("today", "week", "month")]
    spans = []

    def seen(conn, statement, multiparams, params, execution_options):
        if "FROM calls" in str(statement):
            times = [v for v in statement.compile().params.values() if isinstance(v, datetime)]
            spans.append((min(times), max(times)))

    event.listen(database.engine, "before_execute", seen)
    try:
        with database.session() as session:
            together = figures_for_periods(session, periods, settings, NOW)
    finally:
        event.remove(database.engine, "before_execute", seen)
    assert sorted(spans) == [(old.start, old.end), (current_period("month", NOW).start, current_period("month", NOW).end)]
    assert together[old.label]["answer_within_rings"].countable == 1
    for period in periods:
        with database.session() as session:
            assert together[period.label] == figures(session, period, settings, NOW)


def test_twenty_years_of_weeks_and_months_are_asked_for_in_parts_and_add_up(app, settings):
    from metrics.compliance import PERIODS_PER_QUERY, date_range_period, month_periods, week_periods

    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    first, last = date(2007, 1, 1), date(2026, 12, 31)
    periods = [date_range_period(first, last), *month_periods(first, last), *week_periods(first, last)]
    assert len(periods) > 2 * PERIODS_PER_QUERY  # over 2,000 columns in one query: SQLite refused it
    with database.session() as session:
        together = figures_for_periods(session, periods, settings, NOW)
    months = [p for p in periods if len(p.label) == len("2026-11")]
    month = next(p for p in months if p.start <= NOW < p.end)
    with database.session() as session:
        assert together[month.label] == figures(session, month, settings, NOW)
    for rule in RULES:
        assert together[periods[0].label][rule].countable == sum(together[p.label][rule].countable for p in months) > 0


def test_figures_by_day_put_items_on_their_uk_day_and_add_up_to_the_range(app, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        add_call(session, utc(2026, 10, 24, 22, 59), answer_seconds=5.0)  # 23:59 BST on the 24th
        add_call(session, utc(2026, 10, 24, 23, 30), answer_seconds=5.0)  # 00:30 BST on the 25th
        add_call(session, utc(2026, 10, 25, 23, 30), answer_seconds=40.0)  # 23:30 GMT on the 25th (25 h day)
        add_callback(session, utc(2026, 10, 26, 0, 0), result="breached")
    with database.session() as session:
        store_known_mix(session)
    first, last = date(2026, 10, 24), date(2026, 11, 24)
    with database.session() as session:
        by_day = figures_by_day(session, first, last, settings, NOW)
    assert list(by_day) == [first + timedelta(days=n) for n in range(32)]
    assert as_tuples(by_day[date(2026, 10, 24)])["answer_within_rings"] == (1, 1, 0)
    assert as_tuples(by_day[date(2026, 10, 25)])["answer_within_rings"] == (2, 1, 1)
    assert as_tuples(by_day[date(2026, 10, 26)])["callback_within_3h"] == (1, 0, 1)
    assert as_tuples(by_day[date(2026, 10, 31)])["answer_within_rings"] == (1, 0, 1)
    assert as_tuples(by_day[date(2026, 11, 24)]) == {
        "answer_within_rings": (5, 3, 2), "callback_within_3h": (3, 2, 1), "email_ack": (4, 1, 3)}
    assert by_day[date(2026, 11, 10)]["answer_within_rings"].compliance is None
    with database.session() as session:
        whole = figures(session, date_range_period(first, last), settings, NOW)
    for rule in RULES:
        assert sum(day[rule].countable for day in by_day.values()) == whole[rule].countable
        assert sum(day[rule].met for day in by_day.values()) == whole[rule].met


def test_live_figures_count_open_callbacks_by_how_soon_they_are_due_and_unsent_acknowledgements(app, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        agent = User(username="agent", password_hash="x", role="agent", created_at=NOW)
        session.add(agent)
        session.flush()
        add_callback(session, NOW - timedelta(hours=3, minutes=5), result=None)  # overdue by 5 min
        add_callback(session, NOW - timedelta(hours=2, minutes=40), result=None)  # due in 20 min
        add_callback(session, NOW - timedelta(hours=2, minutes=50), result=None, claimed_by_id=agent.id)  # 10 min
        add_callback(session, NOW - timedelta(hours=1), result=None)  # due in 2 h
        add_callback(session, NOW - timedelta(hours=4), result="met", status="open")  # attempted in time, still open
        add_callback(session, NOW - timedelta(hours=6), result="breached")  # closed
        add_email(session, NOW - timedelta(minutes=20), status="pending", result=None)  # overdue
        add_email(session, NOW - timedelta(minutes=5), status="pending", result=None)
        add_email(session, NOW - timedelta(hours=2), status="failed", result=None)  # overdue
        add_email(session, NOW - timedelta(minutes=5), status="suppressed", result=None)
        add_email(session, NOW - timedelta(minutes=5), result="met")
    with database.session() as session:
        live = live_figures(session, settings, NOW)
    assert (live.callbacks_open, live.callbacks_due_soon, live.callbacks_due_soon_unclaimed,
            live.callbacks_overdue) == (5, 2, 1, 1)
    assert live.oldest_open_callback_age_seconds == 4 * 3600
    assert (live.emails_unacknowledged, live.emails_unacknowledged_overdue) == (3, 2)


def test_due_soon_counts_each_callback_by_its_own_clock_after_the_desk_has_closed_for_the_day(app, settings):
    closing = NOW.replace(hour=17, minute=45)  # the desk closes at 18:00 and opens at 08:00
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        # 25 minutes of opening time left (15 today, 10 tomorrow): due soon.
        add_callback(session, closing, result=None, due_in=timedelta(hours=14, minutes=25), clock="business")
        # On the wall clock, an hour and a quarter left: not due soon, though tomorrow's opening is later.
        add_callback(session, closing, result=None, due_in=timedelta(hours=1, minutes=15), clock="elapsed")
    with database.session() as session:
        live = live_figures(session, settings, closing)
    assert (live.callbacks_open, live.callbacks_due_soon, live.callbacks_overdue) == (2, 1, 0)


@pytest.mark.parametrize("clock", ["business", "elapsed"])
def test_a_callback_with_exactly_half_an_hour_left_is_not_due_soon_yet_and_is_a_moment_later(app, settings, clock):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        add_callback(session, NOW - timedelta(hours=2, minutes=30), result=None, clock=clock)  # due at 10:30
    with database.session() as session:
        now, later = live_figures(session, settings, NOW), live_figures(session, settings, NOW + timedelta(seconds=1))
    assert (now.callbacks_due_soon, later.callbacks_due_soon) == (0, 1)


def test_a_callback_or_acknowledgement_due_this_very_instant_is_not_late_yet_and_is_a_moment_later(app, settings):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        add_callback(session, NOW - timedelta(hours=3), result=None)  # due at NOW exactly
        add_email(session, NOW - timedelta(minutes=15), status="pending", result=None)  # due at NOW exactly
    today = current_period("today", NOW)
    later = NOW + timedelta(microseconds=1)
    with database.session() as session:
        live, live_later = live_figures(session, settings, NOW), live_figures(session, settings, later)
        due, past = figures(session, today, settings, NOW), figures(session, today, settings, later)
    # An attempt or a send at the due time still meets the rule, so nothing is late at it.
    assert (live.callbacks_overdue, live.callbacks_due_soon, live.emails_unacknowledged_overdue) == (0, 1, 0)
    assert (live_later.callbacks_overdue, live_later.callbacks_due_soon, live_later.emails_unacknowledged_overdue) \
        == (1, 0, 1)
    assert (due["callback_within_3h"].countable, due["email_ack"].countable) == (0, 0)
    assert (past["callback_within_3h"].countable, past["callback_within_3h"].met) == (1, 0)
    assert (past["email_ack"].countable, past["email_ack"].met) == (1, 0)


def test_with_nothing_open_the_oldest_age_is_zero(app, settings):
    with app.extensions["helpdesk.db"].session() as session:
        live = live_figures(session, settings, NOW)
    assert live == type(live)(0, 0, 0, 0, 0.0, 0, 0, 0, 0, 0.0, 0)
