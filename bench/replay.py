"""Replay recorded Twilio webhooks against a server, signed, with fresh call SIDs.

Each call's requests go in order on one thread, as Twilio sends them; calls start at a set
rate (paced) or as fast as the workers allow (saturation). Latency is measured per request.
"""
from __future__ import annotations

import http.client
import statistics
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from twilio.request_validator import RequestValidator

Request = tuple[str, list[tuple[str, str]]]  # path, params


@dataclass
class Figures:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def line(self, name: str) -> str:
        return (f"{name:<14} {self.requests:>7} requests  {self.per_second:>8.1f} req/s  "
                f"p50 {self.percentile(50):6.2f} ms  p99 {self.percentile(99):6.2f} ms  errors {self.errors}")


def renamed(calls: list[list[Request]], round_number: int) -> list[list[Request]]:
    """The same calls with new SIDs, so the app stores them as new calls rather than redeliveries."""
    def fresh(value: str) -> str:
        if value.startswith("CA") and len(value) == 34:
            return f"CA{round_number:08x}{value[10:]}"
        return value

    return [[(path, [(k, fresh(v)) for k, v in params]) for path, params in call] for call in calls]


class Replayer:
    def __init__(self, base_url: str, auth_token: str, signing_base: str | None = None):
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.signing_base = (signing_base or base_url).rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.lock = threading.Lock()

    def _post(self, path: str, params: list[tuple[str, str]]) -> tuple[bool, float]:
        body = urllib.parse.urlencode(params)
        signature = self.validator.compute_signature(self.signing_base + path, dict(params))
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        started = time.perf_counter()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            ok = 200 <= response.status < 300
        except OSError:
            ok = False
        finally:
            connection.close()
        return ok, (time.perf_counter() - started) * 1000

    def run(self, calls: list[list[Request]], calls_per_second: float | None, workers: int) -> Figures:
        latencies: list[float] = []
        errors = 0
        started = time.perf_counter()

        def play(index_and_call):
            nonlocal errors
            index, call = index_and_call
            if calls_per_second:
                delay = started + index / calls_per_second - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            mine, failed = [], 0
            for path, params in call:
                ok, ms = self._post(path, params)
                mine.append(ms)
                failed += not ok
            with self.lock:
                latencies.extend(mine)
                errors += failed

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(play, enumerate(calls)))
        return Figures(len(latencies), errors, time.perf_counter() - started, latencies)


def summary(figures: Figures) -> dict[str, float]:
    return {"req_per_s": figures.per_second, "p50_ms": figures.percentile(50), "p99_ms": figures.percentile(99),
            "mean_ms": statistics.fmean(figures.latencies_ms) if figures.latencies_ms else float("nan")}
