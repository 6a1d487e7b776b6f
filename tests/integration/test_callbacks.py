"""Callbacks owed for missed calls and recorded by agents, on a real database."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from threading import Barrier, Thread

import pytest
from sqlalchemy import func, select

from callbacks import claims, owed, service
from callbacks.owed import MISSED_OUTCOMES, CallbackError
from helpdesk.models import Call, Callback, CallbackAttempt, Enquiry
from helpdesk.users import USER_ACTIONS, add_user
from tests.integration.conftest import make_settings
from tests.integration.twilio_requests import inbound, post, sid, stamp


def callbacks(session) -> list[Callback]:
    """Read, then end the read transaction so the app can write (SQLite has one writer)."""
    session.expire_all()
    rows = list(session.scalars(select(Callback).order_by(Callback.id)))
    session.expunge_all()
    session.rollback()
    return rows


def enquiry_status(session, call_sid: str) -> str:
    session.expire_all()
    status = session.scalars(select(Enquiry.status).where(Enquiry.call_sid == call_sid)).one()
    session.rollback()
    return status


def miss_a_call(client, clock, n: int, caller="+447700900123", wait=40):
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(n), caller=caller))
    clock.advance(wait)
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(n), "DialCallStatus": "canceled"})
    post(client, "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=wait))})
    return arrived


def answer_a_call(client, clock, n: int):
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(n)))
    post(client, "/twilio/voice/agent-status", {"CallSid": sid(900 + n), "ParentCallSid": sid(n), "To": "client:agent-1",
                                                "CallStatus": "in-progress", "Timestamp": stamp(arrived + timedelta(seconds=6))})
    post(client, "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=90))})


@pytest.fixture
def agents(app, db_session):
    made = []
    for name in ("alice", "bob"):
        with app.extensions["helpdesk.db"].session() as session:
            made.append(add_user(session, name, "a-long-enough-password", "agent", now=datetime.now(timezone.utc)).id)
    return made


def test_a_missed_call_with_a_number_is_owed_one_callback_due_three_hours_later(client, db_session, clock):
    arrived = miss_a_call(client, clock, 1)
    [callback] = callbacks(db_session)
    assert (callback.reason, callback.status, callback.caller_number) == ("abandoned", "open", "+447700900123")
    assert callback.owed_from == arrived and callback.due_at == arrived + timedelta(hours=3)
    explanation = json.loads(callback.explanation)
    assert explanation["clock"] == "business" and explanation["config_version"]
    # The same events again (redelivered) do not owe a second callback.
    miss_a_call(client, clock, 1)
    assert len(callbacks(db_session)) == 1


def test_a_withheld_caller_is_not_owed_an_automatic_callback(client, db_session, clock):
    miss_a_call(client, clock, 2, caller="anonymous")
    assert callbacks(db_session) == []


def test_an_answered_call_owes_nothing_until_an_agent_says_it_was_not_concluded(app, client, db_session, clock, settings, agents):
    answer_a_call(client, clock, 3)
    assert callbacks(db_session) == []
    with app.extensions["helpdesk.db"].session() as session:
        owed.record_not_concluded(session, settings, call_sid=sid(3), agent_id=agents[0], now=clock.now,
                                     note="Needs the grant team")
    [callback] = callbacks(db_session)
    assert (callback.reason, callback.note) == ("not_concluded", "Needs the grant team")
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match="already owed"):
        owed.record_not_concluded(session, settings, call_sid=sid(3), agent_id=agents[0], now=clock.now)


def test_the_audit_log_says_who_said_a_callback_was_needed_and_which_callback_it_is(app, client, db_session, clock,
                                                                                    settings, agents):
    from helpdesk.models import AuditEntry

    answer_a_call(client, clock, 5)
    with app.extensions["helpdesk.db"].session() as session:
        owed.record_not_concluded(session, settings, call_sid=sid(5), agent_id=agents[1], now=clock.now,
                                  note="Needs the grant team")
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action.not_in(USER_ACTIONS))).all()
        reference = session.get(Enquiry, callback.enquiry_id).reference
    assert (entry.action, entry.actor) == ("callback.needed", "bob")
    assert json.loads(entry.detail) == {"enquiry": reference, "callback_id": callback.id}


def test_a_callback_an_agent_said_was_needed_cannot_be_closed_as_unreachable_before_anyone_has_tried_it(
        app, client, db_session, clock, settings, agents):
    answer_a_call(client, clock, 7)
    with app.extensions["helpdesk.db"].session() as session:
        callback = owed.record_not_concluded(session, settings, call_sid=sid(7), agent_id=agents[0], now=clock.now,
                                             note="Needs the grant team")
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match="Record the attempts"):
        service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="unreachable", now=clock.now)
    assert [(c.status, c.attempts_count) for c in callbacks(db_session)] == [("open", 0)]


def test_a_callback_made_from_out_of_order_events_is_withdrawn_when_the_answer_arrives(client, db_session, clock):
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(4)))
    post(client, "/twilio/voice/status", {"CallSid": sid(4), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=90))})
    assert [c.status for c in callbacks(db_session)] == ["open"]
    post(client, "/twilio/voice/agent-status", {"CallSid": sid(904), "ParentCallSid": sid(4), "CallStatus": "in-progress",
                                                "Timestamp": stamp(arrived + timedelta(seconds=8))})
    [callback] = callbacks(db_session)
    assert (callback.status, callback.outcome) == ("closed", "withdrawn")


def test_when_the_incoming_request_is_stored_after_the_calls_end_the_enquiry_and_callback_move_to_its_arrival(
        client, db_session, clock):
    arrived = clock.now
    ended = {"CallSid": sid(6), "CallStatus": "completed", "From": "+447700900123", "To": "+448001217479",
             "Direction": "inbound", "Timestamp": stamp(arrived + timedelta(seconds=40))}
    clock.now = arrived + timedelta(seconds=41)
    post(client, "/twilio/voice/status", ended)  # the incoming request is still in a spool
    [early] = callbacks(db_session)
    clock.now = arrived  # replayed from the spool, with the time it came in
    post(client, "/twilio/voice/incoming", inbound(sid(6), caller="+447700900123"))
    [callback] = callbacks(db_session)
    db_session.expire_all()
    with db_session.begin():
        call = db_session.scalars(select(Call).where(Call.call_sid == sid(6))).one()
        enquiry = db_session.get(Enquiry, call.enquiry_id)
    assert call.arrived_at == arrived and early.owed_from != arrived  # it had been estimated
    assert (callback.id, callback.owed_from, callback.due_at) == (early.id, arrived, arrived + timedelta(hours=3))
    assert json.loads(callback.explanation)["owed_from"] == arrived.isoformat()
    assert enquiry.opened_at == arrived


def test_a_callback_an_agent_said_was_needed_moves_to_the_calls_arrival_when_its_incoming_request_comes_later(
        app, client, db_session, clock, settings, agents):
    """The clock starts at the contact, for an answered call's callback as for a missed call's."""
    arrived = clock.now
    clock.now = arrived + timedelta(seconds=30)
    post(client, "/twilio/voice/agent-status", {"CallSid": sid(932), "ParentCallSid": sid(32), "To": "client:agent-1",
                                                "CallStatus": "in-progress",
                                                "Timestamp": stamp(arrived + timedelta(seconds=30))})
    clock.now = arrived + timedelta(minutes=5)
    post(client, "/twilio/voice/status", {"CallSid": sid(32), "CallStatus": "completed",
                                          "From": "+447700900123", "To": "+448001217479", "Direction": "inbound",
                                          "Timestamp": stamp(arrived + timedelta(minutes=5))})
    with app.extensions["helpdesk.db"].session() as session:
        early = owed.record_not_concluded(session, settings, call_sid=sid(32), agent_id=agents[0], now=clock.now,
                                          note="Needs the grant team")
    assert early.owed_from > arrived  # estimated from the first webhook stored

    clock.now = arrived  # the incoming request, replayed from the spool with the time it came in
    post(client, "/twilio/voice/incoming", inbound(sid(32), caller="+447700900123"))

    [callback] = callbacks(db_session)
    assert (callback.id, callback.reason) == (early.id, "not_concluded")
    assert (callback.owed_from, callback.due_at) == (arrived, arrived + timedelta(hours=3))
    assert json.loads(callback.explanation)["owed_from"] == arrived.isoformat()


def test_a_callback_withdrawn_as_the_call_looked_answered_is_owed_again_when_later_requests_show_it_was_missed(
        app, client, db_session, clock):
    """A screened call: an agent's phone answered with its own voicemail, so nobody pressed 1.
    Its end is stored first, then the agent leg's answer (the call looks answered, and the
    callback owed for it is withdrawn), then the incoming request, last, from a spool elsewhere:
    the call was missed after all, and the caller is owed their callback."""
    app.extensions["helpdesk.settings"] = make_settings(routing={"screen_calls": True})
    arrived = clock.now
    clock.now = arrived + timedelta(seconds=60)
    post(client, "/twilio/voice/status", {"CallSid": sid(33), "CallStatus": "completed", "From": "+447700900123",
                                          "To": "+448001217479", "Direction": "inbound",
                                          "Timestamp": stamp(arrived + timedelta(seconds=60))})
    [owed_first] = callbacks(db_session)
    post(client, "/twilio/voice/agent-status", {"CallSid": sid(933), "ParentCallSid": sid(33), "To": "+447700900999",
                                                "CallStatus": "in-progress",
                                                "Timestamp": stamp(arrived + timedelta(seconds=15))})
    assert [(c.status, c.outcome) for c in callbacks(db_session)] == [("closed", "withdrawn")]

    clock.now = arrived
    post(client, "/twilio/voice/incoming", inbound(sid(33), caller="+447700900123"))

    db_session.expire_all()
    assert db_session.scalars(select(Call.outcome).where(Call.call_sid == sid(33))).one() in MISSED_OUTCOMES
    [callback] = callbacks(db_session)
    assert callback.id == owed_first.id
    assert (callback.status, callback.outcome, callback.closed_at, callback.note) == ("open", None, None, "")
    assert (callback.owed_from, callback.due_at) == (arrived, arrived + timedelta(hours=3))


def test_a_callback_owed_again_takes_the_arrival_corrected_while_it_was_withdrawn(app, client, db_session, clock):
    """As above, but the incoming request, which corrects the arrival, comes while the call still
    looks answered; the menu's choice, stored last, shows the call screened and missed."""
    app.extensions["helpdesk.settings"] = make_settings(routing={"screen_calls": True}, ivr={"enabled": True})
    arrived = clock.now
    clock.now = arrived + timedelta(seconds=60)
    post(client, "/twilio/voice/status", {"CallSid": sid(34), "CallStatus": "completed", "From": "+447700900123",
                                          "To": "+448001217479", "Direction": "inbound",
                                          "Timestamp": stamp(arrived + timedelta(seconds=60))})
    post(client, "/twilio/voice/agent-status", {"CallSid": sid(934), "ParentCallSid": sid(34), "To": "+447700900999",
                                                "CallStatus": "in-progress",
                                                "Timestamp": stamp(arrived + timedelta(seconds=15))})
    clock.now = arrived
    post(client, "/twilio/voice/incoming", inbound(sid(34), caller="+447700900123"))
    assert [(c.status, c.outcome) for c in callbacks(db_session)] == [("closed", "withdrawn")]

    clock.now = arrived + timedelta(seconds=8)
    post(client, "/twilio/voice/menu", {"CallSid": sid(34), "Digits": "2"})

    [callback] = callbacks(db_session)
    assert (callback.status, callback.caller_type) == ("open", "customer")
    assert (callback.owed_from, callback.due_at) == (arrived, arrived + timedelta(hours=3))


