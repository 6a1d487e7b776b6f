"""Liveness and readiness for load balancers and orchestrators."""
from __future__ import annotations

import logging

from flask import Blueprint, Response

from helpdesk.migrate import schema_problem, sqlite_file_problem
from helpdesk.voice.recovery import describe
from helpdesk.web import database

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up and serving."""
    return Response("ok\n", mimetype="text/plain")


@bp.get("/readyz")
def readyz():
    """The database answers and has this version's schema, so requests can be served."""
    try:
        with database().engine.connect() as connection:
            problem = schema_problem(connection)
    except Exception as exc:  # any driver error means not ready
        log.error("readiness check failed: %s", _why(exc))
        return Response("database unreachable\n", status=503, mimetype="text/plain")
    try:  # webhooks connect with settings of their own (a pooler may refuse them): they must get in too
        with database().connection() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:
        log.error("readiness check failed for webhooks' connections: %s", _why(exc))
        return Response("database unreachable for webhooks (they go to the spool)\n", status=503,
                        mimetype="text/plain")
    if problem:
        # A database that answers but was never migrated (or is behind): webhooks wait in the spool.
        log.error("readiness check failed: %s", problem)
        return Response(f"database not ready: {problem}\n", status=503, mimetype="text/plain")
    return Response("ready\n", mimetype="text/plain")


def _why(exc: BaseException) -> str:
    """The error, and for an SQLite file this process may no longer read and write (a command run
    as root since the app started, say), whose the file is and what to do: SQLite itself says
    only "unable to open database file"."""
    problem = sqlite_file_problem(database().url)
    return f"{describe(exc)}; {problem}" if problem else describe(exc)
