"""`helpdesk anonymise`: personal data removed once the retention period has passed, on SQLite and
PostgreSQL, with every figure kept."""
from __future__ import annotations

import json
import sqlite3
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from callbacks import owed, scheduler
from callbacks.email.waiting import awaiting_response, callback_needed
from helpdesk import retention
from helpdesk.cli import main
from helpdesk.blanked_events import KEPT_PARAMETERS, blanked
from helpdesk.db import SQLITE_WAIT_SECONDS, Database
from helpdesk.migrate import upgrade
from helpdesk.models import (
    AuditEntry, Call, Callback, CallbackAttempt, EmailAcknowledgement, Enquiry, InboundEmail, TwilioEvent, User)
from helpdesk.pages import format as fmt
from helpdesk.retention import Scope, empty_write_ahead_log, remove_personal_data
from helpdesk.users import add_user, set_password
from metrics.evidence.fields import Redactor
from metrics.periods import uk_midnight
from tests.integration.conftest import make_settings
from tests.integration.test_email_intake import RECEIVED, store
from tests.integration.test_evidence_pack import auditor, export, packs, read, seed, seeded  # noqa: F401 (fixtures)
from tests.integration.test_queue_page import add_agent, answer_a_call, at, miss_a_call
from tests.integration.test_subject_access import ADDRESS, OTHER, PASSWORD, PERSON, desk  # noqa: F401 (fixture)
from tests.integration.test_users_and_login import sign_in
from tests.integration.twilio_requests import inbound, post, sid

AFTER_THE_TEST_DAYS = Scope.before(uk_midnight(date(2026, 11, 26)))
LATER = uk_midnight(date(2026, 12, 1))  # when the tests' removals run
PERSONAL = {"caller", "sender", "note"}  # the packs' columns that may change: all else must not


def anonymise(env, *args):
    return CliRunner().invoke(main, ["anonymise", "--user", "root-admin", *args], env=env)


def count(db_session, query) -> int:
    with db_session.begin():
        return db_session.scalar(select(func.count()).select_from(query.subquery()))


def test_every_figure_of_a_pack_is_the_same_after_the_removal(app, db_session, clock, seeded, auditor, packs):
    with db_session.begin():  # two callbacks closed, and every email enquiry answered
        for callback in db_session.scalars(select(Callback).where(Callback.contact_key.in_(["call:CB1", "call:CB2"]))):
            callback.status, callback.closed_at = "closed", callback.owed_from
        for enquiry in db_session.scalars(select(Enquiry).where(Enquiry.channel == "email")):
            enquiry.status = "closed"
    before = export(app, db_session, clock, auditor, packs / "before", include_notes=True)
    removal = remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER)
    after = export(app, db_session, clock, auditor, packs / "after", include_notes=True)

    assert (before / "summary.csv").read_bytes() == (after / "summary.csv").read_bytes()
    removed = 0
    for name in ("calls.csv", "callbacks.csv", "callback_attempts.csv", "emails.csv"):
        old, new = read(before / name), read(after / name)
        assert len(old) == len(new), name
        for was, now in zip(old, new):
            assert {k: v for k, v in was.items() if k not in PERSONAL} == {k: v for k, v in now.items()
                                                                          if k not in PERSONAL}, name
            for column in PERSONAL & set(was):
                assert now[column] in (was[column], "removed", ""), (name, column, now[column])
                removed += now[column] != was[column]
    # The open callback (and its call) and the email awaiting its acknowledgement keep their people.
    assert (removal.callbacks, removal.callbacks_left, removal.calls_left, removal.emails, removal.emails_left) == (
        2, 1, 1, 4, 1)
    calls = {row["call_sid"]: row["caller"] for row in read(after / "calls.csv")}
    withheld = [call for call, caller in calls.items() if caller == "withheld"]
    assert withheld == [row["call_sid"] for row in read(before / "calls.csv") if row["caller"] == "withheld"] != []
    # Two calls are outside the pack's days; a withheld caller's still says so.
    assert list(calls.values()).count("removed") == removal.calls - 2 - len(withheld)
    notes = [row["note"] for row in read(after / "callbacks.csv")]
    assert "Customer asked about grant" not in notes and removed > 5


