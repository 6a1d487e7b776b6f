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
