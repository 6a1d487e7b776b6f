"""Click-to-call through the Twilio REST API: ring the agent first, then connect the caller.

"Call back now" asks Twilio (Calls resource) to call the AGENT's phone. When it answers, Twilio
fetches `confirm_twiml`, which asks the agent to press 1, and then `connect_twiml`, which dials
the CALLER. Only a person presses 1: voicemail answering the agent's phone never rings the
caller. Every URL names the callback (`?callback=ID`), so the routes can log the attempt with
its CallSid.

Every failure is a TelephonyError whose message an agent can read. Logs carry CallSids and
callback ids, never phone numbers.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Mapping, NamedTuple, Protocol

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from helpdesk.clock import now_utc
from helpdesk.phones import is_e164, is_withheld, sip_address
from helpdesk.settings import SipLogin
from helpdesk.voice.params import is_sid

log = logging.getLogger(__name__)

TWILIO_API = "https://api.twilio.com"
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
RETRY = "Nothing was recorded; try again."
UNREAD = "Twilio's answer could not be read; check in Twilio whether the call was placed before trying again."
_INTERNATIONAL = "is not a phone number in international format (+44...)."
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")  # whole-string matches only (fullmatch)
CONFIRM_SECONDS = 10  # how long the agent has to press 1 after the prompt


class TelephonyError(Exception):
    """A callback could not be placed; `message` is plain English for the agent."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PlacedCall:
    call_sid: str
    status: str
    placed_at: datetime  # aware UTC


class Telephony(Protocol):
    def place_callback(self, *, agent_phone: str, caller_number: str | None, callback_id: int) -> PlacedCall:
        """Ring the agent's phone; when answered, Twilio dials the caller. Raises TelephonyError."""


def check_caller(caller_number: str | None) -> None:
    if is_withheld(caller_number):
        raise TelephonyError("This callback has no number to dial.")
    if not is_e164(caller_number):
        raise TelephonyError(f"The caller's number {_INTERNATIONAL}")


def check_numbers(agent_phone: str, caller_number: str | None) -> None:
    """Raise TelephonyError unless the caller's number is E.164, and the agent's phone too or a
    SIP address, which Twilio dials as well (the message never repeats a number)."""
    check_caller(caller_number)
    if not (is_e164(agent_phone) or sip_address(agent_phone) is not None):
        raise TelephonyError("Your phone is not a phone number in international format (+44...) "
                             "nor a SIP address (sip:...).")


def _urls(public_base_url: str, callback_id: int) -> tuple[str, str, str]:
    """The connect, status and dial-action URLs of one callback."""
    base, query = f"{public_base_url.rstrip('/')}/twilio/voice", f"?callback={int(callback_id)}"
    return f"{base}/callback-connect{query}", f"{base}/callback-status{query}", f"{base}/callback-dial{query}"


def confirm_twiml(public_base_url: str, callback_id: int, *, voice: str = "Polly.Amy", language: str = "en-GB") -> str:
    """TwiML for when the agent's phone answers: press 1 to dial the caller, or the call ends.

    Twilio sends the key to the connect URL again, as `Digits`. Voicemail or an answering
    machine on the agent's phone hears the prompt, presses nothing, and the caller is not rung.
    """
    connect_url, _, _ = _urls(public_base_url, callback_id)
    response, speech = VoiceResponse(), {"voice": voice, "language": language}
    gather = Gather(num_digits=1, action=connect_url, method="POST", timeout=CONFIRM_SECONDS)
    gather.say("This is your callback from the help desk queue. Press 1 to call the caller now.", **speech)
    response.append(gather)
    response.say("No key was pressed, so the caller was not called. Goodbye.", **speech)
    response.hangup()
    return str(response)