def test_a_callers_number_emails_and_notes_go_and_what_is_still_being_worked_stays(desk, app, client, db_session):
    with db_session.begin():
        for n, note in ((1, "Rang back about the grant"), (2, "Spoke to them")):
            callback = db_session.scalars(select(Callback).where(Callback.call_sid == sid(n))).one()
            callback.status, callback.closed_at, callback.note = "closed", callback.owed_from, note
        # Amira's first email enquiry answered; her second still open.
        first = db_session.scalars(select(InboundEmail).order_by(InboundEmail.id)).first()
        db_session.get(Enquiry, first.enquiry_id).status = "closed"
        db_session.execute(EmailAcknowledgement.__table__.update().values(status="sent"))
        kept_events = db_session.scalar(select(func.count()).where(TwilioEvent.call_sid == sid(3),
                                                                   TwilioEvent.params.contains(PERSON)))
    assert kept_events > 0

    dry = anonymise(desk, "--before", "2026-11-25")
    assert dry.exit_code == 0, dry.output
    assert "would remove personal data from\n  2 calls\n" in dry.output and "Nothing was changed" in dry.output
    assert count(db_session, select(Call).where(Call.caller_number == PERSON)) == 2
    assert count(db_session, select(TwilioEvent).where(TwilioEvent.fingerprint.startswith("anonymised:"))) == 0

    done = anonymise(desk, "--before", "2026-11-25", "--apply")
    assert done.exit_code == 0, done.output
    assert "Contacts that began before 25 November 2026 (UK time): removed personal data from\n  2 calls\n" in done.output
    assert "  2 callbacks\n  1 callback attempt\n  1 email\n  1 acknowledgement\n" in done.output
    assert "Left: 1 call still being worked" in done.output and "Left: 1 callback still being worked" in done.output
    assert "Left: 3 emails still being worked" in done.output and "write-ahead log" not in done.output

    db_session.expire_all()  # the rows read above, as the command left them
    with db_session.begin():
        numbers = dict(db_session.execute(select(Call.call_sid, Call.caller_number)).all())
        assert numbers == {sid(1): "removed", sid(2): "removed", sid(3): PERSON}  # sid 3's callback is open
        for event in db_session.scalars(select(TwilioEvent).where(TwilioEvent.call_sid.in_([sid(1), sid(2)]))):
            assert PERSON not in event.params and OTHER not in event.params
            assert event.fingerprint == f"anonymised:{event.id}"
            assert all(value == "" for name, value in json.loads(event.params) if name not in KEPT_PARAMETERS)
            assert ["CallSid", event.leg_sid] in json.loads(event.params)  # what the records come from stays
        assert db_session.scalar(select(func.count()).where(TwilioEvent.call_sid == sid(3),
                                                             TwilioEvent.params.contains(PERSON))) == kept_events
        assert {c.note for c in db_session.scalars(select(Callback).where(Callback.status == "closed"))} == {""}
        assert {a.note for a in db_session.scalars(select(CallbackAttempt))} == {""}
        emails = {e.id: e for e in db_session.scalars(select(InboundEmail))}
        assert (emails[first.id].sender, emails[first.id].subject, emails[first.id].raw) == ("removed", "", b"")
        assert emails[first.id].message_id is None and emails[first.id].raw_sha256 == first.raw_sha256
        assert sum(e.sender == "removed" for e in emails.values()) == 1
        sent_to = dict(db_session.execute(select(EmailAcknowledgement.inbound_email_id,
                                                 EmailAcknowledgement.to_address)).all())
        assert sent_to[first.id] == "removed" and list(sent_to.values()).count("removed") == 1
        [entry] = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "personal_data.removed")).all()
    assert entry.actor == "root-admin" and json.loads(entry.detail)["before"] == "2026-11-25"
    assert json.loads(entry.detail)["rows"]["calls"] == 2 and PERSON not in entry.detail

    # Found by subject access only where it was left; shown as removed on the pages.
    searched = CliRunner().invoke(main, ["subject-access", "--user", "root-admin", "--phone", PERSON], env=desk)
    assert "  calls: 1 row\n" in searched.output and "  callbacks: 1 row\n" in searched.output
    with app.extensions["helpdesk.db"].session() as session:
        add_user(session, "morgan-2", PASSWORD, "manager", display_name="Morgan")
    sign_in(client, "morgan-2", PASSWORD)
    calls_page = client.get("/calls?day=2026-11-24")
    assert calls_page.status_code == 200 and calls_page.get_data(as_text=True).count("Removed") == 2
    enquiry = client.get("/enquiries/HD-2026-000001")
    assert enquiry.status_code == 200 and "From Removed (" in enquiry.get_data(as_text=True)

    again = anonymise(desk, "--before", "2026-11-25", "--apply")
    assert again.exit_code == 0 and "  0 calls\n  0 webhooks as received\n  0 callbacks\n" in again.output


