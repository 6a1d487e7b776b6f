"""Twilio voice webhooks: verify, validate, answer with TwiML, journal the event.

A caller must never hear Twilio's error message because of us: TwiML is decided from
the configuration alone, and if storing the event fails the TwiML is still returned.
"""
from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache
from typing import Callable

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.orm import Session

from helpdesk.agents_pin import (ASK, LOCK_AFTER, LOCKED, NOT_SET, PIN_TRIES, RIGHT, WRONG, agents_at, count_pin,
                                 judge_pin, needs_pin, pin_state)
from helpdesk.models import User
from helpdesk.phones import is_withheld
from helpdesk.settings import Settings, SipLogin
from helpdesk.voice import twiml
from helpdesk.voice.call_events import AGENT_DEQUEUE, AGENTS_PIN, NOT_AN_AGENT
from helpdesk.voice.journal import CHILD_KINDS, owning_call_sid
from helpdesk.voice.params import is_sid, problem
from helpdesk.voice.projection import ACCEPT_DIGIT, SCREENED, caller_left, dial_bridged
from helpdesk.voice.recovery import describe, keep_for_later, recovery_for, spool_entry, store_event
from helpdesk.voice.signature import is_valid, public_url
from helpdesk.voice.sip_refusals import log_refusal
from helpdesk.web import clock, database, settings

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/twilio/voice")

_XML = "text/xml; charset=utf-8"
# The decision about where a caller goes, with the TwiML that carries it out.
Answer = tuple[str | None, str]


# Twilio's voice webhooks are a few kilobytes (a transcription is the longest); a larger post is
# refused with 413 before its form is parsed or its signature computed, so nobody can tie the
# workers up with one huge unsigned form (a 10 MB one cost 11 s of CPU).
MAX_WEBHOOK_BYTES = 64 * 1024


@bp.before_request
def verify_signature():
    request.max_content_length = MAX_WEBHOOK_BYTES  # before anything reads the body
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    base = current_app.config.get("PUBLIC_BASE_URL")
    if not token or not base:
        log.error("Twilio webhook refused: TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL must both be set")
        return _plain("Webhooks are not configured on this server.", 403)
    if is_valid(token, base, request):
        return None
    secondary = current_app.config.get("TWILIO_AUTH_TOKEN_SECONDARY")
    if secondary and is_valid(secondary, base, request):
        _signed_with_secondary()
        return None
    _refused_signature(base)
    return _plain("The request signature does not verify.", 403)


def _refused_signature(base: str) -> None:
    """Log a refused signature; the first time (per app), with what to check: when every webhook
    is refused, PUBLIC_BASE_URL or TWILIO_AUTH_TOKEN is wrong, and the app's log is where an
    administrator looks (Twilio says only that the request failed)."""
    if not request.headers.get("X-Twilio-Signature"):
        log.warning("Twilio webhook refused: it has no signature (%s)", request.path)
        return
    if current_app.extensions.get("helpdesk.said_signature_help"):
        log.warning("Twilio webhook refused: the signature does not verify (%s)", request.path)
        return
    current_app.extensions["helpdesk.said_signature_help"] = True
    forwarded = request.headers.get("X-Forwarded-Host") or request.host
    scheme = request.headers.get("X-Forwarded-Proto") or request.scheme
    log.warning("Twilio webhook refused: the signature does not verify against %s (the request came to %s://%s). "
                "If every webhook is refused, PUBLIC_BASE_URL must be the address Twilio is given, scheme, host and "
                "port exactly, and TWILIO_AUTH_TOKEN the account's auth token (see the README, \"Pointing a Twilio "
                "number at the app\")", public_url(base, request), scheme, forwarded)


