"""Email enquiries awaiting a response, for the agents' page, and marking one as answered.

An email enquiry waits from its first email until an agent marks it answered (a reply from
the customer reopens it: see callbacks.email.intake). Senders are shown masked.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from callbacks.email.ack_rules import AckState, ack_state, mask_address
from helpdesk.models import EmailAcknowledgement, Enquiry, InboundEmail

log = logging.getLogger(__name__)

SHOWN = 100
# Emails a person wrote (not auto-replies, bounces or lists, which are kept with an enquiry too).
PEOPLE = ("new_enquiry", "joined", "rate_limited")
Ack = EmailAcknowledgement


class EnquiryError(Exception):
    """An action on an email enquiry that cannot be done; the text says why, for the agent."""


class NoSuchEnquiry(EnquiryError):
    """There is no email enquiry with that id."""


@dataclass(frozen=True)
class WaitingEmail:
    enquiry_id: int
    reference: str
    received_at: datetime
    sender: str  # masked: "j***@example.org"
    sender_spoken: str
    acknowledgement: AckState
    acknowledgement_id: int | None
    next_attempt_at: datetime | None
    # Emails joined to it from addresses other than the person's (any sender who quotes the
    # reference joins the enquiry): an agent should check who is asking before acting on them.
    other_senders: int = 0
    # The newest email a person sent to it that the page shows it with: "Mark as answered"
    # sends it back, and is refused if a newer one has come in (unread by the agent).
    latest_email_id: int = 0


def needs_attention(now: datetime):
    """0 for an enquiry whose acknowledgement failed, is retrying or is overdue (an agent may have
    to act: "Try again", or answer by hand); 1 for the others. Sorts them first."""
    return case(((Ack.status == "failed") | ((Ack.status == "pending") & ((Ack.attempts > 0) | (Ack.due_at < now))),
                 0), else_=1)


def open_email_enquiries() -> tuple:
    """The email enquiries awaiting a response (read through the partial index ix_enquiries_open_email)."""
    return Enquiry.channel == "email", Enquiry.status == "open"


def awaiting_response(session: Session, now: datetime, *, limit: int = SHOWN) -> tuple[list[WaitingEmail], int]:
    """Open email enquiries with their acknowledgement's state, those whose acknowledgement needs
    attention first, then oldest first; and how many there are."""
    waiting = open_email_enquiries()
    # The email that opened the enquiry: the first stored with it.
    opening = (select(func.min(InboundEmail.id)).where(InboundEmail.enquiry_id == Enquiry.id)
               .correlate(Enquiry).scalar_subquery())
    with session.begin():
        total = session.scalar(select(func.count(Enquiry.id)).where(*waiting)) or 0
        rows = session.execute(
            select(Enquiry.id, Enquiry.reference, Enquiry.opened_at, Ack.id, Ack.status, Ack.sla_result,
                   Ack.attempts, Ack.due_at, Ack.last_error, Ack.next_attempt_at, Ack.to_address,
                   InboundEmail.sender, InboundEmail.decision)
            .outerjoin(Ack, Ack.enquiry_id == Enquiry.id)
            .outerjoin(InboundEmail, InboundEmail.id == opening)
            .where(*waiting).order_by(needs_attention(now), Enquiry.opened_at, Enquiry.id).limit(limit)
        ).all()
        senders: dict[int, set[str]] = {}
        latest: dict[int, int] = {}
        for enquiry_id, sender, newest in session.execute(
                select(InboundEmail.enquiry_id, func.lower(InboundEmail.sender), func.max(InboundEmail.id))
                .where(InboundEmail.enquiry_id.in_([row[0] for row in rows]), InboundEmail.decision.in_(PEOPLE))
                .group_by(InboundEmail.enquiry_id, func.lower(InboundEmail.sender))):
            senders.setdefault(enquiry_id, set()).add(sender)
            latest[enquiry_id] = max(latest.get(enquiry_id, 0), newest)
    entries = []
    for (enquiry_id, reference, opened_at, ack_id, status, sla, attempts, due_at, last_error, next_attempt_at,
         to_address, sender, decision) in rows:
        # Whom to answer: the Reply-To person a web form wrote for, else the sender.
        shown, spoken = mask_address(to_address or sender)
        state = ack_state(status=status, sla=sla, attempts=attempts or 0, decision=decision, due_at=due_at,
                          now=now, last_error=last_error)
        theirs = {(address or "").lower() for address in (sender, to_address)}
        entries.append(WaitingEmail(enquiry_id, reference, opened_at, shown, spoken, state, ack_id,
                                    next_attempt_at if status == "pending" else None,
                                    len(senders.get(enquiry_id, set()) - theirs - {None}),
                                    latest.get(enquiry_id, 0)))
    return entries, int(total)


# The largest id the form may send back: anything else is not an id this page could have shown.
MAX_ID = 2**31 - 1


def mark_answered(session: Session, enquiry_id: int, *, agent_id: int, now: datetime, seen: int | None) -> str:
    """An agent answered the email enquiry: it is closed and leaves the list. Returns its reference.

    `seen`: the newest email from a person the agent's page showed with it (None: the form did
    not say, or said something no page shows). If a newer one has joined the enquiry since (a
    reply the agent has not read), it stays open and the agent is told. The enquiry is locked
    first, as the intake locks it to join a reply, so a reply being stored is waited for.
    """
    with session.begin():
        found = session.execute(select(Enquiry.reference, Enquiry.status)
                                .where(Enquiry.id == enquiry_id, Enquiry.channel == "email")
                                .with_for_update()).one_or_none()
        if found is None:
            raise NoSuchEnquiry("There is no such email enquiry.")
        reference, status = found
        if status != "open":
            raise EnquiryError(f"{reference} is already marked as answered.")
        if seen is None or not 0 <= seen <= MAX_ID:
            raise EnquiryError(f"Your page was out of date, so {reference} was not marked as answered. Check it "
                               "below, then press the button again.")
        newer = session.scalar(select(InboundEmail.id).where(
            InboundEmail.enquiry_id == enquiry_id, InboundEmail.id > seen, InboundEmail.decision.in_(PEOPLE)).limit(1))
        if newer is not None:
            raise EnquiryError(f"A new email for {reference} came in after your page showed it. Read it, then mark "
                               "the enquiry as answered.")
        session.execute(update(Enquiry).where(Enquiry.id == enquiry_id)
                        .values(status="closed", closed_at=now, closed_by_id=agent_id))
    log.info("email enquiry %d marked answered by user %d", enquiry_id, agent_id)
    return reference
