"""Calls that never reached the app, found in Twilio's call log and stored (SQLite and PostgreSQL)."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from callbacks.scheduler import ReconcileJob, SweepJob, scheduled_jobs
from helpdesk.config import ConfigError
from helpdesk.db import Database
from helpdesk.models import Call, Callback, TwilioEvent
from helpdesk.models.event import FOUND_IN_LOG
from helpdesk.voice.lookup import CallFacts, FakeCallLookup, LookupFailed
from helpdesk.voice.missed import find_missed
from helpdesk.voice.projection import API_LOG
from tests.integration.compliance_data import add_call
from tests.integration.conftest import OPEN_TIME, make_settings
from tests.integration.test_metrics_endpoint import scrape, value
from tests.integration.test_reconcile import cli_env, run_cli
from tests.integration.twilio_requests import inbound, post, sid

DESK = "+448001217479"  # the help desk's Twilio number (as twilio_requests.inbound calls it)
OTHER = "+448001217000"  # another number on the same Twilio account
CALLER = "+447700900123"
LEG = sid(950)
SATURDAY = datetime(2026, 11, 28, 11, 0, tzinfo=timezone.utc)
LATER = OPEN_TIME + timedelta(hours=1)


@pytest.fixture
def settings():
    return make_settings(webhooks={"twilio_numbers": [DESK]})


def logged(call_sid: str, *, status: str = "completed", start: datetime = OPEN_TIME, seconds: int | None = 8,
           to: str = DESK, direction: str = "inbound") -> CallFacts:
    """A call as Twilio's call log lists it: with the app down, Twilio answered it with its error message."""
    return CallFacts(sid=call_sid, parent_sid=None, status=status, start_time=start,
                     end_time=start + timedelta(seconds=seconds) if seconds is not None else None,
                     duration=str(seconds) if seconds is not None else None, from_=CALLER, to=to, direction=direction,
                     updated=start + timedelta(seconds=seconds or 0))


def find(app, lookup, now=LATER, since=OPEN_TIME - timedelta(hours=1), until=None):
    return find_missed(app.extensions["helpdesk.db"], app.extensions["helpdesk.settings"], lookup,
                       since=since, until=until or now - timedelta(minutes=5), now=now)


def the_call(app, n: int) -> Call | None:
    with app.extensions["helpdesk.db"].session() as session:
        return session.scalars(select(Call).where(Call.call_sid == sid(n))).one_or_none()


def count(app, model, *where) -> int:
    with app.extensions["helpdesk.db"].session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_a_call_the_app_never_heard_of_is_stored_as_failed_and_owes_a_callback(app, caplog):
    lookup = FakeCallLookup()
    lookup.add(logged(sid(1)))

    with caplog.at_level(logging.WARNING, logger="helpdesk.voice.missed"):
        report = find(app, lookup)

    assert (report.listed, [call.sid for call in report.found], report.live, report.stopped) == (1, [sid(1)], 0, None)
    call = the_call(app, 1)
    assert (call.outcome, call.in_hours, call.countable, call.sla_result) == ("failed", True, True, "breached")
    assert (call.arrived_at, call.ended_at) == (OPEN_TIME, OPEN_TIME + timedelta(seconds=8))
    assert (call.incoming_seen, call.from_api, call.caller_number) == (False, True, CALLER)
    assert call.enquiry_id is not None
    with app.extensions["helpdesk.db"].session() as session:
        callback = session.scalars(select(Callback)).one()
    assert (callback.call_sid, callback.reason, callback.status) == (sid(1), "failed", "open")
    assert callback.owed_from == OPEN_TIME  # from when they called, as for any missed call
    assert f"{sid(1)} to {DESK} never reached the app" in caplog.text
    assert CALLER not in caplog.text  # nothing personal in the log


