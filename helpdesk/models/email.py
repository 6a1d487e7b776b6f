"""Inbound emails (as received, append-only), their acknowledgements, and IMAP read positions."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from helpdesk.models.base import Base, UTCDateTime

class InboundEmail(Base):
    """One email message as it reached us (SendGrid or IMAP). Never changed after it is stored."""

    __tablename__ = "inbound_emails"
    __table_args__ = (Index("ix_inbound_emails_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # When we received it: the acknowledgement clock starts here.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))  # sendgrid, imap
    # A redelivery of the same message has the same key: SHA-256 of the normalised
    # Message-ID, or of the raw bytes when there is no Message-ID.
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(500), index=True)
    # The message exactly as received (RFC 5322 bytes).
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    # The sender's address, lower-cased; None for a null sender or an unparseable From.
    sender: Mapped[str | None] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    # What the intake decided: new_enquiry, joined (a reply to an enquiry: no second acknowledgement),
    # rate_limited, or what email.parse.classify calls it (auto_reply, bounce, list, own_address,
    # null_sender). The README's "What happens to each message" says when each applies.
    decision: Mapped[str] = mapped_column(String(16))
    enquiry_id: Mapped[int | None] = mapped_column(ForeignKey("enquiries.id"), index=True)
    # For IMAP: "<mailbox id>/<UIDVALIDITY>/<UID>", for finding it in the mailbox again.
    source_ref: Mapped[str | None] = mapped_column(String(300))

    enquiry = relationship("Enquiry")


class EmailAcknowledgement(Base):
    """The one automatic acknowledgement an email enquiry is owed, and how sending it went."""

    __tablename__ = "email_acknowledgements"
    __table_args__ = (Index("ix_email_acknowledgements_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    enquiry_id: Mapped[int] = mapped_column(ForeignKey("enquiries.id"), unique=True)
    inbound_email_id: Mapped[int] = mapped_column(ForeignKey("inbound_emails.id"))
    to_address: Mapped[str] = mapped_column(String(320))
    # The clock: from the email's receipt to due_at (received_at + email.ack_within_minutes).
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # pending (to send or retry), sent, failed (gave up after the last retry), suppressed
    # (not sent on purpose, e.g. the per-sender limit; not counted for the rule).
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while a sender holds the message, so two schedulers never send it twice.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Our acknowledgement's Message-ID: replies to it thread back to the enquiry.
    message_id: Mapped[str | None] = mapped_column(String(500), index=True)
    # met (sent at or before due_at) or late; None until sent.
    sla_result: Mapped[str | None] = mapped_column(String(8))

    enquiry = relationship("Enquiry")
    inbound_email = relationship("InboundEmail")


class ImapMailboxState(Base):
    """How far the poller has read a mailbox: nothing read twice or missed across restarts."""

    __tablename__ = "imap_mailbox_states"

    # "<user>@<host>:<port>/<mailbox>"
    mailbox: Mapped[str] = mapped_column(String(300), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