def test_one_persons_contacts_are_erased_on_request_and_nobody_elses(desk, db_session):
    with db_session.begin():
        callback = db_session.scalars(select(Callback).where(Callback.call_sid == sid(1))).one()
        callback.status, callback.closed_at, callback.note = "closed", callback.owed_from, "Rang back"
        db_session.execute(EmailAcknowledgement.__table__.update().values(status="sent"))
        db_session.execute(Enquiry.__table__.update().where(Enquiry.channel == "email").values(status="closed"))
    done = anonymise(desk, "--phone", "07700 900338", "--apply")
    assert done.exit_code == 0, done.output
    assert done.output.startswith("The contacts of the phone number ending 338: removed personal data from\n"
                                  "  1 call\n")
    assert "Left: 1 call still being worked" in done.output  # sid 3: its callback is open
    by_email = anonymise(desk, "--email", ADDRESS, "--apply")
    assert by_email.exit_code == 0 and "  3 emails\n  3 acknowledgements\n" in by_email.output

    db_session.expire_all()
    with db_session.begin():
        numbers = dict(db_session.execute(select(Call.call_sid, Call.caller_number)).all())
        senders = sorted(db_session.scalars(select(InboundEmail.sender)))
        [first, second] = db_session.scalars(select(AuditEntry.detail).where(
            AuditEntry.action == "personal_data.removed").order_by(AuditEntry.id)).all()
    assert numbers == {sid(1): "removed", sid(2): OTHER, sid(3): PERSON}
    assert senders == ["removed", "removed", "removed", "someone@else.example"]
    assert json.loads(first)["person"] == "phone number ending 338" and PERSON not in first
    assert json.loads(second)["person"] == "email address a***@e***.net" and ADDRESS not in second


def test_the_events_of_a_callback_attempts_call_are_blanked_with_the_callback(desk, db_session):
    # The agent's call to the caller is no call of the queue's: its events go with the attempt.
    # Those of no call and no attempt at all (a leg whose call was never stored) go too.
    dialled, unowned = "CA" + "7" * 32, "CA" + "6" * 32
    with db_session.begin():
        callback = db_session.scalars(select(Callback).where(Callback.call_sid == sid(1))).one()
        callback.status, callback.closed_at = "closed", callback.owed_from
        db_session.scalars(select(CallbackAttempt)).one().call_sid = dialled
        for n, call_sid in enumerate((dialled, unowned)):
            db_session.add(TwilioEvent(received_at=at(11, 5), kind="agent_status", call_sid=call_sid,
                                       leg_sid=call_sid, fingerprint=f"{n:064d}",
                                       params=json.dumps([["CallSid", call_sid], ["To", PERSON]])))
    assert remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER).attempts == 1
    with db_session.begin():
        for call_sid in (dialled, unowned):
            [event] = db_session.scalars(select(TwilioEvent).where(TwilioEvent.call_sid == call_sid)).all()
            assert json.loads(event.params) == [["CallSid", call_sid], ["To", ""]]
            assert event.fingerprint == f"anonymised:{event.id}"


