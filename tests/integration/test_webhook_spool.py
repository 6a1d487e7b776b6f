"""Webhooks while the database is unreachable: answered, kept in the spool, stored when it is back."""
from __future__ import annotations

import contextlib
import gc
import shutil
import socket
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.exc import ArgumentError

from helpdesk import db, db_watchdog
from helpdesk.cli import main
from helpdesk.db import Database
from helpdesk.migrate import upgrade
from helpdesk.models import Call, Callback, TwilioEvent
from helpdesk.spool import Spool, Unreachable
from helpdesk.voice.recovery import recovery_for, spool_entry, store_entry
from servers import own_postgres_server
from tests.integration.conftest import OPEN_TIME, FakeClock, make_app, make_settings
from tests.integration.outage import UNREACHABLE, bring_back, take_down, wait_until_stored
from tests.integration.twilio_requests import inbound, post, sid, stamp

pytestmark = pytest.mark.usefixtures("quick_retries")
RECORD_FIELDS = ("outcome", "rings", "answer_seconds", "sla_result", "in_hours", "countable", "caller_type",
                 "agent", "incoming_seen", "caller_number")


@pytest.fixture
def spool_dir(tmp_path):
    return tmp_path / "spool"


@pytest.fixture
def settings(spool_dir):
    return make_settings(webhooks={"spool_dir": str(spool_dir)})


def answered_call(client, clock, n):
    """An agent answers after 11 seconds; the call lasts 71. Returns the responses."""
    arrived = clock.now
    agent = {"CallSid": sid(900 + n), "ParentCallSid": sid(n), "To": "client:agent-1",
             "CallbackSource": "call-progress-events"}
    responses = [post(client, "/twilio/voice/incoming", inbound(sid(n)))]
    clock.advance(11)
    responses.append(post(client, "/twilio/voice/agent-status", {
        **agent, "CallStatus": "in-progress", "SequenceNumber": "2", "Timestamp": stamp(arrived + timedelta(seconds=11))}))
    clock.advance(60)
    responses.append(post(client, "/twilio/voice/dial-action", {
        "CallSid": sid(n), "DialCallStatus": "completed", "DialCallSid": sid(900 + n), "DialCallDuration": "60"}))
    responses.append(post(client, "/twilio/voice/status", {
        "CallSid": sid(n), "CallStatus": "completed", "CallDuration": "71",
        "Timestamp": stamp(arrived + timedelta(seconds=71))}))
    return responses


def read(database_url, query):
    database = Database(database_url)
    try:
        with database.session() as session:
            return query(session)
    finally:
        database.dispose()


def record(database_url, call_sid) -> dict:
    def query(session):
        call = session.scalars(select(Call).where(Call.call_sid == call_sid)).one()
        return {**{name: getattr(call, name) for name in RECORD_FIELDS}, "enquiry": call.enquiry_id is not None,
                "events": session.scalar(select(func.count()).where(TwilioEvent.call_sid == call_sid))}
    return read(database_url, query)


def test_while_the_database_is_down_calls_are_answered_kept_and_stored_when_it_is_back(
        app, client, clock, settings, spool_dir, migrated_url, caplog):
    stored_at_once = answered_call(client, clock, 1)
    assert not Spool(spool_dir).has_waiting()

    take_down(app, migrated_url)
    clock.advance(600)
    kept = answered_call(client, clock, 2)
    # The caller notices nothing: the same answers as when the database is up.
    assert [r.status_code for r in kept] == [r.status_code for r in stored_at_once] == [200, 204, 200, 204]
    assert ET.fromstring(kept[0].data).find("Dial") is not None
    assert ET.fromstring(kept[2].data).find("Hangup") is not None
    spool = Spool(spool_dir)
    assert spool.counts()["waiting"] >= 1  # the retries cannot store any while it is down
    assert "kept in the spool" in caplog.text and "STORING FAILED" not in caplog.text
    assert "+447700900123" not in caplog.text  # no caller's number in the log

    bring_back(app, migrated_url)
    wait_until_stored(settings)
    assert spool.counts() == {"waiting": 0, "unstored": 0, "unreadable": 0}
    # The same record as the call stored at once: answered after 11 s, 4 rings, met.
    assert record(migrated_url, sid(2)) == record(migrated_url, sid(1))
    assert record(migrated_url, sid(2))["outcome"] == "answered"
    leg = read(migrated_url, lambda s: s.scalar(select(Call.agent_leg_sid).where(Call.call_sid == sid(2))))
    assert leg == sid(902)
    arrived = read(migrated_url, lambda s: s.scalar(select(Call.arrived_at).where(Call.call_sid == sid(2))))
    assert arrived == OPEN_TIME + timedelta(seconds=71 + 600)  # when Twilio sent it, not when it was stored


