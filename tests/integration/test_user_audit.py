"""Every change to a user, from the Users pages or from `helpdesk users`, and each user's own
password change, is in the audit log, without a secret; `helpdesk users history` shows them.
Also: two administrators cannot leave the help desk with none, and a deactivated user's
sessions stay ended."""
from __future__ import annotations

import getpass
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.clock import now_utc
from helpdesk.models import AuditEntry, User
from helpdesk.users import USER_ACTIONS, authenticate, set_phone, user_changes
from tests.integration.test_password_change import NEW, change
from tests.integration.test_users_and_login import PASSWORD, make_user, run_cli, sign_in

TEMPORARY = "tangerine lighthouse quorum"


def user_named(db_session, username: str) -> User | None:
    db_session.expire_all()
    with db_session.begin():
        user = db_session.scalar(select(User).where(User.username == username))
        if user is not None:
            db_session.expunge(user)
    return user


def works(db_session, username: str, password: str) -> bool:
    db_session.expire_all()
    return authenticate(db_session, username, password) is not None


def audit_entries(db_session, action: str | None = None) -> list[AuditEntry]:
    with db_session.begin():
        query = select(AuditEntry).where(AuditEntry.action.in_(USER_ACTIONS)).order_by(AuditEntry.id)
        entries = list(db_session.scalars(query))
        for entry in entries:
            db_session.expunge(entry)
    return [entry for entry in entries if action is None or entry.action == action]


def test_the_command_line_and_own_changes_are_in_the_audit_log_too(migrated_url, client, clock, db_session):
    run = run_cli(migrated_url, "add", "alex", "--role", "agent")
    assert run.exit_code == 0, run.output
    for args in (("set-role", "alex", "--role", "manager"), ("set-phone", "alex", "07700 900123"),
                 ("deactivate", "alex"), ("reactivate", "alex")):
        assert run_cli(migrated_url, *args).exit_code == 0
    assert run_cli(migrated_url, "set-password", "alex", "--permanent", password=TEMPORARY).exit_code == 0
    clock.now = now_utc() + timedelta(minutes=1)  # the pages' clock, after the commands' real one
    sign_in(client, "alex", TEMPORARY)
    assert change(client, current=TEMPORARY).status_code == 302

    entries = audit_entries(db_session)
    assert [entry.action for entry in entries] == [
        "user.added", "user.role_changed", "user.phone_changed", "user.deactivated", "user.reactivated",
        "user.password_set", "user.password_changed"]
    alex = user_named(db_session, "alex")
    assert all(json.loads(entry.detail)["user_id"] == alex.id for entry in entries)
    assert [json.loads(entry.detail)["via"] for entry in entries] == ["command line"] * 6 + ["web"]
    assert all(entry.user_id is None for entry in entries[:6]) and entries[6].user_id == alex.id
    assert entries[6].actor == "alex"
    assert all(secret not in entry.detail for entry in entries for secret in (PASSWORD, TEMPORARY, NEW, "900123"))
    words_ = [change.words for change in user_changes(db_session, user_id=alex.id)]
    assert words_ == ["changed their own password", "password set", "reactivated", "deactivated; phone freed",
                      "phone set", "role changed from Agent to Manager",
                      "added as Agent, with a password for their first sign-in only"]


def test_one_users_changes_are_not_mixed_with_anothers(db_session):
    for number in range(1, 13):  # ids 1 and 11, 12: "user_id": 1 must not find 11
        make_user(db_session, f"user{number:02}", "agent")
    first = user_named(db_session, "user01")
    set_phone(db_session, "user01", "07700 900123")
    changes = user_changes(db_session, user_id=first.id)
    assert [change.username for change in changes] == ["user01", "user01"]
    assert len(user_changes(db_session)) == 13
    assert len(user_changes(db_session, limit=5)) == 5


def test_a_phone_saved_unchanged_records_nothing(db_session):
    make_user(db_session, "alex", "agent", phone="07700 900123")
    set_phone(db_session, "alex", "+447700900123")
    assert [entry.action for entry in audit_entries(db_session)] == ["user.added"]


def test_users_history_shows_the_changes_newest_first_and_one_users_alone(migrated_url, db_session):
    assert run_cli(migrated_url, "history").output == "No changes to users recorded yet.\n"
    make_user(db_session, "alex", "agent")
    make_user(db_session, "sam", "manager")
    set_phone(db_session, "alex", "07700 900123")

    everyone = run_cli(migrated_url, "history").output.splitlines()
    alex = run_cli(migrated_url, "history", "ALEX").output.splitlines()
    latest = run_cli(migrated_url, "history", "--limit", "1").output.splitlines()

    assert [line.split("  ", 1)[1].split(", by ")[0] for line in everyone] == [
        "alex: phone set", "sam: added as Manager", "alex: added as Agent"]
    assert all(line.endswith("(command line)") and ("GMT" in line or "BST" in line) for line in everyone)
    assert [line.split("  ", 1)[1].split(", by ")[0] for line in alex] == ["alex: phone set", "alex: added as Agent"]
    assert latest == everyone[:1]
    unknown = run_cli(migrated_url, "history", "nobody")
    assert unknown.exit_code == 1 and "there is no user 'nobody'" in unknown.output


