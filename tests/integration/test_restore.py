"""After the database is put back to an older backup (`helpdesk db after-restore`), on SQLite and
PostgreSQL: no reference is given out twice, the lost window's calls in Twilio's call log are not
stored as failures, and mail read again from the mailbox is not acknowledged again."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from callbacks.email.ack_rules import HELD_BACK, LOST_IN_RESTORE
from callbacks.email.intake import store_inbound
from helpdesk.access_tokens import TokenRefused, make_token, revoke, token_user
from helpdesk.cli import main
from helpdesk.enquiries import allocate_reference
from helpdesk.models import (AccessToken, AuditEntry, Call, EmailAcknowledgement, Enquiry, ReferenceCounter, Restore,
                             SchedulerLease, TwilioEvent, User)
from helpdesk.restore import ACTION, RestoreError, record_restore
from helpdesk.users import Actor, add_user, set_password
from helpdesk.voice.lookup import FakeCallLookup
from helpdesk.voice.missed import find_missed
from tests.integration.compliance_data import add_email
from tests.integration.conftest import make_settings
from tests.integration.test_missed_calls import DESK, logged
from tests.integration.twilio_requests import sid

PASSWORD = "a-long-enough-password"
BACKUP = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)  # last night's backup
FAILED = datetime(2026, 11, 24, 14, 30, tzinfo=timezone.utc)  # the disk failed: the app was down from then
RESTORED = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)  # put back


def admin(database, role: str = "admin", name: str = "ada") -> int:
    with database.session() as session:
        return add_user(session, name, PASSWORD, role, now=BACKUP - timedelta(days=30)).id


def enquiries_on(database, day: datetime, count: int) -> None:
    """`count` enquiries opened during `day`'s morning, with the references the counter gave them."""
    with database.session() as session, session.begin():
        for n in range(count):
            session.add(Enquiry(reference=allocate_reference(session, 2026), channel="email",
                                opened_at=day.replace(hour=8) + timedelta(seconds=n)))


def counter(database, year: int) -> int:
    with database.session() as session:
        return session.scalar(select(ReferenceCounter.last).where(ReferenceCounter.year == year))


def test_the_references_move_on_past_any_given_out_since_the_backup_by_twice_the_busiest_day(database):
    user = admin(database)
    enquiries_on(database, BACKUP - timedelta(days=3), 700)  # the busiest day: 700 enquiries
    enquiries_on(database, BACKUP - timedelta(days=1), 200)
    last = counter(database, 2026)
    with database.session() as session:
        recorded = record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user,
                                  actor="ada")
    # 12 and a half hours lost: one day or part of one, twice the busiest day's 700, to the next thousand.
    assert [(m.year, m.last, m.now) for m in recorded.moved] == [(2026, last, last + 2000)]
    assert counter(database, 2026) == last + 2000
    with database.session() as session, session.begin():
        assert allocate_reference(session, 2026) == f"HD-2026-{last + 2001:06d}"
        restore = session.scalars(select(Restore)).one()
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == ACTION)).one()
    assert (restore.backup_taken_at, restore.lost_until, restore.restored_at, restore.recorded_by_id) == (
        BACKUP, FAILED, RESTORED, user)
    assert f'"moved_to": {last + 2000}' in audit.detail and audit.user_id == user


def test_a_restore_over_new_year_moves_both_years_on_and_a_quiet_desk_still_skips_a_thousand(database):
    user = admin(database)
    backup = datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)
    with database.session() as session:
        recorded = record_restore(session, backup_taken_at=backup, lost_until=backup + timedelta(hours=2),
                                  now=backup + timedelta(hours=3), user_id=user, actor="ada")
    assert [(m.year, m.now - m.last) for m in recorded.moved] == [(2026, 1000), (2027, 1000)]
    with database.session() as session, session.begin():
        assert allocate_reference(session, 2027) == "HD-2027-001001"