def test_an_earlier_attempt_entered_after_a_later_one_becomes_the_first_attempt(app, client, db_session, clock,
                                                                                settings, agents):
    arrived = miss_a_call(client, clock, 7)
    [callback] = callbacks(db_session)
    for started in (arrived + timedelta(hours=2), arrived + timedelta(hours=1)):  # entered in this order
        with app.extensions["helpdesk.db"].session() as session:
            service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], started_at=started,
                                source="manual", outcome="no_answer", now=arrived + timedelta(hours=2, minutes=5))
    [callback] = callbacks(db_session)
    assert (callback.attempts_count, callback.first_attempt_at, callback.sla_result) == (
        2, arrived + timedelta(hours=1), "met")


def test_a_callback_already_warned_keeps_the_deadline_its_warning_named_when_the_arrival_is_corrected(
        app, client, db_session, clock, settings):
    from callbacks.sweep import sweep

    arrived = clock.now
    ended = {"CallSid": sid(8), "CallStatus": "no-answer", "From": "+447700900123", "To": "+448001217479",
             "Direction": "inbound", "Timestamp": stamp(arrived + timedelta(minutes=20))}
    clock.now = arrived + timedelta(minutes=20, seconds=1)
    post(client, "/twilio/voice/status", ended)  # the arrival is estimated from it: 20 minutes late
    [early] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        assert [kind for _, kind in sweep(session, settings, early.due_at - timedelta(minutes=10)).recorded] == [
            "warning_10"]
    clock.now = arrived  # the incoming request, replayed from the spool
    post(client, "/twilio/voice/incoming", inbound(sid(8), caller="+447700900123"))
    [callback] = callbacks(db_session)
    assert (callback.owed_from, callback.due_at) == (early.owed_from, early.due_at)  # as the warning said


