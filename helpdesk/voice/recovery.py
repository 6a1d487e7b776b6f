"""Twilio webhooks the database could not take: kept in the spool, stored when it is back.

A webhook is answered whatever happens to the database (a caller never hears Twilio's error
message because of us), and Twilio does not send a status callback twice. So an event that
cannot be stored is written to the spool (helpdesk/spool.py) before the answer goes back, and
the process that wrote it keeps trying to store it, in a background thread, until the spool
is empty. Every app worker looks at the spool when it starts, and any process that stores a
webhook now and then, so events left by a process that has since stopped are stored too;
`helpdesk webhooks replay` does the same from the command line.

Storing a spooled event is the same call as storing it at once (the journal recognises an
event it already has), with the time it was received, so the call's record comes out the same.
How a placed callback's attempt ended (callbacks.outbound) is kept and stored the same way,
through callbacks.service.finish_attempt with the time it ended.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy import exc

from callbacks.service import ATTEMPT_OUTCOMES, finish_attempt
from helpdesk.db import Database
from helpdesk.migrate import schema_problem
from helpdesk.settings import Settings
from helpdesk.spool import Drained, Spool, Unreachable
from helpdesk.voice.journal import journal_only, record_event

log = logging.getLogger(__name__)

# How often a process that stores webhooks looks for events left in the spool.
CHECK_SECONDS = 10.0
# Waits between tries while the database stays unreachable.
FIRST_RETRY_SECONDS = 2.0
LAST_RETRY_SECONDS = 60.0


# PostgreSQL's "undefined table" and "undefined column": the schema is not (yet) the app's.
SCHEMA_MISSING = ("42P01", "42703")


def describe(error: BaseException) -> str:
    """An error in one short line for the log: its type and the first line of its message."""
    first_line = str(error).split("\n", 1)[0]
    return f"{type(error).__name__}: {first_line[:200]}"


def spool_entry(*, kind: str, path: str, params: Sequence[tuple[str, str]], received_at: datetime,
                call_sid: str, idempotency_token: str | None, decision: str | None,
                journal: str = "call") -> dict[str, Any]:
    """One event as the spool keeps it. `journal` is "call" (record_event) or "only" (journal_only)."""
    return {"v": 1, "journal": journal, "kind": kind, "path": path, "params": [list(p) for p in params],
            "received_at": received_at.isoformat(), "call_sid": call_sid,
            "idempotency_token": idempotency_token, "decision": decision}


def attempt_entry(*, callback_id: int, call_sid: str, outcome: str, ended_at: datetime,
                  answered_at: datetime | None) -> dict[str, Any]:
    """How a placed callback's attempt ended (callbacks.service.finish_attempt), as the spool keeps it."""
    # "kind" names it in the log if the database refuses it, as a webhook's kind does.
    return {"v": 1, "journal": "attempt", "kind": "callback_outcome", "callback": callback_id, "call_sid": call_sid,
            "outcome": outcome, "ended_at": ended_at.isoformat(),
            "answered_at": answered_at.isoformat() if answered_at else None}


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def store_entry(database: Database, settings: Settings, entry: dict[str, Any]) -> None:
    """Store one spooled entry; Unreachable if the database cannot be reached."""
    try:
        if entry.get("journal") == "attempt":
            _finish_attempt(database, settings, entry)
        else:
            _store_event(database, settings, entry)
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError) as error:
        # Cannot connect, the server went away, "database is locked", a full disk: try again later.
        raise Unreachable(describe(error)) from error
    except exc.DBAPIError as error:
        # A table PostgreSQL does not have: a database nobody has migrated yet is not ready, and
        # will be once somebody runs 'helpdesk db upgrade'. Anything else is a refusal.
        problem = _schema_problem(database)
        if problem:
            raise Unreachable(f"{problem} ({describe(error)})") from error
        if getattr(error.orig, "sqlstate", None) in SCHEMA_MISSING:
            # The schema was missing when the statement ran, and is there now: a migration
            # finished in between. Not a refusal: stored at the next try.
            raise Unreachable(f"the schema changed meanwhile ({describe(error)})") from error
        raise


def _schema_problem(database: Database) -> str | None:
    try:
        with database.engine.connect() as connection:
            return schema_problem(connection)
    except exc.SQLAlchemyError as error:
        return describe(error)


def store_event(database: Database, settings: Settings, *, journal: str, call_sid: str, **event: Any) -> None:
    """Store one webhook's event: `journal` "call" records it and recomputes its call; "only" journals it."""
    with database.connection() as connection:
        if journal == "only":
            journal_only(connection, call_sid=call_sid, **event)
        else:
            record_event(connection, settings, **event)


def _store_event(database: Database, settings: Settings, entry: dict[str, Any]) -> None:
    store_event(database, settings, journal=entry.get("journal", "call"), call_sid=entry["call_sid"],
                kind=entry["kind"], path=entry["path"], params=[(k, v) for k, v in entry["params"]],
                received_at=_moment(entry["received_at"]), idempotency_token=entry.get("idempotency_token"),
                decision=entry.get("decision"))


