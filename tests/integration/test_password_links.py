"""Links emailed to choose a password: sent by an administrator to a new user or one who has
forgotten theirs, or asked for on the sign-in page; and the emails telling a user their password
or address was changed (helpdesk.account_notices). Through a real SMTP server (aiosmtpd on
127.0.0.1), on SQLite and PostgreSQL."""
from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from callbacks.smtp import FakeSender
from helpdesk.models import AuditEntry, PasswordLink
from helpdesk.password_links import ASKED_LIMIT, digest
from helpdesk.users import (PASSWORD_CHOSEN_WITH_LINK, PASSWORD_LINK_SENT, SIGN_IN_LIMIT, authenticate, deactivate,
                            set_password)
from tests.integration.conftest import BASE_URL, make_app, make_settings, stored
from tests.integration.test_password_change import NEW, change
from tests.integration.test_queue_page import words
from tests.integration.test_users_page import users_list
from tests.integration.test_sign_in_audit import entries
from tests.integration.test_user_audit import user_named
from tests.integration.test_users_and_login import PASSWORD, csrf_token, make_user, run_cli, sign_in
from tests.unit.test_notify import SmtpServer

CHOSEN = "marmalade orbit questioning"
ADDRESS = "alex.smith@example.org"
LINK = re.compile(re.escape(BASE_URL) + r"(/password/link/[A-Za-z0-9_-]+)")


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server


def mail_app(url, clock, smtp_server=None, *, sender=None, background=False, **web):
    smtp = {"host": "127.0.0.1", "port": smtp_server.port if smtp_server else 25, "security": "none",
            "from_address": "helpdesk@example.org"}
    settings = make_settings(smtp=smtp, web=web) if web else make_settings(smtp=smtp)
    return make_app(url, settings, clock, MAIL_IN_BACKGROUND=background,
                    **({"MAIL_SENDER": sender} if sender is not None else {}))


