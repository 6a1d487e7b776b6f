"""Replay recorded Twilio webhooks against a server, signed, with fresh call SIDs.

Each call's requests go in order on one thread, as Twilio sends them; calls start at a set
rate (paced) or as fast as the workers allow (saturation). Latency is measured per request.

The load generator shares the machine with the server it measures, so it does as little as
it can while the clock runs: every request is encoded and signed beforehand, and sent as
prepared bytes on a new connection (gunicorn's sync workers close each one after a response
anyway). A general HTTP client cost 0.5-0.6 ms of CPU per request here, more than the bare
endpoint itself, which capped that endpoint at the client's speed and took CPU from the app.
"""
from __future__ import annotations

import os
import socket
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
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_ms(self) -> float:
        return self.server_cpu_seconds / self.requests * 1000 if self.requests else float("nan")

    @property
    def client_cpu_ms(self) -> float:
        return self.client_cpu_seconds / self.requests * 1000 if self.requests else float("nan")

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def line(self, name: str) -> str:
        return (f"{name:<16} {self.requests:>7} requests  {self.per_second:>8.1f} req/s  "
                f"p50 {self.percentile(50):6.2f} ms  p99 {self.percentile(99):6.2f} ms  errors {self.errors}  "
                f"CPU per request: server {self.server_cpu_ms:.2f} ms, load generator {self.client_cpu_ms:.2f} ms")


def renamed(calls: list[list[Request]], round_number: int) -> list[list[Request]]:
    """The same calls with new SIDs, so the app stores them as new calls rather than redeliveries."""
    def fresh(value: str) -> str:
        if value.startswith("CA") and len(value) == 34:
            return f"CA{round_number:08x}{value[10:]}"
        return value

    return [[(path, [(k, fresh(v)) for k, v in params]) for path, params in call] for call in calls]


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its running children (gunicorn's workers), from /proc."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _read_response(connection: socket.socket) -> bytes:
    """The whole response, and no more: hang up once the body is in, as the server's
    "Connection: close" asks.

    (gunicorn's worker waits for the client to close before it takes the next request, so a
    client that waited for the server to close first would hold the worker.)
    """
    response = b""
    length = None
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return response
        response += chunk
        if length is None and b"\r\n\r\n" in response:
            head, _, _ = response.partition(b"\r\n\r\n")
            if head[9:12] in (b"204", b"304"):  # no body
                length = len(head) + 4
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = len(head) + 4 + int(value)
        if length is not None and len(response) >= length:
            return response


class Replayer:
    def __init__(self, base_url: str, auth_token: str, server_pid: int | None = None):
        parsed = urllib.parse.urlsplit(base_url)
        self.address = (parsed.hostname, parsed.port or 80)
        self.base_url = base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.server_pid = server_pid
        self.lock = threading.Lock()

    def prepare(self, calls: list[list[Request]]) -> list[list[bytes]]:
        """Each request as the bytes Twilio would send: form-encoded and signed."""
        host = f"{self.address[0]}:{self.address[1]}"
        prepared = []
        for call in calls:
            requests = []
            for path, params in call:
                body = urllib.parse.urlencode(params).encode()
                signature = self.validator.compute_signature(self.base_url + path, dict(params))
                head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
                        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
                        f"X-Twilio-Signature: {signature}\r\nConnection: close\r\n\r\n")
                requests.append(head.encode() + body)
            prepared.append(requests)
        return prepared

    def _post(self, request: bytes) -> tuple[bool, float]:
        started = time.perf_counter()
        try:
            with socket.create_connection(self.address, timeout=15) as connection:
                connection.sendall(request)
                response = _read_response(connection)
            ok = response.startswith(b"HTTP/1.1 2") or response.startswith(b"HTTP/1.0 2")
        except OSError:
            ok = False
        return ok, (time.perf_counter() - started) * 1000

    def run(self, calls: list[list[Request]], calls_per_second: float | None, workers: int) -> Figures:
        prepared = self.prepare(calls)
        latencies: list[float] = []
        errors = 0
        server_cpu = process_cpu_seconds(self.server_pid) if self.server_pid else 0.0
        client_cpu = time.process_time()
        started = time.perf_counter()

        def play(index_and_call):
            nonlocal errors
            index, call = index_and_call
            if calls_per_second:
                delay = started + index / calls_per_second - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            mine, failed = [], 0
            for request in call:
                ok, ms = self._post(request)
                mine.append(ms)
                failed += not ok
            with self.lock:
                latencies.extend(mine)
                errors += failed

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(play, enumerate(prepared)))
        seconds = time.perf_counter() - started
        return Figures(len(latencies), errors, seconds, latencies,
                       client_cpu_seconds=time.process_time() - client_cpu,
                       server_cpu_seconds=process_cpu_seconds(self.server_pid) - server_cpu if self.server_pid else 0.0)

