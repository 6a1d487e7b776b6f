"""The IMAP poller against a real Dovecot (IMAPS and STARTTLS), on SQLite and PostgreSQL."""
from __future__ import annotations

import imaplib
import ssl
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

import callbacks.email.imap as imap_module
from callbacks.email.imap import ImapError, mailbox_key, poll_mailbox
from helpdesk.db import Database
from helpdesk.models import EmailAcknowledgement, ImapMailboxState, InboundEmail
from servers import DOVECOT_DIRS, DovecotServer, find_program, free_port, skip_or_fail
from tests.integration.conftest import make_settings

NOW = datetime(2026, 11, 24, 10, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def dovecot():
    """One Dovecot for the whole module; each test reads its own mailbox."""
    program = find_program("dovecot", DOVECOT_DIRS)
    openssl = find_program("openssl")
    if program is None or openssl is None:
        skip_or_fail("`dovecot` (Debian dovecot-imapd) and `openssl` are needed for the IMAP tests")
    with DovecotServer(program, openssl) as server:
        yield server


@pytest.fixture
def mailbox(dovecot):
    """A fresh mailbox on the shared server (the tests run against both databases)."""
    name = f"Enquiries-{uuid.uuid4().hex[:8]}"
    client = dovecot.client()
    assert client.create(name)[0] == "OK"
    client.logout()
    return name


def settings_for(dovecot, mailbox, security="ssl"):
    port = dovecot.imaps_port if security == "ssl" else dovecot.imap_port
    return make_settings(email={"addresses": ["enquiries@desk.example.org"],
                                "imap": {"host": dovecot.host, "port": port, "security": security,
                                         "mailbox": mailbox}})


def append(dovecot, mailbox, *numbers, at=NOW - timedelta(minutes=5)):
    client = dovecot.client()
    try:
        for n in numbers:
            raw = (f"From: Person {n} <person{n}@example.com>\r\nTo: enquiries@desk.example.org\r\n"
                   f"Subject: Question {n}\r\nMessage-ID: <imap-{n}-{mailbox}@example.com>\r\n\r\n"
                   f"Please help with question {n}.\r\n").encode()
            assert client.append(mailbox, None, imaplib.Time2Internaldate(at), raw)[0] == "OK"
    finally:
        client.logout()


def poll(database, dovecot, settings, **kwargs):
    kwargs.setdefault("ssl_context", dovecot.ssl_context())
    kwargs.setdefault("password", dovecot.password)
    return poll_mailbox(database, settings, username=dovecot.username, now=NOW, **kwargs)


def subjects(database) -> list[str]:
    with database.session() as session:
        return list(session.scalars(select(InboundEmail.subject).order_by(InboundEmail.id)))


def test_each_message_is_picked_up_once_even_across_a_restart(dovecot, mailbox, database, migrated_url):
    settings = settings_for(dovecot, mailbox)
    append(dovecot, mailbox, 1, 2, 3)
    first = poll(database, dovecot, settings)
    assert (first.fetched, first.stored, first.duplicates) == (3, 3, 0)
    assert poll(database, dovecot, settings).fetched == 0  # nothing new: nothing read again

    append(dovecot, mailbox, 4, 5)
    database.dispose()
    restarted = Database(migrated_url)  # a new process: only the database remembers
    try:
        again = poll(restarted, dovecot, settings)
    finally:
        restarted.dispose()
    assert (again.fetched, again.stored) == (2, 2)
    assert subjects(database) == [f"Question {n}" for n in range(1, 6)]
    with database.session() as session:
        state = session.get(ImapMailboxState, mailbox_key(dovecot.username, settings))
        refs = list(session.scalars(select(InboundEmail.source_ref).order_by(InboundEmail.id)))
        acks = session.scalar(select(func.count(EmailAcknowledgement.id)))
    assert (state.last_uid, state.uidvalidity, state.checked_at) == (5, again.uidvalidity, NOW)
    assert refs[0] == f"{state.mailbox}/{state.uidvalidity}/1"
    assert acks == 5


def test_the_receipt_time_is_when_the_mailbox_received_it(dovecot, mailbox, database):
    settings = settings_for(dovecot, mailbox)
    arrived = NOW - timedelta(minutes=12)
    append(dovecot, mailbox, 1, at=arrived)
    poll(database, dovecot, settings)
    with database.session() as session:
        email = session.scalars(select(InboundEmail)).one()
        ack = session.scalars(select(EmailAcknowledgement)).one()
    assert email.received_at == arrived and email.source == "imap"
    assert ack.due_at == arrived + timedelta(minutes=15)


def test_starttls_reads_the_mailbox_too(dovecot, mailbox, database):
    append(dovecot, mailbox, 1)
    assert poll(database, dovecot, settings_for(dovecot, mailbox, "starttls")).stored == 1


def test_a_changed_uidvalidity_reads_again_from_the_start_without_double_enquiries(dovecot, mailbox, database):
    settings = settings_for(dovecot, mailbox)
    append(dovecot, mailbox, 1, 2)
    before = poll(database, dovecot, settings)
    client = dovecot.client()
    assert client.delete(mailbox)[0] == "OK" and client.create(mailbox)[0] == "OK"  # a rebuilt mailbox
    client.logout()
    append(dovecot, mailbox, 1, 2, 3)  # the same two again, and one new
    after = poll(database, dovecot, settings)
    assert after.uidvalidity != before.uidvalidity and after.uidvalidity_changed
    assert (after.fetched, after.stored, after.duplicates) == (3, 1, 2)
    assert subjects(database) == ["Question 1", "Question 2", "Question 3"]
    assert poll(database, dovecot, settings).fetched == 0


def test_mail_received_before_take_in_from_is_passed_over_without_being_downloaded(
        dovecot, mailbox, database, monkeypatch):
    settings = settings_for(dovecot, mailbox)
    settings = replace(settings, email=replace(settings.email, imap=replace(
        settings.email.imap, take_in_from=date(2026, 7, 1))))
    # The UK day of 1 July starts at 23:00 UTC on 30 June (BST).
    append(dovecot, mailbox, 1, at=datetime(2026, 5, 2, 9, 0, tzinfo=timezone.utc))
    append(dovecot, mailbox, 2, at=datetime(2026, 6, 30, 23, 0, tzinfo=timezone.utc))
    append(dovecot, mailbox, 3, at=datetime(2026, 6, 30, 22, 59, 59, tzinfo=timezone.utc))
    append(dovecot, mailbox, 4, 5)
    downloaded = []
    fetch = imap_module._fetch
    monkeypatch.setattr(imap_module, "_fetch", lambda c, uids, m: downloaded.extend(uids) or fetch(c, uids, m))

    result = poll(database, dovecot, settings, batch_size=2)

    assert (result.passed_over, result.fetched, result.stored, result.last_uid) == (2, 3, 3, 5)
    assert downloaded == [2, 4, 5]
    assert subjects(database) == ["Question 2", "Question 4", "Question 5"]
    with database.session() as session:
        assert session.scalar(select(func.count(EmailAcknowledgement.id))) == 3
    assert poll(database, dovecot, settings).fetched == 0

    client = dovecot.client()  # a rebuilt mailbox: the older mail is passed over again
    assert client.delete(mailbox)[0] == "OK" and client.create(mailbox)[0] == "OK"
    client.logout()
    append(dovecot, mailbox, 1, at=datetime(2026, 5, 2, 9, 0, tzinfo=timezone.utc))
    append(dovecot, mailbox, 2, 6)
    again = poll(database, dovecot, settings)
    assert (again.passed_over, again.fetched, again.stored, again.duplicates) == (1, 2, 1, 1)
    assert subjects(database) == ["Question 2", "Question 4", "Question 5", "Question 6"]


def test_a_take_in_from_after_today_is_refused_before_anything_is_read(dovecot, mailbox, database):
    settings = settings_for(dovecot, mailbox)
    # The day after NOW (a mistyped year, say).
    settings = replace(settings, email=replace(settings.email, imap=replace(
        settings.email.imap, take_in_from=date(2026, 11, 25))))
    append(dovecot, mailbox, 1)
    with pytest.raises(ImapError, match="email.imap.take_in_from is 25 November 2026, after today, so every message "
                                        "would be passed over: correct it in"):
        poll(database, dovecot, settings)
    with database.session() as session:
        assert session.get(ImapMailboxState, mailbox_key(dovecot.username, settings)) is None
    ok = replace(settings, email=replace(settings.email, imap=replace(settings.email.imap,
                                                                      take_in_from=date(2026, 11, 24))))
    assert poll(database, dovecot, ok).stored == 1  # today: the message received today is taken in


def test_a_crash_in_the_middle_neither_skips_nor_repeats_a_message(dovecot, mailbox, database, monkeypatch):
    settings = settings_for(dovecot, mailbox)
    append(dovecot, mailbox, 1, 2, 3)
    real = imap_module.store_inbound
    calls = []

    def crash_on_second(session, raw, **kwargs):
        calls.append(kwargs["source_ref"])
        if len(calls) == 2:
            raise RuntimeError("the process died here")
        return real(session, raw, **kwargs)

    monkeypatch.setattr(imap_module, "store_inbound", crash_on_second)
    with pytest.raises(RuntimeError):
        poll(database, dovecot, settings)
    monkeypatch.setattr(imap_module, "store_inbound", real)
    assert subjects(database) == ["Question 1"]
    resumed = poll(database, dovecot, settings)
    assert (resumed.fetched, resumed.stored) == (2, 2)
    assert subjects(database) == ["Question 1", "Question 2", "Question 3"]


# The errors below come before the database is touched (None stands in for it).


def test_a_refused_login_is_a_clear_error_without_the_password(dovecot, mailbox):
    with pytest.raises(ImapError, match="refused the login") as refused:
        poll(None, dovecot, settings_for(dovecot, mailbox), password="wrong-password-123")
    assert "wrong-password-123" not in str(refused.value) and dovecot.username not in str(refused.value)


def test_an_untrusted_certificate_is_refused(dovecot, mailbox):
    with pytest.raises(ImapError, match="not trusted"):
        poll(None, dovecot, settings_for(dovecot, mailbox), ssl_context=ssl.create_default_context())
    with pytest.raises(ImapError, match="not trusted"):
        poll(None, dovecot, settings_for(dovecot, mailbox, "starttls"), ssl_context=ssl.create_default_context())


def test_tls_on_the_wrong_port_says_which_port_is_usual(dovecot, mailbox):
    settings = make_settings(email={"imap": {"host": dovecot.host, "port": dovecot.imap_port, "security": "ssl",
                                             "mailbox": mailbox}})  # IMAPS, on the plain IMAP port
    with pytest.raises(ImapError, match=r'TLS failed \(.+\): is email.imap.port the server\'s port for '
                                        r'security = "ssl" \(usually 993\)\?'):
        poll(None, dovecot, settings)


def test_a_refused_connection_is_a_clear_error(dovecot):
    settings = make_settings(email={"imap": {"host": "127.0.0.1", "port": free_port(), "mailbox": "INBOX"}})
    with pytest.raises(ImapError, match="cannot connect"):
        poll(None, dovecot, settings)


def test_a_missing_mailbox_or_missing_credentials_are_clear_errors(dovecot, database):
    # The missing mailbox is found after login, before any read position is touched.
    with pytest.raises(ImapError, match="cannot be opened"):
        poll(database, dovecot, settings_for(dovecot, "No-Such-Mailbox"))
    with pytest.raises(ImapError, match="IMAP_PASSWORD"):
        poll(database, dovecot, settings_for(dovecot, "INBOX"), password="")
    with pytest.raises(ImapError, match="no IMAP server"):
        poll(database, dovecot, make_settings())


def test_the_poll_command_reads_the_mailbox_once_and_says_what_it_read(dovecot, mailbox, migrated_url, tmp_path):
    from click.testing import CliRunner

    from helpdesk.cli import main

    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\nmonday = ["08:00-18:00"]\n\n'
                      f'[email.imap]\nhost = "{dovecot.host}"\nport = {dovecot.imaps_port}\nmailbox = "{mailbox}"\n')
    append(dovecot, mailbox, 1, 2)
    env = {"DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config), "IMAP_USERNAME": dovecot.username,
           "IMAP_PASSWORD": dovecot.password}
    arguments = ["email", "poll", "--once", "--ca-file", dovecot.cafile]
    result = CliRunner().invoke(main, arguments, env=env)
    assert result.exit_code == 0, result.output
    assert f"{mailbox}: 2 read, 2 new, 0 already stored (last UID 2)." in result.output
    assert "passed over" not in result.output
    refused = CliRunner().invoke(main, arguments, env={**env, "IMAP_PASSWORD": "wrong-password-456"})
    assert refused.exit_code == 1 and "refused the login" in refused.output
    assert "wrong-password-456" not in refused.output and "Traceback" not in refused.output


