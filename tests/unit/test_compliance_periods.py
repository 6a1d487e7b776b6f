"""Reporting periods in UK time, and the compliance ratio (pure functions)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from metrics.compliance import (
    compliance_ratio,
    current_period,
    date_range_period,
    day_periods,
    month_periods,
    week_periods,
)

UTC = timezone.utc


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_today_in_winter_runs_from_uk_midnight_to_uk_midnight():
    period = current_period("today", utc(2026, 11, 24, 10, 0))
    assert (period.label, period.start, period.end) == ("today", utc(2026, 11, 24), utc(2026, 11, 25))


def test_today_in_summer_starts_at_2300_utc_the_evening_before():
    period = current_period("today", utc(2026, 7, 1, 12, 0))
    assert (period.start, period.end) == (utc(2026, 6, 30, 23), utc(2026, 7, 1, 23))


def test_just_after_uk_midnight_in_summer_is_already_the_next_day():
    period = current_period("today", utc(2026, 6, 30, 23, 30))
    assert period.start == utc(2026, 6, 30, 23)


def test_the_day_the_clocks_go_forward_has_23_hours():
    period = current_period("today", utc(2026, 3, 29, 12))
    assert (period.start, period.end) == (utc(2026, 3, 29, 0), utc(2026, 3, 29, 23))
    assert period.end - period.start == timedelta(hours=23)


def test_the_day_the_clocks_go_back_has_25_hours():
    (period,) = day_periods(date(2026, 10, 25), date(2026, 10, 25))
    assert (period.label, period.start, period.end) == ("2026-10-25", utc(2026, 10, 24, 23), utc(2026, 10, 26, 0))
    assert period.end - period.start == timedelta(hours=25)


def test_this_week_starts_on_monday_even_on_a_sunday():
    period = current_period("week", utc(2026, 11, 29, 20))  # Sunday
    assert (period.start, period.end) == (utc(2026, 11, 23), utc(2026, 11, 30))


def test_a_week_across_the_clock_change_is_167_hours_long():
    period = current_period("week", utc(2026, 3, 27, 12))
    assert period.end - period.start == timedelta(hours=167)


def test_this_month_is_the_calendar_month_in_uk_time():
    period = current_period("month", utc(2026, 10, 31, 23, 30))  # 23:30 GMT on 31 October
    assert (period.start, period.end) == (utc(2026, 9, 30, 23), utc(2026, 11, 1, 0))


def test_december_runs_into_january_of_the_next_year():
    period = current_period("month", utc(2026, 12, 15))
    assert (period.start, period.end) == (utc(2026, 12, 1), utc(2027, 1, 1))


def test_an_unknown_period_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="fortnight"):
        current_period("fortnight", utc(2026, 11, 24))


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="naive"):
        current_period("today", datetime(2026, 11, 24, 10))


def test_a_date_range_includes_its_last_day():
    period = date_range_period(date(2026, 6, 1), date(2026, 6, 30))
    assert (period.label, period.start, period.end) == ("range", utc(2026, 5, 31, 23), utc(2026, 6, 30, 23))


def test_a_range_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="ends .2026-06-01. before it starts .2026-06-02."):
        date_range_period(date(2026, 6, 2), date(2026, 6, 1))


def test_day_periods_cover_the_range_without_gaps_across_a_clock_change():
    periods = day_periods(date(2026, 3, 28), date(2026, 3, 30))
    assert [p.label for p in periods] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    assert all(a.end == b.start for a, b in zip(periods, periods[1:]))
    assert [p.end - p.start for p in periods] == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]


def test_weeks_are_clipped_to_the_range_and_labelled_by_iso_week():
    periods = week_periods(date(2026, 11, 26), date(2026, 12, 9))  # Thursday to Wednesday
    assert [p.label for p in periods] == ["2026-W48", "2026-W49", "2026-W50"]
    assert periods[0].start == utc(2026, 11, 26)
    assert periods[1].start == utc(2026, 11, 30) and periods[1].end == utc(2026, 12, 7)
    assert periods[-1].end == utc(2026, 12, 10)


def test_the_iso_week_at_new_year_takes_the_year_of_its_thursday():
    periods = week_periods(date(2026, 12, 28), date(2027, 1, 3))
    assert [p.label for p in periods] == ["2026-W53"]
    assert [p.label for p in week_periods(date(2027, 1, 4), date(2027, 1, 4))] == ["2027-W01"]


def test_months_are_clipped_to_the_range():
    periods = month_periods(date(2026, 10, 15), date(2026, 12, 3))
    assert [p.label for p in periods] == ["2026-10", "2026-11", "2026-12"]
    assert periods[0].start == utc(2026, 10, 14, 23)  # BST
    assert periods[0].end == periods[1].start == utc(2026, 11, 1)
    assert periods[-1].end == utc(2026, 12, 4)


def test_a_month_of_one_day_is_that_day():
    (period,) = month_periods(date(2026, 2, 28), date(2026, 2, 28))
    assert (period.label, period.start, period.end) == ("2026-02", utc(2026, 2, 28), utc(2026, 3, 1))


def test_compliance_is_met_over_countable():
    assert compliance_ratio(9, 10) == 0.9
    assert compliance_ratio(10, 10) == 1.0
    assert compliance_ratio(0, 4) == 0.0


def test_nothing_countable_is_no_data_not_zero_or_one():
    assert compliance_ratio(0, 0) is None


def test_more_met_than_countable_is_refused():
    with pytest.raises(ValueError):
        compliance_ratio(3, 2)


@pytest.mark.parametrize("met, countable", [(-1, 5), (1, -1), (-2, -1)])
def test_a_negative_count_is_refused_even_when_the_other_count_is_not_negative(met, countable):
    with pytest.raises(ValueError):
        compliance_ratio(met, countable)


def test_month_periods_include_a_last_month_of_which_only_the_first_day_is_in_range():
    periods = month_periods(date(2026, 10, 15), date(2026, 12, 1))
    assert [p.label for p in periods] == ["2026-10", "2026-11", "2026-12"]
    assert periods[-1].start == utc(2026, 12, 1) and periods[-1].end == utc(2026, 12, 2)  # GMT in December


def test_periods_that_overlap_or_touch_are_grouped_and_periods_apart_are_not():
    from metrics.periods import overlapping_groups

    now = utc(2026, 11, 24, 10, 0)
    today, week, month = (current_period(kind, now) for kind in ("today", "week", "month"))
    october = date_range_period(date(2026, 10, 1), date(2026, 10, 31))  # ends where November starts
    summer = date_range_period(date(2026, 7, 1), date(2026, 7, 31))
    groups = overlapping_groups([month, today, summer, october, week])
    assert groups == [[summer], [october, month, week, today]]
    assert overlapping_groups([]) == []
