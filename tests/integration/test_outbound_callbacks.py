"""Twilio's webhooks for callbacks placed with "Call back now": connect, status of both legs, dial action."""
from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from callbacks import service
from helpdesk.models import Call, Callback, CallbackAttempt, TwilioEvent
from helpdesk.users import add_user
from helpdesk.voice.recovery import attempt_entry, spool_for, store_entry
from tests.integration.conftest import make_settings
from tests.integration.outage import bring_back, take_down, wait_until_stored
from tests.integration.twilio_requests import inbound, post, sid, stamp

CALLER = "+447700900123"
DESK = "+441134960000"
AGENT_LEG = sid(5001)  # the REST call that rings the agent: the attempt's CallSid
CALLER_LEG = sid(5002)  # the <Dial><Number> child leg to the caller


def miss_a_call(client, clock, n: int) -> None:
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(n), caller=CALLER))
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(n), "DialCallStatus": "canceled"})
    post(client, "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=40))})


def fresh(db_session, model):
    db_session.rollback()
    db_session.expire_all()
    with db_session.begin():
        return list(db_session.scalars(select(model).order_by(model.id)))


def call_back_now(app, clock, callback_id: int, agent: int, call_sid: str = AGENT_LEG) -> None:
    """What "Call back now" records: the attempt, then the CallSid of the call Twilio placed."""
    with app.extensions["helpdesk.db"].session() as session:
        attempt = service.start_call(session, callback_id=callback_id, agent_id=agent, now=clock.now)
    with app.extensions["helpdesk.db"].session() as session:
        service.call_placed(session, attempt_id=attempt, call_sid=call_sid)


@pytest.fixture
def placed(app, client, clock, settings, db_session):
    """The id of a missed call's callback with a Twilio attempt under way (as "Call back now" leaves it)."""
    miss_a_call(client, clock, 1)
    [callback] = fresh(db_session, Callback)
    with app.extensions["helpdesk.db"].session() as session:
        agent = add_user(session, "alice", "a-long-enough-password", "agent", now=datetime.now(timezone.utc)).id
    clock.advance(600)
    call_back_now(app, clock, callback.id, agent)
    return callback.id


def connect(client, callback_id, **keys):
    """The agent's phone answered "Call back now" (no keys), or the agent pressed a key (Digits)."""
    return post(client, f"/twilio/voice/callback-connect?callback={callback_id}",
                {"CallSid": AGENT_LEG, "From": DESK, "To": "+447700900555", "CallStatus": "in-progress", **keys})


def press_1(client, callback_id):
    """The agent pressed 1 after the prompt: the caller is dialled."""
    return connect(client, callback_id, Digits="1")


@pytest.fixture
def dialled(client, clock, placed):
    """The id of a callback whose "Call back now" attempt has dialled the caller, 15 s after the click."""
    clock.advance(15)
    assert "<Dial" in press_1(client, placed).get_data(as_text=True)
    return placed


def status_of(client, callback_id, **params):
    return post(client, f"/twilio/voice/callback-status?callback={callback_id}", params)


def attempt_and_callback(db_session) -> tuple[CallbackAttempt, Callback]:
    """The one attempt and its callback, read in one short transaction (SQLite locks for it)."""
    db_session.rollback()
    db_session.expire_all()
    with db_session.begin():
        [attempt] = db_session.scalars(select(CallbackAttempt)).all()
        [callback] = db_session.scalars(select(Callback)).all()
    return attempt, callback


def test_the_caller_answering_marks_the_attempt_reached(client, clock, dialled, db_session):
    answered = clock.advance(20)
    for status in ("initiated", "ringing", "in-progress"):
        response = status_of(client, dialled, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus=status,
                             To=CALLER, From=DESK, Timestamp=stamp(answered))
        assert response.status_code == 204
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.outcome, attempt.answered_at) == ("reached", answered)
    assert callback.reached_at == answered and callback.next_attempt_at is None and callback.status == "open"
    # The caller's leg completing afterwards changes nothing.
    status_of(client, dialled, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus="completed",
              CallDuration="300", Timestamp=stamp(answered + timedelta(minutes=5)))
    assert attempt_and_callback(db_session)[0].outcome == "reached"