def _signed_with_secondary() -> None:
    """Say once (per app) that Twilio signs with the new token, so the rotation can be finished."""
    if current_app.extensions.get("helpdesk.signed_with_secondary"):
        return
    current_app.extensions["helpdesk.signed_with_secondary"] = True
    log.warning("a Twilio webhook was signed with TWILIO_AUTH_TOKEN_SECONDARY: Twilio now signs with it, so "
                "make it TWILIO_AUTH_TOKEN, unset TWILIO_AUTH_TOKEN_SECONDARY and restart (see the README)")


def _plain(text: str, status: int) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")


def _problem(kind: str, params: dict[str, str], now: datetime) -> str | None:
    sid = params.get("CallSid")
    if not sid:
        return "CallSid is missing."
    if not is_sid(sid):
        return "CallSid is not a Twilio call SID."
    if kind in CHILD_KINDS and not is_sid(params.get("ParentCallSid")):
        return "ParentCallSid is missing or not a Twilio call SID."
    return problem(params, now)


def _handle(kind: str, decide: Callable[[dict[str, str]], Answer] | None = None, journal: str = "call",
            leave_out: tuple[str, ...] = ()) -> Response:
    """Check, decide, and store the request's webhook whatever was decided: without the
    parameters in `leave_out`, which are secret, and then under its path with its query string,
    so that requests which differed only in those are not taken for one delivered twice."""
    flat = request.form.to_dict()
    # One reading of the clock for the whole request: the arrival stored is the moment the
    # call was judged open or closed at.
    g.received_at = received_at = clock()
    reason = _problem(kind, flat, received_at)
    if reason:
        return _plain(reason, 400)
    decision, body = decide(flat) if decide else (None, None)
    path = request.full_path.rstrip("?") if leave_out else request.path
    kept = store_or_spool(kind, call_sid=owning_call_sid(kind, flat), path=path, received_at=received_at,
                          decision=decision, journal=journal, leave_out=leave_out)
    if kept is None and body is None:
        return _plain("The event could not be stored.", 503)
    if body is None:
        return Response(status=204)
    return Response(body, content_type=_XML)


def store_or_spool(kind: str, *, call_sid: str, path: str, received_at: datetime, decision: str | None = None,
                   journal: str = "call", leave_out: tuple[str, ...] = ()) -> str | None:
    """Store this request's webhook, or keep it in the spool to store later.

    Returns where it went, "database" or "spool"; None if neither could take it. `journal`
    "call" records the event and recomputes its call; "only" journals it (outbound legs).
    """
    params = [(name, value) for name, value in request.form.items(multi=True) if name not in leave_out]
    event = {"kind": kind, "path": path, "params": params, "received_at": received_at,
             "idempotency_token": request.headers.get("I-Twilio-Idempotency-Token"), "decision": decision}
    config, db = settings(), database()
    try:
        store_event(db, config, journal=journal, call_sid=call_sid, **event)
    except Exception as error:
        # If the spool cannot take it either, the call goes on and the event is lost: logged loudly.
        kept = keep_for_later(spool_entry(call_sid=call_sid, journal=journal, **event),
                              f"a webhook ({kind}, call {call_sid})", describe(error), db, config)
        return "spool" if kept else None
    recovery_for(config).check(db, config)
    return "database"


@lru_cache(maxsize=64)
def _static(name: str, config: Settings, base: str, sip_login: SipLogin | None = None) -> str:
    # Most answers depend only on the configuration and the public address: build once.
    if name == "agents":
        return twiml.agents(config, twiml.Urls(base), sip_login)
    return getattr(twiml, name)(config, twiml.Urls(base))


def _twiml(name: str) -> str:
    return _static(name, settings(), current_app.config["PUBLIC_BASE_URL"], current_app.config.get("SIP_LOGIN"))


def _agents(_params=None) -> Answer:
    routing = settings().routing
    if routing.mode == "queue":
        return "queue", _twiml("agents")
    return (SCREENED if routing.screen_calls else "agents"), _twiml("agents")


