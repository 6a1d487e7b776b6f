"""PostgreSQL stops while calls come in: every caller is answered, and every call is stored once it is back."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from helpdesk.db import Database
from helpdesk.models import Call, Enquiry, TwilioEvent
from helpdesk.simulator import RequestsTransport, Simulator, TrafficProfile, run_traffic
from helpdesk.spool import Spool
from live import LiveApp
from servers import own_postgres_server
from tests.e2e.conftest import AUTH_TOKEN, write_config

CALLS = 12  # in each of the three spells: before, during and after the outage


def play(url: str, seed: int):
    transport = RequestsTransport()
    simulator = Simulator(url, AUTH_TOKEN, transport=transport, speed=0, duplicate=0.1, out_of_order=0.3)
    profile = TrafficProfile(seed=seed, abandon_rate=0.2, no_answer_rate=0.1, answer_median=15)
    result = run_traffic(simulator, profile, calls=CALLS, rate_per_second=None, concurrency=6)
    transport.close()
    assert result.summary.errors == 0, [trace.errors for trace in result.traces if trace.errors]
    return result.traces


@pytest.mark.e2e
def test_calls_during_a_database_outage_are_answered_and_stored_once_it_is_back(app_env, tmp_path):
    server = own_postgres_server()  # this test stops it
    config = write_config(tmp_path / "helpdesk.toml", ivr=False)
    spool = Spool(Path(tmp_path / "spool"))
    with server:
        url = server.create_database("outage")
        with LiveApp(url, {**app_env, "HELPDESK_CONFIG": config}, workers=2) as live:
            traces = play(live.url, seed=1)
            assert not spool.has_waiting()
            server.pause()
            traces += play(live.url, seed=2)  # every webhook answered, none with an error
            waiting = spool.counts()["waiting"]
            during = requests.get(f"{live.url}/metrics", timeout=30)
            server.resume()
            traces += play(live.url, seed=3)
            deadline = time.monotonic() + 60
            while spool.has_waiting():
                assert time.monotonic() < deadline, f"the spool was not stored: {spool.counts()}"
                time.sleep(0.2)
            log = live.log_text()
        database = Database(url)
        try:
            with database.session() as session:
                calls = {call.call_sid: call for call in session.scalars(select(Call))}
                events = dict(session.execute(
                    select(TwilioEvent.call_sid, func.count()).group_by(TwilioEvent.call_sid)).all())
                references = set(session.scalars(select(Enquiry.reference)))
        finally:
            database.dispose()

    assert waiting >= CALLS, "the calls during the outage should have gone to the spool"
    # Prometheus sees the app up, without its figures, and the webhooks waiting in its spool.
    assert during.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(during.text)}
    assert "helpdesk_open" not in families and "helpdesk_calls" not in families
    spooled = {sample.labels["state"]: sample.value for sample in families["helpdesk_webhooks_spooled"].samples}
    assert spooled["waiting"] >= waiting
    assert "kept in the spool" in log and "STORING FAILED" not in log and "Traceback" not in log
    assert spool.counts() == {"waiting": 0, "unstored": 0, "unreadable": 0}
    assert len(calls) == len(references) == 3 * CALLS
    for trace in traces:
        call = calls[trace.call_sid]
        assert events[trace.call_sid] == sum(not r.duplicate for r in trace.requests), trace.call_sid
        assert call.incoming_seen and call.ended_at is not None and call.enquiry_id is not None
        assert call.outcome == trace.outcome, trace.call_sid
