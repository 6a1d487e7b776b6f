"""Signing in and out, and refused sign-ins for existing usernames, are in the audit log."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from helpdesk.clock import local
from helpdesk.models import AuditEntry
from helpdesk.restore import newest_activity
from helpdesk.users import SIGN_IN_ACTIONS, deactivate
from tests.integration.conftest import make_app, make_settings
from tests.integration.test_metrics_endpoint import scrape, value
from tests.integration.test_users_and_login import PASSWORD, csrf_token, make_user, sign_in


def entries(db_session, *actions: str) -> list[AuditEntry]:
    with db_session.begin():
        query = select(AuditEntry).order_by(AuditEntry.id)
        if actions:
            query = query.where(AuditEntry.action.in_(actions))
        found = list(db_session.scalars(query))
        for entry in found:
            db_session.expunge(entry)
    return found


def person(db_session, clock, username: str, role: str, **kwargs):
    """A user added at the test clock's time (make_user adds them now), so their entry is on its day."""
    return make_user(db_session, username, role, now=clock.now, **kwargs)


def test_signing_in_and_out_is_recorded_with_who(client, db_session, clock):
    alex = person(db_session, clock, "alex", "agent")
    sign_in(client, "alex")
    clock.advance(60)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/queue")})
    recorded = entries(db_session, "user.signed_in", "user.signed_out")
    assert [(e.action, e.actor, e.user_id, e.at) for e in recorded] == [
        ("user.signed_in", "alex", alex.id, clock.now - timedelta(seconds=60)),
        ("user.signed_out", "alex", alex.id, clock.now)]
    assert json.loads(recorded[0].detail) == {"user": "alex", "user_id": alex.id, "via": "web", "address": "127.0.0.1"}


def test_a_refused_sign_in_is_recorded_for_a_user_but_nothing_typed_for_an_unknown_name(client, db_session, clock):
    alex = person(db_session, clock, "alex", "agent")
    sam = person(db_session, clock, "sam", "agent")
    deactivate(db_session, "sam")
    sign_in(client, "alex", "not the password")
    sign_in(client, "sam")  # the right password, but sam cannot sign in
    sign_in(client, "my secret password", "another secret")  # a password typed as the username
    refused = entries(db_session, "user.sign_in_refused")
    assert [(e.user_id, json.loads(e.detail)["reason"]) for e in refused] == [
        (alex.id, "wrong password"), (sam.id, "deactivated")]
    stored = " ".join(e.detail + e.actor for e in entries(db_session))
    assert "secret" not in stored and "not the password" not in stored


def test_sign_ins_refused_unheard_are_not_recorded_one_by_one(client, db_session, clock):
    person(db_session, clock, "alex", "agent")
    for _ in range(15):
        sign_in(client, "alex", "not the password")
    assert len(entries(db_session, "user.sign_in_refused")) == 10  # the limit; the other five are refused unheard


def test_signing_in_does_not_move_the_time_a_restore_takes_for_the_backup(client, db_session, clock):
    person(db_session, clock, "alex", "manager")
    with db_session.begin():
        before = newest_activity(db_session)
    clock.advance(3600)
    sign_in(client, "alex")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/calls")})
    sign_in(client, "alex", "wrong password here")
    assert len(entries(db_session, "user.signed_in", "user.signed_out", "user.sign_in_refused")) == 3
    with db_session.begin():
        assert newest_activity(db_session) == before


def test_a_refused_sign_in_makes_the_same_writes_whether_or_not_the_name_is_a_users(app, client, db_session, clock):
    """Only the audit entry differs, so the time a refusal takes does not tell which usernames exist."""
    person(db_session, clock, "alex", "agent")
    engine = app.extensions["helpdesk.db"].engine

    def statements_of(username: str) -> list[str]:
        seen = []

        def write(conn, cursor, statement, parameters, context, executemany):
            words = statement.split()
            if words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                seen.append(" ".join(words[:3]).upper())

        def commit(conn):
            seen.append("COMMIT")

        event.listen(engine, "before_cursor_execute", write)
        event.listen(engine, "commit", commit)
        try:
            sign_in(client, username, "not the password")
        finally:
            event.remove(engine, "before_cursor_execute", write)
            event.remove(engine, "commit", commit)
        return seen

    known, unknown = statements_of("alex"), statements_of("nobody.here")
    assert "INSERT INTO AUDIT_LOG" in known and "INSERT INTO AUDIT_LOG" not in unknown
    assert [s for s in known if s != "INSERT INTO AUDIT_LOG"] == unknown