@bp.post("/incoming")
def incoming():
    def decide(params: dict[str, str]) -> Answer:
        config = settings()
        if not config.calendar.is_open(g.received_at):
            return "out_of_hours", _twiml("out_of_hours")
        if config.ivr.enabled and params.get("From") not in config.dwp_numbers:
            return "ivr", _twiml("menu")
        return _agents()

    return _handle("incoming", decide)


@bp.post("/menu")
def menu():
    return _handle("gather", _agents)


@bp.post("/agents")
def agents():
    return _handle("agents", _agents)


@bp.post("/dial-action")
def dial_action():
    def decide(params: dict[str, str]) -> Answer:
        # The caller was put through, or has gone: nothing more to say. Otherwise nobody took
        # it (every leg rang out, or every one that answered was screened out): voicemail.
        if caller_left(params) or dial_bridged(params):
            return "hangup", twiml.hang_up()
        return "voicemail", _twiml("no_agent")

    return _handle("dial_action", decide)


@bp.post("/screen")
def screen():
    """An agent's phone answered a screened call: ask whoever answered to press 1."""
    return _handle("screen", lambda _params: (None, _twiml("screen")))


@bp.post("/screen-accept")
def screen_accept():
    """The key pressed (or not) at the screening prompt: 1 puts the caller through."""
    def decide(params: dict[str, str]) -> Answer:
        if params.get("Digits") == ACCEPT_DIGIT:
            return "accepted", twiml.empty()
        return "declined", twiml.hang_up()

    return _handle("screen_accept", decide)


@bp.post("/queue-wait")
def queue_wait():
    def decide(params: dict[str, str]) -> Answer:
        try:
            waited = float(params.get("QueueTime") or 0)
        except ValueError:
            waited = 0.0
        return None, twiml.queue_wait(settings(), waited)

    return _handle("queue_wait", decide)


@bp.post("/queue-action")
def queue_action():
    def decide(params: dict[str, str]) -> Answer:
        if params.get("QueueResult") in ("bridged", "hangup", "redirected", "redirected-from-bridged"):
            return "hangup", twiml.hang_up()
        return "voicemail", _twiml("no_agent")

    return _handle("queue_action", decide)


@bp.post("/dequeue")
def dequeue():
    return _handle("dequeue", lambda _params: (None, twiml.empty()))


@bp.post("/voicemail")
def voicemail():
    return _handle("voicemail", lambda _params: (None, _twiml("thanks")))


@bp.post("/fallback")
def fallback():
    # Twilio's fallback URL: our primary answer failed. Take a message rather than drop the caller.
    return _handle("fallback", lambda _params: ("voicemail", _twiml("no_agent")))


@bp.post("/status")
def status():
    return _handle("status")


@bp.post("/agent-status")
def agent_status():
    response = _handle("agent_status")
    if response.status_code < 300:  # a leg the app took: say if a phone system refused it
        log_refusal(request.form, leg="agent leg", call="ring_group",
                    login_given=current_app.config.get("SIP_LOGIN") is not None)
    return response


@bp.post("/recording")
def recording():
    return _handle("recording")


@bp.post("/agent-dequeue")
def agent_dequeue():
    """Voice URL for agents' phones in queue mode: connects them to the next caller. Journalled
    under the agent's own call, with no call record, so that the caller's call it takes says
    which phone took it (journal.dequeued_by). A call from no agent's phone or Client identity
    (a wrong number, a robot dialling at random) is told so and hung up on: nobody else is put
    through to a caller. With routing.agents_pin, a phone number or SIP address is asked for
    its PIN first (helpdesk.agents_pin), typed to /twilio/voice/agent-pin."""
    def decide(params: dict[str, str]) -> Answer:
        came_from = params.get("From", "")
        asks = settings().routing.agents_pin and needs_pin(came_from)
        found = _agents_line(came_from, lambda _session, agents: pin_state(agents) if asks else RIGHT)
        if found == NOT_AN_AGENT:
            log.warning("call %s to the agents' Voice URL refused: not from an agent's phone or Client identity",
                        params.get("CallSid"))
        return _agents_line_answer(found, next_try=1)

    return _handle(AGENT_DEQUEUE, decide, journal="only")


