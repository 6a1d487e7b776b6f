"""Users (the service and the `helpdesk users` commands) and signing in and out."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpdesk.app import create_app
from helpdesk.cli import main as helpdesk_cli
from helpdesk.models import User
from helpdesk.users import UserError, add_user, authenticate, deactivate, set_password
from tests.integration.conftest import AUTH_TOKEN, BASE_URL
from tests.integration.twilio_requests import inbound, post, sid

PASSWORD = "correct horse battery"
WRONG = "Username or password is wrong."


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token from a page's form (every form carries one)."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client, username: str, password: str = PASSWORD, next_path: str | None = None):
    """Sign in through the form, as a browser does; returns the POST's response."""
    token = csrf_token(client, "/login" + (f"?next={next_path}" if next_path else ""))
    form = {"csrf_token": token, "username": username, "password": password}
    if next_path is not None:
        form["next"] = next_path
    return client.post("/login", data=form)


def stored_users(db_session) -> list[User]:
    """Every user, read in a transaction of its own (an open one would block the app on SQLite)."""
    with db_session.begin():
        return list(db_session.scalars(select(User).order_by(User.username)))


def make_user(db_session, username: str, role: str, password: str = PASSWORD, **kwargs) -> User:
    return add_user(db_session, username, password, role, **kwargs)


# --------------------------------------------------------------------------- the service


def test_a_new_user_can_authenticate_with_their_password(db_session, clock):
    added = add_user(db_session, "Alex.Smith", PASSWORD, "manager", display_name="Alex Smith", now=clock.now)
    user = authenticate(db_session, "alex.smith", PASSWORD)
    assert user is not None and user.id == added.id
    assert (user.username, user.role, user.display_name, user.active) == ("alex.smith", "manager", "Alex Smith", True)
    assert user.created_at == clock.now and user.created_at.tzinfo == timezone.utc


@pytest.mark.real_password_hashing
def test_the_password_is_stored_only_as_a_scrypt_hash(db_session):
    add_user(db_session, "sam", PASSWORD, "agent")
    stored = stored_users(db_session)[0].password_hash
    assert stored.startswith("scrypt:") and PASSWORD not in stored


def test_a_wrong_password_does_not_authenticate(db_session):
    add_user(db_session, "sam", PASSWORD, "agent")
    assert authenticate(db_session, "sam", PASSWORD + "x") is None
    assert authenticate(db_session, "sam", "") is None


def test_an_unknown_username_does_not_authenticate(db_session):
    assert authenticate(db_session, "nobody", PASSWORD) is None


def test_a_username_already_taken_is_refused_whatever_its_case(db_session):
    add_user(db_session, "sam", PASSWORD, "agent")
    with pytest.raises(UserError, match="already taken"):
        add_user(db_session, "SAM", PASSWORD, "manager")
    assert [(user.username, user.role) for user in stored_users(db_session)] == [("sam", "agent")]


def test_a_password_shorter_than_twelve_characters_is_refused(db_session):
    with pytest.raises(UserError, match="at least 12 characters"):
        add_user(db_session, "sam", "elevenchars", "agent")
    assert stored_users(db_session) == []


def test_an_unknown_role_is_refused(db_session):
    with pytest.raises(UserError, match="role 'boss' does not exist"):
        add_user(db_session, "sam", PASSWORD, "boss")


@pytest.mark.parametrize("username", ["ab", "sam smith", "sam@example.org", "x" * 65, "émile"])
def test_a_username_breaking_the_rules_is_refused(db_session, username):
    with pytest.raises(UserError, match="is not allowed"):
        add_user(db_session, username, PASSWORD, "agent")


def test_a_deactivated_user_cannot_authenticate(db_session):
    add_user(db_session, "sam", PASSWORD, "agent")
    deactivate(db_session, "sam")
    assert authenticate(db_session, "sam", PASSWORD) is None


def test_after_a_password_change_only_the_new_password_works(db_session):
    add_user(db_session, "sam", PASSWORD, "agent")
    set_password(db_session, "sam", "a brand new passphrase")
    assert authenticate(db_session, "sam", PASSWORD) is None
    assert authenticate(db_session, "sam", "a brand new passphrase") is not None


def test_changing_the_password_of_an_unknown_user_says_there_is_no_such_user(db_session):
    with pytest.raises(UserError, match="there is no user 'nobody'"):
        set_password(db_session, "nobody", "a brand new passphrase")


# --------------------------------------------------------------------------- the CLI


def run_cli(url: str, *args: str, password: str | None = PASSWORD, stdin: str | None = None):
    env = {"DATABASE_URL": url, "HELPDESK_PASSWORD": password or ""}
    return CliRunner().invoke(helpdesk_cli, ["users", *args], env=env, input=stdin)


def test_users_add_takes_the_password_from_helpdesk_password_and_stores_only_a_hash(migrated_url, db_session):
    result = run_cli(migrated_url, "add", "alex", "--role", "manager", "--name", "Alex Smith")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == ("Added manager 'alex' (Alex Smith). They choose their own password "
                                             "when they next sign in, as you know this one.")
    assert result.output.splitlines()[1].startswith("Database: ")  # which one it went to
    [user] = stored_users(db_session)
    assert user.username == "alex"
    assert user.role == "manager" and user.display_name == "Alex Smith"
    assert user.password_hash != PASSWORD and PASSWORD not in user.password_hash
    assert authenticate(db_session, "alex", PASSWORD) is not None


