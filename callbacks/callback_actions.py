"""The agents' actions on a callback in the queue: claim, release, call back now, log an attempt, close."""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

from flask import abort, current_app, request, url_for
from flask_login import current_user

from callbacks import claims, owed, queue, service
from callbacks.blueprint import MAX_NOTE, ROLES, act, bp, filter_asked, form_note, page_args, say
from callbacks.telephony import TelephonyError
from helpdesk.clock import LONDON, REPEATED, SKIPPED, uk_time_problem
from helpdesk.pages import format as fmt
from helpdesk.pages.access import role_required
from helpdesk.voice.recovery import describe
from helpdesk.web import clock, database, settings

log = logging.getLogger(__name__)

_LOCAL_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2})(:[0-9]{2}(\.[0-9]+)?)?")
NO_PHONE = ("Your phone is not set, so the help desk cannot ring you. "
            "Ask an administrator to set your phone: a number, or your desk phone's SIP address.")


@bp.post("/queue/<id:callback_id>/claim")
@role_required(*ROLES)
def claim(callback_id: int):
    def take(session):
        claims.claim(session, callback_id, current_user.id, clock())

    if filter_asked() != "free":
        return act(callback_id, take, "You have claimed {reference}.")
    # Claimed from "Not claimed", it leaves that list: say where it is now, with a way to it.
    return act(callback_id, take, "You have claimed {reference}. It is now under “Claimed by you”.",
               link=url_for("agents.queue", **page_args(only="mine")) + f"#callback-{callback_id}",
               link_text="Go to it")


@bp.post("/queue/<id:callback_id>/release")
@role_required(*ROLES)
def release(callback_id: int):
    # A manager may give back anyone's claim (an agent who went home holding it).
    anyones = request.form.get("anyones") == "1" and current_user.has_role("manager")
    return act(callback_id, lambda s: claims.release(s, callback_id, current_user.id, anyones=anyones),
               "You have released {reference}; another agent can take it.")


@bp.post("/queue/<id:callback_id>/call")
@role_required(*ROLES)
def call_back(callback_id: int):
    """Ring the agent's phone through Twilio; Twilio then dials the caller. Logged as an attempt."""
    with database().session() as session:
        if not queue.reference_of(session, callback_id=callback_id):
            abort(404)  # as for every other action on a callback that does not exist
        found = queue.callback_to_dial(session, callback_id)
    at = f"callback-{callback_id}"
    if found is None:
        return say(at, "This callback is no longer open.", "error")
    phone = (current_user.phone or "").strip()
    if not phone:
        return say(at, NO_PHONE, "error")
    reference, number = found
    if fmt.is_withheld(number):
        return say(at, "The caller withheld their number, so this callback cannot be dialled.", "error")
    try:  # refused if another agent holds the callback, or a call for it is under way
        with database().session() as session:
            attempt_id = service.start_call(session, callback_id=callback_id, agent_id=current_user.id, now=clock())
    except owed.CallbackError as refusal:
        return say(at, str(refusal), "error")
    telephony = current_app.extensions["helpdesk.telephony"]
    try:
        placed = telephony.place_callback(agent_phone=phone, caller_number=number, callback_id=callback_id)
    except TelephonyError as failure:
        try:
            with database().session() as session:
                service.call_not_placed(session, attempt_id=attempt_id)
        except Exception as error:  # it stays "placing", and stops another call for two minutes
            log.error("callback %s: attempt %s not placed, and not removed: %s", callback_id, attempt_id,
                      describe(error))
        return say(at, failure.message, "error")
    try:
        with database().session() as session:
            service.call_placed(session, attempt_id=attempt_id, call_sid=placed.call_sid)
    except Exception as error:  # the phone is ringing already: say so, rather than fail the page
        log.error("callback %s: call %s placed but not recorded: %s", callback_id, placed.call_sid, describe(error))
        return say(at, f"The call was placed (Twilio call {placed.call_sid}) but could not be recorded. "
                   "Log the attempt by hand.", "error")
    log.info("callback %s: agent %s placed call %s", callback_id, current_user.id, placed.call_sid)
    return say(at, f"Ringing your phone for {reference}. Answer it and press 1 to be connected to the caller. "
                   "It counts as an attempt once the caller is dialled.")


