"""The stand-in for Twilio in :mod:`helpdesk.simulator`: a :class:`Simulator` signs and delivers
one simulated caller's (:class:`CallScenario`) webhooks through a :class:`Transport`."""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol
from urllib.parse import urlsplit

import requests
from twilio.request_validator import RequestValidator

from helpdesk.simulator_call import CallSession
from helpdesk.simulator_calllog import CallLog, LoggedCall
from helpdesk.simulator_twiml import FORM, CallTrace, new_sid

# The simulator's log, as before this was split from it: its lines keep the name they had.
logger = logging.getLogger("helpdesk.simulator")

FAKE_ACCOUNT_SID = "AC" + "0" * 32
HELP_DESK_NUMBER = "+448001217479"
AUTO = "auto"  # CallScenario.digits: press the digit for the caller's kind
DEFAULT_IVR_DIGITS = {"dwp": "1", "customer": "2"}
UNREACHED_SECONDS = 6  # Twilio's "an application error has occurred", then it hangs up


class Transport(Protocol):
    """Delivers one form-encoded POST; answers ``(status, body)``, status 0 when unreachable."""

    def post(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[int, str]: ...


class RequestsTransport:
    """The real transport: requests, one session per thread, a 15 s timeout as Twilio's."""

    def __init__(self, timeout: float = 15.0):
        self.timeout = timeout
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def post(self, url: str, params: list[tuple[str, str]], headers: dict[str, str]) -> tuple[int, str]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        try:
            response = session.post(url, data=params, headers=headers, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            logger.warning("Could not reach %s: %s", urlsplit(url).path, type(exc).__name__)
            return 0, ""
        return response.status_code, response.text

    def close(self) -> None:
        """Close every thread's connection pool."""
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


@dataclass(frozen=True)
class CallScenario:
    """One simulated caller. Times are seconds after the call arrives at Twilio.

    ``answer_after``: when a person becomes free to answer (None: nobody ever does).
    ``abandon_after``: when the caller gives up if still unanswered (None: they never do, though
    the simulator's ``max_call_seconds`` still ends an endless wait).
    ``talk_seconds``: how long the conversation lasts, or the voicemail message if they leave one.
    ``digits``: what the caller presses at an IVR menu: ``AUTO`` for the kind's digit,
    None for nothing, or the keys themselves. ``seed`` fixes the call's SIDs and choices.
    ``agent_voicemail_after``: when one agent's phone sends the call to its own voicemail, if
    nobody has answered by then (None: no phone does).
    """

    caller: str = "+447700900123"
    kind: str = "customer"  # "dwp" or "customer"
    answer_after: float | None = 12.0
    abandon_after: float | None = None
    leaves_voicemail: bool = False
    talk_seconds: float = 90.0
    digits: str | None = AUTO
    seed: int | None = None
    agent_voicemail_after: float | None = None


class Simulator:
    """Plays Twilio's part for inbound calls to the help desk at ``base_url``.

    ``duplicate`` is the probability that any request is delivered twice (same parameters, same
    idempotency token); ``out_of_order`` the probability that a call's status callbacks are held
    back until it ends and arrive shuffled (otherwise each arrives as it fires). ``clock`` gives
    the wall clock (aware datetime); ``sleep`` is used when ``speed > 0``. With ``call_log``,
    every call placed is entered in it, as Twilio's call log would list it.
    """

    def __init__(self, base_url: str, auth_token: str, account_sid: str = FAKE_ACCOUNT_SID,
                 transport: Transport | None = None, clock: Callable[[], datetime] | None = None,
                 rng: random.Random | None = None, speed: float = 0.0, *, to_number: str = HELP_DESK_NUMBER,
                 duplicate: float = 0.0, out_of_order: float = 0.0, ivr_digits: dict[str, str] | None = None,
                 max_call_seconds: float = 1800.0, sleep: Callable[[float], None] = time.sleep,
                 call_log: CallLog | None = None, sip_login: tuple[str, str] | None = None):
        if not auth_token:
            raise ValueError("an auth token is needed to sign requests")
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid
        self.transport = transport if transport is not None else RequestsTransport()
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.rng = rng or random.Random()
        self.speed = speed
        self.to_number = to_number
        self.duplicate = duplicate
        self.out_of_order = out_of_order
        self.ivr_digits = dict(DEFAULT_IVR_DIGITS if ivr_digits is None else ivr_digits)
        self.max_call_seconds = max_call_seconds
        self.sleep = sleep
        self.call_log = call_log
        # (username, password) the phone system behind every <Sip> asks Twilio for: a leg
        # dialled without them, or with others, is refused (SIP 407), as that phone system would.
        self.sip_login = sip_login
        self._validator = RequestValidator(auth_token)
        self._lock = threading.Lock()

    def sign(self, url: str, params: list[tuple[str, str]]) -> str:
        """The ``X-Twilio-Signature`` Twilio would send for this exact URL and body."""
        return self._validator.compute_signature(url, dict(params))

    def headers(self, url: str, params: list[tuple[str, str]], token: str) -> dict[str, str]:
        """The headers of Twilio's webhook request: signed, with its idempotency token."""
        return {"X-Twilio-Signature": self.sign(url, params), "I-Twilio-Idempotency-Token": token,
                "Content-Type": FORM, "User-Agent": "TwilioProxy/1.1"}

    def refuses_sip(self, to: str, login: tuple[str | None, str | None]) -> bool:
        """Whether the phone system refuses a call to `to` given `login` (username, password): only
        a SIP address's, when it asks Twilio to log in (``sip_login``) and that is not its login."""
        return (self.sip_login is not None and to.strip().lower().startswith("sip:")
                and tuple(login) != tuple(self.sip_login))

    def digits_for(self, scenario: CallScenario) -> str | None:
        """The keys this caller presses at an IVR menu, or None."""
        if scenario.digits == AUTO:
            return self.ivr_digits.get(scenario.kind)
        return scenario.digits or None

    def run_call(self, scenario: CallScenario) -> CallTrace:
        """Play one inbound call from start to finish, status callbacks included."""
        session = CallSession(self, scenario, random.Random(self._seed(scenario)))
        trace = session.run()
        if self.call_log is not None:
            start = session.start.replace(microsecond=0)  # the log has whole seconds
            self.call_log.add(LoggedCall(trace.call_sid, scenario.caller, self.to_number, start,
                                         start + timedelta(seconds=round(trace.duration))))
        return trace

    def _seed(self, scenario: CallScenario) -> int:
        """The scenario's seed, or one from the simulator's generator (shared by the call threads)."""
        if scenario.seed is not None:
            return scenario.seed
        with self._lock:
            return self.rng.getrandbits(64)

    def unreached_call(self, scenario: CallScenario, start: datetime) -> LoggedCall:
        """A call that rang while the app could not be reached: Twilio played its error message
        for a few seconds and hung up, and sent no webhook. Only the call log has it."""
        start = start.replace(microsecond=0)
        call = LoggedCall(new_sid(random.Random(self._seed(scenario)), "CA"), scenario.caller, self.to_number, start,
                          start + timedelta(seconds=UNREACHED_SECONDS))
        if self.call_log is not None:
            self.call_log.add(call)
        return call
