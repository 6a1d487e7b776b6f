from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.calendar import NATIONS, BusinessCalendar, Closure, DayCrossing

UTC = timezone.utc
LONDON = ZoneInfo("Europe/London")
NINE_TO_FIVE = {weekday: [(time(9), time(17))] for weekday in range(5)}
SPLIT_DAY = {weekday: [(time(8), time(12, 30)), (time(13, 30), time(17))] for weekday in range(5)}
SPRING_FORWARD = date(2026, 3, 29)
FALL_BACK = date(2026, 10, 25)


def local(year, month, day, hour=0, minute=0):
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


@pytest.fixture
def desk():
    return BusinessCalendar(NINE_TO_FIVE)


# Opening hours


def test_the_desk_is_open_at_the_exact_opening_time(desk):
    assert desk.is_open(local(2026, 3, 10, 9, 0))


def test_the_desk_is_closed_one_microsecond_before_opening(desk):
    assert not desk.is_open(local(2026, 3, 10, 9) - timedelta(microseconds=1))


def test_the_desk_is_closed_at_the_exact_closing_time(desk):
    assert desk.is_open(local(2026, 3, 10, 16, 59))
    assert not desk.is_open(local(2026, 3, 10, 17, 0))


def test_the_desk_is_closed_during_the_lunch_gap_of_a_split_day():
    calendar = BusinessCalendar(SPLIT_DAY)
    assert calendar.is_open(local(2026, 3, 10, 12, 29))
    assert not calendar.is_open(local(2026, 3, 10, 12, 30))
    assert not calendar.is_open(local(2026, 3, 10, 13, 29))
    assert calendar.is_open(local(2026, 3, 10, 13, 30))


def test_a_split_day_counts_only_the_hours_either_side_of_lunch():
    calendar = BusinessCalendar(SPLIT_DAY)
    assert calendar.business_time_between(local(2026, 3, 10), local(2026, 3, 11)) == timedelta(hours=8)


def test_the_desk_is_closed_at_the_weekend_when_only_weekdays_have_hours(desk):
    assert not desk.is_open(local(2026, 3, 14, 12))  # Saturday
    assert not desk.is_open(local(2026, 3, 15, 12))  # Sunday


def test_opening_hours_are_london_wall_clock_times_whatever_zone_the_question_uses(desk):
    # 08:30 UTC is 09:30 in summer (open) but 08:30 in winter (closed).
    assert desk.is_open(datetime(2026, 6, 10, 8, 30, tzinfo=UTC))
    assert not desk.is_open(datetime(2026, 1, 14, 8, 30, tzinfo=UTC))


def test_every_returned_time_is_utc(desk):
    assert desk.next_opening(local(2026, 6, 13, 12)).tzinfo is UTC
    assert desk.add_business_time(local(2026, 6, 10, 10), timedelta(hours=1)).tzinfo is UTC
    assert all(a.tzinfo is UTC and b.tzinfo is UTC for a, b in desk.open_intervals(local(2026, 6, 8), local(2026, 6, 13)))


# Bank holidays by nation


@pytest.mark.parametrize("nation", NATIONS)
@pytest.mark.parametrize(
    "substitute_day",
    [date(2021, 12, 27), date(2021, 12, 28), date(2022, 1, 3)],
    ids=["christmas-2021", "boxing-day-2021", "new-year-2022"],
)
def test_substitute_days_for_christmas_2021_and_new_year_2022_are_bank_holidays_in_every_nation(nation, substitute_day):
    calendar = BusinessCalendar(NINE_TO_FIVE, nation=nation)
    assert calendar.holiday_name(substitute_day) is not None
    assert not calendar.is_open(datetime.combine(substitute_day, time(12), LONDON))


def test_an_ordinary_working_day_has_no_holiday_name(desk):
    assert desk.holiday_name(date(2026, 3, 10)) is None


