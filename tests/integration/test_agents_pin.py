"""The PIN for the agents' line (queue mode's routing.agents_pin): asked of a call from an
agent's phone number or SIP address before it is put through to a caller, never stored as
typed, locked after too many wrong ones. On SQLite and PostgreSQL."""
from __future__ import annotations

import html
import json
import logging
import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from helpdesk.agents_pin import LOCK_AFTER, set_pin
from helpdesk.cli import main as helpdesk_cli
from helpdesk.config import ConfigError
from helpdesk.models import AuditEntry, TwilioEvent, User
from tests.integration.conftest import BASE_URL, make_settings
from tests.integration.test_password_links import smtp_server  # noqa: F401 (a fixture: a mail server)
from tests.integration.twilio_requests import post, sid

ALICE_PHONE, BOB_DESK = "+447700900555", "sip:1001@pbx.example.org"
PIN = "2580"
NOT_AN_AGENT = "This line is for the help desk's agents only. Goodbye."


@pytest.fixture
def queue_desk(app):
    """Queue mode with agents' PINs; Alice (a mobile, with a PIN), Bob (a desk phone, none yet)."""
    from helpdesk.users import add_user

    app.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue", "agents_pin": True})
    with app.extensions["helpdesk.db"].session() as session:
        add_user(session, "alice", "a-long-enough-password", "agent", phone=ALICE_PHONE)
        add_user(session, "bob", "a-long-enough-password", "agent", phone=BOB_DESK)
        add_user(session, "cleo", "a-long-enough-password", "agent")
    with app.extensions["helpdesk.db"].session() as session:
        set_pin(session, "alice", PIN)
    return app


def agents_call(n: int, came_from: str = ALICE_PHONE) -> dict[str, str]:
    return {"CallSid": sid(n), "From": came_from, "To": "+441234000999", "Direction": "inbound",
            "CallStatus": "in-progress"}


def typed(client, n: int, digits: str, attempt: int = 1, came_from: str = ALICE_PHONE):
    return post(client, f"/twilio/voice/agent-pin?try={attempt}", {**agents_call(n, came_from), "Digits": digits,
                                                                     "FinishedOnKey": "#"})