def counted(callback: Callback) -> tuple:
    """What the three-hour rule and the retries know of a callback's attempts."""
    return callback.attempts_count, callback.first_attempt_at, callback.sla_result, callback.next_attempt_at


def test_clicking_call_back_now_is_not_yet_an_attempt(placed, db_session):
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.outcome, attempt.dialled_at) == ("placing", None)
    assert counted(callback) == (0, None, None, None) and callback.claimed_by_id == attempt.agent_id


def test_the_agents_phone_answering_asks_for_1_and_dials_no_one_yet(client, clock, placed, db_session):
    clock.advance(10)
    response = connect(client, placed)
    twiml = ET.fromstring(response.data)
    gather = twiml.find("Gather")
    assert response.status_code == 200 and twiml.find(".//Dial") is None
    assert gather.get("action") == f"https://helpdesk.example.org/twilio/voice/callback-connect?callback={placed}"
    assert gather.get("numDigits") == "1" and "Press 1" in gather.find("Say").text
    # Nothing pressed (voicemail on the agent's phone): the call ends.
    assert [child.tag for child in twiml][1:] == ["Say", "Hangup"]
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.dialled_at is None and counted(callback) == (0, None, None, None)


@pytest.mark.parametrize("key", ["2", "*", ""])
def test_a_key_other_than_1_ends_the_call_without_dialling(client, clock, placed, db_session, key):
    body = connect(client, placed, Digits=key).get_data(as_text=True)
    assert "<Dial" not in body and "<Hangup" in body and "The caller was not called" in body
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.dialled_at is None and counted(callback) == (0, None, None, None)


def test_voicemail_answering_the_agents_phone_leaves_the_attempt_not_dialled(client, clock, placed, db_session):
    connect(client, placed)  # the prompt plays to the voicemail, which presses nothing
    status_of(client, placed, CallSid=AGENT_LEG, CallStatus="completed", CallDuration="25")
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.outcome == "not_dialled" and counted(callback) == (0, None, None, None)


def test_the_attempt_counts_from_when_the_agent_presses_1_and_the_caller_is_dialled(client, clock, placed,
                                                                                     db_session):
    clock.advance(10)
    connect(client, placed)
    dialled_at = clock.advance(5)
    press_1(client, placed)
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.dialled_at == dialled_at and attempt.started_at == dialled_at - timedelta(seconds=15)
    assert counted(callback) == (1, dialled_at, "met", None)
    # Twilio asking again for the same call dials again, but it is still one attempt.
    clock.advance(5)
    assert "<Dial" in press_1(client, placed).get_data(as_text=True)
    assert attempt_and_callback(db_session)[0].dialled_at == dialled_at
    assert counted(attempt_and_callback(db_session)[1]) == (1, dialled_at, "met", None)


@pytest.mark.parametrize(("answered", "result"), [(-1, "met"), (+1, "breached")], ids=["in-time", "late"])
def test_an_agent_who_answers_after_the_deadline_misses_it_though_they_clicked_in_time(
        app, client, clock, settings, db_session, answered, result):
    miss_a_call(client, clock, 1)
    [callback] = fresh(db_session, Callback)
    with app.extensions["helpdesk.db"].session() as session:
        agent = add_user(session, "alice", "a-long-enough-password", "agent", now=datetime.now(timezone.utc)).id
    clock.now = callback.due_at - timedelta(seconds=30)
    call_back_now(app, clock, callback.id, agent)
    clock.now = callback.due_at + timedelta(seconds=answered)
    press_1(client, callback.id)
    _, callback = attempt_and_callback(db_session)
    assert (callback.first_attempt_at, callback.sla_result) == (clock.now, result)


@pytest.mark.parametrize("status", ["no-answer", "busy", "completed"])
def test_the_agents_leg_ending_before_the_caller_is_dialled_is_no_attempt(client, clock, placed, db_session, status):
    clock.advance(40)
    assert status_of(client, placed, CallSid=AGENT_LEG, CallStatus=status, CallDuration="3").status_code == 204
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.outcome, attempt.ended_at, attempt.dialled_at) == ("not_dialled", clock.now, None)
    assert counted(callback) == (0, None, None, None) and callback.status == "open"