def test_easter_monday_is_a_bank_holiday_in_england_and_wales_but_not_in_scotland():
    easter_monday = date(2026, 4, 6)
    assert BusinessCalendar(NINE_TO_FIVE, "england-and-wales").holiday_name(easter_monday) == "Easter Monday"
    assert BusinessCalendar(NINE_TO_FIVE, "scotland").holiday_name(easter_monday) is None
    assert BusinessCalendar(NINE_TO_FIVE, "scotland").is_open(local(2026, 4, 6, 10))


def test_scotland_has_2_january_and_a_substitute_for_st_andrews_day_on_a_sunday():
    scotland = BusinessCalendar(NINE_TO_FIVE, "scotland")
    assert scotland.holiday_name(date(2026, 1, 2)) is not None
    # 30 November 2025 was a Sunday, so Monday 1 December was the holiday.
    assert "Andrew" in scotland.holiday_name(date(2025, 12, 1))
    assert not scotland.is_open(local(2025, 12, 1, 10))


def test_northern_ireland_has_st_patricks_day_and_the_twelfth_of_july():
    northern_ireland = BusinessCalendar(NINE_TO_FIVE, "northern-ireland")
    assert "Patrick" in northern_ireland.holiday_name(date(2026, 3, 17))
    assert northern_ireland.holiday_name(date(2025, 7, 14)) is not None  # 12 July 2025 was a Saturday
    assert not northern_ireland.is_open(local(2026, 3, 17, 10))


@pytest.mark.parametrize("day", [date(2026, 1, 2), date(2026, 3, 17), date(2024, 7, 12), date(2025, 12, 1)])
def test_england_and_wales_does_not_have_the_other_nations_holidays(day):
    england = BusinessCalendar(NINE_TO_FIVE, "england-and-wales")
    assert england.holiday_name(day) is None
    assert england.is_open(datetime.combine(day, time(10), LONDON))


# Closures


def test_a_whole_day_closure_keeps_the_desk_shut_all_day(desk):
    calendar = BusinessCalendar(NINE_TO_FIVE, closures=[Closure(local(2026, 3, 11), local(2026, 3, 12), "office move")])
    assert not calendar.is_open(local(2026, 3, 11, 12))
    assert calendar.business_time_between(local(2026, 3, 10), local(2026, 3, 13)) == timedelta(hours=16)


def test_a_partial_day_closure_removes_only_its_own_hours():
    calendar = BusinessCalendar(NINE_TO_FIVE, closures=[Closure(local(2026, 3, 11, 12), local(2026, 3, 11, 14), "training")])
    assert calendar.is_open(local(2026, 3, 11, 11, 59))
    assert not calendar.is_open(local(2026, 3, 11, 12))
    assert calendar.is_open(local(2026, 3, 11, 14))
    assert calendar.business_time_between(local(2026, 3, 11), local(2026, 3, 12)) == timedelta(hours=6)


def test_a_deadline_runs_past_a_partial_day_closure():
    calendar = BusinessCalendar(NINE_TO_FIVE, closures=[Closure(local(2026, 3, 11, 12), local(2026, 3, 11, 14), "training")])
    due = calendar.add_business_time(local(2026, 3, 11, 11), timedelta(hours=2))
    assert due == local(2026, 3, 11, 15)


# Business time between two instants


def test_business_time_between_is_zero_when_end_is_not_after_start(desk):
    assert desk.business_time_between(local(2026, 3, 10, 12), local(2026, 3, 10, 12)) == timedelta(0)
    assert desk.business_time_between(local(2026, 3, 10, 12), local(2026, 3, 10, 10)) == timedelta(0)


def test_a_call_at_1630_on_a_day_closing_at_1700_has_30_minutes_left_today(desk):
    assert desk.business_time_between(local(2026, 3, 10, 16, 30), local(2026, 3, 11)) == timedelta(minutes=30)


def test_business_time_overnight_counts_only_opening_hours(desk):
    assert desk.business_time_between(local(2026, 3, 10, 16), local(2026, 3, 11, 10)) == timedelta(hours=2)


def test_business_time_from_friday_afternoon_to_monday_morning_skips_the_weekend(desk):
    assert desk.business_time_between(local(2026, 3, 13, 15), local(2026, 3, 16, 11)) == timedelta(hours=4)


