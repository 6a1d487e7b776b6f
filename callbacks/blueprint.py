"""The agents' callback queue: the page, its live list, and one POST route per action.

Every action is a plain form (CSRF token, works without JavaScript) that calls one service
function and redirects back to the queue with a message saying what happened.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from flask import session as session_store
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from callbacks import owed, queue, service
from callbacks.email import sending, waiting
from callbacks.telephony import TelephonyError
from helpdesk.clock import LONDON, REPEATED, SKIPPED, local, uk_time_problem
from helpdesk.pages import format as fmt
from helpdesk.pages.access import role_required
from helpdesk.voice.params import is_sid
from helpdesk.voice.recovery import describe
from helpdesk.web import clock, database, settings

log = logging.getLogger(__name__)
bp = Blueprint("agents", __name__)

ROLES = ("agent", "manager")  # admins always
SHOWN, MOST_SHOWN = 200, 2000
POLL_SECONDS = 15
MAX_NOTE = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # all but tab and line ends
_SHOW = re.compile(r"[0-9]{1,5}")
_LOCAL_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2})(:[0-9]{2}(\.[0-9]+)?)?")
NO_PHONE = ("Your phone number is not set, so the help desk cannot ring you. "
            "Ask an administrator to set your phone number.")


def _shown() -> int:
    text = request.values.get("show", "")
    if not _SHOW.fullmatch(text):
        return SHOWN
    return min(max(int(text), 1), MOST_SHOWN)


def _only() -> str:
    """The filter asked for (a key of queue.FILTERS); anything else shows them all."""
    only = request.args.get("only", "")
    return only if only in queue.FILTERS else ""


def _page_args(shown: int | None = None, only: str | None = None) -> dict[str, str | int]:
    """The queue page's address arguments as shown now (none when they are the defaults), so the
    live list, the links and every action come back to the page as the agent had it."""
    shown = _shown() if shown is None else shown
    only = _only() if only is None else only
    return {**({"show": shown} if shown != SHOWN else {}), **({"only": only} if only else {})}


def _queue_context(now: datetime) -> dict:
    shown, only = _shown(), _only()
    with database().session() as session:
        view = queue.open_callbacks(session, settings(), now, limit=shown, only=only, me=current_user.id)
    page_args = _page_args(shown, only)
    return {
        "view": view, "shown": shown, "now": now, "today": local(now).date(), "queue": queue, "fmt": fmt,
        "now_input": local(now).strftime("%Y-%m-%dT%H:%M"), "me": current_user.id,
        "more_href": url_for("agents.queue", **_page_args(min(shown + SHOWN, MOST_SHOWN), only))
        if view.more and shown < MOST_SHOWN else None,
        "page_args": page_args,
        "filter_hrefs": {key: url_for("agents.queue", **_page_args(shown, key)) for key in queue.FILTERS},
        # "3 hours", and on the business clock "3 hours of opening time": a call at 16:30 is due the next day.
        "callback_window": fmt.format_minutes(settings().callback.within_minutes)
        + (" of opening time" if settings().callback.clock == "business" else ""),
    }


@bp.get("/queue", endpoint="queue")
@role_required(*ROLES)
def queue_page():
    """Open callbacks, earliest due first; answered calls awaiting an outcome; recent notices."""
    return _render_queue(session_store.pop(SAID, None))


def _render_queue(said: dict | None) -> str:
    """The queue page; `said`: what the last action said, shown where it was taken (see `_say`),
    or at the top if that has left the page, with any form values to put back."""
    now = clock()
    context = _queue_context(now) | _waiting_context(now)
    with database().session() as session:
        notices, notices_count = queue.recent_notices(session, settings(), now)
    if said is not None:
        at = said.get("at", "")
        shown_at = ({f"callback-{entry.callback.id}" for entry in context["view"].entries}
                    | {f"call-{call.call_sid}" for call in context["awaiting"]}
                    | {f"email-{email.enquiry_id}" for email in context["emails"]} | {"awaiting", "emails"})
        context.update(said=said, said_listed=at in shown_at)
    poll = current_app.config.get("QUEUE_POLL_SECONDS", POLL_SECONDS)
    return render_template("queue.html", notices=notices, notices_count=notices_count, poll_seconds=poll, **context)


def _waiting_context(now: datetime) -> dict:
    """The answered calls awaiting an outcome and the email enquiries awaiting a response, each
    with a signature that changes when what its list says changes."""
    since = queue.awaiting_since(settings(), now)
    with database().session() as session:
        awaiting, awaiting_count = queue.awaiting_outcome(session, since)
        emails, emails_count = waiting.awaiting_response(session, now)
    return {
        "awaiting": awaiting, "awaiting_count": awaiting_count, "awaiting_since": since,
        "awaiting_signature": queue.signature([awaiting_count] + [[call.call_sid, call.caller_type]
                                                                  for call in awaiting]),
        "emails": emails, "emails_count": emails_count, "ack_within": settings().email.ack_within_minutes,
        "emails_signature": queue.signature([emails_count] + [
            [email.enquiry_id, email.acknowledgement.key, email.acknowledgement.detail, email.next_attempt_at,
             email.other_senders, email.latest_email_id, email.callback_owed]
            for email in emails]),
    }


@bp.get("/queue/items")
def items():
    """The page's live parts alone (open callbacks, answered calls awaiting an outcome, email
    enquiries awaiting a response), for queue.js to swap in.

    Polled every few seconds: signed out, it answers 401 rather than sending the script to the
    sign-in page, which would also store a "Sign in" message for every poll.
    """
    if not current_user.is_authenticated:
        return Response("You have been signed out.\n", status=401, mimetype="text/plain")
    return _items()


# The live parts, by the name queue.js gives each in `have` (its root's class, less "-items").
LIVE_PARTS = ("queue", "awaiting", "emails")


def _unchanged(context: dict) -> set[str]:
    """The live parts the page already shows as they are now: queue.js sends `have`, a list of
    part:signature for the parts it would not swap unless changed, and these are left out of the
    answer (a list of hundreds of forms is the most of it). Anything else in `have` is ignored:
    every part is sent, as for a page that sent nothing."""
    have = dict(item.partition(":")[::2] for item in request.args.get("have", "")[:200].split(",") if ":" in item)
    now = {"queue": context["view"].signature, "awaiting": context["awaiting_signature"],
           "emails": context["emails_signature"]}
    return {part for part in LIVE_PARTS if have.get(part) == now[part]}


@role_required(*ROLES)
def _items():
    now = clock()
    context = {**_queue_context(now), **_waiting_context(now)}
    return render_template("queue/live.html", unchanged=_unchanged(context), **context)


# The session key for what the last action on a callback said (see _act).
SAID = "queue_said"


def _back(anchor: str):
    """Back to the queue page as it was shown (its `show` and `only`), at `anchor`."""
    return redirect(url_for("agents.queue", **_page_args()) + f"#{anchor}")


def _note() -> str:
    # Browsers send line ends as CRLF but count them as one character against maxlength.
    note = request.form.get("note", "").replace("\r\n", "\n").strip()
    if len(note) > MAX_NOTE:
        raise owed.CallbackError(f"Keep the note to {MAX_NOTE:,} characters or fewer.")
    if _CONTROL.search(note):
        # PostgreSQL cannot store a NUL, and the evidence workbook no control character.
        raise owed.CallbackError("The note has a control character in it (pasted from elsewhere?). Type it again "
                            "without it.")
    return note


def _act(callback_id: int, action, done: str, typed: dict[str, str] | None = None, **more: str):
    """Run `action(session)`; say `done` (with the reference) or the reason it was refused.

    An action may return more to say (a sentence, with the reference as `{reference}`). What
    is said is shown at the callback itself, where the agent acted, and the page opens there,
    with `more` (see `_say`); on a refusal, what they typed (`typed`: the panel and its fields)
    is put back in the form.
    """
    try:
        with database().session() as session:
            reference = queue.reference_of(session, callback_id=callback_id)
            if not reference:
                abort(404)
            said = action(session)
    except owed.CallbackError as refusal:
        # Shown at once, with what they typed still in the form (too long for a session cookie).
        return _refused(f"callback-{callback_id}", str(refusal), typed)
    text = (done + (f" {said}" if isinstance(said, str) else "")).format(reference=reference)
    return _say(f"callback-{callback_id}", text, **more)


def _say(at: str, text: str, kind: str = "success", **more: str):
    """Back to the queue, where `text` is shown at `at` ("callback-12", "call-CA...", "emails",
    "awaiting"), and the page opens there; `more`: an `undo` form's address and its `reference`,
    or a `link` and its `link_text`."""
    session_store[SAID] = {"at": at, "text": text, "kind": kind, **more}
    return _back(anchor=f"{at}-said")


def _refused(at: str, text: str, typed: dict[str, str] | None = None):
    """The queue page at once (422), saying why at `at`, with what was typed put back."""
    return _render_queue({"at": at, "text": text, "kind": "error", "typed": typed}), 422


@bp.post("/queue/<id:callback_id>/claim")
@role_required(*ROLES)
def claim(callback_id: int):
    def take(session):
        service.claim(session, callback_id, current_user.id, clock())

    if _only() != "free":
        return _act(callback_id, take, "You have claimed {reference}.")
    # Claimed from "Not claimed", it leaves that list: say where it is now, with a way to it.
    return _act(callback_id, take, "You have claimed {reference}. It is now under “Claimed by you”.",
                link=url_for("agents.queue", **_page_args(only="mine")) + f"#callback-{callback_id}",
                link_text="Go to it")


@bp.post("/queue/<id:callback_id>/release")
@role_required(*ROLES)
def release(callback_id: int):
    # A manager may give back anyone's claim (an agent who went home holding it).
    anyones = request.form.get("anyones") == "1" and current_user.has_role("manager")
    return _act(callback_id, lambda s: service.release(s, callback_id, current_user.id, anyones=anyones),
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
        return _say(at, "This callback is no longer open.", "error")
    phone = (current_user.phone or "").strip()
    if not phone:
        return _say(at, NO_PHONE, "error")
    reference, number = found
    if fmt.is_withheld(number):
        return _say(at, "The caller withheld their number, so this callback cannot be dialled.", "error")
    try:  # refused if another agent holds the callback, or a call for it is under way
        with database().session() as session:
            attempt_id = service.start_call(session, callback_id=callback_id, agent_id=current_user.id, now=clock())
    except owed.CallbackError as refusal:
        return _say(at, str(refusal), "error")
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
        return _say(at, failure.message, "error")
    try:
        with database().session() as session:
            service.call_placed(session, attempt_id=attempt_id, call_sid=placed.call_sid)
    except Exception as error:  # the phone is ringing already: say so, rather than fail the page
        log.error("callback %s: call %s placed but not recorded: %s", callback_id, placed.call_sid, describe(error))
        return _say(at, f"The call was placed (Twilio call {placed.call_sid}) but could not be recorded. "
                    "Log the attempt by hand.", "error")
    log.info("callback %s: agent %s placed call %s", callback_id, current_user.id, placed.call_sid)
    return _say(at, f"Ringing your phone for {reference}. Answer it and press 1 to be connected to the caller. "
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
            now=clock(), note=_note())
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
    return _act(callback_id, add, "Attempt logged for {reference}: " + label + ".", typed,
                **_earlier_attempt(callback_id))


def _earlier_attempt(callback_id: int) -> dict[str, str]:
    """For what an action says once the callback has closed (it has left the list): where an
    attempt made before it closed, but not yet logged, can still be (service.add_attempt)."""
    return {"earlier": url_for("agents.log_attempt", callback_id=callback_id, **_page_args())}


@bp.post("/queue/<id:callback_id>/close")
@role_required(*ROLES)
def close(callback_id: int):
    outcome = request.form.get("outcome", "")
    label = queue.CLOSING.get(outcome, ("",))[0].lower()
    typed = {"panel": "close", "outcome": outcome[:32], "note": request.form.get("note", "")[:MAX_NOTE * 2]}
    return _act(callback_id, lambda s: service.close(s, callback_id=callback_id, agent_id=current_user.id,
                                                     outcome=outcome, now=clock(), note=_note()),
                "{reference} is closed as " + label + ".", typed,
                **(_earlier_attempt(callback_id) if outcome in service.CLOSED_AFTER_TRYING else {}))


def _call_sid(call_sid: str) -> str:
    if not is_sid(call_sid):
        abort(404)
    return call_sid


@bp.post("/queue/calls/<call_sid>/concluded")
@role_required(*ROLES)
def concluded(call_sid: str):
    """The enquiry was dealt with on the call: no callback is owed."""
    call_sid = _call_sid(call_sid)
    try:
        with database().session() as session:
            owed.record_concluded(session, call_sid=call_sid, now=clock(), agent_id=current_user.id)
            reference = queue.reference_of(session, call_sid=call_sid)
    except owed.CallbackError as refusal:
        return _say(f"call-{call_sid}", str(refusal), "error")
    minutes = round(owed.UNDO_CONCLUDED.total_seconds() / 60)
    return _say("awaiting", f"{reference} is recorded as concluded on the call. Pressed by mistake? You can undo it "
                            f"for {minutes} minutes.",
                undo=url_for("agents.undo_concluded", call_sid=call_sid, **_page_args()), reference=reference)


@bp.post("/queue/calls/<call_sid>/undo-concluded")
@role_required(*ROLES)
def undo_concluded(call_sid: str):
    """"Concluded" taken back: the call is awaiting its outcome again."""
    call_sid = _call_sid(call_sid)
    try:
        with database().session() as session:
            owed.undo_concluded(session, call_sid=call_sid, agent_id=current_user.id, now=clock())
            reference = queue.reference_of(session, call_sid=call_sid)
    except owed.CallbackError as refusal:
        return _say("awaiting", str(refusal), "error")
    return _say(f"call-{call_sid}", f"{reference} is no longer recorded as concluded: say whether it was, or that a "
                                    "callback is needed.")


@bp.post("/queue/calls/<call_sid>/callback")
@role_required(*ROLES)
def callback_needed(call_sid: str):
    """The enquiry could not be concluded on the call: a callback is owed from the call's arrival."""
    call_sid = _call_sid(call_sid)
    return _callback_asked_for(
        f"call-{call_sid}", lambda session: owed.record_not_concluded(
            session, settings(), call_sid=call_sid, agent_id=current_user.id, now=clock(), note=_note(),
            number=request.form.get("number") or None),
        colleague="A colleague has just recorded this call's outcome: see the queue.")


