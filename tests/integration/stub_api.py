"""A stand-in for Twilio's REST API on 127.0.0.1, for the answers Prism cannot give (5xx, Twilio's
own error bodies, slow or unreadable answers) and for answers a test chooses call by call.

Use the `stub` fixture (tests/integration/conftest.py), or `StubApi.running()`.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from servers import HOST


class StubApi(ThreadingHTTPServer):
    """Answers a request for a path in `answers` with its (status, body), any other with `status`
    and `body`, after `delay` seconds; `paths` lists the paths asked for, query included. `route`,
    if set, is asked first: a function of the path giving (status, body), or None for the rest."""

    daemon_threads = True

    def __init__(self):
        super().__init__((HOST, 0), StubHandler)
        self.status, self.body, self.delay = 201, "{}", 0.0
        self.answers: dict[str, tuple[int, str]] = {}
        self.route: Callable[[str], tuple[int, str] | None] | None = None
        self.paths: list[str] = []
        self.bodies: list[str] = []  # each POST's body, as sent
        self.released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"

    @classmethod
    @contextmanager
    def running(cls) -> Iterator["StubApi"]:
        server = cls()
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.released.set()
            server.shutdown()
            server.server_close()
            thread.join(5)


class StubHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.server.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        self._answer()

    def _answer(self):
        self.server.paths.append(self.path)
        self.server.released.wait(self.server.delay)
        routed = self.server.route(self.path) if self.server.route else None
        status, body = routed or self.server.answers.get(self.path, (self.server.status, self.server.body))
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (the timeout test)
            pass

    def log_message(self, *args):
        pass
