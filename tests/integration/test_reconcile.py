"""Calls whose last webhooks never came, finished from what Twilio's REST API says (SQLite and PostgreSQL)."""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from callbacks.scheduler import ReconcileJob, SweepJob, scheduled_jobs
from helpdesk.db import Database
from helpdesk.models import Call, Callback, TwilioEvent, TwilioLookup
from helpdesk.voice.lookup import CallFacts, FakeCallLookup, LookupFailed, RecordingFacts
from helpdesk.voice.reconcile import reconcile_calls
from tests.integration.conftest import OPEN_TIME, make_settings
from tests.integration.twilio_requests import inbound, post, sid, stamp

AGENT_1, AGENT_2 = sid(901), sid(902)
LATER = OPEN_TIME + timedelta(minutes=20)


def ringing(client, clock, n: int = 1, **extra) -> None:
    """What Twilio said before the app stopped hearing: the call came in and its two legs rang."""
    clock.now = OPEN_TIME
    assert post(client, "/twilio/voice/incoming", inbound(sid(n), **extra)).status_code == 200
    for leg, to in ((AGENT_1, "client:agent-1"), (AGENT_2, "+447700900001")):
        response = post(client, "/twilio/voice/agent-status", {
            "CallSid": leg, "ParentCallSid": sid(n), "CallStatus": "ringing", "To": to, "SequenceNumber": "1",
            "Timestamp": stamp(OPEN_TIME + timedelta(seconds=1))})
        assert response.status_code == 204


def facts(call_sid, status, *, parent=None, ended=None, talked=None, to="+448001217479"):
    return CallFacts(sid=call_sid, parent_sid=parent, status=status, start_time=OPEN_TIME + timedelta(seconds=1),
                     end_time=OPEN_TIME + timedelta(seconds=ended) if ended is not None else None,
                     duration=str(talked) if talked is not None else None,
                     from_="+447700900123" if parent is None else "+448001217479", to=to,
                     direction="inbound" if parent is None else "outbound-dial")


def answered_by_agent_1(n: int = 1) -> FakeCallLookup:
    lookup = FakeCallLookup()
    lookup.add(facts(sid(n), "completed", ended=90),
               facts(AGENT_1, "completed", parent=sid(n), ended=89, talked=75, to="client:agent-1"),
               facts(AGENT_2, "canceled", parent=sid(n), ended=14, to="+447700900001"))
    return lookup


def hung_up_after(seconds: int, n: int = 1) -> FakeCallLookup:
    lookup = FakeCallLookup()
    lookup.add(facts(sid(n), "completed", ended=seconds),
               facts(AGENT_1, "canceled", parent=sid(n), ended=seconds, to="client:agent-1"),
               facts(AGENT_2, "canceled", parent=sid(n), ended=seconds, to="+447700900001"))
    return lookup


def the_call(app, n: int = 1) -> Call:
    with app.extensions["helpdesk.db"].session() as session:
        return session.scalars(select(Call).where(Call.call_sid == sid(n))).one()


def count(app, model, *where) -> int:
    with app.extensions["helpdesk.db"].session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def reconcile(app, lookup, now=LATER):
    return reconcile_calls(app.extensions["helpdesk.db"], app.extensions["helpdesk.settings"], lookup, now)


def test_a_call_answered_while_the_app_heard_nothing_is_finished_from_the_api(app, client, clock):
    ringing(client, clock)
    assert the_call(app).outcome == "in_progress"

    report = reconcile(app, answered_by_agent_1())

    assert (report.checked, report.finished, report.live, report.failed) == (1, 1, 0, 0)
    call = the_call(app)
    assert (call.outcome, call.answer_seconds, call.rings, call.sla_result) == ("answered", 14.0, 5, "met")
    assert (call.agent_leg_sid, call.agent, call.incoming_seen, call.from_api) == (AGENT_1, "client:agent-1", True, True)
    assert call.ended_at == OPEN_TIME + timedelta(seconds=90)
    assert count(app, TwilioEvent, TwilioEvent.kind == "api_leg") == 2
    assert count(app, TwilioEvent, TwilioEvent.kind == "api_call") == 1
    assert count(app, Callback) == 0