def test_users_add_asks_for_the_password_twice_when_helpdesk_password_is_not_set(migrated_url, db_session):
    result = run_cli(migrated_url, "add", "alex", "--role", "agent", password=None,
                     stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # the typed password is not echoed
    assert authenticate(db_session, "alex", PASSWORD) is not None


@pytest.mark.parametrize("stdin", ["", f"{PASSWORD}\n", f"{PASSWORD}\nsomething else entirely\n"])
def test_users_add_says_what_is_missing_when_the_password_does_not_come_twice(migrated_url, db_session, stdin):
    result = run_cli(migrated_url, "add", "alex", "--role", "agent", password=None, stdin=stdin)
    assert result.exit_code == 1
    assert "no password was given: send it twice, a line each, on standard input, or set HELPDESK_PASSWORD" in \
        result.output
    assert stored_users(db_session) == []


def test_users_add_with_a_username_already_taken_fails_with_a_message_and_no_traceback(migrated_url):
    assert run_cli(migrated_url, "add", "alex", "--role", "agent").exit_code == 0
    result = run_cli(migrated_url, "add", "alex", "--role", "manager")
    assert result.exit_code != 0
    assert "username 'alex' is already taken" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an uncaught error


@pytest.mark.parametrize("command", [
    ("add", "alex", "--role", "manager"),  # the name is taken
    ("add", "bea", "--role", "agent", "--name", "Bea\nJones"),  # the display name has a line break
    ("set-password", "nobody"),  # there is no such user
])
def test_users_commands_say_what_is_wrong_before_asking_for_a_password(migrated_url, command):
    assert run_cli(migrated_url, "add", "alex", "--role", "agent").exit_code == 0
    result = run_cli(migrated_url, *command, password=None, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Password" not in result.output  # never asked: the problem was named first
    assert "taken" in result.output or "line break" in result.output or "no user 'nobody'" in result.output


def test_users_add_on_a_database_not_migrated_says_so_before_asking_for_a_password(database_url):
    result = run_cli(database_url, "add", "alex", "--role", "agent", password=None,
                     stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 1 and "helpdesk db upgrade" in result.output
    assert "Password" not in result.output


def test_users_add_with_a_short_password_fails_naming_the_problem(migrated_url, db_session):
    result = run_cli(migrated_url, "add", "alex", "--role", "agent", password="short")
    assert result.exit_code != 0
    assert "password is too short" in result.output and "Traceback" not in result.output
    assert stored_users(db_session) == []


@pytest.mark.parametrize("password, problem", [
    (" " * 12, "the password is only spaces"),  # the sign-in form could never take it
    ("aaaaaaaaaaaa", "the same characters over and over"),
    ("weak1weak1weak1", "the same characters over and over"),
    ("alex's long passphrase", "the password has the username in it"),
    # Common, breached, or a keyboard run, though long enough (zxcvbn's measure).
    ("password1234", "the password is too easy to guess (this is a very common password)"),
    ("qwertyuiop12", "the password is too easy to guess"),
    ("123456789012", "the password is too easy to guess"),
    ("Password123!", "the password is too easy to guess"),
])
def test_a_password_easy_to_guess_or_impossible_to_type_is_refused(migrated_url, db_session, password, problem):
    result = run_cli(migrated_url, "add", "alex", "--role", "agent", password=password)
    assert result.exit_code == 1 and problem in result.output and "Traceback" not in result.output
    assert stored_users(db_session) == []


def test_set_password_refuses_the_same_easy_passwords(db_session):
    make_user(db_session, "alex", "manager")
    for password in (" " * 14, "ALEXandALEXandALEX", "abcabcabcabc"):
        with pytest.raises(UserError):
            set_password(db_session, "alex", password)
    set_password(db_session, "alex", "a brand new passphrase")


def test_a_password_of_bytes_that_are_not_utf8_is_refused_naming_the_problem(migrated_url, db_session):
    not_text = "long-enough-\udcff\udcfe-password"  # how Python sees such bytes from the environment
    result = run_cli(migrated_url, "add", "alex", "--role", "agent", password=not_text)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the password is not valid text (UTF-8): type it again" in result.output
    assert stored_users(db_session) == []
    assert run_cli(migrated_url, "add", "alex", "--role", "agent").exit_code == 0
    assert authenticate(db_session, "alex", not_text) is None  # asking is no failure either


def test_users_add_with_an_unknown_role_fails_listing_the_roles(migrated_url):
    result = run_cli(migrated_url, "add", "alex", "--role", "boss")
    assert result.exit_code != 0
    assert "boss" in result.output and "manager" in result.output and "Traceback" not in result.output


def test_users_commands_on_a_database_not_migrated_say_to_run_db_upgrade(database_url):
    result = run_cli(database_url, "list")
    assert result.exit_code != 0
    assert "helpdesk db upgrade" in result.output and "Traceback" not in result.output


def test_users_list_deactivate_and_set_password_work_together(migrated_url, db_session):
    run_cli(migrated_url, "add", "alex", "--role", "manager", "--name", "Alex Smith")
    run_cli(migrated_url, "add", "sam", "--role", "agent")
    listing = run_cli(migrated_url, "list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[0].split() == ["alex", "manager", "active", "no", "phone", "no", "email", "password", "to", "choose",
                                "no", "two-step", "no", "sign-in", "recorded", "Alex", "Smith"]
    assert lines[1].split() == ["sam", "agent", "active", "no", "phone", "no", "email", "password", "to", "choose",
                                "no", "two-step", "no", "sign-in", "recorded"]
    run_cli(migrated_url, "set-phone", "sam", "+447700900123")
    run_cli(migrated_url, "set-email", "sam", "sam@example.org")
    assert run_cli(migrated_url, "list").output.splitlines()[1].split() == ["sam", "agent", "active", "phone",
                                                                             "••••••••", "123", "email", "password",
                                                                             "to", "choose", "no", "two-step",
                                                                             "no", "sign-in", "recorded"]

    result = run_cli(migrated_url, "deactivate", "sam")
    assert result.exit_code == 0 and result.output.strip() == (
        "Deactivated 'sam': they can no longer sign in. Their phone is free for someone else: the calls they answered "
        "on it still name them, and calls answered on it from now on do not.")
    assert run_cli(migrated_url, "list").output.splitlines()[1].split()[:5] == ["sam", "agent", "deactivated", "no",
                                                                               "phone"]
    refused = run_cli(migrated_url, "set-phone", "sam", "+447700900123")
    assert refused.exit_code == 1 and "'sam' is deactivated: reactivate them first, then give them a phone" in (
        refused.output)
    assert run_cli(migrated_url, "deactivate", "alex").output.strip() == (
        "Deactivated 'alex': they can no longer sign in.")  # no phone to free
    assert run_cli(migrated_url, "reactivate", "alex").exit_code == 0
    result = run_cli(migrated_url, "set-password", "sam", password="a new long passphrase")
    assert result.output.strip() == ("Changed the password of 'sam'. They choose their own password when they next "
                                     "sign in, as you know this one. They are still deactivated: 'helpdesk users "
                                     "reactivate sam' lets them sign in.")
    assert authenticate(db_session, "sam", "a new long passphrase") is None
    result = run_cli(migrated_url, "reactivate", "sam")
    assert result.exit_code == 0 and result.output.startswith("Reactivated 'sam': they can sign in again")
    assert authenticate(db_session, "sam", "a new long passphrase") is not None
    again = run_cli(migrated_url, "reactivate", "sam")
    assert again.exit_code == 1 and "'sam' is not deactivated" in again.output
    assert run_cli(migrated_url, "set-phone", "sam", "+447700900123").exit_code == 0  # back, given it again

    # A DWP auditor answers no calls: made one, sam's phone is freed, and none is given.
    result = run_cli(migrated_url, "set-role", "sam", "--role", "auditor")
    assert result.exit_code == 0 and result.output.strip() == (
        "'sam' is now an auditor; they sign in again to act as one. Their phone is free for someone else: the calls "
        "they answered on it still name them, and calls answered on it from now on do not.")
    refused = run_cli(migrated_url, "set-phone", "sam", "+447700900123")
    assert refused.exit_code == 1 and "'sam' is a DWP auditor, who answers no calls, so has no phone" in (
        refused.output)
    assert run_cli(migrated_url, "list").output.splitlines()[1].split()[:5] == ["sam", "auditor", "active", "no",
                                                                               "phone"]
    assert run_cli(migrated_url, "set-role", "sam", "--role", "agent").output.strip() == (
        "'sam' is now an agent; they sign in again to act as one.")  # no phone to free, none given back
    refused = run_cli(migrated_url, "add", "ann", "--role", "auditor", "--phone", "+447700900999")
    assert refused.exit_code == 2 and (
        "--phone is not for --role auditor: a DWP auditor answers no calls, so has no phone" in refused.output)
    assert "ann" not in run_cli(migrated_url, "list").output

    result = run_cli(migrated_url, "set-password", "alex", password="another long passphrase")
    assert result.exit_code == 0 and "Changed the password of 'alex'" in result.output
    assert authenticate(db_session, "alex", "another long passphrase") is not None
    assert authenticate(db_session, "alex", PASSWORD) is None


def test_deactivating_an_unknown_user_fails_naming_the_user(migrated_url):
    result = run_cli(migrated_url, "deactivate", "nobody")
    assert result.exit_code != 0 and "there is no user 'nobody'" in result.output


def test_a_user_is_deactivated_once_and_the_last_administrator_is_kept(migrated_url):
    run_cli(migrated_url, "add", "sam", "--role", "agent")
    run_cli(migrated_url, "add", "ada", "--role", "admin")
    assert run_cli(migrated_url, "deactivate", "sam").exit_code == 0
    again = run_cli(migrated_url, "deactivate", "sam")
    assert again.exit_code == 1 and "'sam' is already deactivated" in again.output
    last = run_cli(migrated_url, "deactivate", "ada")
    assert last.exit_code == 1 and "'ada' is the last active administrator: add another one first" in last.output
    run_cli(migrated_url, "add", "bea", "--role", "admin")
    assert run_cli(migrated_url, "deactivate", "ada").exit_code == 0


def test_a_role_is_changed_with_set_role_which_ends_sessions_and_keeps_the_last_administrator(
        migrated_url, db_session):
    from datetime import datetime

    from tests.integration.compliance_data import add_callback

    run_cli(migrated_url, "add", "sam", "--role", "agent")
    run_cli(migrated_url, "add", "ada", "--role", "admin")
    with db_session.begin():
        sam = db_session.scalar(select(User).where(User.username == "sam"))
        sam_id, epoch = sam.id, sam.session_epoch
        claimed = add_callback(db_session, datetime(2026, 11, 24, 9, tzinfo=timezone.utc), result=None,
                               status="open", claimed_by_id=sam_id)
        db_session.flush()
        claimed_id, model = claimed.id, type(claimed)
    result = run_cli(migrated_url, "set-role", "sam", "--role", "manager")
    assert result.output.strip() == "'sam' is now a manager; they sign in again to act as one."
    db_session.expire_all()
    with db_session.begin():
        sam = db_session.get(User, sam_id)
        assert (sam.role, sam.session_epoch) == ("manager", epoch + 1)
        assert db_session.get(model, claimed_id).claimed_by_id == sam_id  # a manager works the queue
    result = run_cli(migrated_url, "set-role", "sam", "--role", "auditor")
    assert result.output.strip() == "'sam' is now an auditor; they sign in again to act as one."
    db_session.expire_all()
    with db_session.begin():
        assert db_session.get(model, claimed_id).claimed_by_id is None  # given back to the queue
    same = run_cli(migrated_url, "set-role", "sam", "--role", "auditor")
    assert same.exit_code == 1 and "'sam' has the role auditor already" in same.output
    last = run_cli(migrated_url, "set-role", "ada", "--role", "manager")
    assert last.exit_code == 1 and "'ada' is the last active administrator: add another one first" in last.output
    wrong = run_cli(migrated_url, "set-role", "sam", "--role", "boss")
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output


@pytest.mark.parametrize("name", ["Alex\nSmith", "Alex \x1b[31mSmith", "Alex\tSmith"])
def test_a_display_name_with_a_line_break_or_control_character_is_refused(migrated_url, db_session, name):
    result = run_cli(migrated_url, "add", "alex", "--role", "agent", "--name", name)
    assert result.exit_code == 1 and "the display name has a line break or a control character" in result.output
    assert stored_users(db_session) == []


# --------------------------------------------------------------------------- signing in


def test_the_sign_in_page_has_a_labelled_form_with_a_csrf_token(client):
    response = client.get("/login")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="en-GB">' in page and 'href="#main"' in page
    assert '<label for="username">Username</label>' in page and '<label for="password">Password</label>' in page
    assert re.search(r'name="csrf_token"[^>]*value="[^"]+"', page)


def test_signing_in_without_a_csrf_token_is_refused(client, db_session):
    make_user(db_session, "alex", "manager")
    response = client.post("/login", data={"username": "alex", "password": PASSWORD})
    assert response.status_code == 400
    assert "did not come from this site" in response.get_data(as_text=True)
    assert client.get("/calls").status_code == 302  # still not signed in


def test_signing_in_with_a_forged_csrf_token_is_refused(client, db_session):
    make_user(db_session, "alex", "manager")
    csrf_token(client)
    response = client.post("/login", data={"csrf_token": "forged", "username": "alex", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/calls").status_code == 302


def test_a_manager_who_signs_in_is_sent_to_the_calls_page(client, db_session):
    make_user(db_session, "alex", "manager", display_name="Alex Smith")
    response = sign_in(client, "alex")
    assert response.status_code == 302 and response.headers["Location"] == "/calls"
    page = client.get("/calls").get_data(as_text=True)
    assert "Signed in as <strong>Alex Smith</strong>" in page and "(Manager)" in page


def test_the_session_cookie_is_httponly_samesite_and_secure_behind_https(client, db_session):
    make_user(db_session, "alex", "manager")
    response = sign_in(client, "alex")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_a_wrong_password_shows_the_generic_message_and_does_not_sign_in(client, db_session):
    make_user(db_session, "alex", "manager")
    response = sign_in(client, "alex", "not the password")
    assert response.status_code == 200
    assert WRONG in response.get_data(as_text=True)
    assert client.get("/calls").status_code == 302


def test_an_unknown_username_gets_the_same_message_as_a_wrong_password(client):
    response = sign_in(client, "nobody")
    assert WRONG in response.get_data(as_text=True)
    assert "nobody" not in response.get_data(as_text=True).split("<form")[0]


def test_a_deactivated_user_cannot_sign_in(client, db_session):
    make_user(db_session, "alex", "manager")
    deactivate(db_session, "alex")
    assert WRONG in sign_in(client, "alex").get_data(as_text=True)


def test_an_empty_form_asks_for_the_username_and_password(client):
    response = client.post("/login", data={"csrf_token": csrf_token(client)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Enter your username." in page and "Enter your password." in page


def test_head_of_the_login_page_is_answered_like_get(client):
    assert client.head("/login").status_code == 200


def test_an_over_long_username_or_password_is_told_plainly(client):
    response = client.post("/login", data={"csrf_token": csrf_token(client), "username": "x" * 65,
                                           "password": "y" * 1025})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "A username is at most 64 characters." in page and "A password is at most 1,024 characters." in page


def test_an_agent_gets_403_with_a_plain_page_on_the_calls_page(client, db_session):
    make_user(db_session, "sam", "agent")
    sign_in(client, "sam")
    response = client.get("/calls")
    assert response.status_code == 403
    assert "You cannot see this page" in response.get_data(as_text=True)


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_admins_can_see_the_calls_page(client, db_session, role):
    make_user(db_session, "pat", role)
    sign_in(client, "pat")
    assert client.get("/calls").status_code == 200


def test_an_anonymous_visitor_to_the_calls_page_is_sent_to_sign_in_and_back(client, db_session):
    response = client.get("/calls?day=2026-11-23")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=%2Fcalls%3Fday%3D2026-11-23")
    make_user(db_session, "alex", "manager")
    response = sign_in(client, "alex", next_path="/calls?day=2026-11-23")
    assert response.headers["Location"] == "/calls?day=2026-11-23"


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example", "//evil.example/calls", "/\\evil.example", "javascript:alert(1)", "http:/evil.example",
     "evil.example/calls"],
)
def test_next_pointing_off_this_site_is_not_followed(client, db_session, next_path):
    make_user(db_session, "alex", "manager")
    response = sign_in(client, "alex", next_path=next_path)
    assert response.status_code == 302
    assert response.headers["Location"] == "/calls"


def test_the_start_page_sends_each_person_to_their_page(client, db_session):
    assert client.get("/").headers["Location"] == "/login"
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    assert client.get("/").headers["Location"] == "/calls"


def test_signing_out_needs_a_post_with_a_csrf_token(client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/calls").status_code == 200  # still signed in
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/calls").status_code == 302


def test_a_deactivated_user_is_signed_out_at_their_next_request(client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    deactivate(db_session, "alex")
    assert client.get("/calls").status_code == 302


def test_a_password_change_ends_sessions_signed_in_with_the_old_password(client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    set_password(db_session, "alex", "a brand new passphrase")
    assert client.get("/calls").status_code == 302


def test_the_twilio_webhooks_need_no_csrf_token(client):
    response = post(client, "/twilio/voice/incoming", inbound(sid(1)))
    assert response.status_code == 200 and response.mimetype == "text/xml"


def test_pages_are_not_cached_and_cannot_be_framed(client):
    response = client.get("/login")
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_csrf_protection_stays_on_for_forms_when_the_app_is_built_without_test_settings(migrated_url, settings):
    app = create_app({"SECRET_KEY": "another-secret", "DATABASE_URL": migrated_url, "SETTINGS": settings,
                      "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "PUBLIC_BASE_URL": BASE_URL})
    try:
        assert app.config["WTF_CSRF_ENABLED"] is True
        response = app.test_client().post("/login", data={"username": "alex", "password": PASSWORD})
        assert response.status_code == 400
    finally:
        app.extensions["helpdesk.db"].dispose()


def test_an_agents_phone_is_set_with_the_cli_and_must_be_international(migrated_url):
    from click.testing import CliRunner

    from helpdesk.cli import main

    runner = CliRunner()
    env = {"DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": "a-long-enough-password"}
    added = runner.invoke(main, ["users", "add", "dana", "--role", "agent", "--phone", "+447700900321"], env=env)
    assert added.exit_code == 0, added.output
    refused = runner.invoke(main, ["users", "set-phone", "dana", "call me on 123"], env=env)
    assert refused.exit_code == 1 and "must be a UK number, a number in international format or a desk" in refused.output
    national = runner.invoke(main, ["users", "set-phone", "dana", "07700 900321"], env=env)
    assert national.exit_code == 0 and "+447700900321" in national.output
    changed = runner.invoke(main, ["users", "set-phone", "dana", "+447700900999"], env=env)
    assert changed.exit_code == 0 and "+447700900999" in changed.output
    from sqlalchemy import select

    from helpdesk.db import Database
    from helpdesk.models import FormerPhone, User

    database = Database(migrated_url)
    try:
        with database.session() as session:
            dana = session.scalars(select(User).where(User.username == "dana")).one()
            assert dana.phone == "+447700900999"
            # The phone she had is kept, from when she was added (the same number typed again
            # changed nothing) until it changed, so the calls she answered on it stay hers.
            former = session.scalars(select(FormerPhone)).one()
            assert (former.user_id, former.phone, former.since) == (dana.id, "+447700900321", dana.created_at)
            assert former.until == dana.phone_since and former.since < former.until
    finally:
        database.dispose()


def test_an_agents_phone_may_be_a_desk_phones_sip_address_with_the_cli(migrated_url):
    from click.testing import CliRunner
    from sqlalchemy import select

    from helpdesk.cli import main
    from helpdesk.db import Database
    from helpdesk.models import User

    runner = CliRunner()
    env = {"DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": "a-long-enough-password"}
    added = runner.invoke(main, ["users", "add", "dana", "--role", "agent", "--phone", "SIP:1001@PBX.example.org"],
                          env=env)
    assert added.exit_code == 0, added.output
    for typed, problem in (("sip:1001", "the SIP address must be sip:, the extension or name, @ and the phone "
                                        "system's address"),
                           ("client:dana", "client:USERNAME is each user's already"),
                           (f"sip:{'1' * 120}@pbx.example.org", "the SIP address is too long: at most 128 characters")):
        refused = runner.invoke(main, ["users", "set-phone", "dana", typed], env=env)
        assert refused.exit_code == 1 and problem in refused.output, typed
    changed = runner.invoke(main, ["users", "set-phone", "dana", "sip:+447700900321@10.0.0.5;transport=tls"], env=env)
    assert changed.exit_code == 0 and "will be rung on sip:+447700900321@10.0.0.5;transport=tls" in changed.output
    listed = runner.invoke(main, ["users", "list"], env=env)
    # The number in a SIP address is masked, as any other phone number the list shows.
    assert "phone sip:•••••••• 321@10.0.0.5;transport=tls" in listed.output and "900321" not in listed.output
    database = Database(migrated_url)
    try:
        with database.session() as session:
            assert session.scalars(select(User.phone)).one() == "sip:+447700900321@10.0.0.5;transport=tls"
    finally:
        database.dispose()


def test_the_cli_sets_since_when_an_agent_has_had_their_phone_in_uk_time(migrated_url):
    from click.testing import CliRunner
    from sqlalchemy import select

    from helpdesk.cli import main
    from helpdesk.db import Database
    from helpdesk.models import FormerPhone, User

    runner = CliRunner()
    env = {"DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": "a-long-enough-password"}
    assert runner.invoke(main, ["users", "add", "dana", "--role", "agent"], env=env).exit_code == 0

    def set_phone(*args: str):
        return runner.invoke(main, ["users", "set-phone", "dana", *args], env=env)

    summer = set_phone("07700 900321", "--since", "2026-07-01")  # midnight, British Summer Time
    assert summer.exit_code == 0, summer.output
    assert summer.output == ("'dana' will be rung on +447700900321; calls answered on it since 01 Jul 2026 00:00:00 "
                             "BST name them.\n")
    for args, code, problem in (
            (("+447700900999", "--since", "1 July"), 2, "Invalid value for --since: '1 July' is not a UK date and "
                                                     "time: use YYYY-MM-DD HH:MM"),
            (("+447700900999", "--since", "2026-03-29 01:15"), 2, "'2026-03-29 01:15' did not happen in the UK"),
            (("+447700900999", "--since", "2099-01-01"), 1, "Error: the time they have had the phone from cannot be "
                                                             "in the future"),
            (("+447700900999", "--since", "2026-06-30 23:00"), 1, "Error: they have had the phone they have now since "
                                                                  "01 Jul 2026 00:00:00 BST"),
            (("--since", "2026-08-01"), 1, "Error: a phone cleared has no time it was had from")):
        refused = set_phone(*args)
        assert (refused.exit_code, problem in refused.output) == (code, True), refused.output
    changed = set_phone("+447700900999", "--since", "2026-10-25 01:30")  # the first 01:30 (BST) of two
    assert changed.exit_code == 0, changed.output

    database = Database(migrated_url)
    try:
        with database.session() as session:
            dana = session.scalars(select(User).where(User.username == "dana")).one()
            change = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)
            assert (dana.phone, dana.phone_since) == ("+447700900999", change)
            former = session.scalars(select(FormerPhone)).one()
            assert (former.phone, former.since, former.until) == (
                "+447700900321", datetime(2026, 6, 30, 23, 0, tzinfo=timezone.utc), change)
    finally:
        database.dispose()


def test_the_cli_adds_a_user_with_a_phone_they_have_had_a_while(migrated_url):
    from helpdesk.db import Database
    from helpdesk.models import AuditEntry

    runner = CliRunner()
    env = {"DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": "a-long-enough-password"}

    def add(username: str, *args: str):
        return runner.invoke(helpdesk_cli, ["users", "add", username, "--role", "agent", *args], env=env)

    for args, problem in (
            (("--since", "2026-11-02 09:00"), "--since needs --phone: it says since when they have had it"),
            (("--phone", "07700 900321", "--since", "2 November"), "'2 November' is not a UK date and time"),
            (("--phone", "07700 900321", "--since", "2026-03-29 01:15"), "'2026-03-29 01:15' did not happen in the UK"),
            (("--phone", "07700 900321", "--since", "2099-01-01"), "the time they have had the phone from cannot be "
                                                                   "in the future")):
        refused = add("erin", *args)
        assert (refused.exit_code, problem in refused.output) == (2, True), refused.output
    added = add("erin", "--name", "Erin Agent", "--phone", "07700 900321", "--since", "2026-11-02 09:00")
    assert added.exit_code == 0, added.output
    assert "Calls answered on +447700900321 since 02 Nov 2026 09:00:00 GMT name them.\n" in added.output
    assert add("fay", "--phone", "07700 900654").exit_code == 0  # from now, as before

    database = Database(migrated_url)
    try:
        with database.session() as session:
            users = {user.username: user for user in session.scalars(select(User))}
            assert set(users) == {"erin", "fay"}  # nothing added by the refusals
            assert users["erin"].phone_since == datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
            assert users["fay"].phone_since == users["fay"].created_at
            added = {detail["user"]: detail for detail in (json.loads(entry.detail) for entry in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "user.added")))}
            assert added["erin"]["since"] == "2026-11-02T09:00:00+00:00" and "since" not in added["fay"]
    finally:
        database.dispose()


@pytest.mark.parametrize("path", ["/login", "/queue", "/calls", "/service-levels", "/evidence"])
def test_pages_say_the_database_is_not_answering_with_a_503_not_a_bare_500(app, client, db_session, migrated_url,
                                                                            path, caplog):
    from tests.integration.outage import bring_back, take_down

    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    take_down(app, migrated_url)
    try:
        response = client.get(path)
    finally:
        bring_back(app, migrated_url)
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert "The database is not answering" in page and "Calls are still answered" in page
    assert "Traceback" not in caplog.text and f"GET {path}: the database did not answer (" in caplog.text
    assert client.get(path).status_code in (200, 302)  # and back to normal once it answers


def test_signing_out_ends_the_session_even_for_a_copy_of_its_cookie(app, client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)  # e.g. taken from a shared computer
    assert copy.get("/calls").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    assert copy.get("/calls").status_code == 302  # sent to sign in
    assert sign_in(client, "alex").status_code == 302 and client.get("/calls").status_code == 200


def test_a_session_ends_after_eight_hours_without_a_request(app, client, db_session, monkeypatch):
    import itsdangerous.timed

    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    assert app.permanent_session_lifetime == timedelta(hours=8)
    with client.session_transaction() as session:
        assert session.permanent
    real = itsdangerous.timed.TimestampSigner.get_timestamp

    def hours_on(hours: float) -> None:
        monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp",
                            lambda self: real(self) + int(hours * 3600))

    hours_on(7)
    assert client.get("/calls").status_code == 200  # seven hours idle: still signed in, and refreshed
    hours_on(14)
    assert client.get("/calls").status_code == 200  # seven hours since that request
    hours_on(22.02)
    assert client.get("/calls").status_code == 302  # eight hours and a minute since the last one


def test_a_forms_token_lasts_as_long_as_its_session(app, client, db_session, monkeypatch):
    import itsdangerous.timed

    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    token = csrf_token(client, "/calls")  # a page loaded, then left open for two hours
    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: real(self) + 2 * 3600)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_a_run_of_wrong_passwords_is_refused_for_a_while_known_username_or_not(app, client, clock, db_session):
    from helpdesk.users import SIGN_IN_LIMIT

    make_user(db_session, "alex", "manager")
    for name in ("alex", "nobody-here"):
        for _ in range(SIGN_IN_LIMIT):
            assert "Username or password is wrong." in sign_in(client, name, "not the password").get_data(as_text=True)
        refused = sign_in(client, name, PASSWORD if name == "alex" else "x")
        page = refused.get_data(as_text=True)
        assert refused.status_code == 429 and "Too many wrong passwords for this username. Try again after" in page
    assert client.get("/calls").status_code == 302  # the right password was not even tried
    clock.advance(15 * 60 + 1)
    assert sign_in(client, "alex").status_code == 302 and client.get("/calls").status_code == 200


def test_parallel_sign_ins_never_have_more_passwords_checked_than_the_limit(db_session, clock):
    """Each try is counted before its password is checked, so tries that all start before any
    has finished (parallel requests) still get at most the limit checked."""
    from helpdesk.users import SIGN_IN_LIMIT, begin_sign_in, finish_sign_in, sign_in_keys

    keys = sign_in_keys(db_session, "alex", "a secret key")
    started = [begin_sign_in(db_session, keys, clock.now) for _ in range(SIGN_IN_LIMIT + 5)]
    heard = [blocked for blocked in started if blocked is None]
    assert len(heard) == SIGN_IN_LIMIT
    for _ in heard:
        finish_sign_in(db_session, keys, succeeded=False)
    blocked = begin_sign_in(db_session, keys, clock.now)
    assert blocked == clock.now + timedelta(minutes=15)  # the unheard ones did not push it later


def test_the_log_never_has_the_username_typed_only_a_users_id(app, client, db_session, caplog):
    make_user(db_session, "alex", "manager")
    with caplog.at_level("INFO"):
        sign_in(client, "alex", "not the password")
        sign_in(client, "my secret passphrase", "oops")
    assert "my secret passphrase" not in caplog.text and "alex" not in caplog.text
    assert "sign-in refused for user id " in caplog.text and "sign-in refused for an unknown username" in caplog.text


def test_a_run_of_refusals_against_a_name_goes_on_when_a_user_of_that_name_is_created(app, client, clock,
                                                                                   db_session, monkeypatch):
    from helpdesk.users import SIGN_IN_LIMIT

    for _ in range(SIGN_IN_LIMIT):
        sign_in(client, "newbie", "guess")
    assert sign_in(client, "newbie", "guess").status_code == 429
    make_user(db_session, "newbie", "agent")  # an administrator adds the user meanwhile
    # The guesser sees no change, which would tell them the account now exists.
    assert sign_in(client, "newbie", "guess").status_code == 429
    assert sign_in(client, "newbie", PASSWORD).status_code == 429
    # A new password from an administrator lets the user in at once, the earlier refusals included.
    monkeypatch.setenv("SECRET_KEY", app.config["SECRET_KEY"])
    set_password(db_session, "newbie", "another long enough password")
    assert sign_in(client, "newbie", "another long enough password").status_code == 302


@pytest.mark.parametrize("typed", ["al\x00ex", "alex\x00", "\x00"])
def test_a_username_no_user_can_have_is_just_a_wrong_sign_in(app, client, db_session, typed):
    make_user(db_session, "alex", "manager")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: a failure would be a 500
    refused = sign_in(client, typed, PASSWORD)
    assert refused.status_code == 200 and "Username or password is wrong." in refused.get_data(as_text=True)


def test_the_database_never_has_the_username_typed_either(app, client, db_session):
    from helpdesk.models import SignInFailure

    alex = make_user(db_session, "alex", "manager")
    sign_in(client, "alex", "not the password")
    sign_in(client, "My Secret Passphrase", "oops")
    sign_in(client, "my secret passphrase ", "oops again")  # the same name, as sign-in reads it
    with db_session.begin():
        counted = db_session.scalars(select(SignInFailure.who).order_by(SignInFailure.id)).all()
    assert counted[0] == f"user:{alex.id}"
    assert counted[1] == counted[2] and counted[1].startswith("name:")
    assert not any("secret" in who.lower() or "passphrase" in who.lower() for who in counted)
    # Keyed with SECRET_KEY: without it, the digest of a guess does not match.
    import hashlib
    assert hashlib.sha256(b"my secret passphrase").hexdigest()[:40] not in counted[1]


def test_a_session_in_constant_use_still_ends_12_hours_after_signing_in(client, clock, db_session):
    """The queue page polls every 15 seconds, renewing the idle limit: a left-open page or a stolen
    cookie in use must still end."""
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    clock.advance(11 * 3600 + 59 * 60)
    assert client.get("/calls").status_code == 200
    clock.advance(2 * 60)
    ended = client.get("/calls")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")
    assert "You have been signed in for 12 hours, so you have been signed out." in client.get(
        ended.headers["Location"]).get_data(as_text=True)
    assert client.get("/calls").status_code == 302  # the session is gone, not merely refused once
    assert sign_in(client, "alex").status_code == 302 and client.get("/calls").status_code == 200
    # Ended, and the first thing asked for is the sign-in page: its form works at once.
    clock.advance(12 * 3600 + 60)
    assert sign_in(client, "alex").status_code == 302 and client.get("/calls").status_code == 200


def test_a_new_password_from_an_administrator_lets_a_blocked_user_in_at_once(app, client, db_session):
    from helpdesk.users import SIGN_IN_LIMIT

    make_user(db_session, "alex", "manager")
    for _ in range(SIGN_IN_LIMIT):
        sign_in(client, "alex", "not the password")
    assert sign_in(client, "alex").status_code == 429
    set_password(db_session, "alex", "a brand new passphrase")
    assert sign_in(client, "alex", "a brand new passphrase").status_code == 302


def test_not_found_wrong_method_and_too_large_get_the_sites_own_page_and_machines_plain_answers(app, client,
                                                                                               db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    for response, status, title in ((client.get("/no-such-page"), 404, "Page not found"),
                                    (client.put("/calls"), 405, "That cannot be done here")):
        page = response.get_data(as_text=True)
        assert response.status_code == status and f"<h1>{title}</h1>" in page and 'lang="en-GB"' in page
        # They show who is signed in, with a Sign out form: not to be framed or cached.
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    signed_out = app.test_client().get("/no-such-page").get_data(as_text=True)
    assert "sign in and use the links at the top" in signed_out  # there are no links above yet
    static = client.get("/static/helpdesk.css")
    assert static.status_code == 200 and static.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in static.headers.get("Cache-Control", "")
    app.config["MAX_CONTENT_LENGTH"] = 10
    too_big = client.post("/logout", data={"csrf_token": "x" * 100})
    assert too_big.status_code == 413 and "<h1>Too much was sent</h1>" in too_big.get_data(as_text=True)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    webhook = client.get("/twilio/voice/incoming")
    assert webhook.status_code == 405 and "That cannot be done here" not in webhook.get_data(as_text=True)
    assert "Page not found" not in client.get("/metrics/nothing").get_data(as_text=True)
