"""One enquiry's story for managers and auditors: found by its reference, told in time order."""
from __future__ import annotations

import html
from datetime import timedelta

import pytest
from sqlalchemy import select

from callbacks import service
from helpdesk.models import Callback, Enquiry
from tests.integration.test_callbacks import callbacks, miss_a_call
from tests.integration.test_queue_page import add_agent, words
from tests.integration.test_users_and_login import make_user, sign_in
from tests.integration.twilio_requests import inbound, post, sid


def page_text(response) -> str:
    """The page's words as a screen reader reads them: without the headings of the steps' cards."""
    return html.unescape(words(response.get_data(as_text=True)))


def reference_of(db_session, call_sid: str) -> str:
    db_session.expire_all()
    reference = db_session.scalars(select(Enquiry.reference).where(Enquiry.call_sid == call_sid)).one()
    db_session.rollback()
    return reference


@pytest.fixture
def tried(app, client, db_session, clock, settings):
    """A missed call whose callback an agent tried in time, reaching the caller, with a note."""
    miss_a_call(client, clock, 1, caller="+447700900123")
    agent = add_agent(app, "alice", "Alice Agent")
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agent, source="manual",
                            started_at=clock.now + timedelta(minutes=20), outcome="reached",
                            now=clock.now + timedelta(minutes=21), note="Rang about the grant letter")
    return reference_of(db_session, sid(1))


def as_user(client, db_session, username: str, role: str):
    make_user(db_session, username, role)
    sign_in(client, username)
    return client


def test_an_enquirys_page_tells_what_happened_in_time_order_with_numbers_masked(client, db_session, tried):
    response = as_user(client, db_session, "alex", "manager").get(f"/enquiries/{tried}")
    assert response.status_code == 200
    text = page_text(response)
    steps = [what for what in ("Call arrived", "Call ended", "Callback owed: Missed call – caller hung up",
                               "Callback attempt") if what in text]
    assert steps == ["Call arrived", "Call ended", "Callback owed: Missed call – caller hung up", "Callback attempt"]
    assert [text.index(step) for step in steps] == sorted(text.index(step) for step in steps)
    assert "Reached the caller; by Alice Agent, entered by hand." in text
    # The caller hung up after 40 seconds, past ten rings: breached; called back in time: met.
    assert "Calls answered within 10 rings: Breached" in text
    assert "Callbacks within 3 hours (missed call – caller hung up): Met" in text
    assert "+447700900123" not in text and "•••••••• 123" in text
    assert "Note: Rang about the grant letter" in text  # a manager sees agents' notes


def test_an_auditor_sees_the_story_without_agents_notes(client, db_session, tried):
    text = page_text(as_user(client, db_session, "dana", "auditor").get(f"/enquiries/{tried}"))
    assert "Callback attempt" in text and "Rang about the grant letter" not in text
    assert "Agents' notes are left out." in text


def test_an_agent_cannot_open_an_enquirys_story(client, db_session, tried):
    assert as_user(client, db_session, "ali", "agent").get(f"/enquiries/{tried}").status_code == 403


@pytest.mark.parametrize("typed, status, says", [
    ("hd-2026-000001 ", 302, "/enquiries/HD-2026-000001"),
    ("[HD–2026–000001]", 302, "/enquiries/HD-2026-000001"),  # en dashes, as in a subject line
    ("2026-000001", 400, "“2026-000001” is not a reference. Give it as HD-YYYY-NNNNNN, for example HD-2026-000123."),
    ("  ", 400, "Give a reference, for example HD-2026-000123."),
    ("HD-2026-999999", 302, "/enquiries/HD-2026-999999"),
])
def test_an_enquiry_is_found_by_its_reference_as_typed(client, db_session, tried, typed, status, says):
    response = as_user(client, db_session, "alex", "manager").get("/enquiries", query_string={"reference": typed})
    assert response.status_code == status
    if status == 302:
        assert response.headers["Location"].endswith(says)
    else:
        assert says in page_text(response)