def verbs(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [verb.tag for verb in ET.fromstring(response.data)]


def said(response) -> list[str]:
    return [say.text for say in ET.fromstring(response.data).iter("Say")]


def put_through(response) -> bool:
    twiml = ET.fromstring(response.data)
    return twiml.find("Dial/Queue") is not None and twiml.find("Dial/Queue").text == "helpdesk"


def prompt_url(response) -> str:
    gather = ET.fromstring(response.data).find("Gather")
    assert gather.get("finishOnKey") == "#" and gather.get("actionOnEmptyResult") == "true"
    return gather.get("action")


def failures(db_session, username: str) -> int:
    db_session.expire_all()
    found = db_session.scalar(select(User.agents_pin_failures).where(User.username == username))
    db_session.rollback()  # the read ends: the webhooks write next
    return found


def journal(db_session, n: int) -> list[tuple[str, str | None]]:
    db_session.expire_all()
    found = [(event.kind, event.decision) for event in db_session.scalars(
        select(TwilioEvent).where(TwilioEvent.call_sid == sid(n)).order_by(TwilioEvent.id))]
    db_session.rollback()
    return found


def test_an_agents_phone_is_asked_for_its_pin_and_put_through_once_it_is_right(queue_desk, client, db_session):
    asked = post(client, "/twilio/voice/agent-dequeue", agents_call(902))
    assert verbs(asked) == ["Gather", "Say", "Hangup"] and not put_through(asked)
    assert prompt_url(asked) == f"{BASE_URL}/twilio/voice/agent-pin?try=1"
    assert said(asked)[0] == "Please type your PIN for the agents' line, then press hash."
    taken = typed(client, 902, PIN)
    assert put_through(taken)
    # Journalled under the agent's call, the PIN left out; no call of its own.
    assert journal(db_session, 902) == [("agent_dequeue", "agents_pin_ask"), ("agents_pin", None)]
    stored = db_session.scalars(select(TwilioEvent.params).where(TwilioEvent.kind == "agents_pin")).one()
    assert "Digits" not in json.dumps(stored) and PIN not in json.dumps(stored)
    assert failures(db_session, "alice") == 0


def test_three_wrong_pins_in_a_call_are_told_so_and_hung_up_on_and_the_pin_is_never_logged(
        queue_desk, client, db_session, caplog):
    caplog.set_level(logging.INFO)
    post(client, "/twilio/voice/agent-dequeue", agents_call(902))
    first = typed(client, 902, "1357")
    assert not put_through(first) and prompt_url(first) == f"{BASE_URL}/twilio/voice/agent-pin?try=2"
    assert said(first)[:2] == ["That PIN is not right.", "Please type your PIN for the agents' line, then press hash."]
    second = typed(client, 902, "13579", attempt=2)
    assert prompt_url(second).endswith("/agent-pin?try=3")
    third = typed(client, 902, "135790", attempt=3)
    assert verbs(third) == ["Say", "Hangup"] and said(third) == [NOT_AN_AGENT]
    assert [decision for _, decision in journal(db_session, 902)] == [
        "agents_pin_ask", "agents_pin_wrong", "agents_pin_wrong", "agents_pin_wrong"]
    assert failures(db_session, "alice") == 3
    assert "a wrong PIN (try 3)" in caplog.text
    assert not any(pin in caplog.text for pin in ("1357", PIN)) and ALICE_PHONE not in caplog.text
    # Each try is journalled: requests that differ only in the PIN are not one delivered twice.
    assert not any("1357" in json.dumps(params) for params in db_session.scalars(select(TwilioEvent.params)))


def test_nothing_typed_is_asked_again_and_not_counted_as_a_wrong_pin(queue_desk, client, db_session):
    post(client, "/twilio/voice/agent-dequeue", agents_call(902))
    again = typed(client, 902, "")
    assert prompt_url(again).endswith("/agent-pin?try=2") and failures(db_session, "alice") == 0
    assert said(again)[0] == "Please type your PIN for the agents' line, then press hash."  # not "not right"
    assert put_through(typed(client, 902, PIN, attempt=2))


def test_five_wrong_pins_over_several_calls_lock_it_until_a_new_one_is_set(queue_desk, client, db_session):
    for n, attempt in ((902, 1), (902, 2), (902, 3), (903, 1)):
        typed(client, n, "0852", attempt=attempt, came_from=ALICE_PHONE)
    assert failures(db_session, "alice") == LOCK_AFTER - 1
    locked = typed(client, 903, "0852", attempt=2)
    assert verbs(locked) == ["Say", "Hangup"]
    assert said(locked) == ["Your PIN for the agents' line is locked after too many wrong tries. Set a new one on the "
                            "help desk's Agents' line PIN page, then call again. Goodbye."]
    entry = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "user.agents_pin_locked")).one()
    assert json.loads(entry.detail)["user"] == "alice" and json.loads(entry.detail)["via"] == "phone"
    db_session.rollback()
    # Locked: the next call is told at once, and even the right PIN does not put it through.
    told = post(client, "/twilio/voice/agent-dequeue", agents_call(904))
    assert said(told) == said(locked) and not put_through(told)
    assert not put_through(typed(client, 904, PIN))
    assert failures(db_session, "alice") == LOCK_AFTER  # nothing more counted once locked
    with queue_desk.extensions["helpdesk.db"].session() as session:
        set_pin(session, "alice", "739164")
    assert failures(db_session, "alice") == 0
    assert put_through(typed(client, 905, "739164"))