@pytest.fixture
def app(migrated_url, clock, smtp_server):
    app = mail_app(migrated_url, clock, smtp_server)
    yield app
    app.extensions["helpdesk.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def mails(smtp_server) -> list:
    return [message for _, _, message in smtp_server.mailbox.messages]


def link_in(message) -> str:
    """The path of the link in an email, checked to be under PUBLIC_BASE_URL."""
    found = LINK.search(message.get_content())
    assert found, message.get_content()
    return found.group(1)


def choose(client, path: str, new: str = CHOSEN, again: str | None = None):
    """Open the link, then send the form, as a browser does."""
    opened = client.get(path)
    assert opened.status_code == 302 and opened.headers["Location"] == "/password/choose"
    token = csrf_token(client, "/password/choose")
    return client.post("/password/choose", data={"csrf_token": token, "new_password": new,
                                                 "new_password_again": new if again is None else again})


def ask(client, who: str):
    return client.post("/password/forgotten", data={"csrf_token": csrf_token(client, "/password/forgotten"),
                                                    "who": who})


def links(db_session) -> list[PasswordLink]:
    return stored(db_session, PasswordLink)


def works(db_session, password: str, username: str = "alex") -> bool:
    return authenticate(db_session, username, password) is not None


@pytest.fixture
def admin(client, db_session):
    user = make_user(db_session, "dana", "admin", display_name="Dana Admin")
    sign_in(client, "dana")
    return user


def add_by_link(client, **form):
    data = {"csrf_token": csrf_token(client, "/admin/users/new"), "username": "alex", "display_name": "Alex Smith",
            "role": "agent", "phone": "", "email": ADDRESS, "first": "link"}
    data.update(form)
    return client.post("/admin/users/new", data=data)


# --------------------------------------------------------------------------- a new user, by link


def test_an_administrator_adds_a_user_who_chooses_their_password_with_the_emailed_link(app, client, db_session,
                                                                                      smtp_server, admin):
    response = add_by_link(client)

    assert response.status_code == 302
    alex = user_named(db_session, "alex")
    assert alex.email == ADDRESS and alex.must_change_password
    page = words(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "Added alex, and emailed them a link to choose their password. It works for 3 days." in page
    assert "Not chosen yet: they choose it with the link emailed to them" in page
    listed = users_list(client)
    assert f"alex Alex Smith Agent None {ADDRESS} Yes Not chosen yet" in listed
    assert "dana Dana Admin Administrator None None Yes Their own" in listed
    [(sender, recipients, message)] = smtp_server.mailbox.messages
    assert recipients == [ADDRESS] and message["To"] == ADDRESS and message["From"] == "helpdesk@example.org"
    assert message["Subject"] == "Choose your password for Help desk"
    body = " ".join(message.get_content().split())
    assert "Hello Alex Smith," in body and "Dana Admin has sent you this link" in body
    assert "Your username is alex, and your role is Agent." in body
    assert "The link works once, until" in body

    visitor = app.test_client()  # the new user's own browser
    response = choose(visitor, link_in(message))

    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "Your password is set. Sign in as alex with it." in words(visitor.get("/login").get_data(as_text=True))
    assert works(db_session, CHOSEN)
    assert not user_named(db_session, "alex").must_change_password
    assert sign_in(visitor, "alex", CHOSEN).headers["Location"] == "/queue"  # straight to work: nothing to change
    assert links(db_session) == []
    added = entries(db_session, "user.added")[-1]
    assert '"link": true' in added.detail and '"email": true' in added.detail
    [chosen] = entries(db_session, PASSWORD_CHOSEN_WITH_LINK)
    assert chosen.actor == "alex" and '"address": "127.0.0.1"' in chosen.detail


def test_a_link_works_once(app, client, db_session, smtp_server, admin):
    add_by_link(client)
    path = link_in(mails(smtp_server)[0])
    visitor = app.test_client()
    assert choose(visitor, path).status_code == 302

    again = app.test_client()
    assert again.get(path).status_code == 302
    page = again.get("/password/choose")
    assert page.status_code == 404
    assert "This link no longer works" in page.get_data(as_text=True)
    response = again.post("/password/choose", data={"csrf_token": csrf_token(again, "/password/forgotten"),
                                                    "new_password": "another good passphrase",
                                                    "new_password_again": "another good passphrase"})
    assert response.status_code == 404 and works(db_session, CHOSEN)


def test_a_signed_in_user_opening_a_link_that_no_longer_works_is_told_so(client, db_session, admin):
    # Drawn inside the transaction that found no link, the page waited on SQLite for the one
    # connection to ask who is signed in: the browser test found it hang.
    for path in ("/password/link/not-a-link", "/password/link/" + "x" * 500):
        assert client.get(path).status_code == 302
        page = client.get("/password/choose")
        assert page.status_code == 404 and "This link no longer works" in page.get_data(as_text=True)
    assert client.get("/calls").status_code == 200  # still signed in


def test_the_database_keeps_only_a_digest_of_the_link(client, db_session, smtp_server, admin, migrated_url):
    add_by_link(client)
    token = link_in(mails(smtp_server)[0]).rsplit("/", 1)[1]
    [stored] = links(db_session)
    assert stored.digest == digest(token) != token
    with db_session.begin():  # nowhere in any table, the audit log included
        for table in ("password_links", "audit_log", "users"):
            rows = db_session.execute(text(f"SELECT * FROM {table}")).all()
            assert token not in repr(rows)


def test_a_password_breaking_the_rules_or_typed_differently_is_refused_and_the_link_still_works(
        app, client, db_session, smtp_server, admin):
    add_by_link(client)
    path = link_in(mails(smtp_server)[0])
    visitor = app.test_client()

    refused = choose(visitor, path, new="short")
    assert refused.status_code == 400
    assert "The password is too short" in words(refused.get_data(as_text=True))
    refused = choose(visitor, path, new=CHOSEN, again=CHOSEN + "x")
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "The password was not the same the second time. Type it again." in page and CHOSEN not in page
    refused = choose(visitor, path, new="alex alex alex alex")
    assert refused.status_code == 400

    assert choose(visitor, path).status_code == 302 and works(db_session, CHOSEN)


def test_without_a_mail_server_the_page_offers_no_link_and_asks_for_a_password(migrated_url, clock, db_session):
    app = make_app(migrated_url, make_settings(), clock)
    try:
        client = app.test_client()
        make_user(db_session, "dana", "admin")
        sign_in(client, "dana")
        page = client.get("/admin/users/new").get_data(as_text=True)
        assert 'name="first"' not in page and 'name="email"' in page
        refused = add_by_link(client)  # "first": "link" is not offered, so a password is needed
        assert refused.status_code == 400 and "Enter a password." in refused.get_data(as_text=True)
        sam = make_user(db_session, "sam", "agent", email="sam@example.org")
        shown = client.get(f"/admin/users/{sam.id}").get_data(as_text=True)
        assert "Email a link" not in shown and "give them an email address above" not in shown
        assert "Forgotten your password?" not in app.test_client().get("/login").get_data(as_text=True)
        assert app.test_client().get("/password/forgotten").status_code == 404
    finally:
        app.extensions["helpdesk.db"].dispose()


@pytest.mark.parametrize("form, field, problem", [
    ({"first": ""}, "first", "Choose how they get their first password."),
    ({"email": ""}, "email", "Enter their email address, to send the link to."),
    ({"email": "alex at example.org"}, "email", "The email address is not one: write it as name@example.org."),
    ({"email": "a@b.c" + "x" * 260}, "email", "The email address is too long: an address has at most 254"),
])
def test_adding_by_link_says_what_is_missing(client, db_session, smtp_server, admin, form, field, problem):
    refused = add_by_link(client, **form)
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert problem in words(page) and f'href="#{"first-link" if field == "first" else field}"' in page
    assert user_named(db_session, "alex") is None and smtp_server.mailbox.messages == []


def test_an_email_address_another_user_has_is_refused_whatever_its_case(client, db_session, smtp_server, admin):
    make_user(db_session, "sam", "agent", email="alex.smith@example.org")
    refused = add_by_link(client, email="Alex.Smith@Example.ORG")
    assert refused.status_code == 400
    assert "Another user has that email address." in refused.get_data(as_text=True)
    assert user_named(db_session, "alex") is None


def test_when_the_mail_server_does_not_answer_the_user_is_added_and_the_page_says_what_to_do(
        migrated_url, clock, db_session, caplog):
    sender = FakeSender()
    sender.fail("could not reach the mail server at 127.0.0.1:25 (nothing answers there)")
    app = mail_app(migrated_url, clock, sender=sender)
    try:
        client = app.test_client()
        make_user(db_session, "dana", "admin")
        sign_in(client, "dana")
        with caplog.at_level(logging.ERROR):
            response = add_by_link(client)
        assert response.status_code == 302
        page = words(client.get(response.headers["Location"]).get_data(as_text=True))
        assert ("Added alex, but the email with the link could not be sent: could not reach the mail server at "
                "127.0.0.1:25 (nothing answers there). Send it again below, or set a password for them.") in page
        assert ADDRESS not in caplog.text
        sender.recover()
        again = client.post(response.headers["Location"] + "/link",
                            data={"csrf_token": csrf_token(client, response.headers["Location"])})
        assert again.status_code == 302 and len(sender.messages) == 1
    finally:
        app.extensions["helpdesk.db"].dispose()


# --------------------------------------------------------------------------- links ending


def test_a_link_sent_by_an_administrator_works_for_three_days(app, client, clock, db_session, smtp_server, admin):
    add_by_link(client)
    path = link_in(mails(smtp_server)[0])
    clock.advance(timedelta(days=3).total_seconds() - 1)
    assert app.test_client().get(path).status_code == 302
    visitor = app.test_client()
    visitor.get(path)
    assert visitor.get("/password/choose").status_code == 200
    clock.advance(1)
    assert visitor.get("/password/choose").status_code == 404


def test_a_newer_link_replaces_the_older(app, client, db_session, smtp_server, admin):
    add_by_link(client)
    alex = user_named(db_session, "alex")
    page = f"/admin/users/{alex.id}"
    assert client.post(page + "/link", data={"csrf_token": csrf_token(client, page)}).status_code == 302
    first, second = (link_in(message) for message in mails(smtp_server))
    assert first != second
    visitor = app.test_client()
    visitor.get(first)
    assert visitor.get("/password/choose").status_code == 404
    assert "Not chosen yet" in users_list(client)
    assert choose(visitor, second).status_code == 302 and works(db_session, CHOSEN)
    listed = users_list(client)
    assert "Not chosen yet" not in listed and f"{ADDRESS} Yes Their own" in listed


@pytest.mark.parametrize("change", ["password set", "deactivated", "email changed"])
def test_a_link_ends_when_the_password_is_set_otherwise_the_user_is_deactivated_or_the_address_changes(
        app, client, db_session, smtp_server, admin, change):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    assert ask(app.test_client(), "alex").status_code == 200
    path = link_in(mails(smtp_server)[0])
    if change == "password set":
        set_password(db_session, "alex", "a password set by dana")
    elif change == "deactivated":
        deactivate(db_session, "alex")
    else:
        from helpdesk.users import set_email

        set_email(db_session, "alex", "alex@elsewhere.example.org")
    visitor = app.test_client()
    visitor.get(path)
    assert visitor.get("/password/choose").status_code == 404
    assert not works(db_session, CHOSEN)


def test_choosing_with_a_link_signs_the_user_out_everywhere_and_clears_wrong_passwords(app, client, db_session,
                                                                                      smtp_server):
    make_user(db_session, "alex", "manager", email=ADDRESS)
    elsewhere = app.test_client()
    sign_in(elsewhere, "alex")
    assert elsewhere.get("/calls").status_code == 200
    for _ in range(SIGN_IN_LIMIT):
        sign_in(client, "alex", "not the password at all")
    assert sign_in(client, "alex").status_code == 429  # the right password now refused unheard

    ask(client, "alex")
    assert choose(client, link_in(mails(smtp_server)[0])).status_code == 302

    assert elsewhere.get("/calls").status_code == 302
    assert sign_in(client, "alex", CHOSEN).status_code == 302


# --------------------------------------------------------------------------- Forgotten your password?


def test_the_sign_in_page_offers_a_link_and_one_is_emailed_for_a_username_or_an_address(client, db_session,
                                                                                        smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS, display_name="Alex Smith")
    login = client.get("/login").get_data(as_text=True)
    assert '<a href="/password/forgotten">Forgotten your password?</a>' in login

    response = ask(client, "Alex")
    assert response.status_code == 200
    page = words(response.get_data(as_text=True))
    assert "Check your email" in page and "The link works once, for 60 minutes." in page
    response = ask(client, "  ALEX.Smith@example.org ")
    assert response.status_code == 200

    first, second = mails(smtp_server)
    assert first["Subject"] == "Choose a new password for Help desk" and first["To"] == ADDRESS
    assert "Someone, probably you, asked for a link to choose a new password for the username alex" in " ".join(
        first.get_content().split())
    visitor = client.application.test_client()
    visitor.get(link_in(first))
    assert visitor.get("/password/choose").status_code == 404  # replaced by the second
    assert choose(visitor, link_in(second)).status_code == 302 and works(db_session, CHOSEN)
    sent = entries(db_session, PASSWORD_LINK_SENT)
    assert len(sent) == 2 and all('"asked": true' in entry.detail and entry.actor == "alex" for entry in sent)


@pytest.mark.parametrize("who", ["nobody", "sam", "kim", "nobody@example.org", "x" * 64, "a\x00b@example.org"])
def test_the_page_says_the_same_when_nothing_is_sent(client, db_session, smtp_server, who):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    make_user(db_session, "sam", "agent")  # no address
    make_user(db_session, "kim", "agent", email="kim@example.org")
    deactivate(db_session, "kim")
    sent = ask(client, "alex").get_data(as_text=True)
    response = ask(client, who)
    assert response.status_code == 200
    assert words(response.get_data(as_text=True)) == words(sent)  # the very same page
    assert len(smtp_server.mailbox.messages) == 1


def test_at_most_three_links_an_hour_are_sent_for_a_user(client, clock, db_session, smtp_server, caplog):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    for _ in range(ASKED_LIMIT + 2):
        assert ask(client, "alex").status_code == 200
    assert len(smtp_server.mailbox.messages) == ASKED_LIMIT
    assert "password link not sent for user id" in caplog.text
    clock.advance(3601)
    ask(client, "alex")
    assert len(smtp_server.mailbox.messages) == ASKED_LIMIT + 1


def test_an_asked_link_works_for_an_hour(app, client, clock, db_session, smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    ask(client, "alex")
    clock.advance(3600)
    visitor = app.test_client()
    visitor.get(link_in(mails(smtp_server)[0]))
    assert visitor.get("/password/choose").status_code == 404


def test_the_link_is_on_public_base_url_whatever_host_the_request_named(client, db_session, smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    elsewhere = "http://attacker.example"
    page = client.get("/password/forgotten", base_url=elsewhere).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/password/forgotten", data={"csrf_token": token, "who": "alex"}, base_url=elsewhere,
                           headers={"X-Forwarded-Host": "attacker.example"})
    assert response.status_code == 200
    [message] = mails(smtp_server)
    assert "attacker.example" not in message.get_content() and link_in(message)


def test_asking_is_refused_without_a_csrf_token_or_with_nothing_typed(client, db_session, smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    assert client.post("/password/forgotten", data={"who": "alex"}).status_code == 400
    empty = ask(client, "")
    assert empty.status_code == 400 and "Enter your username or email address." in empty.get_data(as_text=True)
    assert ask(client, "x" * 255).status_code == 400
    assert smtp_server.mailbox.messages == []


def test_the_sign_in_page_offers_no_link_when_switched_off(migrated_url, clock, db_session, smtp_server):
    app = mail_app(migrated_url, clock, smtp_server, forgotten_password_links=False)
    try:
        client = app.test_client()
        assert "Forgotten your password?" not in client.get("/login").get_data(as_text=True)
        assert client.get("/password/forgotten").status_code == 404
    finally:
        app.extensions["helpdesk.db"].dispose()


def test_in_the_background_the_link_still_arrives(migrated_url, clock, db_session, smtp_server):
    app = mail_app(migrated_url, clock, smtp_server, background=True)
    try:
        make_user(db_session, "alex", "agent", email=ADDRESS)
        assert ask(app.test_client(), "alex").status_code == 200
        assert smtp_server.mailbox.received.wait(10)
        assert link_in(mails(smtp_server)[0])
    finally:
        app.extensions["helpdesk.db"].dispose()


def test_a_user_who_must_choose_a_password_may_still_use_a_link(app, client, db_session, smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS, temporary=True)
    sign_in(client, "alex")
    assert client.get("/queue").headers["Location"] == "/account/password"
    ask(client, "alex")
    response = choose(client, link_in(mails(smtp_server)[0]))
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/queue").status_code == 302  # signed out: sign in with the new password
    assert sign_in(client, "alex", CHOSEN).headers["Location"] == "/queue"


# --------------------------------------------------------------------------- the user's page


def test_an_administrator_sets_and_clears_an_address_and_emails_a_link(client, db_session, smtp_server, admin):
    alex = make_user(db_session, "alex", "agent")
    page = f"/admin/users/{alex.id}"
    shown = words(client.get(page).get_data(as_text=True))
    assert "Email a link" not in shown  # no address yet
    assert "To email them a link to choose a new password instead, give them an email address above." in shown

    bad = client.post(page + "/email", data={"csrf_token": csrf_token(client, page), "email": "alex@",
                                             "action": "save"})
    assert bad.status_code == 400 and "The email address is not one" in bad.get_data(as_text=True)
    saved = client.post(page + "/email", data={"csrf_token": csrf_token(client, page), "email": "Alex@Example.org",
                                               "action": "save"})
    assert saved.status_code == 302 and user_named(db_session, "alex").email == "alex@example.org"
    shown = words(client.get(page).get_data(as_text=True))
    assert "Saved the email address of alex." in shown and "Email address alex@example.org" in shown

    sent = client.post(page + "/link", data={"csrf_token": csrf_token(client, page)})
    assert sent.status_code == 302 and len(smtp_server.mailbox.messages) == 1
    shown = words(client.get(page).get_data(as_text=True))
    assert "Emailed alex a link to choose a new password. It works for 3 days" in shown
    assert "Password link Emailed" in shown
    assert "emailed a link to choose a password, by dana" in shown

    cleared = client.post(page + "/email", data={"csrf_token": csrf_token(client, page), "action": "clear"})
    assert cleared.status_code == 302 and user_named(db_session, "alex").email is None
    assert links(db_session) == []  # the link sent to the old address ends
    assert "email address cleared, by dana" in words(client.get(page).get_data(as_text=True))


def test_an_administrator_cannot_email_themself_a_link_here(client, db_session, smtp_server, admin):
    from helpdesk.users import set_email

    set_email(db_session, "dana", "dana@example.org")
    page = f"/admin/users/{admin.id}"
    response = client.post(page + "/link", data={"csrf_token": csrf_token(client, page)})
    assert response.status_code == 409 and smtp_server.mailbox.messages == []


def test_the_audit_log_says_who_asked_for_a_link_and_from_where(client, db_session, smtp_server):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    make_user(db_session, "audrey", "auditor")
    ask(client, "alex")
    auditor = client.application.test_client()
    sign_in(auditor, "audrey")
    page = words(auditor.get("/audit?what=users").get_data(as_text=True))
    assert "Password link emailed: to alex, asked for on the sign-in page, from 127.0.0.1" in page


# --------------------------------------------------------------------------- helpdesk users


def cli_config(tmp_path, smtp_server) -> str:
    path = tmp_path / "helpdesk.toml"
    path.write_text('[hours]\nmonday = ["08:00-18:00"]\n\n[smtp]\nhost = "127.0.0.1"\n'
                    f'port = {smtp_server.port if smtp_server else 1}\nsecurity = "none"\n'
                    'from_address = "helpdesk@example.org"\n')
    return str(path)


def run(migrated_url, tmp_path, smtp_server, *args, base_url=BASE_URL):
    from click.testing import CliRunner

    from helpdesk.cli import main as helpdesk_cli

    env = {"DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": PASSWORD, "PUBLIC_BASE_URL": base_url,
           "HELPDESK_CONFIG": cli_config(tmp_path, smtp_server)}
    return CliRunner().invoke(helpdesk_cli, ["users", *args], env=env)


def test_users_add_with_send_link_emails_the_link_and_asks_for_no_password(migrated_url, tmp_path, db_session,
                                                                         smtp_server):
    result = run(migrated_url, tmp_path, smtp_server, "add", "alex", "--role", "agent", "--email", ADDRESS,
                 "--send-link")
    assert result.exit_code == 0, result.output
    assert "Added agent 'alex'." in result.output
    assert "Emailed 'alex' a link to choose a password, at a***@example.org. It works once, until" in result.output
    assert not works(db_session, PASSWORD)
    [message] = mails(smtp_server)
    assert "An administrator has sent you this link" in " ".join(message.get_content().split())
    [sent] = entries(db_session, PASSWORD_LINK_SENT)
    assert sent.user_id is None and '"via": "command line"' in sent.detail


def test_users_send_link_set_email_and_list(migrated_url, tmp_path, db_session, smtp_server):
    make_user(db_session, "alex", "agent")
    no_address = run(migrated_url, tmp_path, smtp_server, "send-link", "alex")
    assert no_address.exit_code == 1
    assert "'alex' has no email address: set one with 'helpdesk users set-email alex ADDRESS'" in no_address.output

    assert run(migrated_url, tmp_path, smtp_server, "set-email", "alex", "not an address").exit_code == 1
    result = run(migrated_url, tmp_path, smtp_server, "set-email", "alex", ADDRESS)
    assert result.exit_code == 0 and f"Links for 'alex' go to {ADDRESS}." in result.output
    listed = run(migrated_url, tmp_path, smtp_server, "list").output
    assert re.search(r"alex\s+agent\s+active\s+no phone\s+email ", listed)

    result = run(migrated_url, tmp_path, smtp_server, "send-link", "alex")
    assert result.exit_code == 0, result.output
    assert len(smtp_server.mailbox.messages) == 1 and works(db_session, PASSWORD)  # unchanged until used

    cleared = run(migrated_url, tmp_path, smtp_server, "set-email", "alex")
    assert cleared.exit_code == 0 and "Cleared the email address of 'alex'." in cleared.output
    assert links(db_session) == []


@pytest.mark.parametrize("problem, args, message", [
    ("no base url", ("send-link", "alex"), "PUBLIC_BASE_URL is not set"),
    ("no mail server", ("send-link", "alex"), "links cannot be emailed: smtp.host is not set"),
    ("no email", ("add", "sam", "--role", "agent", "--send-link"), "--send-link needs --email"),
    ("unknown", ("send-link", "nobody"), "there is no user 'nobody'"),
    ("deactivated", ("send-link", "kim"), "'kim' is deactivated"),
    ("server down", ("send-link", "alex"), "the link could not be sent: could not reach the mail server"),
])
def test_users_send_link_names_each_problem(migrated_url, tmp_path, db_session, smtp_server, problem, args, message):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    make_user(db_session, "kim", "agent", email="kim@example.org")
    deactivate(db_session, "kim")
    server = smtp_server
    base_url = "" if problem == "no base url" else BASE_URL
    if problem == "server down":
        server = None  # port 1: nothing answers
    if problem != "no mail server":
        result = run(migrated_url, tmp_path, server, *args, base_url=base_url)
    else:
        path = tmp_path / "helpdesk.toml"
        path.write_text('[hours]\nmonday = ["08:00-18:00"]\n')
        from click.testing import CliRunner

        from helpdesk.cli import main as helpdesk_cli

        result = CliRunner().invoke(helpdesk_cli, ["users", *args], env={
            "DATABASE_URL": migrated_url, "PUBLIC_BASE_URL": BASE_URL, "HELPDESK_CONFIG": str(path)})
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert smtp_server.mailbox.messages == []


def test_users_add_refuses_an_address_another_user_has(migrated_url, db_session):
    make_user(db_session, "sam", "agent", email=ADDRESS)
    result = run_cli(migrated_url, "add", "alex", "--role", "agent", "--email", ADDRESS.upper())
    assert result.exit_code == 1 and f"another user has the email address {ADDRESS}" in result.output
    assert user_named(db_session, "alex") is None


def test_every_entry_says_what_happened_in_words(client, db_session, smtp_server, admin):
    add_by_link(client)
    with db_session.begin():
        actions = set(db_session.scalars(select(AuditEntry.action)))
    assert {"user.added", PASSWORD_LINK_SENT} <= actions
    page = users_list(client)
    assert "alex added as Agent, to choose their password with an emailed link, with an email address, by dana" in page
    add_by_link(client, username="sam", email="sam@example.org", phone="07700 900123")
    page = users_list(client)
    assert "sam added as Agent, to choose their password with an emailed link, with a phone and an email address" in page


# --------------------------------------------------------------------------- told of a change


def body(message) -> str:
    """The email's text, its lines joined."""
    return " ".join(message.get_content().split())


def test_a_user_who_changes_their_password_is_told_by_email(client, db_session, smtp_server):
    make_user(db_session, "alex", "manager", email=ADDRESS, display_name="Alex Smith")
    sign_in(client, "alex")
    assert change(client).status_code == 302
    [(_, recipients, message)] = smtp_server.mailbox.messages
    assert recipients == [ADDRESS] and message["Subject"] == "Your password for Help desk was changed"
    assert message["Date"] and message["Message-ID"].endswith("@example.org>")
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
    make_user(db_session, "alex", "agent", email=ADDRESS)
    result = run_cli(migrated_url, "set-password", "alex")
    assert result.exit_code == 0 and "email" not in result.output.lower()



# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("path", ["/password/link/%00", "/password/link/" + "a" * 5000, "/password/link/%F0%9F%98%80",
                                  "/password/link/%20"])
def test_a_link_of_any_shape_is_told_it_no_longer_works(client, path):
    assert client.get(path).status_code == 302
    page = client.get("/password/choose")
    assert page.status_code == 404 and "This link no longer works" in page.get_data(as_text=True)


@pytest.mark.parametrize("who", ["\x00", "a" * 254, "@", "@@@", "x@" + "y" * 252, "alex\r\nBcc: x@example.org",
                                 "alex@example.org\x00"])
def test_anything_asked_for_gets_the_same_page_and_nothing_is_sent(client, db_session, smtp_server, who):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    response = ask(client, who)
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    assert smtp_server.mailbox.messages == []


@pytest.mark.parametrize("password", ["\x00" * 20, "a" * 1025, " " * 20])
def test_a_password_no_one_could_type_is_refused_and_the_link_still_works(client, db_session, smtp_server,
                                                                          password):
    make_user(db_session, "alex", "agent", email=ADDRESS)
    ask(client, "alex")
    path = link_in(mails(smtp_server)[0])
    assert choose(client, path, new=password).status_code == 400
    assert choose(client, path).status_code == 302 and works(db_session, CHOSEN)