def test_two_agents_claiming_at_once_give_one_winner_and_a_clear_refusal(app, client, db_session, clock, agents):
    miss_a_call(client, clock, 5)
    [callback] = callbacks(db_session)
    barrier, results = Barrier(2), {}

    def take(agent_id):
        with app.extensions["helpdesk.db"].session() as session:
            barrier.wait()
            try:
                claims.claim(session, callback.id, agent_id, clock.now)
                results[agent_id] = "won"
            except CallbackError as error:
                results[agent_id] = str(error)

    threads = [Thread(target=take, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values())[-1] == "won"
    refusal = [r for r in results.values() if r != "won"]
    assert len(refusal) == 1 and refusal[0].endswith("has already claimed this callback.")


def test_a_first_attempt_before_the_deadline_meets_the_rule_and_a_miss_schedules_a_retry(app, client, db_session, clock,
                                                                                         settings, agents):
    arrived = miss_a_call(client, clock, 6)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=arrived + timedelta(hours=2), outcome="no_answer", now=clock.now + timedelta(hours=2))
    [callback] = callbacks(db_session)
    assert callback.sla_result == "met" and callback.reached_at is None
    assert callback.next_attempt_at == arrived + timedelta(hours=2, minutes=30)
    assert callback.claimed_by_id == agents[0]


def test_three_unanswered_attempts_close_the_callback_as_unreachable(app, client, db_session, clock, settings, agents):
    arrived = miss_a_call(client, clock, 7)
    [callback] = callbacks(db_session)
    for hours in (1, 2, 3):
        with app.extensions["helpdesk.db"].session() as session:
            service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                                started_at=arrived + timedelta(hours=hours), outcome="busy", now=arrived + timedelta(hours=4))
    [callback] = callbacks(db_session)
    assert (callback.status, callback.outcome, callback.attempts_count) == ("closed", "unreachable", 3)
    assert (callback.closed_at, callback.closed_by_id) == (arrived + timedelta(hours=4), agents[0])  # by the last
    assert db_session.scalar(select(func.count()).select_from(CallbackAttempt)) == 3
    db_session.rollback()


def test_resolving_needs_an_attempt_that_reached_the_caller(app, client, db_session, clock, settings, agents):
    arrived = miss_a_call(client, clock, 8)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match="reached the caller"):
        service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="resolved", now=clock.now)
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=arrived + timedelta(minutes=20), outcome="reached", now=clock.now + timedelta(hours=1))
    with app.extensions["helpdesk.db"].session() as session:
        service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="resolved", now=clock.now,
                      note="Explained the grant")
    [callback] = callbacks(db_session)
    assert (callback.status, callback.outcome, callback.reached_at) == ("closed", "resolved", arrived + timedelta(minutes=20))


