"""The three-hour rule: when a callback is due, why, and what the sweep records."""
from datetime import datetime, time, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from callbacks.deadlines import callback_deadline, due_at_for, due_soon_limits, explain, next_attempt_at, notices_due
from helpdesk.calendar import BusinessCalendar, Closure

LONDON = ZoneInfo("Europe/London")
THREE_HOURS = timedelta(hours=3)
# Monday to Friday, 09:00 to 17:00, England and Wales.
CALENDAR = BusinessCalendar({day: [(time(9), time(17))] for day in range(5)})


def local(*args) -> datetime:
    return datetime(*args, tzinfo=LONDON)


def due(start: datetime, clock: str = "business", calendar: BusinessCalendar = CALENDAR) -> datetime:
    deadline = callback_deadline(start, clock=clock, within=THREE_HOURS, calendar=calendar, config_version="v7")
    return deadline.due_at.astimezone(LONDON)


def test_a_call_at_1630_on_a_day_closing_at_1700_is_due_at_1130_the_next_working_day():
    assert due(local(2026, 11, 24, 16, 30)) == local(2026, 11, 25, 11, 30)


def test_a_call_at_1000_is_due_at_1300_the_same_day():
    assert due(local(2026, 11, 24, 10, 0)) == local(2026, 11, 24, 13, 0)


def test_friday_afternoon_is_due_on_monday_morning():
    assert due(local(2026, 11, 27, 15, 0)) == local(2026, 11, 30, 10, 0)


def test_a_bank_holiday_monday_is_skipped():
    # Friday 22 May 2026, then the Spring bank holiday on Monday 25 May.
    assert due(local(2026, 5, 22, 16, 0)) == local(2026, 5, 26, 11, 0)


def test_the_spring_clock_change_neither_adds_nor_loses_an_hour():
    # Friday 27 March 2026 16:00 GMT; clocks go forward on Sunday 29 March.
    result = due(local(2026, 3, 27, 16, 0))
    assert result == local(2026, 3, 30, 11, 0)
    assert result.utcoffset() == timedelta(hours=1)


def test_the_autumn_clock_change_neither_adds_nor_loses_an_hour():
    # Friday 23 October 2026 16:00 BST; clocks go back on Sunday 25 October.
    result = due(local(2026, 10, 23, 16, 0))
    assert result == local(2026, 10, 26, 11, 0)
    assert result.utcoffset() == timedelta(0)


def test_an_out_of_hours_call_starts_counting_at_the_next_opening():
    assert due(local(2026, 11, 24, 20, 15)) == local(2026, 11, 25, 12, 0)
    assert due(local(2026, 11, 28, 11, 0)) == local(2026, 11, 30, 12, 0)  # a Saturday


def test_the_elapsed_clock_counts_the_wall_clock():
    assert due(local(2026, 11, 24, 16, 30), clock="elapsed") == local(2026, 11, 24, 19, 30)
    # Across the clock changes: three real hours, whatever the wall clock says. (Subtracting two
    # times in the same zone would compare wall clocks, so compare them in UTC.)
    utc = timezone.utc
    autumn = local(2026, 10, 25, 0, 30)  # BST; at 02:00 BST the clocks go back to 01:00 GMT
    assert due(autumn, clock="elapsed") == local(2026, 10, 25, 2, 30)
    assert due(autumn, clock="elapsed").astimezone(utc) - autumn.astimezone(utc) == THREE_HOURS
    spring = local(2026, 3, 29, 0, 30)  # GMT; at 01:00 GMT the clocks go forward to 02:00 BST
    assert due(spring, clock="elapsed") == local(2026, 3, 29, 4, 30)
    assert due_at_for(spring, clock="elapsed", within=THREE_HOURS, calendar=CALENDAR).tzinfo == utc


def test_a_closure_pushes_the_deadline_and_is_explained():
    closed = Closure(local(2026, 11, 25, 9, 0), local(2026, 11, 25, 13, 0), reason="Staff training")
    calendar = BusinessCalendar({day: [(time(9), time(17))] for day in range(5)}, closures=[closed])
    deadline = callback_deadline(local(2026, 11, 24, 16, 30), clock="business", within=THREE_HOURS,
                                 calendar=calendar, config_version="v7")
    assert deadline.due_at.astimezone(LONDON) == local(2026, 11, 25, 15, 30)
    assert "Staff training" in explain(deadline.explanation)


