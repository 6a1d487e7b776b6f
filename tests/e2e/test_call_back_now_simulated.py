""""Call back now" under gunicorn against the simulator's stand-in for Twilio, as `make demo` runs it:
the agent's click places the call there, and the simulator plays it back to the app."""
from __future__ import annotations

import json
import random
import re
import time

import pytest
import requests
from sqlalchemy import select

from helpdesk.db import Database
from helpdesk.models import Callback, CallbackAttempt, TwilioEvent
from helpdesk.simulator import CallLog, CallLogServer, CallScenario, RequestsTransport, Simulator
from helpdesk.simulator_outbound import OutboundCalls
from live import LiveApp
from tests.e2e.conftest import AUTH_TOKEN, SIP_LOGIN, write_config

ACCOUNT = "AC" + "7" * 32
DESK_NUMBER = "+441134960000"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def add_agent(database_url: str, phone: str) -> None:
    from helpdesk.users import add_user, set_phone

    database = Database(database_url)
    try:
        with database.session() as session:
            add_user(session, "alice", "a-long-enough-password", "agent")
        with database.session() as session:
            set_phone(session, "alice", phone)
    finally:
        database.dispose()


def agent_leg_statuses(database_url: str, call_sid: str) -> list[str]:
    """The CallStatus of each status callback the app journalled for the agent's leg, in order."""
    database = Database(database_url)
    try:
        with database.session() as session, session.begin():
            return [dict(json.loads(params))["CallStatus"] for params in session.scalars(
                select(TwilioEvent.params).where(TwilioEvent.call_sid == call_sid, TwilioEvent.leg_sid == call_sid,
                                                 TwilioEvent.kind == "callback_status").order_by(TwilioEvent.id))]
    finally:
        database.dispose()


def stored(database_url: str) -> tuple[list[CallbackAttempt], list[Callback]]:
    database = Database(database_url)
    try:
        with database.session() as session, session.begin():
            attempts = list(session.scalars(select(CallbackAttempt)))
            callbacks = list(session.scalars(select(Callback)))
            session.expunge_all()
        return attempts, callbacks
    finally:
        database.dispose()


def call_back_now(url: str) -> str:
    """Alice signs in, and clicks "Call back now" on the one callback; the page she gets back."""
    browser = requests.Session()
    token = CSRF.search(browser.get(f"{url}/login").text).group(1)
    browser.post(f"{url}/login", data={"csrf_token": token, "username": "alice",
                                      "password": "a-long-enough-password"}).raise_for_status()
    queue = browser.get(f"{url}/queue").text
    callback_id = re.search(r'id="callback-(\d+)"', queue).group(1)
    token = CSRF.search(queue).group(1)
    page = browser.post(f"{url}/queue/{callback_id}/call", data={"csrf_token": token}).text
    browser.close()
    return page


@pytest.mark.e2e
@pytest.mark.parametrize("phone, login, reached", [
    ("+447700900555", None, True),
    ("sip:1001@pbx.example.org", SIP_LOGIN, True),  # a desk phone whose phone system takes the app's login
    ("sip:1001@pbx.example.org", ("helpdesk-e2e", "another-password"), False),
], ids=["number", "desk-phone", "desk-phone-refused"])
def test_call_back_now_is_placed_and_played_back_as_twilio_would(migrated_url, app_env, tmp_path, phone, login,
                                                                   reached):
    config = write_config(tmp_path / "helpdesk.toml", routing_mode="dial", ivr=False)
    log = CallLog()
    played = Simulator("http://127.0.0.1:9", AUTH_TOKEN, ACCOUNT, RequestsTransport(), speed=20, call_log=log,
                       sip_login=SIP_LOGIN)
    outbound = OutboundCalls(played, random.Random(5), caller_answers=1.0)
    server = CallLogServer(log, ACCOUNT, AUTH_TOKEN, outbound=outbound).start()
    add_agent(migrated_url, phone)
    env = {**app_env, "HELPDESK_CONFIG": config, "TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_FROM_NUMBER": DESK_NUMBER,
           "TWILIO_API_BASE_URL": server.url}
    if login:
        env |= {"SIP_USERNAME": login[0], "SIP_PASSWORD": login[1]}
    try:
        with LiveApp(migrated_url, env, workers=2) as live:
            caller = Simulator(live.url, AUTH_TOKEN, ACCOUNT, RequestsTransport())
            missed = caller.run_call(CallScenario(answer_after=None, abandon_after=45, seed=11))
            assert missed.outcome == "abandoned"
            page = call_back_now(live.url)
            assert "Ringing your phone for" in page, page[-2000:]
            outbound.join(timeout=30)
            deadline = time.monotonic() + 10
            while (attempts := stored(migrated_url)[0]) and attempts[0].outcome == "placing" \
                    and time.monotonic() < deadline:
                time.sleep(0.2)
            app_log = live.log_text()
    finally:
        server.stop()
    [attempt], [callback] = stored(migrated_url)
    placed = log.get(attempt.call_sid)
    assert placed is not None and placed.to == phone and placed.from_ == DESK_NUMBER
    if reached:
        # The agent answered and pressed 1; the caller was dialled, answered, and the attempt counts.
        assert (attempt.outcome, callback.attempts_count, callback.sla_result) == ("reached", 1, "met")
        assert attempt.dialled_at is not None and callback.reached_at is not None
        [leg] = log.matching(parent_sid=attempt.call_sid)
        assert leg.to == callback.caller_number
        # Every event "Call back now" asked Twilio for (StatusCallbackEvent, sent once for each).
        assert agent_leg_statuses(migrated_url, attempt.call_sid) == ["initiated", "ringing", "in-progress",
                                                                       "completed"]
    else:
        # The phone system refused the desk phone: the caller was never dialled, and the log says why.
        assert (attempt.outcome, callback.attempts_count) == ("not_dialled", 0)
        assert f"callback {callback.id}: call {attempt.call_sid}: the phone system refused Twilio's call" in app_log
    assert "Traceback" not in app_log
