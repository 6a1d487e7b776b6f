"""Reading an inbound email: what it says, who sent it, what it answers, and what kind it is.

Pure functions over bytes (standard library `email` package, `policy.default`). Mail from
the outside world is often broken, so every step is defensive: an undecodable charset,
a malformed header or a 30 MB body gives a best-effort reading, never an exception. The
raw bytes are stored whole elsewhere; here only a capped text body is extracted.
"""
from __future__ import annotations

import email
import email.policy
import hashlib
import html
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

# Enough text for an agent to read and for references to be found; the raw message keeps the rest.
MAX_TEXT_CHARS = 100_000
MAX_SUBJECT_CHARS = 1_000
# Decode at most this much of one part (UTF-8 needs up to 4 bytes a character).
_MAX_PART_BYTES = MAX_TEXT_CHARS * 4

REFERENCE = re.compile(r"\bHD-(\d{4})-(\d{6})\b", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
# Control characters other than tab and newline (PostgreSQL refuses NUL in text).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Subjects of typical out-of-office and automatic replies (start of the subject only, so that
# "Out of office hours?" in an ordinary question does not match).
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|auto[- ]?response|autoresponse|out of (the )?office"
    r"( reply| autoreply)?|abwesenheitsnotiz|r[ée]ponse automatique)\s*:",
    re.IGNORECASE,
)
_ADDR_SPEC = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster")


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


def clean_text(value: str) -> str:
    """Valid Unicode without control characters (8-bit header bytes become UTF-8 if they are)."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    value = value.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", value)


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


class _TextFromHtml(HTMLParser):
    _BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "hr"}
    _HIDDEN = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_endtag(self, tag):
        if tag in self._HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.pieces.append(data)


def html_to_text(markup: str) -> str:
    """Readable plain text from an HTML body: tags dropped, blocks on their own lines."""
    parser = _TextFromHtml()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # HTMLParser is lenient, but never let a body stop the intake
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = (" ".join(line.split()) for line in "".join(parser.pieces).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --------------------------------------------------------------------------- classifying


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