def test_a_call_missed_while_the_database_was_down_is_owed_a_callback_once_it_is_back(
        app, client, clock, settings, spool_dir, migrated_url):
    take_down(app, migrated_url)
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(3)))
    clock.advance(20)
    response = post(client, "/twilio/voice/status", {"CallSid": sid(3), "CallStatus": "completed",
                                                     "CallDuration": "20", "Timestamp": stamp(arrived + timedelta(seconds=20))})
    assert response.status_code == 204
    bring_back(app, migrated_url)
    wait_until_stored(settings)
    assert record(migrated_url, sid(3))["outcome"] == "abandoned"
    owed = read(migrated_url, lambda s: s.scalars(select(Callback).where(Callback.call_sid == sid(3))).all())
    assert len(owed) == 1


def test_webhooks_go_on_being_answered_when_neither_the_database_nor_the_spool_can_take_them(
        app, client, migrated_url, tmp_path, caplog):
    (tmp_path / "a-file").write_text("")
    app.extensions["helpdesk.settings"] = make_settings(webhooks={"spool_dir": str(tmp_path / "a-file" / "spool")})
    take_down(app, migrated_url)
    response = post(client, "/twilio/voice/incoming", inbound(sid(4)))
    assert response.status_code == 200 and ET.fromstring(response.data).find("Dial") is not None
    assert "STORING FAILED" in caplog.text
    # Nothing to answer with but a status: say it was not stored, so it shows in Twilio's debugger.
    status = post(client, "/twilio/voice/status", {"CallSid": sid(4), "CallStatus": "completed"})
    assert status.status_code == 503
    # An agent's phone in queue mode is still put through to the queue.
    taken = post(client, "/twilio/voice/agent-dequeue", {"CallSid": sid(902), "From": "client:alice"})
    assert taken.status_code == 200 and ET.fromstring(taken.data).find("Dial/Queue") is not None


def test_an_agents_dequeue_while_the_database_is_down_is_kept_and_names_the_phone_once_back(
        app, client, clock, settings, spool_dir, migrated_url):
    app.extensions["helpdesk.settings"] = settings = make_settings(routing={"mode": "queue"},
                                                                   webhooks={"spool_dir": str(spool_dir)})
    take_down(app, migrated_url)
    post(client, "/twilio/voice/incoming", inbound(sid(7)))
    clock.advance(12)
    taken = post(client, "/twilio/voice/agent-dequeue", {"CallSid": sid(902), "From": "client:alice"})
    assert taken.status_code == 200 and ET.fromstring(taken.data).find("Dial/Queue") is not None
    post(client, "/twilio/voice/dequeue", {"CallSid": sid(7), "QueueTime": "12", "DequeingCallSid": sid(902)})
    bring_back(app, migrated_url)
    wait_until_stored(settings)
    assert read(migrated_url, lambda s: s.execute(select(Call.agent_leg_sid, Call.agent)).all()) == [
        (sid(902), "client:alice")]  # and no call of the agent's own


def test_an_agents_pin_while_the_database_is_down_puts_the_phone_through_and_is_kept_without_the_pin(
        app, client, settings, spool_dir, migrated_url):
    app.extensions["helpdesk.settings"] = settings = make_settings(routing={"mode": "queue", "agents_pin": True},
                                                                   webhooks={"spool_dir": str(spool_dir)})
    take_down(app, migrated_url)
    agents_call = {"CallSid": sid(902), "From": "+447700900555", "To": "+441234000999"}
    for path, params in (("/twilio/voice/agent-dequeue", agents_call),
                         ("/twilio/voice/agent-pin?try=1", {**agents_call, "Digits": "2580"})):
        taken = post(client, path, params)
        assert taken.status_code == 200 and ET.fromstring(taken.data).find("Dial/Queue") is not None
    assert "2580" not in "".join(path.read_text() for path in spool_dir.rglob("*") if path.is_file())
    bring_back(app, migrated_url)
    wait_until_stored(settings)
    stored = read(migrated_url, lambda s: s.execute(select(TwilioEvent.kind, TwilioEvent.params)
                                                    .order_by(TwilioEvent.id)).all())
    assert [kind for kind, _ in stored] == ["agent_dequeue", "agents_pin"]
    assert all("2580" not in params and "Digits" not in params for _, params in stored)


