"""Sending acknowledgements from the database to a real SMTP server (aiosmtpd), on SQLite and PostgreSQL.

Emails arrive through the intake (`store_inbound`), which owes one acknowledgement per new
enquiry; `send_due_acknowledgements` sends them, retries failures and records the outcome.
"""
from __future__ import annotations

import imaplib
import logging
import ssl
import time
from datetime import datetime, timedelta, timezone
from threading import Barrier, Thread

import pytest
from sqlalchemy import select, update

import callbacks.email.sending as sending
import callbacks.scheduler as scheduler_module
from callbacks.email.intake import store_inbound
from callbacks.email.sending import AcknowledgementError, retry_acknowledgement, send_due_acknowledgements
from callbacks.notify import FakeNotifier
from callbacks.scheduler import (
    ACK_JOB_ID,
    IMAP_JOB_ID,
    LEASE,
    AcknowledgementJob,
    MailboxJob,
    SweepJob,
    build_scheduler,
)
from callbacks.smtp import FakeSender, SmtpSender
from callbacks.sweep import acquire_lease
from helpdesk.db import Database
from helpdesk.migrate import upgrade
from helpdesk.models import EmailAcknowledgement, Enquiry, InboundEmail, SchedulerLease
from servers import DOVECOT_DIRS, DovecotServer, find_program, free_port, skip_or_fail
from tests.integration.conftest import OPEN_TIME, FakeClock, make_settings
from tests.unit import test_notify
from tests.unit.test_notify import SmtpServer

T = OPEN_TIME  # Tuesday 24 November 2026, 10:00 UK time
DESK = "help@helpdesk.example.org"
certificate = test_notify.certificate  # the self-signed certificate fixture for STARTTLS and SMTPS


@pytest.fixture
def database(migrated_url):
    database = Database(migrated_url)
    yield database
    database.dispose()


def desk_settings(server: SmtpServer | None = None, security: str = "none", **tables):
    smtp = {"host": "127.0.0.1", "port": server.port if server else free_port(), "security": security}
    return make_settings(helpdesk={"name": "Access to Work help desk", "phone": "0800 121 7479"},
                         email={"addresses": [DESK], **tables.pop("email", {})}, smtp=smtp, **tables)