def test_the_explanation_keeps_start_clock_crossings_and_configuration_version():
    deadline = callback_deadline(local(2026, 12, 24, 16, 30), clock="business", within=THREE_HOURS,
                                 calendar=CALENDAR, config_version="v7")
    explanation = deadline.explanation
    assert explanation["owed_from"] == "2026-12-24T16:30:00+00:00"  # UTC inside (GMT in December)
    assert explanation["clock"] == "business" and explanation["within_minutes"] == 180
    assert explanation["config_version"] == "v7"
    kinds = [c["kind"] for c in explanation["crossed"]]
    assert kinds == ["bank_holiday"] * 3  # ordinary closed hours are implied by the opening hours
    assert "Christmas Day" in explain(explanation)
    assert "summary" not in explanation  # a rendering, not a fact: made when shown
    assert deadline.due_at.astimezone(LONDON) == local(2026, 12, 29, 11, 30)


def test_an_unknown_clock_is_refused():
    with pytest.raises(ValueError, match="unknown callback clock"):
        callback_deadline(local(2026, 11, 24, 10), clock="lunar", within=THREE_HOURS, calendar=CALENDAR,
                          config_version="v")


DUE = datetime(2026, 11, 24, 13, 0, tzinfo=timezone.utc)


def sweep_at(minutes_before_due, first_attempt_at=None, already=()):
    now = DUE - timedelta(minutes=minutes_before_due)
    notices = notices_due(due_at=DUE, now=now, first_attempt_at=first_attempt_at, remaining=max(DUE - now, timedelta(0)),
                          warn_before=(30, 10), already=set(already))
    return [n.kind for n in notices]


def test_warnings_fall_due_at_their_lead_times_and_never_twice():
    assert sweep_at(45) == []
    assert sweep_at(30) == ["warning_30"]
    assert sweep_at(20, already={"warning_30"}) == []
    assert sweep_at(10, already={"warning_30"}) == ["warning_10"]


def test_a_sweep_that_missed_both_warnings_sends_only_the_most_urgent_and_never_the_other_later():
    assert sweep_at(5) == ["warning_10"]
    assert sweep_at(4, already={"warning_10"}) == []


def test_each_lead_still_fires_on_its_own_when_sweeps_come_in_time():
    assert sweep_at(30) == ["warning_30"]
    assert sweep_at(9, already={"warning_30"}) == ["warning_10"]


def test_a_late_sweep_records_the_breach_and_no_stale_warnings():
    assert sweep_at(-300) == ["breach"]
    assert sweep_at(-301, already={"breach"}) == []


def test_an_attempt_at_the_deadline_meets_the_rule_and_stops_all_notices():
    assert sweep_at(-60, first_attempt_at=DUE) == []
    assert sweep_at(5, first_attempt_at=DUE - timedelta(minutes=6)) == []


def test_a_first_attempt_after_the_deadline_is_still_a_breach():
    assert sweep_at(-60, first_attempt_at=DUE + timedelta(minutes=1)) == ["breach"]


def test_retries_follow_the_spacing_and_stop_at_the_limit():
    attempted = DUE
    assert next_attempt_at(attempted, 1, spacing_minutes=(30, 60), max_attempts=3) == DUE + timedelta(minutes=30)
    assert next_attempt_at(attempted, 2, spacing_minutes=(30, 60), max_attempts=3) == DUE + timedelta(minutes=60)
    assert next_attempt_at(attempted, 3, spacing_minutes=(30, 60), max_attempts=3) is None
    assert next_attempt_at(attempted, 4, spacing_minutes=(30,), max_attempts=9) == DUE + timedelta(minutes=30)


def test_no_warning_is_sent_when_no_lead_times_apply():
    # The sweep passes no lead times while the desk is closed on the business clock.
    now = DUE - timedelta(minutes=5)
    assert notices_due(due_at=DUE, now=now, first_attempt_at=None, remaining=timedelta(minutes=5),
                       warn_before=(), already=set()) == []