def test_a_spooled_event_stored_twice_is_journalled_once(app, settings, migrated_url):
    entry = spool_entry(kind="incoming", path="/twilio/voice/incoming", params=list(inbound(sid(5)).items()),
                        received_at=OPEN_TIME, call_sid=sid(5), idempotency_token=None, decision="agents")
    database = app.extensions["helpdesk.db"]
    store_entry(database, settings, entry)
    store_entry(database, settings, entry)  # a drain that stopped after storing it reads it again
    assert record(migrated_url, sid(5))["events"] == 1


def test_a_callback_leg_event_is_kept_and_stored_in_the_journal_only(app, settings, migrated_url):
    entry = spool_entry(kind="callback_status", path="/twilio/voice/callback-status?callback=7",
                        params=[("CallSid", sid(6)), ("CallStatus", "ringing")], received_at=OPEN_TIME,
                        call_sid=sid(6), idempotency_token=None, decision=None, journal="only")
    store_entry(app.extensions["helpdesk.db"], settings, entry)
    assert read(migrated_url, lambda s: s.scalars(select(TwilioEvent.kind).where(TwilioEvent.call_sid == sid(6))).all()) \
        == ["callback_status"]
    assert read(migrated_url, lambda s: s.scalar(select(func.count()).select_from(Call))) == 0


def _spooled_call(spool_dir, n):
    spool = Spool(spool_dir)
    for kind, path, params in (
            ("incoming", "/twilio/voice/incoming", inbound(sid(n))),
            ("status", "/twilio/voice/status", {"CallSid": sid(n), "CallStatus": "no-answer",
                                                "Timestamp": stamp(OPEN_TIME + timedelta(seconds=40))})):
        spool.put(spool_entry(kind=kind, path=path, params=list(params.items()), received_at=OPEN_TIME,
                              call_sid=sid(n), idempotency_token=None, decision=None))