def test_a_desk_phone_whose_phone_system_refuses_the_call_is_no_attempt_and_said_in_the_log(
        client, clock, placed, db_session, caplog):
    from tests.integration.test_metrics_endpoint import scrape, value

    before = value(scrape(client), "helpdesk_sip_calls_refused_total", call="call_back_now", code="407")
    clock.advance(2)
    assert status_of(client, placed, CallSid=AGENT_LEG, CallStatus="failed", To="sip:1001@pbx.example.org",
                     SipResponseCode="407").status_code == 204
    assert value(scrape(client), "helpdesk_sip_calls_refused_total", call="call_back_now", code="407") == before + 1
    assert attempt_and_callback(db_session)[0].outcome == "not_dialled"
    assert (f"callback {placed}: call {AGENT_LEG}: the phone system refused Twilio's call to a SIP address (SIP 407): "
            "it asks Twilio to log in: set SIP_USERNAME and SIP_PASSWORD") in caplog.text
    assert "pbx.example.org" not in caplog.text


def test_calls_the_agent_never_answers_do_not_close_the_callback_as_unreachable(app, client, clock, placed, settings,
                                                                                 db_session):
    agent = attempt_and_callback(db_session)[0].agent_id
    status_of(client, placed, CallSid=AGENT_LEG, CallStatus="no-answer")
    for n in range(settings.callback.max_attempts):
        clock.advance(60)
        call_back_now(app, clock, placed, agent, call_sid=sid(6000 + n))
        status_of(client, placed, CallSid=sid(6000 + n), CallStatus="no-answer")
    attempts = fresh(db_session, CallbackAttempt)
    [callback] = fresh(db_session, Callback)
    assert [a.outcome for a in attempts] == ["not_dialled"] * (settings.callback.max_attempts + 1)
    assert (callback.status, callback.attempts_count, callback.sla_result) == ("open", 0, None)


def test_the_caller_not_answering_once_dialled_is_a_miss_with_a_retry_scheduled(client, clock, dialled, db_session):
    dialled_at = clock.now
    clock.advance(40)
    assert status_of(client, dialled, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG,
                     CallStatus="no-answer").status_code == 204
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.outcome == "no_answer" and attempt.ended_at == clock.now
    assert counted(callback) == (1, dialled_at, "met", dialled_at + timedelta(minutes=30))
    assert callback.reached_at is None


def test_the_caller_being_busy_is_recorded_as_busy(client, dialled, db_session):
    status_of(client, dialled, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus="busy")
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.outcome == "busy" and callback.next_attempt_at is not None


def test_the_agent_hanging_up_before_the_caller_answers_is_no_answer(client, dialled, db_session):
    status_of(client, dialled, CallSid=AGENT_LEG, CallStatus="in-progress")
    assert attempt_and_callback(db_session)[0].outcome == "placing"
    status_of(client, dialled, CallSid=AGENT_LEG, CallStatus="completed", CallDuration="12")
    assert attempt_and_callback(db_session)[0].outcome == "no_answer"


def test_a_forged_status_callback_is_refused_and_changes_nothing(client, placed, db_session):
    response = post(client, f"/twilio/voice/callback-status?callback={placed}",
                    {"CallSid": CALLER_LEG, "ParentCallSid": AGENT_LEG, "CallStatus": "in-progress"}, token="wrong-token")
    assert response.status_code == 403 and "signature" in response.get_data(as_text=True)
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.outcome == "placing" and callback.reached_at is None


def test_an_unsigned_connect_request_is_refused(client, placed):
    response = client.post(f"/twilio/voice/callback-connect?callback={placed}", data={"CallSid": AGENT_LEG})
    assert response.status_code == 403


