"""Reading an inbound email: what it says, who sent it, what it answers, and what kind it is.

Pure functions over bytes (standard library `email` package, `policy.default`). Mail from
the outside world is often broken, so every step is defensive: an undecodable charset,
a malformed header or a 30 MB body gives a best-effort reading, never an exception. The
raw bytes are stored whole elsewhere; here only a capped text body is extracted.
"""
from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr

from callbacks.email.classify import classify
from callbacks.email.identity import (REFERENCE, content_fingerprint, dedupe_key, message_ids, normalise_message_id,
                                      references_in)
from callbacks.email.text import clean_text, html_to_text

# Also for those who import them from here.
__all__ = ["MAX_SUBJECT_CHARS", "MAX_TEXT_CHARS", "REFERENCE", "ParsedEmail", "classify", "clean_text",
           "content_fingerprint", "dedupe_key", "html_to_text", "message_ids", "normalise_message_id", "parse",
           "references_in"]

# Enough text for an agent to read and for references to be found; the raw message keeps the rest.
MAX_TEXT_CHARS = 100_000
MAX_SUBJECT_CHARS = 1_000
# Decode at most this much of one part (UTF-8 needs up to 4 bytes a character).
_MAX_PART_BYTES = MAX_TEXT_CHARS * 4

_ADDR_SPEC = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@dataclass(frozen=True)
class ParsedEmail:
    """What the intake needs from a message. Text is cleaned for storage (no NUL, valid Unicode)."""

    subject: str = ""
    sender: str | None = None  # the From address, lower-cased; None when there is none
    reply_to: str | None = None  # the first Reply-To address, lower-cased
    return_path: str | None = None  # None: no Return-Path header; "" for the null sender <>
    message_id: str | None = None  # normalised "<local@domain>"
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    text: str = ""  # the body as plain text, at most MAX_TEXT_CHARS
    text_truncated: bool = False
    attachments: int = 0
    content_type: str = "text/plain"
    # Headers that decide the kind of message, lower-case names, values cleaned and stripped.
    headers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    has_delivery_status: bool = False
    defects: int = 0


# --------------------------------------------------------------------------- parsing