def test_business_time_over_a_bank_holiday_weekend_skips_the_monday(desk):
    # Monday 25 May 2026 is the spring bank holiday.
    assert desk.business_time_between(local(2026, 5, 22, 15), local(2026, 5, 26, 11)) == timedelta(hours=4)


# Adding business time (callback deadlines)


def test_a_call_at_1630_on_a_day_closing_at_1700_is_due_at_1130_the_next_working_day(desk):
    assert desk.add_business_time(local(2026, 3, 10, 16, 30), timedelta(hours=3)) == local(2026, 3, 11, 11, 30)


def test_a_call_at_1630_on_a_friday_is_due_at_1130_on_monday(desk):
    assert desk.add_business_time(local(2026, 3, 13, 16, 30), timedelta(hours=3)) == local(2026, 3, 16, 11, 30)


def test_a_call_at_1630_before_a_bank_holiday_monday_is_due_on_tuesday(desk):
    assert desk.add_business_time(local(2026, 5, 22, 16, 30), timedelta(hours=3)) == local(2026, 5, 26, 11, 30)


def test_a_deadline_landing_exactly_on_closing_time_is_closing_time(desk):
    assert desk.add_business_time(local(2026, 3, 10, 14), timedelta(hours=3)) == local(2026, 3, 10, 17)


def test_a_call_received_in_the_evening_starts_counting_at_the_next_opening(desk):
    assert desk.add_business_time(local(2026, 3, 10, 20), timedelta(hours=3)) == local(2026, 3, 11, 12)


def test_a_call_received_on_saturday_starts_counting_on_monday_morning(desk):
    assert desk.add_business_time(local(2026, 3, 14, 10), timedelta(hours=1)) == local(2026, 3, 16, 10)


def test_adding_no_time_gives_the_start_when_open_and_the_next_opening_when_closed(desk):
    assert desk.add_business_time(local(2026, 3, 10, 10), timedelta(0)) == local(2026, 3, 10, 10)
    assert desk.add_business_time(local(2026, 3, 10, 17), timedelta(0)) == local(2026, 3, 11, 9)


def test_next_opening_is_the_time_itself_when_open_and_after_lunch_when_at_lunch():
    calendar = BusinessCalendar(SPLIT_DAY)
    assert calendar.next_opening(local(2026, 3, 10, 10)) == local(2026, 3, 10, 10)
    assert calendar.next_opening(local(2026, 3, 10, 12, 45)) == local(2026, 3, 10, 13, 30)


def test_adding_time_to_a_calendar_that_never_opens_gives_up_with_a_value_error():
    with pytest.raises(ValueError, match="no opening hours within 366 days"):
        BusinessCalendar({}).add_business_time(local(2026, 3, 10, 10), timedelta(hours=3))


def test_adding_a_negative_amount_of_time_is_refused(desk):
    with pytest.raises(ValueError, match="negative"):
        desk.add_business_time(local(2026, 3, 10, 10), timedelta(minutes=-1))


# Clock changes


@pytest.mark.parametrize("sunday", [SPRING_FORWARD, FALL_BACK], ids=["spring", "autumn"])
def test_a_clock_change_weekend_neither_adds_nor_loses_business_time(desk, sunday):
    saturday, monday = sunday - timedelta(days=1), sunday + timedelta(days=1)
    noon = time(12)
    between = desk.business_time_between(datetime.combine(saturday, noon, LONDON), datetime.combine(monday, noon, LONDON))
    assert between == timedelta(hours=3)
    friday_noon = datetime.combine(sunday - timedelta(days=2), noon, LONDON)
    assert desk.business_time_between(friday_noon, datetime.combine(monday, noon, LONDON)) == timedelta(hours=8)
    assert desk.add_business_time(friday_noon, timedelta(hours=8)) == datetime.combine(monday, noon, LONDON)


