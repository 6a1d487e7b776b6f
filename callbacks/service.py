"""Changes to callbacks. Each public function owns its transaction."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from callbacks.deadlines import callback_deadline, next_attempt_at
from helpdesk.clock import local
from helpdesk.dbutil import dialect_insert, dialect_name
from helpdesk.models import AuditEntry, Call, Callback, CallbackAttempt, CallbackNotice, Enquiry, User
from helpdesk.models.callback import CLOSING_OUTCOMES
from helpdesk.phones import international, is_withheld
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

MISSED_OUTCOMES = ("abandoned", "no_answer", "voicemail", "out_of_hours", "failed")
ATTEMPT_OUTCOMES = ("reached", "no_answer", "busy", "failed", "voicemail_left")
# What a "Call back now" leg's final status says about the attempt (the caller's leg "completed" was answered).
LEG_ENDED = {"busy": "busy", "no-answer": "no_answer", "failed": "failed", "canceled": "no_answer"}
# The agent's leg: it ending, even "completed", before the caller was dialled is a miss.
AGENT_LEG_ENDED = {**LEG_ENDED, "completed": "no_answer"}
# A "Call back now" call still "placing" after this is taken to have ended unheard of: the
# agent's phone rings for 60 s, the prompt waits 10 s, then the caller's phone rings.
CALL_UNDER_WAY = timedelta(minutes=2)
# The audit log's action for a recorded breach corrected to met (metrics.history watches for it).
BREACH_CORRECTED = "callback.breach_corrected"
# An agent recorded that an enquiry needs a callback (the callback itself does not say who).
CALLBACK_NEEDED = "callback.needed"
# Two attempts by hand closer than this are one attempt entered twice.
SAME_ATTEMPT = timedelta(minutes=1)


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
    then, and its untouched, undecided missed-call callback is owed from then (a new deadline),
    unless a warning has gone out naming the old one. The reference keeps its year: it may have
    been shown already."""
    executor.execute(update(Enquiry).where(Enquiry.id == enquiry_id, Enquiry.channel == "phone")
                     .values(opened_at=arrived_at))
    deadline = _deadline(settings, arrived_at)
    executor.execute(
        update(Callback)
        .where(Callback.contact_key == f"call:{call_sid}", Callback.reason != "not_concluded",
               Callback.status == "open", Callback.attempts_count == 0, Callback.sla_result.is_(None),
               Callback.owed_from != arrived_at,
               ~select(CallbackNotice.id).where(CallbackNotice.callback_id == Callback.id).exists())
        .values(owed_from=arrived_at, due_at=deadline.due_at, clock=deadline.clock,
                explanation=json.dumps(deadline.explanation), config_version=settings.version))


@cache
def _owe_statement(dialect: str):
    """Owe the callback once; if it is owed already, untouched, for a missed call whose outcome
    later events changed (no answer, then the caller's voicemail), give it the call's outcome as
    its reason, and the caller type the call now has. Built once per dialect: this runs inside
    the webhook's transaction."""
    insert = dialect_insert(dialect)(Callback.__table__)
    table, new = Callback.__table__.c, insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["contact_key"], set_={"reason": new.reason, "caller_type": new.caller_type},
        where=(table.status == "open") & (table.attempts_count == 0) & (table.reason != "not_concluded")
        & ((table.reason != new.reason) | (table.caller_type != new.caller_type)))


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
    record_audit(session, agent_id, now, CALLBACK_NEEDED, {"enquiry": enquiry.reference, "callback_id": callback.id})
    return callback