@pytest.mark.parametrize("started, message", [
    (timedelta(hours=-1), "before the callback was owed"),
    (timedelta(hours=30), "cannot be in the future"),
])
def test_an_impossible_attempt_time_is_refused(app, client, db_session, clock, settings, agents, started, message):
    arrived = miss_a_call(client, clock, 9)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match=message):
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=arrived + started, outcome="busy", now=clock.now)
    assert callbacks(db_session)[0].attempts_count == 0


def test_an_attempt_up_to_a_minute_ahead_of_the_desks_clock_is_taken(app, client, db_session, clock, settings,
                                                                      agents):
    """A phone whose clock runs a little ahead: the time it shows is still taken as it is."""
    miss_a_call(client, clock, 48)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=clock.now + timedelta(minutes=1), outcome="busy", now=clock.now)
    assert callbacks(db_session)[0].first_attempt_at == clock.now + timedelta(minutes=1)


def test_an_attempt_at_the_moment_the_callback_was_owed_is_taken(app, client, db_session, clock, settings, agents):
    arrived = miss_a_call(client, clock, 51)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=callback.owed_from, outcome="busy", now=clock.now)
    assert (callbacks(db_session)[0].first_attempt_at, callbacks(db_session)[0].sla_result) == (arrived, "met")


def test_concluding_an_answered_call_marks_its_enquiry(app, client, db_session, clock):
    answer_a_call(client, clock, 10)
    with app.extensions["helpdesk.db"].session() as session:
        owed.record_concluded(session, call_sid=sid(10), now=clock.now)
    db_session.expire_all()
    assert db_session.scalar(select(Enquiry.status).where(Enquiry.call_sid == sid(10))) == "concluded"
    db_session.rollback()


# --------------------------------------------------------------------------- decisions revised by what comes later


def test_an_attempt_made_in_time_but_entered_after_the_breach_was_recorded_makes_it_met(app, client, db_session,
                                                                                         clock, settings, agents):
    from callbacks.sweep import sweep
    from helpdesk.models import AuditEntry
    from metrics.history import SettledHistory

    arrived = miss_a_call(client, clock, 21)
    [callback] = callbacks(db_session)
    due = callback.due_at
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        sweep(session, settings, due + timedelta(minutes=1))
    assert (callbacks(db_session)[0].sla_result, callbacks(db_session)[0].breached_at) == ("breached", due)
    history = SettledHistory()
    with database.session() as session:
        before = history.read(session, settings, due + timedelta(minutes=2), [])[0].callbacks
    assert (before.get("met", 0), before["breached"]) == (0, 1)

    # The agent called at 12:55 and logs it at 13:10, after the sweep recorded the breach.
    with database.session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=due - timedelta(minutes=5), outcome="reached", now=due + timedelta(minutes=10))
    [callback] = callbacks(db_session)
    assert (callback.sla_result, callback.first_attempt_at) == ("met", due - timedelta(minutes=5))
    assert callback.breached_at == due  # the evidence still shows a breach was recorded
    with database.session() as session:
        [attempt] = session.scalars(select(CallbackAttempt)).all()
        assert attempt.recorded_at == due + timedelta(minutes=10)
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action.not_in(USER_ACTIONS))).all()
    with database.session() as session:
        after = history.read(session, settings, due + timedelta(minutes=11), [])[0].callbacks
    assert (entry.action, entry.actor) == ("callback.breach_corrected", "alice")
    assert json.loads(entry.detail)["attempt_dialled_at"] == (due - timedelta(minutes=5)).isoformat()
    assert json.loads(entry.detail)["attempt_id"] == attempt.id  # which attempt corrected it
    # The metrics' kept counts see the correction at once, not at the next hourly recount.
    assert (after["met"], after.get("breached", 0)) == (1, 0)
    assert arrived < due


def test_an_attempt_entered_late_and_made_late_stays_a_breach(app, client, db_session, clock, settings, agents):
    from callbacks.sweep import sweep

    miss_a_call(client, clock, 22)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, callback.due_at + timedelta(minutes=1))
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=callback.due_at + timedelta(minutes=2), outcome="reached",
                            now=callback.due_at + timedelta(minutes=10))
    assert callbacks(db_session)[0].sla_result == "breached"


def answered_out_of_order(client, clock, n: int, answer_arrives: timedelta | None = None):
    """The caller's leg ends, then the Dial action, and the agent leg's answer only later."""
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(n)))
    post(client, "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=300))})
    if answer_arrives is not None:
        clock.now = arrived + answer_arrives
        post(client, "/twilio/voice/agent-status", {"CallSid": sid(900 + n), "ParentCallSid": sid(n),
                                                    "To": "client:agent-1", "CallStatus": "in-progress",
                                                    "Timestamp": stamp(arrived + timedelta(seconds=12))})
    return arrived


def test_a_callback_withdrawn_as_never_owed_is_not_counted_even_when_that_comes_to_light_after_its_deadline(
        app, client, db_session, clock, settings):
    from callbacks.sweep import sweep

    # Breached by the sweep, then withdrawn when the answer turns up (replayed from the spool, say).
    arrived = answered_out_of_order(client, clock, 23)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, callback.due_at + timedelta(minutes=1))
    assert callbacks(db_session)[0].sla_result == "breached"
    answered_out_of_order(client, clock, 23, answer_arrives=timedelta(hours=4))
    [callback] = callbacks(db_session)
    assert (callback.status, callback.outcome, callback.sla_result, callback.breached_at) == (
        "closed", "withdrawn", None, None)
    # Withdrawn after its deadline with no sweep in between: the sweep leaves it uncounted too.
    clock.now = arrived + timedelta(minutes=1)
    answered_out_of_order(client, clock, 24, answer_arrives=timedelta(hours=4))
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, arrived + timedelta(hours=5))
    assert [c.sla_result for c in callbacks(db_session)] == [None, None]


