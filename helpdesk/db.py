"""Engine and sessions. Service functions take a Session and own the transaction."""
from __future__ import annotations

import fcntl
import itertools
import logging
import os
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

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection, record, _proxy):
        token = WATCHDOG.arm(dbapi_connection.pgconn.socket, WEBHOOK_HOLD_SECONDS)
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            if not WATCHDOG.disarm(token):
                raise  # the server stopped answering: a new connection would wait too
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


def make_engine(url: str, *, wait_seconds: float | None = None, **kwargs) -> Engine:
    """An engine with SQLite tuned for concurrent webhooks (WAL, a busy timeout).

    `wait_seconds` bounds how long a statement may wait for a lock or, on PostgreSQL, run
    (the webhooks' engine); otherwise SQLite waits SQLITE_WAIT_SECONDS and PostgreSQL as
    long as its server is configured to.
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
    query = make_url(url).query
    if "connect_timeout" not in query:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **connect_args}
    if wait_seconds:
        milliseconds = round(wait_seconds * 1000)
        given = connect_args.get("options", query.get("options", ""))
        connect_args["options"] = " ".join(
            part for part in (given, f"-c lock_timeout={milliseconds} -c statement_timeout={milliseconds}") if part)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _hold_webhook_connections_briefly(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


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

    def __init__(self, url: str | None = None):
        self.engine: Engine | None = None
        self.sessions: sessionmaker[Session] | None = None
        # Webhooks' own engine: the same database, waiting at most WEBHOOK_WAIT_SECONDS.
        self.webhook_engine: Engine | None = None
        self.webhook_sessions: sessionmaker[Session] | None = None
        if url:
            self.connect(url)

    def connect(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.webhook_engine = make_engine(url, wait_seconds=WEBHOOK_WAIT_SECONDS)
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