@pytest.mark.parametrize(
    ("sunday", "opens_utc"), [(SPRING_FORWARD, time(7)), (FALL_BACK, time(8))], ids=["spring", "autumn"]
)
def test_an_0800_to_1700_sunday_on_a_clock_change_day_is_still_nine_hours(sunday, opens_utc):
    calendar = BusinessCalendar({6: [(time(8), time(17))]})
    intervals = calendar.open_intervals(datetime.combine(sunday, time(0), LONDON), datetime.combine(sunday, time(23), LONDON))
    opens = datetime.combine(sunday, opens_utc, UTC)
    assert intervals == [(opens, opens + timedelta(hours=9))]


@pytest.mark.parametrize(
    ("sunday", "elapsed"),
    [(SPRING_FORWARD, timedelta(hours=22, minutes=59)), (FALL_BACK, timedelta(hours=24, minutes=59))],
    ids=["spring", "autumn"],
)
def test_an_opening_that_spans_the_clock_change_counts_the_time_actually_elapsed(sunday, elapsed):
    calendar = BusinessCalendar({6: [(time(0), time(23, 59))]})
    day = calendar.business_time_between(datetime.combine(sunday, time(0), LONDON), datetime.combine(sunday, time(23, 59), LONDON))
    assert day == elapsed


def test_an_opening_in_the_missing_spring_hour_does_not_break_the_day():
    # 01:30 does not exist on 29 March 2026: the clocks go from 01:00 GMT to 02:00 BST.
    calendar = BusinessCalendar({6: [(time(0), time(1, 30)), (time(1, 30), time(3))]})
    intervals = calendar.open_intervals(local(2026, 3, 28), local(2026, 3, 30))
    assert intervals == [(datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, tzinfo=UTC))]


def test_hours_in_the_hour_the_clocks_repeat_are_open_on_each_pass_and_only_then():
    """25 October 2026: 01:00-02:00 happens twice, BST (00:00-01:00 UTC) then GMT (01:00-02:00 UTC).
    Open 01:30-02:00 is open 30 minutes on each pass, and not at the second pass of 01:10."""
    calendar = BusinessCalendar({6: [(time(1, 30), time(2))]})
    day = (local(2026, 10, 25), local(2026, 10, 26))
    assert calendar.open_intervals(*day) == [
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, tzinfo=UTC)),
    ]
    assert calendar.business_time_between(*day) == timedelta(hours=1)
    assert not calendar.is_open(datetime(2026, 10, 25, 1, 10, tzinfo=UTC))  # 01:10 GMT, the second pass
    assert calendar.is_open(datetime(2026, 10, 25, 0, 40, tzinfo=UTC))  # 01:40 BST
    assert calendar.is_open(datetime(2026, 10, 25, 1, 40, tzinfo=UTC))  # 01:40 GMT


def test_hours_that_open_in_the_hour_the_clocks_skip_open_when_the_clocks_reach_the_new_time():
    """29 March 2026: 01:30-04:15 opens at 02:00 BST (01:00 UTC), when the clocks jump past 01:30."""
    calendar = BusinessCalendar({6: [(time(1, 30), time(4, 15))]})
    day = (local(2026, 3, 29), local(2026, 3, 30))
    assert calendar.open_intervals(*day) == [
        (datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 29, 3, 15, tzinfo=UTC))]
    assert calendar.business_time_between(*day) == timedelta(hours=2, minutes=15)
    assert calendar.is_open(datetime(2026, 3, 29, 1, 10, tzinfo=UTC))  # 02:10 BST
    assert not calendar.is_open(datetime(2026, 3, 29, 0, 59, tzinfo=UTC))  # 00:59 GMT


