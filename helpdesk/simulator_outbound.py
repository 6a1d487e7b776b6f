"""Twilio placing "Call back now" calls, as the simulator plays it for the demo.

"Call back now" asks Twilio's Calls resource to ring the agent's phone (callbacks/telephony.py).
In a demo there is no Twilio account, so the simulator's stand-in for the call log
(helpdesk/simulator_calllog.py) takes that request too, and :class:`OutboundCalls` plays the
call against the app as Twilio would: the agent's phone rings and answers, fetches the call's
Url (the "press 1" prompt), presses 1, and the caller's leg is dialled from the app's ``<Dial>``,
rings, and is answered or not; every status callback the app asked for is sent, signed. The
call and the caller's leg go into the call log, as Twilio's would. A share of the agent's calls
(``agent_unanswered``) are not taken: half ring out unanswered for the request's ``Timeout``,
half go to the phone's voicemail, which hears the prompt and presses nothing.

A desk phone (a SIP address) on a phone system that asks Twilio to log in (the simulator's
``sip_login``) refuses the call with SIP 407 unless the request gave that login.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta, timezone
from email.utils import format_datetime
from typing import TYPE_CHECKING, Callable

from helpdesk.simulator_calllog import CallLogError, LoggedCall
from helpdesk.simulator_twiml import (API_VERSION, PROGRESS, SIP_REFUSED_CODE, SIP_REFUSED_SECONDS, events_of,
                                      new_sid)

if TYPE_CHECKING:  # pragma: no cover
    from helpdesk.simulator_twilio import Simulator

logger = logging.getLogger("helpdesk.simulator")

# Seconds, at speed 1: the agent's phone rings, then the agent answers; the prompt is heard and
# 1 pressed; the caller's phone rings; the conversation.
AGENT_RINGS = 4.0
PRESSES_1_AFTER = 3.0
VOICEMAIL_AFTER = 15.0  # the agent's phone sends the call to its voicemail
CALLER_RINGS = 6.0
CALLER_NO_ANSWER = 25.0
TALK = (20.0, 60.0)


class OutboundCalls:
    """Takes Calls resource requests (:meth:`create`) and plays each call in a thread of its own.
    ``caller_answers`` is the share of callers who answer when called back; ``agent_unanswered``
    the share of calls the agent's phone does not take (rung out or sent to its voicemail)."""

    def __init__(self, sim: Simulator, rng: random.Random | None = None, caller_answers: float = 0.8,
                 agent_unanswered: float = 0.0, sleep: Callable[[float], None] = time.sleep):
        self.sim, self.rng, self.caller_answers, self.sleep = sim, rng or random.Random(), caller_answers, sleep
        self.agent_unanswered = agent_unanswered
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def create(self, form: dict[str, str]) -> dict:
        """Place a call, as POST Calls.json does: its resource, or CallLogError for a bad request."""
        for name, code in (("To", 21201), ("From", 21603), ("Url", 21205)):
            if not form.get(name, "").strip():
                raise CallLogError(400, code, f"No '{name}' is specified")
        if not form["Url"].startswith(("http://", "https://")):
            raise CallLogError(400, 21205, f"Url is not a valid URL: {form['Url']}")
        with self._lock:
            sid, seed = new_sid(self.rng, "CA"), self.rng.getrandbits(64)
        start = self.sim.clock().astimezone(timezone.utc).replace(microsecond=0)
        call = LoggedCall(sid, form["From"], form["To"], start, start + timedelta(hours=1), direction="outbound-api")
        if self.sim.call_log is not None:
            self.sim.call_log.add(call)
        thread = threading.Thread(target=self._play, args=(call, form, random.Random(seed)), daemon=True,
                                  name=f"outbound-{sid[-6:]}")
        with self._lock:  # the calls still going on, and this one: a demo places calls for hours
            self.threads = [placed for placed in self.threads if placed.is_alive()] + [thread]
        thread.start()
        resource = call.resource(self.sim.account_sid, start)
        return {**resource, "status": "queued", "end_time": None, "duration": None}

    def join(self, timeout: float | None = None) -> None:
        """Wait for the calls still going on to end (for tests)."""
        with self._lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout)

    # -- one call ------------------------------------------------------------------------------
    def _play(self, call: LoggedCall, form: dict[str, str], rng: random.Random) -> None:
        try:
            _Call(self, call, form, rng).run()
        except Exception:  # a demo's thread: say so, never take the simulator down
            logger.exception("Call back now call %s could not be played", call.sid)


class _Leg:
    """One leg of the call, sending the status callbacks its request or ``<Number>`` asked for."""

    def __init__(self, call: "_Call", params: list[tuple[str, str]], url: str | None, events: list[str]):
        self.call, self.params, self.url, self.events, self.sequence = call, params, url, events, 0

    def status(self, event: str, status: str, extra: list[tuple[str, str]] = ()) -> None:
        if self.url and event in self.events:
            self.sequence += 1
            self.call.post(self.url, [*self.params, ("CallStatus", status), ("CallbackSource", PROGRESS),
                                      ("Timestamp", self.call.stamp()), ("SequenceNumber", str(self.sequence)),
                                      *extra])


