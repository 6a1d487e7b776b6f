"""Agents' work on the callbacks owed (callbacks.owed): attempts by hand and by "Call back now",
and closing (claiming one is callbacks.claims). Each public function owns its transaction."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from callbacks.deadlines import next_attempt_at
from callbacks.owed import CallbackError, record_audit
from helpdesk.clock import local
from helpdesk.models import Callback, CallbackAttempt
from helpdesk.models.callback import CLOSING_OUTCOMES
from helpdesk.phones import is_withheld
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

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
# Two attempts by hand closer than this are one attempt entered twice.
SAME_ATTEMPT = timedelta(minutes=1)


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