@pytest.mark.parametrize("sunday", [SPRING_FORWARD, FALL_BACK], ids=["spring", "autumn"])
@settings(max_examples=300, deadline=None)
# Quarter hours from 00:00 to 04:00, and minutes of the first four hours: around the change.
@given(opens=st.integers(0, 16), length=st.integers(1, 16), probe=st.integers(0, 4 * 60))
def test_on_clock_change_days_the_desk_is_open_exactly_when_the_wall_clock_is_in_its_hours(sunday, opens, length,
                                                                                          probe):
    """Open hours are wall-clock times: at any instant of the day, open if and only if the clock
    on the wall (Europe/London) shows a time from the opening to the closing."""
    start, end = time(opens // 4, opens % 4 * 15), time((opens + length) // 4, (opens + length) % 4 * 15)
    calendar = BusinessCalendar({6: [(start, end)]})
    moment = datetime.combine(sunday, time(0), LONDON).astimezone(UTC) + timedelta(minutes=probe)
    assert calendar.is_open(moment) == (start <= moment.astimezone(LONDON).time() < end)


# Crossings (explaining a deadline)


def test_crossings_list_the_nights_and_a_bank_holiday_in_order(desk):
    start = local(2026, 5, 22, 16, 30)
    due = desk.add_business_time(start, timedelta(hours=3))
    assert desk.crossings(start, due) == [
        DayCrossing("closed", local(2026, 5, 22, 17), local(2026, 5, 25), "closed (outside opening hours)"),
        DayCrossing("bank_holiday", local(2026, 5, 25), local(2026, 5, 26), "Spring Bank Holiday (bank holiday)"),
        DayCrossing("closed", local(2026, 5, 26), local(2026, 5, 26, 9), "closed (outside opening hours)"),
    ]


def test_crossings_include_the_spring_clock_change_at_0100_utc(desk):
    crossings = desk.crossings(local(2026, 3, 27, 16, 30), local(2026, 3, 30, 11, 30))
    changes = [c for c in crossings if c.kind == "dst_change"]
    moment = datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert changes == [DayCrossing("dst_change", moment, moment, "clocks went forward one hour")]
    assert [c.kind for c in crossings] == ["closed", "dst_change"]


def test_crossings_include_the_autumn_clock_change(desk):
    crossings = desk.crossings(local(2026, 10, 23, 16, 30), local(2026, 10, 26, 11, 30))
    assert [c.description for c in crossings if c.kind == "dst_change"] == ["clocks went back one hour"]


def test_crossings_name_closures_and_leave_open_time_out():
    closure = Closure(local(2026, 3, 11, 12), local(2026, 3, 11, 14), "fire drill")
    calendar = BusinessCalendar(NINE_TO_FIVE, closures=[closure])
    assert calendar.crossings(local(2026, 3, 11, 10), local(2026, 3, 11, 16)) == [
        DayCrossing("closure", local(2026, 3, 11, 12), local(2026, 3, 11, 14), "fire drill (closure)"),
    ]


def test_crossings_returns_nothing_for_a_span_wholly_in_opening_hours(desk):
    assert desk.crossings(local(2026, 3, 10, 10), local(2026, 3, 10, 12)) == []


def test_crossings_times_are_utc(desk):
    crossings = desk.crossings(local(2026, 5, 22, 16, 30), local(2026, 5, 26, 11, 30))
    assert crossings and all(c.start.tzinfo is UTC and c.end.tzinfo is UTC for c in crossings)


def test_crossings_list_a_bank_holiday_on_the_last_day_of_the_span_clipped_to_its_end(desk):
    """A span ending at noon on Christmas Day crossed the first twelve hours of it."""
    crossed = desk.crossings(local(2026, 12, 24, 12), local(2026, 12, 25, 12), closed=False)
    assert crossed == [DayCrossing("bank_holiday", local(2026, 12, 25), local(2026, 12, 25, 12),
                                   "Christmas Day (bank holiday)")]


def test_crossings_leave_out_a_bank_holiday_that_starts_exactly_when_the_span_ends(desk):
    """Spans are [start, end): one ending at midnight before Christmas Day crossed none of it."""
    assert desk.crossings(local(2026, 12, 24, 12), local(2026, 12, 25), closed=False) == []


def test_crossings_include_a_clock_change_at_the_start_of_the_span_and_not_at_its_end(desk):
    change = datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert [c.kind for c in desk.crossings(change, change + timedelta(hours=1), closed=False)] == ["dst_change"]
    assert desk.crossings(change - timedelta(hours=1), change, closed=False) == []


def test_crossings_leave_out_a_closure_that_only_touches_the_span():
    closure = Closure(local(2026, 3, 10, 10), local(2026, 3, 10, 11), "Fire drill")
    desk = BusinessCalendar(NINE_TO_FIVE, closures=[closure])
    assert desk.crossings(local(2026, 3, 10, 11), local(2026, 3, 10, 12), closed=False) == []
    assert desk.crossings(local(2026, 3, 10, 9), local(2026, 3, 10, 10), closed=False) == []


def test_a_closure_without_a_reason_is_described_as_a_closure():
    desk = BusinessCalendar(NINE_TO_FIVE, closures=[Closure(local(2026, 3, 10, 10), local(2026, 3, 10, 11))])
    (crossing,) = desk.crossings(local(2026, 3, 10, 9), local(2026, 3, 10, 12), closed=False)
    assert (crossing.kind, crossing.description) == ("closure", "closure")


# Invalid input


@pytest.mark.parametrize(
    "call",
    [
        lambda c, t: c.is_open(t),
        lambda c, t: c.next_opening(t),
        lambda c, t: c.add_business_time(t, timedelta(hours=1)),
        lambda c, t: c.business_time_between(t, local(2026, 3, 12)),
        lambda c, t: c.open_intervals(local(2026, 3, 9), t),
        lambda c, t: c.crossings(t, local(2026, 3, 12)),
        lambda c, t: Closure(t, local(2026, 3, 12)),
    ],
    ids=["is_open", "next_opening", "add_business_time", "business_time_between", "open_intervals", "crossings", "closure"],
)
def test_a_naive_datetime_is_refused(desk, call):
    with pytest.raises(ValueError, match="timezone-aware"):
        call(desk, datetime(2026, 3, 10, 10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opening_hours": NINE_TO_FIVE, "nation": "wales"}, "unknown nation"),
        ({"opening_hours": {0: [(time(17), time(9))]}}, "not before closing"),
        ({"opening_hours": {0: [(time(9), time(9))]}}, "not before closing"),
        ({"opening_hours": {0: [(time(9), time(13)), (time(12), time(17))]}}, "overlaps"),
        ({"opening_hours": {7: [(time(9), time(17))]}}, "weekday"),
        ({"opening_hours": NINE_TO_FIVE, "tz": "Europe/Atlantis"}, "time zone"),
    ],
    ids=["nation", "backwards", "empty", "overlap", "weekday", "zone"],
)
def test_an_invalid_configuration_is_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(**kwargs)


def test_a_closure_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="must end after it starts"):
        Closure(local(2026, 3, 11, 14), local(2026, 3, 11, 12), "backwards")


