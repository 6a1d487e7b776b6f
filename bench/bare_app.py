"""The baselines: a bare Flask app answering every POST with fixed TwiML, and the same app
doing only the work no webhook handler can skip (the issue's target compares with the first).

`create_app()` is the bare endpoint of issue 2's target: it does not even read the request
body. `create_verifying_app()` also parses the form and verifies the Twilio signature with
the app's own check (helpdesk.voice.signature) before answering, and stores nothing: the
floor under any implementation that refuses forged requests, whatever it then stores.
"""
import os

from flask import Flask, Response, request

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Dial answerOnBridge="true" ringTone="uk" timeout="60">'
    "<Client>agent-1</Client></Dial></Response>"
)


def create_app(verify: bool = False) -> Flask:
    app = Flask(__name__)
    token, base = os.environ.get("TWILIO_AUTH_TOKEN", ""), os.environ.get("PUBLIC_BASE_URL", "")
    if verify:
        # Imported only here, so the bare endpoint's workers load nothing of the app.
        from helpdesk.voice.signature import is_valid

        if not (token and base):
            raise RuntimeError("TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL must be set")

    @app.post("/<path:path>")
    def twiml(path):
        if verify and not is_valid(token, base, request):
            return Response("The request signature does not verify.\n", status=403, mimetype="text/plain")
        return Response(TWIML, mimetype="text/xml")

    @app.get("/")
    def index():
        return "ok"

    return app


def create_verifying_app() -> Flask:
    return create_app(verify=True)
