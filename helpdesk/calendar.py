"""Business calendar: opening hours, UK bank holidays, closures and clock changes.

Pure (standard library and ``holidays`` only). Opening hours are local wall-clock times; every
instant passed in must be timezone-aware and every instant returned is UTC.
"""

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

UTC = timezone.utc
NATIONS = ("england-and-wales", "scotland", "northern-ireland")
# England and Wales share one set of bank holidays; the package files them under England.
_SUBDIVISIONS = {"england-and-wales": "ENG", "scotland": "SCT", "northern-ireland": "NIR"}
# Long enough for any real shutdown, short enough to fail fast on a calendar that never opens.
_SEARCH_DAYS = 366
_DAY = timedelta(days=1)
# A day open to midnight ("...-24:00") is written with this closing time: the next day's start.
END_OF_DAY = time(23, 59, 59, 999999)
_ZERO = timedelta(0)

Interval = tuple[datetime, datetime]


def _as_utc(t: datetime, name: str) -> datetime:
    # A naive time could be local or UTC; guessing would silently shift deadlines by an hour.
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {t!r}")
    return t.astimezone(UTC)


def _merge(intervals: Sequence[Interval]) -> list[Interval]:
    """Union of intervals; touching or overlapping ones become one."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


@dataclass(frozen=True)
class Closure:
    """A period when the desk is shut although its opening hours say open (end exclusive)."""

    start: datetime
    end: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        if _as_utc(self.end, "Closure.end") <= _as_utc(self.start, "Closure.start"):
            raise ValueError(f"closure {self.reason!r} must end after it starts")


@dataclass(frozen=True)
class DayCrossing:
    """Something a span crossed, to explain a deadline: kind is "closed", "bank_holiday",
    "closure" or "dst_change" (the last has start == end, the instant the clocks changed)."""

    kind: str
    start: datetime
    end: datetime
    description: str


def _validate_hours(opening_hours: Mapping[int, Sequence[tuple[time, time]]]) -> dict[int, tuple]:
    hours = {}
    for weekday, intervals in opening_hours.items():
        if weekday not in range(7):
            raise ValueError(f"opening_hours: weekday must be 0 (Monday) to 6 (Sunday), got {weekday!r}")
        ordered = sorted(tuple(pair) for pair in intervals)
        for opens, closes in ordered:
            if not all(isinstance(t, time) and t.tzinfo is None for t in (opens, closes)):
                raise ValueError(f"opening_hours[{weekday}]: use naive local times, got {opens!r}, {closes!r}")
            if opens >= closes:
                raise ValueError(f"opening_hours[{weekday}]: opening {opens} is not before closing {closes}")
        for (_, first_closes), (second_opens, _) in zip(ordered, ordered[1:]):
            if second_opens < first_closes:
                raise ValueError(f"opening_hours[{weekday}]: {second_opens} opening overlaps {first_closes} closing")
        hours[weekday] = tuple(ordered)
    return hours


class BusinessCalendar:
    """Opening hours for one desk, less its nation's bank holidays and configured closures."""

    def __init__(
        self,
        opening_hours: Mapping[int, Sequence[tuple[time, time]]],
        nation: str = "england-and-wales",
        closures: Sequence[Closure] = (),
        tz: str = "Europe/London",
        bank_holidays: bool = True,
    ) -> None:
        if nation not in _SUBDIVISIONS:
            raise ValueError(f"unknown nation {nation!r}; expected one of {', '.join(NATIONS)}")
        try:
            self._tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        self.nation = nation
        self._hours = _validate_hours(opening_hours)
        # Observed (substitute) days are included by the package, e.g. 27 and 28 December 2021.
        # bank_holidays=False: a desk open on them too (its hours hold every day).
        self._holidays = holidays.country_holidays("GB", subdiv=_SUBDIVISIONS[nation]) if bank_holidays else {}
        self._closures = tuple(sorted(closures, key=lambda c: c.start.astimezone(UTC)))
        self._closures_utc = tuple(
            (c.start.astimezone(UTC), c.end.astimezone(UTC), f"{c.reason} (closure)" if c.reason else "closure")
            for c in self._closures)
        self._shut = _merge([(c.start.astimezone(UTC), c.end.astimezone(UTC)) for c in closures])
        self._shut_ends = [end for _, end in self._shut]
        # Per local date, so each date's wall-clock hours are converted with that date's offset.
        self._days: dict[date, tuple[Interval, ...]] = {}
        # Per local date: its UTC midnights, bank holiday name and clock change (cached).
        self._facts: dict[date, tuple[datetime, datetime, str | None, tuple[datetime, str] | None]] = {}

    def holiday_name(self, d: date) -> str | None:
        """Name of the bank holiday on local date ``d``, or None on an ordinary day."""
        if isinstance(d, datetime):
            d = self._local_date(_as_utc(d, "d"))
        return self._holidays.get(d)

    def is_open(self, t: datetime) -> bool:
        """Whether the desk is open at ``t`` (opening inclusive, closing exclusive)."""
        u = _as_utc(t, "t")
        return any(start <= u < end for start, end in self._day(self._local_date(u)))

    def open_intervals(self, start: datetime, end: datetime) -> list[Interval]:
        """UTC intervals of business time within [start, end), in order."""
        s, e = _as_utc(start, "start"), _as_utc(end, "end")
        found: list[Interval] = []
        if e <= s:
            return found
        d, last = self._local_date(s), self._local_date(e)
        while d <= last:
            found.extend((max(a, s), min(b, e)) for a, b in self._day(d) if b > s and a < e)
            d += _DAY
        return found

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Business time within [start, end); zero if ``end`` is not after ``start``."""
        return sum((b - a for a, b in self.open_intervals(start, end)), _ZERO)

    def add_business_time(self, start: datetime, delta: timedelta) -> datetime:
        """The UTC instant at which ``delta`` of business time has elapsed after ``start``.

        Counting starts at the next opening if ``start`` is out of hours, so a zero ``delta``
        gives ``start`` when open and the next opening otherwise. Raises ValueError for a
        negative ``delta`` or if the desk does not open within 366 days.
        """
        return self.counting_and_due(start, delta)[1]

    def counting_and_due(self, start: datetime, delta: timedelta) -> tuple[datetime, datetime]:
        """(``next_opening(start)``, ``add_business_time(start, delta)``) in one pass: when
        counting starts, and when ``delta`` of business time has elapsed, in UTC."""
        t = _as_utc(start, "start")
        if delta < _ZERO:
            raise ValueError(f"delta must not be negative, got {delta}")
        remaining, counting = delta, None
        d = last_open = self._local_date(t)
        while (d - last_open).days <= _SEARCH_DAYS:
            for opens, closes in self._day(d):
                if closes <= t:
                    continue
                if opens > t:
                    t = opens
                if counting is None:
                    counting = t
                available = closes - t
                if remaining <= available:
                    return counting, t + remaining
                remaining -= available
                t = closes
                last_open = d
            d += _DAY
        raise ValueError(f"no opening hours within {_SEARCH_DAYS} days of {start.isoformat()}")

    def next_opening(self, t: datetime) -> datetime:
        """``t`` in UTC if the desk is open then, otherwise the next opening."""
        return self.add_business_time(t, _ZERO)

    def crossings(self, start: datetime, end: datetime, closed: bool = True) -> list[DayCrossing]:
        """Closed periods, bank holidays, closures and clock changes within [start, end), in order.

        Each is clipped to [start, end). Holidays and closures are listed even where they
        overlap each other; "closed" covers only the remaining time outside opening hours,
        and is left out with ``closed=False`` (the opening hours already say it).
        """
        s, e = _as_utc(start, "start"), _as_utc(end, "end")
        found: list[DayCrossing] = []
        if e <= s:
            return found
        explained: list[Interval] = []
        d, last = self._local_date(s), self._local_date(e)
        while d <= last:
            midnight, next_midnight, name, change = self._date_facts(d)
            a, b = max(midnight, s), min(next_midnight, e)
            if name and a < b:
                found.append(DayCrossing("bank_holiday", a, b, f"{name} (bank holiday)"))
                explained.append((a, b))
            if change and s <= change[0] < e:
                found.append(DayCrossing("dst_change", change[0], change[0], change[1]))
            d += _DAY
        for shut_start, shut_end, reason in self._closures_utc:
            a, b = max(shut_start, s), min(shut_end, e)
            if a < b:
                found.append(DayCrossing("closure", a, b, reason))
                explained.append((a, b))
        if not closed:
            found.sort(key=lambda c: (c.start, c.end))
            return found
        cursor = s
        for a, b in _merge(self.open_intervals(s, e) + explained) + [(e, e)]:
            if cursor < a:
                found.append(DayCrossing("closed", cursor, a, "closed (outside opening hours)"))
            cursor = max(cursor, b)
        found.sort(key=lambda c: (c.start, c.end))
        return found

    def _date_facts(self, d: date) -> tuple[datetime, datetime, str | None, tuple[datetime, str] | None]:
        facts = self._facts.get(d)
        if facts is None:
            facts = self._facts[d] = (self._midnight(d), self._midnight(d + _DAY), self._holidays.get(d),
                                      self._clock_change(d))
        return facts

    def _local_date(self, u: datetime) -> date:
        return u.astimezone(self._tz).date()

    def _midnight(self, d: date) -> datetime:
        return datetime.combine(d, time(0), self._tz).astimezone(UTC)

    def _day(self, d: date) -> tuple[Interval, ...]:
        """Open UTC intervals on local date ``d``, after holidays and closures (cached)."""
        cached = self._days.get(d)
        if cached is not None:
            return cached
        intervals = []
        if d not in self._holidays:
            for opens, closes in self._hours.get(d.weekday(), ()):
                intervals += self._wall_span(d, opens, closes)
        day = tuple(self._without_closures(_merge(intervals)))
        self._days[d] = day
        return day

    def _wall_span(self, d: date, opens: time, closes: time) -> list[Interval]:
        """The UTC instants of local date ``d`` whose wall-clock time is from ``opens`` to
        ``closes``: one interval, or on the day the clocks change, the part before the change
        and the part after, each read with the offset then in force. So a span containing the
        change measures the time that really passes (00:00-24:00 is 23 or 25 hours), an hour
        the clocks repeat is open twice if its times are open hours, and one they skip is never
        open: 01:30-02:00 on the autumn Sunday is open 30 minutes on each pass and not at the
        second pass of 01:10, and 01:30-04:15 in spring opens when the clocks reach 02:00."""
        start = datetime.combine(d, opens)
        # Open to midnight ("24:00"): to the next day's start, not its last microsecond.
        end = datetime.combine(d + _DAY, time(0)) if closes == END_OF_DAY else datetime.combine(d, closes)
        first, last, _, change = self._date_facts(d)

        def utc(wall: datetime, offset: timedelta) -> datetime:
            return (wall - offset).replace(tzinfo=UTC)

        before = first.astimezone(self._tz).utcoffset()
        if change is None:
            spans = [(utc(start, before), utc(end, before))]
        else:
            at, after = change[0], last.astimezone(self._tz).utcoffset()
            spans = [(utc(start, before), min(utc(end, before), at)), (max(utc(start, after), at), utc(end, after))]
        return [(a, b) for a, b in spans if a < b]

    def _without_closures(self, intervals: list[Interval]) -> list[Interval]:
        kept = []
        for start, end in intervals:
            i = bisect.bisect_right(self._shut_ends, start)
            while i < len(self._shut) and self._shut[i][0] < end:
                shut_start, shut_end = self._shut[i]
                if start < shut_start:
                    kept.append((start, shut_start))
                start = max(start, shut_end)
                i += 1
            if start < end:
                kept.append((start, end))
        return kept

    def _clock_change(self, d: date) -> tuple[datetime, str] | None:
        """The UTC instant the clocks changed on local date ``d`` and a description, if they did."""
        first, last = self._midnight(d), self._midnight(d + _DAY)
        before, after = first.astimezone(self._tz).utcoffset(), last.astimezone(self._tz).utcoffset()
        if before == after:
            return None
        # Bisect to the second rather than assume 01:00 UTC, so any configured zone works.
        low, high = 0, int((last - first).total_seconds())
        while high - low > 1:
            middle = (low + high) // 2
            if (first + timedelta(seconds=middle)).astimezone(self._tz).utcoffset() == before:
                low = middle
            else:
                high = middle
        shift = after - before
        size = "one hour" if abs(shift) == timedelta(hours=1) else f"{abs(shift) // timedelta(minutes=1)} minutes"
        direction = "forward" if shift > _ZERO else "back"
        return first + timedelta(seconds=high), f"clocks went {direction} {size}"
