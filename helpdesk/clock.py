"""Time: aware UTC inside, Europe/London at the edges."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_day(text: str) -> date | None:
    """A calendar date written exactly YYYY-MM-DD (surrounding spaces allowed), else None.

    Years before 1900 or after 9998 are refused too: UK times for them are meaningless
    here, and the day after 9999-12-31 cannot be computed.
    """
    text = text.strip()
    if not _ISO_DAY.fullmatch(text):
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if date(1900, 1, 1) <= day <= date(9998, 12, 31) else None


def day_problem(text: str) -> str:
    """Why `iso_day` refused `text`, to follow the text quoted in a message."""
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return "is not a date: use YYYY-MM-DD, for example 2026-11-24"
    if not _ISO_DAY.fullmatch(text.strip()):
        return "is not a date: use YYYY-MM-DD, for example 2026-11-24"
    return "is out of range: use a date from 1900 to 9998"


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def local(moment: datetime) -> datetime:
    """A stored UTC instant as UK local time, for display."""
    return moment.astimezone(LONDON)


# What uk_time_problem says of a time the clocks skipped, and of one they repeated.
SKIPPED = "did not happen in the UK: the clocks went forward an hour then"
REPEATED = "happened twice in the UK: the clocks went back an hour then"


def wall_time(text: str, seconds: bool = False) -> datetime | None:
    """A wall-clock time written 'YYYY-MM-DD HH:MM' (or, with `seconds`, also 'YYYY-MM-DD
    HH:MM:SS'), naive, on a day `iso_day` takes; None if it is not one."""
    for written in ("%Y-%m-%d %H:%M",) + (("%Y-%m-%d %H:%M:%S",) if seconds else ()):
        try:
            naive = datetime.strptime(text.strip(), written)
        except ValueError:
            continue
        return naive if iso_day(f"{naive:%Y-%m-%d}") is not None else None
    return None


def uk_moment(text: str) -> datetime:
    """A UK date ('YYYY-MM-DD', its midnight) or date and time ('YYYY-MM-DD HH:MM[:SS]', or with a
    'T' as <input type=datetime-local> sends it), as an aware UTC instant; in the hour the clocks
    repeat, its first pass (the earlier). ValueError says why not, to follow the text quoted."""
    written = text.strip()
    day = iso_day(written)
    naive = (datetime(day.year, day.month, day.day) if day is not None
             else wall_time(f"{written[:10]} {written[11:]}", seconds=True) if written[10:11] in ("T", " ") else None)
    if naive is None:
        raise ValueError("is not a UK date and time: use YYYY-MM-DD HH:MM, for example 2026-11-24 09:00")
    if uk_time_problem(naive) == SKIPPED:
        raise ValueError(SKIPPED)
    return naive.replace(tzinfo=LONDON, fold=0).astimezone(timezone.utc)


def uk_time_problem(naive: datetime, zone: ZoneInfo = LONDON) -> str | None:
    """Why a wall-clock time written without an offset does not name one UK instant, or None:
    it fell in the hour the clocks skipped in spring (SKIPPED), or in the hour they repeated in
    autumn (REPEATED)."""
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != naive:
        return SKIPPED
    if first.utcoffset() != naive.replace(tzinfo=zone, fold=1).utcoffset():
        return REPEATED
    return None
