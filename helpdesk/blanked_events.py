"""Journal events with the person taken out: what `helpdesk anonymise` and the scheduler's
retention job (helpdesk/retention.py) leave of a call's webhooks, and what the journal stores of
a webhook that comes for a call whose personal data is gone (helpdesk/voice/journal.py).

Each event stays in place and in order, as DESIGN.md's journal asks, with every parameter's
value blanked but those in KEPT_PARAMETERS (and an address's kind, KEPT_SCHEMES). Its fingerprint
(a digest of the values) goes too: a digest of a phone number can be reversed by trying every
number.
"""
from __future__ import annotations

import json

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from helpdesk.models import TwilioEvent

ANONYMISED = "anonymised:"  # a blanked event's fingerprint starts so

# Twilio's parameters that say nothing about a person: what the call records are computed from.
KEPT_PARAMETERS = frozenset({
    "AccountSid", "ApiVersion", "CallSid", "ParentCallSid", "CallStatus", "Direction", "Timestamp",
    "SequenceNumber", "CallbackSource", "CallDuration", "Duration", "StartTime", "EndTime", "DateUpdated",
    "DialCallStatus", "DialCallSid", "DialCallDuration", "DialBridged", "QueueResult", "QueueSid", "QueueTime",
    "DequeingCallSid", "Digits", "AnsweredBy", "MachineDetectionDuration", "RecordingStatus",
    "RecordingDuration", "RecordingSource", "ErrorCode", "SipResponseCode", "StirVerstat",
})


# Of an address, the kind is kept ("sip:", "client:"), which names nobody: a SIP code means a
# phone system refused the call only on a leg to a SIP address (helpdesk.voice.sip_refusals).
KEPT_SCHEMES = ("sip", "client")


def blanked(params: str) -> str:
    """A journal event's parameters with every value a person could be known by blanked."""
    return json.dumps([[name, value if name in KEPT_PARAMETERS else _scheme(value)]
                       for name, value in json.loads(params)], ensure_ascii=False)


def _scheme(value: str) -> str:
    scheme = value.partition(":")[0].lower() if ":" in value else ""
    return f"{scheme}:" if scheme in KEPT_SCHEMES else ""


def not_blanked():
    """The condition on TwilioEvent for an event not blanked yet."""
    return ~TwilioEvent.fingerprint.startswith(ANONYMISED)


def blank_events(session: Session, call_sids: list[str], apply: bool) -> int:
    """Blank (with `apply`, else only count) the events of these calls not blanked yet, in the
    caller's transaction."""
    if not call_sids:
        return 0
    events = session.execute(select(TwilioEvent.id, TwilioEvent.params).where(
        TwilioEvent.call_sid.in_(call_sids), not_blanked())).all()
    if apply and events:
        write_blanked(session, events)
    return len(events)


def write_blanked(session: Session, events) -> None:
    """Blank these events (rows of id and params)."""
    session.execute(update(TwilioEvent), [
        {"id": event.id, "params": blanked(event.params), "fingerprint": f"{ANONYMISED}{event.id}"}
        for event in events])
