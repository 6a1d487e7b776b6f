"""Click-to-call against Twilio's REST API as described by Twilio's OpenAPI document, served by
a Prism mock that validates every request; plus a tiny local server for what Prism cannot do
(5xx answers, Twilio's own error bodies, slow answers) and a closed port.

Prism 5 reads repeated form keys (twilio-python's StatusCallbackEvent=a&StatusCallbackEvent=b)
as a single string and refuses the request, so the HTTP client used with it sends them as
StatusCallbackEvent[] (see tests/prism.py); one test proves the limitation is still there.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

import pytest

from callbacks.telephony import (ApiBaseHttpClient, PlacedCall, TelephonyError, TwilioTelephony,
                                 telephony_from_app_config)
from helpdesk.settings import SipLogin
from prism import bracket_list_fields
from servers import HOST, free_port
from tests.integration.stub_api import StubApi

SID = "AC" + "0" * 32
DESK = "+441134960000"
AGENT = "+447700900001"
CALLER = "+447700900123"
BASE = "https://helpdesk.example.org"
CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
EXAMPLE_CALL_SID = "CA" + "a" * 32  # the Calls resource's documented example
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
RETRY = "Nothing was recorded; try again."
pytestmark = pytest.mark.usefixtures("local_no_proxy")


class PrismHttpClient(ApiBaseHttpClient):
    """Sends list fields as Name[] (Prism issue #2473) and an optional Prefer header."""

    prefer: str | None = None

    def request(self, method, url, params=None, data=None, headers=None, *args, **kwargs):
        headers = dict(headers or {})
        if self.prefer:
            headers["Prefer"] = self.prefer
        return super().request(method, url, params, bracket_list_fields(data), headers, *args, **kwargs)


class DynamicPrismHttpClient(PrismHttpClient):
    prefer = "dynamic=true"  # generated responses instead of the documented example


class PrismTelephony(TwilioTelephony):
    http_client_class = PrismHttpClient


def place(telephony: TwilioTelephony, callback_id: int = 42) -> PlacedCall:
    return telephony.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=callback_id)


# --------------------------------------------------------------------------- Prism


def test_placing_a_callback_returns_the_call_sid_from_a_request_that_passes_prisms_validation(prism):
    mark = prism.log_size()
    placed = place(PrismTelephony(SID, "token", DESK, BASE, api_base_url=prism.url, clock=lambda: NOON))
    assert CALL_SID.match(placed.call_sid)
    assert placed == PlacedCall(EXAMPLE_CALL_SID, "completed", NOON)  # the example's status
    log = prism.wait_for_log('Responding with "201"', since=mark)
    assert "The request passed the validation rules" in log
    assert "Request did not pass the validation rules" not in log


def test_a_callback_to_an_agents_sip_address_passes_prisms_validation_and_is_sent_as_the_to(prism, stub):
    desk_phone = "sip:1001@pbx.example.org;transport=tls"
    mark = prism.log_size()
    telephony = PrismTelephony(SID, "token", DESK, BASE, api_base_url=prism.url)
    assert CALL_SID.match(telephony.place_callback(agent_phone=desk_phone, caller_number=CALLER,
                                                   callback_id=42).call_sid)
    log = prism.wait_for_log('Responding with "201"', since=mark)
    assert "The request passed the validation rules" in log
    stub.body = f'{{"sid": "{EXAMPLE_CALL_SID}", "status": "queued"}}'
    TwilioTelephony(SID, "token", DESK, BASE, api_base_url=stub.url).place_callback(
        agent_phone=desk_phone, caller_number=CALLER, callback_id=42)
    assert parse_qs(stub.bodies[-1])["To"] == [desk_phone]


def test_a_desk_phone_is_rung_with_the_sip_login_and_a_number_without_it(prism, stub):
    login = SipLogin("helpdesk-trunk", "correct horse battery staple")
    desk_phone = "sip:1001@pbx.example.org"
    mark = prism.log_size()
    PrismTelephony(SID, "token", DESK, BASE, api_base_url=prism.url, sip_login=login).place_callback(
        agent_phone=desk_phone, caller_number=CALLER, callback_id=42)
    log = prism.wait_for_log('Responding with "201"', since=mark)
    assert "The request passed the validation rules" in log
    stub.body = f'{{"sid": "{EXAMPLE_CALL_SID}", "status": "queued"}}'
    telephony = TwilioTelephony(SID, "token", DESK, BASE, api_base_url=stub.url, sip_login=login)
    telephony.place_callback(agent_phone=desk_phone, caller_number=CALLER, callback_id=42)
    sent = parse_qs(stub.bodies[-1])
    assert (sent["SipAuthUsername"], sent["SipAuthPassword"]) == (["helpdesk-trunk"], ["correct horse battery staple"])
    telephony.place_callback(agent_phone=AGENT, caller_number=CALLER, callback_id=43)
    assert not {"SipAuthUsername", "SipAuthPassword"} & parse_qs(stub.bodies[-1]).keys()  # a number is not asked