def test_a_manual_withdrawal_after_the_deadline_without_an_attempt_is_still_a_breach(app, client, db_session, clock,
                                                                                    settings, agents):
    from callbacks.sweep import sweep

    miss_a_call(client, clock, 25)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="withdrawn",
                      now=callback.due_at + timedelta(minutes=5), note="Caller emailed instead")
        sweep(session, settings, callback.due_at + timedelta(minutes=6))
    assert callbacks(db_session)[0].sla_result == "breached"


def test_an_enquiry_not_concluded_can_be_recorded_after_the_missed_call_callback_was_withdrawn(
        app, client, db_session, clock, settings, agents):
    answered_out_of_order(client, clock, 26, answer_arrives=timedelta(seconds=301))
    [withdrawn] = callbacks(db_session)
    assert withdrawn.outcome == "withdrawn"
    with app.extensions["helpdesk.db"].session() as session:
        owed.record_not_concluded(session, settings, call_sid=sid(26), agent_id=agents[0], now=clock.now,
                                     note="Needs the grant team")
    old, callback = callbacks(db_session)
    # The withdrawn one stays as it was (with any notices); a new one is owed.
    assert (old.id, old.outcome, old.contact_key) == (withdrawn.id, "withdrawn", f"call:{sid(26)}#withdrawn-{old.id}")
    assert (callback.reason, callback.status, callback.outcome, callback.note) == (
        "not_concluded", "open", None, "Needs the grant team")
    assert callback.due_at == withdrawn.due_at and callback.sla_result is None
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match="already owed"):
        owed.record_not_concluded(session, settings, call_sid=sid(26), agent_id=agents[0], now=clock.now,
                                     note="Again")


def test_a_call_whose_answer_came_after_its_callback_was_tried_is_not_concluded_while_that_callback_is_open(
        app, client, db_session, clock, settings, agents):
    # Owed while the call looked missed; an agent tried it; then the answer arrived. The callback
    # stays open (it was tried), so "Concluded" must not close the enquiry beside it.
    answered_out_of_order(client, clock, 29)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=clock.now + timedelta(minutes=5), outcome="no_answer",
                            now=clock.now + timedelta(minutes=6))
    clock.now += timedelta(minutes=10)
    post(client, "/twilio/voice/agent-status", {"CallSid": sid(929), "ParentCallSid": sid(29), "To": "client:agent-1",
                                                "CallStatus": "in-progress", "Timestamp": stamp(callback.owed_from
                                                                                                + timedelta(seconds=12))})
    [tried] = callbacks(db_session)
    assert (tried.status, tried.attempts_count) == ("open", 1)
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match="still open"):
        owed.record_concluded(session, call_sid=sid(29), now=clock.now, agent_id=agents[0])
    assert enquiry_status(db_session, sid(29)) == "open"
    with app.extensions["helpdesk.db"].session() as session:
        service.close(session, callback_id=tried.id, agent_id=agents[0], outcome="withdrawn", now=clock.now,
                      note="The call was answered after all")
        owed.record_concluded(session, call_sid=sid(29), now=clock.now, agent_id=agents[0])
    assert enquiry_status(db_session, sid(29)) == "concluded"


def test_a_callback_an_agent_said_was_needed_stays_as_they_said_while_replayed_requests_make_the_call_look_missed(
        app, client, db_session, clock, settings, agents):
    """A screened call: an agent answered, pressed 1 and talked; the incoming request and the
    screening's two requests could not be stored and wait in a spool. Replayed after the agent
    said a callback was needed, they make the call look missed (screened, and nobody yet known to
    have pressed 1), then answered again: the agent's callback is neither of those."""
    app.extensions["helpdesk.settings"] = make_settings(routing={"screen_calls": True})
    arrived = clock.now
    leg = {"CallSid": sid(931), "ParentCallSid": sid(31), "To": "client:agent-1"}
    clock.now = arrived + timedelta(seconds=20)
    post(client, "/twilio/voice/agent-status", {**leg, "CallStatus": "in-progress",
                                                "Timestamp": stamp(arrived + timedelta(seconds=20))})
    clock.now = arrived + timedelta(seconds=120)
    post(client, "/twilio/voice/status", {"CallSid": sid(31), "CallStatus": "completed", "CallDuration": "120",
                                          "From": "+447700900123", "To": "+448001217479", "Direction": "inbound",
                                          "Timestamp": stamp(arrived + timedelta(seconds=120))})
    assert db_session.scalars(select(Call.outcome).where(Call.call_sid == sid(31))).one() == "answered"
    db_session.rollback()
    with app.extensions["helpdesk.db"].session() as session:
        owed.record_not_concluded(session, settings, call_sid=sid(31), agent_id=agents[0], now=clock.now,
                                  note="Needs the grant team")

    clock.now = arrived  # replayed from the spool, each with the time it came in
    post(client, "/twilio/voice/incoming", inbound(sid(31)))
    db_session.expire_all()
    assert db_session.scalars(select(Call.outcome).where(Call.call_sid == sid(31))).one() == "abandoned"
    assert [(c.reason, c.status) for c in callbacks(db_session)] == [("not_concluded", "open")]
    clock.now = arrived + timedelta(seconds=20)
    post(client, "/twilio/voice/screen", {**leg, "CallStatus": "in-progress"})
    clock.now = arrived + timedelta(seconds=23)
    post(client, "/twilio/voice/screen-accept", {**leg, "CallStatus": "in-progress", "Digits": "1"})
    db_session.expire_all()
    assert db_session.scalars(select(Call.outcome).where(Call.call_sid == sid(31))).one() == "answered"
    [callback] = callbacks(db_session)
    assert (callback.reason, callback.status, callback.outcome, callback.note) == (
        "not_concluded", "open", None, "Needs the grant team")
    assert enquiry_status(db_session, sid(31)) == "callback_owed"