def test_a_caller_who_hung_up_unheard_is_owed_a_callback_from_when_they_called(app, client, clock):
    ringing(client, clock)
    reconcile(app, hung_up_after(45))

    call = the_call(app)
    assert (call.outcome, call.countable, call.sla_result) == ("abandoned", True, "breached")
    with app.extensions["helpdesk.db"].session() as session:
        callback = session.scalars(select(Callback)).one()
    assert (callback.call_sid, callback.reason, callback.status) == (sid(1), "abandoned", "open")
    assert callback.owed_from == OPEN_TIME
    assert callback.due_at == OPEN_TIME + timedelta(hours=3)


def answered(client, clock, n: int) -> None:
    """A call an agent answered, still going on: its ending has not come yet."""
    clock.now = OPEN_TIME
    assert post(client, "/twilio/voice/incoming", inbound(sid(n))).status_code == 200
    response = post(client, "/twilio/voice/agent-status", {
        "CallSid": sid(900 + n), "ParentCallSid": sid(n), "CallStatus": "in-progress", "To": "client:agent-1",
        "SequenceNumber": "2", "Timestamp": stamp(OPEN_TIME + timedelta(seconds=6))})
    assert response.status_code == 204


def rang_out_to_voicemail(client, clock, n: int = 1) -> None:
    """As `ringing`, then the <Dial> rang out and the app sent the caller to voicemail: the
    recording's webhooks and the call's end never came."""
    ringing(client, clock, n)
    clock.now = OPEN_TIME + timedelta(seconds=62)
    response = post(client, "/twilio/voice/dial-action", {"CallSid": sid(n), "DialCallStatus": "no-answer"})
    assert response.status_code == 200 and b"<Record" in response.data


def rang_out(n: int = 1, *recordings: RecordingFacts) -> FakeCallLookup:
    lookup = FakeCallLookup(recorded=list(recordings))
    lookup.add(facts(sid(n), "completed", ended=95),
               facts(AGENT_1, "no-answer", parent=sid(n), to="client:agent-1"),
               facts(AGENT_2, "no-answer", parent=sid(n), to="+447700900001"))
    return lookup


def message(n: int = 1, seconds: str = "21") -> RecordingFacts:
    return RecordingFacts(sid="RE" + f"{n:032d}", call_sid=sid(n), status="completed", duration=seconds,
                          source="RecordVerb")


def test_a_message_left_while_the_app_heard_nothing_is_a_voicemail_from_the_calls_recordings(app, client, clock):
    rang_out_to_voicemail(client, clock)
    lookup = rang_out(1, message())

    assert reconcile(app, lookup).finished == 1

    assert lookup.asked_recordings == [sid(1)]
    call = the_call(app)
    assert (call.outcome, call.from_api, call.ended_at) == ("voicemail", True, OPEN_TIME + timedelta(seconds=95))
    assert count(app, TwilioEvent, TwilioEvent.kind == "api_recording") == 1
    with app.extensions["helpdesk.db"].session() as session:
        assert session.scalars(select(Callback.reason)).one() == "voicemail"


def test_a_call_whose_recording_twilio_is_still_processing_is_asked_about_again(app, client, clock):
    rang_out_to_voicemail(client, clock)
    processing = RecordingFacts(sid="RE" + "3" * 32, call_sid=sid(1), status="processing", duration="-1",
                                source="RecordVerb")
    report = reconcile(app, rang_out(1, processing))
    assert (report.checked, report.live, report.finished) == (1, 1, 0)
    assert the_call(app).ended_at is None and count(app, Callback) == 0

    assert reconcile(app, rang_out(1, message()), now=LATER + timedelta(minutes=5)).finished == 1
    assert the_call(app).outcome == "voicemail"


def test_no_message_left_is_no_answer_and_only_callers_offered_voicemail_have_recordings_asked_for(
        app, client, clock):
    rang_out_to_voicemail(client, clock, 1)
    ringing(client, clock, 2)
    lookup = rang_out(1, message(1, seconds="0"))
    lookup.add(*hung_up_after(20, n=2).calls.values())

    assert reconcile(app, lookup).finished == 2

    assert lookup.asked_recordings == [sid(1)]
    assert (the_call(app, 1).outcome, the_call(app, 1).ended_at) == ("no_answer", OPEN_TIME + timedelta(seconds=95))
    assert the_call(app, 2).outcome == "abandoned"
    with app.extensions["helpdesk.db"].session() as session:
        owed = session.execute(select(Callback.call_sid, Callback.reason).order_by(Callback.call_sid)).all()
    assert owed == [(sid(1), "no_answer"), (sid(2), "abandoned")]