@pytest.mark.parametrize(("query", "params", "reason"), [
    ("", {"CallSid": AGENT_LEG, "CallStatus": "completed"}, "callback query parameter"),
    ("?callback=abc", {"CallSid": AGENT_LEG, "CallStatus": "completed"}, "callback query parameter"),
    ("?callback=1", {"CallStatus": "completed"}, "CallSid is missing"),
    ("?callback=1", {"CallSid": "CA123", "CallStatus": "completed"}, "not a Twilio call SID"),
    ("?callback=1", {"CallSid": CALLER_LEG, "ParentCallSid": "nope", "CallStatus": "completed"}, "ParentCallSid"),
    ("?callback=1", {"CallSid": AGENT_LEG}, "CallStatus is missing"),
    ("?callback=1", {"CallSid": AGENT_LEG, "CallStatus": "exploded"}, "not a Twilio call status"),
    ("?callback=1", {"CallSid": CALLER_LEG, "ParentCallSid": AGENT_LEG, "CallStatus": "in-progress",
                     "Timestamp": "yesterday"}, "Timestamp is not a date"),
    ("?callback=1", {"CallSid": CALLER_LEG, "ParentCallSid": AGENT_LEG, "CallStatus": "in-progress",
                     "Timestamp": "Mon, 01 Jan 0001 00:00:00 +0000"}, "Timestamp is not within a day of now"),
    ("?callback=1", {"CallSid": CALLER_LEG, "ParentCallSid": AGENT_LEG, "CallStatus": "completed",
                     "CallDuration": "\u00b2"}, "CallDuration is not a number of seconds"),
    ("?callback=1", {"CallSid": CALLER_LEG, "ParentCallSid": AGENT_LEG, "CallStatus": "completed",
                     "CallDuration": "9" * 5000}, "CallDuration is not a number of seconds"),
])
def test_malformed_status_callbacks_get_a_400_with_the_reason(client, placed, db_session, query, params, reason):
    events = len(fresh(db_session, TwilioEvent))
    response = post(client, "/twilio/voice/callback-status" + query, params)
    assert response.status_code == 400 and reason in response.get_data(as_text=True)
    assert attempt_and_callback(db_session)[0].outcome == "placing"
    assert len(fresh(db_session, TwilioEvent)) == events  # refused: not journalled either


@pytest.mark.parametrize(("params", "reason"), [
    ({"DialCallStatus": "exploded"}, "not a Twilio dial status"),
    ({"DialCallStatus": "completed", "DialCallDuration": "\u00b2"}, "DialCallDuration is not a number of seconds"),
    ({"DialCallStatus": "completed", "DialCallDuration": "99999999999"}, "DialCallDuration is not a number"),
    ({"DialCallStatus": "completed", "DialCallDuration": "9" * 30}, "DialCallDuration is not a number"),
])
def test_a_malformed_dial_action_gets_a_400_and_is_not_journalled(client, dialled, db_session, params, reason):
    events = len(fresh(db_session, TwilioEvent))
    response = post(client, f"/twilio/voice/callback-dial?callback={dialled}", {"CallSid": AGENT_LEG, **params})
    assert response.status_code == 400 and reason in response.get_data(as_text=True)
    assert attempt_and_callback(db_session)[0].outcome == "placing"
    assert len(fresh(db_session, TwilioEvent)) == events


def test_pressing_1_dials_the_caller_with_status_callbacks_naming_the_callback(client, placed):
    response = press_1(client, placed)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert f'<Dial action="https://helpdesk.example.org/twilio/voice/callback-dial?callback={placed}"' in body
    assert f'callerId="{DESK}"' in body and f">{CALLER}</Number>" in body
    assert f'statusCallback="https://helpdesk.example.org/twilio/voice/callback-status?callback={placed}"' in body


