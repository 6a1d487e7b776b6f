"""The call simulator plays Twilio's part faithfully against canned TwiML (no network)."""
from __future__ import annotations

import random
import re
import threading
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from helpdesk import simulator as simulator_module
from helpdesk.simulator import (
    CallScenario,
    RequestsTransport,
    Simulator,
    TrafficProfile,
    run_traffic,
    simulate_command,
)

TOKEN = "test-auth-token"
BASE = "http://127.0.0.1:5000"
START = datetime(2025, 3, 3, 9, 0, 0, tzinfo=timezone.utc)
SID = re.compile(r"^CA[0-9a-f]{32}$")
AGENT_EVENTS = 'statusCallback="agent-status" statusCallbackEvent="initiated ringing answered completed"'

MENU = ('<Response><Gather numDigits="1" action="menu" timeout="5"><Say>Press 1 for DWP, 2 for anything else.'
        '</Say></Gather><Redirect>/twilio/voice/agents</Redirect></Response>')
RING_GROUP = (f'<Response><Dial action="dial-action" timeout="30" answerOnBridge="true" ringTone="uk">'
              f'<Number {AGENT_EVENTS}>+441632960001</Number><Client {AGENT_EVENTS}>alice</Client></Dial></Response>')
VOICEMAIL = ('<Response><Say>Please leave a message.</Say><Record action="voicemail" maxLength="120" '
             'recordingStatusCallback="recording"/><Hangup/></Response>')
QUEUE = '<Response><Enqueue action="queue-action" waitUrl="queue-wait">helpdesk</Enqueue></Response>'


def _dial_action(params):
    return "<Response><Hangup/></Response>" if params["DialCallStatus"] == "completed" else VOICEMAIL


class FakeTransport:
    """Serves canned TwiML by URL path (a string, ``(status, body)`` or a function of the params)."""

    def __init__(self, routes):
        self.routes = routes
        self.requests = []
        self._lock = threading.Lock()

    def post(self, url, params, headers):
        with self._lock:
            self.requests.append((url, list(params), dict(headers)))
        answer = self.routes.get(urlsplit(url).path, "<Response/>")
        answer = answer(dict(params)) if callable(answer) else answer
        return answer if isinstance(answer, tuple) else (200, answer)

    def paths(self):
        return [urlsplit(url).path for url, _, _ in self.requests]


def make(routes, **options):
    transport = FakeTransport(routes)
    options.setdefault("rng", random.Random(1))
    return Simulator(BASE, TOKEN, "AC" + "1" * 32, transport, clock=lambda: START, **options), transport


def ring_group_app(**extra):
    return {"/twilio/voice/incoming": RING_GROUP, "/twilio/voice/dial-action": _dial_action, **extra}


def seconds_after_start(stamp):
    return (parsedate_to_datetime(stamp) - START).total_seconds()


