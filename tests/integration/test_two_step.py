"""Two-step sign-in (helpdesk.two_step): setting it up with an authenticator app, signing in with
its code or a recovery code, the roles that must have it, turning it off, and the command line;
through a real SMTP server for the notices, on SQLite and PostgreSQL."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from helpdesk.cli import main as helpdesk_cli
from helpdesk.models import RecoveryCode
from helpdesk.two_step_rules import app_code
from helpdesk.users import SIGN_IN_LIMIT, SIGN_IN_REFUSED, SIGNED_IN, TWO_STEP_OFF, TWO_STEP_ON, set_password
from tests.integration.conftest import make_app, make_settings, stored
from tests.integration import test_password_links as links_tests
from tests.integration.test_password_links import ask, choose, link_in, mails
from tests.integration.test_queue_page import words
from tests.integration.test_users_page import users_list
from tests.integration.test_sign_in_audit import entries
from tests.integration.test_user_audit import user_named
from tests.integration.test_users_and_login import PASSWORD, csrf_token, make_user, run_cli, sign_in

ADDRESS = "alex.smith@example.org"
KEY = re.compile(r'<p class="secret-key" id="secret-key">([A-Z2-7 ]+)</p>')
CODES = re.compile(r"<li><code>([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})</code></li>")


# The app with a mail server (aiosmtpd on 127.0.0.1), as the links' tests have it.
app, client, smtp_server = links_tests.app, links_tests.client, links_tests.smtp_server


@pytest.fixture
def alex(db_session):
    return make_user(db_session, "alex", "manager", display_name="Alex Smith", email=ADDRESS)


def set_up(client, clock) -> tuple[str, list[str]]:
    """Set up two-step sign-in as the signed-in user, as they would with their phone: the key from
    the page, the code the app then shows. Returns the key and the recovery codes shown."""
    page = client.get("/account/two-step").get_data(as_text=True)
    key = KEY.search(page).group(1).replace(" ", "")
    response = post_code(client, "/account/two-step/on", app_code(key, clock.now), page_path="/account/two-step")
    assert response.status_code == 200, response.get_data(as_text=True)
    return key, CODES.findall(response.get_data(as_text=True))


def post_code(client, path: str, code: str, page_path: str = "/login/code", prefix: str = ""):
    token = csrf_token(client, page_path)
    return client.post(path, data={"csrf_token": token, f"{prefix}code": code})


def signed_in_page(client) -> int:
    """The status of a page only a signed-in manager sees (200, or 302 to sign in)."""
    return client.get("/calls").status_code


def stored_codes(db_session) -> list[RecoveryCode]:
    return stored(db_session, RecoveryCode)


def two_step_user(app, client, clock, db_session):
    """alex, with two-step sign-in set up and signed out; their key and recovery codes."""
    make_user(db_session, "alex", "manager", display_name="Alex Smith", email=ADDRESS)
    sign_in(client, "alex")
    key, codes = set_up(client, clock)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    clock.advance(30)  # the step whose code set it up is taken
    return key, codes


# --------------------------------------------------------------------------- setting it up


def test_a_user_sets_up_two_step_sign_in_with_the_key_the_page_shows_and_gets_ten_recovery_codes(
        client, clock, db_session, alex, smtp_server):
    sign_in(client, "alex")
    page = client.get("/account/two-step").get_data(as_text=True)
    assert "Set up two-step sign-in" in page and "<svg" in page  # the QR code, drawn in the page
    key = KEY.search(page).group(1).replace(" ", "")
    assert len(key) == 32
    assert KEY.search(client.get("/account/two-step").get_data(as_text=True)).group(1).replace(" ", "") == key

    response = post_code(client, "/account/two-step/on", app_code(key, clock.now), page_path="/account/two-step")

    assert response.status_code == 200
    codes = CODES.findall(response.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = user_named(db_session, "alex")
    assert stored.two_step_secret == key and stored.two_step_since == clock.now
    digests = [code.digest for code in stored_codes(db_session)]
    assert len(digests) == 10 and not any(code.replace("-", "") in digest for code in codes for digest in digests)
    [entry] = entries(db_session, TWO_STEP_ON)
    assert entry.actor == "alex"
    page = words(client.get("/account/two-step").get_data(as_text=True))
    assert "Two-step sign-in is on" in page and "You have 10 recovery codes left." in page
    [message] = mails(smtp_server)
    assert message["To"] == ADDRESS and message["Subject"] == "Two-step sign-in is set up for you on Help desk"
    assert "If that was not you, someone knows your password" in " ".join(message.get_content().split())


@pytest.mark.parametrize("typed", ["000000", "", "12345", "abcdef", "1" * 41, "12\x0034", "١٢٣٤٥٦",
                                   "🙂🙂🙂"])
def test_a_code_that_is_not_the_apps_sets_nothing_up(client, clock, db_session, alex, typed):
    sign_in(client, "alex")
    client.get("/account/two-step")

    response = post_code(client, "/account/two-step/on", typed, page_path="/account/two-step")

    assert response.status_code == 400
    page = words(response.get_data(as_text=True))
    assert "There is a problem" in page
    assert user_named(db_session, "alex").two_step_secret is None and stored_codes(db_session) == []
    assert entries(db_session, TWO_STEP_ON) == []


# --------------------------------------------------------------------------- signing in


def test_with_two_step_sign_in_the_password_alone_signs_nobody_in_and_the_apps_code_does(app, client, clock,
                                                                                         db_session):
    key, _ = two_step_user(app, client, clock, db_session)

    response = sign_in(client, "alex", next_path="/service-levels")

    assert response.status_code == 302 and response.headers["Location"] == "/login/code"
    assert signed_in_page(client) == 302
    assert "Your password was right" in words(client.get("/login/code").get_data(as_text=True))
    response = post_code(client, "/login/code", app_code(key, clock.now))
    assert response.status_code == 302 and response.headers["Location"] == "/service-levels"
    assert signed_in_page(client) == 200
    last = entries(db_session, SIGNED_IN)[-1]
    assert '"two_step": "app"' in last.detail


def test_each_code_is_taken_once_and_the_steps_either_side_are_taken_too(app, client, clock, db_session):
    key, _ = two_step_user(app, client, clock, db_session)
    code = app_code(key, clock.now)
    sign_in(client, "alex")
    assert post_code(client, "/login/code", code).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})

    other = app.test_client()  # someone who saw the code over a shoulder, within the same 30 seconds
    sign_in(other, "alex")
    response = post_code(other, "/login/code", code)
    assert response.status_code == 200 and "That code is wrong, or has been used already" in words(
        response.get_data(as_text=True))
    assert signed_in_page(other) == 302



def test_a_code_from_a_phone_one_step_behind_is_taken_but_not_two(app, client, clock, db_session):
    key, _ = two_step_user(app, client, clock, db_session)
    clock.advance(60)  # well clear of the step whose code set it up
    sign_in(client, "alex")
    assert post_code(client, "/login/code", app_code(key, clock.now - timedelta(seconds=60))).status_code == 200
    assert post_code(client, "/login/code", app_code(key, clock.now - timedelta(seconds=30))).status_code == 302


def test_a_wrong_code_is_a_refused_sign_in_in_the_audit_log_and_counts_towards_the_limit(app, client, clock,
                                                                                         db_session):
    key, _ = two_step_user(app, client, clock, db_session)
    sign_in(client, "alex")

    for _ in range(SIGN_IN_LIMIT - 1):  # with the password's own try, the limit
        assert post_code(client, "/login/code", "000000").status_code == 200

    [*_, refused] = entries(db_session, SIGN_IN_REFUSED)
    assert '"reason": "wrong code"' in refused.detail
    response = post_code(client, "/login/code", app_code(key, clock.now))
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "Too many wrong passwords or codes" in words(client.get("/login").get_data(as_text=True))
    assert signed_in_page(client) == 302


def test_the_right_password_does_not_clear_the_count_until_the_code_is_right(app, client, clock, db_session):
    key, _ = two_step_user(app, client, clock, db_session)
    for _ in range(SIGN_IN_LIMIT // 2):  # each round: the password right, a code wrong
        sign_in(client, "alex")
        post_code(client, "/login/code", "000000")

    response = sign_in(client, "alex")

    assert response.status_code == 429  # the password is not even checked now
    assert signed_in_page(client) == 302


def test_the_code_must_come_within_five_minutes_of_the_password(app, client, clock, db_session):
    key, _ = two_step_user(app, client, clock, db_session)
    sign_in(client, "alex")
    clock.advance(301)

    response = client.get("/login/code")

    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "the code must come within 5 minutes of your password" in words(client.get("/login").get_data(as_text=True))
    assert signed_in_page(client) == 302


def test_a_password_set_meanwhile_ends_the_wait_for_the_code(app, client, clock, db_session):
    key, _ = two_step_user(app, client, clock, db_session)
    sign_in(client, "alex")
    set_password(db_session, "alex", "a brand new passphrase here")

    response = post_code(client, "/login/code", app_code(key, clock.now), page_path="/login")

    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert signed_in_page(client) == 302


def test_the_code_page_without_a_password_first_goes_back_to_sign_in(client):
    response = client.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "5 minutes" not in words(client.get("/login").get_data(as_text=True))


# --------------------------------------------------------------------------- recovery codes


def test_a_recovery_code_signs_in_once_however_it_is_typed_and_the_user_is_told(app, client, clock, db_session,
                                                                                smtp_server):
    _, codes = two_step_user(app, client, clock, db_session)
    sign_in(client, "alex")

    response = post_code(client, "/login/code", " " + codes[3].lower().replace("-", " ") + " ")

    assert response.status_code == 302
    assert "You signed in with a recovery code" in words(client.get(response.headers["Location"]).get_data(
        as_text=True))
    assert '"two_step": "recovery code"' in entries(db_session, SIGNED_IN)[-1].detail
    assert sum(code.used_at is not None for code in stored_codes(db_session)) == 1
    message = mails(smtp_server)[-1]
    assert message["Subject"] == "A recovery code was used to sign in to Help desk"
    assert "You have 9 left." in message.get_content()
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    sign_in(client, "alex")
    assert post_code(client, "/login/code", codes[3]).status_code == 200  # used
    assert post_code(client, "/login/code", codes[4]).status_code == 302


def test_new_recovery_codes_replace_the_old_ones_once_a_code_shows_it_is_the_user(app, client, clock, db_session):
    key, old = two_step_user(app, client, clock, db_session)
    sign_in(client, "alex")
    post_code(client, "/login/code", app_code(key, clock.now))
    clock.advance(30)

    refused = post_code(client, "/account/two-step/codes", "000000", page_path="/account/two-step", prefix="codes-")
    assert refused.status_code == 400 and "That code is wrong" in words(refused.get_data(as_text=True))
    made = post_code(client, "/account/two-step/codes", app_code(key, clock.now), page_path="/account/two-step",
                     prefix="codes-")

    assert made.status_code == 200
    new = CODES.findall(made.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    sign_in(client, "alex")
    assert post_code(client, "/login/code", old[0]).status_code == 200
    assert post_code(client, "/login/code", new[0]).status_code == 302


def test_a_password_chosen_with_an_emailed_link_still_needs_the_code(app, client, clock, db_session, smtp_server):
    key, _ = two_step_user(app, client, clock, db_session)
    ask(client, "alex")
    choose(client, link_in(mails(smtp_server)[-1]), new="marmalade orbit questioning")

    response = sign_in(client, "alex", password="marmalade orbit questioning")

    assert response.headers["Location"] == "/login/code" and signed_in_page(client) == 302
    assert post_code(client, "/login/code", app_code(key, clock.now)).status_code == 302
    assert signed_in_page(client) == 200


# --------------------------------------------------------------------------- turning it off


def test_a_user_turns_it_off_with_a_code_and_then_signs_in_with_their_password_alone(app, client, clock, db_session,
                                                                                     smtp_server):
    key, codes = two_step_user(app, client, clock, db_session)
    sign_in(client, "alex")
    post_code(client, "/login/code", codes[0])

    response = post_code(client, "/account/two-step/off", codes[1], page_path="/account/two-step", prefix="off-")

    assert response.status_code == 302
    assert "You sign in with your password alone" in words(client.get("/account/two-step").get_data(as_text=True))
    assert user_named(db_session, "alex").two_step_secret is None and stored_codes(db_session) == []
    [entry] = entries(db_session, TWO_STEP_OFF)
    assert '"own": true' in entry.detail
    assert mails(smtp_server)[-1]["Subject"] == "Two-step sign-in was turned off for you on Help desk"
    assert "You turned off two-step sign-in" in mails(smtp_server)[-1].get_content()
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    assert sign_in(client, "alex").headers["Location"] == "/calls"


def test_an_administrator_turns_it_off_for_a_user_who_lost_their_phone(app, client, clock, db_session, smtp_server):
    two_step_user(app, client, clock, db_session)
    make_user(db_session, "dana", "admin", display_name="Dana Admin")
    sign_in(client, "dana")
    alex = user_named(db_session, "alex")
    page = words(client.get(f"/admin/users/{alex.id}").get_data(as_text=True))
    assert "Two-step sign-in On, since" in page
    assert "alex Alex Smith Manager None alex.smith@example.org Yes Their own" in users_list(client)

    response = client.post(f"/admin/users/{alex.id}/two-step-off",
                           data={"csrf_token": csrf_token(client, f"/admin/users/{alex.id}")})

    assert response.status_code == 302
    assert "Turned off two-step sign-in for alex" in words(client.get(response.headers["Location"]).get_data(
        as_text=True))
    assert user_named(db_session, "alex").two_step_secret is None
    [entry] = entries(db_session, TWO_STEP_OFF)
    assert entry.actor == "dana" and '"own"' not in entry.detail
    assert "Dana Admin turned off two-step sign-in" in mails(smtp_server)[-1].get_content()
    assert "alex: two-step sign-in turned off" in words(client.get("/audit?what=users").get_data(as_text=True))


# --------------------------------------------------------------------------- roles that must have it


@pytest.fixture
def must_app(migrated_url, clock):
    app = make_app(migrated_url, make_settings(web={"two_step_for": ["admin", "manager"]}), clock)
    yield app
    app.extensions["helpdesk.db"].dispose()


def test_a_user_whose_role_must_have_it_sets_it_up_before_anything_else(must_app, clock, db_session):
    client = must_app.test_client()
    make_user(db_session, "alex", "manager")

    response = sign_in(client, "alex", next_path="/service-levels")

    assert response.headers["Location"] == "/account/two-step"
    assert client.get("/calls").headers["Location"] == "/account/two-step"
    page = client.get("/account/two-step").get_data(as_text=True)
    assert "Your role must have two-step sign-in" in page and 'aria-label="Main"' not in page  # no navigation
    refused = client.post("/calls", data={"csrf_token": csrf_token(client, "/account/two-step")})
    assert refused.status_code in (302, 405)
    set_up(client, clock)
    assert signed_in_page(client) == 200

    # Turning it off takes them straight back to setting it up: a new phone.
    clock.advance(30)
    key = user_named(db_session, "alex").two_step_secret
    post_code(client, "/account/two-step/off", app_code(key, clock.now), page_path="/account/two-step",
              prefix="off-")
    assert "set it up again" in words(client.get("/account/two-step").get_data(as_text=True))
    assert client.get("/calls").headers["Location"] == "/account/two-step"


def test_an_agent_is_not_asked_when_only_other_roles_must(must_app, db_session):
    client = must_app.test_client()
    make_user(db_session, "sam", "agent")
    assert sign_in(client, "sam").headers["Location"] == "/queue"
    assert client.get("/queue").status_code == 200


# --------------------------------------------------------------------------- the command line


def test_commands_run_as_a_user_ask_for_their_code_too(app, client, clock, db_session, migrated_url):
    _, codes = two_step_user(app, client, clock, db_session)
    run_cli(migrated_url, "set-role", "alex", "--role", "admin")

    def count_as_alex(code: str):  # without --apply, it only counts
        env = {"DATABASE_URL": migrated_url, "HELPDESK_PASSWORD": PASSWORD, "HELPDESK_CODE": code}
        return CliRunner().invoke(helpdesk_cli, ["anonymise", "--user", "alex", "--before", "2026-11-01"], env=env)

    wrong = count_as_alex("000000")
    assert wrong.exit_code != 0 and "the two-step code is wrong" in wrong.output
    right = count_as_alex(codes[0])
    assert right.exit_code == 0, right.output
    assert count_as_alex(codes[0]).exit_code != 0  # used


def test_users_two_step_off_turns_it_off_from_the_command_line(app, client, clock, db_session, migrated_url):
    two_step_user(app, client, clock, db_session)
    assert "two-step" in run_cli(migrated_url, "list").output.split()

    result = run_cli(migrated_url, "two-step-off", "alex")

    assert result.exit_code == 0 and "Turned off two-step sign-in for 'alex'" in result.output
    assert user_named(db_session, "alex").two_step_secret is None
    again = run_cli(migrated_url, "two-step-off", "alex")
    assert again.exit_code != 0 and "does not have two-step sign-in set up" in again.output


def test_only_digests_of_recovery_codes_are_stored(app, client, clock, db_session):
    _, codes = two_step_user(app, client, clock, db_session)
    with db_session.begin():
        dumped = " ".join(str(row) for row in db_session.execute(text("SELECT * FROM recovery_codes")))
    assert not any(code in dumped or code.replace("-", "") in dumped for code in codes)


def test_one_code_sent_twice_at_once_passes_once(app, client, clock, db_session, database):
    """The update that takes a step is made only over what was read: of 8 requests at once with
    the same code (or the same recovery code), one passes."""
    import threading

    from helpdesk.two_step import passed

    key, codes = two_step_user(app, client, clock, db_session)
    alex = user_named(db_session, "alex")
    for code in (app_code(key, clock.now), codes[0]):
        start, results = threading.Barrier(8), []

        def attempt(code=code):
            with database.session() as session:
                start.wait()
                results.append(passed(session, alex.id, code, clock.now))

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 8 and sum(result is not None for result in results) == 1, results


@pytest.mark.parametrize("typed", ["12\x0034", "\x00" * 6, "1" * 5000, "🙂" * 6, "١٢٣٤٥٦", "' OR 1=1 --",
                                   "AAAA-BBBB-CCCC\nX-Header: 1"])
def test_bad_codes_at_sign_in_and_on_the_page_are_refused_plainly_and_change_nothing(app, client, clock, db_session,
                                                                                     typed):
    key, _ = two_step_user(app, client, clock, db_session)
    before = user_named(db_session, "alex")
    sign_in(client, "alex")

    refused = post_code(client, "/login/code", typed)

    assert refused.status_code in (200, 400) and "There is a problem" in words(refused.get_data(as_text=True))
    assert signed_in_page(client) == 302
    assert post_code(client, "/login/code", app_code(key, clock.now)).status_code == 302  # still there to finish
    clock.advance(30)
    for action, prefix in (("codes", "codes-"), ("off", "off-")):
        response = post_code(client, f"/account/two-step/{action}", typed, page_path="/account/two-step",
                             prefix=prefix)
        assert response.status_code == 400 and "There is a problem" in words(response.get_data(as_text=True))
    after = user_named(db_session, "alex")
    assert after.two_step_secret == before.two_step_secret and len(stored_codes(db_session)) == 10