def test_an_enquiry_that_does_not_exist_says_so(client, db_session, tried):
    response = as_user(client, db_session, "alex", "manager").get("/enquiries/HD-2026-999999")
    assert response.status_code == 404 and "There is no enquiry HD-2026-999999." in page_text(response)


def test_the_calls_page_links_each_call_to_its_enquiry(client, db_session, tried):
    page = as_user(client, db_session, "alex", "manager").get("/calls").get_data(as_text=True)
    assert f'<a href="/enquiries/{tried}"><span class="reference">{tried}</span></a>' in page


def test_a_breach_corrected_by_an_attempt_entered_late_is_in_the_story(app, client, db_session, clock, settings):
    from callbacks.sweep import sweep

    miss_a_call(client, clock, 2)
    agent = add_agent(app, "bob", "Bob")
    [callback] = callbacks(db_session)
    with app.extensions["helpdesk.db"].session() as session:
        sweep(session, settings, callback.due_at + timedelta(minutes=1))
        service.add_attempt(session, settings, callback_id=callback.id, agent_id=agent, source="manual",
                            started_at=callback.due_at - timedelta(minutes=5), outcome="no_answer",
                            now=callback.due_at + timedelta(minutes=30))
    text = page_text(as_user(client, db_session, "alex", "manager").get(f"/enquiries/{reference_of(db_session, sid(2))}"))
    assert "Breach recorded" in text
    assert "Breach corrected to met: an attempt made in time was entered late By bob (audit log)." in text
    assert "No answer; by Bob, entered by hand. Entered at" in text
    assert db_session.scalars(select(Callback.sla_result)).one() == "met"


def test_why_a_call_back_now_did_not_ring_the_caller_is_in_the_story(app, client, db_session, clock):
    miss_a_call(client, clock, 3)
    agent = add_agent(app, "bob", "Bob", phone="sip:1001@pbx.example.org")
    [callback] = callbacks(db_session)
    # Refused by the phone system; rung and not answered (cancelled); answered by its voicemail.
    for n, events in ((9001, [("status", {"CallStatus": "failed", "SipResponseCode": "407"})]),
                      (9002, [("status", {"CallStatus": "no-answer", "SipResponseCode": "487"})]),
                      (9003, [("connect", {}), ("status", {"CallStatus": "completed", "CallDuration": "20"})])):
        with app.extensions["helpdesk.db"].session() as session:
            attempt = service.start_call(session, callback_id=callback.id, agent_id=agent, now=clock.now)
        with app.extensions["helpdesk.db"].session() as session:
            service.call_placed(session, attempt_id=attempt, call_sid=sid(n))
        for path, params in events:
            assert post(client, f"/twilio/voice/callback-{path}?callback={callback.id}",
                        {"CallSid": sid(n), "To": "sip:1001@pbx.example.org", **params}).status_code in (200, 204)
        clock.advance(180)
    reference = reference_of(db_session, sid(3))
    text = page_text(as_user(client, db_session, "alex", "manager").get(f"/enquiries/{reference}"))
    started = "Call back did not ring the caller Started by Bob with Call back now."
    assert (f"{started} The agent's desk phone did not ring: its phone system refused the call (SIP 407)."
            in text)
    assert f"{started} The agent's phone rang but was not answered." in text
    assert f"{started} The agent's phone answered, but 1 was not pressed." in text
    assert text.count("Call back did not ring the caller") == 3
    assert text.count("refused the call") == 1 and "pbx.example.org" not in text


