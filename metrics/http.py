"""HTTP request counts and latencies per endpoint, and Twilio's calls to SIP addresses that a
phone system refused (helpdesk/voice/sip_refusals.py), added up across gunicorn workers.

These are per-process counters (prometheus_client), so under gunicorn they need
multiprocess mode: PROMETHEUS_MULTIPROC_DIR set before the workers start (helpdesk/server.py
does it), and /metrics reads every worker's files. The instruments are created on first
use in each process, after gunicorn has forked the worker, so they write to those files.

The endpoint label is the Flask endpoint name (never the raw path), so the number of
series stays bounded; requests that match no route are "unmatched".
"""
from __future__ import annotations

import logging
import os
import threading
import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Webhooks must answer well within Twilio's 15 s; pages within a second or two.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)

_instruments: tuple[Counter, Histogram] | None = None
_sip_refusals: Counter | None = None
# A worker's threads can take their first requests at once: one set of instruments each
# would write its own running total to the worker's file, and one overwrites the other.
_instruments_lock = threading.Lock()


def multiprocess_dir() -> str | None:
    """The multiprocess directory when this process runs in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def instruments() -> tuple[Counter, Histogram]:
    """This process's request counter and duration histogram (unregistered)."""
    global _instruments
    if _instruments is None:
        with _instruments_lock:
            if _instruments is None:
                _instruments = (
                    Counter("helpdesk_http_requests", "HTTP requests by endpoint, method and status.",
                            ["endpoint", "method", "status"], registry=None),
                    Histogram("helpdesk_http_request_duration_seconds", "HTTP request duration by endpoint.",
                              ["endpoint"], buckets=DURATION_BUCKETS, registry=None),
                )
        sip_refusals()  # its series at 0 once the worker serves its first request
    return _instruments


def sip_refusals() -> Counter:
    """This process's count of Twilio's calls to SIP addresses that a phone system refused, by the
    app's call that dialled them (`ring_group`, `call_back_now`) and SIP code (unregistered)."""
    global _sip_refusals
    if _sip_refusals is None:
        from helpdesk.voice.sip_refusals import CALLS, REFUSED  # here, as that module imports this one

        with _instruments_lock:
            if _sip_refusals is None:
                counter = Counter("helpdesk_sip_calls_refused",
                                  "Twilio's calls to SIP addresses that the phone system refused, by call and "
                                  "SIP code.", ["call", "code"], registry=None)
                # Each at 0 from the start: increase() cannot see a series' first sample go up.
                for call in CALLS:
                    for code in REFUSED:
                        counter.labels(call, code)
                _sip_refusals = counter
    return _sip_refusals


def count_sip_refusal(call: str, code: str) -> None:
    """Count one refused SIP call; a webhook is answered all the same if it cannot be counted."""
    try:
        sip_refusals().labels(call, code).inc()
    except Exception as error:
        _report_failure(error)


def register(registry: CollectorRegistry) -> None:
    """Add the request metrics to `registry`: every worker's in multiprocess mode, else this process's."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client.multiprocess import MultiProcessCollector

        if not os.path.isdir(directory):  # removed under a running server: serve the other series
            _report_failure(FileNotFoundError(f"{MULTIPROC_ENV} {directory} is not a directory any more"))
            return
        MultiProcessCollector(registry, path=directory)
    else:
        for instrument in (*instruments(), sip_refusals()):
            registry.register(instrument)


def endpoint_label() -> str:
    rule = request.url_rule
    return rule.endpoint if rule is not None else "unmatched"


def init_app(app: Flask) -> None:
    """Time every request and count it by endpoint, method and status."""

    @app.before_request
    def start_timer():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def record(response):
        started = g.pop("metrics_started", None)
        endpoint = endpoint_label()
        method = request.method if request.method in METHODS else "other"
        try:
            requests, duration = instruments()
            requests.labels(endpoint, method, str(response.status_code)).inc()
            if started is not None:
                duration.labels(endpoint).observe(time.perf_counter() - started)
        except Exception as error:  # e.g. the multiprocess directory was removed: count nothing, answer
            _report_failure(error)
        return response


_failed_once = threading.Event()


def _report_failure(error: Exception) -> None:
    # The request is answered all the same (a caller must never hear Twilio's error because a
    # metric could not be written); said once per process, not once per request.
    if not _failed_once.is_set():
        _failed_once.set()
        log.error("request metrics are not being recorded in this process (%s: %s); requests are served as usual",
                  type(error).__name__, error)
