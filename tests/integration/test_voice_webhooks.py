"""Twilio voice webhooks on a real database: TwiML, signatures, the journal, the record."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, func, select

from helpdesk.models import Call, Callback, Enquiry, TwilioEvent
from tests.integration.conftest import BASE_URL, make_settings
from tests.integration.twilio_requests import inbound, post, sid, stamp


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def add_person(app, username: str, role: str = "agent", phone: str | None = None) -> None:
    from helpdesk.users import add_user

    with app.extensions["helpdesk.db"].session() as session:
        add_user(session, username, "a-long-enough-password", role, phone=phone)


def call(session, call_sid) -> Call:
    session.expire_all()
    return session.scalars(select(Call).where(Call.call_sid == call_sid)).one()


def test_an_incoming_call_in_hours_rings_the_agents_with_status_callbacks(client, db_session):
    response = post(client, "/twilio/voice/incoming", inbound(sid(1)))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"  # one charset, not two
    dial = ET.fromstring(response.data).find("Dial")
    assert dial.get("answerOnBridge") == "true" and dial.get("ringTone") == "uk"
    assert dial.get("action") == f"{BASE_URL}/twilio/voice/dial-action"
    client_noun, number = dial.find("Client"), dial.find("Number")
    assert client_noun.text == "agent-1" and number.text == "+447700900001"
    for noun in (client_noun, number):
        assert noun.get("statusCallback") == f"{BASE_URL}/twilio/voice/agent-status"
        assert noun.get("statusCallbackEvent") == "initiated ringing answered completed"
    record = call(db_session, sid(1))
    assert record.outcome == "in_progress" and record.incoming_seen
    assert record.enquiry.reference == "HD-2026-000001"


SIP_RING_GROUP = {"dial_targets": ["sip:1001@pbx.example.org;transport=tls", "client:agent-1", "+447700900001"]}


def test_a_ring_groups_sip_addresses_are_dialled_with_the_sip_login_from_the_environment_and_nothing_else_is(
        migrated_url, clock, monkeypatch, caplog):
    from tests.integration.conftest import make_app

    monkeypatch.setenv("SIP_USERNAME", "helpdesk-trunk")
    monkeypatch.setenv("SIP_PASSWORD", "correct horse battery staple")
    app = make_app(migrated_url, make_settings(routing=SIP_RING_GROUP), clock)
    try:
        caplog.set_level("DEBUG")
        dial = ET.fromstring(post(app.test_client(), "/twilio/voice/incoming", inbound(sid(11))).data).find("Dial")
    finally:
        app.extensions["helpdesk.db"].dispose()
    sip = dial.find("Sip")
    assert sip.text == "sip:1001@pbx.example.org;transport=tls"
    assert (sip.get("username"), sip.get("password")) == ("helpdesk-trunk", "correct horse battery staple")
    assert sip.get("statusCallback") == f"{BASE_URL}/twilio/voice/agent-status"  # still watched like the rest
    for other in (dial.find("Client"), dial.find("Number")):
        assert other.get("username") is None and other.get("password") is None
    assert "correct horse battery staple" not in caplog.text


def test_without_a_sip_login_a_sip_address_is_dialled_with_none(app, client):
    app.extensions["helpdesk.settings"] = make_settings(routing=SIP_RING_GROUP)
    sip = ET.fromstring(post(client, "/twilio/voice/incoming", inbound(sid(12))).data).find("Dial/Sip")
    assert sip.text == "sip:1001@pbx.example.org;transport=tls"
    assert "username" not in sip.attrib and "password" not in sip.attrib


def sip_leg_ended(client, code: str, to: str = "sip:+447700900555@pbx.example.org"):
    return post(client, "/twilio/voice/agent-status", {
        "CallSid": sid(950), "ParentCallSid": sid(13), "To": to, "CallStatus": "failed", "SipResponseCode": code,
        "CallbackSource": "call-progress-events"})


@pytest.mark.parametrize(("code", "login", "advice"), [
    ("407", False, "it asks Twilio to log in: set SIP_USERNAME and SIP_PASSWORD"),
    ("401", True, "it did not take the login: check SIP_USERNAME and SIP_PASSWORD"),
    ("403", True, "it does not take calls from Twilio's addresses, or did not take the login"),
])
def test_a_phone_system_refusing_a_sip_leg_is_said_in_the_log_with_what_to_do(app, client, caplog, code, login,
                                                                                 advice):
    from helpdesk.settings import SipLogin

    app.config["SIP_LOGIN"] = SipLogin("helpdesk-trunk", "trunk-password") if login else None
    post(client, "/twilio/voice/incoming", inbound(sid(13)))
    assert sip_leg_ended(client, code).status_code == 204
    assert (f"agent leg {sid(950)}: the phone system refused Twilio's call to a SIP address (SIP {code}): {advice}"
            in caplog.text)
    assert "7700900555" not in caplog.text and "trunk-password" not in caplog.text


def test_an_ordinary_end_of_a_leg_or_a_number_leg_is_not_taken_for_a_refusal(client, caplog):
    post(client, "/twilio/voice/incoming", inbound(sid(14)))
    sip_leg_ended(client, "487")  # cancelled: another phone answered
    sip_leg_ended(client, "407", to="+447700900001")  # a number: no SIP login to give
    assert "refused Twilio's call" not in caplog.text


def test_refused_sip_legs_are_counted_on_metrics_by_call_and_code_from_0(client):
    from tests.integration.test_metrics_endpoint import scrape, value

    before = scrape(client)
    # Every call and code is there before any refusal: increase() cannot see a series' first sample go up.
    assert all(value(before, "helpdesk_sip_calls_refused_total", call=call, code=code) is not None
               for call in ("ring_group", "call_back_now") for code in ("401", "403", "407"))
    post(client, "/twilio/voice/incoming", inbound(sid(15)))
    for code in ("407", "407", "403", "487"):  # 487: cancelled, another phone answered
        sip_leg_ended(client, code)
    sip_leg_ended(client, "407", to="+447700900001")  # a number's leg
    after = scrape(client)

    def counted(code: str) -> float:
        return (value(after, "helpdesk_sip_calls_refused_total", call="ring_group", code=code)
                - value(before, "helpdesk_sip_calls_refused_total", call="ring_group", code=code))

    assert (counted("407"), counted("403"), counted("401")) == (2, 1, 0)
    assert not any("7700900" in str(labels) or "487" in str(labels) for _, labels in after)


@pytest.mark.parametrize(("environment", "reason"), [
    ({"SIP_USERNAME": "helpdesk-trunk"}, "SIP_USERNAME is set but SIP_PASSWORD is not: set both"),
    ({"SIP_PASSWORD": "secret"}, "SIP_PASSWORD is set but SIP_USERNAME is not: set both"),
    ({"SIP_USERNAME": "helpdesk-trunk", "SIP_PASSWORD": "secret\r"}, "SIP_PASSWORD has a space at its start or end, "
                                                                    "or a control character"),
])
def test_a_sip_login_the_phone_system_would_refuse_stops_the_app_naming_the_variable(
        migrated_url, clock, monkeypatch, environment, reason):
    from helpdesk.config import ConfigError
    from tests.integration.conftest import make_app

    for name in ("SIP_USERNAME", "SIP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        make_app(migrated_url, make_settings(), clock)
    assert str(raised.value).startswith(reason)
    assert "secret" not in str(raised.value)


def test_a_call_answered_by_an_agent_after_four_rings_is_recorded_as_met(client, db_session, clock):
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(2)))
    agent = {"CallSid": sid(900), "ParentCallSid": sid(2), "To": "client:agent-1", "CallbackSource": "call-progress-events"}
    clock.advance(11)
    post(client, "/twilio/voice/agent-status", {**agent, "CallStatus": "in-progress", "SequenceNumber": "2",
                                                 "Timestamp": stamp(arrived + timedelta(seconds=11))})
    clock.advance(60)
    response = post(client, "/twilio/voice/dial-action", {"CallSid": sid(2), "DialCallStatus": "completed",
                                                          "DialCallSid": sid(900), "DialCallDuration": "60"})
    assert ET.fromstring(response.data).find("Hangup") is not None
    post(client, "/twilio/voice/status", {"CallSid": sid(2), "CallStatus": "completed", "CallDuration": "71",
                                          "Timestamp": stamp(arrived + timedelta(seconds=71))})
    record = call(db_session, sid(2))
    assert (record.outcome, record.rings, record.sla_result) == ("answered", 4, "met")
    assert record.answer_seconds == 11.0 and record.agent == "client:agent-1"
    assert record.ended_at == arrived + timedelta(seconds=71)
    assert record.caller_number == "+447700900123"
    assert count(db_session, TwilioEvent) == 4


def test_an_unanswered_ring_group_offers_voicemail_and_the_message_makes_a_voicemail_breach(client, db_session, clock):
    post(client, "/twilio/voice/incoming", inbound(sid(3)))
    clock.advance(65)
    response = post(client, "/twilio/voice/dial-action", {"CallSid": sid(3), "DialCallStatus": "no-answer"})
    record_verb = ET.fromstring(response.data).find("Record")
    assert record_verb.get("action") == f"{BASE_URL}/twilio/voice/voicemail"
    assert record_verb.get("recordingStatusCallback") == f"{BASE_URL}/twilio/voice/recording"
    clock.advance(20)
    post(client, "/twilio/voice/voicemail", {"CallSid": sid(3), "RecordingUrl": "https://api.twilio.com/r/RE1",
                                             "RecordingDuration": "15", "Digits": "hangup"})
    assert (call(db_session, sid(3)).outcome, call(db_session, sid(3)).sla_result) == ("voicemail", "breached")


@pytest.mark.parametrize("path, params", [
    ("/twilio/voice/voicemail", {"Digits": "hangup"}),
    ("/twilio/voice/recording", {"RecordingStatus": "completed", "RecordingSid": "RE" + "1" * 32}),
])
def test_an_empty_recording_is_not_a_voicemail(client, db_session, clock, path, params):
    post(client, "/twilio/voice/incoming", inbound(sid(31)))
    clock.advance(65)
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(31), "DialCallStatus": "no-answer"})
    clock.advance(5)
    post(client, path, {"CallSid": sid(31), "RecordingUrl": "https://api.twilio.com/r/RE1", "RecordingDuration": "0",
                        **params})
    assert call(db_session, sid(31)).outcome == "no_answer"  # the caller left no message
    db_session.rollback()  # SQLite: the read's transaction would hold back the next webhook's write
    post(client, path, {"CallSid": sid(31), "RecordingUrl": "https://api.twilio.com/r/RE2", "RecordingDuration": "1",
                        **params, **({"RecordingSid": "RE" + "2" * 32} if "RecordingSid" in params else {})})
    assert call(db_session, sid(31)).outcome == "voicemail"


def test_a_caller_who_hung_up_while_the_agents_phones_rang_is_abandoned_whatever_the_dial_status(
        client, db_session, clock):
    post(client, "/twilio/voice/incoming", inbound(sid(5)))
    clock.advance(8)
    # The caller's own call is over (CallStatus completed): no voicemail prompt, and not "no answer".
    response = post(client, "/twilio/voice/dial-action", {"CallSid": sid(5), "CallStatus": "completed",
                                                          "DialCallStatus": "no-answer"})
    assert ET.fromstring(response.data).find("Hangup") is not None
    record = call(db_session, sid(5))
    assert (record.outcome, record.countable, record.sla_result) == ("abandoned", False, None)
    event = db_session.scalars(select(TwilioEvent).where(TwilioEvent.kind == "dial_action")).one()
    assert event.decision == "hangup"


def test_a_call_out_of_hours_hears_the_message_and_a_voicemail_prompt(app, client, db_session, clock):
    clock.now = datetime(2026, 11, 24, 19, 30, tzinfo=timezone.utc)  # 19:30 on a Tuesday, closed
    response = post(client, "/twilio/voice/incoming", inbound(sid(4)))
    document = ET.fromstring(response.data)
    assert "closed" in document.find("Say").text
    assert document.find("Record") is not None
    record = call(db_session, sid(4))
    assert (record.outcome, record.in_hours, record.countable) == ("out_of_hours", False, False)


def test_with_voicemail_off_nobody_is_asked_to_leave_a_message_or_promised_what_cannot_be_kept(app, client, clock):
    app.extensions["helpdesk.settings"] = make_settings(voicemail={"enabled": False})
    clock.now = datetime(2026, 11, 24, 19, 30, tzinfo=timezone.utc)  # closed
    closed = ET.fromstring(post(client, "/twilio/voice/incoming", inbound(sid(41))).data)
    # Every caller who gave a number is owed a callback, out of hours too: they are told so.
    assert [say.text for say in closed.findall("Say")] == [
        "We are closed at the moment. Unless your number is withheld, we will call you back when we open. Goodbye."]
    assert closed.find("Record") is None and closed.find("Hangup") is not None
    clock.now = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)  # open: nobody answers
    post(client, "/twilio/voice/incoming", inbound(sid(42)))
    missed = ET.fromstring(post(client, "/twilio/voice/dial-action", {"CallSid": sid(42), "DialCallStatus": "no-answer",
                                                                      "CallStatus": "in-progress"}).data)
    spoken = " ".join(say.text for say in missed.findall("Say"))
    assert "Unless your number is withheld, we will call you back" in spoken
    assert "tone" not in spoken and missed.find("Record") is None


def test_a_bank_holiday_is_out_of_hours(client, db_session, clock):
    clock.now = datetime(2026, 12, 25, 10, 0, tzinfo=timezone.utc)
    post(client, "/twilio/voice/incoming", inbound(sid(5)))
    assert call(db_session, sid(5)).outcome == "out_of_hours"


def test_with_the_menu_on_a_caller_pressing_1_is_recorded_as_dwp(app, client, db_session):
    app.extensions["helpdesk.settings"] = make_settings(ivr={"enabled": True})
    response = post(client, "/twilio/voice/incoming", inbound(sid(6)))
    gather = ET.fromstring(response.data).find("Gather")
    assert gather.get("action") == f"{BASE_URL}/twilio/voice/menu" and gather.get("numDigits") == "1"
    response = post(client, "/twilio/voice/menu", {"CallSid": sid(6), "Digits": "1"})
    assert ET.fromstring(response.data).find("Dial") is not None
    assert call(db_session, sid(6)).caller_type == "dwp"


@pytest.mark.parametrize("digits, caller_type", [("2", "customer"), ("7", "unknown")])
def test_with_the_menu_on_a_caller_pressing_2_is_a_customer_and_any_other_key_leaves_it_unknown(
        app, client, db_session, digits, caller_type):
    app.extensions["helpdesk.settings"] = make_settings(ivr={"enabled": True})
    post(client, "/twilio/voice/incoming", inbound(sid(33)))
    post(client, "/twilio/voice/menu", {"CallSid": sid(33), "Digits": digits})
    assert call(db_session, sid(33)).caller_type == caller_type


def test_a_forged_signature_is_refused_and_stores_nothing(client, db_session):
    response = post(client, "/twilio/voice/incoming", inbound(sid(7)), token="not-the-token")
    assert response.status_code == 403
    unsigned = client.post("/twilio/voice/status", data={"CallSid": sid(7), "CallStatus": "completed"})
    assert unsigned.status_code == 403
    assert count(db_session, TwilioEvent) == 0 and count(db_session, Call) == 0


def test_the_first_refused_signature_says_what_it_was_checked_against(app, client, caplog):
    caplog.set_level("WARNING", logger="helpdesk.voice.blueprint")
    for _ in range(2):
        assert post(client, "/twilio/voice/incoming", inbound(sid(8)), token="not-the-token").status_code == 403
    first, second = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    base = app.config["PUBLIC_BASE_URL"].rstrip("/")
    assert f"does not verify against {base}/twilio/voice/incoming (the request came to http://localhost)" in first
    assert "PUBLIC_BASE_URL" in first and "TWILIO_AUTH_TOKEN" in first
    assert second == "Twilio webhook refused: the signature does not verify (/twilio/voice/incoming)"
    client.post("/twilio/voice/status", data={"CallSid": sid(8), "CallStatus": "completed"})
    assert caplog.records[-1].getMessage() == "Twilio webhook refused: it has no signature (/twilio/voice/status)"


@pytest.mark.parametrize("unset", ["TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL"])
def test_without_the_auth_token_or_the_public_address_every_webhook_is_refused_and_nothing_stored(
        app, client, db_session, unset):
    app.config[unset] = ""
    # Signed as the server would check it if it could: with the empty token, or the usual one.
    signed_with = "" if unset == "TWILIO_AUTH_TOKEN" else None
    response = post(client, "/twilio/voice/incoming", inbound(sid(30)),
                    **({"token": signed_with} if signed_with is not None else {}))
    assert response.status_code == 403
    assert "Webhooks are not configured on this server." in response.get_data(as_text=True)
    assert count(db_session, TwilioEvent) == 0 and count(db_session, Call) == 0


def test_while_the_auth_token_is_changed_webhooks_signed_with_either_token_are_taken(app, client, db_session,
                                                                                     caplog):
    new_token = "the-new-auth-token-0123456789abcd"
    # Before the new token is set as the secondary one, Twilio's signatures with it are refused.
    assert post(client, "/twilio/voice/incoming", inbound(sid(8)), token=new_token).status_code == 403
    app.config["TWILIO_AUTH_TOKEN_SECONDARY"] = new_token
    assert post(client, "/twilio/voice/incoming", inbound(sid(8))).status_code == 200  # the old one
    assert post(client, "/twilio/voice/incoming", inbound(sid(9)), token=new_token).status_code == 200
    assert "make it TWILIO_AUTH_TOKEN, unset TWILIO_AUTH_TOKEN_SECONDARY" in caplog.text
    assert post(client, "/twilio/voice/incoming", inbound(sid(10)), token="neither").status_code == 403
    assert {c.call_sid for c in db_session.scalars(select(Call))} == {sid(8), sid(9)}


def test_an_oversized_webhook_is_refused_before_its_form_is_read_and_a_long_real_one_is_taken(client, db_session,
                                                                                              monkeypatch):
    from twilio.request_validator import RequestValidator

    checked = []
    compute = RequestValidator.compute_signature
    monkeypatch.setattr(RequestValidator, "compute_signature", lambda *args: checked.append(1) or compute(*args))
    junk = "&".join(f"k{i}=v" for i in range(20_000))  # 170 KB of fields
    response = client.post("/twilio/voice/incoming", data=junk, content_type="application/x-www-form-urlencoded",
                           headers={"X-Twilio-Signature": "x"})
    assert response.status_code == 413 and checked == [], "the signature was computed over an oversized form"
    monkeypatch.undo()
    # A real webhook with a long value (a two-minute voicemail's transcription) is well under the limit.
    long = post(client, "/twilio/voice/incoming", inbound(sid(9), TranscriptionText="word " * 3000))
    assert long.status_code == 200 and count(db_session, TwilioEvent) == 1  # that one, and nothing of the other


def test_a_signature_for_other_parameters_is_refused(client, db_session):
    params = inbound(sid(8))
    from twilio.request_validator import RequestValidator

    from tests.integration.conftest import AUTH_TOKEN

    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + "/twilio/voice/incoming", params)
    tampered = dict(params, From="+447700900999")
    response = client.post("/twilio/voice/incoming", data=tampered, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403 and count(db_session, TwilioEvent) == 0


@pytest.mark.parametrize("params, reason", [
    ({"CallStatus": "ringing"}, "CallSid is missing"),
    ({"CallSid": "not-a-sid"}, "not a Twilio call SID"),
])
def test_missing_or_malformed_parameters_get_400_with_a_reason(client, db_session, params, reason):
    response = post(client, "/twilio/voice/incoming", params)
    assert response.status_code == 400 and reason in response.get_data(as_text=True)
    assert count(db_session, TwilioEvent) == 0


YEAR_1 = "Mon, 01 Jan 0001 00:00:00 +0000"  # read as 2001 by a lenient parser
YEAR_9999 = "Fri, 31 Dec 9999 23:59:59 -0100"


@pytest.mark.parametrize("path, params, reason", [
    ("/twilio/voice/incoming", {"CallSid": sid(1) + "\n"}, "CallSid is not a Twilio call SID"),
    ("/twilio/voice/agent-status", {"CallSid": sid(2), "ParentCallSid": sid(1) + "\n", "CallStatus": "ringing"},
     "ParentCallSid is missing or not a Twilio call SID"),
    ("/twilio/voice/status", {"CallSid": sid(1), "CallStatus": "completed", "CallDuration": "\u00b2"},
     "CallDuration is not a number of seconds from 0 to 86400"),
    ("/twilio/voice/status", {"CallSid": sid(1), "CallStatus": "completed", "CallDuration": "99999999999"},
     "CallDuration is not a number of seconds"),
    ("/twilio/voice/dial-action", {"CallSid": sid(1), "DialCallStatus": "completed", "DialCallDuration": "inf"},
     "DialCallDuration is not a number of seconds"),
    ("/twilio/voice/dial-action", {"CallSid": sid(1), "DialCallStatus": "completed", "DialCallDuration": "1e15"},
     "DialCallDuration is not a number of seconds"),
    ("/twilio/voice/queue-action", {"CallSid": sid(1), "QueueResult": "bridged", "QueueTime": "Infinity"},
     "QueueTime is not a number of seconds"),
    ("/twilio/voice/dequeue", {"CallSid": sid(1), "QueueTime": "86401"}, "QueueTime is not a number of seconds"),
    ("/twilio/voice/recording", {"CallSid": sid(1), "RecordingDuration": "-5"},
     "RecordingDuration is not a number of seconds"),
    ("/twilio/voice/status", {"CallSid": sid(1), "CallStatus": "completed", "Timestamp": "yesterday"},
     "Timestamp is not a date and time (RFC 2822)"),
    ("/twilio/voice/status", {"CallSid": sid(1), "CallStatus": "completed", "Timestamp": YEAR_1},
     "Timestamp is not within a day of now"),
    ("/twilio/voice/agent-status", {"CallSid": sid(2), "ParentCallSid": sid(1), "CallStatus": "in-progress",
                                    "Timestamp": YEAR_1}, "Timestamp is not within a day of now"),
    ("/twilio/voice/status", {"CallSid": sid(1), "CallStatus": "completed", "Timestamp": YEAR_9999},
     "Timestamp is not within a day of now"),
])
def test_values_that_cannot_be_twilios_get_400_with_a_reason_and_store_nothing(client, db_session, path, params,
                                                                              reason):
    response = post(client, path, params)
    assert response.status_code == 400 and reason in response.get_data(as_text=True)
    assert count(db_session, TwilioEvent) == 0 and count(db_session, Call) == 0


def test_twilios_own_values_are_accepted(client, db_session, clock):
    params = {"CallSid": sid(3), "CallStatus": "completed", "CallDuration": "0",
              "Timestamp": stamp(clock.now - timedelta(hours=23))}
    assert post(client, "/twilio/voice/status", params).status_code == 204
    queue = {"CallSid": sid(3), "QueueResult": "bridged", "QueueTime": "86400", "Timestamp": ""}
    assert post(client, "/twilio/voice/queue-action", queue).status_code == 200
    assert count(db_session, TwilioEvent) == 2


def test_an_agent_status_without_a_parent_call_is_refused(client, db_session):
    response = post(client, "/twilio/voice/agent-status", {"CallSid": sid(9), "CallStatus": "ringing"})
    assert response.status_code == 400 and "ParentCallSid" in response.get_data(as_text=True)


def test_a_redelivered_webhook_is_stored_once(client, db_session):
    params = inbound(sid(10))
    first = post(client, "/twilio/voice/incoming", params, headers={"I-Twilio-Idempotency-Token": "tok-1"})
    second = post(client, "/twilio/voice/incoming", params, headers={"I-Twilio-Idempotency-Token": "tok-1"})
    assert first.data == second.data
    assert count(db_session, TwilioEvent) == 1
    assert count(db_session, Enquiry) == 1


def test_a_status_event_for_a_call_never_seen_still_makes_a_record(client, db_session, clock):
    response = post(client, "/twilio/voice/status", {"CallSid": sid(11), "CallStatus": "completed",
                                                     "CallDuration": "20", "From": "+447700900555",
                                                     "Timestamp": stamp(clock.now)})
    assert response.status_code == 204
    record = call(db_session, sid(11))
    assert record.incoming_seen is False
    assert record.arrived_at == clock.now - timedelta(seconds=20)
    assert record.enquiry.reference.startswith("HD-2026-")


def test_out_of_order_events_give_the_same_record_as_in_order_ones(client, db_session, clock):
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(12)))
    events = [
        ("/twilio/voice/status", {"CallSid": sid(12), "CallStatus": "completed", "Timestamp": stamp(arrived + timedelta(seconds=90))}),
        ("/twilio/voice/agent-status", {"CallSid": sid(901), "ParentCallSid": sid(12), "CallStatus": "completed",
                                        "Timestamp": stamp(arrived + timedelta(seconds=90))}),
        ("/twilio/voice/agent-status", {"CallSid": sid(901), "ParentCallSid": sid(12), "CallStatus": "in-progress",
                                        "Timestamp": stamp(arrived + timedelta(seconds=35))}),
    ]
    for path, params in events:
        clock.advance(1)
        post(client, path, params)
    record = call(db_session, sid(12))
    assert (record.outcome, record.rings, record.sla_result) == ("answered", 12, "breached")


def test_queue_mode_enqueues_the_caller_and_a_dequeue_records_the_answer(app, client, db_session, clock):
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    add_person(app, "alice")
    response = post(client, "/twilio/voice/incoming", inbound(sid(13)))
    enqueue = ET.fromstring(response.data).find("Enqueue")
    assert enqueue.text == "helpdesk" and enqueue.get("waitUrl") == f"{BASE_URL}/twilio/voice/queue-wait"
    wait = post(client, "/twilio/voice/queue-wait", {"CallSid": sid(13), "QueueTime": "5", "QueuePosition": "1"})
    assert ET.fromstring(wait.data).find("Say") is not None
    clock.advance(18)
    # The agent's phone calls the agents' Voice URL, which takes the caller from the queue.
    agents_call = {"CallSid": sid(902), "From": "client:alice", "To": "+441234000999", "Direction": "inbound",
                   "CallStatus": "ringing"}
    taken = post(client, "/twilio/voice/agent-dequeue", agents_call)
    assert taken.status_code == 200 and ET.fromstring(taken.data).find("Dial/Queue").text == "helpdesk"
    post(client, "/twilio/voice/dequeue", {"CallSid": sid(13), "QueueTime": "18", "DequeingCallSid": sid(902)})
    record = call(db_session, sid(13))
    assert (record.outcome, record.answer_seconds, record.rings) == ("answered", 18.0, 7)
    # Which phone took it: what the agent's call came from. The agent's call is journalled, not a call.
    assert (record.agent_leg_sid, record.agent) == (sid(902), "client:alice")
    assert db_session.scalar(select(func.count()).select_from(Call).where(Call.call_sid == sid(902))) == 0
    assert db_session.scalars(select(TwilioEvent.kind).where(TwilioEvent.call_sid == sid(902))).all() == [
        "agent_dequeue"]


def test_in_queue_mode_a_status_callback_for_an_agents_own_call_is_journalled_and_makes_no_call(
        app, client, db_session, clock, caplog):
    # The agents' number given a status callback URL, which the README says not to do.
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    add_person(app, "alice")
    post(client, "/twilio/voice/incoming", inbound(sid(13)))
    clock.advance(18)
    post(client, "/twilio/voice/agent-dequeue", {"CallSid": sid(902), "From": "client:alice", "To": "+441234000999"})
    post(client, "/twilio/voice/dequeue", {"CallSid": sid(13), "QueueTime": "18", "DequeingCallSid": sid(902)})
    clock.advance(60)
    for call_sid in (sid(13), sid(902)):
        answered = post(client, "/twilio/voice/status", {"CallSid": call_sid, "CallStatus": "completed",
                                                         "From": "client:alice", "To": "+441234000999",
                                                         "CallDuration": "78"})
        assert answered.status_code == 204
    assert db_session.scalars(select(Call.call_sid)).all() == [sid(13)]  # the caller's alone
    assert (call(db_session, sid(13)).outcome, call(db_session, sid(13)).agent) == ("answered", "client:alice")
    assert sorted(db_session.scalars(select(TwilioEvent.kind).where(TwilioEvent.call_sid == sid(902)))) == [
        "agent_dequeue", "status"]
    assert count(db_session, Enquiry) == 1 and count(db_session, Callback) == 0  # none owed to the agent
    assert "an agent's own call: journalled, not counted as a call" in caplog.text
    assert "alice" not in caplog.text  # nothing personal in the log


AGENTS_NUMBER = "+441144960099"


def agents_call_ended(client, call_sid: str, to: str = AGENTS_NUMBER):
    return post(client, "/twilio/voice/status", {"CallSid": call_sid, "CallStatus": "completed", "To": to,
                                                 "From": "+447700900555", "CallDuration": "78"})


def test_in_queue_mode_a_call_to_an_agents_number_the_app_never_heard_of_makes_no_call(
        app, client, db_session, clock, caplog):
    # The agent's request to the agents' Voice URL was lost (the app could not be reached), and
    # the agents' number has a status callback URL: only its To says whose call it was.
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue", "agents_numbers": [AGENTS_NUMBER]})
    assert agents_call_ended(client, sid(903)).status_code == 204
    assert agents_call_ended(client, sid(904), to="+441144960098").status_code == 204  # another number: a call
    assert db_session.scalars(select(Call.call_sid)).all() == [sid(904)]
    assert db_session.scalars(select(TwilioEvent.kind).where(TwilioEvent.call_sid == sid(903))).all() == ["status"]
    assert "status callback for call " + sid(903) + ", an agent's own call" in caplog.text
    assert "+447700900555" not in caplog.text


def test_a_call_to_an_agents_number_that_came_in_as_a_callers_is_still_counted(app, client, db_session, clock):
    # An agents' number whose Voice URL is the help desk's (a mistake twilio-numbers reports):
    # the app heard the call come in, so it is a caller's call, counted as one.
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue", "agents_numbers": [AGENTS_NUMBER]})
    post(client, "/twilio/voice/incoming", {**inbound(sid(905)), "To": AGENTS_NUMBER})
    clock.advance(45)  # past the ten rings: counted, and breached
    agents_call_ended(client, sid(905))
    assert (call(db_session, sid(905)).outcome, call(db_session, sid(905)).countable) == ("abandoned", True)


def test_in_dial_mode_the_agents_numbers_are_not_used(app, client, db_session):
    app.extensions["helpdesk.settings"] = make_settings(routing={"agents_numbers": [AGENTS_NUMBER]})
    agents_call_ended(client, sid(906))
    assert db_session.scalars(select(Call.call_sid)).all() == [sid(906)]


@pytest.mark.parametrize(("came_from", "agent"), [("+447700900555", "+447700900555"),
                                                  ("sip:1001@pbx.example.org;transport=tls",
                                                   "sip:1001@pbx.example.org;transport=tls"),
                                                  # Refused now, but put through unchecked while the
                                                  # users cannot be read: a withheld number names nobody.
                                                  ("anonymous", None), ("", None),
                                                  # Nor does what a blanked webhook keeps of an address.
                                                  ("client:", None), ("sip:", None)])
def test_in_queue_mode_the_phone_that_took_a_caller_is_what_the_agents_call_came_from(
        app, client, db_session, clock, came_from, agent):
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    add_person(app, "alice", phone="+447700900555")
    add_person(app, "bob", phone="sip:1001@pbx.example.org")
    post(client, "/twilio/voice/incoming", inbound(sid(13)))
    clock.advance(18)
    # The caller's dequeue first (a retried request can come late): the agent's call names the phone all the same
    # once its own request is stored and the caller's call is next brought up to date.
    post(client, "/twilio/voice/dequeue", {"CallSid": sid(13), "QueueTime": "18", "DequeingCallSid": sid(902)})
    assert call(db_session, sid(13)).agent is None
    db_session.rollback()  # the read ends: the webhooks write next
    post(client, "/twilio/voice/agent-dequeue", {"CallSid": sid(902), "From": came_from, "To": "+441234000999"})
    clock.advance(60)
    post(client, "/twilio/voice/status", {"CallSid": sid(13), "CallStatus": "completed", "CallDuration": "78"})
    assert (call(db_session, sid(13)).agent_leg_sid, call(db_session, sid(13)).agent) == (sid(902), agent)


@pytest.mark.parametrize(("came_from", "role"), [("client:alice", "agent"), ("Client:Mona", "manager"),
                                               ("+447700900555", "agent"), ("sip:1001@pbx.example.org", "agent"),
                                               ("client:dana", "admin")])
def test_the_agents_voice_url_puts_through_the_phones_and_client_identities_of_those_who_work_the_queue(
        app, client, db_session, came_from, role):
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    add_person(app, "alice", phone="+447700900555")
    add_person(app, "bob", phone="sip:1001@pbx.example.org;transport=tls")
    add_person(app, "mona", "manager")
    add_person(app, "dana", "admin")
    taken = post(client, "/twilio/voice/agent-dequeue", {"CallSid": sid(902), "From": came_from, "To": "+441234000999"})
    assert taken.status_code == 200 and ET.fromstring(taken.data).find("Dial/Queue").text == "helpdesk"
    assert db_session.scalars(select(TwilioEvent.decision).where(TwilioEvent.call_sid == sid(902))).all() == [None]


@pytest.mark.parametrize("came_from", ["client:carol", "+447700900999", "sip:1002@pbx.example.org", "anonymous", "",
                                       "client:sam", "client:olly", "client:+447700900555"])
def test_the_agents_voice_url_says_goodbye_to_anyone_else_and_puts_them_through_to_nobody(
        app, client, db_session, caplog, came_from):
    from helpdesk.users import deactivate

    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    add_person(app, "alice", phone="+447700900555")
    add_person(app, "bob", phone="sip:1001@pbx.example.org")
    add_person(app, "sam", "auditor")  # a DWP auditor takes no calls
    add_person(app, "olly")
    with app.extensions["helpdesk.db"].session() as session:
        deactivate(session, "olly")
    refused = post(client, "/twilio/voice/agent-dequeue", {"CallSid": sid(902), "From": came_from,
                                                            "To": "+441234000999"})
    twiml = ET.fromstring(refused.data)
    assert refused.status_code == 200 and twiml.find("Dial") is None
    assert [verb.tag for verb in twiml] == ["Say", "Hangup"]
    assert twiml.find("Say").text == "This line is for the help desk's agents only. Goodbye."
    # Journalled, with why, and no call of its own.
    assert db_session.scalars(select(TwilioEvent.decision).where(TwilioEvent.call_sid == sid(902))).all() == [
        "not_an_agent"]
    assert count(db_session, Call) == 0
    assert "to the agents' Voice URL refused: not from an agent's phone or Client identity" in caplog.text
    assert came_from.strip() == "" or came_from not in caplog.text


def test_the_agents_voice_url_refuses_a_forged_or_malformed_request_and_stores_nothing(app, client, db_session):
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    forged = post(client, "/twilio/voice/agent-dequeue", {"CallSid": sid(902), "From": "client:alice"},
                  token="not-the-token")
    assert forged.status_code == 403
    malformed = post(client, "/twilio/voice/agent-dequeue", {"CallSid": "not a sid", "From": "client:alice"})
    assert malformed.status_code == 400 and "CallSid is not a Twilio call SID." in malformed.get_data(as_text=True)
    assert count(db_session, TwilioEvent) == 0


def test_a_caller_who_waited_too_long_in_the_queue_is_told_to_leave(app, client):
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue", "queue_max_wait_seconds": 60})
    post(client, "/twilio/voice/incoming", inbound(sid(14)))
    wait = post(client, "/twilio/voice/queue-wait", {"CallSid": sid(14), "QueueTime": "61"})
    assert ET.fromstring(wait.data).find("Leave") is not None
    action = post(client, "/twilio/voice/queue-action", {"CallSid": sid(14), "QueueResult": "leave", "QueueTime": "61"})
    assert ET.fromstring(action.data).find("Record") is not None


def test_the_fallback_url_takes_a_message(client, db_session):
    response = post(client, "/twilio/voice/fallback", {**inbound(sid(16)), "ErrorCode": "11200",
                                                       "ErrorUrl": f"{BASE_URL}/twilio/voice/incoming"})
    assert ET.fromstring(response.data).find("Record") is not None
    assert call(db_session, sid(16)).outcome == "failed"


def test_enquiry_references_count_up_per_year(client, db_session):
    for n in range(20, 23):
        post(client, "/twilio/voice/incoming", inbound(sid(n)))
    references = sorted(db_session.scalars(select(Enquiry.reference)))
    assert references == ["HD-2026-000001", "HD-2026-000002", "HD-2026-000003"]


def test_health_and_readiness(client, app):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").get_data(as_text=True) == "ready\n"
    database = app.extensions["helpdesk.db"]
    pages_engine = database.engine
    # Webhooks connect with settings of their own, which a pooler may refuse while pages get
    # in: not ready either, or Twilio's webhooks would all go to the spool behind a green check.
    database.webhook_engine = create_engine("sqlite:////nonexistent-dir/helpdesk.db")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_data(as_text=True) == (
        "database unreachable for webhooks (they go to the spool)\n")
    database.connect("sqlite:////nonexistent-dir/helpdesk.db")
    assert client.get("/readyz").status_code == 503
    pages_engine.dispose()


def test_a_redelivery_is_recognised_as_such_on_every_database(app, settings):
    from helpdesk.voice.journal import record_event

    params = list(inbound(sid(30)).items())
    results = []
    for _ in range(2):
        with app.extensions["helpdesk.db"].connection() as connection:
            results.append(record_event(connection, settings, kind="incoming", path="/twilio/voice/incoming",
                                        params=params, received_at=datetime(2026, 11, 24, 10, tzinfo=timezone.utc)))
    assert results == [True, False]


def test_webhooks_have_no_cookie_session_but_pages_do(app):
    from flask import request

    opened = {}
    for path in ("/twilio/voice/status", "/twilio/voice/callback-status", "/email/inbound", "/login", "/twilio"):
        with app.test_request_context(path, method="POST"):
            opened[path] = app.session_interface.open_session(app, request) is not None
    assert opened == {"/twilio/voice/status": False, "/twilio/voice/callback-status": False,
                      "/email/inbound": False, "/login": True, "/twilio": True}


def test_a_screened_ring_group_counts_only_an_agent_who_pressed_1(app, client, db_session, clock):
    app.extensions["helpdesk.settings"] = make_settings(routing={"screen_calls": True})
    arrived = clock.now
    response = post(client, "/twilio/voice/incoming", inbound(sid(40)))
    for noun in ET.fromstring(response.data).find("Dial"):
        assert (noun.get("url"), noun.get("method")) == (f"{BASE_URL}/twilio/voice/screen", "POST")
    phone = {"ParentCallSid": sid(40), "To": "+447700900001", "CallStatus": "in-progress"}
    agent = {"ParentCallSid": sid(40), "To": "client:agent-1", "CallStatus": "in-progress"}
    # The phone's voicemail picks up at 20 s: it hears the prompt and presses nothing.
    clock.advance(20)
    post(client, "/twilio/voice/agent-status", {**phone, "CallSid": sid(941), "SequenceNumber": "2",
                                                 "Timestamp": stamp(arrived + timedelta(seconds=20))})
    prompt = post(client, "/twilio/voice/screen", {**phone, "CallSid": sid(941)})
    gather = ET.fromstring(prompt.data).find("Gather")
    assert (gather.get("action"), gather.get("numDigits")) == (f"{BASE_URL}/twilio/voice/screen-accept", "1")
    assert "Press 1" in gather.find("Say").text and ET.fromstring(prompt.data).find("Hangup") is not None
    assert call(db_session, sid(40)).outcome == "in_progress"
    db_session.rollback()  # end the read, so that SQLite lets the next webhooks write
    # The agent answers at 24 s and presses 1 three seconds later.
    clock.advance(4)
    post(client, "/twilio/voice/agent-status", {**agent, "CallSid": sid(942), "SequenceNumber": "2",
                                                 "Timestamp": stamp(arrived + timedelta(seconds=24))})
    post(client, "/twilio/voice/screen", {**agent, "CallSid": sid(942)})
    clock.advance(3)
    pressed = post(client, "/twilio/voice/screen-accept", {**agent, "CallSid": sid(942), "Digits": "1"})
    assert pressed.status_code == 200 and len(ET.fromstring(pressed.data)) == 0  # put through
    record = call(db_session, sid(40))
    assert (record.outcome, record.agent_leg_sid, record.agent) == ("answered", sid(942), "client:agent-1")
    assert record.answer_seconds == 27.0 and record.rings == 10 and record.sla_result == "met"
    stored = db_session.scalars(select(TwilioEvent.decision).where(TwilioEvent.kind.in_(["incoming", "screen_accept"]))
                                .order_by(TwilioEvent.id)).all()
    assert stored == ["agents_screened", "accepted"]


def test_a_screened_leg_pressing_another_key_is_hung_up_and_an_unbridged_dial_takes_a_message(app, client, db_session):
    app.extensions["helpdesk.settings"] = make_settings(routing={"screen_calls": True})
    post(client, "/twilio/voice/incoming", inbound(sid(41)))
    leg = {"CallSid": sid(943), "ParentCallSid": sid(41), "To": "+447700900001", "CallStatus": "in-progress"}
    declined = post(client, "/twilio/voice/screen-accept", {**leg, "Digits": "9"})
    assert [verb.tag for verb in ET.fromstring(declined.data)] == ["Hangup"]
    action = post(client, "/twilio/voice/dial-action", {"CallSid": sid(41), "DialCallStatus": "completed",
                                                        "DialCallSid": sid(943), "DialCallDuration": "0",
                                                        "DialBridged": "false"})
    assert ET.fromstring(action.data).find("Record") is not None
    assert call(db_session, sid(41)).answered_at is None


@pytest.mark.parametrize("path", ["/twilio/voice/screen", "/twilio/voice/screen-accept"])
def test_a_screening_request_without_a_parent_call_is_refused(client, db_session, path):
    response = post(client, path, {"CallSid": sid(944), "Digits": "1"})
    assert response.status_code == 400 and b"ParentCallSid" in response.data
    assert count(db_session, TwilioEvent) == 0


def test_an_unscreened_ring_group_names_no_screening_url(client):
    response = post(client, "/twilio/voice/incoming", inbound(sid(45)))
    assert all(noun.get("url") is None for noun in ET.fromstring(response.data).find("Dial"))


def test_a_call_is_judged_open_or_closed_at_the_moment_stored_as_its_arrival(app, client, db_session, clock):
    # The clock ticks on between readings: 17:59:59.999 when the request arrives, 18:00 (closed) after.
    closing = clock.now.replace(hour=18)
    readings = iter([closing - timedelta(milliseconds=1)])
    app.config["CLOCK"] = lambda: next(readings, closing)
    response = post(client, "/twilio/voice/incoming", inbound(sid(61)))
    stored = call(db_session, sid(61))
    assert stored.arrived_at == closing - timedelta(milliseconds=1)
    assert stored.in_hours and b"Dial" in response.data