def test_calls_the_app_heard_of_are_left_as_they_are(app, client, clock):
    clock.now = OPEN_TIME
    assert post(client, "/twilio/voice/incoming", inbound(sid(2))).status_code == 200
    before = the_call(app, 2)
    lookup = FakeCallLookup()
    lookup.add(logged(sid(2)))

    report = find(app, lookup)

    assert (report.listed, report.found) == (1, [])
    after = the_call(app, 2)
    assert (after.outcome, after.incoming_seen, after.from_api) == (before.outcome, True, False)
    assert count(app, TwilioEvent, TwilioEvent.kind == "api_log") == 0


def test_a_call_still_going_on_is_left_for_a_later_run_and_stored_once(app):
    lookup = FakeCallLookup()
    lookup.add(logged(sid(3), status="in-progress", seconds=None))
    assert (find(app, lookup).live, the_call(app, 3)) == (1, None)

    lookup.add(logged(sid(3), seconds=40))
    assert [call.sid for call in find(app, lookup).found] == [sid(3)]
    assert find(app, lookup).found == []  # heard of now: a second run stores nothing
    assert count(app, TwilioEvent, TwilioEvent.call_sid == sid(3)) == 1
    assert the_call(app, 3).ended_at == OPEN_TIME + timedelta(seconds=40)


def test_a_call_missed_while_the_desk_was_closed_is_stored_but_not_counted(app):
    lookup = FakeCallLookup()
    lookup.add(logged(sid(4), start=SATURDAY))

    find(app, lookup, now=SATURDAY + timedelta(hours=1), since=SATURDAY - timedelta(hours=1))

    call = the_call(app, 4)
    assert (call.outcome, call.in_hours, call.countable, call.sla_result) == ("failed", False, False, None)


def test_an_agent_leg_that_answered_makes_it_answered_in_so_many_rings(app):
    lookup = FakeCallLookup()
    lookup.add(logged(sid(5), seconds=120),
               CallFacts(sid=LEG, parent_sid=sid(5), status="completed", start_time=OPEN_TIME + timedelta(seconds=1),
                         end_time=OPEN_TIME + timedelta(seconds=119), duration="107", from_=DESK,
                         to="+447700900001", direction="outbound-dial"))

    find(app, lookup)

    call = the_call(app, 5)
    assert (call.outcome, call.answer_seconds, call.rings, call.sla_result) == ("answered", 12.0, 5, "met")
    assert (call.agent_leg_sid, call.incoming_seen) == (LEG, False)
    assert count(app, Callback) == 0


def test_only_inbound_calls_to_the_desks_numbers_in_the_period_are_taken(app):
    lookup = FakeCallLookup()
    lookup.add(logged(sid(6), to=OTHER),  # another service on the same account
               logged(sid(7), direction="outbound-api"),  # a call placed from the number, not to it
               logged(sid(8), start=OPEN_TIME - timedelta(hours=2)),  # before the period
               logged(sid(9)))

    report = find(app, lookup)

    assert (report.listed, [call.sid for call in report.found]) == (1, [sid(9)])
    assert [number for number, _, _ in lookup.asked_log] == [DESK]
    assert [the_call(app, n) is None for n in (6, 7, 8, 9)] == [True, True, True, False]


def test_twilio_unreachable_stops_the_run_and_nothing_is_lost(app):
    lookup = FakeCallLookup()
    lookup.add(logged(sid(10)))
    lookup.fail = LookupFailed("the calls to +448001217479: could not reach Twilio (ConnectionError)",
                               unreachable=True)

    report = find(app, lookup)

    assert (report.found, report.stopped) == ([], "the calls to +448001217479: could not reach Twilio (ConnectionError)")
    assert the_call(app, 10) is None
    lookup.fail = None
    assert [call.sid for call in find(app, lookup).found] == [sid(10)]


def test_no_numbers_configured_means_nothing_is_asked(migrated_url):
    database = Database(migrated_url)
    try:
        lookup = FakeCallLookup()
        lookup.add(logged(sid(11)))
        report = find_missed(database, make_settings(), lookup, since=OPEN_TIME - timedelta(hours=1), until=LATER,
                             now=LATER)
    finally:
        database.dispose()
    assert (report.listed, report.found, lookup.asked_log) == (0, [], [])


