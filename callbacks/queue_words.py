"""The words of the agents' queue page (callbacks/queue.py): why a callback is owed, what became
of an attempt and of a callback, how a "Call back now" call is going, time left, times of day,
a deadline's explanation and the sweep's notices."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from callbacks.deadlines import explain
from callbacks.sweep import minutes_left
from helpdesk.clock import local
from helpdesk.models import Callback

REASONS = {
    "abandoned": "Missed call – caller hung up",
    "no_answer": "No answer",
    "voicemail": "Voicemail",
    "out_of_hours": "Out of hours",
    "failed": "Failed call",
    "not_concluded": "Not concluded on the call",
    "email": "Email enquiry needing a call",
}
ATTEMPT_OUTCOMES = {
    "reached": "Reached the caller",
    "no_answer": "No answer",
    "busy": "Busy",
    "failed": "Failed",
    "voicemail_left": "Left a voicemail",
}
# Every outcome an attempt can have, in words (those an agent enters, and "Call back now"'s own).
ATTEMPT_WORDS = {**ATTEMPT_OUTCOMES, "placing": "Call back now: under way",
                 "not_dialled": "Call back now: the caller was not dialled"}
CLOSING = {
    "resolved": ("Resolved", "the caller was reached and helped"),
    "unreachable": ("Unreachable", "the caller could not be reached"),
    "withdrawn": ("Withdrawn", "the callback is no longer needed"),
}

CALL_STATES = {
    "ringing_agent": "Ringing the agent's phone: answer and press 1 to call the caller.",
    "ringing_caller": "Ringing the caller now.",
    # With no reason known (callbacks.not_dialled): what a call that did not dial the caller can be.
    "not_dialled": "The last call did not reach the caller: the agent's phone was not answered, or 1 was not "
                   "pressed. It does not count as an attempt.",
    # With one: NOT_DIALLED's state.
    "not_dialled_because": "The last call did not reach the caller: {state}. It does not count as an attempt.",
}


@dataclass(frozen=True)
class NotDialledWords:
    """Why a "Call back now" call did not dial the caller (callbacks.not_dialled), in the callback's
    list of attempts, in what the queue says of its last call, and in the enquiry's story."""

    attempt: str
    state: str
    story: str


NOT_DIALLED = {
    "refused": NotDialledWords(
        "the desk phone's phone system refused the call (SIP {code})",
        "the agent's desk phone did not ring, because its phone system refused the call (SIP {code}). An "
        "administrator can see why in the app's log",
        "The agent's desk phone did not ring: its phone system refused the call (SIP {code})"),
    "no-answer": NotDialledWords("the agent's phone was not answered", "the agent's phone rang but was not answered",
                                 "The agent's phone rang but was not answered"),
    "busy": NotDialledWords("the agent's phone was busy", "the agent's phone was busy", "The agent's phone was busy"),
    "failed": NotDialledWords(
        "Twilio could not call the agent's phone",
        "Twilio could not call the agent's phone. An administrator can see why in Twilio's call log",
        "Twilio could not call the agent's phone"),
    "no_key": NotDialledWords(
        "the agent's phone answered, but 1 was not pressed",
        "the agent's phone answered, but 1 was not pressed (if nobody picked it up, its voicemail did)",
        "The agent's phone answered, but 1 was not pressed"),
    "other_key": NotDialledWords("a key other than 1 was pressed",
                                 "a key other than 1 was pressed on the agent's phone",
                                 "A key other than 1 was pressed on the agent's phone"),
}


def not_dialled_words(why: str, code: str = "") -> NotDialledWords:
    """NOT_DIALLED's words for a reason (callbacks.not_dialled.NotDialled), with its SIP code in."""
    words = NOT_DIALLED[why]
    return NotDialledWords(*(text.format(code=code) for text in (words.attempt, words.state, words.story)))


def span_words(span: timedelta) -> tuple[str, str]:
    """("1 h 12 min", "1 hour 12 minutes"): whole minutes, rounded down; under one, "less than a minute"."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute", "less than a minute"
    hours, minutes = divmod(minutes, 60)
    shown = " ".join(([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes else []))
    spoken = " ".join(([f"{hours} hour{'s' if hours != 1 else ''}"] if hours else [])
                      + ([f"{minutes} minute{'s' if minutes != 1 else ''}"] if minutes else []))
    return shown, spoken


def when(moment: datetime | None, today: date) -> str:
    """UK time in words an agent scans quickly: "11:30 today", "09:05 tomorrow", "14:00 Mon 30 Nov"."""
    if moment is None:
        return ""
    shown = local(moment)
    if shown.date() == today:
        day = "today"
    elif shown.date() == today + timedelta(days=1):
        day = "tomorrow"
    elif shown.date() == today - timedelta(days=1):
        day = "yesterday"
    else:
        day = f"{shown:%a} {shown.day} {shown:%b}" + ("" if shown.year == today.year else f" {shown.year}")
    return f"{shown:%H:%M} {day}"


def summary_of(callback: Callback) -> str:
    """The deadline's explanation in a sentence or two (kept beside the callback when it was owed)."""
    return _summary(callback.explanation)


@lru_cache(maxsize=4096)
def _summary(explanation: str | None) -> str:
    # A callback's explanation never changes, and the page shows up to 200 at each poll: the
    # sentence took 30 µs to write afresh. The dates in it are written in full, not as "today".
    try:
        return explain(json.loads(explanation))
    except (ValueError, AttributeError, KeyError, TypeError):
        return ""


def notice_text(kind: str, reference: str, left: timedelta) -> str:
    """A notice's line on the agents' page; `left`: the time a warning's callback had left."""
    if kind == "breach":
        return f"Breached: {reference}"
    if not kind.startswith("warning_"):
        return f"{kind}: {reference}"
    return f"Due in {minutes_left(left)}: {reference}"