def test_a_wrong_current_password_on_change_password_is_recorded_and_shown_on_the_audit_log_page(
        app, client, db_session, clock):
    alex = person(db_session, clock, "alex", "agent")
    person(db_session, clock, "ali", "auditor")
    sign_in(client, "alex")
    page = "/account/password"
    for current in ("not the password", "nor this one"):
        client.post(page, data={"csrf_token": csrf_token(client, page), "current_password": current,
                                "new_password": "a brand new passphrase", "new_password_again": "a brand new passphrase"})
    refused = entries(db_session, "user.password_change_refused")
    assert [(e.user_id, e.actor, json.loads(e.detail)) for e in refused] == [
        (alex.id, "alex", {"reason": "wrong current password", "user": "alex", "user_id": alex.id, "via": "web",
                           "address": "127.0.0.1"})] * 2
    stored = " ".join(e.detail + e.actor for e in entries(db_session))
    assert "not the password" not in stored and "nor this one" not in stored and "passphrase" not in stored
    # The right one then: the change is recorded, the refusals stay.
    client.post(page, data={"csrf_token": csrf_token(client, page), "current_password": PASSWORD,
                            "new_password": "a brand new passphrase", "new_password_again": "a brand new passphrase"})
    assert len(entries(db_session, "user.password_change_refused")) == 2
    assert len(entries(db_session, "user.password_changed")) == 1

    auditor = app.test_client()
    sign_in(auditor, "ali")
    day = f"{local(clock.now):%Y-%m-%d}"
    shown = auditor.get(f"/audit?what=sign-ins&from={day}&to={day}").get_data(as_text=True)
    assert shown.count("Password change refused: wrong current password, from 127.0.0.1") == 2


@pytest.mark.parametrize("proxies, forwarded, recorded", [
    (0, None, "127.0.0.1"),  # no proxy: the address the app sees
    (0, "198.51.100.9", "127.0.0.1"),  # a client's own X-Forwarded-For, with no proxy to trust, changes nothing
    (1, "198.51.100.9, 203.0.113.5", "203.0.113.5"),  # what the one proxy heard; the client wrote the first
    (2, "198.51.100.9, 203.0.113.5", "198.51.100.9"),  # a load balancer, then nginx
    (1, "2001:db8::7", "2001:db8::7"),
    (1, "not an address", None),  # a proxy sending something else: no address recorded
])
def test_each_sign_in_records_the_address_it_came_from_behind_the_proxies_configured(
        migrated_url, clock, db_session, proxies, forwarded, recorded):
    app = make_app(migrated_url, make_settings(web={"proxies": proxies}), clock)
    try:
        client = app.test_client()
        person(db_session, clock, "alex", "agent")
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        client.post("/login", data={"csrf_token": csrf_token(client, "/login"), "username": "alex",
                                    "password": "not the password"}, headers=headers)
        client.post("/login", data={"csrf_token": csrf_token(client, "/login"), "username": "alex",
                                    "password": PASSWORD}, headers=headers)
        client.post("/logout", data={"csrf_token": csrf_token(client, "/queue")}, headers=headers)
    finally:
        app.extensions["helpdesk.db"].dispose()
    addresses = [json.loads(e.detail).get("address") for e in entries(db_session, *SIGN_IN_ACTIONS)]
    assert addresses == [recorded] * 3


def test_metrics_count_sign_ins_refused_in_the_last_15_minutes_but_not_a_typo_put_right(app, client, db_session,
                                                                                       clock):
    person(db_session, clock, "alex", "agent")
    person(db_session, clock, "sam", "agent")

    def refused() -> float | None:
        return value(scrape(client), "helpdesk_sign_ins_refused_recently")

    assert refused() == 0
    guesser = app.test_client()
    for password in ("guess one", "guess two", "guess three"):
        sign_in(guesser, "alex", password)
    sign_in(guesser, "no.such.user", "guess four")
    typist = app.test_client()
    sign_in(typist, "sam", "a typo")
    assert refused() == 5
    sign_in(typist, "sam")  # put right: sam's is cleared
    assert refused() == 4
    clock.advance(15 * 60 + 1)
    assert refused() == 0
