"""The three-hour rule as pure functions: when a callback is due, and why.

Nothing here imports Flask, SQLAlchemy, Twilio or APScheduler; `now` is always passed in.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from helpdesk.calendar import BusinessCalendar
from helpdesk.clock import LONDON

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deadline:
    owed_from: datetime
    due_at: datetime
    clock: str
    explanation: dict


def due_at_for(owed_from: datetime, *, clock: str, within: timedelta, calendar: BusinessCalendar) -> datetime:
    """When a callback owed since `owed_from` is due: the rule itself."""
    if clock == "business":
        return calendar.add_business_time(owed_from, within)
    if clock == "elapsed":
        # In UTC: adding to a Europe/London time would add wall-clock time across a clock change.
        return owed_from.astimezone(timezone.utc) + within
    raise ValueError(f"unknown callback clock {clock!r}")


def callback_deadline(
    owed_from: datetime, *, clock: str, within: timedelta, calendar: BusinessCalendar, config_version: str
) -> Deadline:
    """When a callback owed since `owed_from` is due, with the explanation kept beside it.

    The explanation holds the facts (start, clock, when counting began, what was crossed,
    the configuration version); `explain()` turns them into a sentence when shown.
    """
    if clock == "business":  # the rule (due_at_for) and when it started counting, in one pass
        counting_from, due_at = calendar.counting_and_due(owed_from, within)
    else:
        counting_from, due_at = owed_from, due_at_for(owed_from, clock=clock, within=within, calendar=calendar)
    # Ordinary closed hours are implied by the opening hours of the configuration version;
    # what is kept is what an auditor could not see from them: holidays, closures, DST.
    crossed = calendar.crossings(owed_from, due_at, closed=False)
    explanation = {
        "owed_from": _iso(owed_from),
        "clock": clock,
        "within_minutes": round(within.total_seconds() / 60),
        "counting_from": _iso(counting_from),
        "due_at": _iso(due_at),
        "crossed": [
            {"kind": c.kind, "start": _iso(c.start), "end": _iso(c.end), "description": c.description}
            for c in crossed
        ],
        "config_version": config_version,
    }
    return Deadline(owed_from=owed_from, due_at=due_at, clock=clock, explanation=explanation)


def explain(explanation: dict) -> str:
    """One plain sentence or two for an agent or an auditor."""
    owed = _local(explanation["owed_from"])
    due = _local(explanation["due_at"])
    hours = _duration(timedelta(minutes=explanation["within_minutes"]))
    if explanation["clock"] == "elapsed":
        text = f"Owed from {when_words(owed)}; due {hours} later, at {when_words(due)}."
    else:
        text = f"Owed from {when_words(owed)}; due after {hours} of opening time, at {when_words(due)}."
        counting = _local(explanation["counting_from"])
        if counting != owed:
            text += f" The help desk was closed, so the clock started at {when_words(counting)}."
    closed = [c["description"] for c in explanation["crossed"] if c["kind"] in ("bank_holiday", "closure", "dst_change")]
    if closed:
        text += " Crossed: " + "; ".join(dict.fromkeys(closed)) + "."
    return text


def explain_stored(text: str | None) -> str:
    """`explain` of an explanation as a callback keeps it (JSON); a plain word if it cannot be read."""
    try:
        return explain(json.loads(text or ""))
    except (ValueError, KeyError, TypeError):
        log.warning("a callback's stored deadline explanation could not be read")
        return "(the stored explanation could not be read)"


@dataclass(frozen=True)
class Notice:
    kind: str  # "warning_30", "warning_10", ... or "breach"
    due_at: datetime  # when it fell due


def notices_due(
    *,
    due_at: datetime,
    now: datetime,
    first_attempt_at: datetime | None,
    remaining: timedelta,
    warn_before: tuple[int, ...],
    already: set[str],
) -> list[Notice]:
    """The warnings and breach a sweep at `now` should record for one callback.

    `remaining` is the time left before `due_at` on the callback's own clock (business time
    for the business clock), so a warning fires while staff are there to act on it. An
    attempt at or before `due_at` meets the rule: no more warnings, never a breach. A
    sweep after `due_at` records the breach and no longer sends stale warnings.
    A sweep inside several lead times records only the shortest, once.
    """
    if first_attempt_at is not None and first_attempt_at <= due_at:
        return []
    if now > due_at:
        return [] if "breach" in already else [Notice("breach", due_at)]
    if first_attempt_at is not None:
        return []
    # Only the most urgent lead that applies: a callback first swept 5 minutes before its
    # deadline (owed late, or the scheduler was down) gets "10 minutes", never "30" beside it.
    leads = [lead for lead in warn_before if remaining <= timedelta(minutes=lead)]
    if not leads or f"warning_{min(leads)}" in already:
        return []
    return [Notice(f"warning_{min(leads)}", now)]


def next_attempt_at(
    attempted_at: datetime, attempts_made: int, *, spacing_minutes: tuple[int, ...], max_attempts: int
) -> datetime | None:
    """When to try again after an attempt that did not reach the caller, or None when done."""
    if attempts_made >= max_attempts:
        return None
    spacing = spacing_minutes[min(attempts_made - 1, len(spacing_minutes) - 1)]
    return attempted_at + timedelta(minutes=spacing)


def _iso(moment: datetime) -> str:
    # Stored in UTC like every other instant; explain() shows UK time. (The calendar's are in UTC already.)
    return (moment if moment.tzinfo is timezone.utc else moment.astimezone(timezone.utc)).isoformat()


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(LONDON)


def when_words(moment: datetime) -> str:
    """An instant in UK time as a deadline is written: "13:00 on Tuesday 24 November 2026"; in the
    hour the clocks repeat in October, with which pass it is ("01:30 BST on Sunday 25 October 2026")."""
    shown = moment.astimezone(LONDON)
    repeated = shown.replace(fold=1 - shown.fold).utcoffset() != shown.utcoffset()
    zone = f" {shown.tzname()}" if repeated else ""
    return f"{shown:%H:%M}{zone} on " + shown.strftime("%A %d %B %Y").replace(" 0", " ")


def _duration(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []) + (
        [f"{minutes} minute{'s' if minutes != 1 else ''}"] if minutes else [])
    return " ".join(parts) or "0 minutes"


def due_soon_limits(settings, now: datetime) -> dict[str, datetime]:
    """Per callback clock, the due time before which a callback is "due soon" at `now`.

    On the business clock the time left is opening time left, as on the agents' page.
    """
    lead = timedelta(minutes=settings.callback.due_soon_minutes)
    try:
        business = settings.calendar.add_business_time(now, lead)
    except ValueError:  # a calendar that never opens: fall back to the wall clock
        business = now + lead
    return {"business": business, "elapsed": now + lead}
