"""TwiML as the call simulator reads it, and what a simulated call records.

The constants Twilio's requests use, the parsing of the TwiML the app returns (verbs, their
attributes, how long a spoken verb takes, whom a ``<Dial>`` rings), and :class:`CallTrace`, the
record of every request one call sent. :mod:`helpdesk.simulator_call` plays the calls.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import random

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
# A phone system that asks Twilio to log in (Simulator.refuses_sip) answers an INVITE without its
# login with 407, and one with another login with 407 again: the leg fails within this, unrung.
SIP_REFUSED_SECONDS = 0.5
SIP_REFUSED_CODE = "407"
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
    sip_refused: int = 0  # <Sip> legs the phone system refused: they came without its login

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


def number_of(element: ET.Element, name: str, default: float) -> float:
    try:
        value = float(element.get(name, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= 0 else default


def events_of(element: ET.Element | dict[str, str], name: str) -> list[str]:
    """The status callback events a noun (or a Calls request's form) asks for: completed if none."""
    return (element.get(name) or "completed").replace(",", " ").split()


def spoken_seconds(verb: ET.Element) -> float:
    """How long a Say, Play or Pause keeps the caller listening (``loop="0"`` counts once)."""
    loops = max(1, int(number_of(verb, "loop", 1)))
    if verb.tag == "Say":
        return len("".join(verb.itertext()).strip()) * SAY_SECONDS_PER_CHARACTER * loops
    if verb.tag == "Play":
        return (0.5 * len(verb.get("digits", "")) or PLAY_SECONDS) * loops
    if verb.tag == "Pause":
        return number_of(verb, "length", 1.0)
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
