"""Twilio's fallback URL, played by the simulator against the app: when the Voice URL fails,
Twilio asks the fallback URL, and the app takes a message and counts the call as failed."""
from __future__ import annotations

import random
from urllib.parse import urlsplit

from sqlalchemy import select

from helpdesk.models import Call, Callback, TwilioEvent
from helpdesk.simulator import CallScenario, Simulator
from tests.integration.conftest import AUTH_TOKEN, BASE_URL, OPEN_TIME
from tests.integration.test_simulated_call_log import ACCOUNT, FlaskTransport


class VoiceUrlDown(FlaskTransport):
    """The app, except that its Voice URL fails (a proxy in front of it answering 502, say)."""

    def post(self, url, params, headers):
        if urlsplit(url).path == "/twilio/voice/incoming":
            return 502, "Bad Gateway"
        return super().post(url, params, headers)


def test_a_call_whose_voice_url_failed_reaches_the_fallback_url_leaves_a_message_and_is_failed(
        client, clock, db_session):
    clock.now = OPEN_TIME
    simulator = Simulator(BASE_URL, AUTH_TOKEN, ACCOUNT, VoiceUrlDown(client), clock=lambda: OPEN_TIME,
                          rng=random.Random(3))
    trace = simulator.run_call(CallScenario(answer_after=None, leaves_voicemail=True, talk_seconds=20))
    assert [r.kind for r in trace.requests][:3] == ["incoming", "fallback", "record-action"]
    with db_session.begin():
        call = db_session.scalars(select(Call).where(Call.call_sid == trace.call_sid)).one()
        kinds = set(db_session.scalars(select(TwilioEvent.kind).where(TwilioEvent.call_sid == trace.call_sid)))
        owed = db_session.scalars(select(Callback).where(Callback.call_sid == trace.call_sid)).all()
    assert "fallback" in kinds and "voicemail" in kinds and "incoming" not in kinds
    assert (call.outcome, call.sla_result, call.incoming_seen) == ("failed", "breached", False)
    assert call.caller_number == trace.requests[1].param("From") and len(owed) == 1
