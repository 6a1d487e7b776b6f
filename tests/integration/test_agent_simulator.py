"""The simulated agent works the real queue page: in-process on both databases, then over real HTTP."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from callbacks.sweep import sweep
from helpdesk.agent_simulator import AgentSimulator, Behaviour, parse_queue, run
from helpdesk.db import Database
from helpdesk.models import Callback, CallbackAttempt, Enquiry
from helpdesk.users import add_user
from tests.integration.conftest import make_app, make_settings
from tests.integration.test_email_acknowledgements import DESK
from tests.integration.test_email_on_queue_page import email_in
from tests.integration.test_queue_page import PASSWORD, add_agent, answer_a_call, at, miss_a_call
from tests.integration.twilio_requests import sid

ROOT = Path(__file__).resolve().parents[2]
CALLER = "+447700900123"
KEEN = dict(late_share=0, reached_share=1, close_share=0, release_share=0, answer_share=1)


@pytest.fixture
def settings():
    return make_settings(smtp={"host": "127.0.0.1", "port": 2525, "security": "none"},
                         email={"addresses": [DESK], "ack_within_minutes": 15})


class ClientTransport:
    """The Flask test client as the agent's browser: it follows redirects and keeps the session cookie."""

    def __init__(self, client):
        self.client = client

    def get(self, path: str) -> tuple[int, str]:
        response = self.client.get(path, follow_redirects=True)
        return response.status_code, response.get_data(as_text=True)

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        response = self.client.post(path, data=form, follow_redirects=True)
        return response.status_code, response.get_data(as_text=True)


def agent_at(client, lines: list[str], **behaviour) -> AgentSimulator:
    return AgentSimulator(ClientTransport(client), "alice", PASSWORD, Behaviour(**{**KEEN, **behaviour}),
                          rng=random.Random(7), report=lines.append)


def callbacks_and_attempts(app):
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        callbacks = list(session.scalars(select(Callback).order_by(Callback.id)))
        attempts = list(session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id)))
        session.expunge_all()
    return callbacks, attempts


def enquiry(app, reference: str) -> Enquiry:
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        found = session.scalars(select(Enquiry).where(Enquiry.reference == reference)).one()
        session.expunge(found)
    return found


def test_one_round_claims_a_callback_logs_an_attempt_in_time_and_answers_an_email(app, client, clock, settings):
    alice = add_agent(app, "alice", "Alice Agent")
    miss_a_call(client, clock, 1, at(10), caller=CALLER)
    reference = email_in(app.extensions["helpdesk.db"], settings, 1, at(10, 1))
    clock.now = at(10, 2)
    lines: list[str] = []

    assert agent_at(client, lines).round() == 3  # claim, attempt, email answered

    [callback], [attempt] = callbacks_and_attempts(app)
    assert (callback.claimed_by_id, callback.sla_result, callback.first_attempt_at) == (alice, "met", at(10, 2))
    assert (attempt.source, attempt.outcome, attempt.agent_id) == ("manual", "reached", alice)
    assert attempt.note  # the short note went in with the form
    answered = enquiry(app, reference)
    assert (answered.status, answered.closed_by_id) == ("closed", alice)
    said = "\n".join(lines)
    assert "attempt: reached" in said and f"marked {reference} answered" in said
    assert CALLER not in said and CALLER[-4:] not in said and "@" not in said


def test_an_email_enquiry_that_needs_a_call_is_given_a_callback_and_then_worked_like_any_other(app, client, clock,
                                                                                                settings):
    add_agent(app, "alice", "Alice Agent")
    reference = email_in(app.extensions["helpdesk.db"], settings, 1, at(10, 1))
    clock.now = at(10, 2)
    lines: list[str] = []
    agent = agent_at(client, lines, answer_share=0, email_callback_share=1)

    assert agent.round() == 1
    [callback], _ = callbacks_and_attempts(app)
    assert (callback.reason, callback.owed_from, callback.caller_number[:10]) == ("email", at(10, 1), "+447700900")
    assert enquiry(app, reference).status == "callback_owed"
    assert f"recorded a callback needed for {reference}" in "\n".join(lines)
    clock.now = at(10, 3)
    assert agent.round() == 2  # claimed and tried in time, as any callback
    [callback], [attempt] = callbacks_and_attempts(app)
    assert (callback.sla_result, attempt.outcome) == ("met", "reached")


