"""Asking Twilio's REST API about a call, against Prism serving Twilio's own OpenAPI description,
and a small local server for the answers Prism cannot give (errors, unreadable bodies)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from callbacks.telephony import ApiBaseHttpClient
from helpdesk.voice.lookup import CallFacts, LookupFailed, RecordingFacts, TwilioCallLookup
from servers import HOST, free_port

SID = "AC" + "0" * 32
EXAMPLE = "CA" + "a" * 32  # the Calls resource's documented example
EXAMPLE_PARENT = "CAdeadbeefdeadbeefdeadbeefdeadbeef"
pytestmark = pytest.mark.usefixtures("local_no_proxy")


def test_a_call_is_read_from_the_documented_answer_and_the_request_passes_validation(prism):
    mark = prism.log_size()
    call = TwilioCallLookup(SID, "token", api_base_url=prism.url).call(EXAMPLE)
    assert call == CallFacts(
        sid=EXAMPLE, parent_sid=EXAMPLE_PARENT, status="completed",
        start_time=datetime(2019, 10, 18, 17, 2, tzinfo=timezone.utc),
        end_time=datetime(2019, 10, 18, 17, 3, tzinfo=timezone.utc), duration="4",
        from_="+13051416799", to="+13051913581", direction="outbound-api",
        updated=datetime(2019, 10, 18, 17, 1, tzinfo=timezone.utc))
    assert ("EndTime", "Fri, 18 Oct 2019 17:03:00 +0000") in call.params()
    log = prism.wait_for_log('Responding with "200"', since=mark)
    assert f"/Calls/{EXAMPLE}.json" in log
    assert "Request did not pass the validation rules" not in log


class GeneratedAnswers(ApiBaseHttpClient):
    """Asks Prism for answers generated from the schema: the documented example of the Calls
    list has relative page URIs, which Prism's own response check (--errors) refuses."""

    def request(self, method, url, params=None, data=None, headers=None, *args, **kwargs):
        headers = {**(headers or {}), "Prefer": "dynamic=true"}
        return super().request(method, url, params, data, headers, *args, **kwargs)


class GeneratedLookup(TwilioCallLookup):
    http_client_class = GeneratedAnswers


def test_the_legs_of_a_call_are_listed_by_their_parent(prism):
    mark = prism.log_size()
    legs = GeneratedLookup(SID, "token", api_base_url=prism.url).legs(EXAMPLE_PARENT)
    assert all(isinstance(leg, CallFacts) for leg in legs)
    statuses = {"queued", "ringing", "in-progress", "canceled", "completed", "failed", "busy", "no-answer"}
    assert {leg.status for leg in legs} <= statuses
    log = prism.wait_for_log('Responding with "200"', since=mark)
    assert "Request did not pass the validation rules" not in log


def test_the_recordings_of_a_call_are_listed_and_the_request_passes_validation(prism):
    mark = prism.log_size()
    recordings = GeneratedLookup(SID, "token", api_base_url=prism.url).recordings(EXAMPLE)
    assert all(isinstance(recording, RecordingFacts) for recording in recordings)
    statuses = {"in-progress", "paused", "stopped", "processing", "completed", "absent"}
    assert {recording.status for recording in recordings} <= statuses
    log = prism.wait_for_log('Responding with "200"', since=mark)
    assert f"/Calls/{EXAMPLE}/Recordings.json" in log
    assert "Request did not pass the validation rules" not in log


# --------------------------------------------------------------------------- answers Prism cannot give


def test_legs_are_asked_for_by_parent_in_one_page(stub):
    stub.status, stub.body = 200, ('{"calls": [{"sid": "CA' + "1" * 32 + '", "parent_call_sid": "' + EXAMPLE + '", "status": "no-answer",'
                 ' "to": "client:agent-1", "duration": null, "end_time": null}], "page": 0, "page_size": 100}')
    legs = TwilioCallLookup(SID, "token", api_base_url=stub.url).legs(EXAMPLE)
    assert [(leg.sid, leg.parent_sid, leg.status, leg.duration) for leg in legs] == [
        ("CA" + "1" * 32, EXAMPLE, "no-answer", None)]
    assert stub.paths == [f"/2010-04-01/Accounts/{SID}/Calls.json?ParentCallSid={EXAMPLE}&PageSize=100"]


