"""Nothing personal in the log when the database refuses a write, on SQLite and PostgreSQL.

A failed statement's error text would carry the values it was writing (callers' numbers,
email addresses and subjects, agents' notes), and every path that logs a failure would put
them in the log. A trigger stands in for a database that refuses the write.
"""
from __future__ import annotations

import io
import logging
import time

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from helpdesk.cli import PrivateFormatter
from helpdesk.db import make_engine
from helpdesk.models import Callback
from helpdesk.voice.recovery import recovery_for, replay
from tests.integration.conftest import make_settings
from tests.integration.test_email_inbound_webhook import ENVELOPE, SECRET, post_bytes
from tests.integration.test_queue_page import PASSWORD, act, add_agent, answer_a_call, at, miss_a_call
from tests.integration.test_users_and_login import sign_in
from tests.integration.twilio_requests import sid

NUMBER = "+447700900987"
DIGITS = "7700900987"


def refuse_inserts(url: str, table: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        if url.startswith("sqlite"):
            connection.exec_driver_sql(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                                       "BEGIN SELECT RAISE(ABORT, 'refused for the test'); END")
        else:
            connection.exec_driver_sql("CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger AS "
                                       "$$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$ LANGUAGE plpgsql")
            connection.exec_driver_sql(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                                       "FOR EACH ROW EXECUTE FUNCTION refuse_insert()")
    engine.dispose()


def test_a_refused_statement_says_what_failed_without_the_values(migrated_url):
    refuse_inserts(migrated_url, "callbacks")
    engine = make_engine(migrated_url)
    with pytest.raises(DBAPIError) as refused, engine.begin() as connection:
        connection.execute(insert(Callback.__table__).values(caller_number=NUMBER))
    engine.dispose()
    assert "refused for the test" in str(refused.value) and DIGITS not in str(refused.value)


@pytest.fixture
def settings(tmp_path):
    return make_settings(webhooks={"spool_dir": str(tmp_path / "spool")})


def test_the_logs_format_drops_what_postgresql_says_of_the_refused_row(migrated_url):
    # PostgreSQL's error says "Failing row contains (..., +447700900987, ...)" on its DETAIL line,
    # whatever hide_parameters does; the log's format leaves that line out, tracebacks included.
    engine = make_engine(migrated_url)
    with pytest.raises(DBAPIError) as refused, engine.begin() as connection:
        connection.execute(insert(Callback.__table__).values(caller_number=NUMBER))  # no contact_key
    engine.dispose()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PrivateFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("tests.private")
    logger.addHandler(handler)
    try:
        logger.error("storing failed", exc_info=refused.value)
        logger.error("storing failed: %s", refused.value)
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue()
    assert "IntegrityError" in logged and DIGITS not in logged
    if migrated_url.startswith("postgresql"):
        assert "Failing row contains" in str(refused.value)  # what the format had to leave out


def test_a_missed_call_whose_callback_the_database_refuses_leaves_no_number_in_the_log(
        app, client, clock, settings, migrated_url, caplog):
    caplog.set_level(logging.DEBUG)
    refuse_inserts(migrated_url, "callbacks")
    miss_a_call(client, clock, 1, at(10, 0), caller=NUMBER)  # its last webhook goes to the spool
    assert "kept in the spool" in caplog.text
    recovery = recovery_for(settings)  # the app's own retry may be under way: let it finish first
    for _ in range(200):
        if not recovery.running():
            break
        time.sleep(0.05)
    replay(app.extensions["helpdesk.db"], settings)  # the database refuses it again
    assert "the database refused a webhook" in caplog.text  # the failure is logged...
    assert DIGITS not in caplog.text  # ...without the caller's number


def test_an_email_the_database_refuses_leaves_no_address_or_subject_in_the_log(app, client, migrated_url, caplog):
    app.config["SENDGRID_INBOUND_SECRET"] = SECRET
    caplog.set_level(logging.DEBUG)
    refuse_inserts(migrated_url, "inbound_emails")
    raw = (b"From: Priya Canary <priya.canary@example.net>\r\nTo: enquiries@desk.example.org\r\n"
           b"Subject: My claim - canary subject\r\nMessage-ID: <canary@example.net>\r\n\r\nHello\r\n")
    response = post_bytes(client, [("email", raw, None, None), ("envelope", ENVELOPE.encode(), None, None)])
    assert response.status_code == 503
    assert "refused" in caplog.text
    for personal in ("priya.canary", "canary subject", "amira.khan"):
        assert personal not in caplog.text.lower()


def test_a_callback_the_database_refuses_from_the_queue_page_leaves_no_number_or_note_in_the_log(
        app, client, clock, migrated_url, caplog):
    add_agent(app, "alice", "Alice Agent")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    answer_a_call(client, clock, 2, at(10, 0))
    clock.now = at(10, 5)
    refuse_inserts(migrated_url, "callbacks")
    caplog.set_level(logging.DEBUG)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the site's error page, the error logged
    response = act(client, f"/queue/calls/{sid(2)}/callback", note="Mr Canary needs help with his claim",
                   number="07700 900987")
    assert response.status_code == 500
    assert "refused" in caplog.text
    assert DIGITS not in caplog.text and "900 987" not in caplog.text and "Canary" not in caplog.text