@pytest.mark.parametrize("callback_id", ["closed", "999999"])
def test_connect_for_a_closed_or_unknown_callback_says_goodbye_instead_of_failing(app, client, clock, placed, db_session,
                                                                                 callback_id):
    if callback_id == "closed":
        holder = attempt_and_callback(db_session)[1].claimed_by_id
        with app.extensions["helpdesk.db"].session() as session:
            service.close(session, callback_id=placed, agent_id=holder, outcome="withdrawn", now=clock.now,
                          note="The caller rang back.")
        callback_id = str(placed)
    response = post(client, f"/twilio/voice/callback-connect?callback={callback_id}",
                    {"CallSid": AGENT_LEG, "From": DESK, "Digits": "1"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "has been closed" in body and "<Hangup" in body and "<Dial" not in body
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.dialled_at is None and counted(callback)[:3] == (0, None, None)


def test_the_dial_action_hangs_up_and_records_the_answer_if_the_status_callbacks_have_not(client, clock, dialled,
                                                                                         db_session):
    clock.advance(200)
    response = post(client, f"/twilio/voice/callback-dial?callback={dialled}",
                    {"CallSid": AGENT_LEG, "DialCallStatus": "completed", "DialCallDuration": "150"})
    assert response.status_code == 200 and "<Hangup />" in response.get_data(as_text=True)
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.outcome == "reached" and attempt.answered_at == clock.now - timedelta(seconds=150)


def test_the_dial_action_without_its_status_is_a_400(client, placed):
    response = post(client, f"/twilio/voice/callback-dial?callback={placed}", {"CallSid": AGENT_LEG})
    assert response.status_code == 400 and "DialCallStatus is missing" in response.get_data(as_text=True)


def test_the_logs_never_hold_a_phone_number(client, placed, caplog):
    with caplog.at_level(logging.DEBUG):
        connect(client, placed)
        press_1(client, placed)
        status_of(client, placed, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus="in-progress",
                  To=CALLER, From=DESK)
        status_of(client, placed, CallSid=AGENT_LEG, CallStatus="completed", To=DESK, From=CALLER)
    assert caplog.records and CALLER not in caplog.text and DESK not in caplog.text


def test_a_caller_answer_arriving_after_the_agent_legs_end_still_counts_as_reached(client, clock, dialled,
                                                                                 db_session):
    answered = clock.advance(20)
    status_of(client, dialled, CallSid=AGENT_LEG, CallStatus="completed", CallDuration="80")
    assert attempt_and_callback(db_session)[0].outcome == "no_answer"
    status_of(client, dialled, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus="in-progress",
              Timestamp=stamp(answered))
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.outcome, attempt.answered_at) == ("reached", answered)
    assert callback.reached_at == answered and callback.next_attempt_at is None and callback.status == "open"


def test_a_caller_answer_arriving_after_a_last_attempt_closed_it_unreachable_opens_it_again_as_reached(
        app, client, clock, dialled, db_session):
    app.extensions["helpdesk.settings"] = make_settings(callback={"max_attempts": 1})
    answered = clock.advance(20)
    status_of(client, dialled, CallSid=AGENT_LEG, CallStatus="completed", CallDuration="80")
    assert attempt_and_callback(db_session)[1].outcome == "unreachable"  # its only attempt missed
    status_of(client, dialled, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus="in-progress",
              Timestamp=stamp(answered))
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.outcome, callback.status, callback.outcome) == ("reached", "open", None)
    assert callback.reached_at == answered and callback.closed_at is None


def test_a_caller_who_answered_though_the_dial_was_never_recorded_counts_from_the_answer(
        client, clock, placed, db_session):
    answered = clock.advance(20)  # the dial's own request was lost; the caller's answer says it happened
    clock.advance(4 * 3600)  # heard after the deadline
    status_of(client, placed, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus="in-progress",
              Timestamp=stamp(answered))
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.dialled_at, attempt.outcome) == (answered, "reached")
    assert (callback.first_attempt_at, callback.sla_result) == (answered, "met")


def test_a_status_for_a_call_that_is_no_attempt_is_accepted_and_ignored(client, placed, db_session, settings):
    response = status_of(client, placed, CallSid=sid(7777), CallStatus="no-answer")
    assert response.status_code == 204
    assert attempt_and_callback(db_session)[0].outcome == "placing"
    # Not a failure to store: nothing is kept in the spool to be tried again.
    assert spool_for(settings).counts() == {"waiting": 0, "unstored": 0, "unreadable": 0}


