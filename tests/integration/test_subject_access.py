"""`helpdesk subject-access`: everything held about one caller or sender, on SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import json
import stat
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from helpdesk.cli import main
from helpdesk.models import AuditEntry, Callback, CallbackAttempt, InboundEmail, TwilioEvent
from helpdesk.users import add_user
from tests.integration.conftest import make_settings
from tests.integration.test_email_intake import RECEIVED, store
from tests.integration.test_queue_page import at, miss_a_call
from tests.integration.twilio_requests import sid

PASSWORD = "a long enough password"
PERSON = "+447700900338"
OTHER = "+447700900555"
ADDRESS = "amira.khan@example.net"
DESK = "help@desk.example.org"


@pytest.fixture
def desk(app, client, clock, db_session, migrated_url):
    """Two missed calls from PERSON (one callback attempted, with a note), one from OTHER; two
    emails from ADDRESS, one from somebody else acknowledged to ADDRESS, and one unrelated."""
    miss_a_call(client, clock, 1, at(10, 0), caller=PERSON)
    miss_a_call(client, clock, 2, at(10, 30), caller=OTHER)
    miss_a_call(client, clock, 3, at(11, 0), caller=PERSON)
    with db_session.begin():
        first = db_session.scalars(select(Callback).where(Callback.call_sid == sid(1))).one()
        db_session.add(CallbackAttempt(callback_id=first.id, started_at=at(11, 5), source="manual",
                                       outcome="no_answer", note="=Left a voicemail about the grant"))
    settings = make_settings(email={"addresses": [DESK]})
    emails = [
        f"From: Amira Khan <{ADDRESS}>\r\nSubject: Support worker hours\r\nMessage-ID: <1@example.net>\r\n\r\nHello\r\n",
        "From: AMIRA.KHAN@Example.NET\r\nSubject: New job\r\nMessage-ID: <2@example.net>\r\n\r\nAgain\r\n",
        f"From: noreply@forms.example\r\nReply-To: {ADDRESS}\r\nSubject: Web form\r\nMessage-ID: <3@forms.example>"
        "\r\n\r\nFrom the form\r\n",
        "From: someone@else.example\r\nSubject: Mine\r\nMessage-ID: <4@else.example>\r\n\r\nNot hers\r\n",
    ]
    database = app.extensions["helpdesk.db"]
    for n, raw in enumerate(emails):
        store(database, settings, raw.encode(), at=RECEIVED + timedelta(minutes=n))
    with database.session() as session:
        add_user(session, "root-admin", PASSWORD, "admin", display_name="Root")
        add_user(session, "morgan", PASSWORD, "manager", display_name="Morgan")
    return {"DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": PASSWORD}


def run(env, *args):
    return CliRunner().invoke(main, ["subject-access", "--user", "root-admin", *args], env=env)


def rows(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_a_callers_calls_events_callbacks_and_attempts_are_found_and_copied(desk, db_session, tmp_path):
    out = tmp_path / "request-17"
    result = run(desk, "--phone", "07700 900338", "--out", str(out))
    assert result.exit_code == 0, result.output
    with db_session.begin():
        events = db_session.scalar(select(func.count(TwilioEvent.id)).where(TwilioEvent.call_sid.in_([sid(1), sid(3)])))
    assert f"Held about the phone number {PERSON}:" in result.output
    for line in ("calls: 2 rows", "callbacks: 2 rows", "callback_attempts: 1 row", "enquiries: 2 rows",
                 f"twilio_events: {events} rows", "inbound_emails: 0 rows"):
        assert line in result.output
    assert "Enquiries: HD-2026-000001, HD-2026-000003" in result.output
    assert "voicemail recordings" in result.output and "This search is in the audit log." in result.output

    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in out.iterdir())
    calls = rows(out / "calls.csv")
    assert [c["call_sid"] for c in calls] == [sid(1), sid(3)] and {c["caller_number"] for c in calls} == {PERSON}
    assert {row["call_sid"] for row in rows(out / "twilio_events.csv")} == {sid(1), sid(3)}
    assert OTHER not in "".join(path.read_text() for path in out.glob("*.csv"))
    [attempt] = rows(out / "callback_attempts.csv")
    assert attempt["note"] == "'=Left a voicemail about the grant"  # shown as text, never run as a formula
    assert "Held elsewhere, and not in this copy:" in (out / "README.txt").read_text()
    # A table with nothing about them still says what it would hold.
    assert (out / "inbound_emails.csv").read_text().startswith("id,received_at,source,")

    with db_session.begin():
        [entry] = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "subject_access.search")).all()
        assert entry.actor == "root-admin"
        detail = json.loads(entry.detail)
    assert detail["searched_for"] == "phone number ending 338" and "900338" not in entry.detail
    assert detail["rows"]["calls"] == 2 and detail["copy_written_to"] == str(out)


def test_a_senders_emails_and_acknowledgements_are_found_however_the_address_was_written(desk, db_session,
                                                                                          tmp_path):
    out = tmp_path / "request-18"
    result = run(desk, "--email", "Amira.Khan@example.net ", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "inbound_emails: 3 rows" in result.output and "email_acknowledgements: 3 rows" in result.output
    assert "calls: 0 rows" in result.output
    with db_session.begin():
        stored = {row.id: row.raw for row in db_session.scalars(select(InboundEmail))}
    found = rows(out / "inbound_emails.csv")
    assert [row["subject"] for row in found] == ["Support worker hours", "New job", "Web form"]
    assert "raw" not in found[0]  # each email as received is its own file, byte for byte
    for row in found:
        assert (out / f"email-{row['id']}.eml").read_bytes() == stored[int(row["id"])]
    assert {row["to_address"].lower() for row in rows(out / "email_acknowledgements.csv")} == {ADDRESS}


def test_form_mail_naming_the_sender_only_in_reply_to_is_found_and_look_alike_addresses_are_not(desk, app, tmp_path):
    settings = make_settings(email={"addresses": [DESK]})
    database = app.extensions["helpdesk.db"]
    more = [
        # A form's follow-up quoting the first form email's enquiry: joined, never acknowledged.
        f"From: noreply@forms.example\r\nReply-To: {ADDRESS}\r\nSubject: Re: HD-2026-000003 more\r\n"
        "Message-ID: <5@forms.example>\r\n\r\nMore\r\n",
        # A form that marks its mail automatic: stored, no enquiry, never acknowledged.
        f"From: noreply@forms.example\r\nReply-To: {ADDRESS.upper()}\r\nAuto-Submitted: auto-generated\r\n"
        "Subject: Form\r\nMessage-ID: <6@forms.example>\r\n\r\nForm\r\n",
        # Somebody else, whose address differs by one character where a LIKE pattern has a wildcard.
        "From: amiraxkhan@example.net\r\nSubject: Not her\r\nMessage-ID: <7@example.net>\r\n\r\nx\r\n",
    ]
    for n, raw in enumerate(more):
        store(database, settings, raw.encode(), at=RECEIVED + timedelta(minutes=10 + n))
    result = run(desk, "--email", "amira_khan@example.net")  # the look-alike: only its own email
    assert result.exit_code == 0 and "inbound_emails: 0 rows" in result.output
    out = tmp_path / "request-19"
    assert run(desk, "--email", ADDRESS, "--out", str(out)).exit_code == 0
    subjects = [row["subject"] for row in rows(out / "inbound_emails.csv")]
    assert subjects == ["Support worker hours", "New job", "Web form", "Re: HD-2026-000003 more", "Form"]


def test_the_calls_of_callbacks_placed_to_the_caller_are_found_though_their_events_do_not_name_them(
        desk, db_session, tmp_path):
    placed = "CA" + "e" * 32
    with db_session.begin():
        callback = db_session.scalars(select(Callback).where(Callback.call_sid == sid(3))).one()
        db_session.add(CallbackAttempt(callback_id=callback.id, started_at=at(11, 20), source="twilio",
                                       call_sid=placed, outcome="reached"))
        db_session.add(TwilioEvent(received_at=at(11, 25), kind="callback_dial", call_sid=placed, leg_sid=placed,
                                   fingerprint="f" * 64, params=json.dumps([["CallSid", placed],
                                                                            ["DialCallDuration", "300"]])))
    out = tmp_path / "request-20"
    assert run(desk, "--phone", PERSON, "--out", str(out)).exit_code == 0
    assert placed in {row["call_sid"] for row in rows(out / "twilio_events.csv")}


def test_a_copy_whose_search_cannot_be_audited_is_not_left_behind(desk, migrated_url, tmp_path):
    from tests.integration.test_personal_data_in_logs import refuse_inserts

    refuse_inserts(migrated_url, "audit_log")
    out = tmp_path / "request-21"
    result = run(desk, "--phone", PERSON, "--out", str(out))
    assert result.exit_code == 1 and "database error" in result.output
    assert not out.exists()


def test_without_out_nothing_is_written_and_the_search_is_still_audited(desk, db_session, tmp_path):
    result = run(desk, "--phone", "+44 7700 900555")
    assert result.exit_code == 0, result.output
    assert "calls: 1 row" in result.output and "A copy of every row" not in result.output
    with db_session.begin():
        detail = json.loads(db_session.scalars(select(AuditEntry.detail).where(
            AuditEntry.action == "subject_access.search")).one())
    assert detail["copy_written_to"] is None and detail["searched_for"] == "phone number ending 555"


@pytest.mark.parametrize("args, message", [
    (["--phone", "call me"], "'call me' is not a phone number"),
    (["--email", "not an address"], "'not an address' is not an email address"),
    (["--email", "a@b.example\x00"], "is not an email address"),
    ([], "give one of --phone and --email"),
    (["--phone", "07700 900338", "--email", ADDRESS], "give one of --phone and --email"),
])
def test_what_cannot_be_searched_for_is_refused_with_the_reason(desk, args, message):
    result = run(desk, *args)
    assert result.exit_code == 1 and message in result.output


def test_only_an_administrator_may_search_and_an_existing_directory_is_never_written_into(desk, db_session,
                                                                                         tmp_path):
    refused = CliRunner().invoke(main, ["subject-access", "--user", "morgan", "--phone", PERSON], env=desk)
    assert refused.exit_code == 1 and "'morgan' may not search for a person's data (role " in refused.output
    (tmp_path / "taken").mkdir()
    taken = run(desk, "--phone", PERSON, "--out", str(tmp_path / "taken"))
    assert taken.exit_code == 1 and "already exists: give a new directory" in taken.output
    with db_session.begin():
        assert db_session.scalar(select(func.count(AuditEntry.id)).where(
            AuditEntry.action == "subject_access.search")) == 0
