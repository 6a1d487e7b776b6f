"""The app under gunicorn, driven by the call simulator: the stored figures match what was played."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from helpdesk.config import load_settings
from helpdesk.db import Database
from helpdesk.models import Call, Enquiry, TwilioEvent
from helpdesk.rings import rings_for
from helpdesk.simulator import RequestsTransport, Simulator, TrafficProfile, run_traffic
from live import LiveApp
from tests.e2e.conftest import AUTH_TOKEN, SIP_LOGIN, SIP_TARGET, write_config

CALLS = 40
TARGET = 30.0


@pytest.mark.e2e
@pytest.mark.parametrize("mode, ivr, screened", [("dial", True, False), ("queue", False, False), ("dial", False, True)],
                         ids=["ring-group-with-menu", "queue", "screened-ring-group"])
def test_simulated_traffic_is_recorded_call_by_call(migrated_url, app_env, tmp_path, mode, ivr, screened):
    database_url = migrated_url
    # The ring group with a menu also rings a desk phone on a phone system that asks Twilio to log in.
    sip = mode == "dial" and ivr
    config = write_config(tmp_path / "helpdesk.toml", routing_mode=mode, ivr=ivr, screen_calls=screened, sip=sip)
    if sip:
        app_env = {**app_env, "SIP_USERNAME": SIP_LOGIN[0], "SIP_PASSWORD": SIP_LOGIN[1]}
    if mode == "queue":  # the simulator's agents call from client:agent: the agents' Voice URL takes a user's only
        from helpdesk.users import add_user

        database = Database(database_url)
        try:
            with database.session() as session:
                add_user(session, "agent", "a-long-enough-password", "agent")
        finally:
            database.dispose()
    calendar = load_settings(config).calendar
    # With screening, agents' phones send a third of the calls to their own voicemail first.
    profile = TrafficProfile(seed=20261124, abandon_rate=0.15, no_answer_rate=0.1, answer_median=15,
                             agent_voicemail_rate=0.35 if screened else 0.0)
    with LiveApp(database_url, {**app_env, "HELPDESK_CONFIG": config}, workers=3) as live:
        transport = RequestsTransport()
        simulator = Simulator(live.url, AUTH_TOKEN, transport=transport, speed=0, duplicate=0.15, out_of_order=0.4,
                              sip_login=SIP_LOGIN if sip else None)
        result = run_traffic(simulator, profile, calls=CALLS, rate_per_second=None, concurrency=8)
        transport.close()
        log = live.log_text()
    assert result.summary.errors == 0, [trace.errors for trace in result.traces if trace.errors]
    assert result.summary.redeliveries > 0, "the run should include redelivered webhooks"
    assert result.summary.sip_refused == 0, "the app gave the phone system its login"
    if sip:  # the desk phone was rung, and took some calls
        assert any(r.param("To") == SIP_TARGET for trace in result.traces for r in trace.sent("leg-status"))
    assert "Traceback" not in log

    database = Database(database_url)
    try:
        with database.session() as session:
            calls = {call.call_sid: call for call in session.scalars(select(Call))}
            events = dict(session.execute(select(TwilioEvent.call_sid, func.count()).group_by(TwilioEvent.call_sid)).all())
            references = list(session.scalars(select(Enquiry.reference)))
    finally:
        database.dispose()

    assert len(calls) == CALLS
    if sip:
        assert any(call.agent == SIP_TARGET for call in calls.values())
    assert len(set(references)) == CALLS
    for scenario, trace in zip(profile.scenarios(CALLS), result.traces):
        call = calls[trace.call_sid]
        # Every distinct webhook about the call is journalled once; redeliveries are recognised. (The
        # agent's phone asking the agents' Voice URL is the agent's own call, journalled under its own SID.)
        assert events[trace.call_sid] == sum(not r.duplicate and r.kind != "agent-dequeue"
                                             for r in trace.requests), trace.call_sid
        if mode == "queue" and trace.outcome == "answered":  # the simulator's agents call from client:agent
            assert (call.agent, events[call.agent_leg_sid]) == ("client:agent", 1), trace.call_sid
        assert call.incoming_seen and call.ended_at is not None
        # The test desk is open every hour of every day, bank holidays too, so every call is judged.
        assert calendar.is_open(call.arrived_at), call.arrived_at
        # With screening, an agent's voicemail is never what answered the call.
        assert call.outcome == trace.outcome and not trace.machine_answered, (trace.call_sid, scenario)
        if trace.outcome == "answered":
            # The simulator's answer delay: the scenario's, or later if the menu took longer.
            delay = trace.answer_delay
            assert delay >= scenario.answer_after
            # A screened call is put through once the agent has heard the prompt and pressed 1. The
            # app counts the prompt by its own clock, which the simulator does not advance at
            # speed 0: the answer lies between the phone picking up and the key being pressed.
            earliest = trace.picked_up if screened else delay
            if screened:
                assert earliest < delay, "the prompt takes time"
            # Timestamps have one-second resolution; arrival is measured to the microsecond.
            assert earliest - 1.5 <= call.answer_seconds <= delay + 0.5, (call.answer_seconds, delay)
            assert rings_for(earliest - 1.5, 3.0) <= call.rings <= rings_for(delay, 3.0)
            if delay <= TARGET - 1.5:
                assert call.sla_result == "met"
            elif earliest > TARGET + 0.5:
                assert call.sla_result == "breached"
        elif trace.outcome == "abandoned" and scenario.abandon_after > TARGET + 1:
            assert (call.countable, call.sla_result) == (True, "breached")
        elif trace.outcome == "abandoned" and scenario.abandon_after < TARGET - 1:
            assert (call.countable, call.sla_result) == (False, None)
        elif trace.outcome in ("no_answer", "voicemail"):
            assert call.sla_result == "breached"
        if scenario.caller != "anonymous":
            assert call.caller_number == scenario.caller
        if ivr:
            assert call.caller_type == scenario.kind
    if screened:
        # Some agents' voicemail picked up, heard the prompt and was hung up on.
        prompts = [r for trace in result.traces for r in trace.sent("screen")]
        assert len(prompts) > sum(len(trace.sent("screen-accept")) for trace in result.traces) > 0


@pytest.mark.e2e
def test_a_phone_system_refusing_the_apps_sip_login_is_counted_and_said_across_workers(migrated_url, app_env,
                                                                                       tmp_path):
    """The ring group's desk phone is on a phone system that takes another password: every leg to it
    is refused, and /metrics counts each once, whichever of the three workers took its status callback."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    config = write_config(tmp_path / "helpdesk.toml", routing_mode="dial", ivr=False, sip=True)
    env = {**app_env, "HELPDESK_CONFIG": config, "SIP_USERNAME": SIP_LOGIN[0], "SIP_PASSWORD": "not-the-password"}
    with LiveApp(migrated_url, env, workers=3) as live:
        transport = RequestsTransport()
        simulator = Simulator(live.url, AUTH_TOKEN, transport=transport, speed=0, sip_login=SIP_LOGIN)
        result = run_traffic(simulator, TrafficProfile(seed=7, abandon_rate=0.0, no_answer_rate=0.0), calls=12,
                             rate_per_second=None, concurrency=6)
        transport.close()
        with urllib.request.urlopen(f"{live.url}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        log = live.log_text()
    refused = {(s.labels["call"], s.labels["code"]): s.value for family in text_string_to_metric_families(exposition)
               for s in family.samples if s.name == "helpdesk_sip_calls_refused_total"}
    assert result.summary.errors == 0 and result.summary.sip_refused > 0
    assert refused[("ring_group", "407")] == result.summary.sip_refused
    assert sum(refused.values()) == result.summary.sip_refused  # no other call or code
    assert log.count("the phone system refused Twilio's call to a SIP address (SIP 407): it did not take the "
                     "login") == result.summary.sip_refused
    assert "not-the-password" not in log and "pbx.example.org" not in log
