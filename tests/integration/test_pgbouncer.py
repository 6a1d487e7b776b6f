"""The app behind pgbouncer pooling by transaction, as many PostgreSQL sites run it: server
connections change hands after every transaction, so the app may set nothing on a session
(its webhooks' and pages' limits are SET LOCAL), send no startup option pgbouncer refuses,
and, with `prepare_threshold=none` in DATABASE_URL, prepare nothing on the server."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select

from helpdesk.db import Database
from helpdesk.migrate import upgrade
from helpdesk.models import Call, Enquiry, TwilioEvent
from helpdesk.spool import Spool
from servers import PgBouncer
from tests.integration.conftest import make_app
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