def test_the_scheduler_looks_over_the_last_two_days_once_webhooks_have_had_time(migrated_url, settings):
    job = SweepJob(settings=settings, database=Database(migrated_url), clock=lambda: LATER)
    lookup = FakeCallLookup()
    lookup.add(logged(sid(12)), logged(sid(13), start=LATER - timedelta(minutes=3)))
    reconciler = next(each for each in scheduled_jobs(job, lookup=lookup) if isinstance(each, ReconcileJob))

    run = reconciler()

    assert run.held and not run.failed
    assert [call.sid for call in run.result[2].found] == [sid(12)]  # sid(13) is left to its webhooks for now
    assert lookup.asked_log == [(DESK, LATER - timedelta(days=2), LATER - timedelta(minutes=15))]
    reconciler.release()


def test_later_runs_look_from_where_the_last_one_finished_or_from_a_call_still_going_on(migrated_url, settings):
    now = [LATER]
    job = SweepJob(settings=settings, database=Database(migrated_url), clock=lambda: now[0])
    lookup = FakeCallLookup()
    lookup.add(logged(sid(14), status="in-progress", seconds=None, start=LATER - timedelta(minutes=30)))
    reconciler = next(each for each in scheduled_jobs(job, lookup=lookup) if isinstance(each, ReconcileJob))

    assert reconciler().result[2].live == 1
    now[0] = LATER + timedelta(minutes=5)
    reconciler()
    now[0] = LATER + timedelta(minutes=10)
    lookup.add(logged(sid(14), seconds=600, start=LATER - timedelta(minutes=30)))
    assert [call.sid for call in reconciler().result[2].found] == [sid(14)]
    now[0] = LATER + timedelta(minutes=15)
    reconciler()

    assert [since for _, since, _ in lookup.asked_log] == [
        LATER - timedelta(days=2),  # the first run looks two days back
        LATER - timedelta(minutes=30), LATER - timedelta(minutes=30),  # then from the call still going on
        LATER - timedelta(minutes=5)]  # once it is stored, from where the last run finished
    reconciler.release()


@pytest.mark.parametrize("numbers, message", [
    (["0800 121 7479"], "twilio_numbers has '0800 121 7479', which is not a whole number in international form"),
    ([DESK, DESK], f"twilio_numbers has '{DESK}' twice"),
])
def test_the_desks_numbers_are_checked(numbers, message):
    with pytest.raises(ConfigError) as refused:
        make_settings(webhooks={"twilio_numbers": numbers})
    assert f"test.toml: webhooks.{message}" in str(refused.value)


# --------------------------------------------------------------------------- helpdesk calls missed


def config_with_numbers(path, numbers=(DESK,)):
    from tests.integration.test_scheduler import write_config

    write_config(path)
    path.write_text(path.read_text() + f"\n[webhooks]\ntwilio_numbers = {json.dumps(list(numbers))}\n")
    return path


def test_helpdesk_calls_missed_needs_the_numbers_and_credentials(migrated_url, tmp_path):
    from tests.integration.test_scheduler import write_config

    env = cli_env(migrated_url, write_config(tmp_path / "plain.toml"))
    result = run_cli(["calls", "missed", "--since", "2026-11-24"], env)
    assert result.exit_code == 1 and "set [webhooks] twilio_numbers" in result.output

    env = cli_env(migrated_url, config_with_numbers(tmp_path / "numbers.toml"))
    result = run_cli(["calls", "missed", "--since", "2026-11-24"], env)
    assert result.exit_code == 1
    assert "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment to ask Twilio" in result.output
    assert run_cli(["calls", "missed"], env).exit_code == 2  # --since is required


