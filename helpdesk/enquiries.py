"""Enquiries and their references (HD-YYYY-NNNNNN)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.models import Enquiry, ReferenceCounter

LONDON = ZoneInfo("Europe/London")


def allocate_reference(session: Session, year: int) -> str:
    """The next reference for `year`, unique under concurrent transactions.

    The UPDATE takes the counter row's lock, so concurrent allocations queue behind
    each other until the first commits; the INSERT creates the year's row once.
    """
    session.execute(insert_ignoring_conflicts(session, ReferenceCounter, {"year": year, "last": 0}))
    last = session.execute(
        update(ReferenceCounter)
        .where(ReferenceCounter.year == year)
        .values(last=ReferenceCounter.last + 1)
        .returning(ReferenceCounter.last)
    ).scalar_one()
    return f"HD-{year}-{last:06d}"


def open_phone_enquiry(session: Session, call_sid: str, opened_at: datetime) -> Enquiry:
    """The enquiry a call opened, created on the call's first event."""
    existing = session.scalar(select(Enquiry).where(Enquiry.call_sid == call_sid))
    if existing is not None:
        return existing
    year = opened_at.astimezone(LONDON).year
    enquiry = Enquiry(
        reference=allocate_reference(session, year), channel="phone", opened_at=opened_at, call_sid=call_sid
    )
    session.add(enquiry)
    session.flush()
    return enquiry
