"""Liveness and readiness for load balancers and orchestrators."""
from __future__ import annotations

import logging

from flask import Blueprint, Response
from sqlalchemy import text

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
    """The database answers, so requests can be served."""
    try:
        with database().engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        log.error("readiness check failed: %s", describe(exc))
        return Response("database unreachable\n", status=503, mimetype="text/plain")
    return Response("ready\n", mimetype="text/plain")
