"""Emails telling a user their password or email address was changed (helpdesk.account_notices),
through a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL."""
from __future__ import annotations

import logging

import pytest

from callbacks.smtp import FakeSender
from tests.integration.conftest import make_settings
from tests.integration.test_password_change import change
from tests.integration.test_password_links import ADDRESS, ask, choose, link_in, mail_app, mails, run
from tests.integration.test_queue_page import words
from tests.integration.test_users_and_login import csrf_token, make_user, sign_in
from tests.unit.test_notify import SmtpServer

NEW = "a brand new passphrase"


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def app(migrated_url, clock, smtp_server):
    app = mail_app(migrated_url, clock, smtp_server)
    yield app
    app.extensions["helpdesk.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def body(message) -> str:
    return " ".join(message.get_content().split())


def test_a_user_who_changes_their_password_is_told_by_email(client, db_session, smtp_server):
    make_user(db_session, "alex", "manager", email=ADDRESS, display_name="Alex Smith")
    sign_in(client, "alex")
    assert change(client).status_code == 302
    [(_, recipients, message)] = smtp_server.mailbox.messages
    assert recipients == [ADDRESS] and message["Subject"] == "Your password for Help desk was changed"
    assert body(message).startswith("Hello Alex Smith, The password for your username alex on the Help desk pages "
                                    "was changed at ")
    assert "If it was not, ask an administrator to set a new password for you at once" in body(message)
    assert NEW not in message.as_string()


def test_a_user_with_no_address_is_not_told_and_a_refused_change_tells_nobody(client, db_session, smtp_server):
    make_user(db_session, "sam", "manager")
    sign_in(client, "sam")
    assert change(client).status_code == 302
    make_user(db_session, "alex", "manager", email=ADDRESS)
    other = client.application.test_client()
    sign_in(other, "alex")
    assert change(other, current="not my password").status_code == 400
    assert smtp_server.mailbox.messages == []


def test_a_password_set_by_an_administrator_is_told_with_their_name(client, db_session, smtp_server):
    alex = make_user(db_session, "alex", "agent", email=ADDRESS)
    make_user(db_session, "dana", "admin", display_name="Dana Admin")
    sign_in(client, "dana")
    page = f"/admin/users/{alex.id}"
    response = client.post(page + "/password", data={"csrf_token": csrf_token(client, page),
                                                     "password": NEW, "password_again": NEW})
    assert response.status_code == 302
    [message] = mails(smtp_server)
    assert message["Subject"] == "A new password was set for you on Help desk"
    assert "Dana Admin set a new password for your username alex" in body(message)
    assert "you have been signed out everywhere" in body(message) and NEW not in message.as_string()


def test_a_changed_address_is_told_to_the_old_one_only(client, db_session, smtp_server):
    alex = make_user(db_session, "alex", "agent")
    make_user(db_session, "dana", "admin")
    sign_in(client, "dana")
    page = f"/admin/users/{alex.id}"

    def save(email, action="save"):
        return client.post(page + "/email", data={"csrf_token": csrf_token(client, page), "email": email,
                                                  "action": action})

    assert save(ADDRESS).status_code == 302
    assert save(ADDRESS.upper()).status_code == 302  # the same, stored in lower case: no change
    assert smtp_server.mailbox.messages == []  # no old address to tell
    assert save("alex@elsewhere.example.org").status_code == 302
    assert save("", action="clear").status_code == 302
    (_, first, changed), (_, second, cleared) = smtp_server.mailbox.messages
    assert first == [ADDRESS] and second == ["alex@elsewhere.example.org"]
    assert changed["Subject"] == "Your email address for Help desk was changed"
    assert "dana changed the email address for your username alex" in body(changed)
    assert "alex@elsewhere.example.org" not in changed.as_string()  # the new address is not given away


def test_a_password_chosen_with_a_link_brings_no_second_email(app, client, db_session, smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    ask(client, "alex")
    assert choose(app.test_client(), link_in(mails(smtp_server)[0])).status_code == 302
    assert len(smtp_server.mailbox.messages) == 1


def test_without_a_mail_server_nobody_is_told_and_nothing_fails(migrated_url, clock, db_session):
    from tests.integration.conftest import make_app

    sender = FakeSender()
    app = make_app(migrated_url, make_settings(), clock, MAIL_SENDER=sender, MAIL_IN_BACKGROUND=False)
    try:
        client = app.test_client()
        make_user(db_session, "alex", "manager", email=ADDRESS)
        sign_in(client, "alex")
        assert change(client).status_code == 302
        assert sender.attempts == 0
    finally:
        app.extensions["helpdesk.db"].dispose()


def test_when_the_mail_server_fails_the_change_stands_and_the_log_says_why(migrated_url, clock, db_session, caplog):
    sender = FakeSender()
    sender.fail("could not reach the mail server at 127.0.0.1:25 (nothing answers there)")
    app = mail_app(migrated_url, clock, sender=sender)
    try:
        client = app.test_client()
        make_user(db_session, "alex", "manager", email=ADDRESS)
        sign_in(client, "alex")
        with caplog.at_level(logging.ERROR):
            response = change(client)
        assert response.status_code == 302
        assert "Your password has been changed." in words(client.get(response.headers["Location"]).get_data(
            as_text=True))
        assert sender.attempts == 1 and "notice to user alex (password_changed) not sent" in caplog.text
        assert ADDRESS not in caplog.text
        assert sign_in(app.test_client(), "alex", NEW).status_code == 302
    finally:
        app.extensions["helpdesk.db"].dispose()


def test_helpdesk_users_set_password_and_set_email_tell_the_user(migrated_url, tmp_path, db_session, smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    result = run(migrated_url, tmp_path, smtp_server, "set-password", "alex")
    assert result.exit_code == 0 and "Emailed 'alex' about it." in result.output
    result = run(migrated_url, tmp_path, smtp_server, "set-email", "alex", "alex@elsewhere.example.org")
    assert result.exit_code == 0 and "Emailed 'alex' about it." in result.output
    set_by, moved = mails(smtp_server)
    assert set_by["To"] == ADDRESS and "An administrator set a new password" in body(set_by)
    assert moved["To"] == ADDRESS and "An administrator changed the email address" in body(moved)

    down = run(migrated_url, tmp_path, None, "set-password", "alex")  # port 1: nothing answers
    assert down.exit_code == 0 and "Changed the password of 'alex'." in down.output
    assert "Could not email 'alex' about it: could not reach the mail server" in down.output


def test_helpdesk_users_set_password_says_nothing_of_email_without_a_mail_server(migrated_url, db_session):
    from tests.integration.test_users_and_login import run_cli

    make_user(db_session, "alex", "agent", email=ADDRESS)
    result = run_cli(migrated_url, "set-password", "alex")
    assert result.exit_code == 0 and "email" not in result.output.lower()

