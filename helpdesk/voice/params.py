"""Checks of a Twilio webhook's parameters, made before anything is stored.

A request whose values cannot have come from Twilio gets 400 with a reason, and the journal
never holds it: a duration of "inf" or a Timestamp in the year 1 would otherwise become a
call answered before it arrived, or a record that cannot be computed at all.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Mapping

SID = re.compile(r"CA[0-9a-fA-F]{32}")  # whole-string matches only (fullmatch)
# Durations in seconds. Twilio ends every call at 24 hours, so none is longer than a day.
SECONDS = ("CallDuration", "DialCallDuration", "QueueTime", "RecordingDuration", "Duration")
LONGEST = 86_400
_NUMBER = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
# Twilio stamps an event when it fires and sends it at once: a Timestamp further than this
# from when the request came is not Twilio's.
SLACK = timedelta(days=1)


def is_sid(value: str | None) -> bool:
    return value is not None and SID.fullmatch(value) is not None


def seconds(params: Mapping[str, str], name: str) -> float | None:
    """The duration `name` (None when absent or empty); ValueError naming it when it is not one."""
    return duration(params.get(name), name)


def duration(text: str | None, name: str = "The duration") -> float | None:
    """`text` as a number of seconds (None when empty); ValueError when it is not one."""
    if not text:
        return None
    number = float(text) if _NUMBER.fullmatch(text) else math.nan
    if not 0 <= number <= LONGEST:
        raise ValueError(f"{name} is not a number of seconds from 0 to {LONGEST}.")
    return number


def moment(params: Mapping[str, str], now: datetime, name: str = "Timestamp") -> datetime | None:
    """The time `name` (None when absent or empty); ValueError naming it when it is not a time
    (RFC 2822, with its offset) within SLACK of `now`."""
    text = params.get(name)
    if not text:
        return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"{name} is not a date and time (RFC 2822).")
    try:
        near = abs(parsed - now) <= SLACK
    except OverflowError:
        near = False
    if not near:
        raise ValueError(f"{name} is not within a day of now.")
    return parsed


def problem(params: Mapping[str, str], now: datetime) -> str | None:
    """Why the durations and Timestamp in `params` cannot be Twilio's, or None."""
    try:
        for name in SECONDS:
            seconds(params, name)
        moment(params, now)
    except ValueError as error:
        return str(error)
    return None
