"""App fixtures for integration tests: a real database (SQLite and PostgreSQL), a fixed clock."""
from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from helpdesk.app import create_app
from helpdesk.config import parse_settings
from helpdesk.voice import recovery
from prism import PrismServer
from servers import HOST
from tests.integration.stub_api import StubApi

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
BASE_URL = "https://helpdesk.example.org"
# A Tuesday in November, 10:00 UK time (GMT): the help desk is open.
OPEN_TIME = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = OPEN_TIME):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def stored(db_session, model) -> list:
    """Every row of `model` in id order, read afresh in a transaction of its own and detached, so
    that reading them later holds no transaction open (SQLite would lock the app's writes)."""
    db_session.expire_all()
    with db_session.begin():
        found = list(db_session.scalars(select(model).order_by(model.id)))
        for row in found:
            db_session.expunge(row)
    return found


def make_settings(**tables):
    """Test configuration: Mon-Fri 08:00-18:00 split for lunch on Wednesday, England and Wales.

    Webhooks the database cannot take go to a spool under the temporary directory, never the
    working directory (it is made only if something is spooled).
    """
    data = {
        "webhooks": {"spool_dir": os.path.join(tempfile.gettempdir(), f"helpdesk-test-spool-{uuid.uuid4().hex}")},
        "hours": {day: ["08:00-18:00"] for day in ("monday", "tuesday", "thursday", "friday")},
        "routing": {"mode": "dial", "dial_targets": ["client:agent-1", "+447700900001"]},
        "ivr": {"enabled": False},
        "callers": {"dwp_numbers": ["+441234567890"]},
    }
    data["hours"]["wednesday"] = ["08:00-12:30", "13:30-18:00"]
    for table, values in tables.items():
        data.setdefault(table, {}).update(values)
    return parse_settings(data, source="test.toml")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def settings():
    return make_settings()


@pytest.fixture
def quick_retries(monkeypatch):
    """The spool's retrying thread tries again within a fraction of a second, not seconds."""
    monkeypatch.setattr(recovery, "FIRST_RETRY_SECONDS", 0.05)
    monkeypatch.setattr(recovery, "LAST_RETRY_SECONDS", 0.2)


def make_app(database_url: str, settings, clock, **config):
    """The app as the tests run it: signed webhooks under BASE_URL, a fixed clock (and `config`)."""
    return create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": BASE_URL,
        "SETTINGS": settings,
        "CLOCK": clock,
        **config,
    })


@pytest.fixture
def app(migrated_url, settings, clock):
    app = make_app(migrated_url, settings, clock)
    yield app
    app.extensions["helpdesk.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def database(migrated_url):
    """The project's Database on a migrated database, for service functions that take one."""
    from helpdesk.db import Database

    database = Database(migrated_url)
    yield database
    database.dispose()


@pytest.fixture
def db_session(app):
    with app.extensions["helpdesk.db"].session() as session:
        yield session


@pytest.fixture
def local_no_proxy(monkeypatch):
    """requests would send 127.0.0.1 through an HTTP(S)_PROXY from the environment."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, ",".join(filter(None, [HOST, "localhost", os.environ.get(name, "")])))


@pytest.fixture(scope="session")
def prism() -> Iterator[PrismServer]:
    """Prism serving Twilio's OpenAPI description (tests/prism.py), one for the whole run."""
    with PrismServer() as server:
        yield server


@pytest.fixture
def stub() -> Iterator[StubApi]:
    with StubApi.running() as server:
        yield server
