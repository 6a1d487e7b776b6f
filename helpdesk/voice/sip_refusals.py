"""A phone system refusing Twilio's call to a SIP address, said in the log where an administrator
looks. Without it, a phone system that wants a login the app does not give (or refuses the one
it gives) turns every call its desk phones would have taken into a breach, with no reason shown.

The SIP answer is in an agent leg's final status callback (`SipResponseCode`), for the ring
group's legs and for "Call back now" to a desk phone. The log names the leg's CallSid and the
code, never the SIP address (its user part may be a phone number).
"""
from __future__ import annotations

import logging
from typing import Mapping

log = logging.getLogger(__name__)

# SIP's answers to a caller the phone system will not take: it wants a login (401 from the phone,
# 407 from a proxy in front of it), or it refuses this caller outright (403), which is how some
# answer a wrong login, or a call from an address they do not know.
LOGIN_WANTED = ("401", "407")
FORBIDDEN = "403"


def refusal(params: Mapping[str, str]) -> str | None:
    """The SIP code with which a phone system refused this leg, or None: only a leg to a SIP
    address, and only for a refusal (not 487, a leg cancelled because another phone answered)."""
    code = (params.get("SipResponseCode") or "").strip()
    if code not in (*LOGIN_WANTED, FORBIDDEN) or not (params.get("To") or "").lower().startswith("sip:"):
        return None
    return code


def log_refusal(params: Mapping[str, str], *, leg: str, login_given: bool) -> bool:
    """Log a warning if the phone system refused this SIP leg (`leg` says whose: "agent leg",
    "callback call"), with what to do; returns whether it did."""
    code = refusal(params)
    if code is None:
        return False
    if code == FORBIDDEN:
        advice = ("it does not take calls from Twilio's addresses, or did not take the login "
                  "(SIP_USERNAME, SIP_PASSWORD)")
    elif login_given:
        advice = "it did not take the login: check SIP_USERNAME and SIP_PASSWORD against the phone system's"
    else:
        advice = ("it asks Twilio to log in: set SIP_USERNAME and SIP_PASSWORD (README: \"SIP addresses and "
                  "the phone system\"), or have it take calls from Twilio's addresses without")
    log.warning("%s %s: the phone system refused Twilio's call to a SIP address (SIP %s): %s", leg,
                params.get("CallSid", "?"), code, advice)
    return True
