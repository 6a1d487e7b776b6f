"""The app behind pgbouncer pooling by transaction, as many PostgreSQL sites run it: server
connections change hands after every transaction, so the app may set nothing on a session
(its webhooks' and pages' limits are SET LOCAL), send no startup option pgbouncer refuses,
and, with `prepare_threshold=none` in DATABASE_URL, prepare nothing on the server."""
from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from helpdesk.db import Database
from helpdesk.migrate import upgrade
from helpdesk.models import Call, Enquiry, TwilioEvent
from helpdesk.spool import Spool
from servers import PgBouncer, own_postgres_server
from tests.integration.conftest import make_app, make_settings
from tests.integration.outage import wait_until_stored
from tests.integration.twilio_requests import inbound, post, sid


def test_webhooks_pages_and_migrations_work_behind_pgbouncer_pooling_by_transaction(postgres_server, settings, clock):
    name = f"bouncer_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(name)
    try:
        with PgBouncer(postgres_server, name) as bouncer:
            url = f"{bouncer.url()}?prepare_threshold=none"
            upgrade(url)  # the migrations' advisory lock lasts one transaction
            app = make_app(url, settings, clock)
            database = app.extensions["helpdesk.db"]
            try:
                client = app.test_client()
                calls = 15  # over psycopg's default of 5 uses before it would prepare a statement
                for n in range(calls):
                    assert post(client, "/twilio/voice/incoming", inbound(sid(n))).status_code == 200
                    ended = {**inbound(sid(n)), "CallStatus": "completed", "CallDuration": "20"}
                    assert post(client, "/twilio/voice/status", ended).status_code in (200, 204)
                assert client.get("/readyz").get_data(as_text=True) == "ready\n"
                with database.connection() as connection:  # through pgbouncer, inside a transaction
                    assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "5s"
                # Without prepare_threshold in the URL, a pooler is recognised by the port the
                # server answers on, and nothing is prepared (another client could run it).
                guessed = Database(bouncer.url())
                try:
                    for engine in (guessed.engine, guessed.webhook_engine):
                        with engine.connect() as connection:
                            assert connection.connection.driver_connection.prepare_threshold is None
                finally:
                    guessed.dispose()
                direct = Database(postgres_server.url(name))
                try:
                    with direct.engine.connect() as connection:
                        assert connection.connection.driver_connection.prepare_threshold == 5
                finally:
                    direct.dispose()
                assert not Spool(settings.webhooks.spool_dir).has_waiting()
            finally:
                database.dispose()
        direct = Database(postgres_server.url(name))
        try:
            with direct.session() as session, session.begin():
                assert session.scalar(select(func.count(Call.id))) == calls
                assert session.scalar(select(func.count(Enquiry.id))) == calls
                assert session.scalar(select(func.count(TwilioEvent.id))) == 2 * calls
                assert set(session.scalars(select(Call.outcome))) != {"in_progress"}
        finally:
            direct.dispose()
    finally:
        postgres_server.drop_database(name)


@pytest.mark.postgres
def test_webhooks_kept_while_postgresql_behind_pgbouncer_is_down_are_stored_once_it_is_back(
        tmp_path, clock, quick_retries):
    # pgbouncer accepts the connection and then fails it: that is an outage, and the spool must
    # keep the webhooks waiting, not set them aside as refused (which nobody retries).
    server = own_postgres_server()  # this test stops it
    settings = make_settings(webhooks={"spool_dir": str(tmp_path / "spool")})
    with server:
        server.create_database("bounced")
        with PgBouncer(server, "bounced") as bouncer:
            url = f"{bouncer.url()}?prepare_threshold=none"
            upgrade(url)
            app = make_app(url, settings, clock)
            client = app.test_client()
            try:
                assert post(client, "/twilio/voice/incoming", inbound(sid(1))).status_code == 200
                server.pause()
                for n in (2, 3):
                    assert post(client, "/twilio/voice/incoming", inbound(sid(n))).status_code == 200
                assert Spool(settings.webhooks.spool_dir).counts()["waiting"] == 2
                time.sleep(1)
                server.resume()
                wait_until_stored(settings, seconds=30)
                counts = Spool(settings.webhooks.spool_dir).counts()
                with app.extensions["helpdesk.db"].session() as session, session.begin():
                    stored = session.scalar(select(func.count(TwilioEvent.id)))
            finally:
                app.extensions["helpdesk.db"].dispose()
    assert counts == {"waiting": 0, "unstored": 0, "unreadable": 0}
    assert stored == 3