def _finish_attempt(database: Database, settings: Settings, entry: dict[str, Any]) -> None:
    # Storing it twice changes nothing: an attempt that has its outcome keeps it.
    if entry["outcome"] not in ATTEMPT_OUTCOMES:
        raise ValueError(f"{entry['outcome']!r} is not an attempt's outcome")
    answered_at = _moment(entry["answered_at"]) if entry.get("answered_at") else None
    with database.webhook_session() as session:
        finish_attempt(session, settings, call_sid=entry["call_sid"], outcome=entry["outcome"],
                       now=_moment(entry["ended_at"]), answered_at=answered_at)


def keep_for_later(entry: dict[str, Any], what: str, problem: str, database: Database, settings: Settings) -> bool:
    """Keep an entry the database could not take in the spool, and say so in the log.

    `what` names it ("a webhook (incoming, call CA...)"), `problem` says why the database
    did not take it. False, logged as STORING FAILED, if the spool could not take it either.
    """
    recovery = recovery_for(settings)
    try:
        recovery.keep(entry, database, settings)
    except Exception:
        log.exception("STORING FAILED for %s, and it could not be kept in the spool (%s)", what,
                      recovery.spool.directory)
        return False
    log.error("the database could not take %s: kept in the spool to store later (%s)", what, problem)
    return True


def spool_for(settings: Settings) -> Spool:
    """The spool `settings` names; a relative path is taken from the working directory now."""
    return Spool(Path(settings.webhooks.spool_dir).absolute())


def spool_problem(settings: Settings, create: bool = True) -> str | None:
    """Why webhooks the database could not take could not be kept in the spool, if they could not
    (`create`: make the directory if it is missing, as a server would)."""
    spool = spool_for(settings)
    try:
        spool.check_writable(create)
    except OSError as exc:
        relative = "" if Path(settings.webhooks.spool_dir).is_absolute() else (
            f" (\"{settings.webhooks.spool_dir}\" is taken from the working directory)")
        return (f"webhooks.spool_dir: cannot write to {spool.directory} ({exc.strerror or exc}), so webhooks "
                f"would be lost whenever the database could not take them{relative}")
    return None


def replay(database: Database, settings: Settings) -> Drained:
    """Store what waits in the spool (one pass)."""
    return spool_for(settings).drain(lambda entry: store_entry(database, settings, entry))


class Recovery:
    """One per process and spool: keeps events, and stores them once the database is back."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._next_check = 0.0

    def keep(self, entry: dict[str, Any], database: Database, settings: Settings) -> None:
        """Spool one event (raises OSError if even that failed) and make sure it will be stored."""
        self.spool.put(entry)
        self._start(database, settings)

    def check(self, database: Database, settings: Settings) -> None:
        """When the process starts, and now and then after a webhook was stored: store what waits
        in the spool (in the background)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_SECONDS
        if self.spool.has_waiting():
            self._start(database, settings)

    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _start(self, database: Database, settings: Settings) -> None:
        with self._lock:
            if self.running():  # (a thread copied by fork is never alive in the child)
                return
            self._thread = threading.Thread(target=self._run, args=(database, settings),
                                            name="helpdesk-spool", daemon=True)
            self._thread.start()

    def _run(self, database: Database, settings: Settings) -> None:
        wait = FIRST_RETRY_SECONDS
        while True:
            try:
                result = self.spool.drain(lambda entry: store_entry(database, settings, entry))
            except Exception:  # a spool that cannot be read: say so, and try again later
                log.exception("spool: could not read %s", self.spool.directory)
                result = Drained(waiting=1)
            if result.stored or result.unstored or result.unreadable:
                log.warning("spool: stored %d webhooks kept while the database was unreachable "
                            "(%d refused, %d unreadable, %d still waiting)",
                            result.stored, result.unstored, result.unreadable, result.waiting)
            if not result.waiting and not result.busy:
                # Under the lock _start takes: an event kept from here on starts a new thread.
                with self._lock:
                    if not self.spool.has_waiting():
                        self._thread = None
                        return
                continue  # one was kept while this drain finished: store it now
            time.sleep(wait)
            wait = min(wait * 2, LAST_RETRY_SECONDS)


_recoveries: dict[tuple[int, str], Recovery] = {}
_recoveries_lock = threading.Lock()


def recovery_for(settings: Settings) -> Recovery:
    """This process's Recovery for the spool `settings` names."""
    key = (os.getpid(), settings.webhooks.spool_dir)
    recovery = _recoveries.get(key)
    if recovery is None:
        with _recoveries_lock:
            recovery = _recoveries.setdefault(key, Recovery(spool_for(settings)))
    return recovery


def check_at_start(app) -> None:
    """Store what a stopped process left in the spool, without waiting for the next webhook
    (gunicorn's post_worker_init: a server restarted, or a worker replaced)."""
    settings, database = app.extensions.get("helpdesk.settings"), app.extensions.get("helpdesk.db")
    if settings is None or database is None:
        return
    try:
        recovery_for(settings).check(database, settings)
    except Exception as error:  # a spool that cannot be read: the worker serves all the same
        log.error("spool: could not look at %s at start (%s)", spool_for(settings).directory, describe(error))
