"""The simulator's stand-in for Twilio places "Call back now" calls and plays them against the
app's own TwiML (callbacks.telephony), as Twilio would (no network, no app)."""
from __future__ import annotations

import random
from collections import Counter
from urllib.parse import urlsplit

from click.testing import CliRunner

from callbacks.telephony import CALL_EVENTS, confirm_twiml, connect_twiml
from helpdesk.simulator import Simulator, simulate_command
from helpdesk.simulator_calllog import CallLog
from helpdesk.simulator_outbound import OutboundCalls

from .test_simulator import BASE, START, TOKEN, FakeTransport

ACCOUNT = "AC" + "1" * 32
DESK = "+448001217479"
AGENT_PHONE, CALLER = "+447700900555", "+447700900123"


def connect(params):
    """The app's connect URL: the prompt, then, once 1 is pressed, the caller dialled."""
    if params.get("Digits") == "1":
        return connect_twiml(CALLER, DESK, BASE, 7)
    return confirm_twiml(BASE, 7)


def place(calls: int, **options) -> tuple[FakeTransport, CallLog]:
    transport, log = FakeTransport({"/twilio/voice/callback-connect": connect}), CallLog()
    sim = Simulator(BASE, TOKEN, ACCOUNT, transport, clock=lambda: START, call_log=log, speed=0)
    outbound = OutboundCalls(sim, random.Random(2), caller_answers=1.0, **options)
    connect_url, status_url = (f"{BASE}/twilio/voice/callback-{name}?callback=7" for name in ("connect", "status"))
    for _ in range(calls):
        outbound.create({"To": AGENT_PHONE, "From": DESK, "Url": connect_url, "StatusCallback": status_url,
                         "StatusCallbackEvent": " ".join(CALL_EVENTS), "Timeout": "30"})
    outbound.join(timeout=10)
    return transport, log


def by_call(transport: FakeTransport) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Each agent's call's requests, in order: (the URL's path, the parameters)."""
    calls: dict[str, list] = {}
    for url, params, _ in transport.requests:
        values = dict(params)
        sid = values.get("ParentCallSid") or values["CallSid"]
        calls.setdefault(sid, []).append((urlsplit(url).path.rsplit("/", 1)[-1], values))
    return calls


def test_the_agents_phone_answers_presses_1_and_the_caller_is_dialled():
    transport, log = place(3)

    for requests in by_call(transport).values():
        agent = [(path, p["CallStatus"]) for path, p in requests if "ParentCallSid" not in p]
        assert agent == [("callback-status", "initiated"), ("callback-status", "ringing"),
                         ("callback-status", "in-progress"), ("callback-connect", "in-progress"),
                         ("callback-connect", "in-progress"), ("callback-dial", "in-progress"),
                         ("callback-status", "completed")]
        assert [p.get("Digits") for path, p in requests if path == "callback-connect"] == [None, "1"]
        assert [p["CallStatus"] for _, p in requests if "ParentCallSid" in p][-1] == "completed"
    assert Counter(call.direction for call in log.matching()) == {"outbound-api": 3, "outbound-dial": 3}


def test_an_agents_phone_that_does_not_take_the_call_rings_out_or_its_voicemail_presses_nothing():
    transport, log = place(12, agent_unanswered=1.0)

    ways = Counter()
    for sid, requests in by_call(transport).items():
        statuses = [(path, p["CallStatus"]) for path, p in requests]
        assert all("ParentCallSid" not in p for _, p in requests)  # the caller is never dialled
        assert all("Digits" not in p for _, p in requests)
        last = requests[-1][1]
        if statuses == [("callback-status", "initiated"), ("callback-status", "ringing"),
                        ("callback-status", "no-answer")]:
            ways["rang out"] += 1
            assert (last["CallDuration"], log.get(sid).status) == ("0", "no-answer")
        else:  # the voicemail heard the prompt, waited out its 10 s, and heard goodbye
            assert statuses == [("callback-status", "initiated"), ("callback-status", "ringing"),
                                ("callback-status", "in-progress"), ("callback-connect", "in-progress"),
                                ("callback-status", "completed")]
            assert log.get(sid).status == "completed" and int(last["CallDuration"]) >= 15 + 10
            ways["voicemail"] += 1
    assert set(ways) == {"rang out", "voicemail"} and sum(ways.values()) == 12
    assert Counter(call.direction for call in log.matching()) == {"outbound-api": 12}



def test_the_share_not_taken_needs_the_call_log_where_call_back_now_calls_are_placed(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)

    alone = CliRunner().invoke(simulate_command, ["--url", BASE, "--call-back-now-unanswered-rate", "0.2"])
    too_many = CliRunner().invoke(simulate_command, ["--url", BASE, "--call-back-now-unanswered-rate", "1.5"])

    assert alone.exit_code == 2
    assert "--call-back-now-unanswered-rate" in alone.output and "give --call-log-port too" in alone.output
    assert too_many.exit_code == 2 and "1.5 is not in the range 0<=x<=1" in too_many.output