def test_a_right_pin_clears_the_wrong_ones_before_it(queue_desk, client, db_session):
    typed(client, 902, "0852")
    typed(client, 902, "0853", attempt=2)
    assert failures(db_session, "alice") == 2 and put_through(typed(client, 902, PIN, attempt=3))
    assert failures(db_session, "alice") == 0


def test_an_agent_with_no_pin_yet_is_told_how_to_set_one(queue_desk, client, db_session):
    told = post(client, "/twilio/voice/agent-dequeue", agents_call(902, BOB_DESK))
    assert verbs(told) == ["Say", "Hangup"] and not put_through(told)
    assert said(told)[0].startswith("You have no PIN for the agents' line yet.")
    assert journal(db_session, 902) == [("agent_dequeue", "agents_pin_not_set")]


def test_a_twilio_client_app_is_not_asked_for_a_pin(queue_desk, client, db_session):
    from helpdesk.users import add_user

    with queue_desk.extensions["helpdesk.db"].session() as session:
        add_user(session, "dana", "a-long-enough-password", "agent")
    taken = post(client, "/twilio/voice/agent-dequeue", agents_call(902, "client:dana"))
    assert put_through(taken)


@pytest.mark.parametrize("came_from", ["+447700900999", "anonymous", "client:nobody"])
def test_a_pin_typed_from_nobodys_phone_puts_nobody_through(queue_desk, client, db_session, came_from):
    refused = typed(client, 902, PIN, came_from=came_from)
    assert said(refused) == [NOT_AN_AGENT] and not put_through(refused)
    assert journal(db_session, 902) == [("agents_pin", "not_an_agent")]


def test_a_forged_pin_request_is_refused_stores_nothing_and_counts_nothing(queue_desk, client, db_session):
    forged = post(client, "/twilio/voice/agent-pin?try=1", {**agents_call(902), "Digits": "0852"},
                  token="not-the-token")
    assert forged.status_code == 403
    assert journal(db_session, 902) == [] and failures(db_session, "alice") == 0


def test_without_agents_pin_an_agents_phone_is_put_straight_through(queue_desk, client):
    queue_desk.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    assert put_through(post(client, "/twilio/voice/agent-dequeue", agents_call(902, BOB_DESK)))


def test_agents_pin_works_only_in_queue_mode():
    with pytest.raises(ConfigError, match="agents_pin.*works only with mode = 'queue'"):
        make_settings(routing={"agents_pin": True})


def run_cli(url: str, *args: str, pin: str | None = None, stdin: str | None = None):
    env = {"DATABASE_URL": url, "HELPDESK_PIN": pin or ""}
    return CliRunner().invoke(helpdesk_cli, ["users", *args], env=env, input=stdin)


def test_users_set_pin_sets_and_unlocks_a_pin_stored_only_as_a_hash(queue_desk, migrated_url, db_session):
    with queue_desk.extensions["helpdesk.db"].session() as session, session.begin():
        session.execute(User.__table__.update().where(User.username == "alice").values(agents_pin_failures=5))
    listed = {line.split()[0]: line for line in run_cli(migrated_url, "list").output.splitlines()}
    assert " PIN locked " in listed["alice"] and "PIN" not in listed["bob"]
    result = run_cli(migrated_url, "set-pin", "alice", stdin="739164\n739164\n")
    assert result.exit_code == 0, result.output
    assert "Set the PIN for the agents' line of 'alice'" in result.output and "739164" not in result.output
    db_session.expire_all()
    alice = db_session.scalars(select(User).where(User.username == "alice")).one()
    assert alice.agents_pin_failures == 0 and "739164" not in alice.agents_pin_hash
    db_session.rollback()  # the read ends: the command writes next
    assert " PIN set " in run_cli(migrated_url, "list").output.splitlines()[0]  # alice
    entry = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "user.agents_pin_set")
                               .order_by(AuditEntry.id.desc())).first()
    assert json.loads(entry.detail)["via"] == "command line"


