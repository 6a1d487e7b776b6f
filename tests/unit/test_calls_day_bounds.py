"""The UK day the Calls page lists: its UTC bounds, 23 or 25 hours on the days the clocks change."""
from datetime import date, datetime, timedelta, timezone

import pytest

from helpdesk.pages.calls import day_bounds, has_clock_change


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("day, start, end, hours", [
    (date(2026, 1, 15), utc(2026, 1, 15, 0), utc(2026, 1, 16, 0), 24),
    (date(2026, 7, 15), utc(2026, 7, 14, 23), utc(2026, 7, 15, 23), 24),
    (date(2026, 3, 29), utc(2026, 3, 29, 0), utc(2026, 3, 29, 23), 23),
    (date(2026, 10, 25), utc(2026, 10, 24, 23), utc(2026, 10, 26, 0), 25),
    (date(2026, 12, 31), utc(2026, 12, 31, 0), utc(2027, 1, 1, 0), 24),
])
def test_a_uk_day_runs_from_its_midnight_to_the_next(day, start, end, hours):
    assert day_bounds(day) == (start, end)
    assert end - start == timedelta(hours=hours)
    assert has_clock_change(day) is (hours != 24)
    assert all(bound.tzinfo is not None and bound.utcoffset() == timedelta(0) for bound in day_bounds(day))