def _callback_asked_for(at: str, owe, colleague: str):
    """Run `owe(session)`, the callback an agent asks for, and say when it is due; or why not, at
    `at` with what was typed put back. `colleague`: what to say when another agent's callback for
    the same contact was stored in the same instant."""
    typed = {"panel": "callback", "note": request.form.get("note", "")[:MAX_NOTE * 2],
             "number": request.form.get("number", "")[:64]}
    try:
        with database().session() as session:
            callback = owe(session)
            reference = queue.reference_of(session, callback_id=callback.id)
    except waiting.NoSuchEnquiry:
        abort(404)
    except (owed.CallbackError, waiting.EnquiryError) as refusal:
        return _refused(at, str(refusal), typed)
    except IntegrityError as error:
        if "contact_key" not in str(error.orig):  # the database refused it for another reason
            raise
        return _refused(at, colleague, typed)
    now = clock()
    due = queue.when(callback.due_at, local(now).date())
    late = " That is already past: call them now." if callback.due_at < now else ""
    return _say(f"callback-{callback.id}", f"A callback is now owed for {reference}, due by {due}.{late}")


# --------------------------------------------------------------------------- email enquiries


def _form_id(name: str) -> int | None:
    """A whole number the form sent back, or None if it sent none or something else."""
    text = request.form.get(name, "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


@bp.post("/queue/emails/<id:enquiry_id>/answered")
@role_required(*ROLES)
def email_answered(enquiry_id: int):
    """The agent has answered the email enquiry: it leaves the list of emails awaiting a response."""
    try:
        with database().session() as session:
            reference = waiting.mark_answered(session, enquiry_id, agent_id=current_user.id, now=clock(),
                                              seen=_form_id("seen"))
    except waiting.NoSuchEnquiry:
        abort(404)
    except waiting.EnquiryError as refusal:
        return _say("emails", str(refusal), "error")
    return _say("emails", f"{reference} is marked as answered.")


@bp.post("/queue/emails/<id:enquiry_id>/callback")
@role_required(*ROLES)
def email_callback_needed(enquiry_id: int):
    """The email enquiry cannot be concluded by email: a callback is owed from its newest email's receipt."""
    return _callback_asked_for(
        f"email-{enquiry_id}", lambda session: waiting.callback_needed(
            session, settings(), enquiry_id, agent_id=current_user.id, now=clock(), seen=_form_id("seen"),
            number=request.form.get("number", "")[:64], note=_note()),
        colleague="A colleague has just recorded a callback for this enquiry: see the callbacks above.")


@bp.post("/queue/emails/acknowledgements/<id:acknowledgement_id>/retry")
@role_required(*ROLES)
def retry_acknowledgement(acknowledgement_id: int):
    """Send a failed acknowledgement again (at the scheduler's next run, within 15 seconds)."""
    try:
        with database().session() as session:
            reference = sending.retry_acknowledgement(session, acknowledgement_id, clock())
    except sending.NoSuchAcknowledgement:
        abort(404)
    except sending.AcknowledgementError as refusal:
        return _say("emails", str(refusal), "error")
    return _say("emails", f"The acknowledgement for {reference} will be sent again within 15 seconds.")
