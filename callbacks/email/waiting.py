"""Email enquiries awaiting a response, for the agents' page: marking one as answered, or
recording that it needs a call back.

An email enquiry waits from its first email until an agent marks it answered or records that a
callback is needed (a reply from the customer reopens it: see callbacks.email.intake). Senders
are shown masked.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from callbacks.email.ack_rules import AckState, ack_state, mask_address
from callbacks.owed import about, dialable, owe_needed_callback, record_audit
from helpdesk.models import Callback, EmailAcknowledgement, Enquiry, InboundEmail
from helpdesk.phones import REMOVED
from helpdesk.settings import Settings

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
    # A callback owed for it is still open (the customer wrote again after "Callback needed").
    callback_owed: bool = False


def callback_key(reference: str) -> str:
    """The contact key of the callback an email enquiry is given (one at most)."""
    return f"email:{reference}"


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
        owed: set[int] = set()
        # With none shown, neither is asked: SQLite answered "IN (nothing)" by reading every open
        # callback, 2.6 ms at each poll of the agents' page with 5,000 of them. The callbacks are
        # looked up by their keys (unique, indexed), not read among the open ones.
        if rows:
            for enquiry_id, sender, newest in session.execute(
                    select(InboundEmail.enquiry_id, func.lower(InboundEmail.sender), func.max(InboundEmail.id))
                    .where(InboundEmail.enquiry_id.in_([row[0] for row in rows]), InboundEmail.decision.in_(PEOPLE))
                    .group_by(InboundEmail.enquiry_id, func.lower(InboundEmail.sender))):
                senders.setdefault(enquiry_id, set()).add(sender)
                latest[enquiry_id] = max(latest.get(enquiry_id, 0), newest)
            keys = {callback_key(row[1]): row[0] for row in rows}
            owed = {keys[key] for key in session.scalars(select(Callback.contact_key).where(
                Callback.contact_key.in_(keys), Callback.status == "open"))}
    entries = []
    for (enquiry_id, reference, opened_at, ack_id, status, sla, attempts, due_at, last_error, next_attempt_at,
         to_address, sender, decision) in rows:
        # Whom to answer: the Reply-To person a web form wrote for, else the sender; once those were
        # removed (the retention period), whoever has written since.
        known = sorted(senders.get(enquiry_id, set()) - {None, REMOVED})
        who = to_address or sender
        if who == REMOVED and known:
            who = known[0]
        shown, spoken = mask_address(who)
        state = ack_state(status=status, sla=sla, attempts=attempts or 0, decision=decision, due_at=due_at,
                          now=now, last_error=last_error)
        theirs = {(address or "").lower() for address in (sender, to_address, who)}
        entries.append(WaitingEmail(enquiry_id, reference, opened_at, shown, spoken, state, ack_id,
                                    next_attempt_at if status == "pending" else None,
                                    len(senders.get(enquiry_id, set()) - theirs - {None, REMOVED}),
                                    latest.get(enquiry_id, 0), enquiry_id in owed))
    return entries, int(total)


# In the audit log each time an agent marks an email enquiry answered.
MARKED_ANSWERED = "enquiry.marked_answered"
# The largest id the form may send back: anything else is not an id this page could have shown.
MAX_ID = 2**31 - 1


def _lock_open(session: Session, enquiry_id: int, seen: int | None, done: str, next_step: str) -> Enquiry:
    """The open email enquiry, locked (as the intake locks it to join a reply, so a reply being
    stored is waited for), once the agent's page is known to have shown its newest email."""
    enquiry = session.scalars(select(Enquiry).where(Enquiry.id == enquiry_id, Enquiry.channel == "email")
                              .with_for_update()).one_or_none()
    if enquiry is None:
        raise NoSuchEnquiry("There is no such email enquiry.")
    reference = enquiry.reference
    if enquiry.status == "callback_owed":
        raise EnquiryError(f"A callback is already owed for {reference}: see the callbacks above.")
    if enquiry.status != "open":
        raise EnquiryError(f"{reference} is already marked as answered.")
    if seen is None or not 0 <= seen <= MAX_ID:
        raise EnquiryError(f"Your page was out of date, so {reference} was not {done}. Check it below, then press "
                           "the button again.")
    newer = session.scalar(select(InboundEmail.id).where(
        InboundEmail.enquiry_id == enquiry_id, InboundEmail.id > seen, InboundEmail.decision.in_(PEOPLE)).limit(1))
    if newer is not None:
        raise EnquiryError(f"A new email for {reference} came in after your page showed it. Read it, then "
                           f"{next_step}.")
    return enquiry


def callback_needed(session: Session, settings: Settings, enquiry_id: int, *, agent_id: int, now: datetime,
                    seen: int | None, number: str, note: str) -> Callback:
    """An agent says the email enquiry cannot be concluded by email: a callback is owed, from when
    the newest email the agent read was received, by the three-hour rule (DESIGN: the clock starts
    at the email's receipt). Once per enquiry; the enquiry leaves the list until the customer
    writes again."""
    with session.begin():
        enquiry = _lock_open(session, enquiry_id, seen, "given a callback", "record the callback")
        dial = dialable(number)
        if dial is None:
            raise EnquiryError("Give the number to call back, for example 07700 900123 or +447700900123: an email "
                               "has none.")
        note = about(note)
        key = callback_key(enquiry.reference)
        existing = session.scalars(select(Callback).where(Callback.contact_key == key)).one_or_none()
        if existing is not None and existing.status == "open":
            raise EnquiryError(f"A callback is already owed for {enquiry.reference}: see the callbacks above.")
        if existing is not None:
            raise EnquiryError(f"{enquiry.reference} has had its callback already (closed as {existing.outcome}): "
                               "answer the customer by email, then mark the enquiry as answered.")
        owed_from = session.scalar(select(func.max(InboundEmail.received_at)).where(
            InboundEmail.enquiry_id == enquiry_id, InboundEmail.decision.in_(PEOPLE))) or enquiry.opened_at
        callback = owe_needed_callback(session, settings, enquiry, key=key, call_sid=None, reason="email",
                                       number=dial, caller_type="unknown", owed_from=owed_from, agent_id=agent_id,
                                       now=now, note=note)
    log.info("email enquiry %d needs a callback (callback %d), recorded by user %d", enquiry_id, callback.id, agent_id)
    return callback


def mark_answered(session: Session, enquiry_id: int, *, agent_id: int, now: datetime, seen: int | None) -> str:
    """An agent answered the email enquiry: it is closed and leaves the list. Returns its reference.

    `seen`: the newest email from a person the agent's page showed with it (None: the form did
    not say, or said something no page shows). If a newer one has joined the enquiry since (a
    reply the agent has not read), it stays open and the agent is told. The enquiry is locked
    first, as the intake locks it to join a reply, so a reply being stored is waited for.
    """
    with session.begin():
        enquiry = _lock_open(session, enquiry_id, seen, "marked as answered", "mark the enquiry as answered")
        reference = enquiry.reference
        session.execute(update(Enquiry).where(Enquiry.id == enquiry_id)
                        .values(status="closed", closed_at=now, closed_by_id=agent_id))
        # closed_at is the latest answer only: a reply reopens the enquiry, and the next overwrites it.
        record_audit(session, agent_id, now, MARKED_ANSWERED, {"enquiry": reference})
    log.info("email enquiry %d marked answered by user %d", enquiry_id, agent_id)
    return reference
