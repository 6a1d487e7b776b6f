"""A call's record, recomputed from every event the journal holds for it.

Pure: the same set of events gives the same record whatever order they arrived in and
however often each was delivered, because every field is a minimum, a maximum or a
choice that does not depend on order.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Callable, Mapping, Sequence

from helpdesk.phones import is_withheld
from helpdesk.voice.params import duration, moment
from helpdesk.rings import judge_answer, rings_for

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


@dataclass(frozen=True)
class Event:
    """One journal entry, as the projection needs it."""

    kind: str
    received_at: datetime
    params: Mapping[str, str]
    decision: str | None = None

    def sort_key(self):
        return (self.received_at, self.kind, sorted(self.params.items()), self.decision or "")


@dataclass(frozen=True)
class CallRules:
    """What the projection needs from the configuration."""

    ring_period_seconds: float
    target_seconds: float
    dwp_numbers: frozenset[str]
    dwp_digit: str
    customer_digit: str
    is_open: Callable[[datetime], bool]


@dataclass(frozen=True)
class CallRecord:
    call_sid: str
    arrived_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    answer_seconds: float | None
    rings: int | None
    outcome: str
    in_hours: bool
    countable: bool
    sla_result: str | None
    caller_number: str | None
    caller_type: str
    agent_leg_sid: str | None
    agent: str | None
    incoming_seen: bool
    from_api: bool  # finished from Twilio's REST API: the call's last webhooks never came


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


def _seconds(value: str | None) -> float | None:
    """A duration as the webhooks accept it (helpdesk/voice/params.py), else None."""
    try:
        return duration(value)
    except ValueError:
        return None


def caller_number(raw: str | None) -> str | None:
    """The caller's number, or None when withheld."""
    if is_withheld(raw):
        return None
    return raw.strip()