def test_outbound_webhooks_are_journalled_as_received_without_making_a_call_record(client, db_session):
    calls_before = db_session.scalar(select(func.count()).select_from(Call))
    db_session.rollback()
    post(client, "/twilio/voice/callback-status?callback=999999", {"CallSid": sid(777), "CallStatus": "ringing"})
    db_session.expire_all()
    events = db_session.scalars(select(TwilioEvent).where(TwilioEvent.kind == "callback_status")).all()
    assert [(e.call_sid, json.loads(e.params)) for e in events] == [
        (sid(777), [["CallSid", sid(777)], ["CallStatus", "ringing"]])]
    assert db_session.scalar(select(func.count()).select_from(Call)) == calls_before
    db_session.rollback()


def stored_an_hour_later(app, clock, migrated_url, settings, db_session) -> tuple[CallbackAttempt, Callback]:
    """The database is back an hour later and the spool is stored: the attempt and its callback then."""
    clock.advance(3600)
    bring_back(app, migrated_url)
    wait_until_stored(settings)
    return attempt_and_callback(db_session)


def callback_events(db_session) -> int:
    db_session.rollback()
    db_session.expire_all()
    with db_session.begin():
        return db_session.scalar(select(func.count()).where(TwilioEvent.kind == "callback_status"))


@pytest.mark.usefixtures("quick_retries")
def test_an_outcome_the_database_cannot_take_is_kept_in_the_spool_and_stored_when_it_is_back(
        app, client, clock, dialled, settings, migrated_url, db_session, caplog):
    answered = clock.advance(20)
    take_down(app, migrated_url)
    responses = [status_of(client, dialled, CallSid=CALLER_LEG, ParentCallSid=AGENT_LEG, CallStatus="in-progress",
                           To=CALLER, From=DESK, Timestamp=stamp(answered)),
                 post(client, f"/twilio/voice/callback-dial?callback={dialled}",
                      {"CallSid": AGENT_LEG, "DialCallStatus": "completed", "DialCallDuration": "150"})]
    # Twilio hears what it hears when the database is up: nothing is 503, the agent is hung up on.
    assert [r.status_code for r in responses] == [204, 200] and "<Hangup />" in responses[1].get_data(as_text=True)
    assert "kept in the spool" in caplog.text and "STORING FAILED" not in caplog.text
    assert CALLER not in caplog.text and DESK not in caplog.text
    assert attempt_and_callback(db_session)[0].outcome == "placing"  # not stored yet

    # Stored an hour later: the attempt still ended when Twilio said so.
    attempt, callback = stored_an_hour_later(app, clock, migrated_url, settings, db_session)
    assert (attempt.outcome, attempt.answered_at, attempt.ended_at) == ("reached", answered, answered)
    assert callback.reached_at == answered and callback.next_attempt_at is None
    assert spool_for(settings).counts() == {"waiting": 0, "unstored": 0, "unreadable": 0}
    assert callback_events(db_session) == 1  # and the callback-dial event is journalled under its own kind


@pytest.mark.usefixtures("quick_retries")
def test_a_miss_kept_in_the_spool_schedules_the_retry_from_when_the_caller_was_dialled(
        app, client, clock, dialled, settings, migrated_url, db_session):
    dialled_at = clock.now
    ended = clock.advance(40)
    take_down(app, migrated_url)
    assert status_of(client, dialled, CallSid=AGENT_LEG, CallStatus="completed").status_code == 204
    attempt, callback = stored_an_hour_later(app, clock, migrated_url, settings, db_session)
    assert (attempt.outcome, attempt.ended_at) == ("no_answer", ended)
    assert callback.next_attempt_at == dialled_at + timedelta(minutes=30)


@pytest.mark.usefixtures("quick_retries")
def test_an_agents_leg_kept_in_the_spool_is_still_no_attempt_when_stored(app, client, clock, placed, settings,
                                                                         migrated_url, db_session):
    ended = clock.advance(40)
    take_down(app, migrated_url)
    assert status_of(client, placed, CallSid=AGENT_LEG, CallStatus="no-answer").status_code == 204
    attempt, callback = stored_an_hour_later(app, clock, migrated_url, settings, db_session)
    assert (attempt.outcome, attempt.ended_at) == ("not_dialled", ended)
    assert counted(callback) == (0, None, None, None)