def test_a_contact_that_began_at_the_moment_a_removal_is_before_is_not_taken(desk, db_session):
    # "Before" is strict: a removal before each table's first contact, to the microsecond, takes none.
    unowned = "CA" + "6" * 32
    with db_session.begin():
        db_session.add(TwilioEvent(received_at=at(9, 0), kind="agent_status", call_sid=unowned, leg_sid=unowned,
                                   fingerprint="6" * 64, params=json.dumps([["To", PERSON]])))
        first = {name: db_session.scalar(select(func.min(column))) for name, column in (
            ("calls", Call.arrived_at), ("callbacks", Callback.owed_from), ("emails", InboundEmail.received_at),
            ("events", TwilioEvent.received_at))}
    for name, moment in first.items():
        removal = remove_personal_data(db_session, Scope.before(moment), apply=False, now=LATER)
        assert getattr(removal, name) + getattr(removal, f"{name}_left", 0) == 0, name


@pytest.mark.parametrize("args, message", [
    ([], "give one of --before, --phone and --email"),
    (["--before", "2026-11-25", "--phone", PERSON], "give one of --before, --phone and --email"),
    (["--phone", "call me"], "'call me' is not a phone number"),
])
def test_what_to_remove_is_said_once_and_plainly(desk, db_session, args, message):
    result = anonymise(desk, *args, "--apply")
    assert result.exit_code == 2 and message in result.output
    assert count(db_session, select(Call).where(Call.caller_number == "removed")) == 0


def test_a_callback_needed_after_the_callers_number_was_removed_has_no_number_to_dial(app, client, clock,
                                                                                     db_session, settings):
    answer_a_call(client, clock, 40, at(9, 0), caller=PERSON)
    assert remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER).calls == 1
    agent = add_agent(app, "ali", "Ali")
    with app.extensions["helpdesk.db"].session() as session:
        callback = owed.record_not_concluded(session, settings, call_sid=sid(40), agent_id=agent, now=clock.now,
                                             note="About their assessment")
    assert callback.caller_number is None  # the agent types a number, rather than dial "removed"


@pytest.mark.parametrize("args, message", [
    (["--before", "25/11/2026"], "Invalid value for --before: “25/11/2026” is not a date: use YYYY-MM-DD"),
    (["--before", "2999-01-01"], "Invalid value for --before: 2999-01-01 is after today"),
])
def test_a_day_that_is_not_one_or_is_still_to_come_is_refused(desk, db_session, args, message):
    result = anonymise(desk, *args, "--apply")
    assert result.exit_code == 2 and message in result.output
    assert count(db_session, select(Call).where(Call.caller_number == "removed")) == 0


def test_only_an_administrator_may_remove_personal_data(desk, db_session):
    result = CliRunner().invoke(main, ["anonymise", "--user", "morgan", "--before", "2026-11-25", "--apply"], env=desk)
    assert result.exit_code == 1 and "'morgan' may not remove personal data (role manager)" in result.output
    wrong = CliRunner().invoke(main, ["anonymise", "--user", "root-admin", "--before", "2026-11-25", "--apply"],
                               env={**desk, "HELPDESK_PASSWORD": "not the password at all"})
    assert wrong.exit_code == 1 and "cannot remove personal data as 'root-admin': the password is wrong" in wrong.output
    assert count(db_session, select(Call).where(Call.caller_number == "removed")) == 0


def test_an_administrator_whose_password_another_set_chooses_their_own_before_removing_data(desk, db_session):
    set_password(db_session, "root-admin", "a password another administrator knows", temporary=True)
    result = CliRunner().invoke(main, ["anonymise", "--user", "root-admin", "--before", "2026-11-25", "--apply"],
                                env={**desk, "HELPDESK_PASSWORD": "a password another administrator knows"})
    assert result.exit_code == 1
    assert "cannot remove personal data as 'root-admin' yet: their password was set by an administrator" in " ".join(
        result.output.split())
    assert count(db_session, select(Call).where(Call.caller_number == "removed")) == 0


