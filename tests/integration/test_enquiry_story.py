"""Find an enquiry, told as the figures judge it: in time order, with breaches before the sweep records
them, warnings in words, and each note with the step it belongs to (found by a hands-on review of 0.11.0)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from callbacks import service
from callbacks.email.waiting import callback_needed
from callbacks.sweep import sweep
from helpdesk.models import Enquiry, InboundEmail
from tests.integration.conftest import make_settings
from tests.integration.test_callbacks import callbacks, miss_a_call
from tests.integration.test_email_acknowledgements import DESK, raw_email, receive
from tests.integration.test_enquiry_page import as_user, page_text, reference_of
from tests.integration.test_queue_page import add_agent, at
from tests.integration.twilio_requests import sid

EMAIL = dict(smtp={"host": "127.0.0.1", "port": 2525, "security": "none"},
             email={"addresses": [DESK], "ack_within_minutes": 15})


def story(client, db_session, reference: str) -> str:
    return page_text(as_user(client, db_session, "alex", "manager").get(f"/enquiries/{reference}"))


def email_enquiry(database, settings, received) -> tuple[str, int, int]:
    reference = receive(database, settings, raw_email(1, sender="jo.bloggs@example.org"), received).reference
    with database.session() as session:
        enquiry_id = session.scalars(select(Enquiry.id).where(Enquiry.reference == reference)).one()
        seen = session.scalars(select(InboundEmail.id)).one()
    return reference, enquiry_id, seen


@pytest.fixture
def settings():
    return make_settings(**EMAIL)


def test_the_story_never_records_a_breach_before_the_callback_it_is_about_was_owed(app, client, db_session, settings):
    database = app.extensions["helpdesk.db"]
    reference, enquiry_id, seen = email_enquiry(database, settings, at(9, 0))
    agent = add_agent(app, "alice", "Alice Agent")
    # The agent reads the email after its three hours (due 12:00) and records that it needs a call.
    with database.session() as session:
        callback_needed(session, settings, enquiry_id, agent_id=agent, now=at(13, 0), seen=seen,
                        number="07700 900123", note="Wants a call")
    with database.session() as session:
        sweep(session, settings, at(13, 1))
    text = story(client, db_session, reference)
    assert "Breach recorded" in text and "Callback owed" in text
    steps = text[text.index("What happened, in time order"):]
    assert steps.index("Callback owed") < steps.index("Breach recorded")


def test_warnings_are_named_in_words_whatever_their_lead_time(app, client, db_session, clock):
    settings = make_settings(callback={"warn_before_minutes": [60, 15]})
    miss_a_call(client, clock, 1)
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, callback.due_at - timedelta(minutes=59))
    text = story(client, db_session, reference_of(db_session, sid(1)))
    assert "warning_60" not in text
    assert "Warning: 1 hour left" in text


def test_a_callback_past_its_deadline_untouched_reads_breached_as_the_figures_count_it(app, client, db_session, clock):
    miss_a_call(client, clock, 1)
    [callback] = callbacks(db_session)
    clock.now = callback.due_at + timedelta(hours=1)  # the scheduler has not swept yet
    text = story(client, db_session, reference_of(db_session, sid(1)))
    assert "(missed call – caller hung up): Breached" in text


def test_an_acknowledgement_past_its_due_time_reads_as_a_breach(app, client, db_session, clock, settings):
    database = app.extensions["helpdesk.db"]
    reference, _, _ = email_enquiry(database, settings, at(9, 0))
    clock.now = at(11, 0)  # due 09:15, never sent (the mail server is down)
    text = story(client, db_session, reference)
    assert "Emails acknowledged within 15 minutes: Not sent yet" not in text


def test_the_enquiry_does_not_say_a_callback_is_owed_once_it_was_resolved(app, client, db_session, settings):
    database = app.extensions["helpdesk.db"]
    reference, enquiry_id, seen = email_enquiry(database, settings, at(9, 0))
    agent = add_agent(app, "alice", "Alice Agent")
    with database.session() as session:
        callback = callback_needed(session, settings, enquiry_id, agent_id=agent, now=at(9, 10), seen=seen,
                                   number="07700 900123", note="Wants a call")
    with database.session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agent, source="manual",
                            started_at=at(9, 30), outcome="reached", now=at(9, 31))
    with database.session() as session:
        service.close(session, callback_id=callback.id, agent_id=agent, outcome="resolved", now=at(9, 32))
    text = story(client, db_session, reference)
    assert "Callback closed" in text
    assert "Now Callback owed" not in text


def test_a_closing_note_is_not_shown_as_the_callbacks_opening_note(app, client, db_session, clock, settings):
    miss_a_call(client, clock, 1)
    agent = add_agent(app, "alice", "Alice Agent")
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        service.close(session, callback_id=callback.id, agent_id=agent, outcome="withdrawn",
                      now=clock.now + timedelta(minutes=5), note="Caller rang back and was helped")
    text = story(client, db_session, reference_of(db_session, sid(1)))
    steps = text[text.index("What happened, in time order"):]
    owed, closed = steps.index("Callback owed"), steps.index("Callback closed")
    assert "Caller rang back and was helped" not in steps[owed:closed]


def test_who_recorded_the_callback_and_each_marking_as_answered_are_in_the_story(app, client, db_session, settings):
    from callbacks.email.waiting import mark_answered

    database = app.extensions["helpdesk.db"]
    reference, enquiry_id, seen = email_enquiry(database, settings, at(9, 0))
    agent = add_agent(app, "alice", "Alice Agent")
    with database.session() as session:
        mark_answered(session, enquiry_id, agent_id=agent, now=at(9, 5), seen=seen)
    # Jo writes again; answered again, then found to need a call after all.
    receive(database, settings, raw_email(2, subject=f"Re: {reference}"), at(9, 20))
    with database.session() as session:
        latest = session.scalars(select(InboundEmail.id).order_by(InboundEmail.id.desc())).first()
    with database.session() as session:
        mark_answered(session, enquiry_id, agent_id=agent, now=at(9, 25), seen=latest)
    receive(database, settings, raw_email(3, subject=f"Re: {reference}"), at(9, 40))
    with database.session() as session:
        latest = session.scalars(select(InboundEmail.id).order_by(InboundEmail.id.desc())).first()
    with database.session() as session:
        callback_needed(session, settings, enquiry_id, agent_id=agent, now=at(9, 45), seen=latest,
                        number="07700 900123", note="Wants a call")
    text = story(client, db_session, reference)
    assert text.count("Marked as answered By alice (audit log).") == 2  # both, not only the last
    assert "Callback needed recorded By alice (audit log)." in text


@pytest.mark.parametrize(("endpoint", "phones", "says"), [
    ("client:agent-1", {"alice": "client:agent-1", "bob": "client:agent-2"}, "Taken by Alice A (client:agent-1)."),
    ("client:Agent-1", {"alice": "client:agent-1"}, "Taken by Alice A (client:Agent-1)."),
    ("client:agent-1", {"alice": "client:agent-1", "bob": "client:agent-1"},
     "Taken on client:agent-1, the phone of Alice A or Bob A."),
    ("+447700900001", {"alice": "client:agent-1"}, "Taken on •••••••• 001."),
    ("+447700900001", {"alice": "+447700900001"}, "Taken by Alice A (•••••••• 001)."),
    # A Twilio Client identity names the user of that username (phones are numbers only).
    ("client:alice", {"alice": "+447700900001"}, "Taken by Alice A (client:alice)."),
    ("client:Bob", {"alice": None, "bob": None}, "Taken by Bob A (client:Bob)."),
    ("client:carol", {"alice": None}, "Taken on client:carol."),
    # A number inside a SIP address is masked as any other.
    ("sip:+447700900123@pbx.example.org", {"alice": None}, "Taken on sip:•••••••• 123@pbx.example.org."),
])
def test_the_story_says_who_took_an_answered_call_from_the_phone_its_agent_leg_rang(
        app, client, db_session, clock, endpoint, phones, says):
    from tests.integration.compliance_data import add_call

    for username, phone in phones.items():
        add_agent(app, username, f"{username.capitalize()} A", phone=phone)
    with db_session.begin():
        call = add_call(db_session, clock.now - timedelta(minutes=10), answer_seconds=7.5)
        enquiry = Enquiry(reference="HD-2026-000777", channel="phone", opened_at=call.arrived_at,
                          call_sid=call.call_sid)
        db_session.add(enquiry)
        db_session.flush()
        call.enquiry_id, call.agent = enquiry.id, endpoint
    text = page_text(as_user(client, db_session, "mia", "manager").get("/enquiries/HD-2026-000777"))
    assert f"Answered by an agent After 7.5 seconds, on ring 3. {says}" in text