def test_a_closure_that_ends_when_it_starts_is_refused():
    with pytest.raises(ValueError, match="must end after it starts"):
        Closure(local(2026, 3, 11, 12), local(2026, 3, 11, 12), "empty")


def test_opening_hours_given_with_a_time_zone_are_refused():
    """Opening hours are local wall-clock times; a time with its own zone is ambiguous."""
    with pytest.raises(ValueError, match="naive local times"):
        BusinessCalendar({0: [(time(9, tzinfo=UTC), time(17, tzinfo=UTC))]})


def test_a_date_or_a_datetime_without_an_offset_is_refused_as_an_instant(desk):
    from datetime import tzinfo

    class NoOffset(tzinfo):
        def utcoffset(self, dt):
            return None

    with pytest.raises(ValueError, match="timezone-aware"):
        desk.is_open(date(2026, 3, 10))
    with pytest.raises(ValueError, match="timezone-aware"):
        desk.is_open(datetime(2026, 3, 10, 10, tzinfo=NoOffset()))


# Properties

CALENDARS = [
    BusinessCalendar(
        {**SPLIT_DAY, 5: [(time(9), time(12))]},
        nation="scotland",
        closures=[Closure(local(2026, 12, 24, 12), local(2027, 1, 5), "Christmas shutdown")],
    ),
    # Awkward on purpose: Sunday hours that touch the missing and repeated hours.
    BusinessCalendar({0: [(time(9), time(17))], 6: [(time(0), time(1, 30)), (time(2), time(23, 59))]}),
]


