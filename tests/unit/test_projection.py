"""A call's record from its events: outcomes, timings, and order independence."""
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpdesk.voice.projection import SCREENED, CallRules, Event, caller_number, project_call

CALL = "CA" + "a" * 32
AGENT_1 = "CA" + "b" * 32
AGENT_2 = "CA" + "c" * 32
T0 = datetime(2026, 11, 24, 10, 0, 0, 250000, tzinfo=timezone.utc)
RULES = CallRules(
    ring_period_seconds=3.0,
    target_seconds=30.0,
    dwp_numbers=frozenset({"+441234567890"}),
    dwp_digit="1",
    customer_digit="2",
    is_open=lambda t: 8 <= t.hour < 18,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return format_datetime(at(seconds).replace(microsecond=0), usegmt=True)


def incoming(caller="+447700900123", decision="agents", seconds=0.0):
    return Event("incoming", at(seconds), {"CallSid": CALL, "From": caller, "CallStatus": "ringing"}, decision)


def agent(leg, status, seconds, seq, to="client:agent-1"):
    params = {"CallSid": leg, "ParentCallSid": CALL, "CallStatus": status, "Timestamp": stamp(seconds),
              "SequenceNumber": str(seq), "To": to}
    return Event("agent_status", at(seconds + 0.3), params)


def parent_completed(seconds, duration):
    params = {"CallSid": CALL, "From": "+447700900123", "CallStatus": "completed", "Timestamp": stamp(seconds),
              "CallDuration": str(duration)}
    return Event("status", at(seconds + 0.5), params)


def dial_action(status, seconds, talked=0, leg=AGENT_1, call_status=None):
    params = {"CallSid": CALL, "DialCallStatus": status, "DialCallSid": leg, "DialCallDuration": str(talked)}
    if call_status:  # the caller's own call, as it was when the Dial ended
        params["CallStatus"] = call_status
    return Event("dial_action", at(seconds), params, "hangup" if status == "completed" else "voicemail")


def answered_ring_group(answer_after=12):
    return [
        incoming(),
        agent(AGENT_1, "initiated", 1, 0), agent(AGENT_2, "initiated", 1, 0, "+447700900001"),
        agent(AGENT_1, "ringing", 1, 1), agent(AGENT_2, "ringing", 1, 1, "+447700900001"),
        agent(AGENT_1, "in-progress", answer_after, 2),
        agent(AGENT_2, "canceled", answer_after, 2, "+447700900001"),
        agent(AGENT_1, "completed", answer_after + 60, 3),
        dial_action("completed", answer_after + 60, talked=60),
        parent_completed(answer_after + 61, answer_after + 61),
    ]


def test_a_ring_group_answer_takes_the_agent_legs_answered_timestamp():
    record = project_call(CALL, answered_ring_group(12), RULES, now=at(200))
    assert record.outcome == "answered"
    assert record.answered_at == at(12).replace(microsecond=0)
    assert record.answer_seconds == 11.75
    assert record.rings == 4
    assert record.sla_result == "met" and record.countable
    assert record.agent_leg_sid == AGENT_1 and record.agent == "client:agent-1"


def test_the_agent_legs_answered_event_wins_over_an_estimate_from_a_dial_action_received_early():
    events = [incoming(), agent(AGENT_1, "in-progress", 20, 2), dial_action("completed", 5, talked=60)]
    record = project_call(CALL, events, RULES, now=at(200))
    assert record.answered_at == at(20).replace(microsecond=0)


def test_without_agent_leg_events_the_dial_action_gives_the_answer_time():
    events = [incoming(), dial_action("completed", 75, talked=60)]
    record = project_call(CALL, events, RULES, now=at(200))
    assert (record.answered_at, record.rings) == (at(15), 6)


def test_an_answer_after_ten_rings_is_a_breach():
    record = project_call(CALL, answered_ring_group(41), RULES, now=at(200))
    assert (record.rings, record.sla_result) == (14, "breached")


def test_a_caller_who_hangs_up_after_eight_seconds_is_abandoned_and_not_counted():
    events = [incoming(), agent(AGENT_1, "ringing", 1, 0), dial_action("canceled", 8.2),
              agent(AGENT_1, "canceled", 8, 1), parent_completed(8, 8)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert record.outcome == "abandoned"
    assert (record.countable, record.sla_result) == (False, None)


def test_a_caller_who_hangs_up_after_forty_seconds_is_an_abandoned_breach():
    events = [incoming(), dial_action("canceled", 40.5), parent_completed(40, 40)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", True, "breached")


@pytest.mark.parametrize("status, bridged", [("no-answer", None), ("busy", None), ("completed", "false"),
                                             ("canceled", None)])
@pytest.mark.parametrize("hung_up_at, countable, result", [(8, False, None), (40, True, "breached")])
def test_a_dial_that_ended_with_the_caller_gone_is_abandoned_whatever_its_dial_status(
        status, bridged, hung_up_at, countable, result):
    # Twilio does not document what DialCallStatus a caller hanging up during the ringing gives;
    # the action's CallStatus says their call is over.
    action = dial_action(status, hung_up_at + 0.2, call_status="completed")
    if bridged:
        action.params["DialBridged"] = bridged
    events = [incoming(), agent(AGENT_1, "ringing", 1, 0), action, parent_completed(hung_up_at, hung_up_at)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", countable, result)
    # The same, without the caller's own status callback (lost): the Dial action alone tells.
    record = project_call(CALL, events[:-1], RULES, now=at(100))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", countable, result)


@pytest.mark.parametrize("call_status", ["ringing", "in-progress"])
@pytest.mark.parametrize("status", ["no-answer", "busy"])
def test_a_dial_that_rang_out_with_the_caller_still_there_is_no_answer(status, call_status):
    events = [incoming(), dial_action(status, 35, call_status=call_status), parent_completed(40, 40)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.outcome, record.countable, record.sla_result) == ("no_answer", True, "breached")


def test_a_dial_whose_legs_failed_is_failed_even_if_the_caller_then_hung_up():
    events = [incoming(), dial_action("failed", 2, call_status="completed"), parent_completed(2, 2)]
    assert project_call(CALL, events, RULES, now=at(100)).outcome == "failed"


def test_no_answer_then_a_voicemail_is_a_voicemail_breach():
    recording = {"CallSid": CALL, "RecordingUrl": "https://api.twilio.com/x/RE1", "RecordingDuration": "14"}
    events = [incoming(), dial_action("no-answer", 65), Event("voicemail", at(85), recording), parent_completed(86, 86)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.outcome, record.sla_result) == ("voicemail", "breached")


def test_no_answer_without_a_message_is_no_answer():
    events = [incoming(), dial_action("no-answer", 65), parent_completed(70, 70)]
    assert project_call(CALL, events, RULES, now=at(100)).outcome == "no_answer"


def test_an_out_of_hours_call_is_not_counted():
    events = [incoming(decision="out_of_hours"), parent_completed(30, 30)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.outcome, record.in_hours, record.countable) == ("out_of_hours", False, False)


def test_a_queue_answer_is_arrival_in_the_queue_plus_queue_time_so_menu_time_counts():
    menu = Event("gather", at(9), {"CallSid": CALL, "Digits": "1"}, "queue")
    dequeue = Event("dequeue", at(30), {"CallSid": CALL, "QueueTime": "20", "DequeingCallSid": AGENT_1})
    events = [incoming(decision="ivr"), menu, dequeue, parent_completed(300, 300)]
    record = project_call(CALL, events, RULES, now=at(400))
    assert record.answered_at == at(29)
    assert (record.answer_seconds, record.rings, record.sla_result) == (29.0, 10, "met")
    assert record.caller_type == "dwp" and record.agent_leg_sid == AGENT_1


def test_in_queue_mode_the_phone_that_took_the_caller_is_what_the_dequeuing_agents_call_came_from():
    dequeue = Event("dequeue", at(30), {"CallSid": CALL, "QueueTime": "20", "DequeingCallSid": AGENT_1})
    events = [incoming(decision="queue"), dequeue, parent_completed(300, 300)]
    record = project_call(CALL, events, RULES, now=at(400), dequeued_by={AGENT_1: "client:alice", AGENT_2: "+44"})
    assert (record.agent_leg_sid, record.agent) == (AGENT_1, "client:alice")
    # Without its request (or for another agent's call), the leg is known and its phone is not.
    assert project_call(CALL, events, RULES, now=at(400)).agent is None
    assert project_call(CALL, events, RULES, now=at(400), dequeued_by={AGENT_2: "client:bob"}).agent is None


def test_a_known_dwp_number_is_a_dwp_caller_and_a_withheld_number_is_none():
    record = project_call(CALL, [incoming(caller="+441234567890")], RULES, now=at(5))
    assert record.caller_type == "dwp"
    withheld = project_call(CALL, [incoming(caller="anonymous")], RULES, now=at(5))
    assert (withheld.caller_number, withheld.caller_type) == (None, "unknown")
    assert caller_number("+266696687") is None


def test_a_call_still_ringing_is_in_progress_and_breached_once_the_target_passes():
    assert project_call(CALL, [incoming()], RULES, now=at(10)).sla_result is None
    late = project_call(CALL, [incoming()], RULES, now=at(31))
    assert (late.outcome, late.sla_result) == ("in_progress", "breached")


def test_status_events_without_the_incoming_request_still_make_a_record_marked_as_such():
    events = [agent(AGENT_1, "in-progress", 12, 2), parent_completed(72, 72)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert record.incoming_seen is False
    assert record.arrived_at == at(0).replace(microsecond=0)
    assert record.outcome == "answered" and record.rings == 5


def test_a_malformed_timestamp_falls_back_to_the_time_of_receipt():
    bad = Event("agent_status", at(15), {"CallSid": AGENT_1, "ParentCallSid": CALL, "CallStatus": "in-progress",
                                         "Timestamp": "not a date"})
    record = project_call(CALL, [incoming(), bad], RULES, now=at(100))
    assert record.answered_at == at(15)


@settings(max_examples=200, deadline=None)
@given(
    flow=st.sampled_from(["answered", "late", "abandoned", "voicemail", "screened", "screened_out"]),
    data=st.data(),
)
def test_any_order_and_any_duplication_of_a_calls_events_gives_the_same_record(flow, data):
    events = {
        "screened": screened_ring_group(),
        "screened_out": voicemail_screened_out(message=True),
        "answered": answered_ring_group(9),
        "late": answered_ring_group(44),
        "abandoned": [incoming(), agent(AGENT_1, "ringing", 1, 0), dial_action("canceled", 20), parent_completed(20, 20)],
        "voicemail": [incoming(), dial_action("no-answer", 65),
                      Event("voicemail", at(85), {"CallSid": CALL, "RecordingUrl": "u", "RecordingDuration": "9"}),
                      parent_completed(86, 86)],
    }[flow]
    expected = project_call(CALL, events, RULES, now=at(1000))
    # A redelivery carries the same parameters but arrives later.
    redelivered = [
        Event(e.kind, e.received_at + timedelta(seconds=delay), e.params, e.decision)
        for e, delay in data.draw(st.lists(st.tuples(st.sampled_from(events), st.floats(0, 30)), max_size=len(events)))
    ]
    duplicated = events + redelivered
    shuffled = data.draw(st.permutations(duplicated))
    assert project_call(CALL, shuffled, RULES, now=at(1000)) == expected


@settings(max_examples=300, deadline=None)
@given(
    flow=st.sampled_from(["answered", "abandoned", "voicemail"]),
    status=st.sampled_from(["initiated", "ringing", "in-progress", "completed", "no-answer", "busy", "canceled"]),
    seconds=st.floats(0, 120),
    now=st.floats(0, 2000),
)
def test_an_event_said_not_to_change_the_record_does_not_change_it(flow, status, seconds, now):
    from helpdesk.voice.projection import can_change_record

    events = {
        "answered": answered_ring_group(9),
        "abandoned": [incoming(), dial_action("canceled", 20), parent_completed(20, 20)],
        "voicemail": [incoming(), dial_action("no-answer", 65), parent_completed(86, 86)],
    }[flow]
    extra = agent("CA" + "e" * 32, status, seconds, 5, to="client:agent-9")
    before = project_call(CALL, events, RULES, now=at(now))
    after = project_call(CALL, events + [extra], RULES, now=at(now))
    if not can_change_record(extra.kind, extra.params, incoming_seen=True):
        assert after == before
    # An answer stamped a whole second earlier than the first one (Timestamps have whole seconds).
    if status == "in-progress" and at(seconds).replace(microsecond=0) < at(9).replace(microsecond=0):
        assert can_change_record(extra.kind, extra.params, incoming_seen=True) and after != before


def test_without_the_incoming_request_every_event_may_change_the_record():
    from helpdesk.voice.projection import can_change_record

    assert can_change_record("agent_status", {"CallStatus": "ringing"}, incoming_seen=False)
    assert not can_change_record("agent_status", {"CallStatus": "ringing"}, incoming_seen=True)


# --------------------------------------------------------------------------- facts from the REST API
# When a call's last webhooks never came, helpdesk/voice/reconcile.py journals what Twilio's
# Calls resource says about the call ("api_call") and its agent legs ("api_leg").


def api_call(status="completed", ended=None, started=0, caller="+447700900123"):
    params = {"CallSid": CALL, "CallStatus": status, "StartTime": stamp(started), "From": caller,
              "To": "+441134960000", "Direction": "inbound"}
    if ended is not None:
        params.update(EndTime=stamp(ended), Duration=str(int(ended - started)))
    return Event("api_call", at(900), params)


def api_leg(leg, status, ended=None, talked=None, to="client:agent-1"):
    params = {"CallSid": leg, "ParentCallSid": CALL, "CallStatus": status, "StartTime": stamp(1), "To": to,
              "Direction": "outbound-dial"}
    if ended is not None:
        params["EndTime"] = stamp(ended)
    if talked is not None:
        params["Duration"] = str(talked)
    return Event("api_leg", at(900), params)


def ringing_only():
    """All that came before the app stopped hearing from Twilio: the call and its legs ringing."""
    return [incoming(), agent(AGENT_1, "ringing", 1, 1), agent(AGENT_2, "ringing", 1, 1, "+447700900001")]


def test_a_leg_the_api_says_completed_gives_the_answer_from_its_end_less_its_duration():
    events = ringing_only() + [api_leg(AGENT_1, "completed", ended=80, talked=68),
                               api_leg(AGENT_2, "canceled", ended=12, to="+447700900001"), api_call(ended=81)]
    record = project_call(CALL, events, RULES, now=at(900))
    assert record.outcome == "answered"
    assert record.answered_at == at(12).replace(microsecond=0)
    assert (record.rings, record.sla_result) == (4, "met")
    assert (record.agent_leg_sid, record.agent) == (AGENT_1, "client:agent-1")
    assert record.ended_at == at(81).replace(microsecond=0)


def test_the_api_answer_after_ten_rings_is_a_breach():
    events = ringing_only() + [api_leg(AGENT_1, "completed", ended=100, talked=55), api_call(ended=101)]
    record = project_call(CALL, events, RULES, now=at(900))
    assert (record.answer_seconds, record.rings, record.sla_result) == (44.75, 15, "breached")


def test_the_legs_own_answered_event_wins_over_the_apis_estimate():
    events = ringing_only() + [agent(AGENT_1, "in-progress", 9, 2),
                               api_leg(AGENT_1, "completed", ended=80, talked=60), api_call(ended=81)]
    assert project_call(CALL, events, RULES, now=at(900)).answered_at == at(9).replace(microsecond=0)


def test_legs_the_api_says_were_cancelled_make_an_abandoned_call_judged_by_when_it_ended():
    early = ringing_only() + [api_leg(AGENT_1, "canceled", ended=20), api_call(ended=20)]
    record = project_call(CALL, early, RULES, now=at(900))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", False, None)
    late = ringing_only() + [api_leg(AGENT_1, "canceled", ended=45), api_call(ended=45)]
    record = project_call(CALL, late, RULES, now=at(900))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", True, "breached")


def test_legs_that_all_rang_out_or_were_busy_make_no_answer():
    events = ringing_only() + [api_leg(AGENT_1, "no-answer"), api_leg(AGENT_2, "busy", to="+447700900001"),
                               api_call(ended=70)]
    record = project_call(CALL, events, RULES, now=at(900))
    assert (record.outcome, record.sla_result) == ("no_answer", "breached")


@pytest.mark.parametrize("leg_status", ["no-answer", "busy"])
def test_legs_that_rang_out_do_not_outweigh_a_dial_action_saying_the_caller_had_gone(leg_status):
    # The caller's last status callback lost, so the scheduler asked Twilio about the legs.
    events = [incoming(), dial_action("no-answer", 8.2, call_status="completed"), api_call(ended=8),
              api_leg(AGENT_1, leg_status, ended=8, talked=0)]
    record = project_call(CALL, events, RULES, now=at(900))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", False, None)


def test_a_leg_with_no_duration_is_no_answer_even_if_it_says_completed():
    events = ringing_only() + [api_leg(AGENT_1, "completed", ended=30, talked=0), api_call(ended=31)]
    assert project_call(CALL, events, RULES, now=at(900)).answered_at is None


def test_a_call_the_api_says_is_still_live_stays_in_progress():
    record = project_call(CALL, ringing_only() + [api_call(status="in-progress")], RULES, now=at(20))
    assert (record.outcome, record.ended_at) == ("in_progress", None)


def test_a_call_the_api_says_failed_is_failed_and_without_an_end_time_ends_at_its_last_change():
    failed = api_call(status="failed")  # Twilio gives no EndTime to a call that did not complete
    record = project_call(CALL, [incoming(), failed], RULES, now=at(900))
    assert (record.outcome, record.ended_at) == ("failed", failed.received_at)
    changed = Event("api_call", failed.received_at, {**failed.params, "DateUpdated": stamp(3)})
    assert project_call(CALL, [incoming(), changed], RULES, now=at(900)).ended_at == at(3).replace(microsecond=0)


def test_without_any_webhook_the_api_gives_arrival_caller_and_outcome():
    events = [api_leg(AGENT_1, "completed", ended=80, talked=70), api_call(ended=81, started=0)]
    record = project_call(CALL, events, RULES, now=at(900))
    assert record.incoming_seen is False
    assert record.arrived_at == at(0).replace(microsecond=0)
    assert (record.caller_number, record.outcome, record.rings) == ("+447700900123", "answered", 4)


def test_a_webhook_that_came_after_all_still_decides_the_outcome():
    # The call went to voicemail: the recording's webhook came, the API only says the call ended.
    recording = {"CallSid": CALL, "RecordingUrl": "https://api.twilio.com/x/RE1", "RecordingDuration": "14"}
    events = ringing_only() + [Event("voicemail", at(85), recording), api_leg(AGENT_1, "no-answer"),
                               api_call(ended=90)]
    assert project_call(CALL, events, RULES, now=at(900)).outcome == "voicemail"


def api_recording(status="completed", seconds="14", source="RecordVerb"):
    params = {"CallSid": CALL, "RecordingSid": "RE" + "1" * 32, "RecordingStatus": status,
              "RecordingDuration": seconds, "RecordingSource": source}
    return Event("api_recording", at(900), params)


def sent_to_voicemail():
    """The caller rang out to voicemail; the recording's webhooks and the call's end never came."""
    return ringing_only() + [dial_action("no-answer", 65), api_leg(AGENT_1, "no-answer"),
                             api_leg(AGENT_2, "no-answer", to="+447700900001")]


def test_a_message_the_api_says_the_caller_left_makes_a_voicemail():
    record = project_call(CALL, sent_to_voicemail() + [api_recording(), api_call(ended=90)], RULES, now=at(900))
    assert (record.outcome, record.from_api, record.sla_result) == ("voicemail", True, "breached")


@pytest.mark.parametrize("recording", [
    api_recording(seconds="0"),  # hung up as the beep sounded: nothing to listen to
    api_recording(status="absent"),  # Twilio kept no sound
    api_recording(status="processing"),
    api_recording(source="DialVerb"),  # a recording of a conversation, not a message
], ids=["empty", "absent", "not finished", "not a voicemail"])
def test_a_recording_that_is_not_a_message_left_is_not_a_voicemail(recording):
    record = project_call(CALL, sent_to_voicemail() + [recording, api_call(ended=90)], RULES, now=at(900))
    assert record.outcome == "no_answer"


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_order_and_any_duplication_of_webhooks_and_api_facts_gives_the_same_record(data):
    events = ringing_only() + [api_leg(AGENT_1, "completed", ended=80, talked=68),
                               api_leg(AGENT_2, "canceled", ended=12, to="+447700900001"), api_call(ended=81)]
    expected = project_call(CALL, events, RULES, now=at(1000))
    again = [Event(e.kind, e.received_at + timedelta(seconds=300), e.params, e.decision)
             for e in data.draw(st.lists(st.sampled_from(events), max_size=len(events)))]
    assert project_call(CALL, data.draw(st.permutations(events + again)), RULES, now=at(1000)) == expected


def test_an_ending_stamped_in_the_second_the_call_arrived_is_not_before_its_arrival():
    # T0 is 10:00:00.250; Twilio stamps the caller's hang-up 10:00:00 (whole seconds).
    record = project_call(CALL, [incoming(), parent_completed(0, 0)], RULES, now=at(60))
    assert record.ended_at == record.arrived_at == at(0)
    assert record.outcome == "abandoned"


def test_an_answer_stamped_in_the_second_the_call_arrived_is_not_before_its_arrival():
    events = [incoming(), agent(AGENT_1, "in-progress", 0, 2), agent(AGENT_1, "completed", 0, 3),
              parent_completed(0, 0)]
    record = project_call(CALL, events, RULES, now=at(60))
    assert record.answered_at == record.arrived_at == record.ended_at == at(0)
    assert record.answer_seconds == 0.0 and record.rings == 1


# --------------------------------------------------------------------------- screened ring groups
# routing.screen_calls: an agent leg answering may be its phone's voicemail. Only a leg on which
# 1 was pressed at the prompt (/twilio/voice/screen, then /screen-accept) was answered by a person.

PHONE = "+447700900001"


def screen(leg, seconds, to=PHONE):
    return Event("screen", at(seconds), {"CallSid": leg, "ParentCallSid": CALL, "CallStatus": "in-progress", "To": to})


def accept(leg, seconds, digits="1", to="client:agent-1"):
    params = {"CallSid": leg, "ParentCallSid": CALL, "CallStatus": "in-progress", "To": to, "Digits": digits}
    return Event("screen_accept", at(seconds), params, "accepted" if digits == "1" else "declined")


def screened_ring_group():
    """Agent 2's voicemail picks up at 20 s and is screened out; agent 1 answers at 24 s, presses 1."""
    return [
        incoming(decision=SCREENED),
        agent(AGENT_1, "ringing", 1, 1), agent(AGENT_2, "ringing", 1, 1, PHONE),
        agent(AGENT_2, "in-progress", 20, 2, PHONE), screen(AGENT_2, 20.4),
        agent(AGENT_2, "completed", 29, 3, PHONE),
        agent(AGENT_1, "in-progress", 24, 2), screen(AGENT_1, 24.3, "client:agent-1"), accept(AGENT_1, 27.1),
        agent(AGENT_1, "completed", 90, 3),
        dial_action("completed", 90, talked=63, leg=AGENT_1),
        parent_completed(91, 91),
    ]


def voicemail_screened_out(message: bool):
    """The only agent phone's voicemail picks up and is screened out; the Dial ends unbridged."""
    events = [
        incoming(decision=SCREENED),
        agent(AGENT_2, "ringing", 1, 1, PHONE), agent(AGENT_2, "in-progress", 20, 2, PHONE), screen(AGENT_2, 20.4),
        agent(AGENT_2, "completed", 29, 3, PHONE),
        Event("dial_action", at(29.5), {"CallSid": CALL, "DialCallStatus": "completed", "DialCallSid": AGENT_2,
                                        "DialCallDuration": "0", "DialBridged": "false"}, "voicemail"),
        parent_completed(60, 60),
    ]
    if message:
        events.append(Event("voicemail", at(58), {"CallSid": CALL, "RecordingUrl": "u", "RecordingDuration": "20"}))
    return events


def test_a_screened_call_is_answered_by_the_leg_that_pressed_1_when_the_key_press_reached_us():
    record = project_call(CALL, screened_ring_group(), RULES, now=at(200))
    assert record.outcome == "answered"
    assert (record.agent_leg_sid, record.agent) == (AGENT_1, "client:agent-1")
    # On our clock, as the arrival is: no whole-second Timestamp rounds it down.
    assert record.answered_at == at(27.1)
    assert record.answer_seconds == pytest.approx(27.1)
    assert (record.rings, record.sla_result) == (10, "met")


def test_a_key_press_is_never_taken_as_earlier_than_the_legs_answer_plus_the_prompt():
    # Twilio's clock ahead of ours (or a simulator's virtual one): the leg says it answered at
    # 26 s, and the prompt took 2.8 s, so the caller was put through at 28.8 s at the earliest.
    events = [e for e in screened_ring_group() if not (e.kind == "agent_status" and e.params["CallSid"] == AGENT_1
                                                       and e.params["CallStatus"] == "in-progress")]
    events.append(agent(AGENT_1, "in-progress", 26, 2))
    record = project_call(CALL, events, RULES, now=at(200))
    assert record.answered_at == at(26).replace(microsecond=0) + timedelta(seconds=2.8)


@pytest.mark.parametrize("status, outcome", [("canceled", "abandoned"), ("completed", "no_answer"),
                                             ("answered", "no_answer")])
def test_a_key_press_after_the_dial_put_nobody_through_is_not_an_answer(status, outcome):
    # The caller hung up during the prompt (or the Dial ended unbridged); 1 was pressed too late.
    events = [incoming(decision=SCREENED), agent(AGENT_1, "in-progress", 12, 2), screen(AGENT_1, 12.2),
              Event("dial_action", at(13), {"CallSid": CALL, "DialCallStatus": status, "DialCallSid": AGENT_1,
                                            "DialCallDuration": "0", "DialBridged": "false"},
                    "hangup" if status == "canceled" else "voicemail"),
              parent_completed(13, 13), accept(AGENT_1, 15)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.outcome, record.answered_at) == (outcome, None)


def test_the_same_events_without_screening_count_the_voicemail_that_picked_up_first():
    events = [e for e in screened_ring_group() if e.kind not in ("screen", "screen_accept")]
    events[0] = incoming()
    record = project_call(CALL, events, RULES, now=at(200))
    assert (record.agent_leg_sid, record.answered_at) == (AGENT_2, at(20).replace(microsecond=0))


@pytest.mark.parametrize("message, outcome", [(True, "voicemail"), (False, "no_answer")])
def test_a_call_whose_only_answer_was_voicemail_screened_out_is_not_answered(message, outcome):
    record = project_call(CALL, voicemail_screened_out(message), RULES, now=at(200))
    assert (record.outcome, record.answered_at, record.agent_leg_sid) == (outcome, None, None)
    assert (record.countable, record.sla_result) == (True, "breached")


def test_a_screened_leg_on_which_another_key_was_pressed_was_not_answered():
    events = [incoming(decision=SCREENED), agent(AGENT_1, "in-progress", 12, 2), screen(AGENT_1, 12.2),
              accept(AGENT_1, 14, digits="9")]
    record = project_call(CALL, events, RULES, now=at(20))
    assert (record.outcome, record.answered_at) == ("in_progress", None)


def test_a_key_press_whose_legs_answered_event_never_came_answers_when_it_was_received():
    events = [incoming(decision=SCREENED), screen(AGENT_1, 12.2), accept(AGENT_1, 14.5)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.outcome, record.answered_at, record.agent_leg_sid) == ("answered", at(14.5), AGENT_1)


def test_the_screening_events_alone_say_the_call_was_screened():
    # The request that sent the caller to the agents may be missing (spooled, say): the prompt
    # on a leg is evidence enough.
    events = [e for e in screened_ring_group() if e.kind != "incoming"]
    record = project_call(CALL, events, RULES, now=at(200))
    assert record.agent_leg_sid == AGENT_1 and not record.incoming_seen


def test_an_api_leg_of_a_screened_call_is_no_evidence_of_an_answer():
    events = voicemail_screened_out(message=False)[:-2] + [api_leg(AGENT_2, "completed", ended=29, talked=9, to=PHONE)]
    record = project_call(CALL, events, RULES, now=at(200))
    assert record.answered_at is None


def test_a_screened_call_whose_legs_the_api_says_were_voicemail_or_rang_out_is_no_answer():
    events = [incoming(decision=SCREENED), screen(AGENT_2, 20.4), api_leg(AGENT_2, "completed", ended=29, talked=9,
                                                                          to=PHONE),
              api_leg(AGENT_1, "no-answer", ended=46), api_call("completed", ended=47)]
    record = project_call(CALL, events, RULES, now=at(1000))
    assert (record.outcome, record.sla_result) == ("no_answer", "breached")


def test_screening_events_can_change_the_record():
    from helpdesk.voice.projection import can_change_record

    assert can_change_record("screen", screen(AGENT_1, 1).params, incoming_seen=True)
    assert can_change_record("screen_accept", accept(AGENT_1, 1).params, incoming_seen=True)


def test_a_call_heard_twice_arrived_when_it_was_first_heard_and_ended_and_stopped_waiting_first():
    """Events that say the same thing at different times, with different parameters (so none is
    a redelivery of another): the Voice URL answered too slowly and Twilio asked the fallback
    URL too; two final statuses; two <Dial> actions. The first of each counts."""
    fallback = Event("incoming", at(15), {"CallSid": CALL, "From": "+447700900123", "CallStatus": "ringing",
                                          "ErrorCode": "11200", "ErrorUrl": "https://desk.example.org/x"}, "agents")
    events = [incoming(seconds=0), fallback, dial_action("no-answer", 40), dial_action("no-answer", 44, talked=1),
              parent_completed(45, 45), parent_completed(50, 50)]
    record = project_call(CALL, events, RULES, now=at(120))
    assert record.arrived_at == at(0)
    assert record.ended_at == at(45).replace(microsecond=0)
    assert (record.outcome, record.sla_result) == ("no_answer", "breached")
    # With no final status yet, the wait ended at the first <Dial> action: 29 s, within the target.
    abandoned = project_call(CALL, [incoming(seconds=0), dial_action("canceled", 29),
                                    dial_action("canceled", 31, talked=1)], RULES, now=at(120))
    assert (abandoned.outcome, abandoned.countable) == ("abandoned", False)


def test_a_request_to_the_fallback_url_makes_an_in_hours_call_a_failed_breach():
    """README: a request to the fallback URL (our primary answer failed) marks the call failed,
    a breach if it was in hours."""
    fallback = Event("fallback", at(2), {"CallSid": CALL, "From": "+447700900123", "CallStatus": "ringing"},
                     "voicemail")
    record = project_call(CALL, [incoming(), fallback], RULES, now=at(20))
    assert (record.outcome, record.countable, record.sla_result) == ("failed", True, "breached")


def queue_action(result, seconds, queue_time=None):
    params = {"CallSid": CALL, "QueueResult": result}
    if queue_time is not None:
        params["QueueTime"] = str(queue_time)
    return Event("queue_action", at(seconds), params, "hangup")


@pytest.mark.parametrize("result, outcome", [
    ("hangup", "abandoned"), ("leave", "no_answer"), ("queue-full", "no_answer"),
    ("error", "failed"), ("system-error", "failed"),
])
def test_a_queue_wait_that_ended_without_an_agent_takes_its_outcome_from_the_queue_result(result, outcome):
    events = [incoming(decision="queue"), queue_action(result, 40)]
    record = project_call(CALL, events, RULES, now=at(400))
    assert record.outcome == outcome
    assert record.sla_result == "breached"


def test_a_caller_who_leaves_the_queue_before_the_target_is_judged_by_when_they_left_not_by_now():
    record = project_call(CALL, [incoming(decision="queue"), queue_action("hangup", 12)], RULES, now=at(400))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", False, None)


def test_a_queue_wait_bridged_to_an_agent_is_answered_at_entry_plus_queue_time():
    """DESIGN.md: in an <Enqueue> flow, answered_at is arrival in the queue + QueueTime, even
    when only the Enqueue action (QueueResult bridged) tells us."""
    record = project_call(CALL, [incoming(decision="queue"), queue_action("bridged", 300, queue_time=20)], RULES,
                          now=at(400))
    assert (record.outcome, record.answered_at, record.sla_result) == ("answered", at(20), "met")


@pytest.mark.parametrize("kind, extra, outcome", [
    ("recording", {"RecordingStatus": "completed", "RecordingDuration": "1"}, "voicemail"),
    ("recording", {"RecordingStatus": "in-progress", "RecordingDuration": "14"}, "no_answer"),
    ("recording", {"RecordingStatus": "completed", "RecordingDuration": "0"}, "no_answer"),
    ("voicemail", {"RecordingDuration": "0"}, "no_answer"),
    ("voicemail", {"RecordingDuration": "1"}, "voicemail"),
], ids=["recorded", "still recording", "recorded silence", "empty message", "one second message"])
def test_only_a_finished_recording_with_sound_in_it_is_a_voicemail(kind, extra, outcome):
    recording = {"CallSid": CALL, "RecordingUrl": "https://api.twilio.com/x/RE1", **extra}
    events = [incoming(), dial_action("no-answer", 65), Event(kind, at(85), recording), parent_completed(86, 86)]
    assert project_call(CALL, events, RULES, now=at(100)).outcome == outcome


# --------------------------------------------------------------------------- round 2 of mutation testing


def test_a_record_is_of_the_call_asked_about_heard_through_its_webhooks_and_not_from_the_api():
    record = project_call(CALL, answered_ring_group(12), RULES, now=at(200))
    assert record.call_sid == CALL
    assert record.incoming_seen is True
    assert record.from_api is False


def test_a_call_nobody_answered_has_no_answer_time_and_no_rings():
    events = [incoming(), dial_action("no-answer", 65), parent_completed(70, 70)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.answered_at, record.answer_seconds, record.rings) == (None, None, None)


def test_a_call_whose_events_never_give_the_callers_number_has_none():
    events = [agent(AGENT_1, "in-progress", 12, 2), dial_action("completed", 72, talked=60)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.caller_number, record.caller_type) == (None, "unknown")
    assert record.outcome == "answered"


def test_without_the_incoming_request_the_calendar_at_the_estimated_arrival_says_if_it_was_in_hours():
    # The rules' desk is open 08:00-18:00 UTC; the call came at 20:00 and its caller hung up after
    # 40 s. Only its final status reached us, so nothing stored says whether it was in hours.
    evening = 10 * 3600
    params = {"CallSid": CALL, "From": "+447700900123", "CallStatus": "completed",
              "Timestamp": stamp(evening + 40), "CallDuration": "40"}
    record = project_call(CALL, [Event("status", at(evening + 40.5), params)], RULES, now=at(evening + 100))
    assert record.arrived_at == at(evening).replace(microsecond=0)
    assert (record.in_hours, record.countable, record.sla_result) == (False, False, None)


# Caller type (README): "dwp (a known DWP number, or menu key 1), customer (menu key 2), unknown";
# "unknown unless the number is a configured DWP number or the caller chose in the menu".

def menu(digits):
    return Event("gather", at(9), {"CallSid": CALL, "Digits": digits}, "queue")


@pytest.mark.parametrize("events, caller_type", [
    ([incoming()], "unknown"),  # a number that is not a DWP one, and no menu
    ([incoming(decision="ivr"), menu("1")], "dwp"),
    ([incoming(decision="ivr"), menu("2")], "customer"),
    ([incoming(decision="ivr"), menu("3")], "unknown"),  # a key the menu does not offer
], ids=["no menu", "key 1", "key 2", "another key"])
def test_the_caller_type_is_dwp_for_menu_key_1_customer_for_key_2_and_otherwise_unknown(events, caller_type):
    assert project_call(CALL, events, RULES, now=at(20)).caller_type == caller_type


def test_a_call_whose_own_status_callback_says_failed_is_a_failed_breach():
    params = {"CallSid": CALL, "From": "+447700900123", "CallStatus": "failed", "Timestamp": stamp(2)}
    record = project_call(CALL, [incoming(), Event("status", at(2.5), params)], RULES, now=at(100))
    assert (record.outcome, record.countable, record.sla_result) == ("failed", True, "breached")


# Calls that never reached the app (README): found in Twilio's call log, an "api_log" event.

def api_log(status="completed", started=0, ended=None):
    return Event("api_log", at(900), {**api_call(status, ended=ended, started=started).params})


def test_a_call_found_only_in_twilios_call_log_is_a_failed_breach_from_its_start_to_its_end():
    # README: it arrived at the log's start time and ended at its end time, in whole seconds;
    # unless an agent leg answered it, it counts as failed: a breach if the desk was open.
    record = project_call(CALL, [api_log(ended=25)], RULES, now=at(1000))
    assert (record.arrived_at, record.ended_at) == (at(0).replace(microsecond=0), at(25).replace(microsecond=0))
    assert (record.outcome, record.countable, record.sla_result) == ("failed", True, "breached")
    assert (record.caller_number, record.incoming_seen, record.from_api) == ("+447700900123", False, True)


def test_a_call_found_in_the_call_log_that_an_agent_leg_answered_is_answered():
    events = [api_log(ended=90), api_leg(AGENT_1, "completed", ended=80, talked=68)]
    record = project_call(CALL, events, RULES, now=at(1000))
    assert (record.outcome, record.answered_at) == ("answered", at(12).replace(microsecond=0))
    assert (record.rings, record.sla_result, record.agent_leg_sid) == (5, "met", AGENT_1)


def test_a_call_found_in_the_call_log_whose_webhooks_turn_up_later_takes_its_outcome_from_them():
    # A spool replayed after the log was read: the webhooks show the caller was offered a person
    # and left a message, so the call is not one the app never heard of.
    recording = {"CallSid": CALL, "RecordingUrl": "https://api.twilio.com/x/RE1", "RecordingDuration": "14"}
    events = [api_log(ended=90), incoming(), dial_action("no-answer", 65), Event("voicemail", at(85), recording)]
    assert project_call(CALL, events, RULES, now=at(1000)).outcome == "voicemail"


def test_a_one_second_message_the_api_says_the_caller_left_is_a_voicemail():
    events = sent_to_voicemail() + [api_recording(seconds="1"), api_call(ended=90)]
    assert project_call(CALL, events, RULES, now=at(900)).outcome == "voicemail"


# Screened ring groups: what says a call was screened, and what a key press alone tells.

def test_on_a_screened_call_a_legs_answer_without_a_key_press_is_no_answer_even_before_any_prompt():
    # Agent 2's voicemail picked up at 20 s; the prompt's request has not reached us (yet).
    events = [incoming(decision=SCREENED), agent(AGENT_2, "in-progress", 20, 2, PHONE)]
    record = project_call(CALL, events, RULES, now=at(25))
    assert (record.outcome, record.answered_at, record.agent_leg_sid) == ("in_progress", None, None)


def test_the_prompt_on_a_leg_alone_says_the_call_was_screened():
    # The request that sent the caller to the agents is missing; a prompt was played on the leg
    # voicemail answered, and nobody pressed 1.
    events = [agent(AGENT_2, "in-progress", 20, 2, PHONE), screen(AGENT_2, 20.4), parent_completed(60, 60)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert (record.answered_at, record.agent_leg_sid) == (None, None)


def test_a_key_press_alone_says_the_call_was_screened_and_answers_it_for_the_agent_who_pressed_1():
    # Neither the request that sent the caller to the agents, nor the prompt's, nor the leg's
    # answered callback reached us: the key press did, at 14.5 s.
    events = [accept(AGENT_1, 14.5, to="client:agent-1"), parent_completed(90, 90)]
    record = project_call(CALL, events, RULES, now=at(100))
    assert record.outcome == "answered"
    assert (record.answered_at, record.agent_leg_sid, record.agent) == (at(14.5), AGENT_1, "client:agent-1")


def test_a_screened_call_whose_legs_the_api_says_were_cancelled_is_abandoned():
    # Only a completed leg on which 1 was not pressed counts as one that rang out (README).
    events = [incoming(decision=SCREENED), agent(AGENT_1, "ringing", 1, 1), api_leg(AGENT_1, "canceled", ended=20),
              api_call(ended=20)]
    record = project_call(CALL, events, RULES, now=at(900))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", False, None)


# Queues.

def test_a_caller_who_hung_up_in_the_queue_is_not_answered_by_the_queue_time_of_their_leaving():
    # Twilio gives the Enqueue action a QueueTime whatever the result.
    record = project_call(CALL, [incoming(decision="queue"), queue_action("hangup", 40, queue_time=40)], RULES,
                          now=at(400))
    assert (record.outcome, record.answered_at) == ("abandoned", None)
    assert (record.countable, record.sla_result) == (True, "breached")


def test_without_the_request_that_queued_the_caller_the_queue_clock_counts_from_the_estimated_arrival():
    dequeue = Event("dequeue", at(20.5), {"CallSid": CALL, "QueueTime": "20", "DequeingCallSid": AGENT_1})
    record = project_call(CALL, [dequeue, parent_completed(300, 300)], RULES, now=at(400))
    assert record.arrived_at == at(0).replace(microsecond=0)
    assert (record.answered_at, record.agent_leg_sid, record.sla_result) == (at(20).replace(microsecond=0),
                                                                           AGENT_1, "met")


def test_a_queue_calls_agent_leg_is_kept_when_the_enqueue_action_brings_the_same_queue_time():
    # The dequeue names the agent's leg; the Enqueue action at the end of the call has the same
    # QueueTime and no leg. The record keeps the leg that answered, whatever the order.
    dequeue = Event("dequeue", at(20.5), {"CallSid": CALL, "QueueTime": "20", "DequeingCallSid": AGENT_1})
    events = [incoming(decision="queue"), dequeue, queue_action("bridged", 300, queue_time=20),
              parent_completed(300, 300)]
    for ordered in (events, list(reversed(events))):
        record = project_call(CALL, ordered, RULES, now=at(400))
        assert (record.outcome, record.agent_leg_sid) == ("answered", AGENT_1)


def test_without_agent_leg_events_the_dial_action_names_the_leg_that_answered():
    record = project_call(CALL, [incoming(), dial_action("completed", 75, talked=60, leg=AGENT_2)], RULES, now=at(200))
    assert (record.outcome, record.agent_leg_sid) == ("answered", AGENT_2)