def test_only_values_that_say_nothing_of_a_person_are_kept_in_an_event():
    params = json.dumps([["CallSid", "CA1"], ["From", "+447700900338"], ["CallStatus", "completed"],
                         ["RecordingUrl", "https://api.twilio.com/x"], ["CallerName", "Amira Khan"],
                         ["To", "sip:1001@pbx.example.org;transport=tls"], ["Called", "client:amira"],
                         ["Caller", "SIP:amira@example.org"], ["ForwardedFrom", "tel:+447700900338"]])
    # Of an address, only its kind: a SIP code is a phone system's refusal only on a SIP leg.
    assert json.loads(blanked(params)) == [["CallSid", "CA1"], ["From", ""], ["CallStatus", "completed"],
                                           ["RecordingUrl", ""], ["CallerName", ""], ["To", "sip:"],
                                           ["Called", "client:"], ["Caller", "sip:"], ["ForwardedFrom", ""]]


def test_on_sqlite_what_is_removed_is_gone_from_the_file_too(tmp_path):
    # Whatever this SQLite build's default, the removal overwrites what it removes, and the
    # write-ahead log is emptied: a large email's attachment is not left on free pages.
    from sqlalchemy import event  # a local name: tests here call their events `event`

    path, secret = tmp_path / "helpdesk.db", b"X-Attachment: TOP-SECRET-PAYSLIP "
    upgrade(f"sqlite:///{path}")
    database = Database(f"sqlite:///{path}")
    with database.session() as session:
        seed(session, make_settings())
        with session.begin():
            session.execute(text("PRAGMA secure_delete = ON"))  # the set-up leaves nothing behind itself
            session.execute(InboundEmail.__table__.update().values(raw=secret * 3000))
            session.execute(Enquiry.__table__.update().values(status="closed"))
            session.execute(EmailAcknowledgement.__table__.update().values(status="sent"))
    database.dispose()
    database = Database(f"sqlite:///{path}")  # a build whose default is off
    event.listen(database.engine, "connect", lambda connection, _: connection.execute("PRAGMA secure_delete = OFF"))
    with database.session() as session:
        assert remove_personal_data(session, AFTER_THE_TEST_DAYS, apply=True, now=LATER).emails == 5
        assert empty_write_ahead_log(session)
        assert path.with_name("helpdesk.db-wal").stat().st_size == 0
    database.dispose()
    assert secret not in path.read_bytes()
    wal = path.with_name("helpdesk.db-wal")
    assert not wal.exists() or secret not in wal.read_bytes()


def test_on_sqlite_a_reader_keeps_the_log_from_being_emptied_without_the_removal_waiting_for_it(tmp_path):
    # The app reading meanwhile: the log is emptied later, and the connection still waits for
    # locks afterwards as the app's do (its busy timeout is put back).
    path = tmp_path / "helpdesk.db"
    upgrade(f"sqlite:///{path}")
    database = Database(f"sqlite:///{path}")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM audit_log").fetchone()
    with database.session() as session:
        with session.begin():  # written after the reader's snapshot: in the log until it is done
            session.add(AuditEntry(at=datetime(2026, 12, 1, tzinfo=timezone.utc), actor="helpdesk", action="test",
                                   detail="{}"))
        started = time.monotonic()
        assert not empty_write_ahead_log(session)
        assert time.monotonic() - started < SQLITE_WAIT_SECONDS / 10
        with session.begin():
            assert session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_WAIT_SECONDS * 1000
        reader.rollback()
        assert empty_write_ahead_log(session)
    reader.close()
    database.dispose()