def test_the_backup_time_defaults_to_the_latest_record_and_an_earlier_one_is_refused(database):
    user = admin(database)
    with database.session() as session, session.begin():
        add_email(session, BACKUP - timedelta(minutes=10))
    with database.session() as session:
        with pytest.raises(RestoreError, match="holds a record of .* after the backup time given"):
            record_restore(session, backup_taken_at=BACKUP - timedelta(hours=1), lost_until=FAILED, now=RESTORED,
                           user_id=user, actor="ada")
        with pytest.raises(RestoreError, match="is not before the failure time"):
            record_restore(session, backup_taken_at=FAILED, lost_until=FAILED, now=RESTORED, user_id=user,
                           actor="ada")
        with pytest.raises(RestoreError, match="is in the future"):
            record_restore(session, backup_taken_at=BACKUP, lost_until=RESTORED + timedelta(hours=1), now=RESTORED,
                           user_id=user, actor="ada")
        recorded = record_restore(session, backup_taken_at=None, lost_until=FAILED, now=RESTORED, user_id=user,
                                  actor="ada")
        assert recorded.backup_taken_at == BACKUP - timedelta(minutes=10)
        with pytest.raises(RestoreError, match="is recorded already"):  # the same restore, twice
            record_restore(session, backup_taken_at=None, lost_until=FAILED, now=RESTORED, user_id=user,
                           actor="ada")


def test_the_app_running_after_the_restore_neither_hides_the_window_nor_goes_unmentioned(database):
    """Started on boot before the command: its records after the failure do not count against the
    backup time, and the command says the app ran."""
    user = admin(database)
    with database.session() as session, session.begin():
        add_email(session, BACKUP - timedelta(minutes=10))
        session.add(TwilioEvent(received_at=RESTORED - timedelta(minutes=5), kind="incoming", call_sid=sid(9),
                                leg_sid=sid(9), fingerprint="9" * 64, params="[]"))
    with database.session() as session:
        recorded = record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user,
                                  actor="ada")
    assert recorded.ran_since == RESTORED - timedelta(minutes=5)


def test_changes_to_users_are_not_taken_for_the_help_desks_activity(database):
    """An administrator given a password on the server to record the restore (after the failure),
    or a user added before the backup, neither moves the backup time nor says the app ran."""
    user = admin(database)
    with database.session() as session, session.begin():
        add_email(session, BACKUP - timedelta(minutes=10))
    with database.session() as session:
        add_user(session, "bea", PASSWORD, "agent", now=BACKUP - timedelta(minutes=1))
        with patch("helpdesk.users.now_utc", return_value=RESTORED - timedelta(minutes=2)):
            set_password(session, "ada", PASSWORD + " again", temporary=False)
        recorded = record_restore(session, backup_taken_at=None, lost_until=FAILED, now=RESTORED, user_id=user,
                                  actor="ada")
    assert recorded.backup_taken_at == BACKUP - timedelta(minutes=10) and recorded.ran_since is None


def test_a_running_scheduler_stops_the_command(database):
    user = admin(database)
    with database.session() as session, session.begin():
        session.add(SchedulerLease(name="sweep", holder="host:1:x", expires_at=RESTORED + timedelta(minutes=1)))
    with database.session() as session:
        with pytest.raises(RestoreError, match="a scheduler is running .* stop the app and the scheduler"):
            record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user,
                           actor="ada")


def test_acknowledgements_the_backup_still_had_to_send_are_held_back(database):
    user = admin(database)
    with database.session() as session, session.begin():
        owed = add_email(session, BACKUP - timedelta(minutes=2), status="pending", result=None)
        sent = add_email(session, BACKUP - timedelta(minutes=30))
        failing = add_email(session, BACKUP - timedelta(minutes=40), status="pending", result=None)
        failing.attempts, failing.last_error = 2, "the mail server refused it"
    with database.session() as session:
        recorded = record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user,
                                  actor="ada")
    assert recorded.held_back == 1
    with database.session() as session:
        acks = {ack.id: ack for ack in session.scalars(select(EmailAcknowledgement))}
    assert (acks[owed.id].status, acks[owed.id].last_error, acks[owed.id].next_attempt_at) == (
        "suppressed", HELD_BACK, None)
    assert acks[sent.id].status == "sent"
    assert (acks[failing.id].status, acks[failing.id].attempts) == ("pending", 2)  # left to its retries


def test_a_restore_revokes_every_access_token_as_one_revoked_in_the_lost_window_would_work_again(database):
    user = admin(database)
    auditor = admin(database, role="auditor", name="dana")
    made_at = BACKUP - timedelta(days=1)
    with database.session() as session:
        with session.begin():
            dana = session.get(User, auditor)
            session.expunge(dana)
        live = make_token(session, dana, "Monthly", 90, made_at).secret
        make_token(session, dana, "Old", 30, made_at - timedelta(days=40))  # run out before the restore: left alone
        revoked = make_token(session, dana, "Revoked", 90, made_at)
        revoke(session, dana, revoked.token.id, Actor("dana", auditor), made_at)

    with database.session() as session:
        recorded = record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user,
                                  actor="ada")

    assert recorded.tokens_revoked == 1
    with database.session() as session, session.begin():
        tokens = {token.name: token.revoked_at for token in session.scalars(select(AccessToken))}
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == ACTION)).one()
    assert tokens == {"Monthly": RESTORED, "Old": None, "Revoked": made_at}
    assert '"tokens_revoked": 1' in audit.detail
    with database.session() as session, pytest.raises(TokenRefused, match="has been revoked"):
        token_user(session, live, RESTORED + timedelta(minutes=1), ())