def test_asking_again_stores_nothing_more(app, client, clock):
    ringing(client, clock)
    lookup = hung_up_after(12)
    reconcile(app, lookup)
    events, before = count(app, TwilioEvent), the_call(app)

    again = reconcile(app, lookup, now=LATER + timedelta(minutes=5))

    assert again.checked == 0  # no longer in progress, so not asked about
    assert count(app, TwilioEvent) == events and count(app, Callback) == 1
    assert the_call(app).outcome == before.outcome == "abandoned"


def test_asked_with_no_limit_every_call_is_finished_a_batch_at_a_time(app, client, clock):
    from helpdesk.voice.reconcile import BATCH

    lookup = FakeCallLookup()
    for n in range(1, BATCH + 12):
        assert post(client, "/twilio/voice/incoming", inbound(sid(n))).status_code == 200
        lookup.add(facts(sid(n), "completed", ended=20))
    report = reconcile_calls(app.extensions["helpdesk.db"], app.extensions["helpdesk.settings"], lookup, LATER,
                             since=OPEN_TIME - timedelta(days=30), limit=None)
    assert (report.checked, report.finished) == (BATCH + 11, BATCH + 11)
    assert count(app, Call, Call.outcome == "abandoned") == BATCH + 11


def test_a_call_still_live_at_twilio_is_left_as_it_is(app, client, clock):
    ringing(client, clock)
    lookup = FakeCallLookup()
    lookup.add(facts(sid(1), "in-progress"))

    report = reconcile(app, lookup)

    assert (report.checked, report.live, report.finished) == (1, 1, 0)
    assert count(app, TwilioEvent, TwilioEvent.kind.like("api_%")) == 0
    assert (the_call(app).outcome, the_call(app).from_api) == ("in_progress", False)


def test_a_call_is_not_asked_about_before_reconcile_after_minutes(app, client, clock):
    ringing(client, clock)
    lookup = answered_by_agent_1()
    assert reconcile(app, lookup, now=OPEN_TIME + timedelta(minutes=14)).checked == 0
    assert lookup.asked == []
    assert reconcile(app, lookup, now=OPEN_TIME + timedelta(minutes=15, seconds=1)).finished == 1


def test_calls_finished_by_their_webhooks_and_calls_older_than_two_days_are_not_asked_about(app, client, clock):
    ringing(client, clock, 1)
    ringing(client, clock, 2)
    post(client, "/twilio/voice/status", {"CallSid": sid(2), "CallStatus": "completed", "CallDuration": "20",
                                          "Timestamp": stamp(OPEN_TIME + timedelta(seconds=20))})
    lookup = answered_by_agent_1()
    assert reconcile(app, lookup, now=OPEN_TIME + timedelta(days=2, seconds=1)).checked == 0
    assert reconcile(app, lookup).checked == 1
    assert lookup.asked == [sid(1)]


def test_a_call_that_waited_in_a_queue_is_not_asked_about(migrated_url, clock):
    from tests.integration.conftest import make_app

    app = make_app(migrated_url, make_settings(routing={"mode": "queue", "queue_name": "helpdesk"}), clock)
    try:
        client = app.test_client()
        clock.now = OPEN_TIME
        post(client, "/twilio/voice/incoming", inbound(sid(1)))
        lookup = hung_up_after(45)
        assert reconcile(app, lookup).checked == 0
        assert lookup.asked == [] and the_call(app).outcome == "in_progress"
    finally:
        app.extensions["helpdesk.db"].dispose()