def test_the_replay_command_stores_what_waits_and_says_how_much(migrated_url, spool_dir, tmp_path):
    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\ntuesday = ["08:00-18:00"]\n\n[webhooks]\nspool_dir = "{spool_dir}"\n')
    _spooled_call(spool_dir, 7)
    runner = CliRunner()
    down = runner.invoke(main, ["webhooks", "replay"], env={"DATABASE_URL": UNREACHABLE["sqlite"],
                                                            "HELPDESK_CONFIG": str(config)})
    assert down.exit_code == 1 and "The spool's webhooks are left where they are." in down.output
    assert "Traceback" not in down.output and Spool(spool_dir).has_waiting()
    up = runner.invoke(main, ["webhooks", "replay"], env={"DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config)})
    assert up.exit_code == 0, up.output
    assert "Stored 2 webhooks" in up.output
    assert record(migrated_url, sid(7))["events"] == 2
    assert not Spool(spool_dir).has_waiting()


def test_webhooks_set_aside_are_tried_again_only_when_asked(migrated_url, spool_dir, tmp_path):
    # Refused for a reason since put right: the administrator asks for them again.
    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\ntuesday = ["08:00-18:00"]\n\n[webhooks]\nspool_dir = "{spool_dir}"\n')
    _spooled_call(spool_dir, 12)
    (spool_dir / "webhooks.jsonl").rename(spool_dir / "unstored.jsonl")  # as a drain sets them aside
    env = {"DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config)}
    plain = CliRunner().invoke(main, ["webhooks", "replay"], env=env)
    assert plain.exit_code == 0 and "Stored 0 webhooks" in plain.output
    assert "2 set aside in unstored.jsonl" in plain.output and "--set-aside" in plain.output
    asked = CliRunner().invoke(main, ["webhooks", "replay", "--set-aside"], env=env)
    assert asked.exit_code == 0, asked.output
    assert "Trying again 2 webhooks set aside in unstored.jsonl." in asked.output and "Stored 2 webhooks" in asked.output
    assert "set aside in unstored.jsonl (" not in asked.output
    assert record(migrated_url, sid(12))["events"] == 2
    assert Spool(spool_dir).counts() == {"waiting": 0, "unstored": 0, "unreadable": 0}


@pytest.mark.parametrize("where", ["missing file", "no schema", "old schema", "not a database"])
def test_the_replay_command_leaves_the_spool_alone_for_a_database_that_cannot_hold_it(migrated_url, spool_dir,
                                                                                       tmp_path, where):
    from helpdesk.migrate import upgrade

    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\ntuesday = ["08:00-18:00"]\n\n[webhooks]\nspool_dir = "{spool_dir}"\n')
    _spooled_call(spool_dir, 9)
    path = tmp_path / "other.db"
    if where == "no schema":
        path.touch()
    elif where == "old schema":
        upgrade(f"sqlite:///{path}", "0004")
    elif where == "not a database":
        path.write_text("these are not the tables you are looking for\n" * 100)
    result = CliRunner().invoke(main, ["webhooks", "replay"], env={"DATABASE_URL": f"sqlite:///{path}",
                                                                   "HELPDESK_CONFIG": str(config)})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "The spool's webhooks are left where they are." in result.output
    assert Spool(spool_dir).has_waiting() and not (spool_dir / "unstored.jsonl").exists()
    assert path.exists() == (where != "missing file")  # no empty database made on the way
    if where == "old schema":
        assert "is at revision 0004, and this version needs" in result.output


def test_metrics_show_what_waits_in_the_spool_and_what_was_set_aside(client, spool_dir):
    def spooled():
        text = client.get("/metrics").get_data(as_text=True)
        return {state: float(value) for state, value in
                (line.split('state="')[1].split('"} ') for line in text.splitlines()
                 if line.startswith("helpdesk_webhooks_spooled{"))}

    assert spooled() == {"waiting": 0, "unstored": 0, "unreadable": 0}
    _spooled_call(spool_dir, 8)
    (spool_dir / "unstored.jsonl").write_text('{"kind": "status"}\n')
    assert spooled() == {"waiting": 2, "unstored": 1, "unreadable": 0}


@contextlib.contextmanager
def app_on_a_hung_postgresql(tmp_path, query: str = ""):
    """An app whose PostgreSQL accepts connections but never answers: (app, settings).

    The kernel completes the handshake for a listening socket nobody accepts from: a server
    that is overloaded or hung looks like this.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        settings = make_settings(webhooks={"spool_dir": str(tmp_path / "spool")})
        app = make_app(f"postgresql://postgres@127.0.0.1:{listener.getsockname()[1]}/helpdesk{query}", settings,
                       FakeClock())
        yield app, settings
    deadline = time.monotonic() + 30
    while recovery_for(settings).running():  # take the spool away, so its retrying thread stops
        assert time.monotonic() < deadline
        shutil.rmtree(tmp_path / "spool", ignore_errors=True)
        time.sleep(0.05)


def timed_post(app, path, params):
    """(response, seconds taken); a request still hanging after 14 s fails the test."""
    started = time.monotonic()
    pool = ThreadPoolExecutor(1)
    try:  # a request still hanging at the end is ended by closing the listener
        response = pool.submit(post, app.test_client(), path, params).result(timeout=14)
    finally:
        pool.shutdown(wait=False)
    return response, time.monotonic() - started


def test_a_postgresql_that_accepts_connections_but_never_answers_is_given_up_on_before_twilio_is(tmp_path):
    # Before, the webhook waited as long as TCP did.
    with app_on_a_hung_postgresql(tmp_path) as (app, settings):
        response, waited = timed_post(app, "/twilio/voice/incoming", inbound(sid(9)))
        assert response.status_code == 200 and ET.fromstring(response.data).find("Dial") is not None
        assert waited < 10, f"Twilio gives up after 15 s; the webhook took {waited:.1f} s"  # 5 s connect timeout
        assert Spool(tmp_path / "spool").counts()["waiting"] == 1


def test_a_callback_webhook_tries_a_hung_database_once_not_once_for_each_thing_it_stores(tmp_path):
    # Each try costs the connect timeout (2 s here); the event and the attempt's outcome both go
    # to the spool after the first.
    with app_on_a_hung_postgresql(tmp_path, "?connect_timeout=2") as (app, settings):
        ended, waited = timed_post(app, "/twilio/voice/callback-status?callback=7",
                                   {"CallSid": sid(5001), "CallStatus": "no-answer"})
        assert ended.status_code == 204
        assert waited < 3.5, f"took {waited:.1f} s: more than one try"
        assert Spool(tmp_path / "spool").counts()["waiting"] == 2
        connect, waited = timed_post(app, "/twilio/voice/callback-connect?callback=7", {"CallSid": sid(5003)})
        body = connect.get_data(as_text=True)
        assert connect.status_code == 200 and "could not be connected" in body and "<Dial" not in body
        assert waited < 3.5, f"took {waited:.1f} s: more than one try"


@contextlib.contextmanager
def lock_held_elsewhere(database_url):
    """SQLite's write lock, or the calls table's lock on PostgreSQL, held as a long migration would."""
    if database_url.startswith("sqlite"):
        other = sqlite3.connect(make_url(database_url).database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.rollback()
            other.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.connect() as other, other.begin():
            other.execute(text("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def test_a_webhook_waits_for_a_lock_held_elsewhere_only_so_long_then_goes_to_the_spool(
        app, client, settings, migrated_url, monkeypatch):
    monkeypatch.setattr(db, "WEBHOOK_WAIT_SECONDS", 1.0)
    bring_back(app, migrated_url)  # connect again, with the shorter wait
    with lock_held_elsewhere(migrated_url):
        started = time.monotonic()
        response = post(client, "/twilio/voice/incoming", inbound(sid(11)))
        waited = time.monotonic() - started
        assert response.status_code == 200 and ET.fromstring(response.data).find("Dial") is not None
        assert 0.9 <= waited < 5, f"waited {waited:.1f} s for a 1 s limit"
        assert Spool(settings.webhooks.spool_dir).counts()["waiting"] == 1
    wait_until_stored(settings)
    assert record(migrated_url, sid(11))["events"] == 1


def test_pages_wait_longer_for_a_lock_than_webhooks_and_the_scheduler_longer_still(app, migrated_url):
    database = app.extensions["helpdesk.db"]
    if migrated_url.startswith("sqlite"):
        waits = []
        for engine in (database.engine, database.webhook_engine):  # one at a time: each takes the write lock
            with engine.connect() as connection:
                busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
                waits.append((connection.connection.driver_connection._timeout, busy / 1000))
        assert waits == [(db.SQLITE_WAIT_SECONDS,) * 2, (db.WEBHOOK_WAIT_SECONDS,) * 2]
        return
    scheduler = db.Database(migrated_url)  # the scheduler's and the command line's

    def limits(connection):
        return tuple(connection.exec_driver_sql(f"SHOW {name}").scalar()
                     for name in ("lock_timeout", "statement_timeout", "application_name"))

    try:
        with database.engine.connect() as pages, database.connection() as webhooks, \
                scheduler.engine.connect() as jobs:
            shown = [limits(c) for c in (pages, webhooks, jobs)]
            # Set for each transaction (SET LOCAL), never for the session: a pooler such as
            # pgbouncer may hand the connection to someone else once the transaction ends.
            pages.commit()
            outside = pages.connection.driver_connection.execute("SHOW lock_timeout").fetchone()[0]
    finally:
        scheduler.dispose()
    # A page waits 5 s for a lock and runs a statement 20 s at most, so agents' pages cannot
    # hold every thread while a migration locks a table; webhooks 5 s; the scheduler without limit.
    assert shown == [("5s", "20s", "helpdesk-pages"), ("5s", "5s", "helpdesk-webhooks"), ("0", "0", "helpdesk")]
    assert outside == "0"


def test_options_given_in_the_database_url_are_kept_beside_the_webhooks_limits(postgres_url):
    separator = "&" if "?" in postgres_url else "?"
    engine = db.make_engine(f"{postgres_url}{separator}options=-c%20work_mem%3D8MB", wait_seconds=2)
    try:
        with engine.connect() as connection:
            shown = [connection.exec_driver_sql(f"SHOW {name}").scalar()
                     for name in ("work_mem", "lock_timeout", "statement_timeout")]
    finally:
        engine.dispose()
    assert shown == ["8MB", "2s", "2s"]


def test_a_page_waiting_on_a_lock_gives_up_with_a_503_and_frees_its_thread_for_webhooks(
        app, client, db_session, migrated_url, monkeypatch):
    # Without a limit, agents' pages refreshing every 15 s behind a migration's lock took every
    # gunicorn thread, and Twilio's webhooks waited past its 15 s for one.
    if migrated_url.startswith("sqlite"):
        return  # SQLite's pages wait SQLITE_WAIT_SECONDS (above); its writers queue on one lock
    from tests.integration.test_evidence_page import signed_in

    monkeypatch.setattr(db, "PAGE_LOCK_SECONDS", 1.0)
    database = app.extensions["helpdesk.db"]
    before = database.engine
    database.connect(migrated_url)  # with the shorter limit
    before.dispose()
    signed_in(client, db_session, "manager")
    answered = []
    with lock_held_elsewhere(migrated_url):
        started = time.monotonic()
        # In a thread, so a page that waits without limit fails this test rather than hanging it.
        asking = threading.Thread(target=lambda: answered.append(client.get("/calls")), daemon=True)
        asking.start()
        asking.join(timeout=10)
        waited = time.monotonic() - started
    asking.join(timeout=10)
    assert answered, f"the page was still waiting after {waited:.0f} s"
    response = answered[0]
    assert response.status_code == 503 and "Traceback" not in response.get_data(as_text=True)
    assert "(it is busy, or cannot be reached)" in response.get_data(as_text=True)
    assert 0.9 <= waited < 5, f"waited {waited:.1f} s for a 1 s limit"
    assert client.get("/calls").status_code == 200


def test_the_database_url_may_size_the_pools_and_turn_off_server_side_prepared_statements(postgres_url):
    # For pgbouncer in transaction mode (no prepared statements) and for counting connections:
    # these settings are the app's, taken out of the URL before psycopg sees it.
    separator = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{separator}pool_size=2&max_overflow=1&prepare_threshold=none&application_name=node-3"
    database = db.Database(url)
    try:
        for engine in (database.engine, database.webhook_engine):
            assert (engine.pool.size(), engine.pool._max_overflow) == (2, 1)
            with engine.connect() as connection:
                assert connection.connection.driver_connection.prepare_threshold is None
                assert connection.exec_driver_sql("SHOW application_name").scalar() == "node-3"
                for _ in range(8):  # psycopg would prepare it on the server from the 5th time
                    connection.exec_driver_sql("SELECT 1").scalar()
                prepared = connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()
                assert prepared == 0
        assert database.url == url  # whole, for the scheduler's other jobs
        with db.make_engine(f"{postgres_url}{separator}prepare_threshold=2").connect() as connection:
            assert connection.connection.driver_connection.prepare_threshold == 2
    finally:
        database.dispose()
    for bad in ("pool_size=many", "max_overflow=-2", "prepare_threshold=soon", "pool_size=%C2%B2"):
        with pytest.raises(ArgumentError, match=f"DATABASE_URL: {bad.split('=')[0]} must be a whole number"):
            db.make_engine(f"{postgres_url}{separator}{bad}")
    assert db.url_settings(f"{postgres_url}{separator}max_overflow=-1&prepare_threshold=NONE") == {
        "max_overflow": -1, "prepare_threshold": None}  # SQLAlchemy's "no limit"; any case


@pytest.mark.postgres
def test_a_postgresql_that_freezes_with_connections_open_is_cut_off_before_twilio_gives_up(tmp_path, monkeypatch):
    # libpq waits for ever for a server that stops answering on a connection already made;
    # statement_timeout cannot help, because the server enforces it.
    monkeypatch.setattr(db_watchdog, "WEBHOOK_HOLD_SECONDS", 1.5)
    server = own_postgres_server()  # this test freezes it
    with server:
        url = server.create_database("frozen") + "?connect_timeout=2"
        upgrade(url)
        settings = make_settings(webhooks={"spool_dir": str(tmp_path / "spool")})
        app = make_app(url, settings, FakeClock())
        database = app.extensions["helpdesk.db"]
        try:
            assert post(app.test_client(), "/twilio/voice/incoming", inbound(sid(21))).status_code == 200
            with database.connection(), database.connection():
                pass  # two connections in the pool, made while the server answered
            server.freeze()
            try:
                # The spool's drain meets one: the server counts as unreachable, and the event waits.
                entry = spool_entry(kind="incoming", path="/twilio/voice/incoming", params=list(inbound(sid(23)).items()),
                                    received_at=OPEN_TIME, call_sid=sid(23), idempotency_token=None, decision="agents")
                started = time.monotonic()
                with pytest.raises(Unreachable):
                    store_entry(database, settings, entry)
                assert 1.4 < time.monotonic() - started < 3  # cut by the watchdog, not by connecting anew
                # A webhook meets the other.
                response, waited = timed_post(app, "/twilio/voice/incoming", inbound(sid(22)))
            finally:
                server.thaw()
            assert response.status_code == 200 and ET.fromstring(response.data).find("Dial") is not None
            assert waited < 3, f"took {waited:.1f} s with a hold limit of 1.5 s"  # and no second wait to connect
            assert Spool(tmp_path / "spool").counts()["waiting"] == 1
            wait_until_stored(settings)
            assert Spool(tmp_path / "spool").counts() == {"waiting": 0, "unstored": 0, "unreadable": 0}
            assert [record(url, sid(n))["events"] for n in (21, 22)] == [1, 1]
            assert db.WATCHDOG.watching() == 0  # every connection given back was disarmed, the cut ones too
        finally:
            app.extensions["helpdesk.db"].dispose()


def test_a_worker_stores_what_the_spool_holds_when_it_starts_not_at_the_next_call(app, settings, spool_dir,
                                                                                  migrated_url):
    # Left by a process that has since stopped; no webhook comes to prompt a look at the spool.
    from types import SimpleNamespace

    from helpdesk.server import post_worker_init

    _spooled_call(spool_dir, 11)
    try:
        post_worker_init(SimpleNamespace(wsgi=app, pid=1))
    finally:
        gc.unfreeze()
    wait_until_stored(settings)
    assert record(migrated_url, sid(11))["events"] == 2


def test_readiness_says_in_the_log_why_the_database_did_not_answer(tmp_path, caplog):
    app = make_app(UNREACHABLE["postgresql"], make_settings(webhooks={"spool_dir": str(tmp_path)}), FakeClock())
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions["helpdesk.db"].dispose()
    assert response.status_code == 503
    assert "readiness check failed: OperationalError: " in caplog.text  # with the driver's reason after it
    assert len(caplog.text.split("readiness check failed: OperationalError: ")[1].strip()) > 10


def test_a_database_nobody_migrated_is_not_ready_and_its_webhooks_wait_for_the_upgrade(database_url, settings,
                                                                                      spool_dir, caplog):
    # e.g. served anyway while its server was down, then the server came up with an empty database.
    app = make_app(database_url, settings, FakeClock())
    try:
        client = app.test_client()
        response = post(client, "/twilio/voice/incoming", inbound(sid(31)))
        assert response.status_code == 200 and ET.fromstring(response.data).find("Dial") is not None
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_data(as_text=True) == ("database not ready: the database has no schema yet: "
                                                "run 'helpdesk db upgrade' first\n")
        # The next webhook prompts a drain: it meets the same database, and everything waits.
        post(client, "/twilio/voice/status", {"CallSid": sid(31), "CallStatus": "completed", "CallDuration": "4"})
        wait_until_idle = time.monotonic() + 5
        while recovery_for(settings).running() and time.monotonic() < wait_until_idle:
            time.sleep(0.05)
        assert Spool(spool_dir).counts() == {"waiting": 2, "unstored": 0, "unreadable": 0}
        assert "Traceback" not in caplog.text and "refused a webhook" not in caplog.text
        upgrade(database_url)
        assert client.get("/readyz").get_data(as_text=True) == "ready\n"
        post(client, "/twilio/voice/status", {"CallSid": sid(31), "CallStatus": "completed", "CallDuration": "4"})
        wait_until_stored(settings)
        assert record(database_url, sid(31))["events"] == 2
    finally:
        app.extensions["helpdesk.db"].dispose()


def test_a_webhook_that_met_no_schema_while_a_migration_finished_waits_rather_than_being_refused(
        postgres_url, settings, monkeypatch):
    # The drain's statement ran before 'helpdesk db upgrade' committed, its check of the schema
    # after: it found the schema ready, and set the webhook aside as refused (a CI flake showed it).
    from helpdesk.voice import recovery as recovery_module

    database = db.Database(postgres_url)  # nobody has migrated it
    monkeypatch.setattr(recovery_module, "_schema_problem", lambda database: None)  # migrated meanwhile
    entry = spool_entry(kind="incoming", path="/twilio/voice/incoming", params=list(inbound(sid(41)).items()),
                        received_at=datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc), call_sid=sid(41),
                        idempotency_token=None, decision=None)
    try:
        with pytest.raises(Unreachable, match="the schema changed meanwhile"):
            recovery_module.store_entry(database, settings, entry)
    finally:
        database.dispose()
