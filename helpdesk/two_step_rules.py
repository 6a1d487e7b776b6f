"""The rules of two-step sign-in: a code from an authenticator app (TOTP, RFC 6238), or a
recovery code for when the app is lost.

Pure functions: `now` is passed in. pyotp computes the codes, as every authenticator app does
(30-second steps, 6 digits, HMAC-SHA1: the only kind every app takes).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

import pyotp

STEP_SECONDS = 30
DIGITS = 6
# A code is taken for the step before and after the present one too: a phone's clock a little
# out, or a code typed as it changed. Each step's code is taken once only (`last_step`).
STEPS_EITHER_SIDE = 1
RECOVERY_CODES = 10
# Recovery codes: 12 characters from 32 (60 bits), grouped in fours; no 0/O or 1/I to misread.
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_RECOVERY_LENGTH = 12
_APP_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")  # not \d: that takes any script's digits
# What a code may be typed as: anything longer is not a code at all.
LONGEST_CODE = 40


def new_secret() -> str:
    """A new key for the app: 160 random bits in base32, as RFC 4226 recommends."""
    return pyotp.random_base32(32)


def setup_uri(secret: str, username: str, issuer: str) -> str:
    """The otpauth:// address a QR code carries to the app: the desk's name and the username
    label the entry there."""
    # A colon separates the issuer from the name in the entry's label: pyotp refuses one in either.
    return pyotp.TOTP(secret).provisioning_uri(name=username.replace(":", " "), issuer_name=issuer.replace(":", " "))


def grouped(secret: str) -> str:
    """The key in fours, for typing into an app that cannot scan the QR code."""
    return " ".join(secret[start:start + 4] for start in range(0, len(secret), 4))


def step_at(now: datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def app_code_step(secret: str, typed: str, now: datetime, last_step: int | None) -> int | None:
    """The step whose code `typed` is (the present one, or one either side), or None: not the
    code, or a step at or before `last_step`, whose code was taken already (so a code seen over a
    shoulder cannot be used again)."""
    code = clean(typed)
    if not _APP_CODE.fullmatch(code):
        return None
    app = pyotp.TOTP(secret)
    present = step_at(now)
    for step in range(present - STEPS_EITHER_SIDE, present + STEPS_EITHER_SIDE + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(app.generate_otp(step), code):
            return step
    return None


def app_code(secret: str, now: datetime) -> str:
    """The app's code at `now` (for the tests and the demo, which play the app)."""
    return pyotp.TOTP(secret).generate_otp(step_at(now))


def clean(typed: str | None) -> str:
    """What was typed, without the spaces and hyphens people put in codes, in capitals."""
    return re.sub(r"[\s-]", "", (typed or "")[:LONGEST_CODE]).upper()


def looks_like_app_code(typed: str | None) -> bool:
    return bool(_APP_CODE.fullmatch(clean(typed)))


def new_recovery_codes(count: int = RECOVERY_CODES) -> list[str]:
    """Codes for signing in once each without the app, as they are shown: XXXX-XXXX-XXXX."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[start:start + 4] for start in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def recovery_digest(typed: str) -> str:
    """What is stored of a recovery code (and looked up for one typed): a SHA-256 of it without
    its hyphens. 60 random bits cannot be found from the digest by trying them."""
    return hashlib.sha256(clean(typed).encode("ascii", "replace")).hexdigest()

