"""Concurrent webhooks: references stay unique and every event reaches its call's record."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from helpdesk.db import Database
from helpdesk.enquiries import allocate_reference
from helpdesk.models import Call, Enquiry, TwilioEvent
from helpdesk.voice.journal import record_event
from tests.integration.conftest import make_settings

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


def test_references_allocated_by_many_concurrent_transactions_are_unique_and_gapless(migrated_url):
    database = Database(migrated_url)

    def allocate(_):
        with database.session() as session, session.begin():
            return allocate_reference(session, 2026)

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            references = list(pool.map(allocate, range(80)))
    finally:
        database.dispose()
    assert len(set(references)) == 80
    assert sorted(references) == [f"HD-2026-{n:06d}" for n in range(1, 81)]


def test_concurrent_events_for_one_call_all_reach_its_record_and_open_one_enquiry(migrated_url):
    database = Database(migrated_url)
    settings = make_settings()
    call_sid = "CA" + "d" * 32
    events = [("incoming", {"CallSid": call_sid, "From": "+447700900123"})]
    events += [("agent_status", {"CallSid": f"CA{n:032x}", "ParentCallSid": call_sid, "CallStatus": "ringing"})
               for n in range(1, 24)]

    def deliver(item):
        index, (kind, params) = item
        with database.connection() as connection:
            record_event(connection, settings, kind=kind, path=f"/{kind}", params=list(params.items()),
                         received_at=T0 + timedelta(milliseconds=index))

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(deliver, enumerate(events)))
        with database.session() as session:
            call = session.scalars(select(Call).where(Call.call_sid == call_sid)).one()
            enquiries = session.scalars(select(Enquiry)).all()
            journalled = session.scalar(select(func.count()).select_from(TwilioEvent))
    finally:
        database.dispose()
    assert journalled == 24
    assert call.incoming_seen and call.arrived_at == T0
    assert len(enquiries) == 1 and call.enquiry_id == enquiries[0].id