def test_a_call_whose_desk_phones_the_phone_system_refused_says_so_where_it_ended(client, db_session, clock):
    from tests.integration.test_callbacks import answer_a_call

    post(client, "/twilio/voice/incoming", inbound(sid(4)))
    for leg, to, status, code in ((941, "sip:1001@pbx.example.org", "failed", "407"),
                                  (942, "sip:1002@pbx.example.org", "failed", "407"),
                                  (943, "sip:1003@pbx.example.org", "failed", "403"),
                                  (944, "client:agent-1", "no-answer", "487"),  # rang, not answered: not refused
                                  (945, "+447700900555", "failed", "407")):  # a number: no phone system of ours
        post(client, "/twilio/voice/agent-status", {"CallSid": sid(leg), "ParentCallSid": sid(4), "To": to,
                                                    "CallStatus": status, "SipResponseCode": code})
    clock.advance(40)
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(4), "DialCallStatus": "no-answer"})
    post(client, "/twilio/voice/status", {"CallSid": sid(4), "CallStatus": "completed"})
    answer_a_call(client, clock, 5)  # another caller's call, answered: nothing refused
    manager = as_user(client, db_session, "alex", "manager")
    refused = words(manager.get(f"/enquiries/{reference_of(db_session, sid(4))}").get_data(as_text=True))
    assert ("Call ended Outcome: No answer. The phone system refused Twilio's call to 3 desk phones, so they did "
            "not ring (SIP 403, 407).") in html.unescape(refused)
    assert "pbx.example.org" not in refused
    answered = words(manager.get(f"/enquiries/{reference_of(db_session, sid(5))}").get_data(as_text=True))
    assert "Call ended" in answered and "refused" not in answered


def test_an_email_enquirys_story_has_its_emails_acknowledgement_and_callback(app, client, db_session, clock):
    from callbacks.email.waiting import callback_needed
    from callbacks.smtp import FakeSender
    from helpdesk.models import InboundEmail
    from tests.integration.conftest import make_settings
    from tests.integration.test_email_acknowledgements import DESK, raw_email, receive, send
    from tests.integration.test_queue_page import at

    settings = make_settings(smtp={"host": "127.0.0.1", "port": 2525, "security": "none"},
                             email={"addresses": [DESK], "ack_within_minutes": 15})
    database = app.extensions["helpdesk.db"]
    reference = receive(database, settings, raw_email(1, sender="jo.bloggs@example.org"), at(9, 0)).reference
    send(database, FakeSender(), settings, at(9, 2))
    agent = add_agent(app, "alice", "Alice Agent")
    with database.session() as session:
        enquiry_id = session.scalars(select(Enquiry.id).where(Enquiry.reference == reference)).one()
        seen = session.scalars(select(InboundEmail.id)).one()
    with database.session() as session:
        callback_needed(session, settings, enquiry_id, agent_id=agent, now=at(9, 10), seen=seen,
                        number="07700 900123", note="Wants a call")
    text = page_text(as_user(client, db_session, "alex", "manager").get(f"/enquiries/{reference}"))
    assert "Came in by Email" in text and "Now Callback owed" in text
    assert "Email received From j***@example.org; opened the enquiry." in text
    assert "Acknowledgement sent Due 09:15:00 GMT." in text
    assert "Emails acknowledged within 15 minutes: Met" in text
    assert "Callback owed: Email enquiry needing a call" in text
    assert "jo.bloggs" not in text and "+447700900123" not in text


def test_an_answered_calls_enquiry_says_its_outcome_was_not_recorded_until_an_agent_records_it(
        app, client, db_session, clock):
    from tests.integration.test_queue_page import act, answer_a_call, at

    add_agent(app, "alice", "Alice Agent")
    answer_a_call(client, clock, 1, at(9, 0))
    reference = reference_of(db_session, sid(1))
    manager = as_user(client, db_session, "alex", "manager")

    assert "Now No outcome recorded" in page_text(manager.get(f"/enquiries/{reference}"))

    act(manager, f"/queue/calls/{sid(1)}/concluded")
    assert "Now Concluded on the call" in page_text(manager.get(f"/enquiries/{reference}"))


def test_one_refused_desk_phone_is_said_in_the_singular():
    from helpdesk.pages.enquiry import _refused_words

    assert _refused_words({sid(941): "401"}) == (" The phone system refused Twilio's call to 1 desk phone, so it did "
                                                 "not ring (SIP 401).")
    assert _refused_words({}) == ""