def test_the_lost_windows_calls_in_twilios_log_are_left_alone_and_the_others_still_found(app):
    database = app.extensions["helpdesk.db"]
    user = admin(database)
    with database.session() as session:
        record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user, actor="ada")
    lookup = FakeCallLookup()
    lookup.add(logged(sid(1), start=BACKUP + timedelta(hours=8)))  # answered, but its webhooks went with the window
    lookup.add(logged(sid(2), start=FAILED + timedelta(minutes=10)))  # the app was down: it never reached it
    lookup.add(logged(sid(3), start=RESTORED + timedelta(minutes=20)))  # after the restore: a real miss too
    lookup.add(logged(sid(4), start=BACKUP - timedelta(minutes=5)))  # before the backup, and not in it: a real miss
    report = find_missed(database, app.extensions["helpdesk.settings"], lookup, since=BACKUP - timedelta(hours=1),
                         until=RESTORED + timedelta(hours=1), now=RESTORED + timedelta(hours=2))
    assert (report.lost_in_restore, sorted(call.sid for call in report.found)) == (1, [sid(2), sid(3), sid(4)])
    with database.session() as session:
        assert sorted(session.scalars(select(Call.call_sid))) == [sid(2), sid(3), sid(4)]


@pytest.fixture
def settings():
    return make_settings(webhooks={"twilio_numbers": [DESK]})


def message(n: int) -> bytes:
    return (f"From: Customer {n} <customer{n}@example.net>\r\nTo: help@helpdesk.example.org\r\n"
            f"Subject: Question {n}\r\nMessage-ID: <q{n}@example.net>\r\n\r\nHello\r\n").encode()


def test_mail_received_in_the_lost_window_and_read_again_opens_an_enquiry_but_is_not_acknowledged_again(database):
    user = admin(database)
    with database.session() as session:
        record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user, actor="ada")
    settings = make_settings(email={"ack_within_minutes": 15})
    with database.session() as session, session.begin():
        again = store_inbound(session, message(1), source="imap", received_at=BACKUP + timedelta(hours=5),
                              settings=settings)
        early = store_inbound(session, message(3), source="imap", received_at=BACKUP - timedelta(minutes=5),
                              settings=settings)  # reached the mailbox before the backup, read after it
        new = store_inbound(session, message(2), source="imap", received_at=FAILED + timedelta(minutes=1),
                            settings=settings)  # while the app was down: never acknowledged
    assert again.enquiry_id is not None and again.decision == "new_enquiry"
    with database.session() as session:
        acks = {ack.inbound_email_id: ack for ack in session.scalars(select(EmailAcknowledgement))}
    assert (acks[again.inbound_email_id].status, acks[again.inbound_email_id].last_error) == ("suppressed", LOST_IN_RESTORE)
    assert acks[early.inbound_email_id].status == "suppressed"
    assert (acks[new.inbound_email_id].status, acks[new.inbound_email_id].last_error) == ("pending", None)


def run(url: str, *args: str, password: str = PASSWORD):
    return CliRunner().invoke(main, ["db", "after-restore", "--lost-until", "2026-11-24 14:30", *args], env={
        "DATABASE_URL": url, "HELPDESK_PASSWORD": password})


def test_the_command_needs_an_administrator_and_says_what_it_did(migrated_url, database):
    admin(database)
    admin(database, role="agent", name="abe")
    assert "'abe' may not record a restore (role agent): only an administrator may" in run(
        migrated_url, "--user", "abe").output
    assert "the password is wrong, or there is no such active user" in run(
        migrated_url, "--user", "ada", password="wrong-password-x").output
    refused = run(migrated_url, "--user", "ada", "--backup-taken", "2026-03-29 01:30")
    assert refused.exit_code == 2 and "did not happen in the UK" in refused.output
    assert "is not a UK time" in run(migrated_url, "--user", "ada", "--backup-taken", "last night").output
    assert "holds nothing from before the failure" in run(migrated_url, "--user", "ada").output  # nothing but users
    assert "--skip" in run(migrated_url, "--user", "ada", "--skip", "1").output  # fewer than a thousand
    with database.session() as session:
        assert session.scalars(select(Restore)).all() == []

    assert "is not a UK time" in CliRunner().invoke(main, [
        "db", "after-restore", "--lost-until", "2026-11-24 14:30:61", "--user", "ada"], env={
        "DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": PASSWORD}).output
    result = run(migrated_url, "--user", "ada", "--backup-taken", "2026-11-24 02:00", "--skip", "5000")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("Recorded: the database lost what it took in from 02:00 Tue 24 Nov 2026 (the backup) to 14:30 "
                        "Tue 24 Nov 2026 (the failure).")
    year = datetime.now(timezone.utc).year
    assert lines[1:-1][-1] == (f"References for {year}: the last given out was HD-{year}-000000; the next is "
                               f"HD-{year}-005001 (5,000 skipped).")
    assert "After a restore" in lines[-1]