@pytest.mark.parametrize(("pin", "words"), [
    ("123", "must be 4 to 8 digits"), ("123456789", "must be 4 to 8 digits"), ("12a4", "must be 4 to 8 digits"),
    ("١٢٣٤", "must be 4 to 8 digits"), ("7777", "must not be one digit over and over"),
    ("1234", "must not be a run of digits"),
    ("987654", "must not be a run of digits"), ("8901", "must not be a run of digits")])
def test_users_set_pin_refuses_what_is_not_a_pin_naming_why(queue_desk, migrated_url, db_session, pin, words):
    before = db_session.scalar(select(User.agents_pin_hash).where(User.username == "alice"))
    db_session.rollback()
    result = run_cli(migrated_url, "set-pin", "alice", pin=pin)
    assert result.exit_code == 1 and f"Error: the PIN {words}" in result.output, result.output
    db_session.expire_all()
    assert db_session.scalar(select(User.agents_pin_hash).where(User.username == "alice")) == before


def test_users_set_pin_refuses_a_user_who_takes_no_callers_and_one_who_does_not_exist(queue_desk, migrated_url):
    from helpdesk.users import add_user

    with queue_desk.extensions["helpdesk.db"].session() as session:
        add_user(session, "sam", "a-long-enough-password", "auditor")
    result = run_cli(migrated_url, "set-pin", "sam", pin="739164")
    assert result.exit_code == 1 and "'sam' does not take callers from the queue" in result.output
    result = run_cli(migrated_url, "set-pin", "nobody", pin="739164")
    assert result.exit_code == 1 and "nobody" in result.output
    result = run_cli(migrated_url, "set-pin", "alice", stdin="")
    assert result.exit_code == 1 and "no PIN was given" in result.output


# --------------------------------------------------------------------------- the Agents' line PIN page

PASSWORD = "a-long-enough-password"


def page_text(response) -> str:
    return html.unescape(" ".join(response.get_data(as_text=True).split()))


def choose(client, pin: str, again: str | None = None, password: str = PASSWORD):
    from tests.integration.test_users_and_login import csrf_token

    return client.post("/account/agents-pin", data={"csrf_token": csrf_token(client, "/account/agents-pin"),
                                                    "pin": pin, "pin_again": pin if again is None else again,
                                                    "password": password})


def pin_hash(db_session, username: str) -> str | None:
    found = db_session.scalar(select(User.agents_pin_hash).where(User.username == username))
    db_session.rollback()
    return found


def test_an_agent_sets_a_new_pin_on_their_page_with_their_password_and_their_phone_takes_it(
        queue_desk, client, db_session):
    from tests.integration.test_users_and_login import sign_in

    assert sign_in(client, "alice", PASSWORD).status_code == 302
    page = page_text(client.get("/account/agents-pin"))
    assert 'href="/account/agents-pin" aria-current="page">Agents\' line PIN</a>' in page
    assert "You have a PIN." in page
    before = pin_hash(db_session, "alice")
    for pin, again, password, problem in (
            ("739164", None, "not my password", "Your password is wrong."),
            ("1234", None, PASSWORD, "The PIN must not be a run of digits such as 1234 or 9876"),
            ("739164", "739165", PASSWORD, "The PINs do not match. Type the same PIN twice."),
            ("", None, PASSWORD, "Enter a PIN."), ("73a9", None, PASSWORD, "The PIN must be 4 to 8 digits")):
        refused = choose(client, pin, again, password)
        assert refused.status_code == 400 and problem in page_text(refused), (pin, page_text(refused))
        assert page_text(refused).startswith("<!doctype html>")
        assert "<title>Error: Agents' line PIN" in page_text(refused)
        assert 'value="739164"' not in page_text(refused)
    assert pin_hash(db_session, "alice") == before
    set_now = choose(client, "739164")
    assert set_now.status_code == 302 and set_now.headers["Location"].endswith("/account/agents-pin")
    assert "Your PIN for the agents' line is set." in page_text(client.get("/account/agents-pin"))
    assert put_through(typed(client, 902, "739164")) and not put_through(typed(client, 903, PIN))
    entry = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "user.agents_pin_set")
                               .order_by(AuditEntry.id.desc())).first()
    assert json.loads(entry.detail)["own"] is True and json.loads(entry.detail)["via"] == "web"
    db_session.rollback()