def test_recordings_are_asked_for_by_call_in_one_page_and_read_with_webhook_names(stub):
    recording = {"sid": "RE" + "2" * 32, "call_sid": EXAMPLE, "status": "completed", "duration": "14",
                 "source": "RecordVerb", "uri": f"/2010-04-01/Accounts/{SID}/Recordings/RE{'2' * 32}.json"}
    stub.status, stub.body = 200, json.dumps({"recordings": [recording], "page": 0, "page_size": 100})
    recordings = TwilioCallLookup(SID, "token", api_base_url=stub.url).recordings(EXAMPLE)
    assert recordings == [RecordingFacts(sid="RE" + "2" * 32, call_sid=EXAMPLE, status="completed", duration="14",
                                         source="RecordVerb", uri=recording["uri"])]
    assert ("RecordingDuration", "14") in recordings[0].params()
    assert ("RecordingSource", "RecordVerb") in recordings[0].params()
    assert stub.paths == [f"/2010-04-01/Accounts/{SID}/Calls/{EXAMPLE}/Recordings.json?PageSize=100"]


def failure(url: str) -> LookupFailed:
    with pytest.raises(LookupFailed) as raised:
        TwilioCallLookup(SID, "token", api_base_url=url, timeout=2).call(EXAMPLE)
    return raised.value


def test_a_call_twilio_does_not_know_is_not_found(stub):
    stub.status, stub.body = 404, '{"code": 20404, "message": "The requested resource was not found", "status": 404}'
    found = failure(stub.url)
    assert (found.not_found, found.unreachable) == (True, False)
    assert found.reason == f"call {EXAMPLE}: Twilio answered HTTP 404 (code 20404)"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_server_error_or_rate_limit_means_try_again_later(stub, status):
    stub.status, stub.body = status, '{"code": 20500, "message": "An internal server error has occurred"}'
    assert failure(stub.url).unreachable
    lookup = TwilioCallLookup(SID, "token", api_base_url=stub.url, timeout=2)
    for listed in (lookup.legs, lookup.recordings):  # a list answers errors differently in twilio-python
        with pytest.raises(LookupFailed) as raised:
            listed(EXAMPLE)
        assert raised.value.unreachable and raised.value.reason.endswith(f"Twilio answered HTTP {status}")


def test_an_unreadable_answer_is_a_failure_not_a_crash(stub):
    stub.status, stub.body = 200, "not json"
    found = failure(stub.url)
    assert (found.not_found, found.unreachable) == (False, False)
    assert "could not be read" in found.reason


def test_a_closed_port_means_try_again_later():
    found = failure(f"http://{HOST}:{free_port()}")
    assert found.unreachable and "could not reach Twilio" in found.reason


class LastPage(GeneratedAnswers):
    """As GeneratedAnswers, and the page is the last: Prism makes up a next page's URI, which
    it then does not know (the following of next pages is tested against `stub`)."""

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        page = json.loads(response.text)
        response.content = json.dumps({**page, "next_page_uri": None})
        return response


class LastPageLookup(TwilioCallLookup):
    http_client_class = LastPage


def test_the_calls_to_a_number_over_a_period_are_listed_and_the_request_passes_validation(prism):
    mark = prism.log_size()
    since, until = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc), datetime(2026, 11, 24, 17, 30, tzinfo=timezone.utc)
    calls = LastPageLookup(SID, "token", api_base_url=prism.url).calls_to("+448001217479", since, until)
    assert all(isinstance(call, CallFacts) for call in calls)
    log = prism.wait_for_log('Responding with "200"', since=mark)
    assert f"get /2010-04-01/Accounts/{SID}/Calls.json" in log
    assert "Request did not pass the validation rules" not in log
