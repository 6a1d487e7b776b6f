"""A call's events as the projection (helpdesk/voice/projection.py) reads them: their kinds, and
the times and durations they carry."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Mapping, Sequence

from helpdesk.voice.params import duration, moment

TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}
# Calls as Twilio's REST API described them, fetched when a call's last webhooks never came
# (helpdesk/voice/reconcile.py): the inbound call itself, each agent leg of its <Dial>, and
# each recording of the call (asked for only when the caller was offered voicemail).
API_CALL, API_LEG, API_RECORDING = "api_call", "api_leg", "api_recording"
# A call to the help desk's number that Twilio's call log has and the app never heard of
# (helpdesk/voice/missed.py): the Call resource, as for API_CALL. With no other event but the
# API's, nothing shows the caller was ever offered a person: unless an agent leg answered,
# the call failed because of us, as a call that reached the fallback URL did.
API_LOG = "api_log"
API_KINDS = (API_CALL, API_LEG, API_RECORDING, API_LOG)
# The decision stored with the request that sent a caller to a screened ring group
# (routing.screen_calls): an agent leg answering proves nothing until 1 is pressed on it.
SCREENED = "agents_screened"
# The key an agent presses to take a screened call.
ACCEPT_DIGIT = "1"
# What a Dial action's DialCallStatus says when an agent leg answered.
DIAL_ANSWERED = ("completed", "answered")
# Queue mode: a caller's events that name the agent's call that took them from the queue
# (DequeingCallSid), and that call's own request to the agents' Voice URL
# (/twilio/voice/agent-dequeue), journalled under its own SID with no call record.
DEQUEUE_KINDS = ("dequeue", "queue_action")
AGENT_DEQUEUE = "agent_dequeue"
# The PIN typed on the agents' line (routing.agents_pin), journalled under the agent's call too,
# without the PIN.
AGENTS_PIN = "agents_pin"
# The decision stored with such a request from no agent's phone or Client identity: refused.
NOT_AN_AGENT = "not_an_agent"


@dataclass(frozen=True)
class Event:
    """One journal entry, as the projection needs it."""

    kind: str
    received_at: datetime
    params: Mapping[str, str]
    decision: str | None = None

    def sort_key(self):
        return (self.received_at, self.kind, sorted(self.params.items()), self.decision or "")


def event_time(event: Event) -> datetime:
    """When Twilio says the event fired (Timestamp), else when we received it.

    The webhooks refuse a Timestamp that is not a time within a day of the request
    (helpdesk/voice/params.py); one in the journal from before that is not believed either.
    """
    try:
        stamp = moment(event.params, event.received_at)
    except ValueError:
        stamp = None
    return stamp or event.received_at


def seconds_or_none(value: str | None) -> float | None:
    """A duration as the webhooks accept it (helpdesk/voice/params.py), else None."""
    try:
        return duration(value)
    except ValueError:
        return None


def set_of(events: Sequence[Event]) -> list[Event]:
    """Drop exact redeliveries (same kind and parameters), keeping the earliest receipt."""
    seen: dict[tuple, Event] = {}
    for event in sorted(events, key=Event.sort_key):
        key = (event.kind, tuple(sorted(event.params.items())))
        seen.setdefault(key, event)
    return list(seen.values())


def api_calls(by_kind) -> list[Event]:
    """The Call resource as the REST API gave it: asked about by id, or found in the call log."""
    return by_kind.get(API_CALL, []) + by_kind.get(API_LOG, [])


def api_time(event: Event, name: str) -> datetime | None:
    """A time the REST API gave (RFC 2822, as Twilio writes it), or None."""
    try:
        parsed = parsedate_to_datetime(event.params.get(name) or "")
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None
