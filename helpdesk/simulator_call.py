"""One inbound call, played as Twilio plays it, for :mod:`helpdesk.simulator`.

A :class:`CallSession` keeps a virtual clock for its call, sends signed webhook requests through
the simulator's transport, executes the returned TwiML verb by verb and records everything in a
:class:`~helpdesk.simulator_twiml.CallTrace`. Status callbacks are delivered as they fire, as
Twilio sends them: each when the call's virtual clock reaches it, between the TwiML requests (an
agent leg's "answered" before the ``<Dial>`` action). One exception: in a screened ring group,
the legs' callbacks come after the screening requests (``<Number url>``) they preceded. With the
simulator's ``out_of_order`` rate, a call's callbacks are instead held back and delivered after
the conversation, shuffled, as a slow or retrying delivery would. Reaching the agents
(``<Dial>``, ``<Enqueue>``) is in :mod:`helpdesk.simulator_legs`.
"""
from __future__ import annotations

import logging
import math
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta, timezone
from email.utils import format_datetime
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from helpdesk.simulator_legs import AgentLegs
from helpdesk.simulator_twiml import (API_VERSION, END, FALLBACK_PATH, INCOMING_PATH, MAX_DOCUMENTS, PROGRESS,
                                      SPOKEN, STATUS_PATH, WITHHELD, CallTrace, RequestRecord, TwiMLError,
                                      events_of, new_sid, number_of, parse_twiml, spoken_seconds)

if TYPE_CHECKING:  # pragma: no cover
    import random

    from helpdesk.simulator_twilio import CallScenario, Simulator

logger = logging.getLogger(__name__)


