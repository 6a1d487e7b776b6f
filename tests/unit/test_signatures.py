"""Request signatures: twilio-python's own vectors, and our public-URL reconstruction."""
from flask import Flask, request
from twilio.request_validator import RequestValidator

from helpdesk.voice.signature import is_valid, public_url

TOKEN = "12345"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}


def test_twilio_python_vector_without_port_validates():
    assert RequestValidator(TOKEN).validate(VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_twilio_python_vector_with_port_validates():
    url = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert RequestValidator(TOKEN).validate(url, VECTOR_PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w=")


def test_the_vector_fails_with_another_token_or_a_changed_parameter():
    assert not RequestValidator("54321").validate(VECTOR_URL, VECTOR_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    changed = dict(VECTOR_PARAMS, Digits="1235")
    assert not RequestValidator(TOKEN).validate(VECTOR_URL, changed, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def _app():
    app = Flask(__name__)

    @app.post("/myapp.php")
    def hook():
        return {"url": public_url("https://mycompany.com", request),
                "valid": is_valid(TOKEN, "https://mycompany.com", request)}

    return app


def test_a_request_seen_over_plain_http_behind_a_proxy_validates_against_the_public_url():
    client = _app().test_client()
    response = client.post(
        "http://10.0.0.5:8000/myapp.php?foo=1&bar=2",
        data=VECTOR_PARAMS,
        headers={"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
    )
    assert response.json == {"url": VECTOR_URL, "valid": True}


def test_a_request_without_a_signature_is_not_valid():
    client = _app().test_client()
    response = client.post("/myapp.php?foo=1&bar=2", data=VECTOR_PARAMS)
    assert response.json["valid"] is False


def test_a_signature_made_over_the_url_with_its_default_port_is_accepted_too():
    client = _app().test_client()
    response = client.post(
        "/myapp.php?foo=1&bar=2", data=VECTOR_PARAMS, headers={"X-Twilio-Signature": "kvajT1Ptam85bY51eRf/AJRuM3w="}
    )
    assert response.json["valid"] is True


def test_a_signature_for_another_url_is_refused():
    client = _app().test_client()
    response = client.post(
        "/myapp.php?foo=1&bar=3", data=VECTOR_PARAMS, headers={"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="}
    )
    assert response.json["valid"] is False