def test_the_page_says_whether_the_pin_is_locked_or_not_set_yet(queue_desk, client, db_session):
    from tests.integration.test_users_and_login import sign_in

    assert sign_in(client, "bob", PASSWORD).status_code == 302
    assert "You have no PIN yet" in page_text(client.get("/account/agents-pin"))
    with queue_desk.extensions["helpdesk.db"].session() as session:
        set_pin(session, "bob", "739164")
    with queue_desk.extensions["helpdesk.db"].session() as session, session.begin():
        session.execute(User.__table__.update().where(User.username == "bob").values(agents_pin_failures=LOCK_AFTER))
    assert "Your PIN is locked: it was typed wrong 5 times in a row." in page_text(client.get("/account/agents-pin"))
    assert choose(client, "480271").status_code == 302
    assert put_through(typed(client, 902, "480271", came_from=BOB_DESK))


@pytest.mark.parametrize(("who", "agents_pin"), [("sam", True), ("alice", False)])
def test_only_those_who_take_callers_have_the_page_and_only_while_the_desk_asks_for_pins(
        queue_desk, client, who, agents_pin):
    from helpdesk.users import add_user
    from tests.integration.test_users_and_login import sign_in

    with queue_desk.extensions["helpdesk.db"].session() as session:
        add_user(session, "sam", PASSWORD, "auditor")
    if not agents_pin:
        queue_desk.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    assert sign_in(client, who, PASSWORD).status_code == 302
    assert client.get("/account/agents-pin").status_code == 403
    assert "Agents' line PIN" not in page_text(client.get("/account/password"))


def test_an_administrator_sees_whether_each_agents_pin_is_set_or_locked(queue_desk, client, db_session):
    from helpdesk.users import add_user
    from tests.integration.test_users_and_login import sign_in

    with queue_desk.extensions["helpdesk.db"].session() as session:
        add_user(session, "ada", PASSWORD, "admin")
    with queue_desk.extensions["helpdesk.db"].session() as session, session.begin():
        session.execute(User.__table__.update().where(User.username == "cleo").values(
            agents_pin_hash=User.__table__.c.password_hash, agents_pin_failures=LOCK_AFTER))
        ids = dict(session.execute(select(User.username, User.id)).all())
    assert sign_in(client, "ada", PASSWORD).status_code == 302

    def said_of(username: str) -> str:
        page = page_text(client.get(f"/admin/users/{ids[username]}"))
        if "<dt>Agents' line" not in page:
            return ""
        return page.split("<dt>Agents' line PIN</dt><dd>", 1)[1].split("</dd>", 1)[0]

    assert said_of("alice") == "Set"
    assert said_of("bob").startswith("Not set: their phone cannot take callers")
    assert said_of("cleo") == ("Locked after 5 wrong PINs: they set a new one on Agents' line PIN, or "
                               "'helpdesk users set-pin cleo' does")
    queue_desk.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    assert said_of("alice") == ""


# --------------------------------------------------------------------------- the user is told