def test_the_explanation_stores_utc_and_explains_in_uk_time_in_summer():
    deadline = callback_deadline(local(2026, 7, 14, 16, 30), clock="business", within=THREE_HOURS, calendar=CALENDAR,
                                 config_version="v7")
    assert deadline.explanation["owed_from"] == "2026-07-14T15:30:00+00:00"
    assert "Owed from 16:30 on Tuesday 14 July 2026" in explain(deadline.explanation)
    assert "11:30 on Wednesday 15 July 2026" in explain(deadline.explanation)


def test_the_rule_alone_gives_the_same_due_time_as_the_full_deadline():
    start = local(2026, 11, 27, 15, 0)
    full = callback_deadline(start, clock="business", within=THREE_HOURS, calendar=CALENDAR, config_version="v")
    assert due_at_for(start, clock="business", within=THREE_HOURS, calendar=CALENDAR) == full.due_at


def test_a_warnings_line_on_the_queue_page_says_the_time_left_in_whole_minutes_never_more():
    from callbacks.queue import notice_text

    left = timedelta(minutes=1, seconds=59)
    assert notice_text("warning_10", "HD-2026-000001", left) == "Due in 1 minute: HD-2026-000001"
    assert notice_text("warning_30", "HD-2026-000001", timedelta(minutes=30)) == "Due in 30 minutes: HD-2026-000001"
    assert notice_text("warning_30", "HD-2026-000001", timedelta(minutes=15)) == "Due in 15 minutes: HD-2026-000001"
    assert notice_text("warning_10", "HD-2026-000001", timedelta(seconds=59)) == "Due in under a minute: HD-2026-000001"
    assert notice_text("breach", "HD-2026-000001", timedelta(0)) == "Breached: HD-2026-000001"


def test_a_callback_owed_while_closed_explains_that_its_clock_started_at_the_next_opening():
    """18:00 on Monday 23 November 2026 is after closing: on the business clock counting starts
    at 09:00 on Tuesday; on the elapsed clock it starts when the callback was owed."""
    owed = local(2026, 11, 23, 18, 0)
    business = callback_deadline(owed, clock="business", within=THREE_HOURS, calendar=CALENDAR, config_version="v7")
    assert (business.owed_from, business.clock) == (owed, "business")
    assert business.explanation["counting_from"] == "2026-11-24T09:00:00+00:00"
    assert business.due_at.astimezone(LONDON) == local(2026, 11, 24, 12, 0)
    assert explain(business.explanation) == (
        "Owed from 18:00 on Monday 23 November 2026; due after 3 hours of opening time, at 12:00 on Tuesday"
        " 24 November 2026. The help desk was closed, so the clock started at 09:00 on Tuesday 24 November 2026.")
    elapsed = callback_deadline(owed, clock="elapsed", within=THREE_HOURS, calendar=CALENDAR, config_version="v7")
    assert elapsed.clock == "elapsed"
    assert elapsed.explanation["counting_from"] == "2026-11-23T18:00:00+00:00"


def test_an_elapsed_clock_deadline_is_explained_as_wall_clock_time():
    deadline = callback_deadline(local(2026, 11, 23, 16, 30), clock="elapsed", within=THREE_HOURS, calendar=CALENDAR,
                                 config_version="v7")
    assert explain(deadline.explanation) == (
        "Owed from 16:30 on Monday 23 November 2026; due 3 hours later, at 19:30 on Monday 23 November 2026.")


def test_the_explanation_names_clock_changes_and_closures_crossed_in_order():
    """DESIGN.md: the explanation keeps the closures, holidays and DST shifts a deadline crossed.
    16:00 on Friday 23 October 2026: 1 hour that day; the clocks go back on Sunday; on Monday the
    desk is shut 09:00-10:00, so the other 2 hours run 10:00-12:00."""
    briefing = Closure(local(2026, 10, 26, 9), local(2026, 10, 26, 10), "Team briefing")
    calendar = BusinessCalendar({day: [(time(9), time(17))] for day in range(5)}, closures=[briefing])
    deadline = callback_deadline(local(2026, 10, 23, 16), clock="business", within=THREE_HOURS, calendar=calendar,
                                 config_version="v7")
    assert explain(deadline.explanation) == (
        "Owed from 16:00 on Friday 23 October 2026; due after 3 hours of opening time, at 12:00 on Monday"
        " 26 October 2026. Crossed: clocks went back one hour; Team briefing (closure).")
    assert [(c["kind"], c["start"], c["end"]) for c in deadline.explanation["crossed"]] == [
        ("dst_change", "2026-10-25T01:00:00+00:00", "2026-10-25T01:00:00+00:00"),
        ("closure", "2026-10-26T09:00:00+00:00", "2026-10-26T10:00:00+00:00"),
    ]


