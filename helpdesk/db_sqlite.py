"""SQLite for concurrent webhooks: a private file, WAL, and writers queued on a file lock."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import time

from sqlalchemy import exc


def create_private(path: str | None) -> None:
    """Create a new SQLite database file readable by its owner only (0600): it holds callers'
    numbers, email texts and password hashes. SQLite gives its -wal and -shm files the same
    mode. An existing file is left as it is (the README says to make it 0600)."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # an empty file is an empty database
    except OSError:
        return  # it exists, or SQLite will say what is wrong with the path when it opens it


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


def begin_immediate(connection) -> None:
    try:
        connection.connection.dbapi_connection.begin_immediate()
    except sqlite3.Error as error:
        # Raised outside statement execution, so SQLAlchemy would not wrap it itself.
        raise exc.OperationalError("BEGIN IMMEDIATE", None, error) from error


def sqlite_pragmas(dbapi_connection, _record):
    dbapi_connection.isolation_level = None  # let the "begin" listener issue BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