def parse(raw: bytes) -> ParsedEmail:
    """Read `raw` (RFC 5322 bytes). Never raises for bad mail; the worst case is an empty reading."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # the parser is meant to be lenient; be sure of it
        return ParsedEmail()
    text, truncated = _body_text(message)
    from_addresses = _addresses(message, "from")
    reply_to = _addresses(message, "reply-to")
    return_path = _header(message, "return-path")
    return ParsedEmail(
        subject=_header(message, "subject")[:MAX_SUBJECT_CHARS],
        sender=from_addresses[0] if from_addresses else None,
        reply_to=reply_to[0] if reply_to else None,
        return_path=None if message.get("return-path") is None else _return_path(return_path),
        message_id=normalise_message_id(_header(message, "message-id")),
        in_reply_to=message_ids(_header(message, "in-reply-to")),
        references=message_ids(_header(message, "references")),
        text=text,
        text_truncated=truncated,
        attachments=_count_attachments(message),
        content_type=_safe(message.get_content_type, "text/plain"),
        headers={name: _all(message, name) for name in _DECIDING_HEADERS},
        has_delivery_status=_has_delivery_status(message),
        defects=len(getattr(message, "defects", ())),
    )


_DECIDING_HEADERS = (
    "auto-submitted", "x-autoreply", "x-autorespond", "x-autoresponder", "precedence",
    "list-id", "list-unsubscribe", "x-failed-recipients", "content-type",
)


def _safe(call, default):
    try:
        return call()
    except Exception:
        return default


def _raw_values(message: Message, name: str) -> list[str]:
    # The header as it was written, for when policy.default's structured parsing gives up.
    return [value for key, value in message.raw_items() if key.lower() == name]


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _all(message: Message, name: str) -> tuple[str, ...]:
    values = _safe(lambda: [str(v) for v in message.get_all(name) or ()], None)
    if values is None:
        values = [_decode_words(v) for v in _raw_values(message, name)]
    return tuple(" ".join(clean_text(v).split()) for v in values)


def _header(message: Message, name: str) -> str:
    values = _all(message, name)
    return values[0] if values else ""


def _addresses(message: Message, name: str) -> list[str]:
    """Addresses in the header `name`, lower-cased; only ones with a local part and a domain."""
    found: list[str] = []
    try:
        for header in message.get_all(name) or ():
            for address in getattr(header, "addresses", ()):
                found.append(address.addr_spec)
    except Exception:
        found = [addr for _, addr in getaddresses([_decode_words(v) for v in _raw_values(message, name)])]
    if not found:
        # Structured parsing may find nothing in a malformed header; the classic parser may.
        found = [addr for _, addr in getaddresses(_raw_values(message, name))]
    cleaned = _valid_addresses(found)
    if not cleaned:
        # Last resort for a header beyond repair (e.g. an unbalanced quote): the first thing
        # shaped like an address, so a person's enquiry is not mistaken for a null sender.
        cleaned = _valid_addresses(m.group(0) for v in _raw_values(message, name) for m in [_ADDR_SPEC.search(v)] if m)
    return cleaned


def _valid_addresses(candidates) -> list[str]:
    cleaned = []
    for address in candidates:
        address = clean_text(address).strip().strip("<>").lower()
        local, at, domain = address.rpartition("@")
        if at and local and "." in domain and not any(ch.isspace() or ch in '<>"' for ch in address):
            cleaned.append(address)
    return cleaned


def _return_path(value: str) -> str:
    _, address = parseaddr(value)
    return address.strip().lower()


def _count_attachments(message: Message) -> int:
    count = 0
    for part in _safe(lambda: list(message.walk()), []):
        if _safe(part.is_multipart, False):
            continue
        disposition = _safe(part.get_content_disposition, None)
        if disposition == "attachment" or (disposition == "inline" and part.get_filename()):
            count += 1
        elif _safe(part.get_content_maintype, "text") not in ("text", "message"):
            count += 1
    return count


def _has_delivery_status(message: Message) -> bool:
    for part in _safe(lambda: list(message.walk()), []):
        kind = _safe(part.get_content_type, "")
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            return True
        if kind == "multipart/report" and (part.get_param("report-type") or "").lower() in (
            "delivery-status", "global-delivery-status"
        ):
            return True
    return False


def _decoded_payload(part: Message) -> tuple[str, bool]:
    """The part's text (at most _MAX_PART_BYTES of it), and whether some was left out."""
    payload = _safe(lambda: part.get_payload(decode=True), None)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload() or "").encode("utf-8", "surrogateescape")
    cut = len(payload) > _MAX_PART_BYTES
    payload = payload[:_MAX_PART_BYTES]
    charset = _safe(part.get_content_charset, None) or "utf-8"
    try:
        text = payload.decode(charset, "replace")
    except (LookupError, TypeError, ValueError):  # unknown or unusable charset name
        text = payload.decode("utf-8", "replace")
    return clean_text(text), cut


def _body_part(message: Message) -> Message | None:
    if isinstance(message, EmailMessage):
        body = _safe(lambda: message.get_body(preferencelist=("plain", "html")), None)
        if body is not None:
            return body
    # No body by the rules (e.g. a broken multipart): the first text part that is not an attachment.
    for part in _safe(lambda: list(message.walk()), []):
        if _safe(part.get_content_maintype, "") == "text" and _safe(part.get_content_disposition, None) != "attachment":
            return part
    return None


def _body_text(message: Message) -> tuple[str, bool]:
    part = _body_part(message)
    if part is None:
        return "", False
    text, cut = _decoded_payload(part)
    if _safe(part.get_content_subtype, "plain") == "html":
        text = html_to_text(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return text[:MAX_TEXT_CHARS], cut or len(text) > MAX_TEXT_CHARS
