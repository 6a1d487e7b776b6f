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
from metrics.compliance import OlderAwaiting
from metrics.collector import BuildCollector, HelpdeskCollector, SpoolCollector
from metrics.history import SettledHistory

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)


# Says why the business series are missing, to whoever reads the page (Prometheus ignores it).
NO_FIGURES = b"# The help desk cannot read its database now, so its figures are missing from this scrape.\n"


@bp.get("/metrics")
def exposition():
    """Business series read from the database now, this server's spool, and the HTTP request metrics.

    When the database cannot be read, the business series are all left out (never some of them,
    which would look like a drop) and the rest is served as usual: Prometheus then sees the app
    up without its figures (HelpdeskFiguresMissing), and the webhooks waiting in the spool
    meanwhile (HelpdeskWebhooksWaiting), rather than an app that is not there.
    """
    history = current_app.extensions.setdefault("metrics.history", SettledHistory())
    older = current_app.extensions.setdefault("metrics.older_awaiting", OlderAwaiting())
    collector = HelpdeskCollector(database(), settings(), clock(), history, older)
    registry = CollectorRegistry(auto_describe=False)
    try:
        collector.read()
    except SQLAlchemyError as exc:
        log.error("metrics scrape without the help desk's figures: cannot read the database (%s)",
                  type(exc).__name__)
        readable = False
    else:
        registry.register(collector)
        readable = True
    registry.register(SpoolCollector(spool_for(settings())))
    registry.register(BuildCollector(settings()))
    http.register(registry)
    return Response((b"" if readable else NO_FIGURES) + generate_latest(registry), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
