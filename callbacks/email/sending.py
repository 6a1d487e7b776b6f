"""Sending the acknowledgements that are due: each one once, retried with back-off when sending fails.

Each acknowledgement is claimed in its own transaction before it is sent (`claimed_at` set only
where it was unclaimed, or where a claim went stale), so two schedulers never send the same
one; the message goes out with no transaction open, and the outcome is written afterwards,
which also gives the claim back. Never sent for an email that did not open an enquiry, nor to
one of the help desk's own addresses: such a row is marked "suppressed" instead.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from callbacks.email.ack import acknowledgement_message
from callbacks.email.ack_rules import AFTER_RESTORE, CLAIM_STALE_AFTER, AfterFailure, after_failure, sla_result
from callbacks.smtp import MailError, MessageSender, ascii_domain, from_address, short_error
from helpdesk.models import EmailAcknowledgement, Enquiry, InboundEmail
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

# Per run (every 15 s): enough for a burst, short enough to finish well within the lease
# even against a slow server (200 at 0.5 s each is 100 s; the lease is 120 s by default).
BATCH = 200
# Enough of the stored message for its headers (References, at the top); bodies can be megabytes.
HEADER_BYTES = 64 * 1024

Ack = EmailAcknowledgement


class AcknowledgementError(Exception):
    """A request about an acknowledgement that cannot be met; the text says why, for the agent."""


class NoSuchAcknowledgement(AcknowledgementError):
    """There is no acknowledgement with that id."""


@dataclass
class SendReport:
    """What one run did."""

    sent: int = 0
    retrying: int = 0  # failed this time, tried again later
    gave_up: int = 0  # failed for the last time: status "failed"
    suppressed: int = 0  # not ours to send (guards)
    skipped: bool = False  # no mail server or From address configured: nothing was tried


_said_not_configured: set[str] = set()


def send_due_acknowledgements(db: Session, sender: MessageSender, settings: Settings, now: datetime, *,
                              limit: int = BATCH, clock: Callable[[], datetime] | None = None) -> SendReport:
    """Send up to `limit` acknowledgements whose next attempt is due at `now`, oldest first.

    `clock` stamps `sent_at` when the server accepted the message (default: `now`), so a slow
    server's delay counts against the acknowledgement's due time.
    """
    report = SendReport()
    sending_from = from_address(settings)
    missing = "smtp.host" if not settings.smtp.host else "smtp.from_address" if not sending_from else None
    if missing:
        report.skipped = True
        if missing not in _said_not_configured:
            _said_not_configured.add(missing)
            log.warning("%s is not set in %s: email acknowledgements are not being sent", missing, settings.source)
        return report
    tick = clock or (lambda: now)

    def claimable(at: datetime):
        return (Ack.status == "pending", Ack.next_attempt_at <= now,
                or_(Ack.claimed_at.is_(None), Ack.claimed_at < at - CLAIM_STALE_AFTER))

    with db.begin():
        due = list(db.scalars(select(Ack.id).where(*claimable(now)).order_by(Ack.next_attempt_at, Ack.id)
                              .limit(limit)))
    for ack_id in due:
        # Stamped with the time of the claim, not the run's start: a run against a slow server
        # can outlast CLAIM_STALE_AFTER, and a claim stamped at its start would look stale to
        # another sender while this one was still sending it.
        claimed_at = tick()
        with db.begin():
            claimed = db.execute(update(Ack).where(Ack.id == ack_id, *claimable(claimed_at))
                                 .values(claimed_at=claimed_at)).rowcount
        if not claimed:
            continue  # another sender has it, or it was sent meanwhile
        outcome = _send_one(db, sender, settings, ack_id, sending_from, now, tick)
        setattr(report, outcome, getattr(report, outcome) + 1)
    if report.sent:
        # The mail server takes messages again: those waiting out a back-off go at the next run.
        with db.begin():
            released = db.execute(update(Ack).where(Ack.status == "pending", Ack.attempts > 0, Ack.next_attempt_at > now)
                                  .values(next_attempt_at=now)).rowcount
        if released:
            log.info("acknowledgements: a send succeeded, so %d waiting to retry will be tried at once", released)
    if due:
        log.info("acknowledgements: %d sent, %d to retry, %d failed for good, %d suppressed",
                 report.sent, report.retrying, report.gave_up, report.suppressed)
    return report


def _send_one(db: Session, sender: MessageSender, settings: Settings, ack_id: int, sending_from: str,
              now: datetime, clock: Callable[[], datetime]) -> str:
    """Send one claimed acknowledgement and record how it went; returns the SendReport field to count."""
    with db.begin():
        ack, decision, original_id, head, subject, reference = db.execute(
            select(Ack, InboundEmail.decision, InboundEmail.message_id, func.substr(InboundEmail.raw, 1, HEADER_BYTES),
                   InboundEmail.subject, Enquiry.reference)
            .join(InboundEmail, InboundEmail.id == Ack.inbound_email_id)
            .join(Enquiry, Enquiry.id == Ack.enquiry_id)
            .where(Ack.id == ack_id)).one()
        attempts, due_at, to_address = ack.attempts, ack.due_at, ack.to_address
    reason = _not_to_send(decision, to_address, settings)
    if reason:
        with db.begin():
            db.execute(update(Ack).where(Ack.id == ack_id).values(
                status="suppressed", next_attempt_at=None, claimed_at=None, last_error=reason))
        log.warning("acknowledgement %d not sent: %s", ack_id, reason)
        return "suppressed"
    try:
        message = acknowledgement_message(
            enquiry_reference=reference, original_subject=subject or "", original_message_id=original_id,
            original_references=_header(head, "References"), to_address=ascii_domain(to_address),
            from_address=sending_from,
            settings=settings, now=now, message_id_domain=sending_from.rpartition("@")[2].lower())
        sender.send_message(message)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, record it and give the claim back
        error = str(exc) if isinstance(exc, MailError) else f"{type(exc).__name__} while sending"
        permanent = isinstance(exc, MailError) and exc.permanent
        return _record_failure(db, settings, ack_id, attempts + 1, short_error(error), now, due_at, permanent)
    sent_at = clock()
    with db.begin():
        db.execute(update(Ack).where(Ack.id == ack_id).values(
            status="sent", sent_at=sent_at, message_id=message["Message-ID"], attempts=attempts + 1,
            sla_result=sla_result(sent_at, due_at), next_attempt_at=None, claimed_at=None))
    log.info("acknowledgement %d sent for %s (%s)", ack_id, reference, sla_result(sent_at, due_at))
    return "sent"


def _record_failure(db: Session, settings: Settings, ack_id: int, attempts: int, error: str, now: datetime,
                    due_at: datetime, permanent: bool = False) -> str:
    """A refusal for good (a 5xx reply) fails at once: agents see it now, not after hours of retries."""
    if permanent:
        then = AfterFailure("failed", None)
    else:
        then = after_failure(attempts, max_attempts=settings.email.max_send_attempts,
                             spacing_minutes=settings.email.retry_spacing_minutes, now=now, due_at=due_at)
    with db.begin():
        db.execute(update(Ack).where(Ack.id == ack_id).values(
            status=then.status, attempts=attempts, last_error=error, next_attempt_at=then.next_attempt_at,
            claimed_at=None))
    if then.status == "failed":
        log.error("acknowledgement %d failed after %d attempts; agents can try again from the queue page: %s",
                  ack_id, attempts, error)
        return "gave_up"
    log.warning("acknowledgement %d: attempt %d failed, next at %s: %s",
                ack_id, attempts, then.next_attempt_at.isoformat(), error)
    return "retrying"


def _not_to_send(decision: str, to_address: str, settings: Settings) -> str | None:
    """Why this row must not be sent (a guard behind the intake's own decision), or None."""
    if decision != "new_enquiry":
        return f"the email's decision is {decision}, not new_enquiry"
    if to_address.strip().lower() in settings.email.addresses:
        return "the address is one of the help desk's own"
    return None


def _header(head: bytes | None, name: str) -> str | None:
    """One header of the stored message, unfolded; None when absent or unreadable."""
    if not head:
        return None
    headers = BytesHeaderParser(policy=compat32).parsebytes(bytes(head))
    value = headers.get(name)
    return None if value is None else " ".join(str(value).split())


def retry_acknowledgement(db: Session, ack_id: int, now: datetime) -> str:
    """An agent's "Try again" for a failed acknowledgement, or one waiting to retry, or "Send it" for
    one not sent after a restore: due at once.

    The attempts so far are kept, so a retry that fails again is marked failed at once and
    shown to the agents again rather than starting a new series of automatic retries.
    Returns the enquiry reference; raises AcknowledgementError if the acknowledgement has not failed.
    """
    with db.begin():
        reference = db.scalar(select(Enquiry.reference).join(Ack, Ack.enquiry_id == Enquiry.id)
                              .where(Ack.id == ack_id))
        if reference is None:
            raise NoSuchAcknowledgement("There is no such acknowledgement.")
        # Failed for good, or waiting out a back-off (tried again now, not later), or not sent
        # after a restore (the agent knows the customer never had one).
        retryable = ((Ack.status == "failed") | ((Ack.status == "pending") & (Ack.attempts > 0))
                     | ((Ack.status == "suppressed") & Ack.last_error.in_(AFTER_RESTORE)))
        changed = db.execute(update(Ack).where(Ack.id == ack_id, retryable).values(
            status="pending", next_attempt_at=now, claimed_at=None)).rowcount
        if not changed:
            raise AcknowledgementError(f"The acknowledgement for {reference} has not failed, so there is nothing to retry.")
    log.info("acknowledgement %d: sending again on request", ack_id)
    return reference
