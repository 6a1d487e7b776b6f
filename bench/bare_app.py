"""The baseline: a bare Flask app answering every POST with fixed TwiML."""
from flask import Flask, Response

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Dial answerOnBridge="true" ringTone="uk" timeout="60">'
    "<Client>agent-1</Client></Dial></Response>"
)


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/<path:path>")
    def twiml(path):
        return Response(TWIML, mimetype="text/xml")

    @app.get("/")
    def index():
        return "ok"

    return app
