"""How a call's stored values are shown to people. Pure functions of plain values."""
from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from markupsafe import Markup, escape

from helpdesk.clock import local

# One rule for withheld numbers and what of a number may be shown, used by the projection too.
from helpdesk.phones import REMOVED, is_withheld, number_ending  # noqa: F401 (used by templates)

MASK = "••••••••"  # always eight, so the mask does not give away the number's length

OUTCOMES = {
    "answered": "Answered",
    "abandoned": "Abandoned",
    "no_answer": "No answer",
    "voicemail": "Voicemail",
    "out_of_hours": "Out of hours",
    "failed": "Failed",
    "in_progress": "In progress",
}
CALLER_TYPES = {"dwp": "DWP", "customer": "Customer", "unknown": "Unknown"}
SLA_RESULTS = {"met": "Met", "breached": "Breached"}
REACHED = {"no": "Never reached the help desk"}
RECORDED = {"no": "Answered, no outcome recorded", "late": "Answered, outcome recorded late"}
# What an agent recorded of an answered call's enquiry, by the enquiry's status.
ENQUIRY_OUTCOMES = {"open": "No outcome recorded", "concluded": "Concluded on the call",
                    "callback_owed": "Callback needed"}


def mask_number(number: str | None) -> str:
    """A caller's number with all but the last three digits hidden: "•••••••• 123"."""
    if number == REMOVED:
        return "Removed"
    if is_withheld(number):
        return "Withheld"
    ending = number_ending(number)
    return f"{MASK} {ending}" if ending else MASK


def masked_number_html(number: str | None) -> Markup:
    """`mask_number` as the pages show it: the mask to the eye, "Number ending 123" to a screen reader."""
    ending = number_ending(number)
    if not ending:
        return escape(mask_number(number))
    # The ending is digits only, so nothing to escape. Built directly: the agents' page shows up to
    # 300 a render, and Markup.format took 9 µs for each where this takes 2.
    return Markup(f'<span class="masked" aria-hidden="true">{MASK} {ending}</span>'
                  f'<span class="visually-hidden">Number ending {ending}</span>')


def outcome_label(outcome: str | None) -> str:
    """A call's outcome in words."""
    if not outcome:
        return "Unknown"
    return OUTCOMES.get(outcome, outcome.replace("_", " ").capitalize())


def enquiry_outcome(call_outcome: str | None, enquiry_status: str | None) -> str:
    """What an agent recorded of an answered call's enquiry; "" for any other call (a missed
    call's callback is owed by the help desk itself, with no agent's word)."""
    if call_outcome != "answered" or enquiry_status is None:
        return ""
    return ENQUIRY_OUTCOMES.get(enquiry_status, "")


def caller_type_label(caller_type: str | None) -> str:
    return CALLER_TYPES.get(caller_type or "", "Unknown")


def sla_label(result: str | None) -> str:
    """"Met", "Breached", or "" when the call is not judged."""
    return SLA_RESULTS.get(result or "", "")


def format_local_time(moment: datetime | None, with_zone: bool = False) -> str:
    """A stored UTC instant as UK time, HH:MM:SS (with GMT/BST on request)."""
    if moment is None:
        return ""
    shown = local(moment)
    text = shown.strftime("%H:%M:%S")
    return f"{text} {shown.tzname()}" if with_zone else text


def format_date_time(moment: datetime, seconds: bool = True) -> str:
    """A stored UTC instant as UK date and time with the zone: "24 Nov 2026 10:02:05 GMT", or
    "24 Nov 2026 10:02 GMT" without the seconds, for a list."""
    shown = local(moment)
    return f"{shown:%d %b %Y %H:%M{':%S' if seconds else ''}} {shown.tzname()}"


def format_seconds(seconds: float | None) -> str:
    """Seconds to one decimal place, or "" when there are none."""
    return "" if seconds is None else f"{seconds:.1f}"