def test_a_deadline_is_written_with_the_day_of_the_month_without_a_leading_zero():
    from callbacks.deadlines import when_words

    assert when_words(datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)) == "10:00 on Tuesday 1 December 2026"


@pytest.mark.parametrize("minutes, words", [(60, "1 hour"), (61, "1 hour 1 minute"), (150, "2 hours 30 minutes"),
                                            (45, "45 minutes")])
def test_the_callback_window_is_explained_in_hours_and_minutes(minutes, words):
    deadline = callback_deadline(local(2026, 11, 23, 10, 0), clock="elapsed", within=timedelta(minutes=minutes),
                                 calendar=CALENDAR, config_version="v7")
    assert f"; due {words} later, at " in explain(deadline.explanation)


def test_a_sweep_exactly_at_the_deadline_records_no_breach_as_an_attempt_then_still_meets_the_rule():
    """DESIGN.md: met by the first attempt at or before due_at; so at due_at itself it is not yet breached."""
    assert sweep_at(0, already={"warning_30", "warning_10"}) == []
    assert sweep_at(0) == ["warning_10"]


def test_a_breach_found_by_a_late_sweep_fell_due_at_the_deadline_not_at_the_sweep():
    """DESIGN.md: a sweep after downtime records the breaches that happened while it was down."""
    from callbacks.deadlines import Notice

    notices = notices_due(due_at=DUE, now=DUE + timedelta(hours=5), first_attempt_at=None, remaining=timedelta(0),
                          warn_before=(30, 10), already=set())
    assert notices == [Notice("breach", DUE)]


def desk(due_soon_minutes: int, calendar: BusinessCalendar = CALENDAR):
    """The two settings due_soon_limits reads: callback.due_soon_minutes and the calendar."""
    return SimpleNamespace(callback=SimpleNamespace(due_soon_minutes=due_soon_minutes), calendar=calendar)


def test_due_soon_on_the_business_clock_counts_opening_time_left_and_on_the_elapsed_clock_the_wall_clock():
    # Friday 27 November 2026 16:45, closing at 17:00: 15 minutes of opening time are left on
    # Friday, so 30 minutes of it run to 09:15 on Monday; the wall clock to 17:15 on Friday.
    limits = due_soon_limits(desk(30), local(2026, 11, 27, 16, 45))
    assert limits == {"business": local(2026, 11, 30, 9, 15), "elapsed": local(2026, 11, 27, 17, 15)}


def test_a_callback_due_first_thing_on_monday_is_due_soon_on_the_business_clock_all_weekend():
    # README: HelpdeskCallbacksDueSoonUnclaimed, "a callback due first thing on Monday is due soon
    # on the business clock all weekend". Saturday 28 November 2026 11:00.
    limits = due_soon_limits(desk(30), local(2026, 11, 28, 11, 0))
    assert limits["business"] == local(2026, 11, 30, 9, 30)
    assert limits["elapsed"] == local(2026, 11, 28, 11, 30)


def test_due_soon_with_a_calendar_that_never_opens_falls_back_to_the_wall_clock():
    never_open = BusinessCalendar({})
    limits = due_soon_limits(desk(10, never_open), local(2026, 11, 24, 10, 0))
    assert limits == {"business": local(2026, 11, 24, 10, 10), "elapsed": local(2026, 11, 24, 10, 10)}


def test_a_time_in_the_hour_the_clocks_repeat_says_which_pass_it_is():
    from callbacks.deadlines import when_words

    # 01:30 came twice on Sunday 25 October 2026: first in BST (00:30 UTC), then in GMT (01:30 UTC).
    assert when_words(datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)) == "01:30 BST on Sunday 25 October 2026"
    assert when_words(datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)) == "01:30 GMT on Sunday 25 October 2026"
    assert when_words(datetime(2026, 10, 25, 2, 30, tzinfo=timezone.utc)) == "02:30 on Sunday 25 October 2026"
    assert when_words(datetime(2026, 11, 1, 9, 5, tzinfo=timezone.utc)) == "09:05 on Sunday 1 November 2026"