def test_the_scheduler_removes_what_is_past_the_retention_period_a_few_chunks_a_run(app, db_session, seeded,
                                                                                    monkeypatch):
    settings = make_settings(retention={"personal_data_days": 31})
    job = scheduler.SweepJob(settings=settings, database=app.extensions["helpdesk.db"])
    [remover] = [each for each in scheduler.scheduled_jobs(job) if isinstance(each, scheduler.RetentionJob)]
    assert not any(isinstance(each, scheduler.RetentionJob) for each in scheduler.scheduled_jobs(
        scheduler.SweepJob(settings=make_settings(), database=app.extensions["helpdesk.db"])))
    monkeypatch.setattr(retention, "CHUNK", 1)
    monkeypatch.setattr(scheduler, "RETENTION_CHUNKS", 2)
    # 31 days after Tuesday 24 November 2026: the days before the 24th are past it, the 24th is not.
    remover.clock = lambda: datetime(2026, 12, 25, 12, tzinfo=timezone.utc)
    first = remover()
    assert first.held and not first.failed and not first.result.finished
    assert (first.result.calls_left, first.result.calls) == (1, 1)  # call 1's callback is open; call 2 goes
    # Each run goes on from where the last stopped, past what is still being worked: call 6, the
    # two open callbacks, the two open email enquiries, and the end of each table.
    runs = [remover() for _ in range(5)]
    assert True in [run.result.finished for run in runs]  # never, if each run began again at the start
    assert not remover().result.removed_any()
    with db_session.begin():
        numbers = dict(db_session.execute(select(Call.call_sid, Call.caller_number)).all())
        entries = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "personal_data.removed")).all()
    # Calls 2 (23 November) and 6 (the 22nd) go; 1 (its callback is open), 3, 4 and 5 (the 24th)
    # and 7 (the 25th) stay.
    assert sorted(sid for sid, number in numbers.items() if number == "removed") == [
        f"CA{n:032x}" for n in (2, 6)]
    assert {entry.actor for entry in entries} == {"helpdesk"} and len(entries) == sum(
        run.result.removed_any() for run in [first, *runs])
    assert json.loads(entries[0].detail)["setting"] == "retention.personal_data_days = 31"
    assert json.loads(entries[0].detail)["before"] == "2026-11-24"


def test_a_removal_out_of_chunks_goes_on_next_time_in_the_table_it_stopped_in(db_session, seeded, monkeypatch):
    monkeypatch.setattr(retention, "CHUNK", 1)
    resume_at = {}
    first = remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER, chunks=1, resume_at=resume_at)
    assert not first.finished and (first.calls, first.calls_left) == (0, 1)  # call 1: its callback is open
    second = remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER, chunks=1,
                                  resume_at=resume_at)
    assert not second.finished and second.calls == 1  # call 2, not the callbacks


def test_what_a_removal_counts_is_the_same_whatever_the_size_of_a_chunk(db_session, seeded, monkeypatch):
    whole = remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=False, now=LATER)
    monkeypatch.setattr(retention, "CHUNK", 2)
    assert remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=False, now=LATER) == whole


def test_scheduler_once_says_what_the_retention_period_removed(migrated_url, db_session, seeded, tmp_path):
    with db_session.begin():  # the seeded calls a year older: past 31 days, whatever today is
        for call in db_session.scalars(select(Call)):
            call.arrived_at, call.ended_at = call.arrived_at - timedelta(days=365), call.ended_at - timedelta(days=365)
    config = tmp_path / "helpdesk.toml"
    config.write_text('[hours]\nmonday = ["08:00-18:00"]\n\n[retention]\npersonal_data_days = 31\n')
    env = {"HELPDESK_CONFIG": str(config), "DATABASE_URL": migrated_url, "TWILIO_ACCOUNT_SID": "",
           "TWILIO_AUTH_TOKEN": ""}
    result = CliRunner().invoke(main, ["scheduler", "--once"], env=env)
    assert result.exit_code == 0, result.output
    # Calls 1, 4 and 5 have open callbacks; the callbacks and emails themselves are too recent.
    assert "Personal data past the retention period removed from 4 calls, 0 callbacks and 0 emails." in result.output


