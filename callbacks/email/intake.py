"""Storing an inbound email and deciding what it is: a new enquiry, a reply, or mail not to answer.

`store_inbound` is the one way in for SendGrid and IMAP alike. It flushes; the caller
commits, so a message and whatever records its reading (an IMAP read position) are
committed together or not at all.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from callbacks.email.ack_rules import LOST_IN_RESTORE
from callbacks.email.parse import ParsedEmail, classify, content_fingerprint, dedupe_key, parse, references_in
from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.enquiries import LONDON, allocate_reference
from helpdesk.models import EmailAcknowledgement, Enquiry, InboundEmail
from helpdesk.restore import MAIL_MARGIN, lost_in_restore, windows
from helpdesk.settings import Settings

log = logging.getLogger(__name__)
SOURCES = ("sendgrid", "imap")
# Column limits (helpdesk/models/email.py): longer values are not stored in the column.
_MESSAGE_ID_MAX = 500
_ADDRESS_MAX = 320


@dataclass(frozen=True)
class IntakeResult:
    """What happened to one delivery. For a duplicate, the stored message's result."""

    inbound_email_id: int
    enquiry_id: int | None
    reference: str | None
    decision: str
    duplicate: bool
    acknowledgement_owed: bool  # the message has an acknowledgement row to send (or sent), not suppressed