def record_not_concluded(session: Session, settings: Settings, *, call_sid: str, agent_id: int, now: datetime,
                         note: str = "", number: str | None = None) -> Callback:
    """An agent says an answered call's enquiry could not be concluded: a callback is owed."""
    with session.begin():
        call, enquiry = _answered_call_and_enquiry(session, call_sid)
        number = dialable(number or "") or call.caller_number
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
    """An agent says an answered call's enquiry was concluded on the call."""
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
        record_audit(session, agent_id, now, "enquiry.concluded_undone", {
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


def claim(session: Session, callback_id: int, agent_id: int, now: datetime) -> None:
    """Take a callback; only one agent can hold it, the second is told who has it."""
    with session.begin():
        taken = session.execute(
            update(Callback)
            .where(Callback.id == callback_id, Callback.status == "open",
                   (Callback.claimed_by_id.is_(None)) | (Callback.claimed_by_id == agent_id))
            .values(claimed_by_id=agent_id, claimed_at=now)
        ).rowcount
        if not taken:
            callback = session.get(Callback, callback_id)
            if callback is None or callback.status != "open":
                raise CallbackError("This callback is no longer open.")
            holder = callback.claimed_by.display_name or callback.claimed_by.username
            raise CallbackError(f"{holder} has already claimed this callback.")


def release(session: Session, callback_id: int, agent_id: int, *, anyones: bool = False) -> None:
    """Give a claimed callback back to the queue: one's own, or (`anyones`, for managers) anyone's,
    so a callback is never stuck with an agent who has gone home."""
    with session.begin():
        holder = (Callback.claimed_by_id.is_not(None)) if anyones else (Callback.claimed_by_id == agent_id)
        if not _unclaim(session, Callback.id == callback_id, holder):
            callback = session.get(Callback, callback_id)
            if callback is None or callback.status != "open":
                raise CallbackError("This callback is no longer open.")
            raise CallbackError("Nobody holds this callback now." if anyones else "You have not claimed this callback.")
    log.info("callback %s released by user %s", callback_id, agent_id)


def release_all(session: Session, agent_id: int) -> int:
    """Give back every open callback `agent_id` holds (they were deactivated); how many."""
    return _unclaim(session, Callback.claimed_by_id == agent_id)


def _unclaim(session: Session, *which) -> int:
    """Clear the claim on the open callbacks `which` selects; how many there were."""
    return session.execute(
        update(Callback).where(Callback.status == "open", *which).values(claimed_by_id=None, claimed_at=None)
    ).rowcount


# Closed by the agents after calling: an attempt made before it closed may still be logged.
CLOSED_AFTER_TRYING = ("unreachable", "resolved")


def _open_for(session: Session, callback_id: int, agent_id: int) -> Callback:
    callback = session.get(Callback, callback_id, with_for_update=True)
    if callback is None or callback.status != "open":
        raise CallbackError("This callback is no longer open.")
    if callback.claimed_by_id not in (None, agent_id):
        holder = callback.claimed_by.display_name or callback.claimed_by.username
        raise CallbackError(f"{holder} has claimed this callback.")
    return callback


def add_attempt(session: Session, settings: Settings, *, callback_id: int, agent_id: int, started_at: datetime,
                source: str, outcome: str, now: datetime, call_sid: str | None = None,
                note: str = "") -> tuple[CallbackAttempt, bool]:
    """Record an attempt the agent made and entered: it rang the caller when it started. Returns
    it, and whether it corrected a breach already recorded (see `_dialled`).

    "Call back now" records its attempts with `start_call` and `call_placed` instead.
    """
    if outcome not in ATTEMPT_OUTCOMES:
        raise CallbackError("Choose what happened on the call.")
    if started_at > now + timedelta(minutes=1):
        raise CallbackError("An attempt cannot be in the future.")
    with session.begin():
        callback = session.get(Callback, callback_id, with_for_update=True)
        # Closed as unreachable (at the last attempt logged) or resolved, and this one made before
        # that, entered after: the agent logged their calls out of order. It still counts, and may
        # correct a breach, but the callback stays closed as it was.
        earlier = callback is not None and callback.status == "closed" and callback.outcome in CLOSED_AFTER_TRYING
        if earlier and started_at > callback.closed_at:
            raise CallbackError(f"This callback was closed at {local(callback.closed_at):%H:%M on %d %B}: only an "
                                "attempt made before then can still be logged.")
        if not earlier:
            callback = _open_for(session, callback_id, agent_id)
        if started_at < callback.owed_from:
            raise CallbackError("An attempt cannot be before the callback was owed.")

        def near(moment):
            return (moment > started_at - SAME_ATTEMPT) & (moment < started_at + SAME_ATTEMPT)

        # The form sent twice (a double click, the back button), or a "Call back now" call that
        # dialled the caller logged again by hand: the same call, which must not count twice.
        recorded = session.execute(select(CallbackAttempt.source, CallbackAttempt.started_at, CallbackAttempt.dialled_at)
                                   .where(CallbackAttempt.callback_id == callback.id,
                                          ((CallbackAttempt.source == source) & near(CallbackAttempt.started_at))
                                          | ((CallbackAttempt.source != source) & near(CallbackAttempt.dialled_at)))
                                   .limit(1)).first()
        if recorded is not None and recorded.source == source:
            raise CallbackError(f"An attempt at {local(recorded.started_at):%H:%M} is already recorded for this "
                                "callback.")
        if recorded is not None:
            raise CallbackError(f"“Call back now” dialled the caller at {local(recorded.dialled_at):%H:%M}: that call is "
                                "already recorded for this callback.")
        attempt = CallbackAttempt(callback_id=callback.id, started_at=started_at, source=source, call_sid=call_sid,
                                  agent_id=agent_id, outcome=outcome, note=note.strip(), recorded_at=now)
        session.add(attempt)
        callback.claimed_by_id = callback.claimed_by_id or agent_id
        session.flush()  # the attempt's id, for the audit log
        corrected = _dialled(session, callback, attempt, started_at, now)
        if not earlier:
            _after_outcome(callback, settings, attempt, now)
        elif outcome == "reached":
            callback.reached_at = min(filter(None, (callback.reached_at, started_at)))
    return attempt, corrected


def _record_correction(session: Session, callback: Callback, attempt: CallbackAttempt, now: datetime) -> None:
    """A recorded breach turned out met: say so in the audit log. That is also what tells the
    metrics, which keep decided callbacks' counts, to count again."""
    record_audit(session, attempt.agent_id, now, BREACH_CORRECTED, {
        "callback_id": callback.id, "attempt_id": attempt.id, "due_at": callback.due_at.isoformat(),
        "breach_recorded_at": callback.breached_at.isoformat() if callback.breached_at else None,
        "attempt_dialled_at": attempt.dialled_at.isoformat(), "entered_at": now.isoformat(),
    })
    log.info("callback %s: an attempt made before its deadline was entered after it: the breach is now met",
             callback.id)


def start_call(session: Session, *, callback_id: int, agent_id: int, now: datetime) -> int:
    """Record a "Call back now" attempt before Twilio is asked to place it; returns its id.

    One call at a time per callback: while one is under way (a double click, a second tab),
    another is refused, so the agent's phone is not rung twice. The attempt rings the agent
    first, and counts only once the caller is dialled (`dial_attempt`), which may never happen.
    """
    with session.begin():
        callback = _open_for(session, callback_id, agent_id)
        under_way = session.scalar(select(CallbackAttempt.id).where(
            CallbackAttempt.callback_id == callback.id, CallbackAttempt.outcome == "placing",
            CallbackAttempt.started_at > now - CALL_UNDER_WAY).limit(1))
        if under_way is not None:
            raise CallbackError("A call for this callback is already under way. Answer your phone, or wait "
                                "two minutes and try again.")
        attempt = CallbackAttempt(callback_id=callback.id, started_at=now, source="twilio", agent_id=agent_id,
                                  outcome="placing", note="", recorded_at=now)
        session.add(attempt)
        session.flush()
        return attempt.id


def call_placed(session: Session, *, attempt_id: int, call_sid: str) -> None:
    """Twilio placed the call `start_call` recorded: its CallSid ties Twilio's webhooks to it.

    Placing a call claims the callback for its agent, if nobody has claimed it meanwhile.
    """
    with session.begin():
        attempt = session.get(CallbackAttempt, attempt_id)
        attempt.call_sid = call_sid
        callback = session.get(Callback, attempt.callback_id, with_for_update=True)
        callback.claimed_by_id = callback.claimed_by_id or attempt.agent_id


def call_not_placed(session: Session, *, attempt_id: int) -> None:
    """Twilio did not place the call `start_call` recorded: nothing happened, so nothing is kept."""
    with session.begin():
        session.execute(delete(CallbackAttempt).where(CallbackAttempt.id == attempt_id,
                                                      CallbackAttempt.call_sid.is_(None)))


def dial_attempt(session: Session, *, callback_id: int, call_sid: str, now: datetime) -> str | None:
    """The agent answered a "Call back now" call (`call_sid`) and pressed 1: the caller is dialled now.

    Records the attempt as dialled, which is when it counts, and returns the number to dial:
    None if the callback is closed or unknown. Twilio should dial only once this has been
    stored, so every attempt the three-hour rule counts is one that rang the caller. A
    second request for the same call (Twilio retrying) changes nothing.
    """
    with session.begin():
        callback = session.get(Callback, callback_id, with_for_update=True)
        if callback is None or callback.status != "open":
            return None
        attempt = session.scalars(select(CallbackAttempt).where(
            CallbackAttempt.call_sid == call_sid, CallbackAttempt.callback_id == callback_id)).one_or_none()
        if attempt is None:
            # "Call back now" placed the call but could not record it; the agent was asked to log it.
            log.warning("callback %s: call %s is not a recorded attempt, so its dial is not counted", callback_id,
                        call_sid)
        elif attempt.dialled_at is None and not is_withheld(callback.caller_number):
            _dialled(session, callback, attempt, now, now)
        return callback.caller_number


def finish_attempt(session: Session, settings: Settings, *, call_sid: str, outcome: str, now: datetime,
                   answered_at: datetime | None = None) -> None:
    """A Twilio-placed attempt ended (from its status callbacks)."""
    with session.begin():
        attempt = session.scalars(select(CallbackAttempt).where(CallbackAttempt.call_sid == call_sid)).one_or_none()
        if attempt is None:
            return
        callback = session.get(Callback, attempt.callback_id, with_for_update=True)
        if outcome == "reached" and attempt.dialled_at is None:
            # Only a dialled caller can answer, but if the dial was not recorded, count it as late as it can be.
            _dialled(session, callback, attempt, answered_at or now, now)
        if attempt.outcome == "placing" and attempt.dialled_at is None:
            # The agent's leg ended before the caller was dialled: not an attempt to call them back.
            attempt.outcome, attempt.ended_at = "not_dialled", now
        elif attempt.outcome == "placing":
            attempt.outcome, attempt.ended_at, attempt.answered_at = outcome, now, answered_at
            if callback.status == "open":
                _after_outcome(callback, settings, attempt, now)
        elif outcome == "reached" and attempt.outcome != "reached":
            # The caller leg's answer arrived after the agent leg's end (callbacks are not
            # ordered): the caller was reached after all, so undo the miss.
            attempt.outcome, attempt.answered_at = "reached", answered_at or attempt.answered_at
            if callback.outcome == "unreachable":
                callback.status, callback.outcome, callback.closed_at, callback.closed_by_id = "open", None, None, None
            if callback.status == "open":
                _after_outcome(callback, settings, attempt, now)


def _dialled(session: Session, callback: Callback, attempt: CallbackAttempt, when: datetime, now: datetime) -> bool:
    """The attempt rang the caller at `when`: it counts, and may meet the three-hour rule.

    True when this attempt corrects a breach already recorded: made in time, entered after the
    deadline passed (the agent called at 12:55 and logged it at 13:10); the audit log says so.
    A result an earlier version recorded is otherwise left as it was decided.
    """
    attempt.dialled_at = when
    callback.attempts_count += 1
    if callback.first_attempt_at is None or when < callback.first_attempt_at:
        callback.first_attempt_at = when
    if callback.sla_result != "met" and when <= callback.due_at:
        corrected = callback.sla_result == "breached"
        callback.sla_result = "met"  # breached_at stays: when the breach was recorded, for the evidence
        if corrected:
            _record_correction(session, callback, attempt, now)
        return corrected
    if callback.sla_result is None and callback.first_attempt_at > callback.due_at:
        # Decided now, not at the next sweep (which still records the breach notice): the
        # figures show it at once, even while the scheduler is down.
        callback.sla_result, callback.breached_at = "breached", callback.due_at
    return False


def _after_outcome(callback: Callback, settings: Settings, attempt: CallbackAttempt, now: datetime) -> None:
    if attempt.outcome == "reached":
        callback.reached_at = callback.reached_at or (attempt.answered_at or attempt.dialled_at)
        callback.next_attempt_at = None
        return
    # The next try is spaced from the latest attempt made, not from this one if it was entered
    # late with an earlier time.
    latest = max([a.dialled_at for a in callback.attempts if a.dialled_at is not None] + [attempt.dialled_at])
    callback.next_attempt_at = next_attempt_at(
        latest, callback.attempts_count,
        spacing_minutes=settings.callback.retry_spacing_minutes, max_attempts=settings.callback.max_attempts)
    if callback.next_attempt_at is None:
        callback.status, callback.outcome, callback.closed_at = "closed", "unreachable", now
        callback.closed_by_id = attempt.agent_id


def close(session: Session, *, callback_id: int, agent_id: int, outcome: str, now: datetime, note: str = "") -> None:
    """Close a callback as resolved or withdrawn (unreachable is reached through attempts, or here)."""
    if outcome not in CLOSING_OUTCOMES:
        raise CallbackError("Choose resolved, unreachable or withdrawn.")
    with session.begin():
        callback = _open_for(session, callback_id, agent_id)
        if outcome == "resolved" and callback.reached_at is None:
            raise CallbackError("Record the attempt that reached the caller before closing as resolved.")
        if outcome == "unreachable" and not callback.attempts_count and callback.caller_number is not None:
            # Otherwise a callback could leave the queue before its deadline with no attempt at all.
            raise CallbackError("Record the attempts that did not reach the caller before closing as unreachable.")
        if outcome == "withdrawn" and not note.strip():
            # A callback withdrawn before its deadline is not counted: the reason is the evidence.
            raise CallbackError("Say in the note why the callback is no longer needed.")
        callback.status, callback.outcome, callback.closed_at, callback.closed_by_id = "closed", outcome, now, agent_id
        if note.strip():
            callback.note = (callback.note + "\n" if callback.note else "") + note.strip()
        log.info("callback %s closed as %s", callback.id, outcome)