@bp.post("/agent-pin")
def agent_pin():
    """The PIN typed on the agents' line (routing.agents_pin): right, the agent is put through to
    the next caller; wrong, asked again, up to PIN_TRIES a call. Journalled without the PIN."""
    attempt = request.args.get("try", "1")
    attempt = int(attempt) if attempt in {str(n) for n in range(1, PIN_TRIES + 1)} else PIN_TRIES

    def decide(params: dict[str, str]) -> Answer:
        came_from, locked = params.get("From", ""), []

        def judge(session: Session, agents: list[User]) -> str:
            judged = judge_pin(agents, params.get("Digits", ""))
            try:
                return count_pin(session, agents, judged, g.received_at, locked)
            except Exception as error:  # what the PIN is stands; it is only not counted
                log.error("the agents' line could not count a PIN: %s", describe(error))
                return judged.found

        found = _agents_line(came_from, judge)
        typed = bool(params.get("Digits"))
        if found in (WRONG, LOCKED, NOT_AN_AGENT):
            log.warning("call %s to the agents' Voice URL: %s (try %d)", params.get("CallSid"),
                        "a wrong PIN" if typed else "no PIN typed", attempt)
        _tell_locked(locked)
        return _agents_line_answer(found, next_try=attempt + 1, wrong=typed)

    return _handle(AGENTS_PIN, decide, journal="only", leave_out=("Digits",))


def _tell_locked(locked: list) -> None:
    """Email each user whose PIN was just locked, if they have an address (helpdesk.account_notices)."""
    told = [user for user in locked if user.email]
    if not told:
        return
    from helpdesk.account_notices import AGENTS_PIN_LOCKED as LOCKED_NOTICE, Notice
    from helpdesk.pages.password_links import notify

    for user in told:
        notify(Notice(LOCKED_NOTICE, user.email, user.username, user.display_name, g.received_at, left=LOCK_AFTER))


def _agents_line(came_from: str, judge: Callable[[Session, list[User]], str]) -> str:
    """What the agents' line finds for a call from `came_from`: NOT_AN_AGENT for nobody's phone,
    else what `judge` says of the agents whose phone it is (with the session they were read with).
    When the users cannot be read, RIGHT: callers waiting in the queue are still taken while the
    database is down (the request is spooled, as any other). Read with a webhook's session, which
    gives up in time for the request to be spooled and answered within the 15 s Twilio waits."""
    if is_withheld(came_from):
        return NOT_AN_AGENT
    with database().webhook_session() as session:
        try:
            with session.begin():
                agents = agents_at(session, came_from)
        except Exception as error:
            log.error("the agents' Voice URL could not read the users, so put a call through unchecked: %s",
                      describe(error))
            return RIGHT
        return judge(session, agents) if agents else NOT_AN_AGENT


def _agents_line_answer(found: str, next_try: int, wrong: bool = False) -> Answer:
    """The decision journalled, and the TwiML, for what the agents' line found; `next_try`: the
    PIN's try a prompt would be, saying first that the one typed was `wrong`."""
    if found == RIGHT:
        return None, _twiml("agent_dequeue")
    if found in (ASK, WRONG) and next_try <= PIN_TRIES:
        return f"agents_pin_{found}", twiml.agents_pin(settings(), twiml.Urls(current_app.config["PUBLIC_BASE_URL"]),
                                                        next_try, wrong=wrong)
    if found in (NOT_SET, LOCKED):
        return f"agents_pin_{found}", _twiml(f"agents_pin_{found}")
    return (NOT_AN_AGENT if found == NOT_AN_AGENT else "agents_pin_wrong"), _twiml("not_an_agent")
