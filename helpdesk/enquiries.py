"""Enquiries and their references (HD-YYYY-NNNNNN)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.models import Enquiry, ReferenceCounter

LONDON = ZoneInfo("Europe/London")
ENQUIRIES = Enquiry.__table__


def allocate_reference(executor: Session | Connection, year: int) -> str:
    """The next reference for `year`, unique under concurrent transactions.

    The UPDATE takes the counter row's lock, so concurrent allocations queue behind
    each other until the first commits; the INSERT creates the year's row once.
    """
    executor.execute(insert_ignoring_conflicts(executor, ReferenceCounter, {"year": year, "last": 0}))
    last = executor.execute(
        update(ReferenceCounter)
        .where(ReferenceCounter.year == year)
        .values(last=ReferenceCounter.last + 1)
        .returning(ReferenceCounter.last)
    ).scalar_one()
    return f"HD-{year}-{last:06d}"


def open_phone_enquiry(connection: Connection, call_sid: str, opened_at: datetime) -> int:
    """The id of the enquiry a call opened, created on the call's first event.

    Core statements rather than ORM objects: this runs inside the journal's transaction,
    on the webhooks' hot path.
    """
    existing = connection.execute(select(ENQUIRIES.c.id).where(ENQUIRIES.c.call_sid == call_sid)).scalar()
    if existing is not None:
        return existing
    reference = allocate_reference(connection, opened_at.astimezone(LONDON).year)
    return connection.execute(
        insert(ENQUIRIES).returning(ENQUIRIES.c.id),
        {"reference": reference, "channel": "phone", "opened_at": opened_at, "call_sid": call_sid},
    ).scalar_one()
