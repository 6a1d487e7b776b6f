"""Phone numbers: international format, withheld callers, and what of a number may be shown.

Pure: the standard library only.
"""
from __future__ import annotations

import re

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ASCII digits: another script's cannot be dialled
SHOWN_DIGITS = 3
# Stored instead of a caller's number or a sender's address once the retention period has passed
# (helpdesk/retention.py): not a number, nor anything a caller could send.
REMOVED = "removed"
# Stored for a caller who withheld their number, once the period has passed: still withheld (so
# shown, and not dialled, as before), and removed (so a late webhook leaves the record alone).
REMOVED_WITHHELD = "removed:withheld"
REMOVED_NUMBERS = (REMOVED, REMOVED_WITHHELD)
# What Twilio and carriers send in From when the caller withheld their number.
WITHHELD = {"", "anonymous", "restricted", "unknown", "private", "unavailable", "+266696687", "+7378742833",
            REMOVED_WITHHELD}


def is_e164(number: str | None) -> bool:
    """A number in international format, e.g. +447700900123."""
    return number is not None and _E164.fullmatch(number) is not None


def is_phone_number(number: str | None) -> bool:
    """A number someone can be rung on, in international format: E.164, and a UK one (+44) with the
    9 or 10 digits UK numbers have after the country code (so "+4411420", a number cut short, is not)."""
    if not is_e164(number):
        return False
    return not number.startswith("+44") or len(number) - 3 in (9, 10)


_SEPARATORS = re.compile(r"[\s\-.()/]")


def international(typed: str | None, country_code: str = "44") -> str | None:
    """A number as a person types it, in international format, or None if it cannot be rung
    (`is_phone_number`, the rule the configuration's numbers follow too).

    "07700 900123", "+44 (0)7700 900-123" and "0044 7700 900123" are all "+447700900123": a
    leading 0 is the UK trunk prefix, and 00 the international one. "0114 20", cut short, is None.
    """
    text, prefix = _SEPARATORS.sub("", typed or ""), f"+{country_code}"
    if text.startswith(prefix + "0"):
        text = prefix + text[len(prefix) + 1:]  # the "(0)" people write after +44
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text.startswith("0"):
        text = f"+{country_code}{text[1:]}"
    return text if is_phone_number(text) else None


# A SIP address Twilio can dial (RFC 3261's sip: URI, ASCII): a user part (an extension such as
# 1001, a name, or a number), the host (a name, an IPv4 address or an [IPv6] one), an optional
# port, then optional parameters (";transport=tls") and headers ("?X-Team=helpdesk").
_SIP_ADDRESS = re.compile(
    r"sip:(?P<user>[A-Za-z0-9\-_.!~*'()&=+$,%]+)"
    r"@(?P<host>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"|\[[0-9A-Fa-f:.]+\])"
    r"(?P<port>:[0-9]{1,5})?"
    r"(?P<rest>(?:;[A-Za-z0-9\-_.!~*'()%\[\]/:&+$=]+)*(?:\?[A-Za-z0-9\-_.!~*'()%\[\]/?:+$=&]+)?)",
    re.IGNORECASE)
SIP_ADDRESS_LENGTH = 128  # as users.phone holds


def sip_address(typed: str | None, longest: int | None = SIP_ADDRESS_LENGTH) -> str | None:
    """A SIP address as a person types it ("SIP:1001@PBX.example.org"), with its scheme and host
    in lower case as SIP compares them ("sip:1001@pbx.example.org"), or None if it is not one or
    is longer than `longest` (None: any length, as the ring group's targets may be)."""
    match = _SIP_ADDRESS.fullmatch((typed or "").strip())
    if match is None or (longest is not None and len(match.group()) > longest):
        return None
    return f"sip:{match['user']}@{match['host'].lower()}{match['port'] or ''}{match['rest']}"


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
