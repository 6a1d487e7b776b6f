"""Engine and sessions. Service functions take a Session and own the transaction."""
from __future__ import annotations

import logging
import re

from sqlalchemy import create_engine, event, exc, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from helpdesk.db_sqlite import QueuedSQLiteConnection, begin_immediate, create_private, sqlite_pragmas
from helpdesk.db_watchdog import WATCHDOG, Watchdog, hold_webhook_connections_briefly

# Also for those who import them from here.
__all__ = ["Database", "make_engine", "url_settings", "QueuedSQLiteConnection", "WATCHDOG", "Watchdog"]

log = logging.getLogger(__name__)

# libpq waits for a server that accepts the connection but never answers for as long as TCP
# lets it. Twilio waits 15 s for a webhook's answer, and a webhook the database cannot take
# goes to the spool instead, so treat a PostgreSQL that has not answered in 5 s as down.
# `?connect_timeout=N` in DATABASE_URL overrides it.
CONNECT_TIMEOUT_SECONDS = 5
# How long a webhook waits for a lock (SQLite's write lock, a PostgreSQL row or table lock held
# by a migration or a session left open) or for a statement, before its event goes to the
# spool instead. With the connect timeout it stays well inside the 15 s Twilio waits.
WEBHOOK_WAIT_SECONDS = 5.0
# Everything else (pages, exports, the scheduler) waits longer rather than fail.
SQLITE_WAIT_SECONDS = 30.0
# Except that a web page on PostgreSQL waits at most this long for a lock, and runs a statement
# at most PAGE_STATEMENT_SECONDS: a page waiting without limit (on a migration's or a stuck
# session's lock) keeps its gunicorn thread, and agents' pages refreshing every 15 s would take
# every thread, leaving none for Twilio's webhooks. The page answers 503 instead.
PAGE_LOCK_SECONDS = 5.0
PAGE_STATEMENT_SECONDS = 20.0
# Settings of ours a DATABASE_URL may carry (taken out of it before the driver sees it).
POOL_SETTINGS = ("pool_size", "max_overflow")
def make_engine(url: str, *, wait_seconds: float | None = None, statement_seconds: float | None = None,
                watchdog: bool = True, name: str = "helpdesk", **kwargs) -> Engine:
    """An engine with SQLite tuned for concurrent webhooks (WAL, a busy timeout).

    `wait_seconds` bounds how long a statement may wait for a lock and, on PostgreSQL, run
    (`statement_seconds`, if given, for the second); otherwise SQLite waits SQLITE_WAIT_SECONDS
    and PostgreSQL as long as its server is configured to. PostgreSQL gets them at the start of
    each transaction (SET LOCAL), not as startup options, which a pooler such as pgbouncer
    refuses or leaves out. `name` is the sessions' application_name, unless the URL gives one;
    the URL may also give `pool_size`, `max_overflow` and psycopg's `prepare_threshold`
    (`none`: never prepare on the server, for pgbouncer in transaction mode). With
    `wait_seconds`, a connection is also cut if held past db_watchdog.WEBHOOK_HOLD_SECONDS (`watchdog`,
    for webhooks: a frozen server would otherwise keep them waiting for ever).
    """
    # A statement's values are callers' numbers, addresses, notes: never in an error's text,
    # which ends up in the log when a write fails.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        create_private(make_url(url).database)
        connect_args = {"timeout": wait_seconds or SQLITE_WAIT_SECONDS, "factory": QueuedSQLiteConnection,
                        **kwargs.pop("connect_args", {})}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take the write lock up front
        # instead, so a read-then-write transaction cannot be overtaken by another writer.
        event.listen(engine, "begin", begin_immediate)
        return engine
    connect_args = kwargs.pop("connect_args", {})
    parsed = make_url(url)
    query = parsed.query
    if "connect_timeout" not in query:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **connect_args}
    if "application_name" not in query:
        connect_args = {"application_name": name, **connect_args}
    ours = url_settings(url)
    for setting in POOL_SETTINGS:
        if setting in ours:
            kwargs.setdefault(setting, ours[setting])
    if "prepare_threshold" in ours:
        connect_args["prepare_threshold"] = ours["prepare_threshold"]
    url = parsed.difference_update_query(POOL_SETTINGS + ("prepare_threshold",))
    if wait_seconds and watchdog:  # its ping, under the watchdog, replaces pool_pre_ping
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        hold_webhook_connections_briefly(engine)
    else:
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    if wait_seconds:
        _limit_each_transaction(engine, wait_seconds, statement_seconds or wait_seconds)
    if "prepare_threshold" not in ours:
        event.listen(engine, "connect", _no_prepared_statements_through_a_pooler)
    return engine


_said_pooler: set[tuple] = set()


