"""The rules for what a user may be given: a username, a password, a phone for "Call back now",
an email address for links to choose a password, a role and a display name (helpdesk/users.py stores them). Pure functions: each returns the value
as stored, or raises UserError saying what to change."""
from __future__ import annotations

import re

from zxcvbn import zxcvbn

from helpdesk.config_email import EMAIL_ADDRESS
from helpdesk.models.user import ROLES
from helpdesk.phones import SIP_ADDRESS_LENGTH, international, sip_address

MIN_PASSWORD_LENGTH = 12
# Longer passwords only make hashing slower; no one types more than this.
MAX_PASSWORD_LENGTH = 1024
# zxcvbn's work grows with the length; past this a password is long enough not to need it.
ZXCVBN_LENGTH = 100
USERNAME = re.compile(r"^[a-z0-9._-]{3,64}\Z")


class UserError(ValueError):
    """A request about a user that cannot be carried out; the message says why."""


def normalise_username(username: str) -> str:
    return (username or "").strip().lower()


def check_username(username: str) -> str:
    """The username as stored, or UserError if it breaks the rules."""
    name = normalise_username(username)
    if not USERNAME.match(name):
        raise UserError(
            f"username {username!r} is not allowed: use 3 to 64 letters, digits, dots, hyphens or underscores"
        )
    return name


# A password that is one run of characters over and over ("weak1weak1weak1", "passwordpassword").
_REPEATED = re.compile(r"(.+?)\1+", re.S)


def check_password(password: str, username: str = "") -> None:
    """UserError if the password is too short or long, or easy to guess: only spaces (the sign-in
    form could never take it), the same characters over and over ("aaaaaaaaaaaa", "abcabcabcabc"),
    the username in it, or easy to guess by zxcvbn's measure (a common password, a keyboard run)."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password is too long: use at most {MAX_PASSWORD_LENGTH} characters")
    if not is_text(password):
        raise UserError("the password is not valid text (UTF-8): type it again")
    if not password.strip():
        raise UserError("the password is only spaces: use words or characters that can be typed at sign-in")
    if _REPEATED.fullmatch(password.casefold()):
        raise UserError("the password is the same characters over and over, which is easy to guess: "
                        "use several unrelated words")
    name = normalise_username(username)
    if name and name.casefold() in password.casefold():
        raise UserError("the password has the username in it, which is easy to guess: use something else")
    # zxcvbn knows the common passwords of published breaches, words and names, keyboard runs,
    # dates and the usual substitutions ("Password123!", "qwertyuiop12"), as a deny-list
    # (NCSC's and NIST 800-63B's advice) and more: score 3 is "safely unguessable" online.
    judged = zxcvbn(password[:ZXCVBN_LENGTH], user_inputs=[name, "helpdesk"] if name else ["helpdesk"])
    if judged["score"] < 3:
        why = (judged["feedback"].get("warning") or "").rstrip(".")
        raise UserError(f"the password is too easy to guess{f' ({why.lower()})' if why else ''}: "
                        "use several unrelated words")


def is_text(value: str) -> bool:
    # Bytes that are not UTF-8 reach us from a terminal or the environment as lone surrogates.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


PHONE_EXAMPLES = "for example 07700 900123, +447700900123 or sip:1001@pbx.example.org"


def check_phone(phone: str | None) -> str | None:
    """An agent's phone for "Call back now": a number in international format, a SIP address (a
    desk phone on the provider's own phone system), or none."""
    phone = (phone or "").strip() or None
    if phone is None:
        return None
    if phone.lower().startswith("client:"):
        raise UserError("a Twilio Client identity is not a phone to give: client:USERNAME is each user's "
                        f"already. Give a phone number or a desk phone's SIP address, {PHONE_EXAMPLES}")
    if phone.lower().startswith("sip"):
        address = sip_address(phone, longest=None)
        if address is None:
            raise UserError("the SIP address must be sip:, the extension or name, @ and the phone system's "
                            "address, for example sip:1001@pbx.example.org")
        if len(address) > SIP_ADDRESS_LENGTH:
            raise UserError(f"the SIP address is too long: at most {SIP_ADDRESS_LENGTH} characters")
        return address
    number = international(phone)
    if number is None:
        raise UserError("the phone must be a UK number, a number in international format or a desk phone's "
                        f"SIP address, {PHONE_EXAMPLES}")
    return number


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"role {role!r} does not exist: choose one of {', '.join(ROLES)}")
    return role


def check_display_name(display_name: str | None) -> str:
    display_name = (display_name or "").strip()
    if len(display_name) > 128:
        raise UserError("the display name is too long: use at most 128 characters")
    if not display_name.isprintable() or not is_text(display_name):
        raise UserError("the display name has a line break or a control character: use letters, spaces and "
                        "punctuation")
    return display_name


LONGEST_EMAIL = 254  # the most an address can hold (RFC 5321's path, less its brackets)


def check_email(email: str | None) -> str | None:
    """A user's email address, for links to choose a password, as stored (lower case); or none."""
    email = (email or "").strip()
    if not email:
        return None
    if len(email) > LONGEST_EMAIL:
        raise UserError(f"the email address is too long: an address has at most {LONGEST_EMAIL} characters")
    if not email.isprintable() or not is_text(email) or not EMAIL_ADDRESS.match(email) or any(
            ch in email for ch in '<>"(),;:[]\\'):
        raise UserError("the email address is not one: write it as name@example.org")
    return email.lower()