def _started_at(text: str, now: datetime) -> datetime:
    """A UK date and time from the form (as <input type=datetime-local> sends it), in UTC.

    A time given to the minute may be any moment in that minute, so it is read as the minute's
    last second: an attempt at "13:00" never meets a 13:00:10 deadline it may have missed.
    In the current minute that is read as now, so an attempt just made is never in the future.
    """
    match = _LOCAL_TIME.fullmatch(text.strip())
    if not match:
        raise owed.CallbackError("Enter when you called as a date and time, for example 2026-11-24 14:05.")
    try:
        naive = datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}{match.group(3) or ''}")
    except ValueError:
        raise owed.CallbackError(f"“{text.strip()}” is not a date and time that exists.") from None
    problem = uk_time_problem(naive)
    if problem == SKIPPED:
        # 01:30 on the last Sunday of March: the clocks went from 01:00 straight to 02:00.
        raise owed.CallbackError(f"“{text.strip()}” {problem}.")
    moment = naive.replace(tzinfo=LONDON).astimezone(timezone.utc)
    second_pass = naive.replace(minute=0, second=0, microsecond=0, tzinfo=LONDON, fold=1).astimezone(timezone.utc)
    if problem == REPEATED and now >= second_pass:
        # 01:30 on the last Sunday of October happened twice: read it as the second, which can
        # never make an attempt look earlier than it was; but while the clocks have not yet
        # gone back (the first pass), the time written can only be the first.
        moment = naive.replace(tzinfo=LONDON, fold=1).astimezone(timezone.utc)
    if match.group(3):
        return moment
    if moment <= now < moment + timedelta(minutes=1):
        return now
    return moment + timedelta(seconds=59)


@bp.post("/queue/<id:callback_id>/attempts")
@role_required(*ROLES)
def log_attempt(callback_id: int):
    """An attempt the agent made by hand (their own phone), with what happened."""
    outcome = request.form.get("outcome", "")

    def add(session):
        if outcome not in queue.ATTEMPT_OUTCOMES:
            raise owed.CallbackError("Choose what happened on the call.")
        attempt, corrected = service.add_attempt(
            session, settings(), callback_id=callback_id, agent_id=current_user.id,
            started_at=_started_at(request.form.get("started_at", ""), clock()), source="manual", outcome=outcome,
            now=clock(), note=form_note())
        callback = attempt.callback
        if corrected:
            return "It was made in time, so the breach recorded for {reference} is corrected to met."
        if callback.status == "closed" and callback.closed_at == attempt.recorded_at:
            return (f"That was attempt {callback.attempts_count} of {settings().callback.max_attempts}, the last, so "
                    "{reference} is closed as unreachable.")
        return None

    label = queue.ATTEMPT_OUTCOMES.get(outcome, "").lower()
    typed = {"panel": "attempt", "started_at": request.form.get("started_at", "")[:32], "outcome": outcome[:32],
             "note": request.form.get("note", "")[:MAX_NOTE * 2]}
    return act(callback_id, add, "Attempt logged for {reference}: " + label + ".", typed,
               **_earlier_attempt(callback_id))


def _earlier_attempt(callback_id: int) -> dict[str, str]:
    """For what an action says once the callback has closed (it has left the list): where an
    attempt made before it closed, but not yet logged, can still be (service.add_attempt)."""
    return {"earlier": url_for("agents.log_attempt", callback_id=callback_id, **page_args())}


@bp.post("/queue/<id:callback_id>/close")
@role_required(*ROLES)
def close(callback_id: int):
    outcome = request.form.get("outcome", "")
    label = queue.CLOSING.get(outcome, ("",))[0].lower()
    typed = {"panel": "close", "outcome": outcome[:32], "note": request.form.get("note", "")[:MAX_NOTE * 2]}
    return act(callback_id, lambda s: service.close(s, callback_id=callback_id, agent_id=current_user.id,
                                                    outcome=outcome, now=clock(), note=form_note()),
               "{reference} is closed as " + label + ".", typed,
               **(_earlier_attempt(callback_id) if outcome in service.CLOSED_AFTER_TRYING else {}))
