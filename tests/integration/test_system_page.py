"""The System page: each part of the help desk working, needing attention (with what to do), or
not set up, from the database and this server's setup; for administrators only. SQLite and
PostgreSQL."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from callbacks.sweep import acquire_lease
from callbacks.telephony import TwilioTelephony
from helpdesk.models import SignInFailure, TwilioEvent
from helpdesk.system_status import MAILBOX_LATE, SIGN_INS_REFUSED
from helpdesk.voice.recovery import spool_for
from tests.integration.conftest import BASE_URL, make_app, make_settings
from tests.integration.test_callbacks import miss_a_call
from tests.integration.test_queue_page import text_of, words
from tests.integration.test_users_and_login import make_user, sign_in

RULES = Path(__file__).parents[2] / "metrics" / "alerts" / "helpdesk.rules.yml"


def page_of(client) -> str:
    response = client.get("/admin/system")
    assert response.status_code == 200
    return words(text_of(response))


def row(page: str, part: str) -> str:
    """One part's line: its name to the next part's (the parts' names are in the page's order)."""
    start = page.index(part)
    following = [page.find(name, start + len(part)) for name in PARTS if name != part]
    return page[start:min([at for at in following if at > 0], default=len(page))]


PARTS = ("Database", "Scheduler: Callback deadlines", "Scheduler: Email acknowledgements", "Scheduler: Reading",
         "Scheduler: Checking calls", "Scheduler: Removing", "Webhooks from Twilio", "Webhooks waiting",
         "Calls with no ending", "Calls that never reached the app", "Agents' line", "Call back now", "Email enquiries coming in",
         "Email acknowledgements Working", "Email acknowledgements Not set up", "Email acknowledgements Needs",
         "Signing in", "This server")


@pytest.fixture
def admin(client, db_session):
    user = make_user(db_session, "dana", "admin", display_name="Dana Admin")
    sign_in(client, "dana")
    return user


def test_a_new_desk_says_what_is_not_running_yet_and_what_to_do(client, admin):
    page = page_of(client)

    assert "4 parts need attention." in page
    sweep = row(page, "Scheduler: Callback deadlines")
    assert "Needs attention No scheduler has run it yet. Start the scheduler (helpdesk scheduler" in sweep
    assert "README: “Running it”" in sweep
    assert "Needs attention" in row(page, "Scheduler: Email acknowledgements")
    assert ("Webhooks from Twilio Needs attention None has come yet. Point the help desk's number at this app"
            in page)
    assert "Webhooks waiting on this server Working None: every webhook is stored." in page
    assert "Calls with no ending Working None." in page
    assert "Email enquiries coming in Not set up None comes in." in page
    assert "Email acknowledgements Not set up Not sent: [smtp] has no host." in page
    assert "Signing in Working 0 sign-ins refused in the last 15 minutes." in page
    assert "Database Working Answering" in page


def test_a_running_scheduler_and_webhooks_coming_in_are_working(app, client, admin, clock, db_session, settings):
    with app.extensions["helpdesk.db"].session() as session:
        for lease in ("sweep", "email.acks", "calls.reconcile"):
            assert acquire_lease(session, lease, "node-1", clock.now - timedelta(seconds=10), 120)
    miss_a_call(client, clock, 1)

    page = page_of(client)

    # 10 s before the call, which took 40 s.
    assert "Scheduler: Callback deadlines and breaches Working Running: last run 50 s ago, every minute." in page
    assert "Scheduler: Email acknowledgements Working Running: last run 50 s ago, every 15 s." in page
    assert "Scheduler: Checking calls with Twilio" in page
    assert re.search(r"Webhooks from Twilio Working The last came at \d\d:\d\d GMT\.", page)
    # Every part set up works; the others (mail, Call back now, Twilio's call log) are not set up.
    assert "Every part that is set up is working." in page and "needs attention" not in page.lower()


def test_a_scheduler_that_stopped_says_since_when_it_last_ran(app, client, admin, clock, db_session):
    from callbacks.sweep import release_lease

    with app.extensions["helpdesk.db"].session() as session:
        acquire_lease(session, "sweep", "node-1", clock.now - timedelta(minutes=10), 120)
        acquire_lease(session, "email.acks", "node-1", clock.now - timedelta(minutes=10), 120)
        release_lease(session, "email.acks", "node-1")  # stopped, and gave its lease up
    page = page_of(client)
    last_ran = (clock.now - timedelta(minutes=10)).strftime("%H:%M")
    assert f"Scheduler: Callback deadlines and breaches Needs attention No scheduler has run it since " \
           f"{last_ran} GMT." in page
    assert ("Scheduler: Email acknowledgements Needs attention Its scheduler stopped, and none has run it since."
            in page)
    assert "1970" not in page


def test_a_job_that_runs_less_often_than_its_lease_lasts_is_late_only_once_a_run_is_overdue(app, client, admin,
                                                                                              clock):
    """The check of calls with Twilio runs every 5 minutes, and its lease lasts 2: between runs the
    lease has lapsed, which is not a stopped scheduler (the alert watches only the two jobs that
    run more often than that)."""
    with app.extensions["helpdesk.db"].session() as session:
        acquire_lease(session, "calls.reconcile", "node-1", clock.now - timedelta(minutes=4), 120)
    assert ("Scheduler: Checking calls with Twilio Working Running: last run 4 min ago, every 5 min."
            in page_of(client))
    clock.advance(3 * 60)  # 7 min after it ran: its next run 2 min late, a lease's length
    assert "Scheduler: Checking calls with Twilio Working" in page_of(client)
    clock.advance(1)
    last_ran = (clock.now - timedelta(minutes=7, seconds=1)).strftime("%H:%M")
    assert (f"Scheduler: Checking calls with Twilio Needs attention No scheduler has run it since {last_ran} GMT."
            in page_of(client))


def test_a_job_that_runs_but_failed_last_time_needs_attention_and_says_why(app, client, admin, clock, db_session):
    from sqlalchemy import update

    from helpdesk.models import SchedulerLease

    with app.extensions["helpdesk.db"].session() as session:
        acquire_lease(session, "sweep", "node-1", clock.now - timedelta(seconds=20), 120)
    with db_session.begin():  # as callbacks.leased_job keeps a run's failure
        db_session.execute(update(SchedulerLease).where(SchedulerLease.name == "sweep").values(
            failed_at=clock.now - timedelta(seconds=20), failure="OperationalError: database is locked (at sweep.py:9)"))
    page = page_of(client)
    assert ("Scheduler: Callback deadlines and breaches Needs attention Running: last run 20 s ago, every minute. Its "
            "last run failed, at 09:59 GMT: OperationalError: database is locked (at sweep.py:9) Read the scheduler's "
            "log around then") in page
    with db_session.begin():
        db_session.execute(update(SchedulerLease).values(failed_at=None, failure=None))
    assert "Scheduler: Callback deadlines and breaches Working Running: last run 20 s ago" in page_of(client)


def test_webhooks_kept_in_the_spool_and_set_aside_need_attention(app, client, admin, settings):
    spool = spool_for(settings)
    spool.put({"kind": "status", "params": []})
    assert "Needs attention 1 webhook kept in the spool until the database takes them." in row(
        page_of(client), "Webhooks waiting")
    spool.directory.joinpath("unstored.jsonl").write_text('{"kind": "status"}\n{"kind": "status"}\n')
    assert "Needs attention 2 webhooks the database refused, 0 lines unreadable, in the spool." in row(
        page_of(client), "Webhooks waiting")


def test_calls_with_no_ending_and_calls_found_only_in_twilios_log_need_attention(migrated_url, clock, db_session):
    from tests.integration.twilio_requests import inbound, post, sid

    settings = make_settings(webhooks={"twilio_numbers": ["+448001217479"], "reconcile_after_minutes": 10})
    app = make_app(migrated_url, settings, clock)
    make_user(db_session, "dana", "admin")
    client = app.test_client()
    sign_in(client, "dana")
    assert "Calls that never reached the app Working None found in the last hour." in page_of(client)
    post(client, "/twilio/voice/incoming", inbound(sid(1)))  # and nothing more from Twilio
    with db_session.begin():  # as the scheduler's look in the call log stores a call it finds
        db_session.add(TwilioEvent(received_at=clock.now, kind="api_log", call_sid=sid(2), leg_sid=sid(2),
                                   fingerprint="f" * 64, params="[]"))
    clock.advance(2 * 3600 + 60)
    page = page_of(client)
    assert ("Calls with no ending Needs attention 1 call not answered and with no ending from Twilio for over 2 "
            "hours.") in page
    # Found 2 hours ago: not in the last hour; the webhooks' last is the call's, not the find.
    assert "Calls that never reached the app Working None found in the last hour." in page
    assert "Webhooks from Twilio Working The last came at 10:00 GMT." in page
    with db_session.begin():
        db_session.add(TwilioEvent(received_at=clock.now, kind="api_log", call_sid=sid(3), leg_sid=sid(3),
                                   fingerprint="e" * 64, params="[]"))
    assert ("Calls that never reached the app Needs attention 1 call in the last hour found only in Twilio's call "
            "log.") in page_of(client)
    app.extensions["helpdesk.db"].dispose()


def test_call_back_now_says_what_is_missing_and_never_a_secret(migrated_url, clock, db_session, monkeypatch):
    monkeypatch.delenv("TWILIO_FROM_NUMBER", raising=False)
    settings = make_settings()
    unconfigured = make_app(migrated_url, settings, clock, TWILIO_ACCOUNT_SID="AC" + "a" * 32,
                            SENDGRID_INBOUND_SECRET="a-sendgrid-secret-long-enough")
    configured = make_app(migrated_url, settings, clock, SENDGRID_INBOUND_SECRET="a-sendgrid-secret-long-enough")
    configured.extensions["helpdesk.telephony"] = TwilioTelephony("AC" + "b" * 32, "a-twilio-token",
                                                                  "+448001217479", BASE_URL)
    make_user(db_session, "dana", "admin")
    pages = []
    for app in (unconfigured, configured):
        client = app.test_client()
        sign_in(client, "dana")
        pages.append(page_of(client))
        app.extensions["helpdesk.db"].dispose()

    assert ("Call back now Not set up Agents call from their own phones and log each attempt by hand. Set "
            "TWILIO_FROM_NUMBER.") in pages[0]
    assert "Call back now Working Calls are placed from +448001217479." in pages[1]
    for page in pages:
        assert "Email enquiries coming in Working SendGrid Inbound Parse may post them." in page
        assert "a-sendgrid-secret" not in page and "aaaaaaaa" not in page and "a-twilio-token" not in page


def test_a_mailbox_not_read_for_ten_minutes_needs_attention(migrated_url, clock, db_session):
    from helpdesk.models import ImapMailboxState

    settings = make_settings(email={"imap": {"host": "imap.example.org"}}, smtp={"host": "smtp.example.org"})
    app = make_app(migrated_url, settings, clock)
    make_user(db_session, "dana", "admin")
    client = app.test_client()
    sign_in(client, "dana")
    assert "The mailbox on imap.example.org has not been read yet." in row(page_of(client), "Email enquiries")
    assert "Scheduler: Reading the mailbox Needs attention" in page_of(client)
    with db_session.begin():
        db_session.add(ImapMailboxState(mailbox="helpdesk@imap.example.org:993/INBOX", uidvalidity=1, last_uid=0,
                                        checked_at=clock.now - MAILBOX_LATE + timedelta(seconds=30)))
    assert ("Email enquiries coming in Working The mailbox on imap.example.org was last read 9 min ago."
            in page_of(client))
    clock.advance(31)
    read = (clock.now - MAILBOX_LATE - timedelta(seconds=1)).strftime("%H:%M")
    assert f"has not been read since {read} GMT." in row(page_of(client), "Email enquiries")
    assert "Email acknowledgements Working Sent through smtp.example.org; none overdue." in page_of(client)
    app.extensions["helpdesk.db"].dispose()


def test_in_queue_mode_the_agents_line_says_whether_a_faked_caller_id_could_take_callers(app, client, admin,
                                                                                         db_session):
    from helpdesk.agents_pin import LOCK_AFTER, set_pin
    from helpdesk.models import User
    from helpdesk.users import deactivate

    def parts() -> str:  # the table alone: the header has the Agents' line PIN page's link
        return page_of(client).split("Each part of the help desk and its state", 1)[1]

    assert "Agents' line" not in page_of(client)  # a ring group: there is none
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    assert "Agents' line Working Agents take callers with Twilio Client apps" in page_of(client)
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue", "agents_numbers": ["+441144960099"]})
    assert ("Agents' line Not set up A call from an agent's phone is put through on its caller ID alone, which can be "
            "faked. Have everyone set a PIN on Agents' line PIN, then set [routing] agents_pin = true.") in page_of(client)
    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue", "agents_pin": True})
    for name, phone in (("alice", "+447700900555"), ("bob", "sip:1001@pbx.example.org"), ("cleo", "+447700900556")):
        make_user(db_session, name, "agent", phone=phone)
    make_user(db_session, "nina", "agent")  # no phone: nothing to type a PIN on
    with app.extensions["helpdesk.db"].session() as session:
        set_pin(session, "alice", "2580")
    with app.extensions["helpdesk.db"].session() as session:
        set_pin(session, "cleo", "2580")
    line = row(parts(), "Agents' line")
    assert line.startswith("Agents' line Needs attention A PIN is asked of each phone: 2 phones of 3 can take callers. "
                           "1 phone has no PIN yet: its owner sets one on Agents' line PIN."), line
    with db_session.begin():
        db_session.execute(User.__table__.update().where(User.username == "cleo").values(
            agents_pin_failures=LOCK_AFTER))
    line = row(parts(), "Agents' line")
    assert "1 phone of 3 can take callers. 1 PIN locked after wrong ones" in line
    make_user(db_session, "dave", "agent", phone="+447700900557")
    assert ("1 phone of 4 can take callers. 1 PIN locked after wrong ones: its owner sets a new one on Agents' line "
            "PIN") in row(parts(), "Agents' line")
    assert "2 phones have no PIN yet: their owners set one each on Agents' line PIN." in row(parts(), "Agents' line")
    make_user(db_session, "eve", "agent", phone="+447700900558")
    with app.extensions["helpdesk.db"].session() as session:
        deactivate(session, "eve")  # not counted: she takes no callers
    with app.extensions["helpdesk.db"].session() as session:
        set_pin(session, "bob", "2580")
    with app.extensions["helpdesk.db"].session() as session:
        set_pin(session, "dave", "2580")
    with app.extensions["helpdesk.db"].session() as session:
        set_pin(session, "cleo", "739164")
    assert "Agents' line Working A PIN is asked of each phone: 4 phones of 4 can take callers." in page_of(client)


def test_thirty_sign_ins_refused_need_attention(client, admin, clock, db_session):
    with db_session.begin():
        db_session.add_all(SignInFailure(who=f"guess{n}", failed_at=clock.now - timedelta(minutes=1))
                           for n in range(SIGN_INS_REFUSED - 1))
    assert "Signing in Working 29 sign-ins refused in the last 15 minutes." in page_of(client)
    with db_session.begin():
        db_session.add(SignInFailure(who="admin", failed_at=clock.now))
    page = page_of(client)
    assert "Signing in Needs attention 30 sign-ins refused in the last 15 minutes. Someone may be guessing" in page


def test_the_thresholds_are_the_alerts(db_session):
    """The page judges as the alerts do: the same numbers as in the rules file."""
    rules = {rule["alert"]: rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"]
             for rule in group["rules"] if "alert" in rule}
    assert f"> {int(MAILBOX_LATE.total_seconds())}" in rules["HelpdeskMailboxNotRead"]
    assert f">= {SIGN_INS_REFUSED}" in rules["HelpdeskSignInsRefused"]


@pytest.mark.parametrize("role", ["agent", "manager", "auditor"])
def test_only_administrators_see_it_and_have_it_in_the_header(app, db_session, role):
    make_user(db_session, "sam", role)
    make_user(db_session, "dana", "admin")
    someone, administrator = app.test_client(), app.test_client()
    sign_in(someone, "sam")
    sign_in(administrator, "dana")
    assert someone.get("/admin/system").status_code == 403
    assert 'href="/admin/system"' not in someone.get("/", follow_redirects=True).get_data(as_text=True)
    assert 'href="/admin/system"' in administrator.get("/admin/users").get_data(as_text=True)


def test_helpdesk_status_says_the_same_and_exits_1_while_a_part_needs_attention(migrated_url, db_session, tmp_path):
    from click.testing import CliRunner

    from helpdesk.cli import main as helpdesk_cli
    from helpdesk.clock import now_utc
    from helpdesk.db import Database

    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\nmonday = ["08:00-18:00"]\n[webhooks]\nspool_dir = "{tmp_path / "spool"}"\n'
                      'reconcile_after_minutes = 0\n')
    env = {"DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config), "TWILIO_ACCOUNT_SID": "AC" + "c" * 32,
           "TWILIO_AUTH_TOKEN": "a-twilio-token", "PUBLIC_BASE_URL": BASE_URL, "TWILIO_FROM_NUMBER": "+448001217479",
           "SENDGRID_INBOUND_SECRET": "", "SIP_USERNAME": "", "SIP_PASSWORD": ""}

    waiting = CliRunner().invoke(helpdesk_cli, ["status"], env=env)

    assert waiting.exit_code == 1, waiting.output
    lines = waiting.stdout.splitlines()
    assert lines[0].startswith("WORKING     Database ") and "Answering:" in lines[0]
    sweep = next(line for line in lines if "Callback deadlines and breaches" in line)
    assert sweep.startswith("ATTENTION   Scheduler: ") and sweep.endswith(
        "No scheduler has run it yet. Start the scheduler (helpdesk scheduler, or helpdesk run, which runs it), and "
        'read its log. (README: "Running it")')
    assert any(line.startswith("NOT SET UP  Email enquiries coming in") for line in lines)
    assert any(line.startswith("WORKING     Call back now") and line.endswith("Calls are placed from +448001217479.")
               for line in lines)
    assert "3 parts need attention." in waiting.stderr  # the two jobs, and no webhook yet
    assert "a-twilio-token" not in waiting.output

    database = Database(migrated_url)
    with database.session() as session:
        for lease in ("sweep", "email.acks"):
            acquire_lease(session, lease, "node-1", now_utc(), 120)
        session.add(TwilioEvent(received_at=now_utc(), kind="status", call_sid="CA" + "1" * 32,
                                leg_sid="CA" + "1" * 32, fingerprint="d" * 64, params="[]"))
        session.commit()
    database.dispose()
    working = CliRunner().invoke(helpdesk_cli, ["status"], env=env)
    assert working.exit_code == 0, working.output
    assert working.stdout.splitlines()[-1] == "Every part that is set up is working."
