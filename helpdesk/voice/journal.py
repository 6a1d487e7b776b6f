"""Store each accepted webhook once, as received, and recompute the call's record.

This is the hot path of every webhook: its statements are compiled once per dialect and
run on the driver's cursor (helpdesk.prepared), inside a Core connection's transaction.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import NamedTuple, Sequence

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Dialect

from callbacks.owed import MISSED_OUTCOMES, arrival_moved, owe_for_missed_call
from helpdesk.dbutil import dialect_insert
from helpdesk.enquiries import open_phone_enquiry
from helpdesk.models import Call, TwilioEvent
from helpdesk.phones import REMOVED_NUMBERS, is_withheld
from helpdesk.prepared import Prepared
from helpdesk.settings import Settings
from helpdesk.voice.call_events import AGENT_DEQUEUE, DEQUEUE_KINDS
from helpdesk.voice.projection import API_LOG, CallRecord, CallRules, Event, can_change_record, project_call

log = logging.getLogger(__name__)

CALLS = Call.__table__
EVENTS = TwilioEvent.__table__
# Agent legs report under their own CallSid; they belong to the inbound (parent) call.
CHILD_KINDS = frozenset({"agent_status", "api_leg", "screen", "screen_accept"})


def fingerprint(path: str, params: Sequence[tuple[str, str]]) -> str:
    """The same webhook delivered twice has the same fingerprint."""
    canonical = json.dumps([path, sorted(params)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def owning_call_sid(kind: str, params: dict[str, str]) -> str:
    if kind in CHILD_KINDS and params.get("ParentCallSid"):
        return params["ParentCallSid"]
    return params["CallSid"]


@cache
def call_rules(settings: Settings) -> CallRules:
    return CallRules(
        ring_period_seconds=settings.ring_period_seconds,
        target_seconds=settings.answer_target_seconds,
        dwp_numbers=settings.dwp_numbers,
        dwp_digit=settings.ivr.dwp_digit,
        customer_digit=settings.ivr.customer_digit,
        is_open=settings.calendar.is_open,
    )


class _Statements:
    """The journal's statements, compiled for one dialect."""

    def __init__(self, dialect: Dialect):
        insert = dialect_insert(dialect.name)
        self.new_call = Prepared(insert(CALLS).on_conflict_do_nothing(index_elements=["call_sid"]), dialect,
                                 _NEW_CALL)
        self.lock_call = Prepared(
            select(CALLS.c.id, CALLS.c.enquiry_id, CALLS.c.incoming_seen, CALLS.c.outcome, CALLS.c.ended_at,
                   CALLS.c.caller_type, CALLS.c.arrived_at, CALLS.c.caller_number)
            .where(CALLS.c.call_sid == bindparam("sid"))
            .with_for_update(), dialect)
        self.new_event = Prepared(insert(EVENTS).on_conflict_do_nothing(index_elements=["fingerprint"]), dialect,
                                  _EVENT_COLUMNS)
        self.events = Prepared(
            select(EVENTS.c.kind, EVENTS.c.received_at, EVENTS.c.params, EVENTS.c.decision)
            .where(EVENTS.c.call_sid == bindparam("sid"))
            .order_by(EVENTS.c.id), dialect)
        self.update_call = Prepared(update(CALLS).where(CALLS.c.id == bindparam("_id")), dialect, _UPDATED)


_compiled: dict[tuple[str, str], _Statements] = {}


def _statements(dialect: Dialect) -> _Statements:
    key = (dialect.name, dialect.paramstyle)
    if key not in _compiled:
        _compiled[key] = _Statements(dialect)
    return _compiled[key]


# The requests only a caller's call makes: the number's Voice URL, and its fallback URL.
CALLERS_KINDS = ("incoming", "fallback")