def test_when_twilio_cannot_be_reached_the_run_stops_and_the_next_one_finishes_the_calls(app, client, clock, caplog):
    ringing(client, clock, 1)
    ringing(client, clock, 2)
    lookup = hung_up_after(45, 1)
    lookup.add(*hung_up_after(50, 2).calls.values())
    lookup.fail = LookupFailed("call CA...: could not reach Twilio (ConnectionError)", unreachable=True)

    with caplog.at_level(logging.WARNING, logger="helpdesk.voice.reconcile"):
        report = reconcile(app, lookup)
    assert (report.checked, report.failed, report.finished) == (1, 1, 0)
    assert "stopped after 1 of the unfinished calls" in caplog.text
    assert count(app, TwilioEvent, TwilioEvent.kind.like("api_%")) == 0
    assert count(app, TwilioLookup) == 0  # not asked after all: the call keeps its turn

    lookup.fail = None
    assert reconcile(app, lookup, now=LATER + timedelta(minutes=5)).finished == 2
    assert {the_call(app, 1).outcome, the_call(app, 2).outcome} == {"abandoned"}


def test_a_call_twilio_does_not_know_or_an_answer_about_another_call_stores_nothing(app, client, clock):
    ringing(client, clock, 1)
    ringing(client, clock, 2)
    lookup = FakeCallLookup()
    lookup.add(facts(sid(3), "completed", ended=20))
    lookup.calls[sid(2)] = lookup.calls[sid(3)]  # the API answers about sid(3) when asked about sid(2)

    report = reconcile(app, lookup)

    assert (report.checked, report.unknown, report.failed, report.finished) == (2, 1, 1, 0)
    assert count(app, TwilioEvent, TwilioEvent.kind.like("api_%")) == 0
    assert count(app, Call, Call.call_sid == sid(3)) == 0


def test_a_call_twilio_does_not_know_is_logged_once_not_every_run(app, client, clock, caplog, monkeypatch):
    monkeypatch.setattr("helpdesk.voice.reconcile._told_unknown", set())  # as in a process just started
    ringing(client, clock, 41)
    lookup = FakeCallLookup()
    with caplog.at_level(logging.WARNING, logger="helpdesk.voice.reconcile"):
        for minutes in (0, 5, 10):
            assert reconcile(app, lookup, now=LATER + timedelta(minutes=minutes)).unknown == 1
    told = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    with app.extensions["helpdesk.db"].session() as session:
        kept = session.get(TwilioLookup, sid(41))
    assert (kept.answer, kept.times, kept.asked_at) == ("unknown", 3, LATER + timedelta(minutes=10))
    assert told == [f"reconcile: Twilio does not know {sid(41)}; it is left as it is "
                    "('helpdesk calls unfinished' lists such calls)"]


def test_calls_twilio_does_not_know_do_not_keep_newer_calls_from_being_asked_about(app, client, clock):
    from helpdesk.voice.reconcile import BATCH

    lookup = FakeCallLookup()  # Twilio knows none of the first BATCH calls (another account's, say)
    clock.now = OPEN_TIME
    for n in range(1, BATCH + 1):
        assert post(client, "/twilio/voice/incoming", inbound(sid(n))).status_code == 200
    clock.now = OPEN_TIME + timedelta(minutes=1)
    assert post(client, "/twilio/voice/incoming", inbound(sid(BATCH + 1))).status_code == 200
    lookup.add(facts(sid(BATCH + 1), "completed", ended=80))

    first = reconcile(app, lookup)
    assert (first.checked, first.unknown, first.finished) == (BATCH, BATCH, 0)  # oldest first

    second = reconcile(app, lookup, now=LATER + timedelta(minutes=5))

    assert lookup.asked[BATCH] == sid(BATCH + 1)  # never asked about: first in the next run
    assert (second.checked, second.finished, second.unknown) == (BATCH, 1, BATCH - 1)
    assert the_call(app, BATCH + 1).outcome == "abandoned"
    third = reconcile(app, lookup, now=LATER + timedelta(minutes=10))
    assert lookup.asked[2 * BATCH] == sid(BATCH)  # then the one asked about longest ago
    assert third.checked == BATCH


