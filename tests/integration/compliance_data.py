"""Stored records for the compliance, /metrics and Service levels tests: calls, callbacks
and email acknowledgements as the projection, the callback service and the email sender
leave them (their SLA results already decided)."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from helpdesk.models import Call, Callback, EmailAcknowledgement, Enquiry, InboundEmail

_numbers = itertools.count(1)


def _enquiry(session: Session, channel: str, at: datetime) -> Enquiry:
    n = next(_numbers)
    enquiry = Enquiry(reference=f"HD-2026-{n:06d}", channel=channel, opened_at=at)
    session.add(enquiry)
    session.flush()
    return enquiry


def add_call(session: Session, arrived_at: datetime, *, outcome: str = "answered", answer_seconds: float | None = None,
             countable: bool = True, sla_result: str | None = None, caller_type: str = "customer",
             in_hours: bool = True) -> Call:
    """A finished call. `sla_result` defaults to what the answer time says for a 30 s target."""
    if sla_result is None and countable:
        sla_result = "met" if answer_seconds is not None and answer_seconds <= 30 else "breached"
    n = next(_numbers)
    call = Call(call_sid=f"CA{n:032d}", arrived_at=arrived_at, outcome=outcome, in_hours=in_hours,
                countable=countable, sla_result=sla_result if countable else None, caller_type=caller_type,
                answer_seconds=answer_seconds,
                answered_at=arrived_at + timedelta(seconds=answer_seconds) if answer_seconds is not None else None,
                rings=int(answer_seconds // 3) + 1 if answer_seconds is not None else None)
    session.add(call)
    return call


def add_callback(session: Session, owed_from: datetime, *, result: str | None, due_in: timedelta = timedelta(hours=3),
                 status: str | None = None, claimed_by_id: int | None = None, clock: str = "elapsed") -> Callback:
    """A callback owed from `owed_from`; `result` "met", "breached" or None (undecided)."""
    enquiry = _enquiry(session, "phone", owed_from)
    callback = Callback(
        contact_key=f"call:CB{enquiry.id}", enquiry_id=enquiry.id, reason="abandoned", caller_type="customer",
        owed_from=owed_from, due_at=owed_from + due_in, clock=clock, explanation="{}", config_version="test",
        created_at=owed_from, status=status or ("open" if result is None else "closed"), sla_result=result,
        claimed_by_id=claimed_by_id,
        first_attempt_at=owed_from + timedelta(minutes=20) if result == "met" else None,
        attempts_count=1 if result == "met" else 0)
    session.add(callback)
    return callback


def add_email(session: Session, received_at: datetime, *, status: str = "sent", result: str | None = "met",
              within: timedelta = timedelta(minutes=15)) -> EmailAcknowledgement:
    """An inbound email and its acknowledgement: sent ("met"/"late"), pending, failed or suppressed."""
    enquiry = _enquiry(session, "email", received_at)
    email = InboundEmail(received_at=received_at, source="sendgrid", dedupe_key=f"{enquiry.id:064d}",
                         message_id=f"<m{enquiry.id}@example.org>", raw=b"Subject: test\r\n\r\nbody",
                         raw_sha256="0" * 64, sender="someone@example.org", subject="test",
                         decision="new_enquiry", enquiry_id=enquiry.id)
    session.add(email)
    session.flush()
    sent_at = None
    if status == "sent":
        sent_at = received_at + (within - timedelta(minutes=1) if result == "met" else within + timedelta(minutes=5))
    ack = EmailAcknowledgement(enquiry_id=enquiry.id, inbound_email_id=email.id, to_address="someone@example.org",
                               received_at=received_at, due_at=received_at + within, status=status,
                               sent_at=sent_at, sla_result=result if status == "sent" else None)
    session.add(ack)
    return ack