def record_event(
    connection: Connection,
    settings: Settings,
    *,
    kind: str,
    path: str,
    params: Sequence[tuple[str, str]],
    received_at: datetime,
    idempotency_token: str | None = None,
    decision: str | None = None,
) -> bool:
    """Journal one webhook and bring its call's record up to date.

    Returns whether the event was new (False for a redelivery). Owns the transaction:
    on any error nothing is stored.
    """
    flat = dict(params)
    call_sid = owning_call_sid(kind, flat)
    row = _event_row(kind, path, params, received_at, call_sid, idempotency_token, decision)
    with connection.begin():
        sql = _statements(connection.dialect)
        if kind == "status" and settings.routing.mode == "queue" and _an_agents_call(
                connection, call_sid, to_an_agents_number=flat.get("To") in settings.routing.agents_numbers):
            # The agents' number has a status callback URL (the README says to give it none): an
            # agent's call that took a caller from the queue is not a call to the help desk.
            log.warning("status callback for call %s, an agent's own call: journalled, not counted as a call; give "
                        "the agents' number no status callback URL", call_sid)
            return bool(sql.new_event.execute(connection, row).rowcount)
        locked = _lock_call(connection, sql, call_sid)
        if locked.removed:
            # `helpdesk anonymise` took this call's personal data and blanked its events, so the
            # journal no longer says what its record was made of (a voicemail's address, the
            # caller's number, the agent's phone): keep the record as it is, and this event as the
            # others, without the person (a redelivery of an old one is not recognised as one).
            from helpdesk.blanked_events import ANONYMISED, blanked

            row = {**row, "params": blanked(row["params"]), "fingerprint": ANONYMISED + uuid.uuid4().hex}
            sql.new_event.execute(connection, row)
            return True
        inserted = sql.new_event.execute(connection, row).rowcount
        if not inserted:
            log.debug("redelivered %s webhook for call %s ignored", kind, call_sid)
        elif can_change_record(kind, flat, locked.projected):
            _refresh(connection, sql, settings, locked, call_sid, now=received_at)
    return bool(inserted)


def _an_agents_call(connection: Connection, call_sid: str, *, to_an_agents_number: bool = False) -> bool:
    """Queue mode: whether the call is an agent's rather than a caller's: it requested the agents'
    Voice URL (AGENT_DEQUEUE, journalled under its own SID); or it was made to one of
    routing.agents_numbers (`to_an_agents_number`) and the app never heard it come in as a
    caller's, so an agent's call whose Voice URL request was lost (the app could not be reached)
    is not counted either."""
    kinds = (AGENT_DEQUEUE, *CALLERS_KINDS) if to_an_agents_number else (AGENT_DEQUEUE,)
    heard = set(connection.scalars(select(EVENTS.c.kind).distinct().where(EVENTS.c.call_sid == call_sid,
                                                                          EVENTS.c.kind.in_(kinds))))
    return AGENT_DEQUEUE in heard or (to_an_agents_number and not heard)


def record_unheard_call(
    connection: Connection,
    settings: Settings,
    *,
    call_sid: str,
    events: Sequence[tuple[str, str, Sequence[tuple[str, str]]]],
    received_at: datetime,
) -> str:
    """Journal the events (kind, path, params) of a call the app never heard of, found in
    Twilio's call log (helpdesk/voice/missed.py), and project it: all in one transaction, and
    only if the journal still holds no event of the call once its row is locked. Returns
    "stored"; or, storing nothing, "found" if another process stored it from the log meanwhile
    (an API_LOG event), "heard" if a webhook was (replayed from a spool, say).
    """
    with connection.begin():
        sql = _statements(connection.dialect)
        locked = _lock_call(connection, sql, call_sid)
        kinds = set(connection.scalars(select(EVENTS.c.kind).distinct().where(EVENTS.c.call_sid == call_sid)))
        if kinds:
            return "found" if API_LOG in kinds else "heard"
        for kind, path, params in events:
            row = _event_row(kind, path, params, received_at, call_sid, None, None)
            sql.new_event.execute(connection, row)
        _refresh(connection, sql, settings, locked, call_sid, now=received_at)
    return "stored"


def journal_only(
    connection: Connection,
    *,
    kind: str,
    path: str,
    params: Sequence[tuple[str, str]],
    received_at: datetime,
    call_sid: str,
    idempotency_token: str | None = None,
    decision: str | None = None,
) -> bool:
    """Journal a webhook that is not about an inbound call (e.g. a placed callback's legs).

    Stored as received under `call_sid`, with no call record. Returns whether it was new.
    """
    row = _event_row(kind, path, params, received_at, call_sid, idempotency_token, decision)
    with connection.begin():
        return bool(_statements(connection.dialect).new_event.execute(connection, row).rowcount)


def _event_row(kind, path, params, received_at, call_sid, idempotency_token, decision) -> dict:
    return {
        "received_at": received_at,
        "kind": kind,
        "call_sid": call_sid,
        "leg_sid": dict(params)["CallSid"],
        "fingerprint": fingerprint(path, params),
        "idempotency_token": idempotency_token,
        "params": json.dumps(list(params), ensure_ascii=False),
        "decision": decision,
    }


# The record's fields that are columns of its row (a shallow copy: asdict() deep-copies).
_RECORD_COLUMNS = tuple(field.name for field in fields(CallRecord) if field.name != "call_sid")
_UPDATED = _RECORD_COLUMNS + ("config_version", "enquiry_id")
_NEW_CALL = ("call_sid", "outcome", "in_hours", "countable", "caller_type", "incoming_seen")
_EVENT_COLUMNS = ("received_at", "kind", "call_sid", "leg_sid", "fingerprint", "idempotency_token", "params",
                  "decision")