def test_metrics_count_calls_with_no_ending_two_hours_after_arrival_until_they_are_finished(app, client, clock):
    from tests.integration.test_metrics_endpoint import scrape, value

    ringing(client, clock, 1)
    rang_out_to_voicemail(client, clock, 2)  # no answer, but no ending: no callback owed yet
    answered(client, clock, 3)  # a conversation going on: not unfinished
    clock.now = OPEN_TIME + timedelta(hours=2) - timedelta(seconds=1)
    assert value(scrape(client), "helpdesk_calls_unfinished") == 0
    clock.now = OPEN_TIME + timedelta(hours=2, seconds=1)
    assert value(scrape(client), "helpdesk_calls_unfinished") == 2
    lookup = hung_up_after(20, n=1)
    lookup.add(*rang_out(2).calls.values())
    reconcile(app, lookup, now=clock.now)
    assert lookup.asked == [sid(1), sid(2)]
    samples = scrape(client)
    assert value(samples, "helpdesk_calls_unfinished") == 0
    assert value(samples, "helpdesk_calls_total", outcome="abandoned", caller_type="unknown") == 1
    assert value(samples, "helpdesk_calls_total", outcome="no_answer", caller_type="unknown") == 1


def test_the_scheduler_runs_the_check_with_twilio_credentials_and_not_without(migrated_url, monkeypatch, caplog):
    from helpdesk.db import Database

    job = SweepJob(settings=make_settings(), database=Database(migrated_url))
    given = FakeCallLookup()
    reconcilers = [each for each in scheduled_jobs(job, lookup=given) if isinstance(each, ReconcileJob)]
    assert len(reconcilers) == 1 and reconcilers[0].lookup is given
    run = reconcilers[0]()
    assert run.held and not run.failed and [report.checked for report in run.result[:2]] == [0, 0]

    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger="callbacks.scheduler"):
        jobs = scheduled_jobs(job)
    assert not any(isinstance(each, ReconcileJob) for each in jobs)
    assert "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in caplog.text

    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
    found = [each for each in scheduled_jobs(job) if isinstance(each, ReconcileJob)]
    assert len(found) == 1 and found[0].lookup.account_sid == "AC" + "0" * 32

    off = SweepJob(settings=make_settings(webhooks={"reconcile_after_minutes": 0}), database=job.database)
    assert not any(isinstance(each, ReconcileJob) for each in scheduled_jobs(off, lookup=given))
    for each in jobs + found + reconcilers:
        each.database.dispose()


# --------------------------------------------------------------------------- from the command line, over HTTP


