"""The configuration's times: opening hours per weekday, closures, and dates."""
from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from helpdesk.calendar import END_OF_DAY, Closure
from helpdesk.clock import uk_time_problem
from helpdesk.config_reader import ConfigError, Reader

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_INTERVAL = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})\Z")


def parse_hours(hours: Reader) -> dict[int, tuple[tuple[time, time], ...]]:
    """Each weekday's opening intervals (index 0 is Monday), sorted; a closed day is left out."""
    opening: dict[int, tuple[tuple[time, time], ...]] = {}
    for key in hours.data:
        if key not in WEEKDAYS:
            hours.fail(key, "is not a weekday (monday to sunday)")
    for index, day in enumerate(WEEKDAYS):
        intervals = sorted(_parse_interval(text, hours, day) for text in hours.strings(day, ()))
        for first, second in zip(intervals, intervals[1:]):
            if second[0] < first[1]:
                hours.fail(day, f"has overlapping intervals: {_interval_text(first)} and {_interval_text(second)}")
        if intervals:
            opening[index] = tuple(intervals)
    return opening


def parse_day(reader: Reader, key: str) -> date | None:
    """A date written as TOML's 2026-12-07 or the string "2026-12-07" (None when not set)."""
    value = reader.get(key, (str, date), "")
    if isinstance(value, datetime):
        reader.fail(key, f"must be a date such as 2026-12-07, without a time, not {value.isoformat()!r}")
    if isinstance(value, date):
        return value
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        reader.fail(key, f"must be a date such as \"2026-12-07\", not {value!r}")


def clock_text(moment: time) -> str:
    """A time of day as the configuration writes it: "08:30", and "24:00" for the end of the day."""
    return "24:00" if moment == END_OF_DAY else f"{moment:%H:%M}"


def _interval_text(interval: tuple[time, time]) -> str:
    start, end = interval
    return f"{clock_text(start)}-{clock_text(end)}"


def _parse_interval(text: str, reader: Reader, day: str) -> tuple[time, time]:
    match = _INTERVAL.match(text.strip())
    if not match:
        reader.fail(day, f"has {text!r}: write intervals as \"HH:MM-HH:MM\"")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        reader.fail(day, f"has {text!r}, which is not a valid time of day")
    start = time(h1, m1)
    end = END_OF_DAY if h2 == 24 else time(h2, m2)
    if end <= start:
        reader.fail(day, f"has {text!r}: the closing time must be after the opening time")
    return start, end


def _is_date_and_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def parse_closures(items: Any, source: str, tz: ZoneInfo) -> list[Closure]:
    if not isinstance(items, list):
        raise ConfigError(f"{source}: closures must be a list of [[closures]] tables")
    closures = []
    for number, item in enumerate(items, 1):
        where = f"{source}: closures[{number}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = set(item) - {"date", "from", "to", "reason"}
        if unknown:
            raise ConfigError(f"{where} has unknown key {sorted(unknown)[0]!r}")
        reason = item.get("reason", "")
        if "date" in item and ({"from", "to"} & set(item)):
            raise ConfigError(f"{where} has both 'date' and 'from'/'to': use 'date' for a whole day, or 'from' and "
                              "'to' for part of one or several")
        written = item.get("date")
        if isinstance(written, datetime) or (isinstance(written, str) and len(written.strip()) > len("2026-12-24")
                                             and _is_date_and_time(written)):
            # Its time would be dropped, closing the whole day (and hiding that morning's calls).
            raise ConfigError(f"{where}.date has {str(written)!r}, a date and time: 'date' closes a whole day, "
                              "so use 'from' and 'to' for part of one")
        key = "date"
        try:
            if "date" in item:
                day = item["date"]
                day = datetime.fromisoformat(day) if isinstance(day, str) else day
                start = datetime(day.year, day.month, day.day, tzinfo=tz)
                end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=tz)
            else:
                key = "from"
                start = _local(item["from"], tz, f"{where}.from")
                key = "to"
                end = _local(item["to"], tz, f"{where}.to")
        except KeyError as exc:
            raise ConfigError(f"{where} needs 'date', or both 'from' and 'to' (missing {exc.args[0]!r})") from None
        except ConfigError:
            raise
        except (TypeError, ValueError, AttributeError):
            raise ConfigError(f"{where}.{key} has {item.get(key)!r}, a date or time that cannot be read "
                              "(use \"2026-12-24\" or \"2026-12-24T13:00\")") from None
        if end <= start:
            raise ConfigError(f"{where}: 'to' must be after 'from'")
        closures.append(Closure(start=start, end=end, reason=str(reason)))
    return closures


def _local(value: Any, tz: ZoneInfo, where: str) -> datetime:
    """A closure's time: UK time unless it carries an offset. A time the clocks skipped or
    repeated is refused, as it does not say which instant is meant."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise TypeError(value)
    if moment.tzinfo is not None:
        return moment
    problem = uk_time_problem(moment, tz)
    if problem:
        raise ConfigError(f"{where} has {str(value)!r}, which {problem}: write it with its offset, for example "
                          f"\"{moment:%Y-%m-%dT%H:%M}+01:00\" for British Summer Time or \"+00:00\" for GMT")
    return moment.replace(tzinfo=tz)