def raw_email(n: int = 1, *, sender: str = "jo.bloggs@example.org", subject: str = "Help with my grant",
              references: str | None = None, body: str = "Hello, I need help with my claim.\r\n") -> bytes:
    headers = [f"From: Jo Bloggs <{sender}>", f"To: {DESK}", f"Subject: {subject}",
               f"Message-ID: <original-{n}@mail.example.org>", "Date: Tue, 24 Nov 2026 09:59:00 +0000"]
    if references:
        headers.append(f"References: {references}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def receive(database: Database, settings, raw: bytes, at: datetime):
    with database.session() as session, session.begin():
        return store_inbound(session, raw, source="imap", received_at=at, settings=settings)


def send(database: Database, sender, settings, now: datetime, **kwargs):
    with database.session() as session:
        return send_due_acknowledgements(session, sender, settings, now, **kwargs)


def acknowledgements(database: Database) -> list[EmailAcknowledgement]:
    with database.session() as session:
        return list(session.scalars(select(EmailAcknowledgement).order_by(EmailAcknowledgement.id)))


# --------------------------------------------------------------------------- a real SMTP server


def test_the_acknowledgement_reaches_a_real_smtp_server_threaded_with_the_reference(database):
    with SmtpServer() as server:
        settings = desk_settings(server)
        # A folded References header, as mail clients write long ones.
        raw = raw_email(references="<first@mail.example.org>\r\n <second@mail.example.org>")
        intake = receive(database, settings, raw, T)
        clock = FakeClock(T + timedelta(seconds=20))
        report = send(database, SmtpSender.from_settings(settings, {}), settings, clock.now, clock=clock)
        [(envelope_from, recipients, message)] = server.mailbox.messages
    assert (report.sent, report.retrying, report.gave_up) == (1, 0, 0)
    assert envelope_from == DESK and recipients == ["jo.bloggs@example.org"]
    assert message["From"].addresses[0].addr_spec == DESK
    assert message["From"].addresses[0].display_name == "Access to Work help desk"
    assert message["To"] == "jo.bloggs@example.org"
    assert message["Subject"] == f"We have your email [{intake.reference}]: Help with my grant"
    assert message["In-Reply-To"] == "<original-1@mail.example.org>"
    assert message["References"].split() == [
        "<first@mail.example.org>", "<second@mail.example.org>", "<original-1@mail.example.org>"]
    assert message["Auto-Submitted"] == "auto-replied" and message["X-Auto-Response-Suppress"] == "All"
    text = message.get_body(("plain",)).get_content()
    assert f"Your reference is {intake.reference}." in text
    assert "Monday, Tuesday, Thursday and Friday: 8am to 6pm." in text
    assert "You can also phone us on 0800 121 7479." in text
    [ack] = acknowledgements(database)
    assert (ack.status, ack.attempts, ack.sent_at, ack.sla_result) == ("sent", 1, clock.now, "met")
    assert ack.message_id == message["Message-ID"] and ack.claimed_at is None and ack.next_attempt_at is None


def test_a_reply_to_the_acknowledgement_joins_the_enquiry_and_is_not_acknowledged_again(database):
    with SmtpServer() as server:
        settings = desk_settings(server)
        first = receive(database, settings, raw_email(1), T)
        send(database, SmtpSender.from_settings(settings, {}), settings, T + timedelta(seconds=15))
        [(_, _, ours)] = server.mailbox.messages
        reply = raw_email(2, subject=f"Re: {ours['Subject']}", references=ours["Message-ID"])
        second = receive(database, settings, reply, T + timedelta(minutes=30))
        report = send(database, SmtpSender.from_settings(settings, {}), settings, T + timedelta(minutes=31))
        assert len(server.mailbox.messages) == 1
    assert (second.decision, second.enquiry_id) == ("joined", first.enquiry_id)
    assert report.sent == 0 and len(acknowledgements(database)) == 1


def test_starttls_with_the_credentials_from_the_environment(database, certificate):
    server_tls, client_tls = certificate
    with SmtpServer(starttls=server_tls, auth=True) as server:
        settings = desk_settings(server, security="starttls")
        receive(database, settings, raw_email(), T)
        sender = SmtpSender.from_settings(settings, {"SMTP_USERNAME": "alerts", "SMTP_PASSWORD": "s3cret-passw0rd"},
                                          ssl_context=client_tls)
        assert send(database, sender, settings, T).sent == 1
        assert server.mailbox.logins == [(b"alerts", b"s3cret-passw0rd")] and len(server.mailbox.messages) == 1


def test_a_login_to_a_relay_that_takes_none_is_named_as_the_problem(database):
    from callbacks.smtp import MailError

    with SmtpServer() as server:  # no AUTH offered, as a local relay
        sender = SmtpSender.from_settings(desk_settings(server), {"SMTP_USERNAME": "alerts", "SMTP_PASSWORD": "pw"})
        with pytest.raises(MailError) as raised:
            sender.send_message(ack_like_message())
        assert not server.mailbox.messages
    assert "does not take a login (it offers no AUTH): for a relay that needs none, leave SMTP_USERNAME and " \
        "SMTP_PASSWORD unset" in str(raised.value)


def ack_like_message():
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = DESK, "jo.bloggs@example.org", "Test"
    message.set_content("Hello.")
    return message


def test_smtps_delivers_the_acknowledgement_over_implicit_tls(database, certificate):
    server_tls, client_tls = certificate
    with SmtpServer(implicit_tls=server_tls) as server:
        settings = desk_settings(server, security="ssl")
        intake = receive(database, settings, raw_email(), T)
        assert send(database, SmtpSender.from_settings(settings, {}, ssl_context=client_tls), settings, T).sent == 1
        assert intake.reference in server.mailbox.messages[0][2]["Subject"]


# --------------------------------------------------------------------------- failures and retries


def test_a_refusing_server_is_retried_with_back_off_then_failed_and_an_agent_can_try_again(database, caplog):
    with SmtpServer() as server:
        settings = desk_settings(server, email={"retry_spacing_minutes": [1, 5], "max_send_attempts": 3})
        intake = receive(database, settings, raw_email(sender="jo.bloggs@example.org"), T)
        sender = SmtpSender.from_settings(settings, {})
        server.mailbox.reply = "451 4.3.0 Mailbox of jo.bloggs@example.org temporarily unavailable"
        with caplog.at_level(logging.WARNING, logger="callbacks.email.sending"):
            assert send(database, sender, settings, T).retrying == 1
        [ack] = acknowledgements(database)
        assert (ack.status, ack.attempts, ack.next_attempt_at) == ("pending", 1, T + timedelta(minutes=1))
        assert ack.last_error == f"127.0.0.1:{server.port} answered 451: 4.3.0 Mailbox of [address] temporarily unavailable"
        assert ack.claimed_at is None and ack.sent_at is None
        assert "jo.bloggs" not in caplog.text
        assert send(database, sender, settings, T + timedelta(seconds=59)).retrying == 0  # not due yet
        assert send(database, sender, settings, T + timedelta(minutes=1)).retrying == 1
        assert acknowledgements(database)[0].next_attempt_at == T + timedelta(minutes=6)
        assert send(database, sender, settings, T + timedelta(minutes=6)).gave_up == 1
        [ack] = acknowledgements(database)
        assert (ack.status, ack.attempts, ack.next_attempt_at) == ("failed", 3, None)
        assert send(database, sender, settings, T + timedelta(hours=2)).gave_up == 0  # no more automatic tries

        server.mailbox.reply = None
        with database.session() as session:
            assert retry_acknowledgement(session, ack.id, T + timedelta(hours=3)) == intake.reference
        assert send(database, sender, settings, T + timedelta(hours=3)).sent == 1
        assert len(server.mailbox.messages) == 1
    [ack] = acknowledgements(database)
    assert (ack.status, ack.attempts, ack.sla_result) == ("sent", 4, "late")


def test_a_server_that_is_down_is_retried_and_the_acknowledgement_goes_once_it_is_back(database):
    server = SmtpServer()  # its port is chosen, nothing listens there yet
    settings = desk_settings(server)
    receive(database, settings, raw_email(), T)
    sender = SmtpSender.from_settings(settings, {})
    assert send(database, sender, settings, T).retrying == 1
    assert "could not reach the mail server at 127.0.0.1:" in acknowledgements(database)[0].last_error
    with server:
        assert send(database, sender, settings, T + timedelta(minutes=1)).sent == 1
        assert len(server.mailbox.messages) == 1
    assert acknowledgements(database)[0].sla_result == "met"


def test_after_a_short_outage_retries_waiting_out_a_back_off_go_once_a_send_succeeds(database):
    server = SmtpServer()  # down until the with block
    settings = desk_settings(server, email={"retry_spacing_minutes": [1, 5, 15, 60], "max_send_attempts": 8})
    receive(database, settings, raw_email(1, sender="ann@example.org"), T)
    sender = SmtpSender.from_settings(settings, {})
    for minute in (0, 1, 6):
        assert send(database, sender, settings, T + timedelta(minutes=minute)).retrying == 1
    # The third wait (15 minutes) would pass the due time (T + 15): it comes a minute before.
    assert acknowledgements(database)[0].next_attempt_at == T + timedelta(minutes=14)
    with server:
        receive(database, settings, raw_email(2, sender="ben@example.org"), T + timedelta(minutes=8))
        assert send(database, sender, settings, T + timedelta(minutes=8)).sent == 1  # the new one
        assert send(database, sender, settings, T + timedelta(minutes=8, seconds=15)).sent == 1  # then Ann's
        assert len(server.mailbox.messages) == 2
    assert [a.sla_result for a in acknowledgements(database)] == ["met", "met"]


def test_an_agent_can_send_one_waiting_to_retry_at_once(database):
    server = SmtpServer()
    settings = desk_settings(server, email={"retry_spacing_minutes": [10], "max_send_attempts": 5})
    intake = receive(database, settings, raw_email(), T)
    sender = SmtpSender.from_settings(settings, {})
    assert send(database, sender, settings, T).retrying == 1
    [ack] = acknowledgements(database)
    with server:
        with database.session() as session:
            assert retry_acknowledgement(session, ack.id, T + timedelta(minutes=2)) == intake.reference
        assert send(database, sender, settings, T + timedelta(minutes=2)).sent == 1
    assert acknowledgements(database)[0].sla_result == "met"


def test_a_refusal_for_good_fails_at_once_rather_than_after_hours_of_retries(database):
    with SmtpServer() as server:
        settings = desk_settings(server, email={"retry_spacing_minutes": [1, 5, 15, 60], "max_send_attempts": 8})
        receive(database, settings, raw_email(), T)
        server.mailbox.reply = "550 5.1.1 No such user here"
        assert send(database, SmtpSender.from_settings(settings, {}), settings, T).gave_up == 1
    [ack] = acknowledgements(database)
    assert (ack.status, ack.attempts, ack.next_attempt_at) == ("failed", 1, None)
    assert "answered 550" in ack.last_error


def test_an_internationalised_domain_is_sent_in_its_ascii_form_and_a_local_part_the_server_cannot_take_fails(
        database):
    with SmtpServer(smtputf8=False) as server:  # as many relays do not
        settings = desk_settings(server)
        receive(database, settings, raw_email(1, sender="bjorn@bücher.example"), T)
        receive(database, settings, raw_email(2, sender="josé.núñez@correo.example"), T)
        report = send(database, SmtpSender.from_settings(settings, {}), settings, T)
        assert (report.sent, report.gave_up) == (1, 1)
        [(_, recipients, _)] = server.mailbox.messages
    assert recipients == ["bjorn@xn--bcher-kva.example"]
    failed = [a for a in acknowledgements(database) if a.status == "failed"]
    assert len(failed) == 1 and "SMTPUTF8" in failed[0].last_error


def test_a_manual_retry_is_refused_unless_the_acknowledgement_has_failed(database):
    settings = desk_settings()
    receive(database, settings, raw_email(), T)
    [ack] = acknowledgements(database)
    with database.session() as session, pytest.raises(AcknowledgementError, match="has not failed"):
        retry_acknowledgement(session, ack.id, T)
    with database.session() as session, pytest.raises(AcknowledgementError, match="no such"):
        retry_acknowledgement(session, ack.id + 100, T)


# --------------------------------------------------------------------------- never twice, never wrongly


def test_running_the_job_again_never_sends_a_second_acknowledgement(database):
    sender, settings = FakeSender(), desk_settings()
    receive(database, settings, raw_email(1), T)
    receive(database, settings, raw_email(1), T + timedelta(seconds=5))  # the same message delivered again
    for seconds in (0, 0, 15, 3600):
        send(database, sender, settings, T + timedelta(seconds=seconds))
    assert len(sender.messages) == 1 and sender.attempts == 1


def test_two_senders_at_once_on_postgresql_send_each_acknowledgement_exactly_once(postgres_url):
    upgrade(postgres_url)
    with SmtpServer() as server:
        settings = desk_settings(server, email={"per_sender_limit": 1000})
        setup = Database(postgres_url)
        references = {receive(setup, settings, raw_email(n), T).reference for n in range(1, 41)}
        setup.dispose()
        start, reports = Barrier(2), []

        def sender_loop() -> None:
            database = Database(postgres_url)
            start.wait()
            try:
                while True:
                    report = send(database, SmtpSender.from_settings(settings, {}), settings, T, limit=5)
                    reports.append(report)
                    if not report.sent:
                        return
            finally:
                database.dispose()

        threads = [Thread(target=sender_loop) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        subjects = [message["Subject"] for _, _, message in server.mailbox.messages]
    assert len(subjects) == 40
    assert sorted(subject.split("[")[1].split("]")[0] for subject in subjects) == sorted(references)
    assert sum(report.sent for report in reports) == 40
    check = Database(postgres_url)
    statuses = {ack.status for ack in acknowledgements(check)}
    check.dispose()
    assert statuses == {"sent"}


def test_a_claim_held_by_another_sender_is_left_alone_until_it_goes_stale(database):
    sender, settings = FakeSender(), desk_settings()
    receive(database, settings, raw_email(), T)
    with database.session() as session, session.begin():
        session.execute(update(EmailAcknowledgement).values(claimed_at=T))  # a sender that stopped mid-send
    assert send(database, sender, settings, T + timedelta(minutes=4)).sent == 0
    assert send(database, sender, settings, T + timedelta(minutes=5, seconds=1)).sent == 1
    assert len(sender.messages) == 1


def test_a_run_that_outlasts_the_stale_time_keeps_its_claims_fresh_so_no_other_sender_sends_them_too(database):
    settings = desk_settings(email={"per_sender_limit": 1000})
    for n in range(1, 3):
        receive(database, settings, raw_email(n), T)
    clock = FakeClock(T)
    second = FakeSender()

    class SlowServer(FakeSender):
        def send_message(self, message) -> None:
            clock.advance(200)  # a very slow server: by the second message the run has lasted 400 s
            super().send_message(message)
            if len(self.messages) == 2:  # meanwhile another scheduler (its lease ran out) sends what it can
                send(database, second, settings, clock.now, clock=lambda: clock.now)

    first = SlowServer()
    assert send(database, first, settings, T, clock=lambda: clock.now).sent == 2
    assert second.messages == []  # the second claim was 200 s old, not stale, though the run began 400 s before
    assert {ack.status for ack in acknowledgements(database)} == {"sent"}


def test_an_acknowledgement_for_an_email_that_opened_no_enquiry_is_suppressed_not_sent(database):
    sender, settings = FakeSender(), desk_settings()
    receive(database, settings, raw_email(1), T)
    receive(database, settings, raw_email(2, sender="jane@example.org"), T)
    with database.session() as session, session.begin():
        first, second = session.scalars(select(EmailAcknowledgement).order_by(EmailAcknowledgement.id))
        # A row the intake would never write: the guard behind its decision.
        session.execute(update(InboundEmail).where(InboundEmail.id == first.inbound_email_id)
                        .values(decision="auto_reply"))
        second.to_address = DESK.upper()
    report = send(database, sender, settings, T)
    assert (report.sent, report.suppressed) == (0, 2) and sender.attempts == 0
    first, second = acknowledgements(database)
    assert (first.status, first.last_error) == ("suppressed", "the email's decision is auto_reply, not new_enquiry")
    assert (second.status, second.last_error) == ("suppressed", "the address is one of the help desk's own")


# --------------------------------------------------------------------------- on time or late


@pytest.mark.parametrize("delay, result", [(timedelta(minutes=15), "met"), (timedelta(minutes=15, seconds=1), "late")])
def test_the_acknowledgement_is_judged_against_ack_within_from_the_emails_receipt(database, delay, result):
    sender, settings = FakeSender(), desk_settings(email={"ack_within_minutes": 15})
    receive(database, settings, raw_email(), T)
    clock = FakeClock(T + delay)
    send(database, sender, settings, clock.now, clock=clock)
    [ack] = acknowledgements(database)
    assert (ack.received_at, ack.due_at, ack.sent_at, ack.sla_result) == (T, T + timedelta(minutes=15), T + delay, result)


def test_the_time_the_server_accepted_the_message_is_what_counts(database):
    settings = desk_settings(email={"ack_within_minutes": 15})
    receive(database, settings, raw_email(), T)
    clock = FakeClock(T + timedelta(minutes=14))

    class SlowSender(FakeSender):
        def send_message(self, message):
            clock.advance(120)  # the server took two minutes to accept it
            super().send_message(message)

    send(database, SlowSender(), settings, clock.now, clock=clock)
    [ack] = acknowledgements(database)
    assert (ack.sent_at, ack.sla_result) == (T + timedelta(minutes=16), "late")


def test_without_a_mail_server_nothing_is_tried_and_this_is_logged_once(database, monkeypatch, caplog):
    monkeypatch.setattr(sending, "_said_not_configured", set())
    settings = make_settings(email={"addresses": [DESK]})
    receive(database, settings, raw_email(), T)
    sender = FakeSender()
    with caplog.at_level(logging.WARNING, logger="callbacks.email.sending"):
        assert send(database, sender, settings, T).skipped
        assert send(database, sender, settings, T + timedelta(minutes=1)).skipped
    assert sender.attempts == 0 and acknowledgements(database)[0].status == "pending"
    assert sum("smtp.host is not set" in r.getMessage() for r in caplog.records) == 1


def test_a_huge_message_is_acknowledged_from_its_headers_alone(database):
    sender, settings = FakeSender(), desk_settings()
    intake = receive(database, settings, raw_email(body="x" * 3_000_000 + "\r\n", references="<root@mail.example.org>"), T)
    assert send(database, sender, settings, T).sent == 1
    [message] = sender.messages
    assert message["References"].split() == ["<root@mail.example.org>", "<original-1@mail.example.org>"]
    with database.session() as session:
        assert session.scalar(select(Enquiry.reference).where(Enquiry.id == intake.enquiry_id)) in message["Subject"]


# --------------------------------------------------------------------------- the scheduler's jobs


def test_the_scheduler_sends_acknowledgements_every_15_seconds_and_polls_imap_only_when_configured(app):
    scheduler = build_scheduler(app, background=False, sender=FakeSender())
    ack_job = scheduler.get_job(ACK_JOB_ID)
    assert ack_job.trigger.interval == timedelta(seconds=15) and isinstance(ack_job.func, AcknowledgementJob)
    assert (ack_job.coalesce, ack_job.max_instances, ack_job.misfire_grace_time) == (True, 1, None)
    assert scheduler.get_job(IMAP_JOB_ID) is None
    settings = desk_settings(email={"imap": {"host": "127.0.0.1", "poll_seconds": 45}})
    sweep_job = SweepJob(settings=settings, database=Database(app.config["DATABASE_URL"]))
    imap_job = build_scheduler(sweep_job, background=False).get_job(IMAP_JOB_ID)
    sweep_job.database.dispose()
    assert imap_job.trigger.interval == timedelta(seconds=45) and isinstance(imap_job.func, MailboxJob)
    assert abs(imap_job.next_run_time - datetime.now(timezone.utc)) < timedelta(seconds=5)  # at start


def test_the_acknowledgement_job_sends_under_its_own_lease_through_a_real_smtp_server(database):
    with SmtpServer() as server:
        settings = desk_settings(server)
        receive(database, settings, raw_email(1), T)
        clock = FakeClock(T + timedelta(seconds=10))
        # Another scheduler holds the acknowledgements' lease: this one sends nothing.
        with database.session() as session:
            assert acquire_lease(session, "email.acks", "scheduler-b", clock.now, 120)
        job = AcknowledgementJob(settings=settings, database=database, clock=clock, holder="scheduler-a")
        run = job()
        assert (run.held, run.emailed, server.mailbox.messages) == (False, 0, [])
        # The sweep's lease is another lease: holding it does not stop acknowledgements.
        with database.session() as session:
            assert acquire_lease(session, LEASE, "scheduler-b", clock.now, 120)
        clock.advance(121)
        run = job()
        assert (run.held, run.failed, run.emailed, run.result.sent) == (True, False, 1, 1)
        assert len(server.mailbox.messages) == 1
    assert acknowledgements(database)[0].sent_at == clock.now


def test_a_failing_acknowledgement_run_is_logged_without_personal_data(database, monkeypatch, caplog):
    settings = desk_settings()

    def broken(*args, **kwargs):
        raise RuntimeError("cannot send to jo.bloggs@example.org")

    monkeypatch.setattr(scheduler_module, "send_due_acknowledgements", broken)
    job = AcknowledgementJob(settings=settings, database=database, clock=FakeClock(), sender=FakeSender())
    with caplog.at_level(logging.ERROR, logger="callbacks.scheduler"):
        run = job()
    assert run.failed and "the sending of email acknowledgements failed; it will run again in 15 s" in caplog.text
    assert "jo.bloggs" not in caplog.text and "[address]" in caplog.text


def test_the_mailbox_job_polls_with_the_imap_credentials_from_the_environment_under_its_lease(database):
    settings = desk_settings(email={"imap": {"host": "127.0.0.1", "poll_seconds": 30}})
    calls = []

    def poll(db, settings_given, **kwargs):
        calls.append((db, settings_given, kwargs))
        return "polled"

    environ = {"IMAP_USERNAME": "enquiries", "IMAP_PASSWORD": "imap-pass"}
    clock = FakeClock()
    first = MailboxJob(settings=settings, database=database, clock=clock, holder="a", environ=environ, poll=poll)
    second = MailboxJob(settings=settings, database=database, clock=clock, holder="b", environ=environ, poll=poll)
    assert first().result == "polled"
    assert second().held is False  # one poller at a time
    clock.advance(settings.scheduler.lease_seconds + 1)
    assert first().result == "polled"
    [(db, given, kwargs), (_, _, again)] = calls
    assert (db, given, kwargs["username"], kwargs["password"]) == (database, settings, "enquiries", "imap-pass")
    # The TLS context (the system's authorities: no ca_file) is made once, not at every poll.
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext) and again["ssl_context"] is kwargs["ssl_context"]


def test_the_background_scheduler_acknowledges_at_start_and_releases_its_leases(app, clock):
    database = app.extensions["helpdesk.db"]
    settings = desk_settings()
    app.extensions["helpdesk.settings"] = settings
    receive(database, settings, raw_email(), T)
    sender = FakeSender()
    scheduler = build_scheduler(app, background=True, clock=clock, sender=sender, notifier=FakeNotifier())
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while not sender.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.shutdown()
    assert len(sender.messages) == 1 and acknowledgements(database)[0].status == "sent"
    with database.session() as session:
        assert session.get(SchedulerLease, "email.acks").expires_at < datetime(2000, 1, 1, tzinfo=timezone.utc)


def test_an_email_in_the_imap_mailbox_is_acknowledged_by_the_schedulers_jobs(database):
    """End to end: Dovecot holds the email, the mailbox job takes it in, the acknowledgement job answers it."""
    program, openssl = find_program("dovecot", DOVECOT_DIRS), find_program("openssl")
    if program is None or openssl is None:
        skip_or_fail("`dovecot` (Debian dovecot-imapd) and `openssl` are needed for the IMAP tests")
    with DovecotServer(program, openssl) as dovecot, SmtpServer() as smtp:
        client = dovecot.client()
        try:
            raw = raw_email(7, references="<earlier@mail.example.org>")
            assert client.append("INBOX", None, imaplib.Time2Internaldate(T - timedelta(minutes=2)), raw)[0] == "OK"
        finally:
            client.logout()
        settings = desk_settings(smtp, email={"imap": {"host": dovecot.host, "port": dovecot.imaps_port}})
        clock = FakeClock(T)
        mailbox = MailboxJob(settings=settings, database=database, clock=clock, ssl_context=dovecot.ssl_context(),
                             environ={"IMAP_USERNAME": dovecot.username, "IMAP_PASSWORD": dovecot.password})
        acks = AcknowledgementJob(settings=settings, database=database, clock=clock)
        polled = mailbox()
        assert (polled.held, polled.failed, polled.result.stored) == (True, False, 1)
        clock.advance(15)
        assert acks().emailed == 1
        clock.advance(60)
        assert mailbox().result.stored == 0 and acks().emailed == 0  # nothing read or sent twice
        [(_, recipients, message)] = smtp.mailbox.messages
    [ack] = acknowledgements(database)
    assert recipients == ["jo.bloggs@example.org"] and message["In-Reply-To"] == "<original-7@mail.example.org>"
    assert message["References"].split() == ["<earlier@mail.example.org>", "<original-7@mail.example.org>"]
    # The clock starts when the mailbox received it (two minutes before the poll).
    assert (ack.received_at, ack.sent_at, ack.sla_result) == (T - timedelta(minutes=2), T + timedelta(seconds=15), "met")