def _no_prepared_statements_through_a_pooler(dbapi_connection, _record) -> None:
    """psycopg prepares a statement on the server after five uses, under a name of its own. Behind
    a pooler handing server connections from client to client (pgbouncer pooling by transaction),
    another client may then run a statement of that name that is not its own. A server that
    answers on another port than the one connected to is behind something that forwards
    connections: prepare nothing there, unless DATABASE_URL says `prepare_threshold`."""
    try:
        port = dbapi_connection.execute("SELECT inet_server_port()").fetchone()[0]
    finally:
        dbapi_connection.rollback()
    given = dbapi_connection.info.port
    if port is None or port == given:
        return  # a Unix socket, or the server itself
    dbapi_connection.prepare_threshold = None
    if (given, port) not in _said_pooler:
        _said_pooler.add((given, port))
        log.info("PostgreSQL answers on port %s through port %s (a pooler such as pgbouncer?): statements are not "
                 "prepared on the server; put prepare_threshold in DATABASE_URL to choose", port, given)


def url_settings(url: str) -> dict:
    """The app's own settings in a DATABASE_URL (pool_size, max_overflow, prepare_threshold),
    checked: ArgumentError, naming the setting, for a value that is not one."""
    query = make_url(url).query
    found = {}
    for setting, allowed in (("pool_size", r"[0-9]+"), ("max_overflow", r"-1|[0-9]+"),
                             ("prepare_threshold", r"none|[0-9]+")):
        if setting not in query:
            continue
        value = query[setting]
        if isinstance(value, tuple) or not re.fullmatch(allowed, value, re.ASCII | re.IGNORECASE):
            what = "a whole number" + (" or none" if setting == "prepare_threshold" else
                                       " or -1 (no limit)" if setting == "max_overflow" else "")
            raise exc.ArgumentError(f"DATABASE_URL: {setting} must be {what}, not {value!r}")
        found[setting] = None if value.lower() == "none" else int(value)
    return found


def _limit_each_transaction(engine: Engine, lock_seconds: float, statement_seconds: float) -> None:
    """PostgreSQL: each transaction waits at most `lock_seconds` for a lock and runs each statement
    at most `statement_seconds` (SET LOCAL, so nothing outlives the transaction, even on a
    connection a pooler hands to someone else next)."""
    limits = (f"SELECT set_config('lock_timeout', '{round(lock_seconds * 1000)}', true), "
              f"set_config('statement_timeout', '{round(statement_seconds * 1000)}', true)")

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql(limits)


class Database:
    """The app's engine and session factory (flaskr-style `init_app`)."""

    def __init__(self, url: str | None = None, *, pages: bool = False):
        # pages: the web app's, whose page requests get PAGE_LOCK_SECONDS and PAGE_STATEMENT_SECONDS.
        self.pages = pages
        self.url: str | None = None
        self.engine: Engine | None = None
        self.sessions: sessionmaker[Session] | None = None
        # Webhooks' own engine: the same database, waiting at most WEBHOOK_WAIT_SECONDS.
        self.webhook_engine: Engine | None = None
        self.webhook_sessions: sessionmaker[Session] | None = None
        if url:
            self.connect(url)

    def connect(self, url: str) -> None:
        self.url = url  # as given: settings of ours in it are taken out of the engines' URLs
        if self.pages and not url.startswith("sqlite"):
            self.engine = make_engine(url, wait_seconds=PAGE_LOCK_SECONDS, statement_seconds=PAGE_STATEMENT_SECONDS,
                                      watchdog=False, name="helpdesk-pages")
        else:
            self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.webhook_engine = make_engine(url, wait_seconds=WEBHOOK_WAIT_SECONDS, name="helpdesk-webhooks")
        self.webhook_sessions = sessionmaker(self.webhook_engine, expire_on_commit=False)

    def init_app(self, app) -> None:
        self.connect(app.config["DATABASE_URL"])
        app.extensions["helpdesk.db"] = self

    def session(self) -> Session:
        assert self.sessions is not None, "Database.connect() was not called"
        return self.sessions()

    def webhook_session(self) -> Session:
        """A session for a Twilio webhook: gives up after WEBHOOK_WAIT_SECONDS, so the spool can step in."""
        assert self.webhook_sessions is not None, "Database.connect() was not called"
        return self.webhook_sessions()

    def connection(self) -> Connection:
        """A Core connection for the webhook journal (its hot path needs no ORM objects); waits like webhook_session."""
        assert self.webhook_engine is not None, "Database.connect() was not called"
        return self.webhook_engine.connect()

    def dispose(self, close: bool = True) -> None:
        """Close the pools' connections; `close=False` in a forked child, which must not touch its parent's."""
        for engine in (self.engine, self.webhook_engine):
            if engine is not None:
                engine.dispose(close=close)