def store_inbound(
    session: Session,
    raw: bytes,
    *,
    source: str,
    received_at: datetime,
    settings: Settings,
    source_ref: str | None = None,
) -> IntakeResult:
    """Store `raw` as received and open, join or ignore an enquiry for it.

    A second delivery of the same message (same dedupe key) stores nothing and returns the
    first one's result with duplicate=True; two concurrent deliveries are settled by the
    unique dedupe key (INSERT ... ON CONFLICT DO NOTHING), so only one opens an enquiry.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown email source {source!r}")
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    parsed = parse(raw)
    if parsed.sender and len(parsed.sender) > _ADDRESS_MAX:
        parsed = replace(parsed, sender=None)  # not an address anyone can be answered at
    key = dedupe_key(parsed.message_id, raw)
    if parsed.message_id and not _same_message(session, key, parsed):
        # Another message with that Message-ID is stored: this one is new, not a redelivery.
        key = dedupe_key(parsed.message_id, raw, content_fingerprint(parsed))
    existing = _existing(session, key)
    if existing is not None:
        return existing

    kind = classify(parsed, settings.email.addresses)
    joined = _enquiry_answered(session, parsed)
    if kind is None:
        decision = "joined" if joined is not None else "new_enquiry"
    else:
        decision = kind
    values = {
        "received_at": received_at,
        "source": source,
        "dedupe_key": key,
        "message_id": parsed.message_id if parsed.message_id and len(parsed.message_id) <= _MESSAGE_ID_MAX else None,
        "raw": raw,
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
        "sender": parsed.sender,
        "subject": parsed.subject,
        "decision": decision,
        "enquiry_id": joined.id if joined is not None else None,
        "source_ref": source_ref,
    }
    inserted = session.execute(
        insert_ignoring_conflicts(session, InboundEmail, values).returning(InboundEmail.id)
    ).scalar_one_or_none()
    if inserted is None:  # another delivery of it was stored between our look and our insert
        if not _same_message(session, key, parsed):  # or another message with its Message-ID: look again
            return store_inbound(session, raw, source=source, received_at=received_at, settings=settings,
                                 source_ref=source_ref)
        existing = _existing(session, key)
        assert existing is not None, "dedupe conflict without a stored row"
        return existing

    if joined is not None:
        if decision == "joined":
            # Locked and read again: an agent marking it answered at this moment is waited for
            # (and then it is reopened), or waits for this reply and is told of it.
            session.refresh(joined, with_for_update=True)
        if decision == "joined" and (joined.status == "closed" or joined.closed_at is not None
                                     or (joined.channel == "email" and joined.status == "callback_owed")):
            # The customer wrote again about an enquiry an agent had closed, or given a callback
            # (which stays owed): it needs an answer, so it is back among those awaiting one.
            joined.closed_at, joined.closed_by_id, joined.status = None, None, "open"
        session.flush()
        log.info("Email %s (%s): %s, enquiry %s", inserted, source, decision, joined.reference)
        return IntakeResult(inserted, joined.id, joined.reference, decision, False, False)
    if decision not in ("new_enquiry",):
        session.flush()
        log.info("Email %s (%s): %s, not acknowledged", inserted, source, decision)
        return IntakeResult(inserted, None, None, decision, False, False)

    enquiry = _open_enquiry(session, received_at)
    session.execute(update(InboundEmail).where(InboundEmail.id == inserted).values(enquiry_id=enquiry.id))
    to_address = _acknowledge_to(parsed, settings)
    # Received while a restored database was lost (helpdesk.restore), and read again from the
    # mailbox now: it may well have been acknowledged then, so it is not again.
    again = lost_in_restore(windows(session, MAIL_MARGIN), received_at)
    suppressed = again or _over_sender_limit(session, parsed.sender or "", to_address, received_at, settings)
    if suppressed and not again:
        decision = "rate_limited"
        session.execute(update(InboundEmail).where(InboundEmail.id == inserted).values(decision=decision))
    session.add(EmailAcknowledgement(
        enquiry_id=enquiry.id,
        inbound_email_id=inserted,
        to_address=to_address,
        received_at=received_at,
        due_at=received_at + timedelta(minutes=settings.email.ack_within_minutes),
        status="suppressed" if suppressed else "pending",
        attempts=0,
        next_attempt_at=None if suppressed else received_at,
        last_error=LOST_IN_RESTORE if again else None,
    ))
    session.flush()
    log.info("Email %s (%s): %s, enquiry %s", inserted, source, decision, enquiry.reference)
    return IntakeResult(inserted, enquiry.id, enquiry.reference, decision, False, not suppressed)


def _same_message(session: Session, key: str, parsed: ParsedEmail) -> bool:
    """Whether the message stored under `key` (if any) is this one: True when none is stored."""
    stored = session.scalar(select(InboundEmail.raw).where(InboundEmail.dedupe_key == key))
    return stored is None or content_fingerprint(parse(stored)) == content_fingerprint(parsed)


def _existing(session: Session, key: str) -> IntakeResult | None:
    row = session.execute(
        select(InboundEmail.id, InboundEmail.enquiry_id, InboundEmail.decision, Enquiry.reference)
        .outerjoin(Enquiry, Enquiry.id == InboundEmail.enquiry_id)
        .where(InboundEmail.dedupe_key == key)
    ).one_or_none()
    if row is None:
        return None
    owed = session.scalar(
        select(func.count(EmailAcknowledgement.id)).where(
            EmailAcknowledgement.inbound_email_id == row.id, EmailAcknowledgement.status != "suppressed"
        )
    )
    log.info("Email %s delivered again: stored once, nothing new", row.id)
    return IntakeResult(row.id, row.enquiry_id, row.reference, row.decision, True, bool(owed))


def _enquiry_answered(session: Session, parsed: ParsedEmail) -> Enquiry | None:
    """The email enquiry this message belongs to: threaded to one of ours, or quoting its reference.

    Threading first (In-Reply-To, then References newest first), then a reference in the
    subject, then in the body. Only email enquiries are joined: a phone reference quoted in
    an email opens a new email enquiry, which is acknowledged and shown to agents.
    """
    thread = list(dict.fromkeys(parsed.in_reply_to + tuple(reversed(parsed.references))))
    thread = [m for m in thread if len(m) <= _MESSAGE_ID_MAX][:50]
    if thread:
        by_id: dict[str, int] = {}
        for message_id, enquiry_id in session.execute(
            select(InboundEmail.message_id, InboundEmail.enquiry_id).where(
                InboundEmail.message_id.in_(thread), InboundEmail.enquiry_id.is_not(None)
            )
        ):
            by_id.setdefault(message_id, enquiry_id)
        for message_id, enquiry_id in session.execute(
            select(EmailAcknowledgement.message_id, EmailAcknowledgement.enquiry_id).where(
                EmailAcknowledgement.message_id.in_(thread)
            )
        ):
            by_id.setdefault(message_id, enquiry_id)
        # An email whose personal data was removed (helpdesk/retention.py) has no Message-ID left,
        # but its dedupe key is still the digest of it.
        digests = {dedupe_key(message_id, b""): message_id for message_id in thread if message_id not in by_id}
        if digests:
            for key, enquiry_id in session.execute(
                select(InboundEmail.dedupe_key, InboundEmail.enquiry_id).where(
                    InboundEmail.dedupe_key.in_(digests), InboundEmail.enquiry_id.is_not(None)
                )
            ):
                by_id.setdefault(digests[key], enquiry_id)
        for message_id in thread:
            if message_id in by_id:
                enquiry = session.get(Enquiry, by_id[message_id])
                if enquiry is not None and enquiry.channel == "email":
                    return enquiry
    for reference in references_in(parsed.subject) + references_in(parsed.text):
        enquiry = session.scalar(select(Enquiry).where(Enquiry.reference == reference, Enquiry.channel == "email"))
        if enquiry is not None:
            return enquiry
    return None


def _open_enquiry(session: Session, received_at: datetime) -> Enquiry:
    year = received_at.astimezone(LONDON).year
    enquiry = Enquiry(reference=allocate_reference(session, year), channel="email", opened_at=received_at,
                      status="open")
    session.add(enquiry)
    session.flush()
    return enquiry


def _acknowledge_to(parsed: ParsedEmail, settings: Settings) -> str:
    """Reply-To when it names someone else than us (web forms send from a no-reply address), else From."""
    own = set(settings.email.addresses)
    if parsed.reply_to and parsed.reply_to not in own and len(parsed.reply_to) <= _ADDRESS_MAX:
        return parsed.reply_to
    assert parsed.sender is not None  # classify() gave null_sender otherwise
    return parsed.sender


def _like_literal(text: str) -> str:
    """`text` matched as itself in a LIKE pattern (escape character backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _at_unlimited_domain(address: str, settings: Settings) -> bool:
    domain = address.rpartition("@")[2].lower()
    return any(domain == d or domain.endswith("." + d) for d in settings.email.unlimited_domains)


def _over_sender_limit(session: Session, sender: str, to_address: str, received_at: datetime,
                       settings: Settings) -> bool:
    # DWP, say: every one of their emails is an enquiry to acknowledge. Only when it comes from
    # there and the acknowledgement goes there: a Reply-To naming a DWP officer on anybody's mail
    # must not let the desk flood that officer's inbox.
    if _at_unlimited_domain(sender, settings) and _at_unlimited_domain(to_address, settings):
        return False
    window_start = received_at - timedelta(minutes=settings.email.per_sender_window_minutes)
    # One mailbox, however it is written: any case, and any "+tag" (victim+1@, victim+2@... all
    # reach victim@ at most providers), so the guard cannot be walked round to mail-bomb someone.
    local, _, domain = to_address.lower().rpartition("@")
    base = local.split("+", 1)[0]
    address = func.lower(EmailAcknowledgement.to_address)
    same_mailbox = (address == f"{base}@{domain}") | address.like(
        f"{_like_literal(base)}+%@{_like_literal(domain)}", escape="\\")
    owed = session.scalar(
        select(func.count(EmailAcknowledgement.id)).where(
            same_mailbox,
            EmailAcknowledgement.status != "suppressed",
            EmailAcknowledgement.received_at > window_start,
            EmailAcknowledgement.received_at <= received_at,
        )
    )
    return (owed or 0) >= settings.email.per_sender_limit
