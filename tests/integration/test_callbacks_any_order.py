"""A call's callback comes out the same whatever order its webhooks are stored in.

A spool replays the webhooks the database could not take, each with the time it came in,
after others of the same call stored meanwhile (on another server too). The projection's
property test (tests/unit/test_projection.py) holds the call's record whatever the order;
this holds what the journal makes of the records it projects one after another: the same call
row, and the same callback owed (or none), with the same reason, caller type and deadline. A
callback the app owed while the call looked missed, and withdrew as never owed once it proved
answered, counts as none, as it does in every figure.
"""
from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.models import Call, Callback
from helpdesk.simulator import Simulator, TrafficProfile, run_traffic
from tests.integration.conftest import AUTH_TOKEN, BASE_URL, OPEN_TIME, make_settings
from tests.integration.test_simulated_call_log import FlaskTransport
from tests.integration.twilio_requests import post

CALLS = 40
SID = re.compile(r"CA[0-9a-f]{32}")
# Callers who hang up, who nobody answers, and agents' phones that answer with their voicemail.
PROFILE = dict(abandon_rate=0.25, no_answer_rate=0.1, agent_voicemail_rate=0.3, dwp_share=0.4, withheld_rate=0.05)
ROUTINGS = {
    "ring group": {},
    "ring group, screened": {"routing": {"screen_calls": True}},
    "menu, screened": {"routing": {"screen_calls": True}, "ivr": {"enabled": True}},
    "queue": {"routing": {"mode": "queue", "queue_name": "helpdesk"}},
}


def recorded_calls(client, seed: int) -> list[list[tuple[str, dict[str, str], float]]]:
    """Each simulated call's requests as the app took them: path, parameters, seconds after arrival."""
    simulator = Simulator(BASE_URL, AUTH_TOKEN, transport=FlaskTransport(client), clock=lambda: OPEN_TIME,
                          rng=random.Random(seed))
    result = run_traffic(simulator, TrafficProfile(seed=seed, **PROFILE), CALLS, rate_per_second=None, concurrency=1)
    assert result.summary.errors == 0
    return [[(r.url.removeprefix(BASE_URL), dict(r.params), r.at) for r in trace.requests if 200 <= r.status < 300]
            for trace in result.traces]


def renamed(call, tag: int):
    """The same requests for another call: every call SID in them (the call's and its legs') new."""
    def rename(value: str) -> str:
        return SID.sub(lambda sid: f"CA{tag:08x}{sid.group(0)[-24:]}", value)

    return [(rename(path), {key: rename(value) for key, value in params.items()}, at) for path, params, at in call]


def store(client, clock, requests) -> None:
    for path, params, at in requests:
        clock.now = OPEN_TIME + timedelta(seconds=at)  # as a spool replays it: when it came in
        assert 200 <= post(client, path, params).status_code < 300


def outcome_of(db_session, call_sid: str):
    """The call's row and its callback, as the figures see them (none if never owed)."""
    db_session.rollback()
    with db_session.begin():
        call = db_session.scalars(select(Call).where(Call.call_sid == call_sid)).one()
        callback = db_session.scalars(select(Callback).where(Callback.contact_key == f"call:{call_sid}")).one_or_none()
        if callback is not None and callback.outcome == "withdrawn" and callback.closed_by_id is None:
            callback = None  # never owed (owed.never_owed)
        row = (call.outcome, call.arrived_at, call.answered_at, call.ended_at, call.rings, call.caller_type,
               call.sla_result, call.countable, call.caller_number)
        owed = None if callback is None else (callback.status, callback.reason, callback.caller_type,
                                              callback.owed_from, callback.due_at)
    return row, owed


def orders(call, rng: random.Random):
    """Orders a spool could store a call's requests in: shuffled, backwards, and the incoming
    request last (the rest as sent), the one that corrects the arrival and how the call was routed."""
    shuffled = list(call)
    rng.shuffle(shuffled)
    return {"shuffled": shuffled, "backwards": call[::-1], "incoming last": call[1:] + call[:1]}


@pytest.mark.parametrize("routing", ROUTINGS)
def test_a_calls_record_and_callback_are_the_same_whatever_order_its_webhooks_are_stored_in(
        app, client, clock, db_session, routing):
    app.extensions["helpdesk.settings"] = make_settings(**ROUTINGS[routing])
    if routing == "queue":  # the simulator's agents call from client:agent: the agents' Voice URL takes a user's only
        from helpdesk.users import add_user

        with app.extensions["helpdesk.db"].session() as session:
            add_user(session, "agent", "a-long-enough-password", "agent")
    calls = recorded_calls(client, seed=len(routing))
    rng = random.Random(routing)
    owed, tag = 0, 0
    for n, call in enumerate(calls):
        assert call[0][0] == "/twilio/voice/incoming"
        tag += 1
        in_order = renamed(call, tag)
        store(client, clock, in_order)
        expected = outcome_of(db_session, in_order[0][1]["CallSid"])
        owed += expected[1] is not None
        for name, order in orders(call, rng).items():
            tag += 1
            replayed = renamed(order, tag)
            store(client, clock, replayed)
            call_sid = renamed(call[:1], tag)[0][1]["CallSid"]  # the incoming request's: the call's own
            assert outcome_of(db_session, call_sid) == expected, (
                f"call {n} ({routing}) stored {name}: {[path for path, _, _ in order]}")
    assert 0 < owed < CALLS  # some callers were owed a callback, and some were not