class _Call:
    def __init__(self, calls: OutboundCalls, call: LoggedCall, form: dict[str, str], rng: random.Random):
        self.calls, self.sim, self.call, self.form, self.rng = calls, calls.sim, call, form, rng
        self.now = 0.0
        self.agent = _Leg(self, self.leg_params(call, "outbound-api"), form.get("StatusCallback"),
                          events_of(form, "StatusCallbackEvent"))

    def leg_params(self, leg: LoggedCall, direction: str) -> list[tuple[str, str]]:
        """What every request about `leg` says of it (its CallStatus apart)."""
        parent = [("ParentCallSid", leg.parent_sid)] if leg.parent_sid else []
        return [("AccountSid", self.sim.account_sid), ("ApiVersion", API_VERSION), ("CallSid", leg.sid), *parent,
                ("Direction", direction), ("From", leg.from_), ("To", leg.to)]

    def wait(self, seconds: float) -> None:
        if self.sim.speed > 0:
            self.calls.sleep(seconds / self.sim.speed)
        self.now += seconds

    def stamp(self) -> str:
        return format_datetime(self.call.start_time + timedelta(seconds=self.now))

    def post(self, url: str, params: list[tuple[str, str]]) -> str:
        token = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        status, body = self.sim.transport.post(url, params, self.sim.headers(url, params, token))
        if not 200 <= status < 300:
            logger.warning("Call back now call %s: %s got HTTP %s", self.call.sid, url.split("?")[0], status)
        return body if 200 <= status < 300 else ""

    def run(self) -> None:
        self.agent.status("initiated", "initiated")
        if self.sim.refuses_sip(self.call.to, (self.form.get("SipAuthUsername"), self.form.get("SipAuthPassword"))):
            self.wait(SIP_REFUSED_SECONDS)
            self.agent.status("completed", "failed", [("CallDuration", "0"), ("SipResponseCode", SIP_REFUSED_CODE)])
            return self.end("failed")
        self.agent.status("ringing", "ringing")
        # Drawn only when asked for, so that a seed plays the same calls as before without it.
        unanswered = self.calls.agent_unanswered > 0 and self.rng.random() < self.calls.agent_unanswered
        if unanswered and self.rng.random() < 0.5:  # rings out: nobody at the phone
            self.wait(_seconds(self.form.get("Timeout"), 60))
            self.agent.status("completed", "no-answer", [("CallDuration", "0")])
            return self.end("no-answer")
        self.wait(VOICEMAIL_AFTER if unanswered else AGENT_RINGS)
        self.agent.status("answered", "in-progress")
        prompt = self.fetch(self.form["Url"], [])
        gather = prompt.find("Gather") if prompt is not None else None
        if gather is None:
            return self.hang_up()
        if unanswered:  # the voicemail records the prompt; nothing is pressed, and the app says goodbye
            self.wait(_seconds(gather.get("timeout"), 5) + 3)
            return self.hang_up()
        self.wait(PRESSES_1_AFTER)
        dialled = self.fetch(gather.get("action") or self.form["Url"], [("Digits", "1")])
        dial = dialled.find("Dial") if dialled is not None else None
        number = dial.find("Number") if dial is not None else None
        if number is None:
            return self.hang_up()
        self.dial_caller(dial, number)
        self.hang_up()

    def fetch(self, url: str, extra: list[tuple[str, str]]) -> ET.Element | None:
        body = self.post(url, [*self.agent.params, ("CallStatus", "in-progress"), *extra])
        try:
            return ET.fromstring(body) if body else None
        except ET.ParseError:
            logger.warning("Call back now call %s: the app's answer is not TwiML", self.call.sid)
            return None

    def dial_caller(self, dial: ET.Element, number: ET.Element) -> None:
        called = LoggedCall(new_sid(self.rng, "CA"), self.call.from_, (number.text or "").strip(),
                            self.call.start_time + timedelta(seconds=self.now), self.call.end_time,
                            direction="outbound-dial", parent_sid=self.call.sid)
        leg = _Leg(self, self.leg_params(called, "outbound-dial"), number.get("statusCallback"),
                   events_of(number, "statusCallbackEvent"))
        leg.status("initiated", "initiated")
        leg.status("ringing", "ringing")
        answers = self.rng.random() < self.calls.caller_answers
        self.wait(CALLER_RINGS if answers else CALLER_NO_ANSWER)
        talk = round(self.rng.uniform(*TALK)) if answers else 0
        if answers:
            leg.status("answered", "in-progress")
            self.wait(talk)
        status = "completed" if answers else "no-answer"
        leg.status("completed", status, [("CallDuration", str(talk))])
        if self.sim.call_log is not None:
            end = self.call.start_time + timedelta(seconds=self.now)
            self.sim.call_log.add(replace(called, end_time=end, status=status))
        if action := dial.get("action"):
            self.fetch(action, [("DialCallStatus", status), ("DialCallSid", called.sid),
                                ("DialCallDuration", str(talk))])

    def hang_up(self) -> None:
        self.agent.status("completed", "completed", [("CallDuration", str(round(self.now)))])
        self.end("completed")

    def end(self, status: str) -> None:
        if self.sim.call_log is not None:
            end = self.call.start_time + timedelta(seconds=round(self.now))
            self.sim.call_log.add(replace(self.call, end_time=end, status=status))


def _seconds(value: str | None, default: int) -> int:
    """A TwiML or Calls request's whole seconds, as Twilio reads them (its default when not given)."""
    return int(value) if value and value.strip().isdigit() else default