# Instants of a decade in UTC, and business time to add to them.
STARTS = st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))
DEADLINE_SPANS = st.timedeltas(timedelta(0), timedelta(hours=60))


def over_deadlines(test):
    """A property test over each of CALENDARS, a start and business time to add to it."""
    return settings(database=None, deadline=None, max_examples=300)(
        given(calendar=st.sampled_from(CALENDARS), start=STARTS, delta=DEADLINE_SPANS)(test))


@over_deadlines
def test_the_business_time_between_a_start_and_its_deadline_is_the_time_that_was_added(calendar, start, delta):
    assert calendar.business_time_between(start, calendar.add_business_time(start, delta)) == delta


@over_deadlines
def test_counting_starts_at_the_first_open_instant_from_the_start_whatever_is_added(calendar, start, delta):
    counting, due = calendar.counting_and_due(start, delta)
    assert due == calendar.add_business_time(start, delta)
    assert counting == calendar.next_opening(start) == calendar.counting_and_due(start, timedelta(0))[0]
    assert calendar.is_open(counting) and calendar.business_time_between(start, counting) == timedelta(0)
    assert start <= counting <= due


@settings(database=None, deadline=None, max_examples=200)
@given(
    calendar=st.sampled_from(CALENDARS),
    start=STARTS,
    first=st.timedeltas(timedelta(0), timedelta(days=10)),
    second=st.timedeltas(timedelta(0), timedelta(days=10)),
)
def test_business_time_over_two_consecutive_spans_adds_up(calendar, start, first, second):
    middle, end = start + first, start + first + second
    whole = calendar.business_time_between(start, end)
    assert calendar.business_time_between(start, middle) + calendar.business_time_between(middle, end) == whole


def test_a_day_open_to_midnight_is_open_to_its_last_instant_and_whole():
    from helpdesk.calendar import END_OF_DAY

    always = BusinessCalendar({weekday: [(time(0), END_OF_DAY)] for weekday in range(7)})
    assert always.is_open(local(2026, 3, 10, 23, 59) + timedelta(seconds=59, microseconds=999999))
    assert always.business_time_between(local(2026, 3, 10), local(2026, 3, 11)) == timedelta(hours=24)
    assert always.business_time_between(local(2026, 3, 29), local(2026, 3, 30)) == timedelta(hours=23)
    assert always.business_time_between(local(2026, 10, 25), local(2026, 10, 26)) == timedelta(hours=25)
    # A deadline across midnight lands on the minute, not a microsecond after it.
    assert always.add_business_time(local(2026, 3, 10, 22, 30), timedelta(hours=3)) == local(2026, 3, 11, 1, 30)


def test_a_deadline_across_a_closure_of_two_months_falls_after_it():
    closure = Closure(start=local(2026, 7, 1), end=local(2026, 9, 1), reason="Refit")
    desk = BusinessCalendar(NINE_TO_FIVE, closures=[closure])
    # 16:00 on Tuesday 30 June, 3 hours: 1 hour that day, then 2 from the first opening after the closure.
    assert desk.add_business_time(local(2026, 6, 30, 16), timedelta(hours=3)) == local(2026, 9, 1, 11)
    assert desk.next_opening(local(2026, 7, 15, 12)) == local(2026, 9, 1, 9)


def test_two_closures_on_one_day_each_remove_their_own_hours():
    # Given out of order on purpose: the calendar orders them itself.
    closures = [Closure(local(2026, 3, 10, 13), local(2026, 3, 10, 14), "Staff meeting"),
                Closure(local(2026, 3, 10, 10), local(2026, 3, 10, 11), "Fire drill")]
    desk = BusinessCalendar(NINE_TO_FIVE, closures=closures)
    assert desk.business_time_between(local(2026, 3, 10), local(2026, 3, 11)) == timedelta(hours=6)
    assert not desk.is_open(local(2026, 3, 10, 13, 30))
    assert [c.description for c in desk.crossings(local(2026, 3, 10, 9), local(2026, 3, 10, 17), closed=False)] == [
        "Fire drill (closure)", "Staff meeting (closure)"]


