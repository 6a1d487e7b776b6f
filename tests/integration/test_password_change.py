"""Change your password (/account/password): any signed-in user, their current password first."""
from __future__ import annotations

import logging

import pytest

from helpdesk.models import Callback, User
from helpdesk.users import SIGN_IN_LIMIT, authenticate, set_password
from tests.integration.test_queue_page import at, miss_a_call, stored, words
from tests.integration.test_users_and_login import PASSWORD, csrf_token, make_user, run_cli, sign_in, stored_users

NEW = "a brand new passphrase"
PAGE = "/account/password"


def change(client, current: str = PASSWORD, new: str = NEW, again: str | None = None):
    """Send the form as a browser does."""
    return client.post(PAGE, data={"csrf_token": csrf_token(client, PAGE), "current_password": current,
                                   "new_password": new, "new_password_again": new if again is None else again})


def works(db_session, username: str, password: str) -> bool:
    return authenticate(db_session, username, password) is not None


@pytest.mark.parametrize("role, start", [("agent", "/queue"), ("manager", "/calls"), ("auditor", "/calls"),
                                         ("admin", "/calls")])
def test_every_role_changes_their_own_password_and_stays_signed_in(client, db_session, role, start):
    make_user(db_session, "alex", role)
    sign_in(client, "alex")

    response = change(client)

    assert response.status_code == 302 and response.headers["Location"] == start
    assert works(db_session, "alex", NEW) and not works(db_session, "alex", PASSWORD)
    page = words(client.get(start).get_data(as_text=True))
    assert ("Your password has been changed. If you were signed in anywhere else, you have been signed out "
            "there.") in page
    assert client.get(start).status_code == 200  # this session goes on


def test_a_password_change_signs_the_user_out_everywhere_else(app, client, db_session):
    make_user(db_session, "alex", "manager")
    elsewhere = app.test_client()
    sign_in(client, "alex")
    sign_in(elsewhere, "alex")
    assert elsewhere.get("/calls").status_code == 200

    assert change(client).status_code == 302

    assert elsewhere.get("/calls").status_code == 302
    assert client.get("/calls").status_code == 200
    assert sign_in(elsewhere, "alex", NEW).status_code == 302 and elsewhere.get("/calls").status_code == 200


