"""The baselines: a bare Flask app answering every POST with fixed TwiML, and the same app
doing only the work no webhook handler can skip (the issue's target compares with the first).

`create_app()` is the bare endpoint of issue 2's target: it does not even read the request
body. `create_verifying_app()` also parses the form and verifies the Twilio signature with
the app's own check (helpdesk.voice.signature) before answering, and stores nothing: the
floor under any implementation that refuses forged requests, whatever it then stores.

`create_storing_app()` then also stores the webhook as received before answering, once
(a redelivery is recognised by the app's own fingerprint), in an SQLite file set up as the
app's is (WAL, synchronous=NORMAL), with the sqlite3 module directly and nothing else: no
call record, no enquiry, no ORM. It is the floor under any implementation that keeps every
accepted webhook before it answers, which is what makes a webhook impossible to lose.
"""
import json
import os
import sqlite3
from datetime import datetime, timezone

from flask import Flask, Response, request

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Dial answerOnBridge="true" ringTone="uk" timeout="60">'
    "<Client>agent-1</Client></Dial></Response>"
)


def create_app(verify: bool = False, store: str | None = None) -> Flask:
    app = Flask(__name__)
    token, base = os.environ.get("TWILIO_AUTH_TOKEN", ""), os.environ.get("PUBLIC_BASE_URL", "")
    if verify:
        # Imported only here, so the bare endpoint's workers load nothing of the app.
        from helpdesk.voice.signature import is_valid

        if not (token and base):
            raise RuntimeError("TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL must be set")
    if store:
        from helpdesk.voice.journal import fingerprint

        _create_table(store)
    # One connection per worker process, opened after gunicorn forks it.
    connections: dict[int, sqlite3.Connection] = {}

    @app.post("/<path:path>")
    def twiml(path):
        if verify and not is_valid(token, base, request):
            return Response("The request signature does not verify.\n", status=403, mimetype="text/plain")
        if store:
            connection = connections.get(os.getpid()) or connections.setdefault(os.getpid(), _connect(store))
            params = list(request.form.items(multi=True))
            with connection:
                connection.execute(
                    "INSERT INTO events (received_at, path, params, fingerprint) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (fingerprint) DO NOTHING",
                    (datetime.now(timezone.utc).isoformat(), request.path, json.dumps(params, ensure_ascii=False),
                     fingerprint(request.path, params)))
        return Response(TWIML, mimetype="text/xml")

    @app.get("/")
    def index():
        return "ok"

    return app


def create_verifying_app() -> Flask:
    return create_app(verify=True)


def create_storing_app() -> Flask:
    path = os.environ.get("BENCH_STORE_PATH")
    if not path:
        raise RuntimeError("BENCH_STORE_PATH must name the SQLite file to store webhooks in")
    return create_app(verify=True, store=path)


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=15)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _create_table(path: str) -> None:
    with _connect(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, "
                           "path TEXT NOT NULL, params TEXT NOT NULL, fingerprint TEXT NOT NULL UNIQUE)")
    connection.close()
