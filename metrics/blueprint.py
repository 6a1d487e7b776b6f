"""GET /metrics: the Prometheus text exposition.

No sign-in: Prometheus scrapes it. It shows counts only, nothing personal; protect it at
the reverse proxy (allow the Prometheus servers' addresses) as the README says.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from helpdesk.voice.recovery import spool_for
from helpdesk.web import clock, database, settings
from metrics import http
from metrics.collector import BuildCollector, HelpdeskCollector, SpoolCollector
from metrics.history import SettledHistory

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def exposition():
    """Business series read from the database now, and the HTTP request metrics."""
    history = current_app.extensions.setdefault("metrics.history", SettledHistory())
    collector = HelpdeskCollector(database(), settings(), clock(), history)
    try:
        collector.read()
    except SQLAlchemyError as exc:
        # A scrape either shows every series or fails: a partial one would look like a drop.
        log.error("metrics scrape failed: cannot read the database (%s)", type(exc).__name__)
        return Response("Cannot read the database, so no metrics this time.\n", status=503,
                        mimetype="text/plain", headers={"Cache-Control": "no-store"})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(SpoolCollector(spool_for(settings())))
    registry.register(BuildCollector(settings()))
    http.register(registry)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
