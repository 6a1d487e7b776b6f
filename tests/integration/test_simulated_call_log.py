"""The simulator's stand-in for Twilio's call log, read by the app's real lookup (twilio-python),
and the demo's outage: calls that rang while the app could not be reached are found in it."""
from __future__ import annotations

import random
import socket
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from helpdesk.models import Call
from helpdesk.simulator import HELP_DESK_NUMBER, CallScenario, Simulator, TrafficProfile, run_traffic
from helpdesk.simulator import simulate_command
from helpdesk.simulator_calllog import CallLog, CallLogServer, LoggedCall
from helpdesk.voice.lookup import LookupFailed, TwilioCallLookup
from helpdesk.voice.missed import find_missed
from tests.integration.conftest import AUTH_TOKEN, BASE_URL, OPEN_TIME, make_settings

ACCOUNT = "AC" + "5" * 32
UTC = timezone.utc
pytestmark = pytest.mark.usefixtures("local_no_proxy")


@pytest.fixture
def settings():
    return make_settings(webhooks={"twilio_numbers": [HELP_DESK_NUMBER]})


@pytest.fixture
def served():
    log = CallLog()
    server = CallLogServer(log, ACCOUNT, AUTH_TOKEN).start()
    yield log, server
    server.stop()


class FlaskTransport:
    """The Flask test client as the app's address on the internet: Twilio's signed webhooks go to it."""

    def __init__(self, client):
        self.client = client

    def post(self, url, params, headers):
        parts = urlsplit(url)
        response = self.client.post(parts.path + (f"?{parts.query}" if parts.query else ""), data=MultiDict(params),
                                    headers=headers)
        return response.status_code, response.get_data(as_text=True)


def logged(n: int, start: datetime, to: str = HELP_DESK_NUMBER) -> LoggedCall:
    return LoggedCall(f"CA{n:032x}", "+447700900123", to, start, start + timedelta(seconds=6))


def test_calls_that_rang_while_the_app_could_not_be_reached_are_found_and_the_others_are_not(
        app, client, clock, served):
    log, server = served
    clock.now = OPEN_TIME
    simulator = Simulator(BASE_URL, AUTH_TOKEN, ACCOUNT, FlaskTransport(client), clock=lambda: OPEN_TIME,
                          rng=random.Random(5), call_log=log)
    traces, summary = run_traffic(simulator, TrafficProfile(seed=5), 4, rate_per_second=None, concurrency=1)
    outage = [simulator.unreached_call(CallScenario(seed=n), OPEN_TIME - timedelta(minutes=30 - n))
              for n in range(3)]
    # After the look's period: listed (the lookup asks a day further), but left for a later look.
    later = simulator.unreached_call(CallScenario(seed=9), OPEN_TIME + timedelta(hours=3))
    log.clock = lambda: OPEN_TIME + timedelta(hours=2)
    lookup = TwilioCallLookup(ACCOUNT, AUTH_TOKEN, server.url)

    report = find_missed(app.extensions["helpdesk.db"], app.extensions["helpdesk.settings"], lookup,
                         since=OPEN_TIME - timedelta(hours=1), until=OPEN_TIME + timedelta(hours=1),
                         now=OPEN_TIME + timedelta(hours=2))

    assert summary.errors == 0 and len(log) == 8
    assert sorted(call.sid for call in report.found) == sorted(call.sid for call in outage)
    assert (report.listed, report.reached, report.stopped) == (7, 4, None)
    assert later.sid not in {call.sid for call in report.found}
    with app.extensions["helpdesk.db"].session() as session:
        stored = {call.call_sid: call for call in session.scalars(select(Call))}
    for call in outage:
        record = stored[call.sid]
        assert (record.outcome, record.incoming_seen, record.from_api) == ("failed", False, True)
        assert (record.arrived_at, record.ended_at) == (call.start_time, call.start_time + timedelta(seconds=6))
    assert all(stored[trace.call_sid].incoming_seen for trace in traces)


