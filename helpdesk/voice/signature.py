"""Twilio request signatures, checked against the public URL Twilio requested."""
from __future__ import annotations

import hmac

from flask import Request
from twilio.request_validator import RequestValidator


def public_url(base: str, request: Request) -> str:
    """The URL as Twilio requested it: the configured public base, then path and query.

    Behind a TLS-terminating proxy the app sees http:// and an inner host name, so the
    request's own URL is never trusted for this.
    """
    query = request.query_string.decode("latin-1")
    return base.rstrip("/") + request.path + (f"?{query}" if query else "")


def is_valid(token: str, base: str, request: Request) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    validator, url = RequestValidator(token), public_url(base, request)
    # The URL exactly as configured first (one HMAC, the usual case); then the library's
    # full check, which also tries the URL with and without the default port.
    if hmac.compare_digest(validator.compute_signature(url, request.form), signature):
        return True
    return validator.validate(url, request.form, signature)
