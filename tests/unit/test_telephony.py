"""Click-to-call without the network: the connect TwiML, number checks, the fake, the settings,
and the exact request twilio-python is asked to send (captured below the HTTP client)."""
from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from callbacks.telephony import (
    FakeTelephony,
    PlacedCall,
    TelephonyError,
    TwilioTelephony,
    UnconfiguredTelephony,
    confirm_twiml,
    connect_twiml,
    telephony_from_app_config,
)

BASE = "https://helpdesk.example.org"
AGENT = "+447700900001"
CALLER = "+447700900123"
DESK = "+441134960000"
SID = "AC" + "0" * 32
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
NOT_INTERNATIONAL = "is not a phone number in international format (+44...)."


def parse(twiml: str) -> ET.Element:
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    return root


# --------------------------------------------------------------------------- connect TwiML


def test_the_agent_is_asked_to_press_1_and_the_key_goes_back_to_the_connect_url():
    root = parse(confirm_twiml(BASE + "/", 42))
    assert [child.tag for child in root] == ["Gather", "Say", "Hangup"]
    gather = root.find("Gather")
    assert gather.get("action") == f"{BASE}/twilio/voice/callback-connect?callback=42"
    assert (gather.get("numDigits"), gather.get("method"), gather.get("timeout")) == ("1", "POST", "10")
    prompt = gather.find("Say")
    assert "Press 1" in prompt.text and prompt.get("language") == "en-GB"
    assert "was not called" in root.find("Say").text  # what voicemail hears once nothing is pressed


def test_the_connect_twiml_greets_the_agent_in_british_english_then_dials_the_caller():
    root = parse(connect_twiml(CALLER, DESK, BASE, 42))
    assert [child.tag for child in root] == ["Say", "Dial"]
    say = root.find("Say")
    assert say.text == "Connecting you to the caller."
    assert say.get("voice") == "Polly.Amy" and say.get("language") == "en-GB"
    numbers = root.find("Dial").findall("Number")
    assert [number.text for number in numbers] == [CALLER]


def test_the_connect_dial_shows_the_help_desk_number_and_reports_to_the_dial_action():
    dial = parse(connect_twiml(CALLER, DESK, BASE, 42)).find("Dial")
    assert dial.get("callerId") == DESK
    assert dial.get("action") == f"{BASE}/twilio/voice/callback-dial?callback=42"
    assert dial.get("method") == "POST"


def test_the_callers_leg_sends_every_status_event_to_the_callback_status_url():
    number = parse(connect_twiml(CALLER, DESK, BASE, 42)).find("Dial/Number")
    assert number.get("statusCallback") == f"{BASE}/twilio/voice/callback-status?callback=42"
    assert number.get("statusCallbackEvent") == "initiated ringing answered completed"
    assert number.get("statusCallbackMethod") == "POST"


def test_a_trailing_slash_on_the_public_base_url_does_not_double_the_slash():
    dial = parse(connect_twiml(CALLER, DESK, BASE + "/", 7)).find("Dial")
    assert dial.get("action") == f"{BASE}/twilio/voice/callback-dial?callback=7"


@pytest.mark.parametrize("caller", ["anonymous", "", "01134960000"])
def test_the_connect_twiml_apologises_and_hangs_up_when_the_caller_cannot_be_dialled(caller):
    root = parse(connect_twiml(caller, DESK, BASE, 42))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert "no number that can be dialled" in root.find("Say").text


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("caller", [None, "", "  ", "anonymous", "Restricted", "+266696687"])
def test_a_withheld_or_missing_caller_number_cannot_be_called_back(caller):
    with pytest.raises(TelephonyError) as raised:
        FakeTelephony().place_callback(agent_phone=AGENT, caller_number=caller, callback_id=1)
    assert raised.value.message == "This callback has no number to dial."


@pytest.mark.parametrize("caller", ["07700900123", "447700900123", "+44 7700 900123", "+0447700900123"])
def test_a_caller_number_not_in_e164_is_refused_without_repeating_the_number(caller):
    with pytest.raises(TelephonyError) as raised:
        FakeTelephony().place_callback(agent_phone=AGENT, caller_number=caller, callback_id=1)
    assert raised.value.message == f"The caller's number {NOT_INTERNATIONAL}"
    assert caller not in raised.value.message