@pytest.mark.parametrize("system_user, actor", [("x" * 200, "x" * 128), ("ad\udcffmin", "ad?min")])
def test_a_system_user_too_long_or_not_utf8_still_changes_users(migrated_url, db_session, monkeypatch, system_user,
                                                                actor):
    """getpass takes the name from LOGNAME or USER, which may be anything."""
    monkeypatch.setattr(getpass, "getuser", lambda: system_user)
    run = run_cli(migrated_url, "add", "alex", "--role", "agent")
    assert run.exit_code == 0, run.output
    assert [entry.actor for entry in audit_entries(db_session)] == [actor]


@pytest.mark.parametrize("command", ["history", "deactivate"])
def test_a_name_not_utf8_is_no_user_rather_than_a_failure(migrated_url, command):
    run = run_cli(migrated_url, command, "al\udcffex")  # bytes not UTF-8, as a terminal may pass them
    assert run.exit_code == 1 and "there is no user 'al\\udcffex'" in run.output, run.exception


def test_a_session_ended_by_deactivation_stays_ended_after_reactivation(migrated_url, client, db_session):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    assert run_cli(migrated_url, "deactivate", "alex").exit_code == 0
    assert client.get("/calls").status_code == 302
    assert run_cli(migrated_url, "reactivate", "alex").exit_code == 0

    assert client.get("/calls").status_code == 302  # it worked again before
    assert sign_in(client, "alex").status_code == 302 and client.get("/calls").status_code == 200


def at_once(database, monkeypatch, *changes) -> list[str]:
    """Run each of `changes(session)` in its own thread, each a moment after the one before, with
    a pause between their checks and their commits; the problems they raised, in order."""
    import threading
    import time

    from callbacks import claims
    from helpdesk.user_rules import UserError

    release_all = claims.release_all

    def slowly(session, user_id):  # between the check and the commit
        time.sleep(0.3)
        return release_all(session, user_id)

    monkeypatch.setattr(claims, "release_all", slowly)
    refused: list[str] = []

    def run(change) -> None:
        with database.session() as session:
            try:
                change(session)
            except UserError as problem:
                refused.append(str(problem))

    threads = [threading.Thread(target=run, args=(change,)) for change in changes]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(10)
    return refused


def test_the_same_user_deactivated_twice_at_once_is_deactivated_and_recorded_once(database, monkeypatch):
    from helpdesk.users import deactivate

    with database.session() as session:
        make_user(session, "alex", "agent")
    refused = at_once(database, monkeypatch, lambda s: deactivate(s, "alex"), lambda s: deactivate(s, "alex"))

    assert refused == ["'alex' is already deactivated"]
    with database.session() as session:
        assert [entry.action for entry in audit_entries(session)] == ["user.added", "user.deactivated"]


def test_two_role_changes_at_once_record_the_role_each_replaced(database, monkeypatch):
    from helpdesk.users import set_role

    with database.session() as session:
        make_user(session, "alex", "agent")
    refused = at_once(database, monkeypatch, lambda s: set_role(s, "alex", "auditor"),
                      lambda s: set_role(s, "alex", "manager"))

    assert refused == []
    with database.session() as session:
        changes = [json.loads(entry.detail) for entry in audit_entries(session, "user.role_changed")]
        assert [(change["before"], change["after"]) for change in changes] == [("agent", "auditor"),
                                                                             ("auditor", "manager")]
        assert user_named(session, "alex").role == "manager"


@pytest.mark.parametrize("second", ["deactivate", "set_role"])
def test_two_administrators_removing_each_other_at_once_leave_one(database, monkeypatch, second):
    """Each checks there is another active administrator before either has committed; the second
    must see the first's change (on PostgreSQL, by the rows' lock; SQLite runs them one by one)."""
    from helpdesk.users import deactivate, set_role

    with database.session() as session:
        make_user(session, "ada", "admin")
        make_user(session, "bea", "admin")
    refused = at_once(database, monkeypatch, lambda s: deactivate(s, "ada"),
                      lambda s: deactivate(s, "bea") if second == "deactivate" else set_role(s, "bea", "agent"))

    with database.session() as session, session.begin():
        admins = session.scalars(select(User.username).where(User.role == "admin", User.active.is_(True))).all()
    assert admins == ["bea"] and len(refused) == 1 and "last active administrator" in refused[0]


def test_users_set_name_sets_and_clears_the_name_and_records_it(migrated_url, db_session):
    make_user(db_session, "alex", "agent")
    shown = run_cli(migrated_url, "set-name", "alex", "Alex Smith")
    assert shown.exit_code == 0 and shown.output == "'alex' is shown as Alex Smith.\n"
    assert user_named(db_session, "alex").display_name == "Alex Smith"
    cleared = run_cli(migrated_url, "set-name", "alex")
    assert cleared.exit_code == 0 and cleared.output == "Cleared the name of 'alex'.\n"
    refused = run_cli(migrated_url, "set-name", "alex", "x" * 129)
    assert refused.exit_code == 1 and "the display name is too long" in refused.output
    assert [change.words for change in user_changes(db_session)][:2] == ["name cleared", "name changed"]