def test_a_late_webhook_for_a_removed_call_changes_nothing_and_stores_nobody(app, client, clock, db_session):
    """A voicemail's record is made of its RecordingUrl, and an answered call's agent of its leg's
    To: both blanked by the removal. A webhook that comes afterwards (Twilio retrying one, say)
    must not recompute the record from what is left, nor store the caller's number again."""
    miss_a_call(client, clock, 50, at(9, 0), caller=PERSON)
    post(client, "/twilio/voice/voicemail", {**inbound(sid(50), caller=PERSON), "CallStatus": "completed",
                                             "RecordingUrl": "https://api.twilio.com/x/RE1", "RecordingDuration": "12"})
    answer_a_call(client, clock, 51, at(9, 30), caller=OTHER)
    with db_session.begin():
        was = {c.call_sid: (c.outcome, c.agent, c.caller_type) for c in db_session.scalars(select(Call))}
    assert was[sid(50)][0] == "voicemail" and was[sid(51)][1] == "client:agent-1"
    with db_session.begin():
        db_session.execute(Callback.__table__.update().values(status="closed", closed_at=at(9, 45)))
    assert remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER).calls == 2

    clock.now = at(10, 0)
    for n, caller in ((50, PERSON), (51, OTHER)):  # the dial's action, delivered again
        assert post(client, "/twilio/voice/dial-action", {**inbound(sid(n), caller=caller),
                                                          "DialCallStatus": "completed"}).status_code == 200
    db_session.expire_all()
    with db_session.begin():
        assert {c.call_sid: (c.outcome, c.agent, c.caller_type) for c in db_session.scalars(select(Call))} == was
        assert set(db_session.scalars(select(Call.caller_number))) == {"removed"}
        assert db_session.scalar(select(func.count()).where(TwilioEvent.params.contains("+4477"))) == 0


def test_a_withheld_callers_call_still_says_withheld_and_is_left_alone_by_a_late_webhook(app, client, clock,
                                                                                          db_session):
    """"Withheld" says why no callback was owed for a missed call, on the pages and in a pack:
    it stays so after the removal, and the record is guarded as every removed call's is."""
    miss_a_call(client, clock, 60, at(9, 0), caller="anonymous")
    miss_a_call(client, clock, 61, at(9, 10), caller=PERSON)
    with db_session.begin():
        was = {c.call_sid: (c.outcome, c.caller_type, c.sla_result) for c in db_session.scalars(select(Call))}
        assert {c.call_sid: c.caller_number for c in db_session.scalars(select(Call))} == {sid(60): None,
                                                                                            sid(61): PERSON}
        db_session.execute(Callback.__table__.update().values(status="closed", closed_at=at(9, 45)))
    assert remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER).calls == 2
    with db_session.begin():
        numbers = {c.call_sid: c.caller_number for c in db_session.scalars(select(Call))}
    assert [fmt.mask_number(numbers[sid(n)]) for n in (60, 61)] == ["Withheld", "Removed"]
    assert [Redactor().number(numbers[sid(n)]) for n in (60, 61)] == ["withheld", "removed"]
    assert remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER).calls == 0  # done

    clock.now = at(10, 0)
    assert post(client, "/twilio/voice/dial-action", {**inbound(sid(60), caller="anonymous"),
                                                      "DialCallStatus": "completed"}).status_code == 200
    db_session.expire_all()
    with db_session.begin():
        assert {c.call_sid: (c.outcome, c.caller_type, c.sla_result) for c in db_session.scalars(select(Call))} == was
        assert db_session.get(Call, db_session.scalar(select(Call.id).where(Call.call_sid == sid(60)))).caller_number \
            == numbers[sid(60)]


def test_an_email_enquiry_waiting_for_a_callback_keeps_its_emails(desk, app, db_session):
    with db_session.begin():
        db_session.execute(EmailAcknowledgement.__table__.update().values(status="sent"))
        first = db_session.scalars(select(InboundEmail).order_by(InboundEmail.id)).first()
    settings = app.extensions["helpdesk.settings"]
    with app.extensions["helpdesk.db"].session() as session:
        with session.begin():
            user = session.scalars(select(User).where(User.username == "morgan")).one().id
        callback_needed(session, settings, first.enquiry_id, agent_id=user, now=first.received_at, seen=first.id,
                        number="07700 900999", note="Wants a call about it")
    removal = remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER)
    db_session.expire_all()
    with db_session.begin():
        kept = db_session.get(InboundEmail, first.id)
        assert kept.sender == ADDRESS and kept.raw != b""
    assert removal.emails_left >= 1 and (removal.emails, removal.acknowledgements) == (0, 0)