def two_logged_calls_on_two_pages(stub) -> None:
    """The stand-in API lists two calls to the desk on 24 November, a page each; no call has legs."""
    start = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
    calls = f"/2010-04-01/Accounts/AC{'0' * 32}/Calls"

    def listed(n, page, next_page):
        call = {"sid": sid(n), "parent_call_sid": None, "status": "completed", "from": CALLER, "to": DESK,
                "start_time": format_datetime(start + timedelta(minutes=n)),
                "end_time": format_datetime(start + timedelta(minutes=n, seconds=6)), "duration": "6",
                "direction": "inbound"}
        return 200, json.dumps({"calls": [call], "page": page, "page_size": 1, "next_page_uri": next_page})

    def route(path):  # every page of the period's list; each leg list is empty (the default)
        query = parse_qs(urlsplit(path).query)
        if "To" not in query:
            return None
        return listed(2, 1, None) if query.get("Page") == ["1"] else listed(1, 0, f"{calls}.json?To=x&Page=1")

    stub.route = route
    stub.status, stub.body = 200, json.dumps({"calls": [], "page": 0, "page_size": 100})


def missed_env(migrated_url, tmp_path, stub) -> dict[str, str]:
    return {**cli_env(migrated_url, config_with_numbers(tmp_path / "helpdesk.toml")),
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token", "TWILIO_API_BASE_URL": stub.url}


@pytest.mark.usefixtures("local_no_proxy")
def test_helpdesk_calls_missed_stores_the_calls_of_those_days_from_every_page_of_the_log(migrated_url, tmp_path,
                                                                                        stub):
    two_logged_calls_on_two_pages(stub)
    env = missed_env(migrated_url, tmp_path, stub)

    result = run_cli(["calls", "missed", "--since", "2026-11-24", "--until", "2026-11-24"], env)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("Looked in Twilio's call log from Tue 24 Nov 2026 00:00 GMT to Tue 24 Nov 2026 23:59 GMT: "
                        f"2 calls to {DESK}.")
    assert lines[1:] == ["2 never reached the app, and are now stored from the log:",
                         f"  {sid(1)}  Tue 24 Nov 2026 10:01 GMT", f"  {sid(2)}  Tue 24 Nov 2026 10:02 GMT"]
    pages = [path for path in stub.paths if "To=" in path]
    assert len(pages) == 2 and "Page=1" in pages[1]
    query = parse_qs(urlsplit(pages[0]).query)
    # StartTime< a day later: should Twilio read it as a date, the last day is still listed.
    assert (query["To"], query["StartTime>"], query["StartTime<"], query["PageSize"]) == (
        [DESK], ["2026-11-24T00:00:00Z"], ["2026-11-25T23:59:59Z"], ["1000"])
    database = Database(migrated_url)
    try:
        with database.session() as session:
            stored = session.scalars(select(Call).order_by(Call.call_sid)).all()
    finally:
        database.dispose()
    assert [(call.call_sid, call.outcome, call.countable, call.sla_result) for call in stored] == [
        (sid(1), "failed", True, "breached"), (sid(2), "failed", True, "breached")]

    again = run_cli(["calls", "missed", "--since", "2026-11-24", "--until", "2026-11-24"], env)
    assert again.exit_code == 0 and again.output.splitlines()[1] == "None of them is new: 2 were stored from the log before."
    later = run_cli(["calls", "missed", "--since", "2026-11-24", "--until", "9998-12-31"], env)  # up to today
    assert later.exit_code == 0 and "None of them is new: 2 were stored from the log before." in later.output


@pytest.mark.usefixtures("local_no_proxy")
def test_helpdesk_calls_missed_names_the_calls_it_stored_before_the_database_failed(migrated_url, tmp_path, stub,
                                                                                     monkeypatch):
    import helpdesk.voice.missed as missed

    two_logged_calls_on_two_pages(stub)
    env = missed_env(migrated_url, tmp_path, stub)
    store, stored = missed._store, []

    def fails_the_second_time(database, *args):
        if stored:
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        stored.append(store(database, *args))
        return stored[-1]

    monkeypatch.setattr(missed, "_store", fails_the_second_time)
    result = run_cli(["calls", "missed", "--since", "2026-11-24", "--until", "2026-11-24"], env)

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Before the database failed, 1 call that never reached the app had been stored from the log:",
        f"  {sid(1)}  Tue 24 Nov 2026 10:01 GMT",
        "Error: database error: server closed the connection unexpectedly. Run it again once the database is "
        "back: what was stored stays stored."]
    monkeypatch.setattr(missed, "_store", store)
    again = run_cli(["calls", "missed", "--since", "2026-11-24", "--until", "2026-11-24"], env)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[1:] == ["1 never reached the app, and is now stored from the log:",
                                             f"  {sid(2)}  Tue 24 Nov 2026 10:02 GMT"]


