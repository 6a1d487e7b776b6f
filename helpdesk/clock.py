"""Time: aware UTC inside, Europe/London at the edges."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def local(moment: datetime) -> datetime:
    """A stored UTC instant as UK local time, for display."""
    return moment.astimezone(LONDON)