def test_a_refused_action_is_reported_with_the_pages_reason(app, client, clock, settings):
    from tests.integration.test_email_acknowledgements import raw_email, receive

    add_agent(app, "alice", "Alice Agent")
    database = app.extensions["helpdesk.db"]
    reference = email_in(database, settings, 1, at(10, 1))
    clock.now = at(10, 2)

    class ReplyFirst(ClientTransport):
        """The customer writes again between the agent's look at the page and their press."""

        def post(self, path, form):
            if "/callback" in path:
                receive(database, settings, raw_email(2, subject=f"Re: {reference}"), at(10, 2))
            return super().post(path, form)

    lines: list[str] = []
    agent = AgentSimulator(ReplyFirst(client), "alice", PASSWORD,
                           Behaviour(**{**KEEN, "answer_share": 0, "email_callback_share": 1}),
                           rng=random.Random(7), report=lines.append)
    agent.sign_in()
    assert agent.round() == 0
    # The page's reason, with its numbers masked as everything the simulator logs.
    assert (f"could not do it (recorded a callback needed for {reference}): A new email for HD-[number] came in "
            "after your page showed it.") in "\n".join(lines)


@pytest.mark.parametrize("shares, status, owed", [
    ({"concluded_share": 1, "call_callback_share": 0}, "concluded", []),
    ({"concluded_share": 0, "call_callback_share": 1}, "callback_owed", ["not_concluded"]),
])
def test_an_answered_calls_outcome_is_recorded_as_concluded_or_callback_needed(app, client, clock, shares, status,
                                                                             owed):
    add_agent(app, "alice", "Alice Agent")
    answer_a_call(client, clock, 1, at(10))
    clock.now = at(10, 5)
    lines: list[str] = []
    assert agent_at(client, lines, **shares).round() == 1
    callbacks, _ = callbacks_and_attempts(app)
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        recorded = session.scalars(select(Enquiry.status).where(Enquiry.call_sid == sid(1))).one()
    assert (recorded, [callback.reason for callback in callbacks]) == (status, owed)


def test_a_reached_callback_can_be_closed_as_resolved_in_the_same_round(app, client, clock):
    add_agent(app, "alice", "Alice Agent")
    miss_a_call(client, clock, 1, at(10))
    clock.now = at(10, 1)
    agent_at(client, [], close_share=1).round()
    [callback], _ = callbacks_and_attempts(app)
    assert (callback.status, callback.outcome, callback.sla_result) == ("closed", "resolved", "met")


def test_after_no_answer_the_agent_waits_for_the_next_try_then_rings_again(app, client, clock):
    add_agent(app, "alice", "Alice Agent")
    miss_a_call(client, clock, 1, at(10))
    clock.now = at(10, 1)
    agent = agent_at(client, [], reached_share=0)
    agent.round()
    agent.round()
    _, attempts = callbacks_and_attempts(app)
    assert [a.outcome for a in attempts] == ["no_answer"]  # the retry is not due yet
    clock.now = at(10, 32)  # retry_spacing_minutes starts at 30
    agent.round()
    callbacks, attempts = callbacks_and_attempts(app)
    assert len(attempts) == 2 and callbacks[0].sla_result == "met"


def test_an_attempt_made_with_call_back_now_is_left_to_its_call_then_closed_once_it_reached_the_caller(
        app, client, clock):
    from callbacks.telephony import FakeTelephony
    from tests.integration.twilio_requests import post

    telephony = app.extensions["helpdesk.telephony"] = FakeTelephony(clock=clock)
    alice = add_agent(app, "alice", "Alice Agent")
    miss_a_call(client, clock, 1, at(10))
    clock.now = at(10, 1)
    lines: list[str] = []
    agent = agent_at(client, lines, call_back_now_share=1, close_share=1)
    assert agent.round() == 2  # claimed, and "Call back now"
    [placed] = telephony.calls
    _, [attempt] = callbacks_and_attempts(app)
    assert (attempt.source, attempt.outcome, attempt.agent_id) == ("twilio", "placing", alice)
    assert agent.round() == 0  # its phone is ringing: not rung again, nor logged by hand
    assert len(telephony.calls) == 1
    # Twilio: the agent answers and presses 1, and the caller answers.
    [callback], _ = callbacks_and_attempts(app)
    leg = placed.placed.call_sid
    post(client, f"/twilio/voice/callback-connect?callback={callback.id}", {"CallSid": leg, "Digits": "1"})
    post(client, f"/twilio/voice/callback-status?callback={callback.id}",
         {"CallSid": sid(900), "ParentCallSid": leg, "CallStatus": "in-progress"})
    assert agent.round() == 1  # reached: closed as resolved
    [callback], [attempt] = callbacks_and_attempts(app)
    assert (attempt.outcome, callback.status, callback.outcome, callback.sla_result) == (
        "reached", "closed", "resolved", "met")
    said = "\n".join(lines)
    assert ", Call back now" in said and "could not" not in said


