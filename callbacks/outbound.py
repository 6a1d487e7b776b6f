"""Twilio webhooks for callbacks placed with "Call back now".

Twilio rings the agent (a REST call whose CallSid is the attempt's `call_sid`), fetches
`callback-connect` when the agent's phone answers, which asks the agent to press 1; with the
key (`Digits`), `callback-connect` dials the caller (a child leg whose ParentCallSid is the
attempt's `call_sid`); Twilio reports both legs to `callback-status`. The attempt counts
from the dial, recorded by `callback-connect`: if the agent's leg ends before that (not
answered, no key pressed, voicemail), the caller was never rung and the attempt is
`not_dialled`.

The routes are nested in the voice blueprint (`nest_in`), so they share its URL prefix, its
single signature check (a parent blueprint's before_request runs for nested ones: a bad
signature is refused with 403 before anything here runs) and its exemption from CSRF.

Every event is journalled as received, under the attempt's call SID, with no call record:
an outbound leg is not an inbound call. An event or an attempt's outcome the database cannot
take is kept in the spool and stored later (helpdesk.voice.recovery).
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from flask import Blueprint, Response, current_app, request
from twilio.twiml.voice_response import VoiceResponse

from callbacks import service
from callbacks.telephony import confirm_twiml, connect_twiml
from helpdesk.phones import is_withheld
from helpdesk.voice.blueprint import _XML, _plain, store_or_spool
from helpdesk.voice.params import is_sid, moment, problem, seconds
from helpdesk.voice.recovery import attempt_entry, describe, keep_for_later
from helpdesk.voice.sip_refusals import log_refusal
from helpdesk.web import clock, database, settings

log = logging.getLogger(__name__)
bp = Blueprint("callbacks", __name__)

_CALLBACK = re.compile(r"[0-9]{1,12}")
STATUSES = ("queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled")
_DIAL_OUTCOMES = {"completed": "reached", "answered": "reached", **service.LEG_ENDED}
_nested: set[int] = set()


class BadRequest(ValueError):
    """A webhook's parameters cannot be used; the message says which and why."""


def nest_in(parent: Blueprint) -> None:
    """Register these routes inside `parent` (the voice blueprint), once per process.

    Call it before `parent` is registered on an app: Flask refuses changes to a blueprint
    that has been registered once.
    """
    if id(parent) not in _nested:
        parent.register_blueprint(bp)
        _nested.add(id(parent))


def _journal(kind: str, params: dict[str, str]) -> bool:
    """Keep the webhook as received, like every other Twilio event, under the attempt's call.

    Returns whether the database took it. If it did not, this request does not try the
    database again: each try can take the connect timeout, and Twilio waits 15 s.
    """
    return store_or_spool(kind, call_sid=params.get("ParentCallSid") or params["CallSid"],
                          path=request.full_path.rstrip("?"), received_at=clock(), journal="only") == "database"


def _parse(needs: tuple[str, ...] = ()) -> tuple[int, dict[str, str]]:
    """The callback id and the form; BadRequest if either is unusable. Nothing is journalled
    before the request has been checked in full (see _journal)."""
    text = request.args.get("callback", "")
    params = request.form.to_dict()
    if not _CALLBACK.fullmatch(text):
        raise BadRequest("The callback query parameter is missing or not a callback number.")
    if not is_sid(params.get("CallSid")):
        raise BadRequest("CallSid is missing or not a Twilio call SID.")
    if "ParentCallSid" in params and not is_sid(params["ParentCallSid"]):
        raise BadRequest("ParentCallSid is not a Twilio call SID.")
    for name in needs:
        if not params.get(name):
            raise BadRequest(f"{name} is missing.")
    reason = problem(params, clock())
    if reason:
        raise BadRequest(reason)
    return int(text), params


def _twiml(response: VoiceResponse) -> Response:
    return Response(str(response), content_type=_XML)


def _speech() -> dict[str, str]:
    """The configured voice, so the agent hears one voice through the whole call."""
    return {"voice": settings().messages.voice, "language": settings().messages.language}


def _goodbye(text: str) -> Response:
    response = VoiceResponse()
    response.say(text, **_speech())
    response.hangup()
    return _twiml(response)


