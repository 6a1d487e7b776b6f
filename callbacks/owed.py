"""What is owed: the conditions on callbacks that the figures, the pages and the sweep share,
and the ways a callback comes to be owed (a missed call, an agent saying an enquiry needs one)
and an answered call's enquiry is recorded. Each public function that is not "inside the
caller's transaction" owns its transaction."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from callbacks.deadlines import callback_deadline
from helpdesk.dbutil import dialect_insert, dialect_name
from helpdesk.models import AuditEntry, Call, Callback, CallbackNotice, Enquiry, User
from helpdesk.phones import REMOVED_NUMBERS, international
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

MISSED_OUTCOMES = ("abandoned", "no_answer", "voicemail", "out_of_hours", "failed")
# An agent recorded that an enquiry needs a callback (the callback itself does not say who).
CALLBACK_NEEDED = "callback.needed"
CONCLUDED, CONCLUDED_UNDONE = "enquiry.concluded", "enquiry.concluded_undone"


class CallbackError(ValueError):
    """Something an agent asked for cannot be done; the message says why, plainly."""


def never_owed():
    """A callback the app withdrew itself (nobody closed it): its call was answered after all, so it
    was never owed and never counts, whenever that came to light."""
    return (Callback.outcome == "withdrawn") & Callback.closed_by_id.is_(None)


def undecided_owed():
    """A callback still owed its decision (met or breached) at its deadline: open and undecided, or
    closed after its deadline undecided (attempted late and closed between two sweeps, or while the
    scheduler was down), but never one the app withdrew as never owed."""
    return Callback.sla_result.is_(None) & (
        (Callback.status == "open") | ((Callback.closed_at > Callback.due_at) & ~never_owed()))


def not_met():
    """A callback whose first attempt was not made in time, or not yet: undecided, or breached.
    Only these can be overdue or due soon (a met one has had its call)."""
    return Callback.sla_result.is_(None) | (Callback.sla_result != "met")


def due_soon_condition(limits: dict[str, datetime], now: datetime):
    """Not met, not yet due, and due before its clock's limit (deadlines.due_soon_limits at `now`):
    "Due soon" on the agents' page (queue._entry says the same of one callback) and in
    helpdesk_callbacks_due_soon."""
    return not_met() & (Callback.due_at >= now) & (
        ((Callback.clock == "business") & (Callback.due_at < limits["business"]))
        | ((Callback.clock != "business") & (Callback.due_at < limits["elapsed"])))


def breach_unrecorded(now: datetime):
    """Breached at `now` though the sweep has not recorded it yet (it runs every minute, or the
    scheduler is down): owed, undecided, and past its deadline. The figures count it as breached
    at once, as they do an acknowledgement still unsent past its due time."""
    return undecided_owed() & (Callback.due_at < now)


def owe_for_missed_call(executor: Session | Connection, settings: Settings, *, call_sid: str, enquiry_id: int,
                        outcome: str, caller_number: str | None, caller_type: str, arrived_at: datetime,
                        now: datetime) -> None:
    """Inside the journal's transaction: a missed call with a number is owed a callback, once.

    If later events show the call was answered after all (callbacks arrive out of order),
    an untouched automatic callback is withdrawn rather than left in the queue.
    """
    key = f"call:{call_sid}"
    if outcome == "answered":
        executor.execute(
            update(Callback)
            .where(Callback.contact_key == key, Callback.reason != "not_concluded", Callback.status == "open",
                   Callback.attempts_count == 0)
            # Never owed, so never counted: a breach the sweep recorded meanwhile goes too.
            .values(status="closed", outcome="withdrawn", closed_at=now, sla_result=None, breached_at=None,
                    note="Not owed: the call was answered (its events arrived out of order).")
        )
        return
    if outcome not in MISSED_OUTCOMES or caller_number is None:
        return
    deadline = _deadline(settings, arrived_at)
    executor.execute(_owe_statement(dialect_name(executor)), {
        "contact_key": key, "enquiry_id": enquiry_id, "call_sid": call_sid, "reason": outcome,
        "caller_number": caller_number, "caller_type": caller_type, "owed_from": arrived_at,
        "due_at": deadline.due_at, "clock": deadline.clock, "explanation": json.dumps(deadline.explanation),
        "config_version": settings.version, "created_at": now, "status": "open", "attempts_count": 0, "note": "",
    })


def arrival_moved(executor: Session | Connection, settings: Settings, *, call_sid: str, enquiry_id: int,
                  arrived_at: datetime) -> None:
    """Inside the journal's transaction: a call's arrival, first estimated from an earlier event
    (a status callback stored before the incoming request), is now known. Its enquiry was opened
    then, and its untouched, undecided callback is owed from then (a new deadline), as the clock
    starts at the contact: one owed for the missed call, or one an agent said was needed after
    answering it, and one the app withdrew as the call looked answered (it is owed again, with
    this deadline, if the call proves missed after all). Not once a warning has gone out naming
    the old deadline. The reference keeps its year: it may have been shown already."""
    executor.execute(update(Enquiry).where(Enquiry.id == enquiry_id, Enquiry.channel == "phone")
                     .values(opened_at=arrived_at))
    deadline = _deadline(settings, arrived_at)
    executor.execute(
        update(Callback)
        .where(Callback.contact_key == f"call:{call_sid}",
               (Callback.status == "open") | (Callback.outcome.is_not(None) & never_owed()),
               Callback.attempts_count == 0, Callback.sla_result.is_(None),
               Callback.owed_from != arrived_at,
               ~select(CallbackNotice.id).where(CallbackNotice.callback_id == Callback.id).exists())
        .values(owed_from=arrived_at, due_at=deadline.due_at, clock=deadline.clock,
                explanation=json.dumps(deadline.explanation), config_version=settings.version))


@cache
def _owe_statement(dialect: str):
    """Owe the callback once; if it is owed already, untouched, for a missed call whose outcome
    later events changed (no answer, then the caller's voicemail), give it the call's outcome as
    its reason, and the caller type the call now has. One the app withdrew untouched, as the
    call looked answered, is owed again (later events showed it missed after all: a screened
    call's incoming request stored after an agent leg answered by a voicemail), with its deadline
    (moved meanwhile with the call's arrival, if that was corrected: arrival_moved). Built once
    per dialect: this runs inside the webhook's transaction."""
    insert = dialect_insert(dialect)(Callback.__table__)
    table, new = Callback.__table__.c, insert.excluded
    changed = (table.reason != new.reason) | (table.caller_type != new.caller_type)
    withdrawn_by_app = (table.status == "closed") & (table.outcome == "withdrawn") & table.closed_by_id.is_(None)
    # An open untouched callback has no outcome, closing time or note: these change only a
    # withdrawn one, back to what it was.
    return insert.on_conflict_do_update(
        index_elements=["contact_key"],
        set_={"reason": new.reason, "caller_type": new.caller_type, "status": "open", "outcome": None,
              "closed_at": None, "note": ""},
        where=(table.attempts_count == 0) & (table.reason != "not_concluded")
        & (((table.status == "open") & changed) | withdrawn_by_app))


def _deadline(settings: Settings, owed_from: datetime):
    """The deadline of a callback owed from `owed_from`, on the configured clock and window."""
    return callback_deadline(owed_from, clock=settings.callback.clock,
                             within=timedelta(minutes=settings.callback.within_minutes),
                             calendar=settings.calendar, config_version=settings.version)


def dialable(typed: str) -> str | None:
    """The number an agent typed for a callback, as it is dialled; None when they typed none.
    One that cannot be rung is refused."""
    typed = typed.strip()
    number = international(typed) if typed else None
    if typed and number is None:
        raise CallbackError("That is not a phone number we can dial: enter it as, for example, 07700 900123 or "
                            "+447700900123.")
    return number


def about(note: str) -> str:
    """What a callback an agent asks for is about: it must say, for whoever calls back."""
    if not note.strip():
        raise CallbackError("Say what the callback is about, so whoever calls back knows.")
    return note.strip()


def owe_needed_callback(session: Session, settings: Settings, enquiry: Enquiry, *, key: str, call_sid: str | None,
                        reason: str, number: str | None, caller_type: str, owed_from: datetime, agent_id: int,
                        now: datetime, note: str) -> Callback:
    """Inside the caller's transaction: the callback an agent says the enquiry needs, owed from
    `owed_from`; the enquiry now waits for it, and the audit log says who asked."""
    deadline = _deadline(settings, owed_from)
    callback = Callback(
        contact_key=key, enquiry_id=enquiry.id, call_sid=call_sid, reason=reason, caller_number=number,
        caller_type=caller_type, owed_from=owed_from, due_at=deadline.due_at, clock=deadline.clock,
        explanation=json.dumps(deadline.explanation), config_version=settings.version, created_at=now, note=note,
        status="open", attempts_count=0,
    )
    session.add(callback)
    session.flush()
    enquiry.status = "callback_owed"
    if enquiry.channel == "phone":
        enquiry.outcome_recorded_at = now
    record_audit(session, agent_id, now, CALLBACK_NEEDED, {"enquiry": enquiry.reference, "callback_id": callback.id})
    return callback


def record_not_concluded(session: Session, settings: Settings, *, call_sid: str, agent_id: int, now: datetime,
                         note: str = "", number: str | None = None) -> Callback:
    """An agent says an answered call's enquiry could not be concluded: a callback is owed."""
    with session.begin():
        call, enquiry = _answered_call_and_enquiry(session, call_sid)
        # A number removed after the retention period is no number to dial: the agent types one.
        number = dialable(number or "") or (call.caller_number if call.caller_number not in REMOVED_NUMBERS else None)
        key = f"call:{call_sid}"
        existing = session.scalars(select(Callback).where(Callback.contact_key == key)).one_or_none()
        # A callback the app withdrew untouched (owed for a call that looked missed until its
        # answer arrived) stays as it was, with its notices, under a key of its own; the callback
        # owed now is a new one, as not concluded. One an agent withdrew is this contact's, done.
        reused = (existing is not None and existing.outcome == "withdrawn" and existing.closed_by_id is None
                  and not existing.attempts_count)
        if existing is not None and existing.status == "open":
            raise CallbackError(f"A callback is already owed for this call ({existing.enquiry.reference}).")
        if existing is not None and not reused:
            raise CallbackError(f"This call's callback ({existing.enquiry.reference}) is already closed as "
                                f"{existing.outcome}.")
        if enquiry.status == "concluded":  # a colleague recorded it meanwhile (as the reverse order is refused)
            raise CallbackError(f"{enquiry.reference} is already recorded as concluded on the call.")
        note = about(note)
        if reused:
            existing.contact_key = f"{key}#withdrawn-{existing.id}"
            session.flush()
        return owe_needed_callback(session, settings, enquiry, key=key, call_sid=call_sid, reason="not_concluded",
                                   number=number, caller_type=call.caller_type, owed_from=call.arrived_at,
                                   agent_id=agent_id, now=now, note=note)


# "Concluded" sits beside "Callback needed" and takes one press: the agent who pressed it may
# take it back for this long, before anyone relies on it.
UNDO_CONCLUDED = timedelta(minutes=10)


def record_concluded(session: Session, *, call_sid: str, now: datetime, agent_id: int | None = None) -> None:
    """An agent says an answered call's enquiry was concluded on the call; the audit log keeps who
    and when (from 0.27.0), as it keeps a callback needed."""
    with session.begin():
        _, enquiry = _answered_call_and_enquiry(session, call_sid)
        if enquiry.status == "callback_owed":
            raise CallbackError("A callback is already owed for this enquiry.")
        if enquiry.status != "open":
            raise CallbackError(f"This enquiry is already recorded as {enquiry.status.replace('_', ' ')}.")
        # Owed while the call looked missed, and kept open when its answer came because an agent
        # had already tried it: concluded beside it, the enquiry would say done while the queue
        # still owes the caller a call.
        if session.scalar(select(Callback.id).where(Callback.contact_key == f"call:{call_sid}",
                                                    Callback.status == "open")) is not None:
            raise CallbackError(f"This call's callback ({enquiry.reference}) is still open on the queue. Close it "
                                "there first: as withdrawn if it is no longer needed.")
        enquiry.status, enquiry.closed_at, enquiry.closed_by_id = "concluded", now, agent_id
        enquiry.outcome_recorded_at = now
        record_audit(session, agent_id, now, CONCLUDED, {"enquiry": enquiry.reference, "call_sid": call_sid})


def undo_concluded(session: Session, *, call_sid: str, agent_id: int, now: datetime) -> None:
    """Take back "Concluded" (pressed by mistake): the enquiry is open again, awaiting its outcome.
    Only the agent who recorded it, within UNDO_CONCLUDED; the audit log keeps both."""
    with session.begin():
        _, enquiry = _answered_call_and_enquiry(session, call_sid)
        if enquiry.status != "concluded":
            raise CallbackError(f"This enquiry is recorded as {enquiry.status.replace('_', ' ')}, not concluded: "
                                "there is nothing to undo.")
        if enquiry.closed_by_id != agent_id or enquiry.closed_at is None:
            raise CallbackError("Only the agent who recorded it as concluded can undo that.")
        if now - enquiry.closed_at > UNDO_CONCLUDED:
            raise CallbackError(f"It was recorded as concluded over {round(UNDO_CONCLUDED.total_seconds() / 60)} "
                                "minutes ago, so it can no longer be undone.")
        concluded_at = enquiry.closed_at
        enquiry.status, enquiry.closed_at, enquiry.closed_by_id = "open", None, None
        enquiry.outcome_recorded_at = None
        record_audit(session, agent_id, now, CONCLUDED_UNDONE, {
            "enquiry": enquiry.reference, "call_sid": call_sid, "concluded_at": concluded_at.isoformat()})


def record_audit(session: Session, agent_id: int | None, now: datetime, action: str, detail: dict) -> None:
    """An entry in the audit log by the agent (or by the help desk itself), inside the caller's transaction."""
    agent = session.get(User, agent_id) if agent_id is not None else None
    session.add(AuditEntry(at=now, user_id=agent_id, actor=agent.username if agent else "helpdesk", action=action,
                           detail=json.dumps(detail, sort_keys=True)))


def _answered_call_and_enquiry(session: Session, call_sid: str) -> tuple[Call, Enquiry]:
    """The answered call and its enquiry, the enquiry locked: two agents recording the call's
    outcome at once take turns, and the second sees what the first recorded."""
    call = _answered_call(session, call_sid)
    enquiry = session.get(Enquiry, call.enquiry_id, with_for_update=True, populate_existing=True)
    return call, enquiry


def _answered_call(session: Session, call_sid: str) -> Call:
    """The answered call an agent records the outcome of; a missed call's callback is owed by itself."""
    call = session.scalars(select(Call).where(Call.call_sid == call_sid)).one_or_none()
    if call is None or call.enquiry_id is None:
        raise CallbackError("There is no such call.")
    if call.outcome != "answered":
        raise CallbackError("This call was not answered: its callback, if one is owed, is on the queue.")
    return call