class CallSession(AgentLegs):
    """Plays one inbound call against the app; :meth:`run` returns its :class:`CallTrace`."""

    def __init__(self, sim: Simulator, scenario: CallScenario, rng: random.Random):
        self.sim, self.scenario, self.rng = sim, scenario, rng
        self.sid = new_sid(rng, "CA")
        self.trace = CallTrace(self.sid)
        self.start = sim.clock().astimezone(timezone.utc)
        self.now = 0.0  # virtual seconds since the incoming request
        self.status = "ringing"  # the inbound call's CallStatus in TwiML requests
        self.final_status = "completed"
        self.answered = self.abandoned = self.voicemail = self.over = False
        self.missed = False  # the app stopped trying to reach a person (Dial timed out, Leave)
        self.pending: list[tuple[str, str, list[tuple[str, str]], float]] = []
        self.held_back = rng.random() < sim.out_of_order  # callbacks after the conversation, shuffled

    # -- time -------------------------------------------------------------------------------
    def tick(self, until: float) -> None:
        """Move virtual time on, delivering the status callbacks that fire meanwhile; sleep in
        real time when the simulator runs at a speed."""
        while not self.held_back:
            due = [item for item in self.pending if item[3] <= until]
            if not due:
                break
            item = min(due, key=lambda pending: pending[3])  # the first of equals: the order they fired
            self.pending.remove(item)
            self._advance(item[3])
            self.callback(*item)
        self._advance(until)

    def _advance(self, until: float) -> None:
        if until > self.now:
            if self.sim.speed > 0:
                self.sim.sleep((until - self.now) / self.sim.speed)
            self.now = until

    def give_up_at(self) -> float:
        """When the caller hangs up if nobody has answered by then."""
        if self.answered:
            return math.inf
        patience = self.scenario.abandon_after
        limit = self.sim.max_call_seconds
        return limit if patience is None else min(patience, limit)

    def answer_at(self, earliest: float) -> float | None:
        """When a person answers a leg or dequeues the caller, if anybody does."""
        after = self.scenario.answer_after
        return None if after is None else max(after, earliest)

    def wait(self, seconds: float) -> bool:
        """Let the caller listen for a while; False when they hang up meanwhile."""
        if self.give_up_at() < self.now + seconds:
            self.tick(self.give_up_at())
            self.abandoned = self.over = True
            return False
        self.tick(self.now + seconds)
        return True

    def stamp(self, at: float) -> str:
        """A status callback ``Timestamp``: RFC 2822, UTC, whole seconds, as Twilio writes it (``+0000``)."""
        return format_datetime(self.start + timedelta(seconds=at))

    # -- requests ---------------------------------------------------------------------------
    def send(self, kind: str, url: str, params: list[tuple[str, str]], token: str, at: float,
             duplicate: bool = False) -> tuple[int, str]:
        status, body = self.sim.transport.post(url, list(params), self.sim.headers(url, params, token))
        self.trace.requests.append(RequestRecord(kind, url, tuple(params), status, token, at, duplicate))
        logger.debug("Call %s: %s request answered with HTTP %s", self.sid, kind, status)
        return status, body

    def deliver(self, kind: str, url: str, params: list[tuple[str, str]], at: float) -> tuple[int, str]:
        """Send one logical request, redelivered now and then with the same idempotency token."""
        token = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        answer = self.send(kind, url, params, token, at)
        if self.rng.random() < self.sim.duplicate:
            self.send(kind, url, params, token, at, duplicate=True)
        return answer

    def callback(self, kind: str, url: str, params: list[tuple[str, str]], at: float) -> None:
        """Deliver one status callback; an error answer is recorded, as Twilio's debugger would."""
        status, _ = self.deliver(kind, url, params, at)
        if not 200 <= status < 300:
            self.trace.errors.append(f"15003 {kind} callback got HTTP {status or 'connection failure'} from {url}")
            logger.warning("Call %s: the %s callback got HTTP %s", self.sid, kind, status)

    def base_params(self, status: str | None = None) -> list[tuple[str, str]]:
        caller, to = self.scenario.caller, self.sim.to_number
        params = [("AccountSid", self.sim.account_sid), ("ApiVersion", API_VERSION), ("CallSid", self.sid),
                  ("CallStatus", status or ("completed" if self.over else self.status)), ("Called", to),
                  ("CalledCountry", "GB"), ("Caller", caller), ("Direction", "inbound"), ("From", caller),
                  ("To", to), ("ToCountry", "GB")]
        if caller != WITHHELD:
            params += [("CallerCountry", "GB"), ("FromCountry", "GB")]
        return params

    def fail(self, message: str) -> str:
        self.trace.errors.append(message)
        logger.warning("Call %s: %s", self.sid, message)
        self.over = True
        return END

    def fetch(self, kind: str, url: str, extra: list[tuple[str, str]] = (), parse: bool = True) -> list | None:
        """Request TwiML; None (with the error recorded) when Twilio could not have used it."""
        status, body = self.deliver(kind, url, self.base_params() + list(extra), self.now)
        if not 200 <= status < 300:
            self.fail(f"11200 HTTP {status or 'connection failure'} from {url}")
            return None
        try:
            return parse_twiml(body) if parse else []
        except TwiMLError as exc:
            self.fail(f"{exc} (from {url})")
            return None

    def follow(self, kind: str, url: str, extra: list[tuple[str, str]]) -> str | tuple:
        """Request ``url`` and go on with its TwiML; once the caller has gone, Twilio only reports."""
        verbs = self.fetch(kind, url, extra, parse=not self.over)
        return END if verbs is None or self.over else (url, verbs)

    @staticmethod
    def resolve(document_url: str, reference: str | None) -> str | None:
        reference = (reference or "").strip()
        return urljoin(document_url, reference) if reference else None

    # -- the conversation -------------------------------------------------------------------
    def run(self) -> CallTrace:
        url = self.sim.base_url + INCOMING_PATH
        verbs = self.fetch("incoming", url)
        if verbs is None:
            # The Voice URL failed: Twilio requests the number's fallback URL, saying what went wrong.
            code = self.trace.errors[-1].split(" ", 1)[0]
            verbs = self.fetch("fallback", self.sim.base_url + FALLBACK_PATH,
                               [("ErrorCode", code if code.isdigit() else "11200"), ("ErrorUrl", url)])
            url = self.sim.base_url + FALLBACK_PATH
        step = END if verbs is None else (url, verbs)
        documents = 0
        while step != END:
            documents += 1
            if documents > MAX_DOCUMENTS:
                self.fail(f"more than {MAX_DOCUMENTS} TwiML documents in one call (a redirect loop?)")
                break
            document_url, verbs = step
            step = END
            for verb in verbs:
                answer = self.execute(verb, document_url)
                if answer is not None:
                    step = answer
                    break
        self.finish()
        return self.trace

    def execute(self, verb: ET.Element, url: str) -> str | tuple | None:
        """Run one verb: None to go on, END, or ``(url, verbs)`` of the next document."""
        tag = verb.tag
        if tag != "Reject" and not (tag == "Dial" and verb.get("answerOnBridge", "").lower() == "true"):
            self.status = "in-progress"  # Twilio answers the call to run anything else
        if tag in SPOKEN:
            return None if self.wait(spoken_seconds(verb)) else END
        if tag == "Hangup":
            self.over = True
            return END
        if tag == "Reject":
            if self.status == "ringing":
                self.final_status = "busy" if verb.get("reason") == "busy" else "no-answer"
            self.over = True
            return END
        if tag == "Redirect":
            target = self.resolve(url, verb.text)
            return self.follow("redirect", target, []) if target else self.fail("12100 <Redirect> without a URL")
        handler = {"Gather": self.gather, "Dial": self.dial, "Enqueue": self.enqueue, "Record": self.record}.get(tag)
        if handler is None:
            return self.fail(f"12100 the verb <{tag}> cannot be executed here (from {url})")
        return handler(verb, url)

    def gather(self, verb: ET.Element, url: str) -> str | tuple | None:
        for child in verb:
            if child.tag in SPOKEN and not self.wait(spoken_seconds(child)):
                return END
        digits = self.sim.digits_for(self.scenario) if "dtmf" in verb.get("input", "dtmf") else None
        limit = int(number_of(verb, "numDigits", 0))
        digits = digits[:limit] if digits and limit else digits
        if not self.wait(0.5 + 0.3 * len(digits) if digits else number_of(verb, "timeout", 5.0)):
            return END
        action = self.resolve(url, verb.get("action")) or url
        if digits:
            finished = "" if limit and len(digits) >= limit else verb.get("finishOnKey", "#")
            return self.follow("gather", action, [("Digits", digits), ("FinishedOnKey", finished)])
        if verb.get("actionOnEmptyResult", "").lower() == "true":
            return self.follow("gather", action, [("Digits", "")])
        return None

    def record(self, verb: ET.Element, url: str) -> str | tuple | None:
        if verb.get("playBeep", "true").lower() != "false" and not self.wait(1.0):
            return END
        if not self.scenario.leaves_voicemail:
            self.over = True  # hangs up without a message: Twilio requests nothing
            return END
        began = self.now
        length = max(1, min(round(self.scenario.talk_seconds), int(number_of(verb, "maxLength", 3600)) or 3600))
        self.tick(began + length)
        self.voicemail = self.over = True
        sid = new_sid(self.rng, "RE")
        address = f"https://api.twilio.com/{API_VERSION}/Accounts/{self.sim.account_sid}/Recordings/{sid}"
        recording = [("RecordingDuration", str(length)), ("RecordingSid", sid), ("RecordingUrl", address)]
        callback = self.resolve(url, verb.get("recordingStatusCallback"))
        if callback and "completed" in events_of(verb, "recordingStatusCallbackEvent"):
            self.pending.append(("recording-status", callback, [
                ("AccountSid", self.sim.account_sid), ("CallSid", self.sid),
                ("RecordingChannels", "1"), ("RecordingSource", "RecordVerb"),
                ("RecordingStartTime", self.stamp(began)), ("RecordingStatus", "completed")] + recording, self.now))
        action = self.resolve(url, verb.get("action")) or url
        return self.follow("record-action", action, recording + [("Digits", "hangup")])

    def finish(self) -> None:
        """Decide the outcome, then deliver the status callbacks Twilio would send afterwards."""
        trace = self.trace
        # A status callback the app refused (15003) leaves the call as it was.
        failed = any(not error.startswith("15003 ") for error in trace.errors)
        trace.outcome = ("failed" if failed else "answered" if self.answered else
                         "voicemail" if self.voicemail else "abandoned" if self.abandoned and not self.missed
                         else "no_answer")  # hanging up once nobody is being tried is not abandoning
        trace.duration = self.now
        seconds = round(self.now)
        self.pending.append(("call-status", self.sim.base_url + STATUS_PATH, self.base_params(self.final_status) + [
            ("CallDuration", str(seconds)), ("CallbackSource", PROGRESS), ("Duration", str(math.ceil(seconds / 60))),
            ("SequenceNumber", "0"), ("Timestamp", self.stamp(self.now))], self.now))  # the number's callback
        pending = sorted(self.pending, key=lambda item: item[3])  # stable: the order events fired
        self.pending = []
        if self.held_back:
            self.rng.shuffle(pending)
        for item in pending:
            self.callback(*item)
        logger.debug("Call %s ended: %s after %.0f s", self.sid, trace.outcome, self.now)