@pytest.mark.parametrize("agent", ["", "07700900001", "client:agent-1", "sip:1001@", "sips:1001@pbx.example.org"])
def test_an_agent_phone_neither_in_e164_nor_a_sip_address_is_refused(agent):
    with pytest.raises(TelephonyError) as raised:
        FakeTelephony().place_callback(agent_phone=agent, caller_number=CALLER, callback_id=1)
    assert raised.value.message == ("Your phone is not a phone number in international format (+44...) "
                                    "nor a SIP address (sip:...).")


@pytest.mark.parametrize("agent", ["sip:1001@pbx.example.org", "sip:+447700900001@10.0.0.5:5061;transport=tls"])
def test_an_agent_phone_may_be_a_sip_address_which_twilio_dials_too(agent):
    telephony = FakeTelephony()
    telephony.place_callback(agent_phone=agent, caller_number=CALLER, callback_id=1)
    assert [call.agent_phone for call in telephony.calls] == [agent]


def test_the_real_telephony_checks_numbers_before_it_sends_anything(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a request was sent")

    monkeypatch.setattr(TwilioHttpClient, "request", no_network)
    telephony = TwilioTelephony(SID, "token", DESK, BASE)
    with pytest.raises(TelephonyError, match="no number to dial"):
        telephony.place_callback(agent_phone=AGENT, caller_number="anonymous", callback_id=1)


# --------------------------------------------------------------------------- FakeTelephony


def test_the_fake_records_each_call_and_returns_deterministic_call_sids():
    fake = FakeTelephony(clock=lambda: NOON)
    first = fake.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=5)
    second = fake.place_callback(agent_phone=AGENT, caller_number="+447700900124", callback_id=6)
    assert first == PlacedCall(call_sid="CA" + "0" * 31 + "1", status="queued", placed_at=NOON)
    assert second.call_sid == "CA" + "0" * 31 + "2"
    assert all(CALL_SID.match(placed.call_sid) for placed in (first, second))
    assert [(call.caller_number, call.callback_id, call.placed) for call in fake.calls] == [
        (CALLER, 5, first), ("+447700900124", 6, second)]
    assert FakeTelephony(clock=lambda: NOON).place_callback(
        agent_phone=AGENT, caller_number=CALLER, callback_id=5) == first


def test_the_fake_places_calls_at_an_aware_utc_time_by_default():
    placed = FakeTelephony().place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=1)
    assert placed.placed_at.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - placed.placed_at).total_seconds()) < 60


def test_the_fake_fails_with_the_message_it_was_given_and_records_nothing():
    fake = FakeTelephony(fail_with="Twilio did not answer in time. Nothing was recorded; try again.")
    with pytest.raises(TelephonyError) as raised:
        fake.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=1)
    assert raised.value.message == "Twilio did not answer in time. Nothing was recorded; try again."
    assert str(raised.value) == raised.value.message
    assert fake.calls == []
    fake.fail_with = None
    assert fake.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=1).call_sid.endswith("1")


def test_a_placed_call_cannot_be_changed():
    placed = PlacedCall(call_sid="CA" + "a" * 32, status="queued", placed_at=NOON)
    with pytest.raises(AttributeError):
        placed.status = "completed"  # type: ignore[misc]


# --------------------------------------------------------------------------- settings


def configured(**overrides):
    config = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "token", "PUBLIC_BASE_URL": BASE,
              "TWILIO_FROM_NUMBER": DESK}
    config.update(overrides)
    return config