@bp.post("/callback-connect")
def connect():
    """The agent's phone answered: ask for 1, and with it dial the caller.

    A callback that is gone gets a short message, never an error.
    """
    try:
        callback_id, params = _parse()
    except BadRequest as bad:
        return _plain(str(bad), 400)
    reachable = _journal("callback_connect", params)
    sorry = "Sorry, the callback could not be connected. Please try again from the queue. Goodbye."
    if not reachable:
        log.error("callback %s: the database is unreachable, so call %s cannot be connected", callback_id,
                  params["CallSid"])
        return _goodbye(sorry)
    if "Digits" not in params:
        return Response(confirm_twiml(current_app.config["PUBLIC_BASE_URL"], callback_id, **_speech()), content_type=_XML)
    if params["Digits"] != "1":
        log.info("callback %s: call %s pressed another key, so the caller was not called", callback_id,
                 params["CallSid"])
        return _goodbye("The caller was not called. Press 1 next time to be connected. Goodbye.")
    try:
        # The caller is dialled only if the dial is recorded: it is what the three-hour rule counts.
        with database().webhook_session() as session:
            number = service.dial_attempt(session, callback_id=callback_id, call_sid=params["CallSid"], now=clock())
    except Exception:
        log.exception("callback %s: could not record the dial for call %s", callback_id, params["CallSid"])
        return _goodbye(sorry)
    if number is None:
        log.info("callback %s: closed or unknown when call %s was answered", callback_id, params["CallSid"])
        return _goodbye("This callback has been closed, so there is no one to call. Goodbye.")
    if is_withheld(number):
        return _goodbye("This callback has no number that can be dialled. Goodbye.")
    caller_id = getattr(current_app.extensions.get("helpdesk.telephony"), "from_number", None) or params.get("From", "")
    body = connect_twiml(number, caller_id, current_app.config["PUBLIC_BASE_URL"], callback_id, **_speech())
    return Response(body, content_type=_XML)


def _status_outcome(params: dict[str, str]) -> tuple[str | None, datetime | None]:
    """(attempt outcome, when the caller answered) from one leg's status, or (None, None) if not final."""
    status = params["CallStatus"]
    if status not in STATUSES:
        raise BadRequest(f"CallStatus {status[:20]!r} is not a Twilio call status.")
    stamp = moment(params, clock())
    if "ParentCallSid" not in params:  # the agent's leg: it ending before the caller answered is a miss
        return service.AGENT_LEG_ENDED.get(status), None
    if status == "in-progress":
        return "reached", stamp
    if status == "completed":
        duration = seconds(params, "CallDuration")
        return "reached", (stamp - timedelta(seconds=duration)) if stamp and duration is not None else stamp
    return service.LEG_ENDED.get(status), None


@bp.post("/callback-status")
def status():
    """Status callbacks of both legs: the caller answering means reached; a leg ending first, a miss."""
    try:
        callback_id, params = _parse(needs=("CallStatus",))
        outcome, answered_at = _status_outcome(params)
    except BadRequest as bad:
        return _plain(str(bad), 400)
    reachable = _journal("callback_status", params)
    if "ParentCallSid" not in params:  # the agent's own phone, perhaps a desk phone's SIP address
        log_refusal(params, leg=f"callback {callback_id}: call", call="call_back_now",
                    login_given=current_app.config.get("SIP_LOGIN") is not None)
    if outcome is None:
        return Response(status=204)
    return _finish(callback_id, params.get("ParentCallSid") or params["CallSid"], outcome, answered_at, reachable)


def _finish(callback_id: int, attempt_sid: str, outcome: str, answered_at: datetime | None,
            reachable: bool) -> Response:
    """Record how the attempt ended; if the database cannot take it, keep it in the spool to store later."""
    now = clock()
    problem = "it was unreachable for this webhook's event"
    if reachable:
        try:
            with database().webhook_session() as session:
                service.finish_attempt(session, settings(), call_sid=attempt_sid, outcome=outcome, now=now,
                                       answered_at=answered_at)
        except Exception as error:
            problem = describe(error)
        else:
            log.info("callback %s: call %s ended as %s", callback_id, attempt_sid, outcome)
            return Response(status=204)
    entry = attempt_entry(callback_id=callback_id, call_sid=attempt_sid, outcome=outcome, ended_at=now,
                          answered_at=answered_at)
    if not keep_for_later(entry, f"how call {attempt_sid} ended ({outcome}) for callback {callback_id}", problem,
                          database(), settings()):
        return _plain("The outcome could not be stored.", 503)
    return Response(status=204)


@bp.post("/callback-dial")
def dial_action():
    """The dial to the caller ended: record how (if the status callbacks have not), then hang up."""
    try:
        callback_id, params = _parse(needs=("DialCallStatus",))
        outcome = _DIAL_OUTCOMES.get(params["DialCallStatus"])
        if outcome is None:
            raise BadRequest(f"DialCallStatus {params['DialCallStatus'][:20]!r} is not a Twilio dial status.")
    except BadRequest as bad:
        return _plain(str(bad), 400)
    reachable = _journal("callback_dial", params)
    duration = seconds(params, "DialCallDuration")
    answered_at = clock() - timedelta(seconds=duration) if outcome == "reached" and duration is not None else None
    _finish(callback_id, params["CallSid"], outcome, answered_at, reachable)  # hang up on the agent regardless
    response = VoiceResponse()
    response.hangup()
    return _twiml(response)