def test_a_kept_outcome_stored_twice_or_with_an_unknown_outcome_changes_nothing_more(app, clock, dialled, settings,
                                                                                     db_session):
    database = app.extensions["helpdesk.db"]
    answered = clock.advance(20)
    entry = attempt_entry(callback_id=dialled, call_sid=AGENT_LEG, outcome="reached", ended_at=answered,
                          answered_at=answered)
    store_entry(database, settings, entry)
    stored = attempt_and_callback(db_session)
    store_entry(database, settings, entry)  # a drain that stopped after storing it reads it again
    store_entry(database, settings, {**entry, "outcome": "busy"})  # a later miss cannot undo the answer
    again = attempt_and_callback(db_session)
    assert [(a.outcome, a.answered_at, a.ended_at, c.attempts_count, c.next_attempt_at) for a, c in (stored, again)] \
        == [("reached", answered, answered, 1, None)] * 2
    with pytest.raises(ValueError, match="not an attempt's outcome"):
        store_entry(database, settings, {**entry, "outcome": "exploded"})
    with pytest.raises(ValueError, match="no time zone"):
        store_entry(database, settings, {**entry, "ended_at": "2026-11-24T10:00:00"})


def test_an_outcome_neither_the_database_nor_the_spool_can_take_gets_a_503(app, client, placed, migrated_url, tmp_path,
                                                                          caplog):
    (tmp_path / "a-file").write_text("")
    app.extensions["helpdesk.settings"] = make_settings(webhooks={"spool_dir": str(tmp_path / "a-file" / "spool")})
    take_down(app, migrated_url)
    response = status_of(client, placed, CallSid=AGENT_LEG, CallStatus="no-answer")
    # Twilio's debugger then shows it; a callback-dial still hangs up on the agent.
    assert response.status_code == 503 and "could not be stored" in response.get_data(as_text=True)
    assert "STORING FAILED" in caplog.text
    dial = post(client, f"/twilio/voice/callback-dial?callback={placed}",
                {"CallSid": AGENT_LEG, "DialCallStatus": "no-answer"})
    assert dial.status_code == 200 and "<Hangup />" in dial.get_data(as_text=True)


def test_the_agent_hears_the_configured_voice_throughout(app, client, placed):
    app.extensions["helpdesk.settings"] = make_settings(messages={"voice": "Polly.Brian", "language": "en-GB"})
    prompt, dial = connect(client, placed), press_1(client, placed)
    says = [say for response in (prompt, dial) for say in ET.fromstring(response.data).iter("Say")]
    assert len(says) == 3 and {say.get("voice") for say in says} == {"Polly.Brian"}


# --------------------------------------------------------------------------- status callbacks that never came


def api_call(sid_, status, *, parent=None, started=None, ended=None, talked=None):
    from helpdesk.voice.lookup import CallFacts

    return CallFacts(sid=sid_, parent_sid=parent, status=status, start_time=started, end_time=ended,
                     duration=str(talked) if talked is not None else None, from_=DESK,
                     to=CALLER if parent else "+447700900555", direction="outbound-dial" if parent else "outbound-api")


def reconcile_attempts_at(app, lookup, now):
    from callbacks.reconcile import reconcile_attempts

    return reconcile_attempts(app.extensions["helpdesk.db"], app.extensions["helpdesk.settings"], lookup, now)


def test_an_attempt_whose_status_callbacks_never_came_is_finished_from_the_api(app, clock, dialled, db_session):
    from helpdesk.voice.lookup import FakeCallLookup

    dialled_at = clock.now
    lookup = FakeCallLookup()
    lookup.add(api_call(AGENT_LEG, "completed", ended=dialled_at + timedelta(minutes=6)),
               api_call(CALLER_LEG, "completed", parent=AGENT_LEG, started=dialled_at,
                        ended=dialled_at + timedelta(minutes=6), talked=340))
    report = reconcile_attempts_at(app, lookup, dialled_at + timedelta(minutes=20))
    assert (report.checked, report.finished) == (1, 1)
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.outcome, attempt.dialled_at) == ("reached", dialled_at)
    assert attempt.answered_at == dialled_at + timedelta(seconds=20)
    assert attempt.ended_at == dialled_at + timedelta(minutes=6)
    assert callback.reached_at == attempt.answered_at and callback.next_attempt_at is None
    # Finished: not asked about again.
    assert reconcile_attempts_at(app, lookup, dialled_at + timedelta(minutes=25)).checked == 0