@pytest.mark.usefixtures("local_no_proxy")
def test_helpdesk_scheduler_once_asks_twilio_over_http_and_finishes_the_call(migrated_url, tmp_path, stub):
    from click.testing import CliRunner

    from helpdesk.cli import main
    from helpdesk.db import Database
    from helpdesk.voice.journal import record_event
    from tests.integration.test_scheduler import write_config

    config = write_config(tmp_path / "helpdesk.toml")
    arrived = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=20)
    database = Database(migrated_url)
    try:
        with database.connection() as connection:
            record_event(connection, make_settings(), kind="incoming", path="/twilio/voice/incoming",
                         params=list(inbound(sid(7)).items()), received_at=arrived, decision="agents")
    finally:
        database.dispose()
    rfc = lambda moment: format_datetime(moment)  # noqa: E731 - as Twilio writes times
    calls = f"/2010-04-01/Accounts/AC{'0' * 32}/Calls"
    call = {"sid": sid(7), "parent_call_sid": None, "status": "completed", "from": "+447700900123",
            "to": "+448001217479", "start_time": rfc(arrived), "end_time": rfc(arrived + timedelta(seconds=40)),
            "duration": "40", "direction": "inbound"}
    leg = {"sid": AGENT_1, "parent_call_sid": sid(7), "status": "canceled", "to": "client:agent-1",
           "start_time": rfc(arrived + timedelta(seconds=1)), "end_time": None, "duration": None,
           "direction": "outbound-dial"}
    stub.answers = {
        f"{calls}/{sid(7)}.json": (200, json.dumps(call)),
        f"{calls}.json?ParentCallSid={sid(7)}&PageSize=100": (200, json.dumps({"calls": [leg], "page": 0,
                                                                              "page_size": 100})),
    }
    stub.status, stub.body = 404, json.dumps({"code": 20404, "status": 404})  # any other call is unknown
    env = {"HELPDESK_CONFIG": str(config), "DATABASE_URL": migrated_url, "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
           "TWILIO_AUTH_TOKEN": "token", "TWILIO_API_BASE_URL": stub.url}
    result = CliRunner().invoke(main, ["scheduler", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert ("Unfinished calls: asked Twilio about 1; 1 ended, 0 still live, 0 unknown to Twilio. "
            "Placing callback attempts: asked Twilio about 0; 0 ended") in result.output
    assert stub.paths == [f"/2010-04-01/Accounts/AC{'0' * 32}/Calls/{sid(7)}.json",
                          f"/2010-04-01/Accounts/AC{'0' * 32}/Calls.json?ParentCallSid={sid(7)}&PageSize=100"]
    database = Database(migrated_url)
    try:
        with database.session() as session:
            call = session.scalars(select(Call).where(Call.call_sid == sid(7))).one()
            callback = session.scalars(select(Callback)).one()
    finally:
        database.dispose()
    assert (call.outcome, call.ended_at, call.sla_result, call.from_api) == (
        "abandoned", arrived + timedelta(seconds=40), "breached", True)
    assert (callback.reason, callback.owed_from) == ("abandoned", arrived)


# --------------------------------------------------------------------------- helpdesk calls unfinished


def store_calls(url: str, now: datetime) -> None:
    """Five calls, by the real clock: three with no ending that are not answered, two finished or answered."""
    from helpdesk.voice.journal import record_event

    def event(connection, n, kind, params, received_at, decision=None):
        record_event(connection, make_settings(), kind=kind, path=f"/twilio/voice/{kind}", params=list(params.items()),
                     received_at=received_at, decision=decision)

    database = Database(url)
    try:
        with database.connection() as connection:
            old = now - timedelta(days=3)
            event(connection, 1, "incoming", inbound(sid(1)), old, "agents")  # still in progress, 3 days on
            queued = now - timedelta(hours=1)
            event(connection, 2, "incoming", inbound(sid(2)), queued, "queue")
            rang_out_at = now - timedelta(minutes=30)
            event(connection, 3, "incoming", inbound(sid(3)), rang_out_at, "agents")
            event(connection, 3, "dial_action", {"CallSid": sid(3), "DialCallStatus": "no-answer"},
                  rang_out_at + timedelta(seconds=60), "voicemail")
            event(connection, 4, "incoming", inbound(sid(4)), rang_out_at, "agents")
            event(connection, 4, "status", {"CallSid": sid(4), "CallStatus": "completed", "CallDuration": "20",
                                            "Timestamp": stamp(rang_out_at + timedelta(seconds=20))},
                  rang_out_at + timedelta(seconds=20))
            event(connection, 5, "incoming", inbound(sid(5)), rang_out_at, "agents")
            event(connection, 5, "agent_status", {"CallSid": sid(905), "ParentCallSid": sid(5),
                                                  "CallStatus": "in-progress", "To": "client:agent-1",
                                                  "Timestamp": stamp(rang_out_at + timedelta(seconds=6))},
                  rang_out_at + timedelta(seconds=6))
    finally:
        database.dispose()


def run_cli(args, env):
    from click.testing import CliRunner

    from helpdesk.cli import main

    return CliRunner().invoke(main, args, env=env)


def cli_env(url: str, config) -> dict[str, str]:
    return {"HELPDESK_CONFIG": str(config), "DATABASE_URL": url, "TWILIO_ACCOUNT_SID": "",
            "TWILIO_AUTH_TOKEN": "", "TWILIO_API_BASE_URL": ""}


def test_helpdesk_calls_unfinished_lists_the_calls_with_no_ending_and_what_happens_to_them(migrated_url, tmp_path):
    from tests.integration.test_scheduler import write_config

    now = datetime.now(timezone.utc).replace(microsecond=0)
    store_calls(migrated_url, now)
    env = cli_env(migrated_url, write_config(tmp_path / "helpdesk.toml"))

    result = run_cli(["calls", "unfinished"], env)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "3 calls with no ending:"
    assert [line.split()[0] for line in lines[1:]] == [sid(1), sid(2), sid(3)]  # oldest first
    assert "In progress" in lines[1] and "over two days old" in lines[1]
    assert "waited in a queue: look it up in Twilio's call logs" in lines[2]
    assert "No answer" in lines[3] and "the scheduler asks Twilio about it every 5 minutes" in lines[3]

    yesterday = (now - timedelta(days=1)).astimezone(ZoneInfo("Europe/London")).date().isoformat()
    listed = run_cli(["calls", "unfinished", "--since", yesterday], env)
    assert listed.exit_code == 0 and listed.output.splitlines()[0] == f"2 calls with no ending since " \
        f"{datetime.fromisoformat(yesterday):%d %b %Y}:"
    assert run_cli(["calls", "unfinished", "--since", "2026-13-01"], env).exit_code == 2


def test_helpdesk_calls_unfinished_says_a_recent_call_is_not_asked_about_yet(migrated_url, tmp_path):
    from helpdesk.config import load_settings
    from helpdesk.voice.journal import record_event
    from tests.integration.test_scheduler import write_config

    now = datetime.now(timezone.utc).replace(microsecond=0)
    database = Database(migrated_url)
    try:
        with database.connection() as connection:
            record_event(connection, make_settings(), kind="incoming", path="/twilio/voice/incoming",
                         params=list(inbound(sid(7)).items()), received_at=now - timedelta(minutes=2),
                         decision="agents")
    finally:
        database.dispose()
    env = cli_env(migrated_url, write_config(tmp_path / "helpdesk.toml"))
    after = load_settings(tmp_path / "helpdesk.toml").webhooks.reconcile_after_minutes
    assert after > 2
    result = run_cli(["calls", "unfinished"], env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].endswith(
        f"arrived under {after} minutes ago: not asked yet, as its last webhooks may still come")


def test_helpdesk_calls_unfinished_ask_twilio_needs_credentials(migrated_url, tmp_path):
    from tests.integration.test_scheduler import write_config

    env = cli_env(migrated_url, write_config(tmp_path / "helpdesk.toml"))
    result = run_cli(["calls", "unfinished", "--ask-twilio"], env)
    assert result.exit_code == 1
    assert "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment to ask Twilio" in result.output


@pytest.mark.usefixtures("local_no_proxy")
def test_helpdesk_calls_unfinished_ask_twilio_finishes_calls_of_any_age(migrated_url, tmp_path, stub):
    from tests.integration.test_scheduler import write_config

    now = datetime.now(timezone.utc).replace(microsecond=0)
    store_calls(migrated_url, now)
    old = now - timedelta(days=3)
    calls = f"/2010-04-01/Accounts/AC{'0' * 32}/Calls"
    call = {"sid": sid(1), "parent_call_sid": None, "status": "completed", "from": "+447700900123",
            "to": "+448001217479", "start_time": format_datetime(old),
            "end_time": format_datetime(old + timedelta(seconds=25)), "duration": "25", "direction": "inbound"}
    stub.answers = {
        f"{calls}/{sid(1)}.json": (200, json.dumps(call)),
        f"{calls}.json?ParentCallSid={sid(1)}&PageSize=100": (200, json.dumps({"calls": [], "page": 0,
                                                                              "page_size": 100})),
    }
    stub.status, stub.body = 404, json.dumps({"code": 20404, "status": 404})  # Twilio does not know call 3
    env = {**cli_env(migrated_url, write_config(tmp_path / "helpdesk.toml")), "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
           "TWILIO_AUTH_TOKEN": "token", "TWILIO_API_BASE_URL": stub.url}

    result = run_cli(["calls", "unfinished", "--ask-twilio"], env)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Unfinished calls: asked Twilio about 2; 1 ended, 0 still live, 1 unknown to Twilio."
    assert lines[1] == "2 calls with no ending:"
    assert [line.split()[0] for line in lines[2:]] == [sid(2), sid(3)]
    assert re.search(r"; asked \d\d \w{3} \d\d:\d\d: Twilio did not know it \(another account's call, or deleted\)$",
                     lines[3]), lines[3]
    assert "asked" not in lines[2]
    assert f"{calls}/{sid(2)}.json" not in stub.paths  # the queued call is never asked about
    database = Database(migrated_url)
    try:
        with database.session() as session:
            finished = session.scalars(select(Call).where(Call.call_sid == sid(1))).one()
    finally:
        database.dispose()
    assert (finished.outcome, finished.ended_at, finished.from_api) == ("abandoned", old + timedelta(seconds=25), True)