def test_events_of_no_call_are_found_a_window_at_a_time_and_a_call_that_never_ended_goes_in_the_end(
        db_session, monkeypatch):
    def utc(day, hour=10):
        return datetime(2026, 11, day, hour, tzinfo=timezone.utc)

    with db_session.begin():
        for n, day in enumerate((20, 21, 22, 27), start=1):  # the last is after the day
            db_session.add(TwilioEvent(received_at=utc(day), kind="agent_status", call_sid=f"CA{n:032d}",
                                       leg_sid=f"CA{n:032d}", fingerprint=f"{n:064d}",
                                       params=json.dumps([["CallSid", f"CA{n:032d}"], ["To", PERSON]])))
        for sid_, day in (("CA" + "8" * 32, 20), ("CA" + "9" * 32, 25)):  # no ending ever came
            db_session.add(Call(call_sid=sid_, arrived_at=utc(day), outcome="in_progress", in_hours=True,
                                countable=False, caller_number=PERSON, caller_type="customer"))
        db_session.add(Call(call_sid="CA" + "7" * 32, arrived_at=utc(25), ended_at=utc(25, 11), outcome="answered",
                            in_hours=True, countable=True, caller_number=PERSON, caller_type="customer"))
    monkeypatch.setattr(retention, "EVENT_WINDOW", 2)
    dry = remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=False, now=utc(26, 12))
    removal = remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=utc(26, 12))
    assert dry == removal and removal.events == 3 and (removal.calls, removal.calls_left) == (2, 1)
    with db_session.begin():
        named = set(db_session.scalars(select(TwilioEvent.call_sid).where(TwilioEvent.params.contains(PERSON))))
        numbers = dict(db_session.execute(select(Call.call_sid, Call.caller_number)).all())
    assert named == {f"CA{4:032d}"}  # after the day: kept
    # Five days with no ending: it will not get one. One day: it may yet. One that ended goes at once.
    assert numbers == {"CA" + "8" * 32: "removed", "CA" + "9" * 32: PERSON, "CA" + "7" * 32: "removed"}
    assert timedelta(days=1) < retention.UNFINISHED_FOR_GOOD < timedelta(days=5)


def test_a_removal_stopped_part_way_is_in_the_audit_log_with_what_it_had_done(desk, db_session, monkeypatch):
    with db_session.begin():
        db_session.execute(Callback.__table__.update().values(status="closed", closed_at=at(12, 0)))

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(retention, "_emails", interrupted)  # stopped (Ctrl-C) after the calls and callbacks
    result = anonymise(desk, "--before", "2026-11-25", "--apply")
    assert result.exit_code == 1 and "Stopped: personal data was removed from about 3 calls" in result.output
    with db_session.begin():
        [detail] = db_session.scalars(select(AuditEntry.detail).where(AuditEntry.action == "personal_data.removed"))
        assert db_session.scalar(select(func.count()).where(Call.caller_number == "removed")) == 3
    assert json.loads(detail)["stopped"] == "before the end" and json.loads(detail)["rows"]["calls"] == 3


def test_a_reply_to_an_enquiry_whose_sender_was_removed_is_answered_to_whoever_wrote(desk, app, db_session):
    with db_session.begin():
        db_session.execute(EmailAcknowledgement.__table__.update().values(status="sent"))
        db_session.execute(Enquiry.__table__.update().where(Enquiry.channel == "email").values(status="closed"))
    assert remove_personal_data(db_session, AFTER_THE_TEST_DAYS, apply=True, now=LATER).emails == 4
    with db_session.begin():
        reference = db_session.scalars(select(Enquiry.reference).where(Enquiry.channel == "email")
                                       .order_by(Enquiry.id)).first()
    store(app.extensions["helpdesk.db"], make_settings(email={"addresses": ["help@desk.example.org"]}),
          f"From: {ADDRESS}\r\nSubject: Re: [{reference}] still waiting\r\nMessage-ID: <9@example.net>\r\n\r\n"
          "Any news?\r\n".encode(), at=RECEIVED + timedelta(days=3))
    with app.extensions["helpdesk.db"].session() as session:
        [entry], _ = awaiting_response(session, RECEIVED + timedelta(days=3, minutes=1))
    assert entry.reference == reference and entry.sender == "a***@example.net"
    assert entry.other_senders == 0  # nobody else: "removed" is not another person writing