def test_a_caller_the_api_says_did_not_answer_is_a_miss_with_its_retry_from_the_dial(app, clock, dialled,
                                                                                     db_session):
    from helpdesk.voice.lookup import FakeCallLookup

    dialled_at = clock.now
    lookup = FakeCallLookup()
    lookup.add(api_call(AGENT_LEG, "completed", ended=dialled_at + timedelta(seconds=40)),
               api_call(CALLER_LEG, "no-answer", parent=AGENT_LEG, started=dialled_at,
                        ended=dialled_at + timedelta(seconds=35)))
    reconcile_attempts_at(app, lookup, dialled_at + timedelta(minutes=20))
    attempt, callback = attempt_and_callback(db_session)
    assert (attempt.outcome, attempt.ended_at) == ("no_answer", dialled_at + timedelta(seconds=35))
    assert counted(callback) == (1, dialled_at, "met", dialled_at + timedelta(minutes=30))


def test_an_agent_call_the_api_says_ended_without_dialling_is_not_dialled(app, clock, placed, db_session):
    from helpdesk.voice.lookup import FakeCallLookup

    clicked = clock.now
    lookup = FakeCallLookup()
    lookup.add(api_call(AGENT_LEG, "no-answer"))  # the agent's phone rang out: no caller leg
    assert reconcile_attempts_at(app, lookup, clicked + timedelta(minutes=14)).checked == 0  # too soon to ask
    reconcile_attempts_at(app, lookup, clicked + timedelta(minutes=20))
    attempt, callback = attempt_and_callback(db_session)
    assert attempt.outcome == "not_dialled" and counted(callback) == (0, None, None, None)


def test_an_agent_call_still_live_at_twilio_stays_placing(app, clock, placed, db_session):
    from helpdesk.voice.lookup import FakeCallLookup

    lookup = FakeCallLookup()
    lookup.add(api_call(AGENT_LEG, "in-progress"))
    report = reconcile_attempts_at(app, lookup, clock.now + timedelta(minutes=20))
    assert (report.checked, report.live, report.finished) == (1, 1, 0)
    assert attempt_and_callback(db_session)[0].outcome == "placing"


def test_attempts_twilio_does_not_know_do_not_keep_a_newer_one_from_being_asked_about(app, clock, placed,
                                                                                     db_session):
    from helpdesk.voice.lookup import FakeCallLookup
    from helpdesk.voice.reconcile import BATCH

    clicked = clock.now
    with app.extensions["helpdesk.db"].session() as session:  # older attempts, of calls Twilio does not know
        session.add_all(CallbackAttempt(callback_id=placed, started_at=clicked - timedelta(minutes=n), source="twilio",
                                        call_sid=f"CA{n:032x}", outcome="placing") for n in range(1, BATCH + 1))
        session.commit()
    lookup = FakeCallLookup()
    lookup.add(api_call(AGENT_LEG, "no-answer"))

    first = reconcile_attempts_at(app, lookup, clicked + timedelta(minutes=20))
    assert (first.checked, first.unknown, first.finished) == (BATCH, BATCH, 0)  # oldest first
    second = reconcile_attempts_at(app, lookup, clicked + timedelta(minutes=25))

    assert lookup.asked[BATCH] == AGENT_LEG  # never asked about: first in the next run
    assert (second.checked, second.finished, second.unknown) == (BATCH, 1, BATCH - 1)
    with app.extensions["helpdesk.db"].session() as session:
        assert session.scalars(select(CallbackAttempt.outcome).where(
            CallbackAttempt.call_sid == AGENT_LEG)).one() == "not_dialled"