def test_the_log_is_listed_a_page_at_a_time_by_number_and_start_time_as_twilio_lists_it(served):
    log, server = served
    start = datetime(2026, 11, 24, 9, tzinfo=UTC)
    for n in range(2300):
        log.add(logged(n, start + timedelta(seconds=n)))
    log.add(logged(9000, start, to="+448001217000"))  # another number
    log.add(logged(9001, start - timedelta(days=1)))  # before the period
    lookup = TwilioCallLookup(ACCOUNT, AUTH_TOKEN, server.url)

    listed = lookup.calls_to(HELP_DESK_NUMBER, start, start + timedelta(hours=1))

    assert len(listed) == 2300 and len({call.sid for call in listed}) == 2300  # three pages of up to 1,000
    assert {call.to for call in listed} == {HELP_DESK_NUMBER}
    first = lookup.call(f"CA{0:032x}")
    assert (first.status, first.start_time, first.end_time, first.duration, first.direction) == (
        "completed", start, start + timedelta(seconds=6), "6", "inbound")
    assert lookup.legs(f"CA{0:032x}") == [] and lookup.recordings(f"CA{0:032x}") == []


def test_a_call_not_ended_yet_is_listed_going_on_and_left_for_a_later_look(app, served):
    log, server = served
    log.add(logged(1, OPEN_TIME))
    log.add(LoggedCall(f"CA{2:032x}", "+447700900123", HELP_DESK_NUMBER, OPEN_TIME, OPEN_TIME + timedelta(hours=1)))
    log.clock = lambda: OPEN_TIME + timedelta(minutes=20)
    lookup = TwilioCallLookup(ACCOUNT, AUTH_TOKEN, server.url)

    going_on = lookup.call(f"CA{2:032x}")
    report = find_missed(app.extensions["helpdesk.db"], app.extensions["helpdesk.settings"], lookup,
                         since=OPEN_TIME - timedelta(hours=1), until=OPEN_TIME + timedelta(minutes=5),
                         now=OPEN_TIME + timedelta(minutes=20))

    assert (going_on.status, going_on.end_time, going_on.duration) == ("in-progress", None, None)
    assert ([call.sid for call in report.found], report.live) == ([f"CA{1:032x}"], 1)


@pytest.mark.parametrize("query, expected", [
    ("StartTime=2026-11-24", [1, 2]),
    ("StartTime%3E=2026-11-24", [1, 2, 3]),  # StartTime>=2026-11-24, in Twilio's words
    ("StartTime%3E=2026-11-24T12:00:00Z", [2, 3]),
    ("StartTime%3C=2026-11-24", [0]),  # StartTime<=2026-11-24: before its midnight
    ("StartTime%3C=2026-11-24T12:00:00Z", [0, 1]),
    ("StartTime%3E=2026-11-24&StartTime%3C=2026-11-25", [1, 2]),
])
def test_start_time_filters_read_a_date_as_twilio_describes_and_an_instant_as_that_instant(served, query,
                                                                                           expected):
    log, server = served
    for n, start in enumerate((datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC), datetime(2026, 11, 24, 0, 0, tzinfo=UTC),
                               datetime(2026, 11, 24, 12, 0, tzinfo=UTC), datetime(2026, 11, 25, 0, 0, tzinfo=UTC))):
        log.add(logged(n, start))
    listed = requests.get(f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json?{query}",
                          auth=(ACCOUNT, AUTH_TOKEN), timeout=5).json()["calls"]
    assert sorted(int(call["sid"][2:], 16) for call in listed) == expected