def test_a_desk_configured_to_open_on_bank_holidays_is_open_on_them():
    """README: `bank_holidays = false` for a desk open on them too. Christmas Day 2026 is a Friday."""
    assert BusinessCalendar(NINE_TO_FIVE, bank_holidays=False).is_open(local(2026, 12, 25, 10))
    assert not BusinessCalendar(NINE_TO_FIVE).is_open(local(2026, 12, 25, 10))


def test_the_bank_holiday_of_an_instant_is_that_of_its_uk_date(desk):
    """23:30 UTC on Sunday 24 May 2026 is 00:30 BST on Monday 25 May, the Spring bank holiday."""
    assert desk.holiday_name(datetime(2026, 5, 24, 23, 30, tzinfo=UTC)) == desk.holiday_name(date(2026, 5, 25))
    assert desk.holiday_name(date(2026, 5, 25)) is not None
    assert desk.holiday_name(datetime(2026, 5, 25, 23, 30, tzinfo=UTC)) is None  # 00:30 BST on Tuesday


def test_a_day_open_to_midnight_closes_at_midnight():
    """09:00-24:00: from 23:00 to the next opening at 09:00 there is one hour of business time."""
    from helpdesk.calendar import END_OF_DAY

    late = BusinessCalendar({weekday: [(time(9), END_OF_DAY)] for weekday in range(7)})
    assert late.business_time_between(local(2026, 3, 10, 23), local(2026, 3, 11, 9)) == timedelta(hours=1)
    assert late.add_business_time(local(2026, 3, 10, 23, 30), timedelta(hours=1)) == local(2026, 3, 11, 9, 30)


def test_hours_wholly_in_the_hour_the_clocks_skip_never_open():
    """README: in the hour the clocks skip in March nothing is open. Open 01:00-02:00 on Sundays
    is never open on 29 March 2026, so the next opening is Monday's."""
    desk = BusinessCalendar({6: [(time(1), time(2))], 0: [(time(9), time(17))]})
    assert desk.next_opening(datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == local(2026, 3, 30, 9)
    assert desk.business_time_between(local(2026, 3, 29), local(2026, 3, 30)) == timedelta(0)


def test_the_next_opening_is_never_inside_a_closure_that_starts_at_opening_or_ends_at_closing():
    morning = BusinessCalendar(NINE_TO_FIVE, closures=[Closure(local(2026, 3, 10, 9), local(2026, 3, 10, 12))])
    assert morning.next_opening(local(2026, 3, 10, 8)) == local(2026, 3, 10, 12)
    afternoon = BusinessCalendar(NINE_TO_FIVE, closures=[Closure(local(2026, 3, 10, 12), local(2026, 3, 10, 17))])
    assert afternoon.next_opening(local(2026, 3, 10, 13)) == local(2026, 3, 11, 9)


def test_open_intervals_are_never_empty(desk):
    """[17:00, 09:00 next day) only touches opening hours at its ends, and an empty span has none."""
    assert desk.open_intervals(local(2026, 3, 10, 17), local(2026, 3, 11, 9)) == []
    assert desk.open_intervals(local(2026, 3, 10, 10), local(2026, 3, 10, 10)) == []


def test_a_desk_that_reopens_just_within_366_days_is_still_found():
    """Shut from 09:00 on Monday 5 January 2026 to 09:00 on Wednesday 6 January 2027 (366 days):
    from 10:00 on the first day, the next opening is 365 days and 23 hours away, within 366 days."""
    closure = Closure(local(2026, 1, 5, 9), local(2027, 1, 6, 9), "Long refit")
    desk = BusinessCalendar(NINE_TO_FIVE, closures=[closure])
    assert desk.next_opening(local(2026, 1, 5, 10)) == local(2027, 1, 6, 9)