def test_the_sip_login_for_call_back_now_comes_from_the_environment():
    config = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "token", "PUBLIC_BASE_URL": BASE}
    environ = {"TWILIO_FROM_NUMBER": DESK, "SIP_USERNAME": "helpdesk-trunk", "SIP_PASSWORD": "secret"}
    assert telephony_from_app_config(config, environ).sip_login == SipLogin("helpdesk-trunk", "secret")
    assert telephony_from_app_config(config, {"TWILIO_FROM_NUMBER": DESK}).sip_login is None
    # The app's own, as create_app read and checked it, comes first.
    assert telephony_from_app_config({**config, "SIP_LOGIN": None}, environ).sip_login is None


def test_the_call_sid_is_read_from_twilios_answer_rather_than_assumed(prism):
    class DynamicTelephony(TwilioTelephony):
        http_client_class = DynamicPrismHttpClient

    telephony = DynamicTelephony(SID, "token", DESK, BASE, api_base_url=prism.url)
    sids = {place(telephony).call_sid for _ in range(3)}
    assert len(sids) == 3 and EXAMPLE_CALL_SID not in sids
    assert all(CALL_SID.match(sid) for sid in sids)


def test_prism_5_still_refuses_the_repeated_form_keys_twilio_python_sends(prism):
    # If this fails, Prism reads repeated keys as arrays now: drop bracket_list_fields.
    with pytest.raises(TelephonyError) as raised:
        place(TwilioTelephony(SID, "token", DESK, BASE, api_base_url=prism.url))
    assert raised.value.message == "Twilio refused the call: Request body property StatusCallbackEvent must be array"


def test_a_request_the_api_rejects_becomes_a_telephony_error_with_the_apis_reason(prism):
    telephony = PrismTelephony(SID, "token", DESK, "helpdesk.example.org", api_base_url=prism.url)
    with pytest.raises(TelephonyError) as raised:
        place(telephony)
    assert raised.value.message.startswith("Twilio refused the call: ")
    assert 'Request body property Url must match format "uri"' in raised.value.message
    assert 'StatusCallback must match format "uri"' in raised.value.message


# --------------------------------------------------------------------------- a stand-in API


def refusal(stub: StubApi, status: int, body: str) -> str:
    stub.status, stub.body = status, body
    with pytest.raises(TelephonyError) as raised:
        place(TwilioTelephony(SID, "token", DESK, BASE, api_base_url=stub.url))
    return raised.value.message


def test_a_client_error_in_twilios_format_gives_twilios_own_message(stub):
    body = ('{"code": 21210, "message": "The source phone number provided is not yet verified for your account.",'
            ' "more_info": "https://www.twilio.com/docs/errors/21210", "status": 400}')
    assert refusal(stub, 400, body) == (
        "Twilio refused the call: The source phone number provided is not yet verified for your account.")


def test_a_problem_details_error_gives_its_detail(stub):
    body = ('{"type": "https://www.twilio.com/docs/errors/20003", "title": "Authentication Error", '
            '"status": 401, "code": 20003, "detail": "Your AccountSid or AuthToken was incorrect."}')
    assert refusal(stub, 401, body) == "Twilio refused the call: Your AccountSid or AuthToken was incorrect."


def test_a_server_error_from_the_api_becomes_a_telephony_error_that_invites_a_retry(stub):
    body = '{"code": 20500, "message": "An internal server error has occurred", "status": 500}'
    assert refusal(stub, 500, body) == f"Twilio could not place the call: An internal server error has occurred. {RETRY}"


@pytest.mark.parametrize(
    ("status", "body"),
    [(502, "<html>Bad gateway</html>"), (404, ""), (201, "not json"), (201, "[]"), (201, "{}"),
     (201, '{"sid": 12345}'), (302, "")],
    ids=["html-502", "empty-404", "text-201", "list-201", "no-sid-201", "number-sid-201", "redirect"],
)
def test_any_unusable_answer_becomes_a_telephony_error_and_nothing_else_escapes(stub, status, body):
    message = refusal(stub, status, body)
    assert message.startswith("Twilio")
    assert CALLER not in message and AGENT not in message


def test_a_connection_refused_becomes_a_telephony_error():
    closed = f"http://{HOST}:{free_port()}"
    with pytest.raises(TelephonyError) as raised:
        place(TwilioTelephony(SID, "token", DESK, BASE, api_base_url=closed))
    assert raised.value.message == f"Could not reach Twilio. {RETRY}"


def test_an_api_that_does_not_answer_in_time_becomes_a_telephony_error_promptly(stub):
    stub.delay = 10
    began = time.monotonic()
    with pytest.raises(TelephonyError) as raised:
        place(TwilioTelephony(SID, "token", DESK, BASE, api_base_url=stub.url, timeout=0.5))
    assert raised.value.message == f"Twilio did not answer in time. {RETRY}"
    assert time.monotonic() - began < 5
