"""Which message an inbound email is, and what it answers: its normalised Message-IDs, the keys
that tell a new message from a second delivery, and the HD- references in its text."""
from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from callbacks.email.text import clean_text

if TYPE_CHECKING:  # pragma: no cover
    from callbacks.email.parse import ParsedEmail

REFERENCE = re.compile(r"\bHD-(\d{4})-(\d{6})\b", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def normalise_message_id(value: str | None) -> str | None:
    """"<local@Domain>" as "<local@domain>" (the domain is case-insensitive); None if empty.

    A value without angle brackets is taken whole; the first bracketed id wins otherwise.
    """
    if not value:
        return None
    value = clean_text(value).strip()
    match = _MESSAGE_ID.search(value)
    ident = match.group(1) if match else value.strip("<> \t\r\n")
    if not ident or any(ch.isspace() for ch in ident):
        return None
    local, at, domain = ident.rpartition("@")
    return f"<{local}@{domain.lower()}>" if at else f"<{ident}>"


def message_ids(value: str | None) -> tuple[str, ...]:
    """All message ids in an In-Reply-To or References header, normalised, in order."""
    if not value:
        return ()
    found = [normalise_message_id(f"<{m}>") for m in _MESSAGE_ID.findall(clean_text(value))]
    return tuple(dict.fromkeys(m for m in found if m))


def dedupe_key(message_id: str | None, raw: bytes, content: str | None = None) -> str:
    """SHA-256 of the normalised Message-ID, or of the raw bytes when there is none.

    `content` (see `content_fingerprint`) tells apart a different message that reuses a
    Message-ID already stored (some web forms send the same one every time).
    """
    if message_id:
        return hashlib.sha256((message_id + ("\0" + content if content else "")).encode("utf-8")).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def content_fingerprint(parsed: "ParsedEmail") -> str:
    """What makes two deliveries the same message, whatever relays added to their headers on the way,
    and however it came (raw from IMAP, or rebuilt from SendGrid's parsed fields): who, the
    subject and the words of the text, white space aside."""
    parts = (parsed.sender or "", parsed.reply_to or "", " ".join(parsed.subject.split()), " ".join(parsed.text.split()))
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def references_in(text: str) -> list[str]:
    """The HD-YYYY-NNNNNN references in `text`, upper-cased, first occurrence first."""
    return list(dict.fromkeys(f"HD-{year}-{number}" for year, number in REFERENCE.findall(text or "")))