def ring_out(client, clock, n: int):
    """A call nobody answered before the ring group gave up (65 s), ended at 90 s; when it arrived."""
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(n)))
    clock.advance(65)
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(n), "DialCallStatus": "no-answer"})
    post(client, "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=90))})
    return arrived


def test_a_callbacks_reason_follows_the_call_when_later_events_change_how_it_was_missed(client, db_session, clock):
    arrived = ring_out(client, clock, 27)
    assert [c.reason for c in callbacks(db_session)] == ["no_answer"]
    post(client, "/twilio/voice/voicemail", {"CallSid": sid(27), "RecordingUrl": "https://api.twilio.com/r/RE1",
                                             "RecordingDuration": "15", "Digits": "hangup"})
    [callback] = callbacks(db_session)
    assert (callback.reason, callback.status, callback.owed_from) == ("voicemail", "open", arrived)


def test_a_callbacks_caller_type_follows_the_call_when_the_menu_choice_is_stored_after_the_call_ended(
        app, client, db_session, clock):
    app.extensions["helpdesk.settings"] = make_settings(ivr={"enabled": True})
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(30)))
    # The caller pressed 1 (DWP) at 8 s, but the database could not take that request: it waits
    # in a spool while the caller hangs up during the ring, and the call's end is stored.
    clock.now = arrived + timedelta(seconds=40)
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(30), "DialCallStatus": "canceled"})
    post(client, "/twilio/voice/status", {"CallSid": sid(30), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=40))})
    assert [(c.reason, c.caller_type) for c in callbacks(db_session)] == [("abandoned", "unknown")]
    clock.now = arrived + timedelta(seconds=8)  # replayed from the spool, with the time it came in
    post(client, "/twilio/voice/menu", {"CallSid": sid(30), "Digits": "1"})
    db_session.expire_all()
    assert db_session.scalars(select(Call.caller_type).where(Call.call_sid == sid(30))).one() == "dwp"
    [callback] = callbacks(db_session)
    # Counted among the DWP's callbacks, as its call is among the DWP's calls.
    assert (callback.reason, callback.caller_type, callback.status) == ("abandoned", "dwp", "open")


@pytest.mark.parametrize("worked", ["tried", "withdrawn"])
def test_a_callback_already_tried_or_closed_keeps_its_reason_when_later_events_change_how_the_call_was_missed(
        app, client, db_session, clock, settings, agents, worked):
    ring_out(client, clock, 28)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        if worked == "tried":
            service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                                started_at=clock.now, outcome="no_answer", now=clock.now)
        else:
            service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="withdrawn", now=clock.now,
                          note="The caller emailed instead")
    post(client, "/twilio/voice/voicemail", {"CallSid": sid(28), "RecordingUrl": "https://api.twilio.com/r/RE1",
                                             "RecordingDuration": "15", "Digits": "hangup"})
    [callback] = callbacks(db_session)
    # What the agent saw when they rang or withdrew it stays what the callback was for.
    assert callback.reason == "no_answer"
    assert (callback.status, callback.attempts_count) == (("open", 1) if worked == "tried" else ("closed", 0))


def test_a_first_attempt_after_the_deadline_is_a_breach_at_once_and_the_sweep_still_records_its_notice(
        app, client, db_session, clock, settings, agents):
    from callbacks.sweep import sweep
    from helpdesk.models import CallbackNotice

    miss_a_call(client, clock, 28)
    [callback] = callbacks(db_session)
    # No sweep ran (the scheduler was down): the late attempt decides it.
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=callback.due_at + timedelta(minutes=20), outcome="no_answer",
                            now=callback.due_at + timedelta(minutes=21))
    [late] = callbacks(db_session)
    assert (late.sla_result, late.breached_at) == ("breached", callback.due_at)
    with app.extensions["helpdesk.db"].session() as session:
        first = sweep(session, settings, callback.due_at + timedelta(minutes=30)).recorded
        again = sweep(session, settings, callback.due_at + timedelta(minutes=31)).recorded
    assert (first, again) == ([(callback.id, "breach")], [])
    with app.extensions["helpdesk.db"].session() as session:
        assert [n.kind for n in session.scalars(select(CallbackNotice))] == ["breach"]


def test_a_callback_breached_withdrawn_and_owed_again_as_not_concluded_is_breached_again_if_missed(
        app, client, db_session, clock, settings, agents):
    from callbacks.sweep import sweep

    answered_out_of_order(client, clock, 29)
    [first] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, first.due_at + timedelta(minutes=1))  # breached: the call looked missed
    answered_out_of_order(client, clock, 29, answer_arrives=timedelta(hours=4))  # withdrawn: never owed
    with app.extensions["helpdesk.db"].session() as session:
        owed.record_not_concluded(session, settings, call_sid=sid(29), agent_id=agents[0], now=clock.now,
                                     note="Needs the grant team")
        recorded = sweep(session, settings, clock.now + timedelta(minutes=1)).recorded
    old, new = callbacks(db_session)
    assert (old.sla_result, new.sla_result) == (None, "breached")  # its due time (from the call) has passed
    assert recorded == [(new.id, "breach")]


