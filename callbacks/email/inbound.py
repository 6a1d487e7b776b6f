"""SendGrid Inbound Parse: `POST /email/inbound`, in raw and in parsed mode.

Authentication: SendGrid cannot sign Inbound Parse posts, so the URL carries a secret as
the HTTP Basic password, https://inbound:SECRET@host/email/inbound. SECRET is the
environment's SENDGRID_INBOUND_SECRET (at least 16 characters); without it nothing is accepted.

The answer is 2xx only once the message is committed. A database failure answers 503, so
SendGrid keeps the message and posts it again (for up to three days); a redelivery is
recognised by its dedupe key and stored once. A post that can never be stored (bad form
data, too large) gets a 4xx with the reason.

Form fields are read as bytes (not decoded as UTF-8), so a raw message in an 8-bit
charset is stored exactly as SendGrid sent it.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass
from email.message import MIMEPart
from email.policy import SMTP

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from callbacks.email.intake import store_inbound
from callbacks.email.parse import clean_text
from callbacks.email.receipt import sendgrid_received_at
from helpdesk.web import clock, database, settings

log = logging.getLogger(__name__)
bp = Blueprint("email", __name__, url_prefix="/email")

# SendGrid refuses messages over 30 MB; allow for the form encoding around one.
MAX_POST_BYTES = 40 * 1024 * 1024
MAX_FORM_PARTS = 1_000
MIN_SECRET_LENGTH = 16
# Headers that describe the original body; parsed mode rebuilds the body, so they are replaced.
_BODY_HEADERS = {"content-type", "content-transfer-encoding", "mime-version", "content-length"}
_CHARSET = re.compile(r"^[A-Za-z0-9._:+-]{1,40}\Z")
_CONTENT_ID = re.compile(r"^<?[^\s<>]{1,200}>?\Z")
_ENVELOPE_ADDRESS = re.compile(r"^[^\s<>]{0,320}\Z")


class BadPost(ValueError):
    """The post cannot be read as an Inbound Parse request; the message says why."""


@dataclass(frozen=True)
class Part:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None


@bp.before_request
def authenticate():
    request.max_content_length = MAX_POST_BYTES  # before anything reads the body
    secret = current_app.config.get("SENDGRID_INBOUND_SECRET") or ""
    if len(secret) < MIN_SECRET_LENGTH:
        log.error("SendGrid post refused: SENDGRID_INBOUND_SECRET is not set (or under %d characters)",
                  MIN_SECRET_LENGTH)
        return _plain("Inbound email is not configured on this server.", 403)
    given = request.authorization
    if given is None or given.type != "basic":
        response = _plain("Authentication is required: put the secret in the URL as the password.", 401)
        response.headers["WWW-Authenticate"] = 'Basic realm="inbound email"'
        return response
    if not hmac.compare_digest((given.password or "").encode("utf-8"), secret.encode("utf-8")):
        log.warning("SendGrid post refused: the secret does not match")
        return _plain("The secret does not match.", 403)
    return None


@bp.post("/inbound")
def inbound():
    """Store one posted email; answer 200 with what the intake decided."""
    try:
        parts = read_multipart(request.stream, request.content_type or "")
        fields = {part.name: part for part in parts if part.filename is None}
        # Raw mode's message is a plain field; take it as an upload too, should it come as one.
        message = next((part for part in parts if part.name == "email"), None)
        mode = "raw" if message is not None else "parsed"
        raw = message.data if message is not None else rebuild_message(parts)
        if not raw.strip():
            raise BadPost("The email field is empty.")
        raw = with_return_path(raw, _envelope_sender(fields))
    except RequestEntityTooLarge:
        return _plain(f"The post is larger than {MAX_POST_BYTES // (1024 * 1024)} MB, or has more than "
                      f"{MAX_FORM_PARTS:,} parts.", 413)
    except BadPost as problem:
        return _plain(str(problem), 400)
    try:
        with database().session() as session, session.begin():
            # From SendGrid's own stamp: a post stored on SendGrid's retry still counts from the receipt.
            received_at = sendgrid_received_at(raw, clock())
            result = store_inbound(session, raw, source="sendgrid", received_at=received_at, settings=settings())
    except Exception:
        # SendGrid keeps the message and posts it again on a 5xx: nothing is lost.
        log.exception("STORING FAILED for an inbound email (%s mode, %d bytes); SendGrid will retry", mode, len(raw))
        return _plain("The message could not be stored; please try again.", 503)
    return jsonify(stored=True, duplicate=result.duplicate, decision=result.decision, reference=result.reference)


def _plain(text: str, status: int) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")


# --------------------------------------------------------------------------- reading the form


def read_multipart(stream, content_type: str) -> list[Part]:
    """Every part of a multipart/form-data body, its data as bytes."""
    mimetype, options = parse_options_header(content_type)
    if mimetype != "multipart/form-data" or not options.get("boundary"):
        raise BadPost("Expected multipart/form-data, as SendGrid Inbound Parse posts.")
    decoder = MultipartDecoder(options["boundary"].encode("latin-1"), max_parts=MAX_FORM_PARTS)
    parts: list[Part] = []
    current: Field | File | None = None
    chunks: list[bytes] = []
    finished = False
    try:
        while not finished:
            data = stream.read(64 * 1024)
            decoder.receive_data(data or None)
            event = decoder.next_event()
            while not isinstance(event, NeedData):
                if isinstance(event, Epilogue):
                    finished = True
                    break
                if isinstance(event, (Field, File)):
                    current, chunks = event, []
                elif isinstance(event, Data) and current is not None:
                    chunks.append(event.data)
                    if not event.more_data:
                        filename = current.filename if isinstance(current, File) else None
                        parts.append(Part(current.name, b"".join(chunks), filename,
                                          current.headers.get("content-type")))
                event = decoder.next_event()
            if not data and not finished:
                raise BadPost("The form data ends before its closing boundary.")
    except ValueError as error:
        if isinstance(error, BadPost):
            raise
        raise BadPost(f"The form data cannot be read: {error}.") from None
    return parts


def _json_field(fields: dict[str, Part], name: str):
    if name not in fields:
        return None
    try:
        return json.loads(fields[name].data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadPost(f"The {name} field is not valid JSON.") from None


def _envelope_sender(fields: dict[str, Part]) -> str | None:
    envelope = _json_field(fields, "envelope")
    if envelope is None:
        return None
    if not isinstance(envelope, dict):
        raise BadPost("The envelope field is not a JSON object.")
    sender = envelope.get("from")
    if sender is None:
        return ""
    if not isinstance(sender, str) or not _ENVELOPE_ADDRESS.match(sender):
        raise BadPost("The envelope's from is not an address.")
    return sender


def _header_block_end(raw: bytes) -> int:
    match = re.search(rb"\r?\n\r?\n", raw)
    return match.start() if match else len(raw)


def with_return_path(raw: bytes, envelope_sender: str | None) -> bytes:
    """`raw` with a Return-Path line from the SMTP envelope, as a delivering mail server adds.

    Only when the message has none; the envelope's empty sender (bounces) becomes "<>".
    """
    if envelope_sender is None or re.search(rb"(?im)^return-path:", raw[:_header_block_end(raw)]):
        return raw
    return b"Return-Path: <" + envelope_sender.encode("utf-8") + b">\r\n" + raw


# --------------------------------------------------------------------------- parsed mode


def rebuild_message(parts: list[Part]) -> bytes:
    """One RFC 5322 message from a parsed-mode post, so everything downstream reads one format.

    Kept: every posted header line (`headers`), in order, as posted, except Content-Type,
    Content-Transfer-Encoding, MIME-Version and Content-Length, which describe the original
    body and are replaced by ones describing the rebuilt body; the `text` and `html` bodies
    byte for byte, labelled with their charsets from `charsets` (multipart/alternative when
    both are there); every uploaded attachment byte for byte, with the filename, type and
    Content-ID from `attachment-info` (or the upload's own), in multipart/mixed.
    Not kept: the original MIME tree beyond that (nesting, transfer encodings, other text
    parts) and SendGrid's own fields (dkim, SPF, spam_score, spam_report, sender_ip, to, from,
    cc, subject: the last four repeat the headers).
    """
    fields = {part.name: part for part in parts if part.filename is None}
    if "headers" not in fields:
        raise BadPost("Neither an email field (raw mode) nor a headers field (parsed mode) was posted.")
    charsets = _json_field(fields, "charsets") or {}
    info = _json_field(fields, "attachment-info") or {}
    if not isinstance(charsets, dict) or not isinstance(info, dict):
        raise BadPost("The charsets and attachment-info fields must be JSON objects.")
    header_lines = _kept_headers(fields["headers"].data)

    bodies = []
    for subtype in ("plain", "html"):
        name = "text" if subtype == "plain" else "html"
        if name in fields:
            bodies.append(_part(fields[name].data, "text", subtype, charset=_charset(charsets.get(name))))
    if not bodies:
        bodies.append(_part(b"", "text", "plain", charset="utf-8"))
    body = bodies[0]
    if len(bodies) == 2:
        body = MIMEPart(policy=SMTP)
        body.make_alternative()
        for part in bodies:
            body.attach(part)
    uploads = [part for part in parts if part.filename is not None or part.name.startswith("attachment")]
    uploads = [part for part in uploads if part.name not in ("attachments", "attachment-info")]
    if uploads:
        mixed = MIMEPart(policy=SMTP)
        mixed.make_mixed()
        mixed.attach(body)
        for upload in sorted(uploads, key=lambda part: _attachment_number(part.name)):
            described = info.get(upload.name)  # SendGrid's description of it: an object, if anything
            mixed.attach(_attachment(upload, described if isinstance(described, dict) else {}))
        body = mixed
    return header_lines + b"MIME-Version: 1.0\r\n" + body.as_bytes(policy=SMTP)


def _kept_headers(block: bytes) -> bytes:
    block = block.replace(b"\r\n", b"\n").strip(b"\n")
    kept: list[bytes] = []
    keep = True
    for line in block.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a folded continuation line
            if keep and kept:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("latin-1")
        keep = b":" in line and name not in _BODY_HEADERS
        if keep:
            kept.append(line)
    if not kept:
        raise BadPost("The headers field holds no header lines.")
    return b"".join(line + b"\r\n" for line in kept)


def _charset(value) -> str:
    if isinstance(value, str) and _CHARSET.match(value):
        return value.lower()
    return "utf-8"  # SendGrid's default; parse() copes if the bytes say otherwise


def _part(data: bytes, maintype: str, subtype: str, *, charset: str | None = None, **options) -> MIMEPart:
    part = MIMEPart(policy=SMTP)
    part.set_content(data, maintype, subtype, cte="base64", **options)
    if charset:
        part.set_param("charset", charset)
    return part


def _attachment_number(name: str) -> tuple[int, str]:
    digits = re.sub(r"[^0-9]", "", name)[:18]  # "attachment12": its number, for the order
    return (int(digits) if digits else 0, name)


def _attachment(upload: Part, info: dict) -> MIMEPart:
    declared = info.get("type") if isinstance(info.get("type"), str) else upload.content_type
    maintype, _, subtype = (declared or "application/octet-stream").partition("/")
    if not re.match(r"^[\w.+-]+$", maintype) or not re.match(r"^[\w.+-]+$", subtype):
        maintype, subtype = "application", "octet-stream"
    filename = info.get("filename") if isinstance(info.get("filename"), str) else upload.filename
    filename = " ".join(clean_text(filename or upload.name).split())[:200] or "attachment"
    content_id = info.get("content-id") if isinstance(info.get("content-id"), str) else None
    if content_id and not _CONTENT_ID.match(content_id):
        content_id = None
    return _part(upload.data, maintype, subtype, disposition="inline" if content_id else "attachment",
                 filename=filename, cid=f"<{content_id.strip('<>')}>" if content_id else None)
