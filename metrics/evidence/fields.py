"""How stored values are written into an evidence pack. Pure: the standard library only.

Times are ISO 8601 in UK time with the offset in force ("2026-11-24T10:00:05.123+00:00").
Phone numbers keep their last three digits; email addresses keep one letter of the name,
one letter of the domain and the top-level domain ("j***@e***.org").
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable

from helpdesk.clock import LONDON
from helpdesk.phones import REMOVED, WITHHELD, is_withheld, number_ending

NUMBER_MASK = "********"  # always eight, so the mask does not give away the number's length
REDACTIONS = ("masked", "none")


def mask_number(number: str | None) -> str:
    """A caller's number as "********123", "withheld", or "********" when too short to show any."""
    if is_withheld(number):
        return "withheld"
    ending = number_ending(number)
    return NUMBER_MASK + (ending or "")


def mask_email(address: str | None) -> str:
    """An address as "j***@e***.org": first letter of the name, of the domain, and the top level.

    Subdomains are folded into the one masked part, so "jane@mail.example.co.uk" is "j***@m***.uk".
    """
    if not address:
        return ""
    if address == REMOVED:
        return REMOVED
    name, at, domain = address.strip().rpartition("@")
    if not at or not name or not domain:
        return "***"
    head, dot, top = domain.rpartition(".")
    masked_domain = f"{head[0]}***.{top}" if dot and head else f"{domain[0]}***"
    return f"{name[0]}***@{masked_domain}"


# What a spreadsheet program takes as the start of a formula (CSV injection): a cell of free
# text that starts so is written with a "'" in front, which the programs show as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """Free text (notes, addresses, numbers as received) that no spreadsheet will run.

    A number such as "+447700900123" is left as it is: a spreadsheet reads it as a number and
    runs nothing.
    """
    if text.startswith(FORMULA_STARTS) and not (text[1:].isdigit() and text[0] in "+-"):
        return "'" + text
    return text


class Redactor:
    """Masks numbers and addresses unless the export is unredacted (`redaction="none"`)."""

    def __init__(self, redaction: str = "masked"):
        if redaction not in REDACTIONS:
            raise ValueError(f"unknown redaction {redaction!r}: use one of {', '.join(REDACTIONS)}")
        self.redaction = redaction
        self.masked = redaction == "masked"

    def number(self, number: str | None) -> str:
        if number is None:
            return "withheld"
        if number == REMOVED:
            return REMOVED
        if self.masked:
            # The usual case, cheaply: "+" and seven or more digits (the same answer as mask_number).
            if len(number) > 7 and number[0] == "+" and number[1:].isdigit() and number not in WITHHELD:
                return NUMBER_MASK + number[-3:]
            return inert(mask_number(number))
        return "withheld" if is_withheld(number) else inert(number)

    def email(self, address: str | None) -> str:
        return inert(mask_email(address) if self.masked else (address or ""))


STORED_LENGTH = len("2026-11-24 10:00:05.123456")  # an instant as SQLite stores it: naive UTC


class UKHours(dict):
    """The UK date and hour, and the offset, for each UTC hour met: {"2026-07-01 23": ("2026-07-02T00", "+01:00")}.

    UK offsets are whole hours and change only on the hour (at the two DST instants), so a stored
    instant's UK text is its UTC hour's entry with the minutes, seconds and milliseconds copied
    over (`uk_time`). Each hour is worked out once, on first use.
    """

    def __missing__(self, utc_hour: str) -> tuple[str, str]:
        local = self[utc_hour] = _local_hour(utc_hour)
        return local


def uk_time(value: str | datetime | None, hours: UKHours) -> str:
    """A stored instant as ISO 8601 UK time with the offset, to the millisecond (truncated).

    Accepts SQLite's stored text ("YYYY-MM-DD HH:MM:SS.ffffff", naive UTC), other ISO text, or an
    aware datetime (PostgreSQL). A missing time is "".
    """
    if value is None:
        return ""
    if value.__class__ is str and len(value) == STORED_LENGTH and value[10] == " ":
        local_hour, offset = hours[value[:13]]
        return local_hour + value[13:23] + offset
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(LONDON).isoformat(timespec="milliseconds")


def london_times() -> Callable[[str | datetime | None], str]:
    """A formatter of stored instants as ISO 8601 UK time (`uk_time`), with its own cache of hours."""
    hours = UKHours()

    def formatted(value: str | datetime | None) -> str:
        return uk_time(value, hours)

    return formatted


def _local_hour(utc_hour: str) -> tuple[str, str]:
    """("YYYY-MM-DDTHH", "+01:00"): the UK date and hour, and the offset, for a UTC hour."""
    moment = datetime.fromisoformat(utc_hour + ":00:00").replace(tzinfo=timezone.utc).astimezone(LONDON)
    text = moment.isoformat(timespec="seconds")
    return text[:13], text[19:]


def as_utc(value: str | datetime | None) -> datetime | None:
    """A stored instant (SQLite text or datetime) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def seconds(value: float | timedelta | None) -> str:
    """Seconds exactly, as stored (to the microsecond), without trailing zeros: 11.0, 10.04,
    29.9996; "" when there are none. Exact, so a rule's result follows from the figure as it was
    decided (29.9996 s is ring 10; to a tenth it would read 30.0, ring 11)."""
    if value is None:
        return ""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    text = f"{value:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def yes_no(flag: bool | None) -> str:
    return "yes" if flag else "no"


def ratio(met: int, countable: int) -> str:
    """Met / countable to four decimal places, halves rounded up as the pages round their
    percentages (so 1 of 32 is 0.0313, as the pages' 3.1%); blank for "no data"."""
    if countable <= 0:
        return ""
    value = (Decimal(met) / Decimal(countable)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    # Never 1.0000 while anything was breached (19,999 of 20,000 is 0.9999), as the pages.
    return str(min(value, Decimal("0.9999")) if met < countable else value)