def test_a_late_attempt_on_a_breach_an_earlier_version_kept_changes_nothing(app, client, db_session, clock,
                                                                          settings, agents):
    """Earlier versions kept a breach when an attempt in time was entered after it; only an attempt
    in time corrects a breach now, so a later attempt neither flips it nor writes a wrong audit entry."""
    from sqlalchemy import update as sql_update

    from helpdesk.models import AuditEntry

    miss_a_call(client, clock, 30)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        session.execute(sql_update(Callback).where(Callback.id == callback.id).values(
            sla_result="breached", breached_at=callback.due_at, attempts_count=1,
            first_attempt_at=callback.due_at - timedelta(minutes=2)))
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=callback.due_at + timedelta(minutes=3), outcome="busy",
                            now=callback.due_at + timedelta(minutes=4))
    assert callbacks(db_session)[0].sla_result == "breached"
    with app.extensions["helpdesk.db"].session() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action.not_in(USER_ACTIONS))).all() == []


def test_an_answered_call_whose_callback_an_agent_withdrew_is_not_owed_another(app, client, db_session, clock,
                                                                               settings, agents):
    """"Never twice for one contact": only the app's own withdrawal (the call was answered after
    all) lets "Callback needed" owe a new one (found by a model-based test)."""
    answer_a_call(client, clock, 41)
    with app.extensions["helpdesk.db"].session() as session:
        callback = owed.record_not_concluded(session, settings, call_sid=sid(41), agent_id=agents[0],
                                                now=clock.now, note="Needs the grant team")
    with app.extensions["helpdesk.db"].session() as session:
        service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="withdrawn", now=clock.now,
                      note="Customer emailed instead")
    with app.extensions["helpdesk.db"].session() as session, \
            pytest.raises(CallbackError, match="already closed as withdrawn"):
        owed.record_not_concluded(session, settings, call_sid=sid(41), agent_id=agents[1], now=clock.now,
                                     note="Again, from a page loaded before")
    assert len(callbacks(db_session)) == 1


@pytest.mark.parametrize("closed_as", ["unreachable", "resolved"])
def test_a_call_made_in_time_and_logged_after_the_callback_closed_still_counts(app, client, db_session, clock,
                                                                              settings, agents, closed_as):
    """The agent logged their calls out of order: the callback closed at the last one logged
    (or as resolved), then they entered the one they made at 12:55. It counts and corrects the
    breach; the callback stays closed as it was. One after it closed is refused."""
    from callbacks.sweep import sweep

    arrived = miss_a_call(client, clock, 42)
    [callback] = callbacks(db_session)
    database = app.extensions["helpdesk.db"]
    late = [callback.due_at + timedelta(minutes=m) for m in (30, 70, 140)]
    logged = callback.due_at + timedelta(hours=3)
    outcomes = ["no_answer"] * 3 if closed_as == "unreachable" else ["reached"]
    for started, outcome in zip(late, outcomes):
        with database.session() as session:
            service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], started_at=started,
                                source="manual", outcome=outcome, now=logged)
    if closed_as == "resolved":
        with database.session() as session:
            service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="resolved", now=logged)
    with database.session() as session:
        sweep(session, settings, logged)
    [closed] = callbacks(db_session)
    assert (closed.status, closed.outcome, closed.sla_result) == ("closed", closed_as, "breached")
    in_time = callback.due_at - timedelta(minutes=5)
    with database.session() as session:
        attempt, corrected = service.add_attempt(
            session, settings, callback_id=callback.id, agent_id=agents[1], started_at=in_time, source="manual",
            outcome="reached", now=logged + timedelta(minutes=2))
    assert corrected
    [fixed] = callbacks(db_session)
    assert (fixed.status, fixed.outcome, fixed.sla_result, fixed.first_attempt_at, fixed.reached_at) == (
        "closed", closed_as, "met", in_time, in_time)
    assert fixed.attempts_count == len(outcomes) + 1 and fixed.next_attempt_at is None
    with database.session() as session, pytest.raises(CallbackError, match="only an attempt made before then"):
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0],
                            started_at=logged + timedelta(minutes=1), source="manual", outcome="no_answer",
                            now=logged + timedelta(minutes=3))
    assert arrived < in_time


def test_a_call_back_now_call_logged_again_by_hand_counts_once(app, client, db_session, clock, settings, agents):
    """The same call, once from Twilio and once typed in, would count twice, and close the
    callback as unreachable a call early (found by a model-based test). A call by hand a
    few minutes later is another."""
    miss_a_call(client, clock, 43)
    [callback] = callbacks(db_session)
    database = app.extensions["helpdesk.db"]
    dialled = clock.now + timedelta(minutes=20)
    with database.session() as session:
        attempt_id = service.start_call(session, callback_id=callback.id, agent_id=agents[0],
                                        now=dialled - timedelta(seconds=15))
    with database.session() as session:
        service.call_placed(session, attempt_id=attempt_id, call_sid=sid(943))
    with database.session() as session:
        assert service.dial_attempt(session, callback_id=callback.id, call_sid=sid(943), now=dialled)
    with database.session() as session, pytest.raises(CallbackError, match="“Call back now” dialled the caller at"):
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0],
                            started_at=dialled + timedelta(seconds=30), source="manual", outcome="no_answer",
                            now=dialled + timedelta(minutes=2))
    with database.session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0],
                            started_at=dialled + timedelta(minutes=5), source="manual", outcome="no_answer",
                            now=dialled + timedelta(minutes=6))
    [after] = callbacks(db_session)
    assert after.attempts_count == 2