def test_a_callback_owed_this_minute_is_claimed_and_rung_the_next_minute(app, client, clock):
    # The form's time has whole minutes, so an attempt in the call's own minute would seem early.
    alice = add_agent(app, "alice", "Alice Agent")
    miss_a_call(client, clock, 1, at(10) + timedelta(seconds=20))
    clock.now = at(10) + timedelta(seconds=50)
    lines: list[str] = []
    agent = agent_at(client, lines)
    assert agent.round() == 1
    callbacks, attempts = callbacks_and_attempts(app)
    assert callbacks[0].claimed_by_id == alice and attempts == []
    assert not any("could not" in line for line in lines)
    clock.now = at(10, 1)
    agent.round()
    callbacks, attempts = callbacks_and_attempts(app)
    assert [a.started_at for a in attempts] == [at(10, 1)] and callbacks[0].sla_result == "met"


def test_a_callback_left_alone_breaches_and_is_worked_once_overdue(app, client, clock, settings):
    add_agent(app, "alice", "Alice Agent")
    miss_a_call(client, clock, 1, at(10))
    clock.now = at(10, 1)
    agent = agent_at(client, [], late_share=1)
    assert agent.round() == 0
    assert callbacks_and_attempts(app)[1] == []

    clock.now = at(13) + timedelta(seconds=30)  # overdue, but the form's time (13:00) would still be in time
    agent.round()
    assert callbacks_and_attempts(app)[1] == []  # left alone until the sweep records the breach

    clock.now = at(13, 5)
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, clock.now)
    agent.round()

    [callback], [attempt] = callbacks_and_attempts(app)
    assert callback.sla_result == "breached" and attempt.started_at == at(13, 5)


def test_a_wrong_password_is_reported_and_nothing_is_done(app, client, clock):
    add_agent(app, "alice", "Alice Agent")
    miss_a_call(client, clock, 1, at(10))
    lines: list[str] = []
    agent = AgentSimulator(ClientTransport(client), "alice", "not-the-password", Behaviour(**KEEN),
                           report=lines.append)
    assert run(agent, interval=0, rounds=2, stopping=lambda: False) == (0, 2, 2)
    assert len(lines) == 2 and all("sign-in was refused" in line for line in lines)
    assert "trying again next round" in lines[0] and "trying again" not in lines[1]  # there is no next round
    assert callbacks_and_attempts(app)[1] == []


def test_an_agent_whose_password_an_administrator_set_is_told_how_to_give_it_one_of_its_own(app, client, clock):
    """`helpdesk users add` makes a password for the first sign-in only: the simulated agent
    cannot choose one, and must say so rather than that the queue page is not as expected."""
    with app.extensions["helpdesk.db"].session() as session:
        add_user(session, "alice", PASSWORD, "agent", temporary=True)
    miss_a_call(client, clock, 1, at(10))
    lines: list[str] = []
    agent = AgentSimulator(ClientTransport(client), "alice", PASSWORD, Behaviour(**KEEN), report=lines.append)
    assert run(agent, interval=0, rounds=2, stopping=lambda: False) == (0, 2, 2)
    assert len(lines) == 2 and all(
        "alice's password was set by an administrator, to be replaced at the first sign-in: give the simulated "
        "agent one to keep with 'helpdesk users set-password alice --permanent'" in line for line in lines)
    assert callbacks_and_attempts(app)[1] == []


def test_an_agent_with_two_step_sign_in_is_told_it_cannot_be_played(migrated_url, clock):
    """The simulated agent cannot give an authenticator app's codes: it says so, rather than that
    the queue page is not as expected."""
    app = make_app(migrated_url, make_settings(web={"two_step_for": ["agent"]}), clock)
    try:
        with app.extensions["helpdesk.db"].session() as session:
            add_user(session, "alice", PASSWORD, "agent")
        lines: list[str] = []
        agent = AgentSimulator(ClientTransport(app.test_client()), "alice", PASSWORD, Behaviour(**KEEN),
                               report=lines.append)
        assert run(agent, interval=0, rounds=1, stopping=lambda: False) == (0, 1, 1)
        assert "alice has two-step sign-in, or their role must have it" in lines[0]
    finally:
        app.extensions["helpdesk.db"].dispose()


class BrokenDesk:
    """A help desk that first fails, then serves a page that is not the queue."""

    def __init__(self):
        self.answers = [(502, "Bad gateway"), (200, '<form action="/login" method="post">'
                                               '<input name="csrf_token" value="t"></form>'),
                        (200, "<h1>Something else entirely</h1>")]

    def get(self, path: str) -> tuple[int, str]:
        return self.answers.pop(0) if self.answers else (200, "")

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        return 200, "<p>Welcome</p>"