def test_every_request_carries_a_signature_that_twilios_validator_accepts():
    sim, transport = make(ring_group_app())
    sim.run_call(CallScenario(answer_after=None, leaves_voicemail=True))
    assert len(transport.requests) > 5
    for url, params, headers in transport.requests:
        signature = headers["X-Twilio-Signature"]
        assert RequestValidator(TOKEN).validate(url, dict(params), signature), url
        assert not RequestValidator("another-token").validate(url, dict(params), signature)
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_signatures_match_twilio_pythons_own_vector():
    sim = Simulator(BASE, "12345", transport=FakeTransport({}))
    params = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"),
              ("To", "+18005551212"), ("Caller", "+14158675309")]
    assert sim.sign("https://mycompany.com/myapp.php?foo=1&bar=2", params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_the_incoming_request_looks_like_twilios_for_a_ringing_inbound_call():
    sim, transport = make({})
    trace = sim.run_call(CallScenario(caller="+447700900123"))
    url, params, _ = transport.requests[0]
    form = dict(params)
    assert url == BASE + "/twilio/voice/incoming"
    assert SID.match(form["CallSid"]) and form["CallSid"] == trace.call_sid
    assert form["AccountSid"] == "AC" + "1" * 32
    assert (form["From"], form["Caller"], form["To"], form["Called"]) == (
        "+447700900123", "+447700900123", "+448001217479", "+448001217479")
    assert (form["CallStatus"], form["Direction"], form["ApiVersion"], form["FromCountry"]) == (
        "ringing", "inbound", "2010-04-01", "GB")
    assert "ParentCallSid" not in form and "Timestamp" not in form


def test_a_withheld_caller_arrives_as_anonymous_without_a_country():
    sim, transport = make({})
    sim.run_call(CallScenario(caller="anonymous"))
    form = dict(transport.requests[0][1])
    assert form["From"] == "anonymous" and "FromCountry" not in form


def test_an_answered_ring_group_sends_child_leg_callbacks_timed_by_answer_after():
    sim, _ = make(ring_group_app())
    trace = sim.run_call(CallScenario(answer_after=18, talk_seconds=95))
    legs = trace.sent("leg-status")
    assert {leg.param("ParentCallSid") for leg in legs} == {trace.call_sid}
    assert {leg.param("Direction") for leg in legs} == {"outbound-dial"}
    assert {leg.param("To") for leg in legs} == {"+441632960001", "client:alice"}
    answered = [leg for leg in legs if leg.param("CallStatus") == "in-progress"]
    assert len(answered) == 1
    assert seconds_after_start(answered[0].param("Timestamp")) == pytest.approx(18, abs=1)
    winner = answered[0].param("CallSid")
    events = [leg for leg in legs if leg.param("CallSid") == winner]
    assert [e.param("CallStatus") for e in events] == ["initiated", "ringing", "in-progress", "completed"]
    assert [e.param("SequenceNumber") for e in events] == ["0", "1", "2", "3"]
    assert events[-1].param("CallDuration") == "95" and events[-1].param("Duration") == "2"
    assert {e.param("CallbackSource") for e in events} == {"call-progress-events"}
    loser = [leg for leg in legs if leg.param("CallSid") != winner]
    assert loser[-1].param("CallStatus") == "canceled" and loser[-1].param("CallDuration") == "0"
    (action,) = trace.sent("dial-action")
    assert action.url == BASE + "/twilio/voice/dial-action"
    assert (action.param("DialCallStatus"), action.param("DialCallSid"), action.param("DialCallDuration")) == (
        "completed", winner, "95")
    assert trace.outcome == "answered" and trace.answer_delay == pytest.approx(18)


def test_a_ring_group_nobody_answers_times_out_and_the_caller_leaves_a_voicemail():
    sim, _ = make(ring_group_app())
    trace = sim.run_call(CallScenario(answer_after=45, leaves_voicemail=True, talk_seconds=40))
    (action,) = trace.sent("dial-action")
    assert action.param("DialCallStatus") == "no-answer" and action.param("DialCallDuration") == "0"
    ends = [leg for leg in trace.sent("leg-status") if leg.param("SequenceNumber") == "2"]
    assert [leg.param("CallStatus") for leg in ends] == ["no-answer", "no-answer"]
    assert all(seconds_after_start(leg.param("Timestamp")) == pytest.approx(30, abs=1) for leg in ends)
    assert trace.outcome == "voicemail" and trace.answer_delay is None


def test_a_caller_who_hangs_up_while_ringing_cancels_the_dial_and_its_twiml_is_not_followed():
    routes = ring_group_app()
    routes["/twilio/voice/dial-action"] = "<Response><Redirect>/twilio/voice/after</Redirect></Response>"
    sim, transport = make(routes)
    statuses = set()
    for _ in range(30):
        trace = sim.run_call(CallScenario(answer_after=None, abandon_after=10))
        (action,) = trace.sent("dial-action")
        # The caller's own call is over; what DialCallStatus says then, Twilio does not document.
        assert action.param("CallStatus") == "completed" and action.param("DialBridged") == "false"
        statuses.add(action.param("DialCallStatus"))
        assert {leg.param("CallStatus") for leg in trace.sent("leg-status")
                if leg.param("SequenceNumber") == "2"} == {"canceled"}
        assert trace.outcome == "abandoned"
    assert statuses == {"canceled", "no-answer", "completed"}
    assert "/twilio/voice/after" not in transport.paths()


def test_hanging_up_during_the_voicemail_greeting_after_a_timeout_is_not_abandoning():
    sim, _ = make(ring_group_app())
    trace = sim.run_call(CallScenario(answer_after=None, abandon_after=31, leaves_voicemail=True))
    assert trace.sent("dial-action")[0].param("DialCallStatus") == "no-answer"
    assert trace.sent("record-action") == [] and trace.duration == pytest.approx(31)
    assert trace.outcome == "no_answer"


def test_the_gather_sends_the_digit_for_the_callers_kind_to_the_resolved_action():
    sim, transport = make({"/twilio/voice/incoming": MENU})
    sim.run_call(CallScenario(kind="dwp"))
    sim.run_call(CallScenario(kind="customer"))
    menus = [dict(params) for url, params, _ in transport.requests if url == BASE + "/twilio/voice/menu"]
    assert [m["Digits"] for m in menus] == ["1", "2"]
    assert "/twilio/voice/agents" not in transport.paths()


def test_a_caller_who_presses_nothing_falls_through_to_the_next_verb():
    sim, transport = make({"/twilio/voice/incoming": MENU})
    trace = sim.run_call(CallScenario(digits=None))
    assert "/twilio/voice/menu" not in transport.paths()
    (redirect,) = trace.sent("redirect")
    assert redirect.url == BASE + "/twilio/voice/agents"
    assert redirect.at >= 5  # the Gather's timeout passed first


def test_relative_and_absolute_urls_are_resolved_as_twilio_resolves_them():
    routes = {"/twilio/voice/incoming": '<Response><Redirect>next</Redirect></Response>',
              "/twilio/voice/next": '<Response><Redirect>/root</Redirect></Response>',
              "/root": '<Response><Redirect>https://elsewhere.example/x?y=1</Redirect></Response>'}
    sim, transport = make(routes)
    sim.run_call(CallScenario())
    urls = [url for url, _, _ in transport.requests]
    assert urls[:4] == [BASE + "/twilio/voice/incoming", BASE + "/twilio/voice/next", BASE + "/root",
                        "https://elsewhere.example/x?y=1"]
    assert RequestValidator(TOKEN).validate(urls[3], dict(transport.requests[3][1]),
                                            transport.requests[3][2]["X-Twilio-Signature"])


def _queue_wait(params):
    if float(params["QueueTime"]) >= 60:
        return "<Response><Leave/></Response>"
    return '<Response><Say>Please hold.</Say><Pause length="10"/></Response>'


AGENT_DEQUEUE = '<Response><Dial><Queue url="/twilio/voice/dequeue">helpdesk</Queue></Dial></Response>'


def queue_app(**extra):
    return {"/twilio/voice/incoming": QUEUE, "/twilio/voice/queue-wait": _queue_wait,
            "/twilio/voice/agent-dequeue": AGENT_DEQUEUE, **extra}


def test_an_agent_dequeuing_the_caller_sends_dequeue_with_the_queue_time_then_bridged():
    # five seconds of greeting first: QueueTime counts from entering the queue, not from arrival
    sim, _ = make(queue_app(**{"/twilio/voice/incoming": QUEUE.replace("<Response>", '<Response><Pause length="5"/>')}))
    trace = sim.run_call(CallScenario(answer_after=30, talk_seconds=60))
    waits = trace.sent("wait")
    assert len(waits) >= 2 and waits[0].param("QueueTime") == "0"
    assert waits[1].param("QueueSid") == waits[0].param("QueueSid") and waits[1].param("QueuePosition") == "1"
    # The agent's phone calls in: Twilio asks the agents' Voice URL, then the <Queue url> it names.
    (agent,) = trace.sent("agent-dequeue")
    assert agent.url == BASE + "/twilio/voice/agent-dequeue" and agent.at == pytest.approx(30)
    assert SID.match(agent.param("CallSid")) and agent.param("CallSid") != trace.call_sid
    (dequeue,) = trace.sent("dequeue")
    assert dequeue.url == BASE + "/twilio/voice/dequeue"
    assert dequeue.param("CallSid") == trace.call_sid and dequeue.param("QueueTime") == "25"
    assert dequeue.at == pytest.approx(30)
    assert dequeue.param("DequeingCallSid") == agent.param("CallSid")
    assert re.match(r"^QU[0-9a-f]{32}$", dequeue.param("QueueSid"))
    (action,) = trace.sent("enqueue-action")
    assert (action.param("QueueResult"), action.param("QueueTime")) == ("bridged", "25")
    assert action.at == pytest.approx(90)  # the action comes when the bridged call ends
    assert trace.outcome == "answered" and trace.answer_delay == pytest.approx(30)


@pytest.mark.parametrize("answer, error", [
    ('<Response><Dial><Queue url="/twilio/voice/dequeue">other</Queue></Dial></Response>',
     "take callers from the queue 'other', but they wait in 'helpdesk'"),
    ("<Response><Dial><Number>+447700900001</Number></Dial></Response>", "dials no <Queue>"),
    ((500, ""), "11200 HTTP 500"),
])
def test_agents_whose_voice_url_would_never_reach_the_caller_are_an_error(answer, error):
    sim, transport = make(queue_app(**{"/twilio/voice/agent-dequeue": answer}))
    trace = sim.run_call(CallScenario(answer_after=30))
    assert trace.outcome == "failed" and any(error in e for e in trace.errors)
    assert "/twilio/voice/dequeue" not in transport.paths()


def test_a_queue_noun_without_a_url_bridges_the_caller_with_nothing_asked():
    sim, transport = make(queue_app(**{"/twilio/voice/agent-dequeue":
                                       "<Response><Dial><Queue>helpdesk</Queue></Dial></Response>"}))
    trace = sim.run_call(CallScenario(answer_after=30))
    assert trace.outcome == "answered" and trace.errors == [] and trace.sent("dequeue") == []
    assert trace.sent("enqueue-action")[0].param("QueueResult") == "bridged"


def test_a_caller_who_gives_up_in_the_queue_is_reported_as_a_hangup():
    sim, _ = make(queue_app())
    trace = sim.run_call(CallScenario(answer_after=None, abandon_after=40))
    assert trace.sent("dequeue") == []
    (action,) = trace.sent("enqueue-action")
    assert (action.param("QueueResult"), action.param("QueueTime")) == ("hangup", "40")
    assert trace.outcome == "abandoned"


def test_wait_twiml_that_says_leave_sends_the_caller_to_the_enqueue_action():
    sim, transport = make(queue_app(**{"/twilio/voice/queue-action": VOICEMAIL}))
    trace = sim.run_call(CallScenario(answer_after=None, leaves_voicemail=True))
    (action,) = trace.sent("enqueue-action")
    assert action.param("QueueResult") == "leave" and int(action.param("QueueTime")) >= 60
    assert "/twilio/voice/voicemail" in transport.paths() and trace.outcome == "voicemail"


def test_a_voicemail_sends_the_record_action_and_the_recording_status_callback():
    sim, _ = make({"/twilio/voice/incoming": VOICEMAIL})
    trace = sim.run_call(CallScenario(answer_after=None, leaves_voicemail=True, talk_seconds=200))
    (action,) = trace.sent("record-action")
    assert action.url == BASE + "/twilio/voice/voicemail"
    assert re.match(r"^https://api\.twilio\.com/2010-04-01/Accounts/AC1{32}/Recordings/RE[0-9a-f]{32}$",
                    action.param("RecordingUrl"))
    assert action.param("RecordingDuration") == "120"  # capped by maxLength
    assert action.param("Digits") == "hangup"
    (status,) = trace.sent("recording-status")
    assert status.url == BASE + "/twilio/voice/recording"
    assert status.param("RecordingStatus") == "completed" and status.param("CallSid") == trace.call_sid
    assert status.param("RecordingSid") == action.param("RecordingSid")
    assert seconds_after_start(status.param("RecordingStartTime")) == pytest.approx(3, abs=1)
    assert status.param("ErrorCode") is None  # not among the parameters Twilio documents for a completed one


def test_a_caller_who_leaves_no_message_just_hangs_up_without_a_record_action():
    sim, _ = make({"/twilio/voice/incoming": VOICEMAIL})
    trace = sim.run_call(CallScenario(answer_after=None, leaves_voicemail=False))
    assert trace.sent("record-action") == [] and trace.sent("recording-status") == []
    assert trace.outcome == "no_answer"


def test_duplicate_deliveries_reuse_the_idempotency_token_and_parameters():
    sim, transport = make(ring_group_app(), duplicate=1.0)
    trace = sim.run_call(CallScenario(answer_after=10))
    originals = [r for r in trace.requests if not r.duplicate]
    copies = [r for r in trace.requests if r.duplicate]
    assert len(copies) == len(originals) > 5
    for original, copy in zip(originals, copies):
        assert (copy.url, copy.params, copy.token) == (original.url, original.params, original.token)
    assert len({r.token for r in originals}) == len(originals)
    sent_tokens = [headers["I-Twilio-Idempotency-Token"] for _, _, headers in transport.requests]
    assert sent_tokens[0] == sent_tokens[1] != sent_tokens[2]


def test_status_callbacks_come_as_they_fire_or_held_back_and_out_of_order():
    in_order, _ = make(ring_group_app())
    shuffled, _ = make(ring_group_app(), out_of_order=1.0)
    calm = in_order.run_call(CallScenario(answer_after=10, talk_seconds=60))
    rough = shuffled.run_call(CallScenario(answer_after=10, talk_seconds=60))
    # As Twilio sends them: the agent leg's "answered" while the caller talks, before the Dial's
    # action; every request in the order its moment came; the number's own callback last.
    kinds = [r.kind for r in calm.requests]
    answered = next(i for i, r in enumerate(calm.requests) if r.kind == "leg-status"
                    and r.param("CallStatus") == "in-progress")
    assert kinds.index("incoming") < answered < kinds.index("dial-action") and kinds[-1] == "call-status"
    assert calm.requests[answered].at == pytest.approx(10, abs=1)
    assert [r.at for r in calm.requests] == sorted(r.at for r in calm.requests)
    # Held back: after the conversation, shuffled.
    rough_kinds = [r.kind for r in rough.requests]
    assert min(i for i, kind in enumerate(rough_kinds) if kind == "leg-status") > rough_kinds.index("dial-action")
    rough_times = [r.at for r in rough.requests if r.kind in ("leg-status", "call-status")]
    assert rough_times != sorted(rough_times)


def test_the_final_status_callback_reports_the_completed_call_and_its_duration():
    sim, _ = make(ring_group_app())
    trace = sim.run_call(CallScenario(answer_after=12, talk_seconds=100))
    (status,) = trace.sent("call-status")
    assert status.url == BASE + "/twilio/voice/status"
    assert (status.param("CallSid"), status.param("CallStatus"), status.param("CallDuration")) == (
        trace.call_sid, "completed", "112")
    assert status.param("SequenceNumber") == "0" and status.param("Duration") == "2"
    assert seconds_after_start(status.param("Timestamp")) == pytest.approx(112, abs=1)
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000", status.param("Timestamp"))


def test_reject_as_the_first_verb_ends_the_call_busy():
    sim, _ = make({"/twilio/voice/incoming": '<Response><Reject reason="busy"/></Response>'})
    trace = sim.run_call(CallScenario())
    (status,) = trace.sent("call-status")
    assert status.param("CallStatus") == "busy" and trace.errors == []


def test_an_unknown_verb_ends_the_call_with_an_error_in_the_trace():
    sim, transport = make({"/twilio/voice/incoming": "<Response><Dance/><Redirect>/never</Redirect></Response>"})
    trace = sim.run_call(CallScenario())
    assert trace.outcome == "failed"
    assert any("12100" in error and "Dance" in error for error in trace.errors)
    assert "/never" not in transport.paths()
    assert transport.paths()[-1] == "/twilio/voice/status"  # Twilio still reports the call's end


@pytest.mark.parametrize("answer", [(500, "<Response><Hangup/></Response>"), (0, ""), (200, "<Response><Say>")])
def test_a_failing_or_invalid_twiml_response_ends_the_call_with_an_error(answer):
    sim, transport = make({"/twilio/voice/incoming": MENU, "/twilio/voice/menu": answer})
    trace = sim.run_call(CallScenario(kind="dwp"))
    assert trace.outcome == "failed" and len(trace.errors) == 1
    assert "/twilio/voice/menu" in trace.errors[0]
    assert transport.paths()[-2:] == ["/twilio/voice/menu", "/twilio/voice/status"]


@pytest.mark.parametrize("answer, code", [((500, ""), "11200"), ((0, ""), "11200"), ((200, "<Response><Say>"), "12100")])
def test_when_the_voice_url_fails_twilio_asks_the_fallback_url_and_follows_it(answer, code):
    sim, transport = make({"/twilio/voice/incoming": answer,
                           "/twilio/voice/fallback": '<Response><Record action="/twilio/voice/voicemail"/></Response>'})
    trace = sim.run_call(CallScenario(answer_after=None, leaves_voicemail=True))
    (fallback,) = trace.sent("fallback")
    assert fallback.param("ErrorCode") == code and fallback.param("ErrorUrl") == BASE + "/twilio/voice/incoming"
    assert fallback.param("CallSid") == trace.call_sid and fallback.param("From") == trace.requests[0].param("From")
    assert transport.paths()[:3] == ["/twilio/voice/incoming", "/twilio/voice/fallback", "/twilio/voice/voicemail"]
    assert trace.outcome == "failed" and len(trace.errors) == 1  # our answer failed, whatever the caller did next


def test_a_failing_status_callback_is_recorded_without_changing_the_outcome():
    sim, _ = make(ring_group_app(**{"/twilio/voice/agent-status": (403, "no")}))
    trace = sim.run_call(CallScenario(answer_after=5))
    assert trace.outcome == "answered"
    assert trace.errors and all(error.startswith("15003 leg-status") for error in trace.errors)


def test_speed_one_sleeps_in_real_time_and_speed_zero_never_sleeps():
    slept = []
    fast, _ = make(ring_group_app(), sleep=slept.append)
    fast.run_call(CallScenario(answer_after=10, talk_seconds=50))
    assert slept == []
    timed, _ = make(ring_group_app(), speed=10, sleep=slept.append)
    trace = timed.run_call(CallScenario(answer_after=10, talk_seconds=50))
    assert sum(slept) == pytest.approx(trace.duration / 10) and trace.duration == pytest.approx(60)


@settings(max_examples=60, deadline=None)
@given(answer=st.one_of(st.none(), st.floats(0, 120)), abandon=st.one_of(st.none(), st.floats(0, 120)),
       voicemail=st.booleans())
def test_leg_callbacks_are_numbered_from_zero_in_time_order_whatever_the_caller_does(answer, abandon, voicemail):
    sim, _ = make(ring_group_app())
    trace = sim.run_call(CallScenario(answer_after=answer, abandon_after=abandon, leaves_voicemail=voicemail))
    assert trace.outcome in ("answered", "abandoned", "no_answer", "voicemail") and trace.errors == []
    for leg in {r.param("CallSid") for r in trace.sent("leg-status")}:
        events = [r for r in trace.sent("leg-status") if r.param("CallSid") == leg]
        assert [int(e.param("SequenceNumber")) for e in events] == list(range(len(events)))
        stamps = [parsedate_to_datetime(e.param("Timestamp")) for e in events]
        assert stamps == sorted(stamps)
    if trace.outcome == "answered":
        assert trace.answer_delay < 30 and (abandon is None or trace.answer_delay < abandon)


def test_traffic_profiles_draw_realistic_callers():
    callers = TrafficProfile(seed=3).scenarios(3000)
    numbers = [c.caller for c in callers if c.caller != "anonymous"]
    assert all(re.match(r"^\+447700900\d{3}$", n) for n in numbers)
    assert 0.03 < 1 - len(numbers) / len(callers) < 0.07
    assert 0.26 < sum(c.kind == "dwp" for c in callers) / len(callers) < 0.34
    abandoners = [c for c in callers if c.abandon_after is not None]
    assert 0.06 < len(abandoners) / len(callers) < 0.10
    assert all(5 <= c.abandon_after <= 90 and c.answer_after is None for c in abandoners)
    answer_times = sorted(c.answer_after for c in callers if c.answer_after is not None)
    assert 10 < answer_times[len(answer_times) // 2] < 14


def test_run_traffic_is_deterministic_for_a_seed():
    def run(seed):
        sim, _ = make(ring_group_app(**{"/twilio/voice/incoming": MENU, "/twilio/voice/menu": RING_GROUP}),
                      duplicate=0.1, out_of_order=0.3)
        return run_traffic(sim, TrafficProfile(seed=seed), calls=40, rate_per_second=None, concurrency=4)

    first, again, other = run(11), run(11), run(12)

    def fingerprint(result):
        return [(t.call_sid, t.outcome, [(r.url, r.params, r.token) for r in t.requests]) for t in result.traces]

    assert fingerprint(first) == fingerprint(again)
    assert fingerprint(first) != fingerprint(other)
    summary = first.summary
    assert summary.calls == 40 and sum(summary.outcomes.values()) == 40
    assert summary.requests == sum(len(t.requests) for t in first.traces)
    assert summary.redeliveries > 0 and summary.errors == 0
    assert "40 calls" in summary.describe()


def test_run_traffic_paces_calls_at_the_requested_rate():
    slept = []
    sim, _ = make({}, sleep=slept.append)
    run_traffic(sim, TrafficProfile(seed=1), calls=5, rate_per_second=2, concurrency=2)
    # the fake sleep lets no time pass, so each wait is the whole way to that call's slot
    assert slept == pytest.approx([0.5, 1.0, 1.5, 2.0], abs=0.1)


def test_the_requests_transport_reports_an_unreachable_app_as_status_zero():
    transport = RequestsTransport(timeout=2)
    try:
        assert transport.post("http://127.0.0.1:9/twilio/voice/incoming", [("CallSid", "CA1")], {}) == (0, "")
    finally:
        transport.close()


@pytest.mark.parametrize("args", [["--calls", "100000001"], ["--answer-sigma", "1e308"], ["--answer-median", "1e308"]])
def test_the_simulate_command_refuses_sizes_it_cannot_plan(args):
    result = CliRunner().invoke(simulate_command, ["--url", BASE, *args], env={"TWILIO_AUTH_TOKEN": "token"})
    assert result.exit_code == 2 and "is not in the range" in result.output


def test_the_simulate_command_names_the_missing_auth_token():
    result = CliRunner().invoke(simulate_command, ["--url", BASE], env={"TWILIO_AUTH_TOKEN": ""})
    assert result.exit_code == 2 and "TWILIO_AUTH_TOKEN" in result.output


def test_the_simulate_command_exits_with_status_one_when_the_app_refuses_requests(monkeypatch):
    transport = FakeTransport({"/twilio/voice/incoming": (403, "The request signature does not verify.")})
    monkeypatch.setattr(simulator_module, "RequestsTransport", lambda: transport)
    result = CliRunner().invoke(simulate_command, ["--url", BASE, "--calls", "2", "--rate", "1000", "--quiet"],
                                env={"TWILIO_AUTH_TOKEN": TOKEN})
    assert result.exit_code == 1
    assert "2 calls: answered 0, abandoned 0, no_answer 0, voicemail 0, failed 2" in result.output
    assert "The app refused requests with 403: their signature did not verify." in result.output


def test_the_simulate_command_runs_calls_and_prints_a_summary(monkeypatch):
    transport = FakeTransport(ring_group_app())
    monkeypatch.setattr(simulator_module, "RequestsTransport", lambda: transport)
    result = CliRunner().invoke(simulate_command, ["--url", BASE, "--calls", "6", "--rate", "1000", "--seed", "5"],
                                env={"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": ""})
    assert result.exit_code == 0, result.output
    assert "6 calls: answered" in result.output and "seed 5" in result.output
    assert "+4477" not in result.output  # no caller numbers on screen
    incoming = {dict(params)["CallSid"] for url, params, _ in transport.requests if url.endswith("/incoming")}
    assert len(incoming) == 6
    url, params, headers = transport.requests[0]
    assert RequestValidator(TOKEN).validate(url, dict(params), headers["X-Twilio-Signature"])
    assert dict(params)["AccountSid"] == "AC" + "0" * 32


# --------------------------------------------------------------------------- a phone system that asks for a login
LOGIN = ("helpdesk-trunk", "trunk-password")


def sip_group(*sip_nouns: str) -> str:
    return (f'<Response><Dial action="dial-action" timeout="30" answerOnBridge="true">{"".join(sip_nouns)}'
            f'<Client {AGENT_EVENTS}>alice</Client></Dial></Response>')


def sip_noun(attributes: str = "") -> str:
    return f'<Sip {AGENT_EVENTS} {attributes}>sip:1001@pbx.example.org</Sip>'


def test_a_phone_system_that_asks_for_a_login_refuses_a_sip_leg_without_it_and_the_others_still_ring():
    sim, _ = make(ring_group_app(**{"/twilio/voice/incoming": sip_group(sip_noun())}), sip_login=LOGIN)
    trace = sim.run_call(CallScenario(answer_after=12, talk_seconds=60))
    sip_leg = [leg for leg in trace.sent("leg-status") if leg.param("To") == "sip:1001@pbx.example.org"]
    assert [leg.param("CallStatus") for leg in sip_leg] == ["initiated", "failed"]  # never rang
    assert sip_leg[-1].param("SipResponseCode") == "407" and sip_leg[-1].param("CallDuration") == "0"
    (action,) = trace.sent("dial-action")
    assert action.param("DialCallStatus") == "completed"  # alice's app took it
    assert trace.outcome == "answered" and trace.sip_refused == 1


@pytest.mark.parametrize("attributes", ['username="helpdesk-trunk"', 'username="helpdesk-trunk" password="other"'])
def test_a_ring_group_of_sip_legs_all_refused_fails_at_once_and_the_caller_is_offered_voicemail(attributes):
    only_sip = sip_group(sip_noun(attributes)).replace(f"<Client {AGENT_EVENTS}>alice</Client>", "")
    sim, _ = make(ring_group_app(**{"/twilio/voice/incoming": only_sip}), sip_login=LOGIN)
    trace = sim.run_call(CallScenario(answer_after=12, talk_seconds=60, leaves_voicemail=True))
    (action,) = trace.sent("dial-action")
    assert (action.param("DialCallStatus"), action.param("DialBridged")) == ("failed", "false")
    initiated, failed = trace.sent("leg-status")  # at once, never ringing
    assert (initiated.param("CallStatus"), failed.param("CallStatus")) == ("initiated", "failed")
    assert seconds_after_start(failed.param("Timestamp")) - seconds_after_start(initiated.param("Timestamp")) <= 1
    assert trace.outcome == "voicemail" and trace.sip_refused == 1


def test_a_sip_leg_with_the_phone_systems_login_rings_and_answers_as_any_other():
    with_login = sip_group(sip_noun('username="helpdesk-trunk" password="trunk-password"')).replace(
        f"<Client {AGENT_EVENTS}>alice</Client>", "")
    sim, _ = make(ring_group_app(**{"/twilio/voice/incoming": with_login}), sip_login=LOGIN)
    trace = sim.run_call(CallScenario(answer_after=12, talk_seconds=60))
    assert [leg.param("CallStatus") for leg in trace.sent("leg-status")] == [
        "initiated", "ringing", "in-progress", "completed"]
    assert trace.outcome == "answered" and trace.sip_refused == 0
    # A phone system that asks for nothing takes a <Sip> with or without a login.
    sim, _ = make(ring_group_app(**{"/twilio/voice/incoming": sip_group(sip_noun())}))
    assert sim.run_call(CallScenario(answer_after=12, talk_seconds=60)).sip_refused == 0


def test_the_simulate_command_plays_a_phone_system_that_asks_for_the_login_in_its_environment(monkeypatch):
    transport = FakeTransport(ring_group_app(**{"/twilio/voice/incoming": sip_group(sip_noun())}))
    monkeypatch.setattr(simulator_module, "RequestsTransport", lambda: transport)
    args = ["--url", BASE, "--calls", "3", "--rate", "1000", "--seed", "5", "--quiet", "--sip-login-required"]
    result = CliRunner().invoke(simulate_command, args, env={"TWILIO_AUTH_TOKEN": TOKEN, "SIP_USERNAME": LOGIN[0],
                                                             "SIP_PASSWORD": LOGIN[1]})
    assert result.exit_code == 0, result.output
    assert ("3 SIP legs refused: the phone system asked Twilio to log in, and the app's <Sip> gave no login"
            in result.output)
    assert LOGIN[1] not in result.output
    for environment, message in (({"SIP_USERNAME": "", "SIP_PASSWORD": ""}, "--sip-login-required needs SIP_USERNAME"),
                                 ({"SIP_USERNAME": "", "SIP_PASSWORD": "x"}, "SIP_PASSWORD is set but SIP_USERNAME")):
        refused = CliRunner().invoke(simulate_command, args, env={"TWILIO_AUTH_TOKEN": TOKEN, **environment})
        assert refused.exit_code == 2 and message in refused.output


# --------------------------------------------------------------------------- screened ring groups
SCREEN_EVENTS = AGENT_EVENTS + ' url="screen"'
SCREENED_GROUP = (f'<Response><Dial action="dial-action" timeout="30" answerOnBridge="true">'
                  f'<Number {SCREEN_EVENTS}>+441632960001</Number><Client {SCREEN_EVENTS}>alice</Client>'
                  f'</Dial></Response>')
PROMPT = "Help desk call. Press 1 to take it."
SCREEN = (f'<Response><Gather numDigits="1" action="screen-accept" timeout="6"><Say>{PROMPT}</Say></Gather>'
          f'<Hangup/></Response>')


def _dial_action_unbridged(params):
    bridged = params["DialCallStatus"] == "completed" and params.get("DialBridged") != "false"
    return "<Response><Hangup/></Response>" if bridged else VOICEMAIL


def screened_app(dial=SCREENED_GROUP):
    return {"/twilio/voice/incoming": dial, "/twilio/voice/dial-action": _dial_action_unbridged,
            "/twilio/voice/screen": SCREEN,
            "/twilio/voice/screen-accept": lambda p: "<Response/>" if p["Digits"] == "1" else "<Response><Hangup/></Response>"}


def _prompt_seconds():
    from helpdesk.simulator_twiml import SAY_SECONDS_PER_CHARACTER
    return len(PROMPT) * SAY_SECONDS_PER_CHARACTER


def test_a_screened_leg_hears_the_prompt_and_the_agent_presses_1_before_the_caller_is_put_through():
    sim, transport = make(screened_app())
    trace = sim.run_call(CallScenario(answer_after=18, talk_seconds=60))
    (prompt,) = trace.sent("screen")
    (pressed,) = trace.sent("screen-accept")
    assert prompt.url == BASE + "/twilio/voice/screen" and pressed.url == BASE + "/twilio/voice/screen-accept"
    winner = prompt.param("CallSid")
    assert winner != trace.call_sid and pressed.param("CallSid") == winner
    assert (prompt.param("ParentCallSid"), prompt.param("Direction"), prompt.param("CallStatus")) == (
        trace.call_sid, "outbound-dial", "in-progress")
    assert pressed.param("Digits") == "1"
    assert (prompt.at, pressed.at) == (18, pytest.approx(18 + _prompt_seconds() + 0.8))
    assert trace.outcome == "answered" and trace.picked_up == 18
    assert trace.answer_delay == pytest.approx(pressed.at)
    answered = [leg for leg in trace.sent("leg-status") if leg.param("CallStatus") == "in-progress"]
    assert [leg.param("CallSid") for leg in answered] == [winner]
    assert seconds_after_start(answered[0].param("Timestamp")) == pytest.approx(18, abs=1)
    (action,) = trace.sent("dial-action")
    assert (action.param("DialBridged"), action.param("DialCallSid"), action.param("DialCallStatus")) == (
        "true", winner, "completed")


def test_voicemail_answering_a_screened_leg_presses_nothing_and_another_agent_answers_later():
    sim, _ = make(screened_app())
    trace = sim.run_call(CallScenario(answer_after=25, agent_voicemail_after=20, talk_seconds=60))
    prompts = trace.sent("screen")
    assert len(prompts) == 2 and prompts[0].at == 20 and prompts[1].at == 25
    machine, person = prompts[0].param("CallSid"), prompts[1].param("CallSid")
    assert machine != person
    assert [p.param("CallSid") for p in trace.sent("screen-accept")] == [person]
    ends = {leg.param("CallSid"): leg for leg in trace.sent("leg-status") if leg.param("SequenceNumber") == "3"}
    # Voicemail heard the prompt and waited out the Gather's 6 s; then the leg hung up.
    assert seconds_after_start(ends[machine].param("Timestamp")) == pytest.approx(20 + _prompt_seconds() + 6, abs=1)
    assert trace.outcome == "answered" and not trace.machine_answered
    assert trace.answer_delay == pytest.approx(25 + _prompt_seconds() + 0.8)


def test_voicemail_on_the_only_screened_leg_ends_the_dial_unbridged_and_the_caller_gets_ours():
    dial = (f'<Response><Dial action="dial-action" timeout="30" answerOnBridge="true">'
            f'<Number {SCREEN_EVENTS}>+441632960001</Number></Dial></Response>')
    sim, _ = make(screened_app(dial))
    trace = sim.run_call(CallScenario(answer_after=None, agent_voicemail_after=20, leaves_voicemail=True,
                                      talk_seconds=30))
    (action,) = trace.sent("dial-action")
    assert (action.param("DialCallStatus"), action.param("DialBridged")) == ("completed", "false")
    assert action.at == pytest.approx(20 + _prompt_seconds() + 6)
    assert trace.sent("screen-accept") == [] and trace.outcome == "voicemail" and trace.answer_delay is None


def test_without_screening_an_agents_voicemail_is_put_through_as_if_a_person_answered():
    sim, _ = make(ring_group_app())
    trace = sim.run_call(CallScenario(answer_after=35, agent_voicemail_after=20, talk_seconds=30))
    assert trace.machine_answered and trace.outcome == "answered" and trace.answer_delay == 20
    (action,) = trace.sent("dial-action")
    assert (action.param("DialCallStatus"), action.param("DialBridged")) == ("completed", "true")


def test_the_caller_hanging_up_during_the_prompt_cancels_the_dial():
    sim, _ = make(screened_app())
    trace = sim.run_call(CallScenario(answer_after=18, abandon_after=19.5))
    assert trace.sent("screen-accept") == [] and trace.outcome == "abandoned"
    (action,) = trace.sent("dial-action")
    assert action.param("DialBridged") == "false" and action.param("CallStatus") == "completed"
    assert action.param("DialCallStatus") in ("canceled", "no-answer", "completed")


def test_agent_voicemail_only_marks_calls_and_leaves_every_other_choice_of_a_seed_alone():
    plain = TrafficProfile(seed=7).scenarios(200)
    marked = TrafficProfile(seed=7, agent_voicemail_rate=0.3).scenarios(200)
    assert [s.__class__(**{**vars(s), "agent_voicemail_after": None}) for s in marked] == plain
    share = sum(s.agent_voicemail_after == 20.0 for s in marked) / len(marked)
    assert 0.2 < share < 0.4