def test_a_closed_callback_cannot_be_closed_again_attempted_or_called(app, client, db_session, clock, settings,
                                                                      agents):
    """Once withdrawn, it is done: a second close (from a page loaded before), an attempt logged
    against it, "Call back now" or a claim is refused, and it stays as its agent closed it."""
    miss_a_call(client, clock, 44)
    [callback] = callbacks(db_session)
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        service.close(session, callback_id=callback.id, agent_id=agents[0], outcome="withdrawn", now=clock.now,
                      note="Caller emailed instead")
    actions = [
        lambda s: service.close(s, callback_id=callback.id, agent_id=agents[1], outcome="withdrawn", now=clock.now,
                                note="Not needed"),
        lambda s: service.add_attempt(s, settings, callback_id=callback.id, agent_id=agents[1], source="manual",
                                      started_at=clock.now, outcome="no_answer", now=clock.now),
        lambda s: service.start_call(s, callback_id=callback.id, agent_id=agents[1], now=clock.now),
        lambda s: claims.claim(s, callback.id, agents[1], clock.now),
    ]
    for action in actions:
        with database.session() as session, pytest.raises(CallbackError, match="no longer open"):
            action(session)
    [closed] = callbacks(db_session)
    assert (closed.outcome, closed.closed_by_id, closed.attempts_count, closed.note) == (
        "withdrawn", agents[0], 0, "Caller emailed instead")
    assert db_session.scalar(select(func.count()).select_from(CallbackAttempt)) == 0
    db_session.rollback()


@pytest.mark.parametrize("outcome", ["placing", "not_dialled", ""])
def test_an_attempt_with_an_outcome_an_agent_cannot_record_is_refused(app, client, db_session, clock, settings,
                                                                      agents, outcome):
    arrived = miss_a_call(client, clock, 45)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match="what happened"):
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                            started_at=arrived + timedelta(minutes=20), outcome=outcome, now=clock.now)
    assert (callbacks(db_session)[0].attempts_count, callbacks(db_session)[0].first_attempt_at) == (0, None)


@pytest.mark.parametrize("outcome", ["closed", "met", ""])
def test_closing_with_an_outcome_that_is_not_one_of_the_three_is_refused(app, client, db_session, clock, agents,
                                                                         outcome):
    miss_a_call(client, clock, 46)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session, pytest.raises(CallbackError, match="Choose resolved"):
        service.close(session, callback_id=callback.id, agent_id=agents[0], outcome=outcome, now=clock.now,
                      note="Sorted")
    [still] = callbacks(db_session)
    assert (still.status, still.outcome, still.closed_at) == ("open", None, None)


def test_an_agent_cannot_release_a_colleagues_claim_but_a_manager_can(app, client, db_session, clock, agents):
    miss_a_call(client, clock, 47)
    [callback] = callbacks(db_session)
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        claims.claim(session, callback.id, agents[0], clock.now)
    with database.session() as session, pytest.raises(CallbackError, match="You have not claimed this callback."):
        claims.release(session, callback.id, agents[1])
    assert callbacks(db_session)[0].claimed_by_id == agents[0]
    with database.session() as session:
        claims.release(session, callback.id, agents[1], anyones=True)
    assert (callbacks(db_session)[0].claimed_by_id, callbacks(db_session)[0].claimed_at) == (None, None)
    with database.session() as session, pytest.raises(CallbackError, match="Nobody holds this callback now."):
        claims.release(session, callback.id, agents[1], anyones=True)


def test_a_second_call_back_now_is_refused_while_the_first_may_still_be_ringing_and_allowed_after(
        app, client, db_session, clock, agents):
    """The agent's phone rings for a minute and the prompt waits; a call still placing after two
    minutes ended unheard of, so it no longer keeps the agent from calling again."""
    miss_a_call(client, clock, 49)
    [callback] = callbacks(db_session)
    database = app.extensions["helpdesk.db"]
    clicked = clock.now
    with database.session() as session:
        service.start_call(session, callback_id=callback.id, agent_id=agents[0], now=clicked)
    with database.session() as session, pytest.raises(CallbackError, match="already under way"):
        service.start_call(session, callback_id=callback.id, agent_id=agents[0], now=clicked + timedelta(seconds=90))
    with database.session() as session:
        service.start_call(session, callback_id=callback.id, agent_id=agents[0],
                           now=clicked + timedelta(minutes=2, seconds=1))
    assert db_session.scalar(select(func.count()).select_from(CallbackAttempt)) == 2
    db_session.rollback()


def test_two_attempts_by_hand_a_minute_and_a_half_apart_are_two_attempts(app, client, db_session, clock, settings,
                                                                         agents):
    """Within a minute of each other they are one call entered twice; further apart, two calls."""
    arrived = miss_a_call(client, clock, 50)
    [callback] = callbacks(db_session)
    first = arrived + timedelta(minutes=20)
    for started in (first, first + timedelta(seconds=90)):
        with app.extensions["helpdesk.db"].session() as session:
            service.add_attempt(session, settings, callback_id=callback.id, agent_id=agents[0], source="manual",
                                started_at=started, outcome="no_answer", now=first + timedelta(minutes=5))
    assert callbacks(db_session)[0].attempts_count == 2
