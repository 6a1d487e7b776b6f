"""/readyz when the app's user can no longer use its SQLite file."""
from __future__ import annotations

import logging
import os

from helpdesk import server
from helpdesk.migrate import upgrade
from servers import workers_as_nobody
from tests.integration.conftest import make_app, make_settings


def test_readiness_logs_whose_the_sqlite_file_is_when_the_apps_user_cannot_open_it(open_tmp, clock):
    # The app started fine; then a command run as root made the file root's alone (0600). SQLite
    # says only "unable to open database file": the log must say whose it is and what to do.
    arbiter, _ = workers_as_nobody()
    url = f"sqlite:///{open_tmp}/helpdesk.db"
    upgrade(url)
    os.chmod(open_tmp / "helpdesk.db", 0o600)
    app = make_app(url, make_settings(), clock)

    def readiness_as_nobody() -> str:
        database = app.extensions["helpdesk.db"]
        for engine in (database.engine, database.webhook_engine):
            engine.dispose(close=False)  # this process's connections were opened as root
        said = []
        handler = logging.Handler()
        handler.emit = lambda record: said.append(record.getMessage())
        logging.getLogger("helpdesk.health").addHandler(handler)
        response = app.test_client().get("/readyz")
        return "|".join([str(response.status_code), response.get_data(as_text=True), *said])

    try:
        said = server.as_workers(arbiter)(readiness_as_nobody)
    finally:
        app.extensions["helpdesk.db"].dispose()
    assert said.startswith("503|database unreachable\n|readiness check failed: "), said
    assert "unable to open database file" in said
    assert (f"this user (nobody) cannot read and write the database file {open_tmp}/helpdesk.db (owned by root, "
            "mode 0600)") in said
