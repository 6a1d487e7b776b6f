"""Enquiries and their references (HD-YYYY-NNNNNN)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from helpdesk.clock import LONDON
from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.models import Enquiry, ReferenceCounter

ENQUIRIES = Enquiry.__table__
COUNTERS = ReferenceCounter.__table__

# Built once: a call's first webhook opens its enquiry inside the journal's transaction.
_NEXT_NUMBER = (
    update(COUNTERS).where(COUNTERS.c.year == bindparam("y")).values(last=COUNTERS.c.last + 1).returning(COUNTERS.c.last)
)
_PHONE_ENQUIRY = select(ENQUIRIES.c.id).where(ENQUIRIES.c.call_sid == bindparam("sid"))
_NEW_ENQUIRY = insert(ENQUIRIES).returning(ENQUIRIES.c.id)


def allocate_reference(executor: Session | Connection, year: int) -> str:
    """The next reference for `year`, unique under concurrent transactions.

    The UPDATE takes the counter row's lock, so concurrent allocations queue behind
    each other until the first commits; the year's row is created on its first use.
    """
    last = executor.execute(_NEXT_NUMBER, {"y": year}).scalar()
    if last is None:
        executor.execute(insert_ignoring_conflicts(executor, ReferenceCounter, {"year": year, "last": 0}))
        last = executor.execute(_NEXT_NUMBER, {"y": year}).scalar_one()
    return f"HD-{year}-{last:06d}"


def open_phone_enquiry(connection: Connection, call_sid: str, opened_at: datetime) -> int:
    """The id of the enquiry a call opened, created on the call's first event."""
    existing = connection.execute(_PHONE_ENQUIRY, {"sid": call_sid}).scalar()
    if existing is not None:
        return existing
    reference = allocate_reference(connection, opened_at.astimezone(LONDON).year)
    return connection.execute(
        _NEW_ENQUIRY, {"reference": reference, "channel": "phone", "opened_at": opened_at, "call_sid": call_sid}
    ).scalar_one()