def format_compliance(met: int, countable: int) -> str:
    """Met / countable as a percentage with one decimal, or "No data" with nothing to count.

    Halves round up, but never to 100.0% while anything was breached: 1,999 of 2,000 is 99.9%,
    so a missed target never reads as met.
    """
    if countable <= 0:
        return "No data"
    percent = (Decimal(met) * 100 / Decimal(countable)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    if met < countable:
        percent = min(percent, Decimal("99.9"))
    return f"{percent}%"


def format_minutes(minutes: int) -> str:
    """A length of time in numerals (GOV.UK style): 180 -> "3 hours", 90 -> "1 hour 30 minutes", 5 -> "5 minutes"."""
    hours, rest = divmod(minutes, 60)

    def part(n: int, unit: str) -> str:
        return f"{n} {unit}{'' if n == 1 else 's'}"

    if hours and rest:
        return f"{part(hours, 'hour')} {part(rest, 'minute')}"
    return part(hours, "hour") if hours else part(rest, "minute")


def shown_seconds(seconds: float) -> int:
    """A time as within_words shows it, in seconds: rounded up to the whole second under a minute,
    to the whole minute from one (7.2 -> 8, 61 -> 120), so that "within" stays true. Never less
    than 0. Rounding up keeps the order of times."""
    whole = max(math.ceil(seconds), 0)
    return whole if whole < 60 else math.ceil(whole / 60) * 60


def within_words(seconds: float | None) -> str:
    """A time that items took no longer than, rounded up so that "within" stays true: 7.2 ->
    "8 seconds", 61 -> "2 minutes", 11,050 -> "3 hours 5 minutes"; None (no items) -> "No data"."""
    if seconds is None:
        return "No data"
    shown = shown_seconds(seconds)
    if shown < 60:
        return f"{shown} second{'' if shown == 1 else 's'}"
    return format_minutes(shown // 60)


def format_rings(rings: int) -> str:
    """A number of rings in numerals: 10 -> "10 rings", 1 -> "1 ring"."""
    return f"{rings} ring{'' if rings == 1 else 's'}"


def ring_target(rings: int) -> str:
    """The answer rule's name as a label: 10 -> "10-ring target"."""
    return f"{rings}-ring target"


def format_day(day) -> str:
    """A date in words, British style: "Tuesday 24 November 2026"."""
    return f"{day:%A} {day.day} {day:%B %Y}"


def format_moment(moment: datetime) -> str:
    """A stored UTC instant in words, for an email or a message: "14:30 on Friday 3 July 2026 (UK time)"."""
    shown = local(moment)
    return f"{shown:%H:%M} on {format_day(shown)} (UK time)"


def window_words(start: datetime, end: datetime) -> str:
    """A stretch of time in UK time: "from 14:02:10 GMT to 14:06:00 GMT on Thursday 3 December 2026",
    or with both days when it crosses midnight. GMT or BST with each time, as a time repeated when the
    clocks go back would otherwise be ambiguous."""
    first, last = local(start), local(end)
    if first.date() == last.date():
        return f"from {first:%H:%M:%S %Z} to {last:%H:%M:%S %Z} on {format_day(first.date())}"
    return (f"from {first:%H:%M:%S %Z} on {format_day(first.date())} "
            f"to {last:%H:%M:%S %Z} on {format_day(last.date())}")


def lost_words(lost: list[tuple[datetime, datetime]], what: str) -> str:
    """Why `what` ("these figures") lack something: the windows restores of the database lost."""
    spans = [window_words(start, end) for start, end in lost]
    listed = spans[0] if len(spans) == 1 else ", ".join(spans[:-1]) + " and " + spans[-1]
    return (f"The database was restored from a backup, so what came in {listed} is missing from {what}. "
            "Twilio's call log still has those calls.")


ROLE_LABELS = {"agent": "Agent", "manager": "Manager", "auditor": "DWP auditor", "admin": "Administrator"}


def role_label(role: str | None) -> str:
    return ROLE_LABELS.get(role or "", (role or "").capitalize())


def quoted(text: str, longest: int = 30) -> str:
    """Input echoed back in a message, in curly quotes and cut at `longest` characters."""
    return f"“{text if len(text) <= longest else text[:longest] + '…'}”"


# An enquiry reference (helpdesk.enquiries: "HD-2026-000263") in a line of text.
REFERENCE_IN_TEXT = re.compile(r"\bHD-[0-9]{4}-[0-9]{6,}\b")


def unbroken_references(text) -> Markup:
    """`text`, escaped, with each enquiry reference in it kept on one line (the stylesheet's
    .reference): a narrow screen otherwise breaks "HD-2026-" from "000263" at the hyphen. The
    templates' `references` filter."""
    return Markup(REFERENCE_IN_TEXT.sub(lambda found: f'<span class="reference">{found.group()}</span>',
                                        str(escape(text))))
