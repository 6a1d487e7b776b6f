"""Taking the app's database away and bringing it back, for tests of the spool."""
from __future__ import annotations

import time

from helpdesk.voice.recovery import recovery_for, spool_for

# Addresses where no database answers: a directory that does not exist, a port nobody listens on.
UNREACHABLE = {"sqlite": "sqlite:////nonexistent-dir/helpdesk.db",
               "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/helpdesk?connect_timeout=2"}


def take_down(app, database_url):
    database = app.extensions["helpdesk.db"]
    database.dispose()
    database.connect(UNREACHABLE["postgresql" if database_url.startswith("postgresql") else "sqlite"])


def bring_back(app, database_url):
    database = app.extensions["helpdesk.db"]
    database.dispose()
    database.connect(database_url)


def wait_until_stored(settings, seconds: float = 15.0) -> None:
    """Until this process has stored everything that waited in the spool `settings` names."""
    spool = spool_for(settings)
    deadline = time.monotonic() + seconds
    while spool.has_waiting() or recovery_for(settings).running():
        assert time.monotonic() < deadline, f"the spool was not stored: {spool.counts()}"
        time.sleep(0.05)
