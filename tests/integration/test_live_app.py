"""The harness that runs the app under gunicorn for the end-to-end tests and the benchmarks
(tests/live.py): a server already on the port it was given must not stand in for its gunicorn."""
from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import live
from live import ROOT, LiveApp


class Impostor(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the standard library's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"impostor")

    def log_message(self, *args):
        pass


def test_a_port_another_server_took_meanwhile_is_given_up_for_another(monkeypatch):
    impostor = HTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    taken = impostor.server_address[1]
    # free_port() said it was free a moment ago, as when two servers are given the same port.
    ports = iter([taken])
    real_free_port = live.free_port
    monkeypatch.setattr(live, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        server = LiveApp("sqlite://", {"PYTHONPATH": str(ROOT / "bench")}, workers=1, app="bare_app:create_app()",
                         migrate=False)
        with server:
            assert server.port != taken and server.env["PUBLIC_BASE_URL"] == server.url
            with urllib.request.urlopen(server.url + "/", timeout=5) as response:
                assert response.read() == b"ok"  # the bare app's, not the impostor's
            assert f"Listening at: {server.url} ({server.process.pid})" in server.log_text()
    finally:
        impostor.shutdown()
        impostor.server_close()