def test_the_evidence_pack_shows_a_call_found_in_the_log_as_a_breach_with_its_arrival_from_twilio(app, migrated_url,
                                                                                                  client, clock):
    from datetime import date

    from metrics.evidence.fields import Redactor
    from metrics.evidence.rows import CALL_COLUMNS, call_rows
    from metrics.evidence.snapshot import snapshot
    from metrics.periods import date_range_period

    lookup = FakeCallLookup()
    lookup.add(logged(sid(15)), logged(sid(16), start=OPEN_TIME + timedelta(minutes=1)))
    find(app, lookup)
    clock.now = OPEN_TIME + timedelta(minutes=1)  # a spool replays one's webhook: it reached the app, late
    assert post(client, "/twilio/voice/incoming", inbound(sid(16))).status_code == 200
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        # Heard arriving, its ending read from Twilio's REST API: not found in the log.
        add_call(session, OPEN_TIME + timedelta(minutes=5), outcome="no_answer").from_api = True

    period = date_range_period(date(2026, 11, 24), date(2026, 11, 24))
    with snapshot(migrated_url) as connection:
        header, rows = call_rows(connection, period.start, period.end, Redactor("masked"))
        row, replayed, finished = (dict(zip(header, line)) for line in rows)
    assert header == CALL_COLUMNS
    assert (row["call_sid"], row["arrived"], row["outcome"], row["counted"], row["ten_ring_result"]) == (
        sid(15), "2026-11-24T10:00:00.000+00:00", "failed", "yes", "breached")
    assert (row["from_twilio_api"], row["arrival_estimated"], row["found_in_call_log"], row["answered"]) == (
        "yes", "yes", "yes", "")
    assert (finished["from_twilio_api"], finished["arrival_estimated"], finished["found_in_call_log"]) == (
        "yes", "no", "no")
    assert (replayed["call_sid"], replayed["arrival_estimated"], replayed["found_in_call_log"]) == (sid(16), "no", "no")


@pytest.mark.usefixtures("local_no_proxy")
def test_helpdesk_scheduler_once_says_what_it_found_in_the_call_log(migrated_url, tmp_path, stub):
    from click.testing import CliRunner

    from helpdesk.cli import main

    started = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=40)
    call = {"sid": sid(16), "parent_call_sid": None, "status": "completed", "from": CALLER, "to": DESK,
            "start_time": format_datetime(started), "end_time": format_datetime(started + timedelta(seconds=5)),
            "duration": "5", "direction": "inbound"}

    def route(path):
        query = parse_qs(urlsplit(path).query)
        if "To" in query:
            return 200, json.dumps({"calls": [call], "page": 0, "page_size": 1000, "next_page_uri": None})
        return 200, json.dumps({"calls": [], "page": 0, "page_size": 100})  # its legs: none

    stub.route = route
    env = {**cli_env(migrated_url, config_with_numbers(tmp_path / "helpdesk.toml")),
           "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token", "TWILIO_API_BASE_URL": stub.url}

    result = CliRunner().invoke(main, ["scheduler", "--once"], env=env)

    assert result.exit_code == 0, result.output
    assert "Twilio's call log: 1 call to the help desk; 1 never reached the app and is now stored." in result.output
    again = CliRunner().invoke(main, ["scheduler", "--once"], env=env)
    assert "Twilio's call log: 1 call to the help desk, none new." in again.output

    stub.route = None
    stub.status, stub.body = 500, json.dumps({"code": 20500, "status": 500})
    failing = CliRunner().invoke(main, ["scheduler", "--once"], env=env)
    assert "Twilio's call log: stopped early: the calls to +448001217479: Twilio answered HTTP 500" in failing.output


