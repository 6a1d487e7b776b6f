"""A call's record, recomputed from every event the journal holds for it.

Pure: the same set of events gives the same record whatever order they arrived in and
however often each was delivered, because every field is a minimum, a maximum or a
choice that does not depend on order.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Mapping, Sequence

from helpdesk.phones import is_withheld
from helpdesk.rings import judge_answer, rings_for
from helpdesk.voice.answer import Screening, answer_of, caller_left, dial_bridged, dial_result, screening_of
from helpdesk.voice.call_events import (ACCEPT_DIGIT, API_CALL, API_KINDS, API_LEG, API_LOG, API_RECORDING,
                                        DIAL_ANSWERED, SCREENED, TERMINAL, Event, api_calls, api_time, event_time,
                                        seconds_or_none, set_of)

# Also for those who import them from here.
__all__ = ["ACCEPT_DIGIT", "API_CALL", "API_KINDS", "API_LEG", "API_LOG", "API_RECORDING", "DIAL_ANSWERED", "SCREENED",
           "TERMINAL", "CallRecord", "CallRules", "Event", "Screening", "can_change_record", "caller_left",
           "caller_number", "dial_bridged", "event_time", "project_call", "set_of"]


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


def caller_number(raw: str | None) -> str | None:
    """The caller's number, or None when withheld."""
    if is_withheld(raw):
        return None
    return raw.strip()


def project_call(call_sid: str, events: Sequence[Event], rules: CallRules, now: datetime,
                 dequeued_by: Mapping[str, str] | None = None) -> CallRecord:
    """Recompute a call's record from all its events; in queue mode with `dequeued_by`: for the
    agents' calls that took callers from the queue (their SIDs), what each came from (its `From`,
    from the agents' Voice URL's request: journal.dequeued_by)."""
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

    screening = screening_of(events, by_kind)
    answered_at, agent_leg_sid, agent = answer_of(events, by_kind, arrived_at, screening, dequeued_by)
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


def _estimated_arrival(events: list[Event]) -> datetime:
    # No incoming request was seen: the earliest moment any event vouches for.
    candidates = []
    for event in events:
        candidates.append(min(event.received_at, event_time(event)))
        duration = seconds_or_none(event.params.get("CallDuration"))
        if event.kind == "status" and duration is not None and event.params.get("CallStatus") in TERMINAL:
            candidates.append(event_time(event) - timedelta(seconds=duration))
        started = api_time(event, "StartTime") if event.kind in (API_CALL, API_LOG) else None
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


def _ended(by_kind) -> datetime | None:
    ends = [event_time(e) for e in by_kind.get("status", []) if e.params.get("CallStatus") in TERMINAL]
    # A call that "did not complete successfully" has no EndTime; its last change is its end.
    ends += [api_time(e, "EndTime") or api_time(e, "DateUpdated") or e.received_at
             for e in api_calls(by_kind) if e.params.get("CallStatus") in TERMINAL]
    return min(ends) if ends else None


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
    statuses = {e.params.get("CallStatus") for e in by_kind.get("status", []) + api_calls(by_kind)}
    dial = {dial_result(e) for e in by_kind.get("dial_action", [])}
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
        duration = seconds_or_none(event.params.get("RecordingDuration"))
        if event.params.get("RecordingUrl") and (duration is None or duration > 0):
            if event.kind == "voicemail" or event.params.get("RecordingStatus") == "completed":
                return True
    # Last resort, the REST API: a finished recording the voicemail's <Record> made, with sound in it.
    for event in by_kind.get(API_RECORDING, []):
        duration = seconds_or_none(event.params.get("RecordingDuration"))
        if (event.params.get("RecordingSource") == "RecordVerb" and event.params.get("RecordingStatus") == "completed"
                and duration is not None and duration > 0):
            return True
    return False
