"""The TwiML interpreter behind :mod:`helpdesk.simulator`: one inbound call, played as Twilio plays it.

A :class:`CallSession` keeps a virtual clock for its call, sends signed webhook requests through
the simulator's transport, executes the returned TwiML verb by verb and records everything in a
:class:`CallTrace`. Status callbacks are delivered as they fire, as Twilio sends them: each when
the call's virtual clock reaches it, between the TwiML requests (an agent leg's "answered" before
the ``<Dial>`` action). One exception: in a screened ring group, the legs' callbacks come after
the screening requests (``<Number url>``) they preceded. With the simulator's ``out_of_order``
rate, a call's callbacks are instead held back and delivered after the conversation, shuffled,
as a slow or retrying delivery would.
"""
from __future__ import annotations

import hashlib
import logging
import math
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from email.utils import format_datetime
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:  # pragma: no cover
    import random

    from helpdesk.simulator import CallScenario, Simulator

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
PROGRESS = "call-progress-events"
FORM = "application/x-www-form-urlencoded"
INCOMING_PATH = "/twilio/voice/incoming"
STATUS_PATH = "/twilio/voice/status"
FALLBACK_PATH = "/twilio/voice/fallback"  # the number's fallback URL, as the README says to set it
AGENT_DEQUEUE_PATH = "/twilio/voice/agent-dequeue"  # the agents' phones' Voice URL, as the README says to set it
WITHHELD = "anonymous"
SAY_SECONDS_PER_CHARACTER = 0.07
PLAY_SECONDS = 5.0  # the simulator cannot know a clip's length; assume a short one
RING_DELAY = 1.0  # from dialling an agent's leg to its phone ringing
MAX_DOCUMENTS = 50  # a guard against redirect loops in the app
SPOKEN = ("Say", "Play", "Pause")
END = "end"  # a verb's answer meaning "the call is over"


class TwiMLError(ValueError):
    """The app answered with something Twilio could not execute."""


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the simulator sent, as the app received it."""

    kind: str  # incoming, gather, redirect, dial-action, wait, dequeue, enqueue-action, ...
    url: str
    params: tuple[tuple[str, str], ...]
    status: int  # 0 when the connection failed
    token: str  # the I-Twilio-Idempotency-Token header
    at: float  # virtual seconds after the call arrived (for callbacks: when the event fired)
    duplicate: bool = False  # a redelivery of the request before it

    def param(self, name: str, default: str | None = None) -> str | None:
        """The value of one form parameter."""
        return next((value for key, value in self.params if key == name), default)


@dataclass
class CallTrace:
    """What happened on one simulated call: every request, every error and the outcome."""

    call_sid: str
    requests: list[RequestRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outcome: str = "failed"  # answered, abandoned, no_answer, voicemail or failed
    answer_delay: float | None = None  # seconds from arrival until a person answered
    machine_answered: bool = False  # an agent's voicemail, not a person, was put through
    picked_up: float | None = None  # when the answering phone picked up (before a screening prompt)
    duration: float = 0.0  # virtual seconds from arrival until the caller's line closed

    def sent(self, kind: str, *, duplicates: bool = False) -> list[RequestRecord]:
        """The requests of one kind, without redeliveries unless asked for."""
        return [r for r in self.requests if r.kind == kind and (duplicates or not r.duplicate)]


def new_sid(rng: random.Random, prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hexadecimal digits."""
    return "%s%032x" % (prefix, rng.getrandbits(128))