# --------------------------------------------------------------------------- what the walkthrough found


def test_a_call_whose_webhook_is_stored_while_its_legs_are_asked_about_is_left_to_its_webhooks(app, client, clock):
    class WebhookMeanwhile(FakeCallLookup):
        def legs(self, parent_sid):
            clock.now = OPEN_TIME  # a spool replays the call's webhook while Twilio is being asked
            assert post(client, "/twilio/voice/incoming", inbound(parent_sid)).status_code == 200
            return super().legs(parent_sid)

    lookup = WebhookMeanwhile()
    lookup.add(logged(sid(20)))

    report = find(app, lookup)

    assert report.found == []
    call = the_call(app, 20)
    assert (call.incoming_seen, call.from_api) == (True, False)
    assert count(app, TwilioEvent, TwilioEvent.kind == "api_log") == 0


def test_a_call_and_its_legs_are_stored_together_or_not_at_all(app, monkeypatch):
    import helpdesk.voice.journal as journal
    from sqlalchemy.exc import OperationalError

    lookup = FakeCallLookup()
    lookup.add(logged(sid(21), seconds=120),
               CallFacts(sid=LEG, parent_sid=sid(21), status="completed", start_time=OPEN_TIME + timedelta(seconds=1),
                         end_time=OPEN_TIME + timedelta(seconds=119), duration="107", from_=DESK,
                         to="+447700900001", direction="outbound-dial"))
    refresh = journal._refresh

    def locked(connection, sql, settings, row, call_sid, now):
        # The database gives way once the call's own entry is in: its legs alone must not stay.
        if any(event.kind == "api_log" for event in journal.load_events(connection, call_sid)):
            raise OperationalError("UPDATE calls", {}, Exception("database is locked"))
        return refresh(connection, sql, settings, row, call_sid, now=now)

    monkeypatch.setattr(journal, "_refresh", locked)
    with pytest.raises(OperationalError):
        find(app, lookup)
    assert count(app, TwilioEvent) == 0 and the_call(app, 21) is None

    monkeypatch.setattr(journal, "_refresh", refresh)
    assert [call.sid for call in find(app, lookup).found] == [sid(21)]
    call = the_call(app, 21)
    assert (call.arrived_at, call.outcome, call.rings) == (OPEN_TIME, "answered", 5)


def test_a_call_twilio_gives_no_usable_legs_for_is_left_for_later_and_the_others_are_stored(app):
    class BadLegs(FakeCallLookup):
        def legs(self, parent_sid):
            if parent_sid == sid(22):
                raise LookupFailed(f"the legs of call {sid(22)}: Twilio's answer could not be read (JSONDecodeError)")
            return super().legs(parent_sid)

    lookup = BadLegs()
    lookup.add(logged(sid(22)), logged(sid(23), start=OPEN_TIME + timedelta(minutes=1)))

    report = find(app, lookup)

    assert ([call.sid for call in report.found], report.failed, report.stopped) == ([sid(23)], 1, None)
    assert report.hold_from == OPEN_TIME  # the next look starts from the call left behind
    assert the_call(app, 22) is None


def test_a_call_listed_twice_is_counted_and_stored_once(app):
    class TwoPages(FakeCallLookup):
        def calls_to(self, number, started_after, started_before):
            listed = super().calls_to(number, started_after, started_before)
            return listed + listed  # the same call on two pages

    lookup = TwoPages()
    lookup.add(logged(sid(24)))

    report = find(app, lookup)

    assert (report.listed, [call.sid for call in report.found]) == (1, [sid(24)])


