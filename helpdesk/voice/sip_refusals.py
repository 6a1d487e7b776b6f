"""A phone system refusing Twilio's call to a SIP address, said where an administrator looks: the
log, and /metrics for an alert. Without it, a phone system that wants a login the app does not
give (or refuses the one it gives) turns every call its desk phones would have taken into a
breach, with no reason shown.

The SIP answer is in an agent leg's final status callback (`SipResponseCode`), for the ring
group's legs and for "Call back now" to a desk phone. The log names the leg's CallSid and the
code, never the SIP address (its user part may be a phone number); /metrics counts it
(`helpdesk_sip_calls_refused_total`). The agents' queue page and an enquiry's story say it too,
for "Call back now" (callbacks.not_dialled, from the journal).
"""
from __future__ import annotations

import json
import logging
from typing import Collection, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import TwilioEvent
from metrics.http import count_sip_refusal

log = logging.getLogger(__name__)

# SIP's answers to a caller the phone system will not take: it wants a login (401 from the phone,
# 407 from a proxy in front of it), or it refuses this caller outright (403), which is how some
# answer a wrong login, or a call from an address they do not know.
LOGIN_WANTED = ("401", "407")
FORBIDDEN = "403"
REFUSED = (*LOGIN_WANTED, FORBIDDEN)
# The app's calls that dial SIP addresses, as /metrics counts their refusals.
CALLS = ("ring_group", "call_back_now")


def refusal(params: Mapping[str, str]) -> str | None:
    """The SIP code with which a phone system refused this leg, or None: only a leg to a SIP
    address, and only for a refusal (not 487, a leg cancelled because another phone answered)."""
    code = (params.get("SipResponseCode") or "").strip()
    if code not in REFUSED or not (params.get("To") or "").lower().startswith("sip:"):
        return None
    return code


def log_refusal(params: Mapping[str, str], *, leg: str, call: str, login_given: bool) -> bool:
    """Log a warning if the phone system refused this SIP leg (`leg` says whose: "agent leg",
    "callback call"), with what to do, and count it on /metrics by `call` (`ring_group`,
    `call_back_now`); returns whether it did."""
    code = refusal(params)
    if code is None:
        return False
    count_sip_refusal(call, code)
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


def refused_legs(session: Session, call_sids: Collection[str], kind: str) -> dict[str, dict[str, str]]:
    """For each of these calls, its legs a phone system refused, with their SIP codes, read from the
    status callbacks of `kind` in the journal: `agent_status` for a call's ring group legs,
    `callback_status` for "Call back now" calls (whose own leg rings the agent's phone)."""
    if not call_sids:
        return {}
    refused: dict[str, dict[str, str]] = {}
    for call_sid, leg_sid, params in session.execute(
            select(TwilioEvent.call_sid, TwilioEvent.leg_sid, TwilioEvent.params)
            .where(TwilioEvent.call_sid.in_(sorted(call_sids)), TwilioEvent.kind == kind)):
        code = refusal(dict(json.loads(params)))
        if code is not None:
            refused.setdefault(call_sid, {})[leg_sid] = code
    return refused