def test_a_password_change_does_not_make_the_session_last_longer_than_12_hours_from_signing_in(client, clock,
                                                                                                db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    clock.advance(11 * 3600)
    assert change(client).status_code == 302 and client.get("/calls").status_code == 200
    clock.advance(3600 + 60)
    ended = client.get("/calls")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")


def test_the_page_is_for_signed_in_users_only(client, db_session):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    make_user(db_session, "alex", "agent")
    token = csrf_token(client)  # the sign-in page's: a form may be sent, but not acted on
    refused = client.post(PAGE, data={"csrf_token": token, "current_password": PASSWORD, "new_password": NEW,
                                      "new_password_again": NEW})
    assert refused.status_code == 302 and "/login" in refused.headers["Location"]
    assert works(db_session, "alex", PASSWORD)


def test_the_header_links_to_the_page_for_everyone_signed_in(client, db_session):
    make_user(db_session, "alex", "agent")
    assert 'href="/account/password"' not in client.get("/login").get_data(as_text=True)
    sign_in(client, "alex")
    assert '<a href="/account/password">Change password</a>' in client.get("/queue").get_data(as_text=True)
    page = client.get(PAGE).get_data(as_text=True)
    assert '<a href="/account/password" aria-current="page">Change password</a>' in page
    assert '<title>Change your password' in page and 'autocomplete="current-password"' in page


def test_a_wrong_current_password_changes_nothing_and_counts_as_a_wrong_sign_in(app, client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")

    response = change(client, current="not the password")

    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "<title>Error: Change your password" in page
    assert '<a href="#current_password">Your current password is wrong.</a>' in page
    assert ('<input type="password" id="current_password" name="current_password" autocomplete="current-password" '
            'aria-describedby="current_password-error" aria-invalid="true">') in " ".join(page.split())
    assert works(db_session, "alex", PASSWORD) and not works(db_session, "alex", NEW)
    assert client.get("/calls").status_code == 200  # still signed in
    # Counted with the sign-in page's wrong passwords: one fewer is left there.
    other = app.test_client()
    for _ in range(SIGN_IN_LIMIT - 1):
        sign_in(other, "alex", "still not the password")
    assert sign_in(other, "alex").status_code == 429


def test_after_too_many_wrong_passwords_nothing_is_checked_until_the_window_passes(client, clock, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    for _ in range(SIGN_IN_LIMIT):
        assert change(client, current="not the password").status_code == 400

    refused = change(client)  # the right password, not even checked

    page = words(refused.get_data(as_text=True))
    assert refused.status_code == 429
    assert "Too many wrong passwords for your username. Try again after" in page
    assert not works(db_session, "alex", NEW)
    clock.advance(15 * 60 + 1)
    assert change(client).status_code == 302 and works(db_session, "alex", NEW)


def test_the_right_current_password_clears_the_wrong_ones_before_it(app, client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    for _ in range(SIGN_IN_LIMIT - 1):
        change(client, current="not the password")
    assert change(client, new="too short").status_code == 400  # the current password was right
    other = app.test_client()
    for _ in range(SIGN_IN_LIMIT - 1):
        sign_in(other, "alex", "still not the password")
    assert sign_in(other, "alex").status_code == 302


@pytest.mark.parametrize("new, again, field, problem", [
    ("too short", None, "new_password", "The password is too short: use at least 12 characters."),
    ("Password123!", None, "new_password", "The password is too easy to guess"),
    ("alex is my name and a password", None, "new_password", "The password has the username in it"),
    (PASSWORD, None, "new_password", "The new password is the same as your current one. Choose a different one."),
    (NEW, "a brand new passphrase!", "new_password_again",
     "The new password was not the same the second time. Type it again."),
])
def test_a_new_password_that_breaks_the_rules_or_is_mistyped_is_refused_at_its_field(client, db_session, new, again,
                                                                                    field, problem):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")

    response = change(client, new=new, again=again)

    page = words(response.get_data(as_text=True))
    assert response.status_code == 400
    assert f"Error: {problem}" in page  # at the field, for screen readers too
    assert f'<a href="#{field}">{problem}' in response.get_data(as_text=True)
    assert works(db_session, "alex", PASSWORD)


def test_every_problem_is_shown_at_once(client, db_session):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    page = change(client, current="not the password", new="too short").get_data(as_text=True)
    assert '<a href="#current_password">Your current password is wrong.</a>' in page
    assert '<a href="#new_password">The password is too short: use at least 12 characters.</a>' in page


def test_a_new_password_is_not_called_the_same_as_the_current_one_when_what_was_typed_there_was_wrong(client,
                                                                                                    db_session):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    page = change(client, current="a brand new passphrase", new="a brand new passphrase").get_data(as_text=True)
    assert '<a href="#current_password">Your current password is wrong.</a>' in page
    assert "the same as your current one" not in page


@pytest.mark.parametrize("blank", ["current_password", "new_password", "new_password_again"])
def test_an_empty_field_is_asked_for_and_not_counted_as_a_wrong_password(app, client, db_session, blank):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    form = {"current_password": PASSWORD, "new_password": NEW, "new_password_again": NEW, blank: ""}
    for _ in range(SIGN_IN_LIMIT):
        response = client.post(PAGE, data={"csrf_token": csrf_token(client, PAGE), **form})
        assert response.status_code == 400
    assert {"current_password": "Enter your current password.", "new_password": "Enter a new password.",
            "new_password_again": "Enter the new password again."}[blank] in response.get_data(as_text=True)
    assert works(db_session, "alex", PASSWORD)
    assert sign_in(app.test_client(), "alex").status_code == 302


def test_a_typed_password_is_never_sent_back_in_the_page(client, db_session):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    page = change(client, current="my secret guess", new="another secret one", again="a third secret")
    text = page.get_data(as_text=True)
    assert page.status_code == 400
    assert not [typed for typed in ("my secret guess", "another secret one", "a third secret") if typed in text]


def test_an_over_long_password_is_told_plainly(client, db_session):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    response = change(client, new="x" * 1025)
    assert response.status_code == 400 and "A password is at most 1,024 characters." in response.get_data(as_text=True)


def test_the_form_needs_its_csrf_token(client, db_session):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    response = client.post(PAGE, data={"current_password": PASSWORD, "new_password": NEW, "new_password_again": NEW})
    assert response.status_code == 400 and works(db_session, "alex", PASSWORD)


def test_a_password_changed_meanwhile_by_an_administrator_is_not_overwritten(app, client, db_session, monkeypatch):
    """The form checked the old password; the administrator's `set-password` came in between."""
    import helpdesk.own_password as own

    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    checked = own.authenticate

    def then_the_administrator(session, username, password):
        user = checked(session, username, password)
        set_password(db_session, "alex", "the administrators choice")
        return user

    monkeypatch.setattr(own, "authenticate", then_the_administrator)
    response = change(client)

    assert response.status_code == 400
    assert ("Your password was changed meanwhile, in another tab or by an administrator, so this change was not "
            "made.") in response.get_data(as_text=True)
    assert works(db_session, "alex", "the administrators choice") and not works(db_session, "alex", NEW)


def test_the_log_names_the_user_and_never_a_password(client, db_session, caplog):
    make_user(db_session, "alex", "agent")
    sign_in(client, "alex")
    with caplog.at_level(logging.INFO):
        change(client, current="a wrong guess here")
        change(client)
    assert "password change refused for user id" in caplog.text and "user alex changed their password" in caplog.text
    assert not any(secret in caplog.text for secret in (PASSWORD, NEW, "a wrong guess here"))


# --------------------------------------------------------------------------- a password an administrator set


def temporary_user(db_session, username: str = "alex", role: str = "agent"):
    return make_user(db_session, username, role, temporary=True)


def test_a_user_with_a_password_an_administrator_set_is_asked_to_choose_their_own_first(client, db_session):
    temporary_user(db_session)

    response = sign_in(client, "alex", next_path="/queue")

    assert response.status_code == 302 and response.headers["Location"] == PAGE
    page = words(client.get(PAGE).get_data(as_text=True))
    assert "An administrator set the password you signed in with, so they know it. Choose your own to carry on." \
        in page
    assert "Callback queue" not in page  # no navigation to follow yet


@pytest.mark.parametrize("path", ["/", "/queue", "/calls", "/enquiries", "/service-levels", "/evidence"])
def test_every_page_sends_them_back_to_choose_their_password(client, db_session, path):
    temporary_user(db_session, role="manager")
    sign_in(client, "alex")
    response = client.get(path)
    assert response.status_code == 302 and response.headers["Location"] == PAGE


def test_a_form_sent_before_choosing_a_password_is_not_acted_on(client, clock, db_session):
    miss_a_call(client, clock, 1, at(10, 0))
    [callback] = stored(db_session, Callback)
    temporary_user(db_session)
    sign_in(client, "alex")

    response = client.post(f"/queue/{callback.id}/claim", data={"csrf_token": csrf_token(client, PAGE)})

    assert response.status_code == 302 and response.headers["Location"] == PAGE
    assert "Choose your own password first, so that nobody else knows it. That was not done." in words(
        client.get(PAGE).get_data(as_text=True))
    assert [c.claimed_by_id for c in stored(db_session, Callback)] == [None]


def test_they_may_sign_out_before_choosing(client, db_session):
    temporary_user(db_session)
    sign_in(client, "alex")
    response = client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get(PAGE).status_code == 302 and "/login?next=" in client.get(PAGE).headers["Location"]


def test_once_they_have_chosen_their_own_password_every_page_is_theirs_again(client, db_session):
    temporary_user(db_session, role="manager")
    sign_in(client, "alex")

    response = change(client)

    assert response.status_code == 302 and response.headers["Location"] == "/calls"
    assert client.get("/calls").status_code == 200
    assert [user.must_change_password for user in stored(db_session, User)] == [False]
    assert works(db_session, "alex", NEW)


def test_a_refused_choice_still_leaves_them_on_the_page(client, db_session):
    temporary_user(db_session)
    sign_in(client, "alex")
    assert change(client, new=PASSWORD).status_code == 400  # the same as the administrator's
    assert client.get("/queue").headers["Location"] == PAGE


def test_the_command_line_makes_passwords_temporary_unless_permanent(migrated_url, db_session):
    assert run_cli(migrated_url, "add", "alex", "--role", "agent").exit_code == 0
    permanent = run_cli(migrated_url, "add", "sam", "--role", "admin", "--permanent")
    assert permanent.exit_code == 0 and permanent.output.splitlines()[0] == "Added admin 'sam'."
    assert [(u.username, u.must_change_password) for u in stored_users(db_session)] == [("alex", True),
                                                                                        ("sam", False)]
    listing = run_cli(migrated_url, "list").output.splitlines()
    assert "password to choose" in listing[0] and "own password" in listing[1]

    run_cli(migrated_url, "set-password", "alex", "--permanent", password="a new long passphrase")
    again = run_cli(migrated_url, "set-password", "sam", password="another long passphrase")
    assert again.output.strip() == ("Changed the password of 'sam'. They choose their own password when they next "
                                    "sign in, as you know this one.")
    assert [(u.username, u.must_change_password) for u in stored_users(db_session)] == [("alex", False),
                                                                                        ("sam", True)]
