"""A watchdog for webhooks' PostgreSQL connections: one held past its deadline is cut."""
from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

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


def hold_webhook_connections_briefly(engine: Engine) -> None:
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