def project_call(call_sid: str, events: Sequence[Event], rules: CallRules, now: datetime) -> CallRecord:
    """Recompute a call's record from all its events."""
    events = sorted(set_of(events), key=Event.sort_key)
    by_kind: dict[str, list[Event]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    incoming = by_kind.get("incoming", [])
    parent_events = [e for e in events if e.params.get("CallSid") == call_sid]

    if incoming:
        arrived_at = incoming[0].received_at
    else:
        arrived_at = _estimated_arrival(events)
    first_decision = next((e.decision for e in incoming if e.decision), None)
    in_hours = first_decision != "out_of_hours" if first_decision else rules.is_open(arrived_at)

    number = next((caller_number(e.params.get("From")) for e in parent_events if "From" in e.params), None)
    caller_type = _caller_type(number, by_kind.get("gather", []), rules)

    screening = _screening(events, by_kind)
    answered_at, agent_leg_sid, agent = _answer(events, by_kind, arrived_at, screening)
    ended_at = _ended(by_kind)
    # Twilio stamps events in whole seconds, and arrival is when the first request came, to the
    # millisecond: a call answered or ended within its first second can be stamped before it
    # arrived. Nothing happens to a call before it arrives, nor ends before it is answered.
    if answered_at is not None and answered_at < arrived_at:
        answered_at = arrived_at
    if ended_at is not None and ended_at < (answered_at or arrived_at):
        ended_at = answered_at or arrived_at
    unheard = API_LOG in by_kind and all(kind in API_KINDS for kind in by_kind)
    outcome = "failed" if unheard and answered_at is None else _outcome(
        first_decision, answered_at, ended_at, by_kind, screening)

    answer_seconds = rings = None
    if answered_at is not None:
        answer_seconds = max((answered_at - arrived_at).total_seconds(), 0.0)
        rings = rings_for(answer_seconds, rules.ring_period_seconds)
    wait_end = ended_at or _wait_end(by_kind) or now
    judgement = judge_answer(
        outcome=outcome,
        in_hours=in_hours,
        answer_seconds=answer_seconds,
        waited_seconds=max((wait_end - arrived_at).total_seconds(), 0.0),
        target_seconds=rules.target_seconds,
    )
    return CallRecord(
        call_sid=call_sid,
        arrived_at=arrived_at,
        answered_at=answered_at,
        ended_at=ended_at,
        answer_seconds=answer_seconds,
        rings=rings,
        outcome=outcome,
        in_hours=in_hours,
        countable=judgement.countable,
        sla_result=judgement.result,
        caller_number=number,
        caller_type=caller_type,
        agent_leg_sid=agent_leg_sid,
        agent=agent,
        incoming_seen=bool(incoming),
        from_api=any(kind in by_kind for kind in API_KINDS),
    )


def can_change_record(kind: str, params: Mapping[str, str], incoming_seen: bool) -> bool:
    """Whether adding this event could change a call's record.

    Once the incoming request is known, an agent leg that is only being set up or rung
    (or ends without answering) changes nothing: only an agent leg's answer counts. Used
    to skip recomputing for most agent-leg callbacks, the bulk of all webhooks.
    """
    if kind == "agent_status" and incoming_seen:
        return params.get("CallStatus") == "in-progress"
    return True


def set_of(events: Sequence[Event]) -> list[Event]:
    """Drop exact redeliveries (same kind and parameters), keeping the earliest receipt."""
    seen: dict[tuple, Event] = {}
    for event in sorted(events, key=Event.sort_key):
        key = (event.kind, tuple(sorted(event.params.items())))
        seen.setdefault(key, event)
    return list(seen.values())


def _estimated_arrival(events: list[Event]) -> datetime:
    # No incoming request was seen: the earliest moment any event vouches for.
    candidates = []
    for event in events:
        candidates.append(min(event.received_at, event_time(event)))
        duration = _seconds(event.params.get("CallDuration"))
        if event.kind == "status" and duration is not None and event.params.get("CallStatus") in TERMINAL:
            candidates.append(event_time(event) - timedelta(seconds=duration))
        started = _api_time(event, "StartTime") if event.kind in (API_CALL, API_LOG) else None
        if started is not None:
            candidates.append(started)
    return min(candidates)


def _caller_type(number: str | None, gathers: list[Event], rules: CallRules) -> str:
    if number is not None and number in rules.dwp_numbers:
        return "dwp"
    for event in gathers:
        digits = event.params.get("Digits", "")
        if digits == rules.dwp_digit:
            return "dwp"
        if digits == rules.customer_digit:
            return "customer"
    return "unknown"


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


def _dial_result(event: Event) -> str | None:
    """What became of a Dial: its DialCallStatus, but "canceled" when the caller hung up first
    and "no-answer" when a leg answered and nobody was put through (all screened out)."""
    if caller_left(event.params):
        return "canceled"
    return "no-answer" if _unbridged(event) else event.params.get("DialCallStatus")


def _screening(events, by_kind) -> Screening:
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


def _answer(events, by_kind, arrived_at, screening: Screening) -> tuple[datetime | None, str | None, str | None]:
    """When a person answered, and the agent leg that did."""
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
    for event in by_kind.get("dequeue", []) + by_kind.get("queue_action", []):
        if event.kind == "queue_action" and event.params.get("QueueResult") != "bridged":
            continue
        waited = _seconds(event.params.get("QueueTime"))
        if waited is not None:
            agent_leg = event.params.get("DequeingCallSid")
            candidates.append((entered + timedelta(seconds=waited), "b", agent_leg, None))
    # Then a Dial action saying the agent leg was connected for so long.
    for event in by_kind.get("dial_action", []):
        talked = _seconds(event.params.get("DialCallDuration"))
        if dial_bridged(event.params) and talked is not None:
            candidates.append((event.received_at - timedelta(seconds=talked), "c", event.params.get("DialCallSid"), None))
    # Last resort, the REST API: an agent leg that completed after talking for so long (whole
    # seconds; Twilio gives no duration to a leg nobody answered). Not when screened: a leg
    # that voicemail answered has a duration too.
    for event in ([] if screening.on else by_kind.get(API_LEG, [])):
        talked, ended = _seconds(event.params.get("Duration")), _api_time(event, "EndTime")
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


def _ended(by_kind) -> datetime | None:
    ends = [event_time(e) for e in by_kind.get("status", []) if e.params.get("CallStatus") in TERMINAL]
    # A call that "did not complete successfully" has no EndTime; its last change is its end.
    ends += [_api_time(e, "EndTime") or _api_time(e, "DateUpdated") or e.received_at
             for e in _api_calls(by_kind) if e.params.get("CallStatus") in TERMINAL]
    return min(ends) if ends else None


def _api_calls(by_kind) -> list[Event]:
    """The Call resource as the REST API gave it: asked about by id, or found in the call log."""
    return by_kind.get(API_CALL, []) + by_kind.get(API_LOG, [])


def _api_time(event: Event, name: str) -> datetime | None:
    """A time the REST API gave (RFC 2822, as Twilio writes it), or None."""
    try:
        parsed = parsedate_to_datetime(event.params.get(name) or "")
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _wait_end(by_kind) -> datetime | None:
    # The caller stopped waiting for a person: hung up in the queue or during the Dial,
    # or went to voicemail.
    ends = [e.received_at for e in by_kind.get("dial_action", [])]
    ends += [e.received_at for e in by_kind.get("queue_action", []) if e.params.get("QueueResult") != "bridged"]
    return min(ends) if ends else None


def _outcome(decision: str | None, answered_at, ended_at, by_kind, screening: Screening) -> str:
    if answered_at is not None:
        return "answered"
    if decision == "out_of_hours":
        return "out_of_hours"
    statuses = {e.params.get("CallStatus") for e in by_kind.get("status", []) + _api_calls(by_kind)}
    dial = {_dial_result(e) for e in by_kind.get("dial_action", [])}
    # Every agent leg the REST API lists rang out (or was busy): the caller was not hung up on;
    # unless the Dial's action said they had gone (what Twilio then gives a leg is undocumented).
    # On a screened call, a leg that completed with nobody pressing 1 was voicemail: no answer.
    legs = {"no-answer" if screening.on and e.params.get("CallStatus") == "completed"
            and e.params.get("CallSid") not in screening.accepted else e.params.get("CallStatus")
            for e in by_kind.get(API_LEG, [])}
    if legs and legs <= {"no-answer", "busy"} and "canceled" not in dial:
        dial |= {"no-answer"}
    queue = {e.params.get("QueueResult") for e in by_kind.get("queue_action", [])}
    if "failed" in statuses or "failed" in dial or queue & {"error", "system-error"} or by_kind.get("fallback"):
        return "failed"
    if _has_voicemail(by_kind):
        return "voicemail"
    if dial & {"no-answer", "busy"} or queue & {"leave", "queue-full"}:
        return "no_answer"
    if ended_at is not None or "canceled" in dial or "hangup" in queue:
        return "abandoned"
    return "in_progress"


def _has_voicemail(by_kind) -> bool:
    for event in by_kind.get("voicemail", []) + by_kind.get("recording", []):
        duration = _seconds(event.params.get("RecordingDuration"))
        if event.params.get("RecordingUrl") and (duration is None or duration > 0):
            if event.kind == "voicemail" or event.params.get("RecordingStatus") == "completed":
                return True
    # Last resort, the REST API: a finished recording the voicemail's <Record> made, with sound in it.
    for event in by_kind.get(API_RECORDING, []):
        duration = _seconds(event.params.get("RecordingDuration"))
        if (event.params.get("RecordingSource") == "RecordVerb" and event.params.get("RecordingStatus") == "completed"
                and duration is not None and duration > 0):
            return True
    return False