def parse_twiml(body: str) -> list[ET.Element]:
    """The verbs of a TwiML document, or :class:`TwiMLError` (Twilio's error 12100)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise TwiMLError(f"12100 the document is not valid XML ({exc})") from None
    if root.tag != "Response":
        raise TwiMLError(f"12100 the document's root is <{root.tag}>, not <Response>")
    return list(root)


def answered_twiml(status: int, body: str) -> list[ET.Element]:
    """The verbs of the TwiML a request was answered with, or :class:`TwiMLError`: 11200 when
    Twilio could not have used the answer at all, 12100 when it is not TwiML."""
    if not 200 <= status < 300:
        raise TwiMLError(f"11200 HTTP {status or 'connection failure'}")
    return parse_twiml(body)


def _number(element: ET.Element, name: str, default: float) -> float:
    try:
        value = float(element.get(name, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def _events(element: ET.Element, name: str) -> list[str]:
    return (element.get(name) or "completed").replace(",", " ").split()


def spoken_seconds(verb: ET.Element) -> float:
    """How long a Say, Play or Pause keeps the caller listening (``loop="0"`` counts once)."""
    loops = max(1, int(_number(verb, "loop", 1)))
    if verb.tag == "Say":
        return len("".join(verb.itertext()).strip()) * SAY_SECONDS_PER_CHARACTER * loops
    if verb.tag == "Play":
        return (0.5 * len(verb.get("digits", "")) or PLAY_SECONDS) * loops
    if verb.tag == "Pause":
        return _number(verb, "length", 1.0)
    return 0.0


def dial_targets(dial: ET.Element) -> list[tuple[str, ET.Element]]:
    """Each leg a ``<Dial>`` rings: its ``To`` and the noun carrying its attributes."""
    if len(dial) == 0 and (dial.text or "").strip():
        return [(dial.text.strip(), dial)]
    targets = []
    for noun in dial:
        name = (noun.findtext("Identity") or noun.text or "").strip()
        if noun.tag not in ("Number", "Client", "Sip") or not name:
            raise TwiMLError(f"12100 the simulator cannot dial <{noun.tag}>{name}</{noun.tag}>")
        targets.append(("client:" + name if noun.tag == "Client" else name, noun))
    if not targets:
        raise TwiMLError("12100 <Dial> names nobody to dial")
    return targets


class CallSession:
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
        headers = {"X-Twilio-Signature": self.sim.sign(url, params), "I-Twilio-Idempotency-Token": token,
                   "Content-Type": FORM, "User-Agent": "TwilioProxy/1.1"}
        status, body = self.sim.transport.post(url, list(params), headers)
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
        limit = int(_number(verb, "numDigits", 0))
        digits = digits[:limit] if digits and limit else digits
        if not self.wait(0.5 + 0.3 * len(digits) if digits else _number(verb, "timeout", 5.0)):
            return END
        action = self.resolve(url, verb.get("action")) or url
        if digits:
            finished = "" if limit and len(digits) >= limit else verb.get("finishOnKey", "#")
            return self.follow("gather", action, [("Digits", digits), ("FinishedOnKey", finished)])
        if verb.get("actionOnEmptyResult", "").lower() == "true":
            return self.follow("gather", action, [("Digits", "")])
        return None

    def dial(self, verb: ET.Element, url: str) -> str | tuple | None:
        try:
            targets = dial_targets(verb)
        except TwiMLError as exc:
            return self.fail(f"{exc} (from {url})")
        began, timeout = self.now, _number(verb, "timeout", 30.0)
        answer, quit_at = self.answer_at(began + RING_DELAY), max(self.give_up_at(), began)
        caller_id = verb.get("callerId") or self.scenario.caller
        machine, pickup = self.voicemail_pickup(len(targets), began + timeout, answer, quit_at)
        screens = [self.resolve(url, noun.get("url")) for _, noun in targets]
        machine_leg = None  # (sid, hung up at) of a screened leg that voicemail answered
        if machine is not None and screens[machine] is None:
            answer, self.trace.machine_answered = pickup, True  # nothing stops it: put through
        elif machine is not None:
            sid = new_sid(self.rng, "CA")
            self.tick(pickup)
            heard = self.screen_leg(screens[machine], sid, targets[machine][0], caller_id, person=False)
            if heard is None:
                return END
            seconds, put_through = heard
            if put_through:  # the screening TwiML let voicemail through
                answer, self.trace.machine_answered, machine_leg = pickup + seconds, True, None
            else:
                machine_leg = (sid, pickup + seconds)
        people = [index for index in range(len(targets)) if machine_leg is None or index != machine]
        if answer is not None and answer < began + timeout and answer < quit_at and people:
            ended, result = answer, "completed"
        elif machine_leg is not None and len(targets) == 1 and machine_leg[1] < min(quit_at, began + timeout):
            ended, result = machine_leg[1], "unbridged"  # its only leg was screened out
        elif quit_at <= began + timeout:
            ended, result = quit_at, "canceled"
        else:
            ended, result = began + timeout, "no-answer"
        if result == "completed" and self.trace.machine_answered:
            winner = machine
        elif result == "completed":
            winner = people[self.rng.randrange(len(people))]
        else:
            winner = -1
        talk = round(self.scenario.talk_seconds) if result == "completed" else 0
        legs = [new_sid(self.rng, "CA") for _ in targets]
        if machine_leg is not None:
            legs[machine] = machine_leg[0]
        picked_up = ended  # when the winner's phone answered; it is put through at `ended`
        if winner >= 0 and screens[winner] is not None and not self.trace.machine_answered:
            self.tick(answer)
            heard = self.screen_leg(screens[winner], legs[winner], targets[winner][0], caller_id, person=True,
                                    deadline=quit_at)
            if heard is None:
                return END
            if heard[1]:
                ended = answer + heard[0]
            else:  # the caller hung up while the agent heard the prompt
                ended, result, talk = quit_at, "canceled", 0
        for index, ((to, noun), leg) in enumerate(zip(targets, legs)):
            callback = self.resolve(url, noun.get("statusCallback"))
            if not callback:
                continue
            wanted = _events(noun, "statusCallbackEvent")
            if machine_leg is not None and index == machine:
                self.leg_callbacks(leg, to, caller_id, callback, wanted, began, machine_leg[1], pickup, "completed",
                                   round(machine_leg[1] - pickup))
            elif index == winner:  # talk is 0 unless the caller was put through
                self.leg_callbacks(leg, to, caller_id, callback, wanted, began, ended + talk, picked_up, "completed",
                                   talk + round(ended - picked_up))
            else:
                terminal = "no-answer" if result == "no-answer" else "canceled"
                self.leg_callbacks(leg, to, caller_id, callback, wanted, began, ended, None, terminal, 0)
        self.tick(ended)
        if result == "completed":
            self.answered, self.status, self.trace.answer_delay = True, "in-progress", ended
            self.trace.picked_up = picked_up
            self.tick(ended + talk)
        elif result == "canceled":
            self.abandoned = self.over = True
        else:
            self.missed = True
        action = self.resolve(url, verb.get("action"))
        dial_status = "completed" if result == "unbridged" else result
        if result == "canceled":
            # Twilio documents "canceled" for a Dial cancelled through its API, and not what a
            # caller hanging up while the phones ring gives: send each plausible value, chosen
            # by the call's SID (drawing from the generator would change every later call).
            dial_status = ("canceled", "no-answer", "completed")[int(self.sid[-4:], 16) % 3]
        dialled = legs[winner] if winner >= 0 else (legs[machine] if machine_leg is not None else legs[0])
        extra = [("DialBridged", str(result == "completed").lower()), ("DialCallDuration", str(talk)),
                 ("DialCallSid", dialled), ("DialCallStatus", dial_status)]
        if action:
            return self.follow("dial-action", action, extra)
        return END if self.over else None

    def voicemail_pickup(self, count: int, give_up: float, answer: float | None,
                         quit_at: float) -> tuple[int | None, float]:
        """Which leg's voicemail picks up, and when: only if it comes before anybody answers."""
        after = self.scenario.agent_voicemail_after
        if after is None:
            return None, 0.0
        pickup = max(after, self.now + RING_DELAY)
        if pickup >= min(give_up, quit_at, math.inf if answer is None else answer):
            return None, 0.0
        return self.rng.randrange(count), pickup

    def leg_params(self, leg: str, to: str, caller_id: str, status: str) -> list[tuple[str, str]]:
        """What Twilio sends about one agent leg of a ``<Dial>``."""
        return [("AccountSid", self.sim.account_sid), ("ApiVersion", API_VERSION), ("CallSid", leg),
                ("CallStatus", status), ("Called", to), ("Caller", caller_id), ("Direction", "outbound-dial"),
                ("From", caller_id), ("ParentCallSid", self.sid), ("To", to)]

    def screen_leg(self, url: str, leg: str, to: str, caller_id: str, *, person: bool,
                   deadline: float = math.inf) -> tuple[float, bool] | None:
        """Run a ``<Number url>`` document on an agent leg that answered, as whoever answered it.

        A person presses 1 once the prompt has been said (the session's clock moves on with it);
        voicemail presses nothing and sends nothing more. Returns the seconds it took and whether
        the leg is then put through to the caller; None (the error recorded) if Twilio could not
        have run it. A person stops when the caller hangs up (``deadline``).
        """
        status, body = self.deliver("screen", url, self.leg_params(leg, to, caller_id, "in-progress"), self.now)
        began = self.now
        seconds = 0.0
        try:
            verbs = answered_twiml(status, body)
            for verb in verbs:
                if verb.tag in SPOKEN:
                    seconds += spoken_seconds(verb)
                elif verb.tag == "Hangup":
                    return seconds, False
                elif verb.tag == "Gather":
                    seconds += sum(spoken_seconds(child) for child in verb if child.tag in SPOKEN)
                    if not person:
                        seconds += _number(verb, "timeout", 5.0)
                        continue
                    seconds += 0.8  # finds the key and presses it
                    if began + seconds >= deadline:
                        return deadline - began, False
                    self.tick(began + seconds)
                    action = self.resolve(url, verb.get("action")) or url
                    status, body = self.deliver("screen-accept", action, self.leg_params(
                        leg, to, caller_id, "in-progress") + [("Digits", "1"), ("FinishedOnKey", "")], self.now)
                    if any(answer.tag == "Hangup" for answer in answered_twiml(status, body)):
                        raise TwiMLError("the app hung up on an agent who pressed 1")
                    return seconds, True
                else:
                    raise TwiMLError(f"12100 <{verb.tag}> cannot be run on an agent's leg")
        except TwiMLError as exc:
            self.fail(f"{exc} (from {url})")
            return None
        return seconds, True

    def leg_callbacks(self, leg: str, to: str, caller_id: str, url: str, wanted: list[str], began: float,
                      ended: float, answered_at: float | None, terminal: str, duration: int) -> None:
        """Queue the status callbacks that one agent leg's noun asked for."""
        timeline = [("initiated", "initiated", began)]
        if began + RING_DELAY <= (ended if answered_at is None else answered_at):
            timeline.append(("ringing", "ringing", began + RING_DELAY))
        if answered_at is not None:
            timeline.append(("answered", "in-progress", answered_at))
        timeline.append(("completed", terminal, ended))
        sequence = 0
        for event, status, at in timeline:
            if event not in wanted:
                continue
            params = self.leg_params(leg, to, caller_id, status) + [
                ("CallbackSource", PROGRESS), ("SequenceNumber", str(sequence)), ("Timestamp", self.stamp(at))]
            if event == "completed":
                params += [("CallDuration", str(duration)), ("Duration", str(math.ceil(duration / 60))),
                           ("SipResponseCode", "200" if answered_at is not None else "487")]
            self.pending.append(("leg-status", url, params, at))
            sequence += 1

    def enqueue(self, verb: ET.Element, url: str) -> str | tuple | None:
        name = (verb.text or "").strip()
        queued = [("QueueSid", "QU" + hashlib.md5(name.encode()).hexdigest())]
        action = self.resolve(url, verb.get("action"))
        wait_url = self.resolve(url, verb.get("waitUrl"))
        entered = self.now
        answer = self.answer_at(entered)
        quit_at = max(min(self.give_up_at(), entered + self.sim.max_call_seconds), entered)
        event_at = quit_at if answer is None else min(answer, quit_at)
        fetched = False
        while wait_url and (not fetched or self.now < event_at):
            fetched = True
            waited = str(int(self.now - entered))
            verbs = self.fetch("wait", wait_url, queued + [
                ("AvgQueueTime", waited), ("CurrentQueueSize", "1"), ("MaxQueueSize", "100"),
                ("QueuePosition", "1"), ("QueueTime", waited)])
            if verbs is None:
                return END
            result, wait_url = self.hold(verbs, wait_url, event_at)
            if result in ("leave", "hangup"):
                self.over, self.missed = result == "hangup", True
                extra = [("QueueResult", result)] + queued + [("QueueTime", str(int(self.now - entered)))]
                return self.follow("enqueue-action", action, extra) if action else (END if self.over else None)
            if result == END:
                return END
        self.tick(event_at)
        queued.append(("QueueTime", str(int(event_at - entered))))
        if answer is not None and answer <= quit_at:
            agent = new_sid(self.rng, "CA")
            reached, dequeue_url = self.agent_dequeues(agent, name)
            if not reached:
                return END
            # A <Queue url> is asked about the caller, and its TwiML played to them, before the bridge.
            verbs = self.fetch("dequeue", dequeue_url, queued + [("DequeingCallSid", agent)]) if dequeue_url else []
            if verbs is None:
                return END
            self.answered, self.trace.answer_delay = True, event_at
            self.tick(self.now + sum(spoken_seconds(v) for v in verbs) + round(self.scenario.talk_seconds))
            result = "bridged"
        else:
            self.abandoned = self.over = True
            result = "hangup"
        if action:
            return self.follow("enqueue-action", action, [("QueueResult", result)] + queued)
        return END if self.over else None

    def agent_dequeues(self, agent: str, queue: str) -> tuple[bool, str | None]:
        """An agent's phone calls the help desk to take the next caller: Twilio asks the agents'
        Voice URL, whose ``<Dial><Queue>`` must name the caller's queue. Returns whether the agent
        reaches the caller (the error recorded if not), and the ``<Queue url>``, if any."""
        url = self.sim.base_url + AGENT_DEQUEUE_PATH
        params = [("AccountSid", self.sim.account_sid), ("ApiVersion", API_VERSION), ("CallSid", agent),
                  ("CallStatus", "ringing"), ("Called", self.sim.to_number), ("Caller", "client:agent"),
                  ("Direction", "inbound"), ("From", "client:agent"), ("To", self.sim.to_number)]
        status, body = self.deliver("agent-dequeue", url, params, self.now)
        try:
            verbs = answered_twiml(status, body)
            nouns = [noun for verb in verbs if verb.tag == "Dial" for noun in verb if noun.tag == "Queue"]
            if not nouns:
                raise TwiMLError("12100 the agents' Voice URL dials no <Queue>")
            named = (nouns[0].text or "").strip()
            if named != queue:
                raise TwiMLError(f"the agents' phones take callers from the queue {named!r}, but they wait in "
                                 f"{queue!r}: nobody would ever reach them")
        except TwiMLError as exc:
            self.fail(f"{exc} (from {url})")
            return False, None
        return True, self.resolve(url, nouns[0].get("url"))

    def hold(self, verbs: list[ET.Element], url: str, until: float) -> tuple[str, str]:
        """Run wait TwiML until it runs out or ``until``; the result and the next wait URL."""
        began = self.now
        for verb in verbs:
            if verb.tag in SPOKEN or verb.tag == "Gather":  # nobody presses keys on hold
                seconds = spoken_seconds(verb) + sum(spoken_seconds(c) for c in verb)
                seconds += _number(verb, "timeout", 5.0) if verb.tag == "Gather" else 0.0
                self.tick(min(until, self.now + seconds))
                if self.now >= until:
                    return "more", url
            elif verb.tag in ("Leave", "Hangup"):
                return verb.tag.lower(), url
            elif verb.tag == "Redirect" and self.resolve(url, verb.text):
                return "more", self.resolve(url, verb.text)
            else:
                return self.fail(f"12100 <{verb.tag}> is not allowed in wait TwiML (from {url})"), url
        self.tick(min(until, began + 1.0))  # never re-request the wait URL more than once a second
        return "more", url

    def record(self, verb: ET.Element, url: str) -> str | tuple | None:
        if verb.get("playBeep", "true").lower() != "false" and not self.wait(1.0):
            return END
        if not self.scenario.leaves_voicemail:
            self.over = True  # hangs up without a message: Twilio requests nothing
            return END
        began = self.now
        length = max(1, min(round(self.scenario.talk_seconds), int(_number(verb, "maxLength", 3600)) or 3600))
        self.tick(began + length)
        self.voicemail = self.over = True
        sid = new_sid(self.rng, "RE")
        address = f"https://api.twilio.com/{API_VERSION}/Accounts/{self.sim.account_sid}/Recordings/{sid}"
        recording = [("RecordingDuration", str(length)), ("RecordingSid", sid), ("RecordingUrl", address)]
        callback = self.resolve(url, verb.get("recordingStatusCallback"))
        if callback and "completed" in _events(verb, "recordingStatusCallbackEvent"):
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