def connect_twiml(caller_number: str, caller_id: str, public_base_url: str, callback_id: int, *,
                  voice: str = "Polly.Amy", language: str = "en-GB") -> str:
    """TwiML for when the agent answers: a short message, then dial the caller from `caller_id`.

    A number that cannot be dialled gets an apology and a hang-up rather than an error: the
    agent is already on the line.
    """
    response, speech = VoiceResponse(), {"voice": voice, "language": language}
    try:
        check_caller(caller_number)
    except TelephonyError:
        response.say("Sorry, this callback has no number that can be dialled. Goodbye.", **speech)
        response.hangup()
        return str(response)
    _, status_url, dial_url = _urls(public_base_url, callback_id)
    response.say("Connecting you to the caller.", **speech)
    dial = Dial(caller_id=caller_id or None, action=dial_url, method="POST")
    dial.number(caller_number, status_callback=status_url, status_callback_event=" ".join(CALL_EVENTS),
                status_callback_method="POST")
    response.append(dial)
    return str(response)


class ApiBaseHttpClient(TwilioHttpClient):
    """twilio-python's HTTP client; sends https://api.twilio.com requests to `api_base_url`
    (a Prism mock) when given, and keeps the last error answer for its reason."""

    def __init__(self, api_base_url: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.api_base_url = (api_base_url or "").rstrip("/") or None
        self.error_status, self.error_body = 0, ""

    def request(self, method, url, *args, **kwargs):
        if self.api_base_url and url.startswith(TWILIO_API):
            url = self.api_base_url + url[len(TWILIO_API):]
        response = super().request(method, url, *args, **kwargs)
        if response.status_code >= 300:
            self.error_status, self.error_body = response.status_code, response.text
        return response


def _reason(error: TwilioException, http: ApiBaseHttpClient) -> str:
    """The API's own reason for an error answer, as it gave it."""
    if isinstance(error, TwilioServiceException) and (error.detail or error.title):
        return error.detail or error.title
    message = getattr(error, "msg", "") or ""
    if ": " in message:  # twilio-python's "Unable to create record: <the API's message>"
        return message.split(": ", 1)[1]
    try:  # an RFC 7807 problem without `message` (Prism's validation errors, for one)
        problem = json.loads(http.error_body)
        details = [item["message"] for item in problem.get("validation") or [] if item.get("message")]
        return "; ".join(details) or problem.get("detail") or problem["title"]
    except (ValueError, AttributeError, KeyError, TypeError):
        return f"no reason given (HTTP {http.error_status})"


def _translate(error: Exception, http: ApiBaseHttpClient, callback_id: int) -> TelephonyError:
    """The agent's message for whatever went wrong; the log gets the kind of failure only."""
    if isinstance(error, (TwilioRestException, TwilioServiceException)):
        log.warning("callback %s: Twilio answered HTTP %s (code %s)", callback_id, http.error_status, error.code)
        if http.error_status >= 500:
            return TelephonyError(f"Twilio could not place the call: {_reason(error, http).rstrip('.')}. {RETRY}")
        return TelephonyError(f"Twilio refused the call: {_reason(error, http)}")
    log.warning("callback %s: Twilio request failed (%s)", callback_id, type(error).__name__)
    if isinstance(error, requests.Timeout):
        return TelephonyError(f"Twilio did not answer in time. {RETRY}")
    if isinstance(error, requests.RequestException):
        return TelephonyError(f"Could not reach Twilio. {RETRY}")
    return TelephonyError(UNREAD)


class TwilioTelephony:
    """The real thing: one Calls.create request per callback, `timeout` seconds at most."""

    http_client_class: type[ApiBaseHttpClient] = ApiBaseHttpClient

    def __init__(self, account_sid: str, auth_token: str, from_number: str, public_base_url: str,
                 api_base_url: str | None = None, timeout: float = 10, *, clock: Callable[[], datetime] = now_utc,
                 sip_login: SipLogin | None = None):
        self.account_sid, self.auth_token, self.from_number = account_sid, auth_token, from_number
        self.public_base_url, self.api_base_url = public_base_url.rstrip("/"), api_base_url
        self.timeout, self.clock, self.sip_login = timeout, clock, sip_login

    def place_callback(self, *, agent_phone: str, caller_number: str | None, callback_id: int) -> PlacedCall:
        check_numbers(agent_phone, caller_number)
        connect_url, status_url, _ = _urls(self.public_base_url, callback_id)
        # A desk phone's SIP address is dialled with the login the ring group's are, if any.
        login = ({"sip_auth_username": self.sip_login.username, "sip_auth_password": self.sip_login.password}
                 if self.sip_login and agent_phone.startswith("sip:") else {})
        http = self.http_client_class(self.api_base_url, timeout=self.timeout)  # one per call: error_body
        try:
            call = Client(self.account_sid, self.auth_token, http_client=http).calls.create(
                to=agent_phone, from_=self.from_number, url=connect_url, method="POST",
                status_callback=status_url, status_callback_event=list(CALL_EVENTS),
                status_callback_method="POST", timeout=30, **login)
        except (requests.RequestException, TwilioException, ValueError, TypeError, AttributeError, KeyError) as error:
            raise _translate(error, http, callback_id) from error
        finally:
            if http.session is not None:
                http.session.close()
        if not (isinstance(call.sid, str) and is_sid(call.sid)):
            log.warning("callback %s: Twilio's answer has no CallSid", callback_id)
            raise TelephonyError(UNREAD)
        log.info("callback %s: placed call %s (%s)", callback_id, call.sid, call.status)
        return PlacedCall(call_sid=call.sid, status=str(call.status or "queued"), placed_at=self.clock())


class FakeCall(NamedTuple):
    agent_phone: str
    caller_number: str
    callback_id: int
    placed: PlacedCall


@dataclass
class FakeTelephony:
    """For tests: checks numbers as the real one does, records placed calls in `calls`, and
    gives CallSids CA000...001, CA000...002, ...; with `fail_with` set, raises TelephonyError(it)."""

    fail_with: str | None = None
    clock: Callable[[], datetime] = now_utc
    calls: list[FakeCall] = field(default_factory=list)

    def place_callback(self, *, agent_phone: str, caller_number: str | None, callback_id: int) -> PlacedCall:
        check_numbers(agent_phone, caller_number)
        if self.fail_with is not None:
            raise TelephonyError(self.fail_with)
        placed = PlacedCall(call_sid=f"CA{len(self.calls) + 1:032x}", status="queued", placed_at=self.clock())
        self.calls.append(FakeCall(agent_phone, str(caller_number), callback_id, placed))
        return placed


@dataclass(frozen=True)
class UnconfiguredTelephony:
    """Stands in when settings are missing: every callback fails with `message`."""

    message: str

    def place_callback(self, *, agent_phone: str, caller_number: str | None, callback_id: int) -> PlacedCall:
        # For the agent: what to do now; for the administrator, what is missing.
        raise TelephonyError("Calling from this page is not set up yet, so call from your own phone and log the "
                             f"attempt. Tell an administrator: {self.message}")


def telephony_from_app_config(config: Mapping, environ: Mapping[str, str] | None = None) -> Telephony:
    """TwilioTelephony from the app's config, or UnconfiguredTelephony naming what is missing.

    TWILIO_FROM_NUMBER and TWILIO_API_BASE_URL fall back to the environment (`create_app` does
    not copy them into the config), and SIP_LOGIN to SIP_USERNAME and SIP_PASSWORD. An empty
    TWILIO_API_BASE_URL means the real Twilio.
    """
    env = os.environ if environ is None else environ
    keys = ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "TWILIO_FROM_NUMBER", "TWILIO_API_BASE_URL")
    sid, token, base, number, api = (
        str(config.get(key) or (env.get(key) if key in keys[3:] else "") or "").strip() for key in keys)
    missing = [key for key, value in zip(keys, (sid, token, base, number)) if not value]
    if missing:
        names = " and ".join(filter(None, [", ".join(missing[:-1]), missing[-1]]))
        return UnconfiguredTelephony(f"Twilio is not configured: set {names}.")
    if not ACCOUNT_SID.fullmatch(sid):
        return UnconfiguredTelephony("Twilio is not configured: TWILIO_ACCOUNT_SID is not an account SID "
                                     "(AC followed by 32 hexadecimal characters, from the Twilio console).")
    if not is_e164(number):
        return UnconfiguredTelephony(f"Twilio is not configured: TWILIO_FROM_NUMBER {_INTERNATIONAL}")
    sip_login = config["SIP_LOGIN"] if "SIP_LOGIN" in config else SipLogin.from_environ(env)
    return TwilioTelephony(sid, token, number, base, api or None, sip_login=sip_login)
