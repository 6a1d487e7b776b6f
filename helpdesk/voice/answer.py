"""Whether and when a person answered a call, and on which agent leg: the legs' own answers, a
screened ring group's key presses, the queue's clock, the Dial's action and the REST API."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

from helpdesk.voice.call_events import (ACCEPT_DIGIT, API_LEG, DEQUEUE_KINDS, DIAL_ANSWERED, SCREENED, TERMINAL,
                                        Event, api_time, event_time, seconds_or_none)


@dataclass(frozen=True)
class Screening:
    """A screened ring group (routing.screen_calls): the agent legs on which 1 was pressed."""

    on: bool
    # Leg -> when the key press reached us, how long its prompt took, and the key press itself.
    accepted: Mapping[str, tuple[datetime, timedelta, Event]]


def dial_bridged(params: Mapping[str, str]) -> bool:
    """A Dial action saying the caller was put through to an agent leg."""
    return params.get("DialCallStatus") in DIAL_ANSWERED and params.get("DialBridged") != "false"


def _unbridged(event: Event) -> bool:
    """A Dial action saying a leg answered but nobody was put through (every one screened out)."""
    return event.params.get("DialCallStatus") in DIAL_ANSWERED and not dial_bridged(event.params)


def caller_left(params: Mapping[str, str]) -> bool:
    """A Dial action saying the caller hung up before anybody was put through to them.

    Twilio documents DialCallStatus "canceled" only for a Dial cancelled through its API; a
    caller hanging up while the agents' phones rang may come as "no-answer", "busy" or an
    unbridged "completed". The action request's own CallStatus, the caller's call, tells: it is
    over once they have gone, and still ringing or in progress if they are waiting.
    """
    if dial_bridged(params) or params.get("DialCallStatus") == "failed":
        return False
    return params.get("DialCallStatus") == "canceled" or params.get("CallStatus") in TERMINAL


def dial_result(event: Event) -> str | None:
    """What became of a Dial: its DialCallStatus, but "canceled" when the caller hung up first
    and "no-answer" when a leg answered and nobody was put through (all screened out)."""
    if caller_left(event.params):
        return "canceled"
    return "no-answer" if _unbridged(event) else event.params.get("DialCallStatus")


def screening_of(events, by_kind) -> Screening:
    """Which legs of a screened call were taken by a person, and how long their prompt took.

    The prompt's request comes when the leg answers and the key press's when 1 was pressed, so
    the time between our receipt of the two is how long the prompt kept the caller waiting. A
    key press counts only while the caller could still be put through: not once the Dial has
    said that nobody was (the caller hung up, or went to voicemail, first).
    """
    on = any(e.decision == SCREENED for e in events) or "screen" in by_kind or "screen_accept" in by_kind
    dials = by_kind.get("dial_action", [])
    if not on or any(_unbridged(e) or caller_left(e.params) for e in dials):
        return Screening(on, {})
    prompts: dict[str, datetime] = {}
    for event in by_kind.get("screen", []):
        prompts.setdefault(event.params.get("CallSid"), event.received_at)
    accepted: dict[str, tuple[datetime, timedelta, Event]] = {}
    for event in by_kind.get("screen_accept", []):
        leg = event.params.get("CallSid")
        if event.params.get("Digits") == ACCEPT_DIGIT and leg not in accepted:
            waited = max(event.received_at - prompts.get(leg, event.received_at), timedelta(0))
            accepted[leg] = (event.received_at, waited, event)
    return Screening(on, accepted)


def answer_of(events, by_kind, arrived_at, screening: Screening, dequeued_by: Mapping[str, str] | None = None
              ) -> tuple[datetime | None, str | None, str | None]:
    """When a person answered, the agent leg that did, and the endpoint it rang (in queue mode:
    what the agent's own call came from, `dequeued_by` its SID)."""
    candidates: list[tuple[datetime, str, str | None, str | None]] = []
    # A screened ring group: an agent leg answering may be its voicemail. Only a leg on which 1
    # was pressed was answered by a person: when the key press reached us, and never earlier
    # than the leg's answered Timestamp plus the prompt's time (a Timestamp has whole seconds).
    accepted = screening.accepted
    for event in by_kind.get("agent_status", []):
        leg = event.params.get("CallSid")
        if event.params.get("CallStatus") != "in-progress" or (screening.on and leg not in accepted):
            continue
        answered = event_time(event)
        if screening.on:
            pressed, prompt, _ = accepted[leg]
            answered = max(pressed, answered + prompt)
        candidates.append((answered, "a", leg, event.params.get("To")))
    # The key press without the leg's answered event: when it reached us.
    for leg, (pressed, _, event) in accepted.items():
        candidates.append((pressed, "ab", leg, event.params.get("To")))
    # Queue flow: the queue's own clock counts from when the caller entered it.
    entered = next((e.received_at for e in events if e.decision == "queue"), arrived_at)
    dequeued_by = dequeued_by or {}
    for event in [found for kind in DEQUEUE_KINDS for found in by_kind.get(kind, [])]:
        if event.kind == "queue_action" and event.params.get("QueueResult") != "bridged":
            continue
        waited = seconds_or_none(event.params.get("QueueTime"))
        if waited is not None:
            agent_leg = event.params.get("DequeingCallSid")
            candidates.append((entered + timedelta(seconds=waited), "b", agent_leg, dequeued_by.get(agent_leg or "")))
    # Then a Dial action saying the agent leg was connected for so long.
    for event in by_kind.get("dial_action", []):
        talked = seconds_or_none(event.params.get("DialCallDuration"))
        if dial_bridged(event.params) and talked is not None:
            candidates.append((event.received_at - timedelta(seconds=talked), "c", event.params.get("DialCallSid"), None))
    # Last resort, the REST API: an agent leg that completed after talking for so long (whole
    # seconds; Twilio gives no duration to a leg nobody answered). Not when screened: a leg
    # that voicemail answered has a duration too.
    for event in ([] if screening.on else by_kind.get(API_LEG, [])):
        talked, ended = seconds_or_none(event.params.get("Duration")), api_time(event, "EndTime")
        if event.params.get("CallStatus") == "completed" and talked and ended is not None:
            candidates.append((ended - timedelta(seconds=talked), "d", event.params.get("CallSid"),
                               event.params.get("To")))
    if not candidates:
        return None, None, None
    # Best evidence first (the agent leg's own answered event, then the queue's clock, then
    # the estimate); the earliest moment within it; at a tie, one that names the leg (a queue's
    # dequeue and its Enqueue action give the same time, and only the dequeue names the leg).
    answered_at, _, leg, agent = min(candidates, key=lambda c: (c[1], c[0], c[2] is None, c[2] or "",
                                                                c[3] is None, c[3] or ""))
    return answered_at, leg, agent