def test_without_account_sid_and_token_every_callback_says_twilio_is_not_configured():
    telephony = telephony_from_app_config(configured(TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=""), environ={})
    assert isinstance(telephony, UnconfiguredTelephony)
    with pytest.raises(TelephonyError) as raised:
        telephony.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=1)
    # The agent is told what to do now, and what to tell an administrator.
    assert raised.value.message == ("Calling from this page is not set up yet, so call from your own phone and log "
                                    "the attempt. Tell an administrator: Twilio is not configured: set "
                                    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.")


def test_the_not_configured_message_names_every_missing_setting():
    telephony = telephony_from_app_config({}, environ={})
    assert telephony.message == ("Twilio is not configured: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, "
                                 "PUBLIC_BASE_URL and TWILIO_FROM_NUMBER.")


def test_a_help_desk_number_not_in_e164_is_a_configuration_error():
    telephony = telephony_from_app_config(configured(TWILIO_FROM_NUMBER="01134960000"), environ={})
    assert telephony.message == f"Twilio is not configured: TWILIO_FROM_NUMBER {NOT_INTERNATIONAL}"


@pytest.mark.parametrize("sid", ["ACC0FFEE", "AC" + "g" * 32, "AC" + "0" * 31, "CA" + "0" * 32])
def test_an_account_sid_twilio_never_issued_is_a_configuration_error(sid):
    telephony = telephony_from_app_config(configured(TWILIO_ACCOUNT_SID=sid), environ={})
    assert isinstance(telephony, UnconfiguredTelephony)
    assert telephony.message.startswith("Twilio is not configured: TWILIO_ACCOUNT_SID is not an account SID")


def test_the_from_number_and_mock_address_come_from_the_environment_when_the_config_lacks_them():
    config = configured()
    del config["TWILIO_FROM_NUMBER"]
    telephony = telephony_from_app_config(
        config, environ={"TWILIO_FROM_NUMBER": DESK, "TWILIO_API_BASE_URL": "http://127.0.0.1:4010"})
    assert isinstance(telephony, TwilioTelephony)
    assert (telephony.from_number, telephony.api_base_url) == (DESK, "http://127.0.0.1:4010")
    assert (telephony.account_sid, telephony.public_base_url) == (SID, BASE)


def test_an_empty_api_base_url_means_the_real_twilio():
    telephony = telephony_from_app_config(configured(TWILIO_API_BASE_URL=""), environ={"TWILIO_API_BASE_URL": ""})
    assert isinstance(telephony, TwilioTelephony) and telephony.api_base_url is None


# --------------------------------------------------------------------------- the request


CREATED = ('{"sid": "CA0123456789abcdef0123456789abcdef", "status": "queued", '
           '"account_sid": "%s", "to": "%s", "from": "%s"}' % (SID, AGENT, DESK))


@pytest.fixture
def sent(monkeypatch) -> list[dict]:
    """Requests that reach twilio-python's HTTP client (after our URL rewrite); answered 201."""
    requests_sent: list[dict] = []

    def capture(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        requests_sent.append({"method": method, "url": url, "data": data, "auth": auth,
                              "timeout": self.timeout if timeout is None else timeout})
        return Response(201, CREATED, {})

    monkeypatch.setattr(TwilioHttpClient, "request", capture)
    return requests_sent


def test_placing_a_callback_asks_twilio_to_ring_the_agent_with_the_connect_url(sent):
    telephony = TwilioTelephony(SID, "token", DESK, BASE + "/", timeout=4, clock=lambda: NOON)
    placed = telephony.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=42)
    assert placed == PlacedCall("CA0123456789abcdef0123456789abcdef", "queued", NOON)
    [request] = sent
    assert request["method"] == "POST"
    assert request["url"] == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Calls.json"
    assert request["auth"] == (SID, "token") and request["timeout"] == 4
    assert request["data"] == {
        "To": AGENT,
        "From": DESK,
        "Url": f"{BASE}/twilio/voice/callback-connect?callback=42",
        "Method": "POST",
        "StatusCallback": f"{BASE}/twilio/voice/callback-status?callback=42",
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "StatusCallbackMethod": "POST",
        "Timeout": 30,
    }


def test_the_callers_number_is_never_sent_to_twilio_when_placing_the_call(sent):
    TwilioTelephony(SID, "token", DESK, BASE).place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=1)
    assert CALLER not in repr(sent)


def test_an_api_base_url_sends_the_request_to_the_mock_instead_of_twilio(sent):
    telephony = TwilioTelephony(SID, "token", DESK, BASE, api_base_url="http://127.0.0.1:4010/")
    telephony.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=1)
    assert urlsplit(sent[0]["url"])[:3] == ("http", "127.0.0.1:4010", f"/2010-04-01/Accounts/{SID}/Calls.json")


def test_the_log_names_the_call_sid_and_never_a_phone_number(sent, caplog):
    caplog.set_level(logging.DEBUG)
    TwilioTelephony(SID, "token", DESK, BASE).place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=9)
    assert "CA0123456789abcdef0123456789abcdef" in caplog.text
    for number in (AGENT, CALLER, DESK, AGENT[1:], CALLER[1:]):
        assert number not in caplog.text


def test_the_connect_url_in_the_request_carries_only_the_callback_id(sent):
    TwilioTelephony(SID, "token", DESK, BASE).place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=77)
    for key in ("Url", "StatusCallback"):
        assert parse_qs(urlsplit(sent[0]["data"][key]).query) == {"callback": ["77"]}