class _Locked(NamedTuple):
    """The call row as it was when its lock was taken."""

    id: int
    enquiry_id: int | None
    projected: bool  # its incoming request has been seen and projected
    state: tuple[str, bool, str]  # outcome, whether the call had ended, and its caller type
    arrived_at: datetime | None
    removed: bool  # its personal data was removed (helpdesk/retention.py)


def _lock_call(connection: Connection, sql, call_sid: str) -> _Locked:
    # Every event for one call takes the call row's lock first, so two webhooks for the
    # same call recompute one after the other and the later one sees both events.
    rows = sql.lock_call.rows(connection, {"sid": call_sid})
    if not rows:
        sql.new_call.execute(connection, {"call_sid": call_sid, "outcome": "in_progress", "in_hours": True,
                                          "countable": False, "caller_type": "unknown", "incoming_seen": False})
        rows = sql.lock_call.rows(connection, {"sid": call_sid})
    (call_id, enquiry_id, incoming_seen, outcome, ended_at, caller_type, arrived_at, number), = rows
    # A call row made just now has never been projected: its first event must be.
    return _Locked(call_id, enquiry_id, bool(incoming_seen) and enquiry_id is not None,
                   (outcome, ended_at is not None, caller_type), arrived_at, number in REMOVED_NUMBERS)


def load_events(connection: Connection, call_sid: str) -> list[Event]:
    rows = _statements(connection.dialect).events.rows(connection, {"sid": call_sid})
    return [Event(kind, received_at, dict(json.loads(params)), decision) for kind, received_at, params, decision in rows]


def dequeued_by(connection: Connection, events: Sequence[Event]) -> dict[str, str]:
    """Queue mode: for each agent's call that took this caller from the queue (a dequeue's
    DequeingCallSid), what it came from: the `From` of its request to the agents' Voice URL
    (AGENT_DEQUEUE, journalled under its own SID), their phone or Client identity. Nothing to
    read for a call that was never dequeued."""
    agents = {event.params["DequeingCallSid"] for event in events
              if event.kind in DEQUEUE_KINDS and event.params.get("DequeingCallSid")}
    if not agents:
        return {}
    found: dict[str, str] = {}
    for agent, params in connection.execute(
            select(EVENTS.c.call_sid, EVENTS.c.params).where(EVENTS.c.kind == AGENT_DEQUEUE,
                                                             EVENTS.c.call_sid.in_(sorted(agents)))
            .order_by(EVENTS.c.id)):
        came_from = dict(json.loads(params)).get("From", "").strip()
        # Blanked (anonymised): empty, or only the address's kind ("sip:", helpdesk.blanked_events).
        if came_from and not is_withheld(came_from) and not came_from.endswith(":"):
            found.setdefault(agent, came_from)
    return found


def _refresh(connection, sql, settings, locked: _Locked, call_sid, now) -> None:
    events = load_events(connection, call_sid)
    record = project_call(call_sid, events, call_rules(settings), now=now, dequeued_by=dequeued_by(connection, events))
    values = {name: getattr(record, name) for name in _RECORD_COLUMNS}
    enquiry_id = locked.enquiry_id
    if enquiry_id is None:
        enquiry_id = open_phone_enquiry(connection, call_sid, record.arrived_at)
    values.update(_id=locked.id, config_version=settings.version, enquiry_id=enquiry_id)
    sql.update_call.execute(connection, values)
    # A callback is owed once a missed call has ended, and follows its outcome and caller type
    # (the menu's choice may be stored after the call's end); one owed earlier is withdrawn if
    # the call turns out to have been answered. Nothing else changes it, so skip the work.
    state = (record.outcome, record.ended_at is not None, record.caller_type)
    owed_before = locked.state[1] and locked.state[0] in MISSED_OUTCOMES
    owed_now = state[1] and record.outcome in MISSED_OUTCOMES
    if (owed_now and state != locked.state) or (owed_before and record.outcome == "answered"):
        owe_for_missed_call(connection, settings, call_sid=call_sid, enquiry_id=enquiry_id, outcome=record.outcome,
                            caller_number=record.caller_number, caller_type=record.caller_type,
                            arrived_at=record.arrived_at, now=now)
    if (locked.enquiry_id is not None and None not in (locked.arrived_at, record.arrived_at)
            and record.arrived_at != locked.arrived_at):
        # The arrival was estimated from an earlier event (a status callback before the incoming
        # request): what was opened and owed from it moves with it.
        arrival_moved(connection, settings, call_sid=call_sid, enquiry_id=enquiry_id, arrived_at=record.arrived_at)