def test_the_poll_command_says_how_many_messages_it_passed_over(dovecot, mailbox, migrated_url, tmp_path):
    from click.testing import CliRunner

    from helpdesk.cli import main

    config = tmp_path / "helpdesk.toml"
    config.write_text(f'[hours]\nmonday = ["08:00-18:00"]\n\n'
                      f'[email.imap]\nhost = "{dovecot.host}"\nport = {dovecot.imaps_port}\nmailbox = "{mailbox}"\n'
                      f'take_in_from = 2026-11-24\n')
    append(dovecot, mailbox, 1, 2, at=datetime(2026, 11, 23, 23, 59, tzinfo=timezone.utc))
    append(dovecot, mailbox, 3, at=datetime(2026, 11, 24, 0, 0, tzinfo=timezone.utc))
    env = {"DATABASE_URL": migrated_url, "HELPDESK_CONFIG": str(config), "IMAP_USERNAME": dovecot.username,
           "IMAP_PASSWORD": dovecot.password}
    result = CliRunner().invoke(main, ["email", "poll", "--once", "--ca-file", dovecot.cafile], env=env)
    assert result.exit_code == 0, result.output
    assert (f"{mailbox}: 1 read, 1 new, 0 already stored (last UID 3). "
            "2 passed over, received before 24 November 2026.") in result.output
