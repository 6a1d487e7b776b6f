"""Phone numbers: international format, withheld callers, and what of a number may be shown.

Pure: the standard library only.
"""
from __future__ import annotations

import re

_E164 = re.compile(r"\+[1-9]\d{6,14}")
# What Twilio and carriers send in From when the caller withheld their number.
WITHHELD = {"", "anonymous", "restricted", "unknown", "private", "unavailable", "+266696687", "+7378742833"}
SHOWN_DIGITS = 3


def is_e164(number: str | None) -> bool:
    """A number in international format, e.g. +447700900123."""
    return number is not None and _E164.fullmatch(number) is not None


def is_withheld(number: str | None) -> bool:
    return number is None or number.strip().lower() in WITHHELD


def number_ending(number: str | None) -> str | None:
    """The last three digits of a number, or None when withheld or too short to show any."""
    if is_withheld(number):
        return None
    digits = "".join(ch for ch in number if ch.isdigit())
    # A number of six digits or fewer would be mostly given away by three of them.
    if len(digits) <= 2 * SHOWN_DIGITS:
        return None
    return digits[-SHOWN_DIGITS:]
