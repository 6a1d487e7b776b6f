"""Store each accepted webhook once, as received, and recompute the call's record."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import datetime
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.config import Settings
from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.enquiries import open_phone_enquiry
from helpdesk.models import Call, TwilioEvent
from helpdesk.voice.projection import CallRules, Event, project_call

log = logging.getLogger(__name__)

# Agent legs report under their own CallSid; they belong to the inbound (parent) call.
_CHILD_KINDS = {"agent_status"}


def fingerprint(path: str, params: Sequence[tuple[str, str]]) -> str:
    """The same webhook delivered twice has the same fingerprint."""
    canonical = json.dumps([path, sorted(params)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def owning_call_sid(kind: str, params: dict[str, str]) -> str:
    if kind in _CHILD_KINDS and params.get("ParentCallSid"):
        return params["ParentCallSid"]
    return params["CallSid"]


def call_rules(settings: Settings) -> CallRules:
    return CallRules(
        ring_period_seconds=settings.ring_period_seconds,
        target_seconds=settings.answer_target_seconds,
        dwp_numbers=settings.dwp_numbers,
        dwp_digit=settings.ivr.dwp_digit,
        customer_digit=settings.ivr.customer_digit,
        is_open=settings.calendar.is_open,
    )


def record_event(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    path: str,
    params: Sequence[tuple[str, str]],
    received_at: datetime,
    idempotency_token: str | None = None,
    decision: str | None = None,
) -> tuple[Call, bool]:
    """Journal one webhook and bring its call's record up to date.

    Returns the call and whether the event was new (False for a redelivery). Owns the
    transaction: on any error nothing is stored.
    """
    flat = dict(params)
    call_sid = owning_call_sid(kind, flat)
    with session.begin():
        call = _lock_call(session, call_sid)
        inserted = session.execute(
            insert_ignoring_conflicts(
                session,
                TwilioEvent,
                {
                    "received_at": received_at,
                    "kind": kind,
                    "call_sid": call_sid,
                    "leg_sid": flat["CallSid"],
                    "fingerprint": fingerprint(path, params),
                    "idempotency_token": idempotency_token,
                    "params": json.dumps(list(params), ensure_ascii=False),
                    "decision": decision,
                },
            )
        ).rowcount
        if inserted:
            refresh_call(session, settings, call, now=received_at)
        else:
            log.info("duplicate %s webhook for call %s ignored", kind, call_sid)
    return call, bool(inserted)


def _lock_call(session: Session, call_sid: str) -> Call:
    # Every event for one call takes the call row's lock first, so two webhooks for the
    # same call recompute one after the other and the later one sees both events.
    session.execute(insert_ignoring_conflicts(session, Call, {"call_sid": call_sid, "outcome": "in_progress"}))
    return session.scalars(select(Call).where(Call.call_sid == call_sid).with_for_update(of=Call)).one()


def load_events(session: Session, call_sid: str) -> list[Event]:
    rows = session.execute(
        select(TwilioEvent.kind, TwilioEvent.received_at, TwilioEvent.params, TwilioEvent.decision)
        .where(TwilioEvent.call_sid == call_sid)
        .order_by(TwilioEvent.id)
    )
    return [Event(kind, received_at, dict(json.loads(params)), decision) for kind, received_at, params, decision in rows]


def refresh_call(session: Session, settings: Settings, call: Call, now: datetime) -> Call:
    """Recompute `call` from every event stored for it."""
    events = load_events(session, call.call_sid)
    record = project_call(call.call_sid, events, call_rules(settings), now=now)
    for name, value in asdict(record).items():
        setattr(call, name, value)
    call.config_version = settings.version
    if call.enquiry_id is None:
        call.enquiry_id = open_phone_enquiry(session, call.call_sid, record.arrived_at).id
    return call
