"""Engine and sessions. Service functions take a Session and own the transaction."""
from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import socket
import sqlite3
import threading
import time

from sqlalchemy import create_engine, event, exc, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

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
# How long a webhook may hold a PostgreSQL connection at all. The server's own limits above
# speak first while it answers; this one is for a server that has stopped answering on a
# connection already made (frozen, or a network that drops its packets), where libpq would
# wait for ever.
WEBHOOK_HOLD_SECONDS = 7.0


class Watchdog:
    """Cuts the socket of a database connection held past its deadline, so the waiting call fails.

    libpq has no limit on how long it waits for a server's answer. Shutting the socket down
    from another thread wakes it with an error instead, which the webhook turns into a spool
    entry. Each armed connection's socket is duplicated, so the watchdog never touches a
    descriptor number that has since been reused.
    """

    def __init__(self):
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # threads do not survive a fork

    def _reset(self) -> None:
        self._wake = threading.Condition()
        self._armed: dict[int, tuple[float, int, float]] = {}  # token -> (deadline, duplicated socket, seconds)
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, fileno: int, seconds: float) -> int:
        """Watch the socket `fileno` for `seconds`; returns the token to disarm it with."""
        duplicate = os.dup(fileno)
        with self._wake:
            token = next(self._tokens)
            self._armed[token] = (time.monotonic() + seconds, duplicate, seconds)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="helpdesk-db-watchdog", daemon=True)
                self._thread.start()
            self._wake.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Stop watching; False if the deadline had passed and the socket was cut."""
        with self._wake:
            entry = self._armed.pop(token, None)
        if entry is None:
            return False
        os.close(entry[1])
        return True

    def watching(self) -> int:
        """How many connections are armed now."""
        with self._wake:
            return len(self._armed)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for token in [token for token, (deadline, _, _) in self._armed.items() if deadline <= now]:
                    _, duplicate, seconds = self._armed.pop(token)
                    self._cut(duplicate)
                    log.error("a webhook's database connection was cut: the server did not answer within %g s",
                              seconds)
                soonest = min((deadline for deadline, _, _ in self._armed.values()), default=None)
                self._wake.wait(None if soonest is None else max(soonest - now, 0.001))

    @staticmethod
    def _cut(duplicate: int) -> None:
        try:
            held = socket.socket(fileno=duplicate)
        except OSError:  # not a socket after all: nothing to cut
            os.close(duplicate)
            return
        with held:  # closes the duplicate
            try:
                held.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the server has closed it already


WATCHDOG = Watchdog()


def _hold_webhook_connections_briefly(engine: Engine) -> None:
    """Arm the watchdog for each checkout of `engine` (PostgreSQL), and ping under it.

    The ping replaces pool_pre_ping, which would run before the watchdog is armed.
    """

    @event.listens_for(engine, "connect")
    def _connect(_dbapi_connection, record):
        record.info["fresh"] = True

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, _proxy):
        fresh = record.info.pop("fresh", False)
        token = WATCHDOG.arm(dbapi_connection.pgconn.socket, WEBHOOK_HOLD_SECONDS)
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            if not WATCHDOG.disarm(token):
                raise  # the server stopped answering: a new connection would wait too
            if fresh:
                # Made just now and already failing: the database is down behind something that
                # accepted the connection (pgbouncer), not a pool gone stale. Connecting again
                # would fail alike, and the webhook must go to the spool as for any outage.
                raise exc.OperationalError("SELECT 1", None, error) from error
            # The server dropped the connection (it restarted): connect again, and drop the others.
            raise exc.InvalidatePoolError(str(error).split("\n", 1)[0]) from error
        record.record_info["watchdog"] = token

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection, record):
        token = record.record_info.pop("watchdog", None)
        if token is not None:
            WATCHDOG.disarm(token)


def _create_private(path: str | None) -> None:
    """Create a new SQLite database file readable by its owner only (0600): it holds callers'
    numbers, email texts and password hashes. SQLite gives its -wal and -shm files the same
    mode. An existing file is left as it is (the README says to make it 0600)."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # an empty file is an empty database
    except OSError:
        return  # it exists, or SQLite will say what is wrong with the path when it opens it


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
    `wait_seconds`, a connection is also cut if held past WEBHOOK_HOLD_SECONDS (`watchdog`,
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
        _create_private(make_url(url).database)
        connect_args = {"timeout": wait_seconds or SQLITE_WAIT_SECONDS, "factory": QueuedSQLiteConnection,
                        **kwargs.pop("connect_args", {})}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take the write lock up front
        # instead, so a read-then-write transaction cannot be overtaken by another writer.
        event.listen(engine, "begin", _begin_immediate)
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
        _hold_webhook_connections_briefly(engine)
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


class QueuedSQLiteConnection(sqlite3.Connection):
    """An SQLite connection whose transactions queue on an OS file lock.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps,
    which leaves the CPU idle under load (gunicorn workers are separate processes). An
    flock() on a file beside the database queues them instead: the next one wakes as soon
    as the lock is released after COMMIT or ROLLBACK.
    """

    def __init__(self, database, *args, timeout: float = 5.0, **kwargs):
        super().__init__(database, *args, timeout=timeout, **kwargs)
        self._timeout = timeout
        name = os.fspath(database)
        in_memory = name in ("", ":memory:") or name.startswith("file:")
        self._lock_path = None if in_memory else name + ".lock"
        self._lock_fd: int | None = None
        self._locked = False

    def begin_immediate(self) -> None:
        if self._lock_path is not None:
            if self._lock_fd is None:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._wait_for_lock()
            self._locked = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def _wait_for_lock(self) -> None:
        # Bounded like SQLite's own busy timeout, so a stuck transaction elsewhere gives
        # "database is locked" instead of a hang; short sleeps keep the hand-over quick.
        deadline = time.monotonic() + self._timeout
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _release(self) -> None:
        if self._locked:
            self._locked = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        self._release()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        super().close()


def _begin_immediate(connection) -> None:
    try:
        connection.connection.dbapi_connection.begin_immediate()
    except sqlite3.Error as error:
        # Raised outside statement execution, so SQLAlchemy would not wrap it itself.
        raise exc.OperationalError("BEGIN IMMEDIATE", None, error) from error


def _sqlite_pragmas(dbapi_connection, _record):
    dbapi_connection.isolation_level = None  # let the "begin" listener issue BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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
