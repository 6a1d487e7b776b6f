"""Why a "Call back now" call did not dial the caller, for the agent who made it and for the
enquiry's story.

Such a call is stored as an attempt `not_dialled` (it does not count); why is read from its
webhooks already in the journal, so calls made before this was written say it too:

* ``refused``: the phone system of the agent's desk phone refused Twilio's call (a SIP code);
* ``no-answer``, ``busy``, ``failed``: how the agent's own leg ended without being answered
  (``failed`` with no SIP refusal: Twilio could not place it, a wrong number say);
* ``no_key``: the agent's phone answered and heard the prompt, and nothing was pressed: the
  agent hung up, or nobody picked up and the phone's voicemail did;
* ``other_key``: a key other than 1 was pressed.

Anything else (a call cancelled, a callback closed while it rang, events blanked for personal
data) has no reason: the pages say what they always said.
"""
from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import TwilioEvent
from helpdesk.voice.sip_refusals import refusal

# How the agent's leg ended, said when it ended unanswered (its last CallStatus).
UNANSWERED = ("no-answer", "busy", "failed")


@dataclass(frozen=True)
class NotDialled:
    """Why, as one of the module's reasons, and the SIP code for ``refused``."""

    why: str
    code: str = ""


def why_not_dialled(session: Session, call_sids: Collection[str]) -> dict[str, NotDialled]:
    """For each of these "Call back now" calls (their attempts' `call_sid`) that is known, why it
    did not dial the caller: one indexed query over the calls' own legs' webhooks."""
    if not call_sids:
        return {}
    legs: dict[str, dict] = {}
    for call_sid, kind, params in session.execute(
            select(TwilioEvent.call_sid, TwilioEvent.kind, TwilioEvent.params)
            .where(TwilioEvent.call_sid.in_(sorted(call_sids)), TwilioEvent.leg_sid == TwilioEvent.call_sid,
                   TwilioEvent.kind.in_(("callback_status", "callback_connect")))):
        values, leg = dict(json.loads(params)), legs.setdefault(call_sid, {"keys": set()})
        if kind == "callback_connect":
            leg["answered"] = True
            if "Digits" in values:
                leg["keys"].add(values["Digits"])
        elif (code := refusal(values)) is not None:
            leg["refused"] = code
        elif values.get("CallStatus") in UNANSWERED:
            leg["ended"] = values["CallStatus"]
    return {call_sid: reason for call_sid, leg in legs.items() if (reason := _reason(leg)) is not None}


def _reason(leg: dict) -> NotDialled | None:
    if "refused" in leg:
        return NotDialled("refused", leg["refused"])
    if "1" in leg["keys"]:
        return None  # 1 was pressed, yet nobody was dialled: the callback had closed, say
    if leg["keys"]:
        return NotDialled("other_key")
    if leg.get("answered"):
        return NotDialled("no_key")
    if "ended" in leg:
        return NotDialled(leg["ended"])
    return None
