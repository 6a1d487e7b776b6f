"""What kind an inbound email is: a bounce, an automatic reply, a list's mail, our own, a null
sender (mail that must never be acknowledged), or an ordinary enquiry."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from callbacks.email.parse import ParsedEmail

# Subjects of typical out-of-office and automatic replies (start of the subject only, so that
# "Out of office hours?" in an ordinary question does not match).
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse|out of (the )?office"
    r"( reply| autoreply)?|abwesenheitsnotiz|r[ée]ponse automatique)\s*:",
    re.IGNORECASE,
)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")


def _first_token(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def classify(parsed: ParsedEmail, own_addresses: tuple[str, ...] | list[str] | frozenset[str]) -> str | None:
    """The decision for mail that must never be acknowledged, or None for an ordinary enquiry.

    In order: bounce, auto_reply, list, own_address, null_sender (a bounce from
    MAILER-DAEMON usually has a null sender too; the more telling name wins).
    """
    headers = parsed.headers
    local = (parsed.sender or "").partition("@")[0]
    if parsed.has_delivery_status or headers.get("x-failed-recipients") or local in _BOUNCE_SENDERS:
        return "bounce"
    auto_submitted = [_first_token(v) for v in headers.get("auto-submitted", ())]
    precedence = [_first_token(v) for v in headers.get("precedence", ())]
    if any(v and v != "no" for v in auto_submitted):
        return "auto_reply"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder"):
        if any(_first_token(v) not in ("no", "false", "0") for v in headers.get(name, ())):
            return "auto_reply"
    if "auto_reply" in precedence or _AUTO_REPLY_SUBJECT.match(parsed.subject):
        return "auto_reply"
    if any(p in ("bulk", "list", "junk") for p in precedence) or headers.get("list-id") or headers.get(
        "list-unsubscribe"
    ):
        return "list"
    own = {address.lower() for address in own_addresses}
    if parsed.sender and parsed.sender in own:
        return "own_address"
    if parsed.sender is None or parsed.return_path == "":
        return "null_sender"
    return None
