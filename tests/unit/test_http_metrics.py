"""Request metrics in multiprocess mode (gunicorn), as a worker with several threads counts them."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector

from metrics import http

THREADS = 16


def test_a_workers_threads_count_into_one_set_of_instruments_from_their_first_request(tmp_path, monkeypatch):
    # Two sets would each write their own running total to the worker's file, the later write
    # overwriting the other's: requests went missing from /metrics under load.
    monkeypatch.setenv(http.MULTIPROC_ENV, str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    monkeypatch.setattr(http, "_instruments", None)
    start = threading.Barrier(THREADS)
    real_counter = http.Counter

    def slow_counter(*args, **kwargs):
        time.sleep(0.05)  # creating it takes a while: the other threads arrive meanwhile, as under load
        return real_counter(*args, **kwargs)

    monkeypatch.setattr(http, "Counter", slow_counter)

    def first_request(_):
        start.wait()
        requests, _ = http.instruments()
        requests.labels("health.healthz", "GET", "200").inc()
        return requests

    with ThreadPoolExecutor(THREADS) as pool:
        counters = list(pool.map(first_request, range(THREADS)))
    assert len({id(counter) for counter in counters}) == 1
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    labels = {"endpoint": "health.healthz", "method": "GET", "status": "200"}
    assert registry.get_sample_value("helpdesk_http_requests_total", labels) == THREADS


def test_a_metric_that_cannot_be_written_never_fails_the_request(tmp_path, monkeypatch, caplog):
    # e.g. PROMETHEUS_MULTIPROC_DIR removed under a running server: Twilio must still get its answer.
    from flask import Flask

    monkeypatch.setenv(http.MULTIPROC_ENV, str(tmp_path / "removed"))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    monkeypatch.setattr(http, "_instruments", None)
    monkeypatch.setattr(http, "_failed_once", threading.Event())
    app = Flask(__name__)
    http.init_app(app)
    app.add_url_rule("/twiml", "twiml", lambda: ("<Response/>", 200, {"Content-Type": "text/xml"}))
    client = app.test_client()
    answers = [client.get("/twiml") for _ in range(3)]
    assert [(a.status_code, a.data) for a in answers] == [(200, b"<Response/>")] * 3
    assert caplog.text.count("request metrics are not being recorded in this process") == 1