def test_the_log_refuses_other_credentials_an_unknown_call_and_anything_but_reading(served):
    log, server = served
    log.add(logged(1, OPEN_TIME))

    with pytest.raises(LookupFailed) as refused:
        TwilioCallLookup(ACCOUNT, "not-the-token", server.url).calls_to(HELP_DESK_NUMBER, OPEN_TIME, OPEN_TIME)
    with pytest.raises(LookupFailed) as unknown:
        TwilioCallLookup(ACCOUNT, AUTH_TOKEN, server.url).call(f"CA{2:032x}")
    written = requests.post(f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json", auth=(ACCOUNT, AUTH_TOKEN),
                            data={"To": "+447700900123"}, timeout=5)
    bad_page = requests.get(f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json?PageSize=5000",
                            auth=(ACCOUNT, AUTH_TOKEN), timeout=5)
    empty_page = requests.get(f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json?PageSize=0",
                              auth=(ACCOUNT, AUTH_TOKEN), timeout=5)
    anonymous = requests.get(f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json", timeout=5)

    assert refused.value.refused and unknown.value.not_found
    assert (anonymous.status_code, anonymous.headers["WWW-Authenticate"]) == (401, 'Basic realm="Twilio API"')
    assert (empty_page.status_code, empty_page.json()["message"]) == (400, "Invalid PageSize: 0")
    assert (written.status_code, written.json()["code"]) == (405, 20004)
    assert (bad_page.status_code, bad_page.json()["message"]) == (400, "Invalid PageSize: 5000")


def test_with_outbound_calls_it_places_a_call_back_now_call_and_refuses_a_bad_request_as_twilio_would():
    from helpdesk.simulator_outbound import OutboundCalls

    log = CallLog()
    outbound = OutboundCalls(Simulator("http://127.0.0.1:9", AUTH_TOKEN, ACCOUNT, call_log=log), random.Random(3))
    server = CallLogServer(log, ACCOUNT, AUTH_TOKEN, outbound=outbound).start()
    calls = f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    call = {"To": "+447700900555", "From": HELP_DESK_NUMBER, "Url": "http://127.0.0.1:9/twilio/voice/callback-connect"}
    try:
        placed = requests.post(calls, auth=(ACCOUNT, AUTH_TOKEN), data=call, timeout=5)
        no_url = requests.post(calls, auth=(ACCOUNT, AUTH_TOKEN), data={**call, "Url": ""}, timeout=5)
        no_to = requests.post(calls, auth=(ACCOUNT, AUTH_TOKEN), data={**call, "To": " "}, timeout=5)
        anonymous = requests.post(calls, data=call, timeout=5)
        updated = requests.post(calls.replace("Calls.json", f"Calls/CA{1:032x}.json"), auth=(ACCOUNT, AUTH_TOKEN),
                                data={"Status": "completed"}, timeout=5)
        outbound.join(timeout=10)  # the app is not there: the call rings out unanswered, and ends
    finally:
        server.stop()
    assert placed.status_code == 201
    body = placed.json()
    assert (body["status"], body["direction"], body["to"], body["from"]) == (
        "queued", "outbound-api", "+447700900555", HELP_DESK_NUMBER)
    assert log.get(body["sid"]).direction == "outbound-api" and len(log) == 1
    assert (no_url.status_code, no_url.json()["code"]) == (400, 21205)
    assert (no_to.status_code, no_to.json()["code"]) == (400, 21201)
    assert anonymous.status_code == 401
    assert (updated.status_code, updated.json()["code"]) == (405, 20004)


def test_simulate_unreached_needs_the_call_log_a_free_port_and_waits_for_the_app_only_so_long(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    runner = CliRunner()

    alone = runner.invoke(simulate_command, ["--url", "http://127.0.0.1:9", "--unreached", "3"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(simulate_command, ["--url", "http://127.0.0.1:9", "--call-log-port", str(port)])
        # Nothing answers /readyz there: the simulator gives up after --wait, before any call.
        waited = runner.invoke(simulate_command, ["--url", f"http://127.0.0.1:{port}", "--wait", "0.5"])

    assert alone.exit_code == 2 and "give --call-log-port too" in alone.output
    assert busy.exit_code == 1 and f"cannot serve the call log on 127.0.0.1:{port}" in busy.output
    assert waited.exit_code == 1
    assert f"the app did not answer http://127.0.0.1:{port}/readyz within 0.5 s" in waited.output