def test_metrics_say_when_the_database_was_last_put_back(app, client):
    from tests.integration.test_metrics_endpoint import scrape, value

    assert value(scrape(client), "helpdesk_database_restored_timestamp_seconds") == 0
    database = app.extensions["helpdesk.db"]
    user = admin(database)
    with database.session() as session:
        record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user, actor="ada")
    assert value(scrape(client), "helpdesk_database_restored_timestamp_seconds") == RESTORED.timestamp()


def test_an_agent_can_send_an_acknowledgement_held_back_after_a_restore(app, client, clock):
    """"Send it", for a customer who never had one; a flood-guard one stays unsendable."""
    from callbacks.email.sending import AcknowledgementError, retry_acknowledgement

    database = app.extensions["helpdesk.db"]
    user = admin(database)
    with database.session() as session, session.begin():
        owed = add_email(session, BACKUP - timedelta(minutes=2), status="pending", result=None)
        limited = add_email(session, BACKUP - timedelta(minutes=3), status="suppressed", result=None)
    with database.session() as session:
        record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user, actor="ada")
    with database.session() as session:
        retry_acknowledgement(session, owed.id, RESTORED + timedelta(minutes=5))
        with pytest.raises(AcknowledgementError):
            retry_acknowledgement(session, limited.id, RESTORED + timedelta(minutes=5))
    with database.session() as session:
        ack = session.get(EmailAcknowledgement, owed.id)
        assert (ack.status, ack.next_attempt_at) == ("pending", RESTORED + timedelta(minutes=5))


def test_the_agents_page_offers_to_send_a_held_back_acknowledgement(app, client):
    from tests.integration.test_queue_page import PASSWORD as AGENT_PASSWORD, add_agent, text_of
    from tests.integration.test_users_and_login import sign_in

    database = app.extensions["helpdesk.db"]
    user = admin(database)
    with database.session() as session, session.begin():
        owed = add_email(session, BACKUP - timedelta(minutes=2), status="pending", result=None)
        reference = session.get(Enquiry, owed.enquiry_id).reference
    with database.session() as session:
        record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user, actor="ada")
    add_agent(app, "alice", "Alice Agent")
    assert sign_in(client, "alice", AGENT_PASSWORD).status_code == 302
    page = text_of(client.get("/queue"))
    assert "Owed when the backup put back was taken" in page and "Send it if the customer never had one." in page
    assert f'Send it<span class="visually-hidden"> (the acknowledgement for {reference})</span>' in page


def test_the_calls_and_service_levels_pages_say_what_a_restore_lost(app, client, db_session):
    """For each day and period the window touches, and for no other."""
    from tests.integration.test_users_and_login import make_user, sign_in

    database = app.extensions["helpdesk.db"]
    user = admin(database)
    with database.session() as session:
        record_restore(session, backup_taken_at=BACKUP, lost_until=FAILED, now=RESTORED, user_id=user, actor="ada")
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    lost = ("The database was restored from a backup, so what came in from 02:00:00 GMT to 14:30:00 GMT on "
            "Tuesday 24 November 2026 is missing from")
    assert f"{lost} this list and these figures." in client.get("/calls?day=2026-11-24").get_data(as_text=True)
    assert "restored from a backup" not in client.get("/calls?day=2026-11-23").get_data(as_text=True)

    page = client.get("/service-levels?from=2026-11-01&to=2026-11-23").get_data(as_text=True)

    def section(key: str) -> str:
        return page.split(f'id="{key}-title"')[1].split("</section>")[0]

    for key in ("today", "week", "month"):  # the test clock's today is 24 November
        assert f"{lost} these figures." in section(key)
    assert "restored from a backup" not in section("range")