def test_helpdesk_calls_missed_refuses_a_future_day_and_says_when_twilio_refused_the_credentials(migrated_url, tmp_path,
                                                                                              stub):
    env = {**cli_env(migrated_url, config_with_numbers(tmp_path / "helpdesk.toml")),
           "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token", "TWILIO_API_BASE_URL": stub.url}
    future = (datetime.now(timezone.utc) + timedelta(days=3)).date().isoformat()
    result = run_cli(["calls", "missed", "--since", future], env)
    assert result.exit_code == 1 and f"--since {future} is in the future" in result.output

    stub.status, stub.body = 401, json.dumps({"code": 20003, "message": "Authenticate", "status": 401})
    result = run_cli(["calls", "missed", "--since", "2026-11-24"], env)
    assert result.exit_code == 1 and "Looked in" not in result.output
    assert "Twilio did not take the credentials; check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in result.output
    assert "Traceback" not in result.output


def test_the_queue_says_a_callers_call_never_reached_the_help_desk(app, client, clock):
    from tests.integration.test_queue_page import PASSWORD, add_agent
    from tests.integration.test_users_and_login import sign_in

    lookup = FakeCallLookup()
    lookup.add(logged(sid(25)))
    find(app, lookup)  # at 11:00
    clock.now = LATER + timedelta(minutes=5)
    add_agent(app, "alice", "Alice Agent")
    assert sign_in(client, "alice", PASSWORD).status_code == 302

    page = client.get("/queue").get_data(as_text=True)

    assert "Failed call" in page
    assert ("Never reached the help desk: found in Twilio's call log at <time datetime=\"2026-11-24T11:00:00+00:00\">"
            "11:00 today</time>. The caller may have heard an error message.") in page


def test_a_call_another_process_stored_from_the_log_meanwhile_counts_as_stored_before_not_reached(app):
    class OtherProcessFirst(FakeCallLookup):
        def legs(self, parent_sid):
            if not getattr(self, "nested", False):  # the scheduler stores it while the command asks
                self.nested = True
                find(app, FakeCallLookup(calls=dict(self.calls)))
            return super().legs(parent_sid)

    lookup = OtherProcessFirst()
    lookup.add(logged(sid(26)))

    report = find(app, lookup)

    assert (report.found, report.stored_before, report.reached) == ([], 1, 0)
    assert count(app, TwilioEvent, TwilioEvent.call_sid == sid(26)) == 1


def test_a_number_whose_calls_cannot_be_listed_leaves_the_others_looked_at_and_the_window_held(migrated_url):
    settings = make_settings(webhooks={"twilio_numbers": [OTHER, DESK]})

    class OtherUnlisted(FakeCallLookup):
        def calls_to(self, number, started_after, started_before):
            if number == OTHER:
                self.asked_log.append((number, started_after, started_before))
                raise LookupFailed(f"the calls to {OTHER}: Twilio's answer could not be read (JSONDecodeError)")
            return super().calls_to(number, started_after, started_before)

    lookup = OtherUnlisted()
    lookup.add(logged(sid(27)))
    job = SweepJob(settings=settings, database=Database(migrated_url), clock=lambda: LATER)
    reconciler = next(each for each in scheduled_jobs(job, lookup=lookup) if isinstance(each, ReconcileJob))

    missed = reconciler().result[2]

    assert ([call.sid for call in missed.found], missed.unlisted, missed.stopped) == ([sid(27)], [OTHER], None)
    assert reconciler.missed_from is None  # the next run looks over the same days again
    reconciler.release()


def test_credentials_twilio_refuses_for_a_calls_legs_stop_the_run(app):
    class Refused(FakeCallLookup):
        def legs(self, parent_sid):
            raise LookupFailed(f"the legs of call {parent_sid}: Twilio answered HTTP 401 (code 20003)", refused=True)

    lookup = Refused()
    lookup.add(logged(sid(28)), logged(sid(29), start=OPEN_TIME + timedelta(minutes=1)))

    report = find(app, lookup)

    assert (report.found, report.failed, report.refused) == ([], 0, True)