@pytest.fixture
def mail_desk(migrated_url, clock, smtp_server):
    """Queue mode with agents' PINs and a mail server; Alice has an email address."""
    from dataclasses import replace

    from helpdesk.users import add_user
    from tests.integration.test_password_links import mail_app

    app = mail_app(migrated_url, clock, smtp_server)
    current = app.extensions["helpdesk.settings"]
    app.extensions["helpdesk.settings"] = replace(current, routing=replace(current.routing, mode="queue",
                                                                           agents_pin=True))
    with app.extensions["helpdesk.db"].session() as session:
        add_user(session, "alice", PASSWORD, "agent", "Alice Agent", phone=ALICE_PHONE, email="alice@example.org")
    with app.extensions["helpdesk.db"].session() as session:
        set_pin(session, "alice", PIN)
    yield app
    app.extensions["helpdesk.db"].dispose()


def test_a_user_is_emailed_when_their_pin_is_set_and_when_wrong_ones_lock_it(mail_desk, smtp_server):
    from tests.integration.test_password_links import mails
    from tests.integration.test_users_and_login import sign_in

    client = mail_desk.test_client()
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    assert choose(client, "739164").status_code == 302
    for n, attempt in ((902, 1), (902, 2), (902, 3), (903, 1), (903, 2)):
        typed(client, n, "0852", attempt=attempt)
    set_mail, locked_mail = mails(smtp_server)
    assert set_mail["To"] == "alice@example.org"
    assert set_mail["Subject"] == "Your PIN for the agents' line of Help desk was set"
    assert "You set a new PIN for the agents' line for your username alice" in " ".join(set_mail.get_content().split())
    assert locked_mail["Subject"] == "Your PIN for the agents' line of Help desk is locked"
    body = " ".join(locked_mail.get_content().split())
    assert "was typed wrong 5 times in a row on a phone that is yours, or pretends to be" in body
    assert not any(pin in set_mail.get_content() + body for pin in ("739164", "0852", "0900555"))


def test_a_wrong_pin_that_cannot_be_counted_still_puts_nobody_through(queue_desk, client, db_session, monkeypatch,
                                                                      caplog):
    from sqlalchemy.exc import OperationalError

    def cannot_count(*_args, **_kwargs):
        raise OperationalError("UPDATE users", {}, Exception("database is locked"))

    monkeypatch.setattr("helpdesk.voice.blueprint.count_pin", cannot_count)
    refused = typed(client, 902, "0852")
    assert not put_through(refused) and prompt_url(refused).endswith("/agent-pin?try=2")
    assert "the agents' line could not count a PIN: OperationalError" in caplog.text
    assert put_through(typed(client, 902, PIN, attempt=2))  # a right one still is right


def test_the_queue_page_tells_an_agent_whose_phone_cannot_take_callers_to_set_a_pin(queue_desk, client, db_session):
    from tests.integration.test_users_and_login import sign_in

    def said_on_queue() -> str:
        page = page_text(client.get("/queue"))
        found = re.search(r'<p class="notice notice-error">(.*?)</p>', page)
        return found[1] if found else ""

    assert sign_in(client, "bob", PASSWORD).status_code == 302  # a desk phone, and no PIN yet
    assert said_on_queue() == ("Your phone cannot take callers from the agents' line until you set your PIN for it. "
                               '<a href="/account/agents-pin">Set a PIN</a>.')
    with queue_desk.extensions["helpdesk.db"].session() as session:
        set_pin(session, "bob", "739164")
    assert said_on_queue() == ""
    with queue_desk.extensions["helpdesk.db"].session() as session, session.begin():
        session.execute(User.__table__.update().where(User.username == "bob").values(agents_pin_failures=LOCK_AFTER))
    assert said_on_queue().startswith("Your PIN for the agents' line is locked after too many wrong tries")
    queue_desk.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue"})
    assert said_on_queue() == ""  # the desk asks for no PIN
    client.post("/logout", data={"csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"',
                                                         client.get("/queue").get_data(as_text=True))[1]})
    queue_desk.extensions["helpdesk.settings"] = make_settings(routing={"mode": "queue", "agents_pin": True})
    assert sign_in(client, "cleo", PASSWORD).status_code == 302  # no phone: nothing to type a PIN on
    assert said_on_queue() == ""