def test_http_errors_and_a_changed_page_are_reported_and_retried_next_round():
    lines: list[str] = []
    agent = AgentSimulator(BrokenDesk(), "alice", "secret", Behaviour(), report=lines.append)
    assert run(agent, interval=0, rounds=2, stopping=lambda: False) == (0, 2, 2)
    assert "answered HTTP 502" in lines[0] and "trying again next round" in lines[0]
    assert "not as expected" in lines[-1]


def test_the_breaches_are_read_from_the_notices_as_the_page_marks_them_up():
    page = ('<ul class="notice-list"><li class="notice-breach"><strong>Breached: <span class="reference">'
            'HD-2026-000007</span></strong></li><li><strong>Due in 1 minute: <span class="reference">HD-2026-000008'
            '</span></strong></li><li><strong>Breached: HD-2026-000009</strong></li></ul>')
    assert parse_queue(page).breached == {"HD-2026-000007", "HD-2026-000009"}


def test_a_queue_page_without_csrf_tokens_is_refused():
    page = '<li class="queue-item state-open" id="callback-3"><h3>HD-2026-000003</h3>' \
           '<form method="post" action="/queue/3/claim"></form></li>'
    with pytest.raises(Exception, match="CSRF"):
        parse_queue(page)


# --------------------------------------------------------------------------- over real HTTP


def callback_reference(db: Database) -> str:
    with db.session() as session, session.begin():
        return session.scalar(select(Enquiry.reference).join(Callback, Callback.enquiry_id == Enquiry.id))


def test_the_command_works_a_live_help_desk_and_stops_on_sigterm(migrated_url, tmp_path):
    from helpdesk.simulator import CallScenario, RequestsTransport, Simulator
    from tests.e2e.conftest import write_config
    from tests.live import LiveApp

    token = "live-auth-token-0123456789abcdef"
    db = Database(migrated_url)
    try:
        with db.session() as session:
            alice = add_user(session, "alice", PASSWORD, "agent", display_name="Alice",
                             now=datetime.now(timezone.utc)).id
        reference = email_in(db, make_settings(email={"addresses": [DESK]}), 1, datetime.now(timezone.utc))
        env = {"SECRET_KEY": "live-secret-key-0123456789" * 2, "TWILIO_AUTH_TOKEN": token,
               "HELPDESK_CONFIG": write_config(tmp_path / "helpdesk.toml")}
        with LiveApp(migrated_url, env, workers=1, migrate=False) as live:
            transport = RequestsTransport()
            trace = Simulator(live.url, token, transport=transport, speed=0).run_call(
                CallScenario(caller=CALLER, answer_after=None, abandon_after=8.0, seed=11))
            transport.close()
            assert trace.outcome == "abandoned" and not trace.errors

            command = [sys.executable, "-m", "helpdesk.cli", "simulate-agent", "--url", live.url,
                       "--username", "alice", "--late-share", "0", "--seed", "3", "--interval", "0.2"]
            child_env = {**os.environ, "HELPDESK_PASSWORD": PASSWORD}
            done = subprocess.run(command + ["--rounds", "2"], cwd=ROOT, env=child_env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert f"claimed {callback_reference(db)}" in done.stdout and f"marked {reference} answered" in done.stdout
            assert "Traceback" not in done.stderr and CALLER[-4:] not in done.stdout

            endless = subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            # SIGTERM once it is at work: it sets its handler before it signs in. A fixed 2 s lost
            # the race on a busy machine (parallel workers): Python's default SIGTERM ended it.
            with ThreadPoolExecutor(1) as pool:
                try:
                    signed_in = pool.submit(endless.stdout.readline).result(timeout=30)
                except TimeoutError:
                    endless.kill()
                    raise
            assert signed_in == "signed in as alice\n", signed_in + endless.communicate(timeout=30)[1]
            time.sleep(1)  # a few rounds at 0.2 s
            endless.send_signal(signal.SIGTERM)
            out, err = endless.communicate(timeout=30)
            assert endless.returncode == 0 and out.rstrip().endswith("actions.") and "Traceback" not in err
        with db.session() as session, session.begin():
            callback = session.scalars(select(Callback)).one()
            answered = session.scalars(select(Enquiry).where(Enquiry.reference == reference)).one()
            assert callback.claimed_by_id == alice and (answered.status, answered.closed_by_id) == ("closed", alice)
    finally:
        db.dispose()