@pytest.mark.usefixtures("local_no_proxy")
def test_helpdesk_calls_missed_says_nothing_of_calls_it_did_not_look_at_and_fails_when_some_are_left(
        migrated_url, tmp_path, stub):
    start = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
    calls = [{"sid": sid(n), "parent_call_sid": None, "status": "completed", "from": CALLER, "to": DESK,
              "start_time": format_datetime(start + timedelta(minutes=n)),
              "end_time": format_datetime(start + timedelta(minutes=n, seconds=6)), "duration": "6",
              "direction": "inbound"} for n in (30, 31)]
    legs = {"status": 500, "body": json.dumps({"code": 20500, "status": 500})}

    def route(path):
        query = parse_qs(urlsplit(path).query)
        if "To" in query:
            return 200, json.dumps({"calls": calls, "page": 0, "page_size": 1000, "next_page_uri": None})
        return legs["status"], legs["body"]

    stub.route = route
    env = {**cli_env(migrated_url, config_with_numbers(tmp_path / "helpdesk.toml")),
           "TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "token", "TWILIO_API_BASE_URL": stub.url}
    args = ["calls", "missed", "--since", "2026-11-24", "--until", "2026-11-24"]

    stopped = run_cli(args, env)  # Twilio fails on the first call's legs: nothing is said of either call
    assert stopped.exit_code == 1 and "stopped early" in stopped.output
    assert "reached the app" not in stopped.output and "None of them" not in stopped.output

    legs["status"], legs["body"] = 200, "not json"  # unusable, but Twilio answers: each left for later
    left = run_cli(args, env)
    assert left.exit_code == 1
    assert ("2 calls left for a later look, as Twilio's answer about their agent legs could not be used."
            in left.output)
    assert "some calls are left for a later look (above): run this again later" in left.output


def test_metrics_count_the_calls_found_in_the_log_never_going_down_and_those_found_in_the_last_hour(app, client, clock):
    clock.now = OPEN_TIME
    assert post(client, "/twilio/voice/incoming", inbound(sid(60))).status_code == 200  # heard
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        # Heard arriving, its ending read from Twilio's REST API: it reached the app.
        add_call(session, OPEN_TIME, outcome="no_answer").from_api = True
    lookup = FakeCallLookup()
    for n in (61, 62):
        lookup.add(logged(sid(n), start=OPEN_TIME + timedelta(minutes=n - 60)))
    clock.now = LATER

    before = scrape(client)
    assert len(find(app, lookup).found) == 2
    after = scrape(client)
    # A spool replays one's webhook afterwards: it did reach the app, late, but was found.
    clock.now = OPEN_TIME + timedelta(minutes=1)
    assert post(client, "/twilio/voice/incoming", inbound(sid(61))).status_code == 200
    clock.now = LATER
    replayed = scrape(client)

    clock.now = LATER + timedelta(minutes=61)
    hour_later = scrape(client)

    assert value(before, "helpdesk_calls_found_in_twilio_log_total") == 0
    assert value(after, "helpdesk_calls_found_in_twilio_log_total") == 2
    assert value(after, "helpdesk_calls_total", outcome="failed", caller_type="unknown") == 2  # counted there too
    assert the_call(app, 61).incoming_seen
    assert value(replayed, "helpdesk_calls_found_in_twilio_log_total") == 2
    # What the alert reads: found in the last hour, by the database's clock of each find.
    assert [value(samples, "helpdesk_calls_found_in_twilio_log_last_hour")
            for samples in (before, after, replayed, hour_later)] == [0, 2, 2, 0]
    assert value(hour_later, "helpdesk_calls_found_in_twilio_log_total") == 2


def test_the_index_of_calls_found_in_the_log_names_the_kind_they_are_stored_as():
    assert FOUND_IN_LOG == f"kind = '{API_LOG}'"
