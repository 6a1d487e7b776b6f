"""Signed Twilio webhook requests for integration tests."""
from __future__ import annotations

from email.utils import format_datetime

from twilio.request_validator import RequestValidator

from tests.integration.conftest import AUTH_TOKEN, BASE_URL


def sid(n: int) -> str:
    return f"CA{n:032x}"


def post(client, path: str, params: dict[str, str], token: str = AUTH_TOKEN, headers: dict | None = None):
    """POST as Twilio does: form-encoded, signed over the public URL and parameters."""
    url = BASE_URL + path
    signature = RequestValidator(token).compute_signature(url, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature, **(headers or {})})


def stamp(moment) -> str:
    return format_datetime(moment, usegmt=True)


def inbound(call_sid: str, caller: str = "+447700900123", **extra) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": caller, "To": "+448001217479",
            "Caller": caller, "Called": "+448001217479", "CallStatus": "ringing", "Direction": "inbound",
            "ApiVersion": "2010-04-01", **extra}
