"""Engine and sessions. Service functions take a Session and own the transaction."""
from __future__ import annotations

import logging

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def make_engine(url: str, **kwargs) -> Engine:
    """An engine with SQLite tuned for concurrent webhooks (WAL, a busy timeout)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take the write lock up front
        # instead, so a read-then-write transaction cannot be overtaken by another writer.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection, _record):
    dbapi_connection.isolation_level = None  # let the "begin" listener issue BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """The app's engine and session factory (flaskr-style `init_app`)."""

    def __init__(self, url: str | None = None):
        self.engine: Engine | None = None
        self.sessions: sessionmaker[Session] | None = None
        if url:
            self.connect(url)

    def connect(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def init_app(self, app) -> None:
        self.connect(app.config["DATABASE_URL"])
        app.extensions["helpdesk.db"] = self

    def session(self) -> Session:
        assert self.sessions is not None, "Database.connect() was not called"
        return self.sessions()

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
