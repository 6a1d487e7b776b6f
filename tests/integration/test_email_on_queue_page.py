"""Email enquiries on the agents' queue page: oldest first, their age, their acknowledgement, and the actions."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from callbacks import service
from callbacks.email.sending import send_due_acknowledgements
from callbacks.smtp import FakeSender
from helpdesk.models import Callback, EmailAcknowledgement, Enquiry
from tests.integration.conftest import make_settings
from tests.integration.test_email_acknowledgements import DESK, raw_email, receive
from tests.integration.test_queue_page import PASSWORD, add_agent, at, row_header, table_rows, text_of, words
from tests.integration.test_users_and_login import csrf_token, sign_in


@pytest.fixture
def settings():
    return make_settings(helpdesk={"name": "Access to Work help desk", "phone": "0800 121 7479"},
                         smtp={"host": "127.0.0.1", "port": 2525, "security": "none"},
                         email={"addresses": [DESK], "ack_within_minutes": 15, "per_sender_limit": 1,
                                "retry_spacing_minutes": [1], "max_send_attempts": 2})


@pytest.fixture
def alice(app, client):
    user_id = add_agent(app, "alice", "Alice Agent")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    return user_id


@pytest.fixture
def database(app):
    return app.extensions["helpdesk.db"]


def ref(reference: str) -> str:
    """A reference as the pages' messages show it: in a span that keeps it on one line."""
    return f'<span class="reference">{reference}</span>'


def email_in(database, settings, n: int, received, sender: str | None = None) -> str:
    """An email enquiry from its own sender (unless given); returns its reference."""
    return receive(database, settings, raw_email(n, sender=sender or f"sender{n}@example.org"), received).reference


def send(database, settings, now, sender=None):
    with database.session() as session:
        return send_due_acknowledgements(session, sender or FakeSender(), settings, now)


def row(page: str, reference: str) -> str:
    """One email enquiry's table row, by its reference."""
    match = re.search(rf'<tr id="email-\d+"[^>]*>(?:(?!</tr>).)*{row_header(reference)}.*?</tr>', page,
                      re.S)
    assert match, f"{reference} is not on the page"
    return match.group(0)


def stored_enquiry(database, reference: str) -> Enquiry:
    with database.session() as session:
        return session.scalars(select(Enquiry).where(Enquiry.reference == reference)).one()


def post_from_page(client, path: str, with_token: bool = True):
    """POST a form as the queue page shows it now, with its hidden fields."""
    page = client.get("/queue").get_data(as_text=True)
    found = re.search(rf'action="{re.escape(path)}[^"]*".*?</form>', page, re.S)
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', found.group(0))) if found \
        else {"csrf_token": csrf_token(client, "/queue")}
    if not with_token:
        form.pop("csrf_token")
    return client.post(path, data=form)


# --------------------------------------------------------------------------- the list


def test_email_enquiries_are_listed_oldest_first_with_their_age_and_a_masked_sender(
        alice, client, clock, database, settings):
    later = email_in(database, settings, 1, at(9, 30), sender="jo.bloggs@example.org")
    oldest = email_in(database, settings, 2, at(8, 5))
    newest = email_in(database, settings, 3, at(9, 58))
    clock.now = at(10, 0)
    page = text_of(client.get("/queue"))
    section = page[page.index('<h2 id="emails-title" tabindex="-1">Email enquiries awaiting a response</h2>'):]
    assert re.findall(row_header("(HD-[0-9-]+)"), section) == [oldest, later, newest]
    assert ("Email enquiries awaiting a response: 3. Those whose acknowledgement failed, is retrying or is overdue "
            "come first, then the oldest. Times are UK time.") in words(section)
    first = row(page, oldest)
    assert '<time datetime="2026-11-24T08:05:00+00:00">08:05 today</time>' in first
    assert "1 h 55 min" in first and "1 hour 55 minutes" in first  # shown, and for screen readers
    jo = row(page, later)
    assert "j***@example.org" in jo and "address starting j, at example.org" in jo
    assert "jo.bloggs" not in page and "sender1@" not in page


def test_a_web_forms_email_shows_the_person_to_reply_to_not_the_form(alice, client, clock, database, settings):
    raw = raw_email(1, sender="no-reply@forms.example.org").replace(
        b"\r\nTo:", b"\r\nReply-To: Ian One <ian@example.net>\r\nTo:", 1)
    reference = receive(database, settings, raw, at(9, 0)).reference
    clock.now = at(9, 5)
    shown = row(text_of(client.get("/queue")), reference)
    assert "i***@example.net" in shown and "forms.example.org" not in shown


def test_an_enquiry_joined_by_mail_from_another_address_says_so(alice, client, clock, database, settings):
    reference = email_in(database, settings, 1, at(9, 0), sender="jo.bloggs@example.org")
    form = receive(database, settings, raw_email(2, sender="no-reply@forms.example.org").replace(
        b"\r\nTo:", b"\r\nReply-To: Ian One <ian@example.net>\r\nTo:", 1), at(9, 1)).reference
    # Jo again (as her mail program writes her address), and Ian himself, quoting their references:
    # the people each enquiry is about.
    receive(database, settings, raw_email(3, sender="Jo.Bloggs@Example.org", subject=f"Re: {reference}"), at(9, 2))
    receive(database, settings, raw_email(4, sender="ian@example.net", subject=f"Re: {form}"), at(9, 3))
    clock.now = at(9, 5)
    page = text_of(client.get("/queue"))
    assert "other-senders" not in page
    # Anybody who quotes a reference joins its enquiry.
    joined = receive(database, settings, raw_email(5, sender="mallory@evil.example",
                                                   subject=f"Re: {reference} send my award letter here"), at(9, 6))
    assert joined.decision == "joined"
    page = text_of(client.get("/queue"))
    assert ("Also written to from another address: check who is asking before you act on it."
            in words(row(page, reference)))
    assert "other-senders" not in row(page, form) and "mallory" not in page


def test_each_acknowledgement_state_is_shown_in_words(alice, client, clock, database, settings):
    on_time = email_in(database, settings, 1, at(8, 0))
    send(database, settings, at(8, 1))
    late = email_in(database, settings, 2, at(8, 10))
    send(database, settings, at(8, 40))
    failing = FakeSender()
    failing.fail("could not send through 127.0.0.1:2525: ConnectionRefusedError")
    failed = email_in(database, settings, 3, at(9, 0))
    send(database, settings, at(9, 0), failing)
    send(database, settings, at(9, 1), failing)  # max_send_attempts 2
    failing.fail("127.0.0.1:2525 answered 451: 4.3.0 try later")
    retried = email_in(database, settings, 4, at(9, 40))
    send(database, settings, at(9, 40), failing)  # next try at 09:41
    email_in(database, settings, 5, at(9, 40), sender="flood@example.org")
    flooded = email_in(database, settings, 6, at(9, 40), sender="flood@example.org")  # per_sender_limit 1
    overdue = email_in(database, settings, 7, at(9, 20))  # read late from the mailbox: nothing sent yet
    clock.now = at(9, 40).replace(second=30)
    page = text_of(client.get("/queue"))
    assert "<strong>Sent on time</strong>" in row(page, on_time)
    assert "<strong>Sent late</strong>" in row(page, late)
    retrying_row = words(row(page, retried))
    assert "Sending failed: retrying Next try 09:41 today." in retrying_row
    assert "Last error: 127.0.0.1:2525 answered 451: 4.3.0 try later" in retrying_row
    failed_row = row(page, failed)
    assert "<strong>Failed</strong>" in failed_row and "Gave up after 2 attempts." in words(failed_row)
    assert "ConnectionRefusedError" in failed_row and ">Try again<" in failed_row
    assert "<strong>Not sent: flood guard</strong>" in row(page, flooded)
    assert "<strong>Not sent yet: overdue</strong>" in row(page, overdue)
    assert ">Try again<" in row(page, retried)  # at once, rather than at 09:41
    assert "Try again" not in row(page, on_time) + row(page, flooded)
    # Those an agent may have to act on come first: failed, retrying, overdue; then the rest, oldest first.
    section = page[page.index('<h2 id="emails-title" tabindex="-1">'):]
    order = re.findall(row_header("(HD-[0-9-]+)"), section)
    assert order[:3] == [failed, overdue, retried]
    assert order[3:5] == [on_time, late] and order[-1] == flooded and len(order) == 7


def test_acknowledgements_needing_attention_are_listed_even_beyond_the_first_hundred(alice, client, clock, database,
                                                                                     settings):
    for n in range(1, 103):
        email_in(database, settings, n, at(8, 0) + timedelta(seconds=n))
    for minute in (1, 2, 3):  # all sent on time (a run sends a limited number)
        send(database, settings, at(8, minute))
    failing = FakeSender()
    failing.fail("127.0.0.1:2525 answered 451: 4.3.0 try later")
    newest = email_in(database, settings, 200, at(9, 30))
    send(database, settings, at(9, 30), failing)
    clock.now = at(9, 31)
    page = text_of(client.get("/queue"))
    section = page[page.index('<h2 id="emails-title" tabindex="-1">'):]
    assert "Email enquiries awaiting a response: 103 (100 shown)." in words(section)
    assert re.findall(row_header("(HD-[0-9-]+)"), section)[0] == newest


def test_without_email_enquiries_the_section_says_so(alice, client):
    page = text_of(client.get("/queue"))
    assert "No email enquiries are awaiting a response." in page


# --------------------------------------------------------------------------- the actions


def test_marking_an_email_enquiry_answered_closes_it_and_takes_it_off_the_list(alice, client, clock, database,
                                                                                 settings):
    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    clock.now = at(10, 0)
    response = post_from_page(client, f"/queue/emails/{enquiry_id}/answered")
    assert response.status_code == 302 and response.headers["Location"].endswith("/queue#emails-said")
    page = text_of(client.get("/queue"))
    assert f"{ref(reference)} is marked as answered." in page and row_header(reference) not in page
    enquiry = stored_enquiry(database, reference)
    assert (enquiry.status, enquiry.closed_at, enquiry.closed_by_id) == ("closed", at(10, 0), alice)
    post_from_page(client, f"/queue/emails/{enquiry_id}/answered")
    assert f"{ref(reference)} is already marked as answered." in text_of(client.get("/queue"))
    assert stored_enquiry(database, reference).closed_at == at(10, 0)  # unchanged by the second press


def ask_for_a_callback(client, enquiry_id: int, number: str = "07700 900123", note: str = "Wants a call about the grant"):
    """Press "Record callback needed" on the email enquiry's row, with the page's hidden fields."""
    page = client.get("/queue").get_data(as_text=True)
    found = re.search(rf'action="/queue/emails/{enquiry_id}/callback[^"]*".*?</form>', page, re.S)
    assert found, "the enquiry has no Callback needed form"
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', found.group(0)))
    return client.post(f"/queue/emails/{enquiry_id}/callback", data={**form, "number": number, "note": note})


def owed_callbacks(database) -> list[Callback]:
    with database.session() as session:
        return list(session.scalars(select(Callback).order_by(Callback.id)))


def test_an_email_enquiry_that_needs_a_call_is_owed_a_callback_from_the_email_the_agent_read(
        alice, client, clock, database, settings):
    reference = email_in(database, settings, 1, at(9, 0), sender="jo.bloggs@example.org")
    # Jo writes again; the agent reads both, and it needs a call: the clock starts at the newest.
    receive(database, settings, raw_email(2, subject=f"Re: {reference}"), at(9, 30))
    enquiry_id = stored_enquiry(database, reference).id
    clock.now = at(10, 0)
    response = ask_for_a_callback(client, enquiry_id)
    [callback] = owed_callbacks(database)
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/queue#callback-{callback.id}-said")
    assert (callback.reason, callback.caller_number, callback.call_sid, callback.note) == (
        "email", "+447700900123", None, "Wants a call about the grant")
    # Three opening hours from 09:30 on a day open 08:00 to 18:00.
    assert (callback.owed_from, callback.due_at, callback.status) == (at(9, 30), at(12, 30), "open")
    assert stored_enquiry(database, reference).status == "callback_owed"
    page = text_of(client.get("/queue"))
    assert f"A callback is now owed for {ref(reference)}, due by 12:30 today." in page
    assert row_header(reference) not in page  # off the emails awaiting a response
    assert f'{ref(reference)} <span class="reason">– Email enquiry needing a call</span>' in page


@pytest.mark.parametrize("number, note, refusal", [
    ("", "Wants a call", "Give the number to call back, for example 07700 900123 or +447700900123: an email has none."),
    ("call me", "Wants a call", "That is not a phone number we can dial"),
    ("07700 900123", "  ", "Say what the callback is about, so whoever calls back knows."),
])
def test_a_callback_for_an_email_needs_a_number_to_dial_and_a_note(alice, client, clock, database, settings, number,
                                                                   note, refusal):
    reference = email_in(database, settings, 1, at(9, 0))
    clock.now = at(9, 10)
    response = ask_for_a_callback(client, stored_enquiry(database, reference).id, number=number, note=note)
    assert response.status_code == 422 and refusal in text_of(response)
    assert f'value="{number}"' in text_of(response)  # what was typed is kept
    assert owed_callbacks(database) == [] and stored_enquiry(database, reference).status == "open"


def test_an_email_enquirys_callback_is_owed_once_and_a_reply_brings_the_enquiry_back_to_be_answered(
        alice, client, clock, database, settings):
    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    clock.now = at(9, 10)
    ask_for_a_callback(client, enquiry_id)
    # The customer writes again: the enquiry needs an answer again; its callback stays owed.
    receive(database, settings, raw_email(2, subject=f"Re: {reference}"), at(9, 20))
    clock.now = at(9, 25)
    shown = row(text_of(client.get("/queue")), reference)
    assert (f'A callback is still owed for it: see <span class="reference">{reference}</span> in the callbacks above.'
            in shown)
    assert f"/queue/emails/{enquiry_id}/callback" not in shown  # no "Callback needed" to press again
    # Pressed all the same (the form as a page from before the reply showed it, with the reply read):
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', shown))
    response = client.post(f"/queue/emails/{enquiry_id}/callback",
                           data={**form, "number": "07700 900123", "note": "Again"})
    assert response.status_code == 422
    assert f"A callback is already owed for {ref(reference)}: see the callbacks above." in text_of(response)
    [callback] = owed_callbacks(database)
    assert callback.status == "open" and callback.owed_from == at(9, 0)
    assert post_from_page(client, f"/queue/emails/{enquiry_id}/answered").status_code == 302
    assert stored_enquiry(database, reference).status == "closed"
    # Its callback done, the customer writes once more: no second callback for the enquiry.
    with database.session() as session:
        service.close(session, callback_id=callback.id, agent_id=alice, outcome="withdrawn", now=at(9, 40),
                      note="Answered by email")
    receive(database, settings, raw_email(3, subject=f"Re: {reference}"), at(9, 50))
    clock.now = at(9, 55)
    assert "A callback is still owed" not in row(text_of(client.get("/queue")), reference)
    response = ask_for_a_callback(client, enquiry_id, note="Once more")
    assert (f"{ref(reference)} has had its callback already (closed as withdrawn): answer the customer by email, then "
            "mark the enquiry as answered.") in text_of(response)
    assert len(owed_callbacks(database)) == 1


def test_a_new_email_from_the_customer_brings_an_answered_enquiry_back(alice, client, clock, database, settings):
    reference = email_in(database, settings, 1, at(9, 0))
    clock.now = at(9, 30)
    post_from_page(client, f"/queue/emails/{stored_enquiry(database, reference).id}/answered")
    receive(database, settings, raw_email(2, subject=f"Re: We have your email [{reference}]"), at(9, 45))
    assert row_header(reference) in text_of(client.get("/queue"))


def test_a_reply_that_came_in_after_the_page_was_shown_keeps_the_enquiry_open(alice, client, clock, database,
                                                                               settings):
    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    clock.now = at(9, 30)
    page = text_of(client.get("/queue"))
    form = re.search(rf'action="/queue/emails/{enquiry_id}/answered".*?</form>', page, re.S).group(0)
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', form))
    assert set(fields) == {"csrf_token", "seen"}
    # The customer's reply joins the enquiry while the agent reads the page (it is still open,
    # so nothing reopens it afterwards).
    receive(database, settings, raw_email(2, subject=f"Re: We have your email [{reference}]"), at(9, 30))

    refused = client.post(f"/queue/emails/{enquiry_id}/answered", data=fields)
    assert refused.status_code == 302
    assert (f"A new email for {ref(reference)} came in after your page showed it. Read it, then mark the enquiry as "
            "answered.") in text_of(client.get("/queue"))
    assert stored_enquiry(database, reference).status == "open"

    post_from_page(client, f"/queue/emails/{enquiry_id}/answered")  # from the page as it is now
    assert stored_enquiry(database, reference).status == "closed"


@pytest.mark.parametrize("seen", [None, "", "abc", "-1", "99999999999999999999", "9223372036854775808", "2147483648"])
def test_a_missing_or_impossible_seen_value_is_an_out_of_date_page_never_an_error(alice, client, clock, database,
                                                                                  settings, seen):
    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    clock.now = at(9, 30)
    form = {"csrf_token": csrf_token(client, "/queue"), **({} if seen is None else {"seen": seen})}
    response = client.post(f"/queue/emails/{enquiry_id}/answered", data=form)
    assert response.status_code == 302
    assert (f"Your page was out of date, so {ref(reference)} was not marked as answered."
            in text_of(client.get("/queue")))
    assert stored_enquiry(database, reference).status == "open"


def test_a_reply_being_stored_as_the_agent_marks_the_enquiry_answered_keeps_it_open(alice, database, settings):
    from threading import Thread

    from callbacks.email import waiting
    from callbacks.email.intake import store_inbound
    from helpdesk.models import InboundEmail

    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    with database.session() as session, session.begin():
        seen = session.scalar(select(InboundEmail.id).where(InboundEmail.enquiry_id == enquiry_id))
    intake = database.session()  # the customer's reply, stored but not yet committed
    intake.begin()
    store_inbound(intake, raw_email(2, subject=f"Re: We have your email [{reference}]"), source="imap",
                  received_at=at(9, 30), settings=settings)
    said = []

    def press() -> None:
        with database.session() as session:
            try:
                waiting.mark_answered(session, enquiry_id, agent_id=alice, now=at(9, 30), seen=seen)
                said.append("closed")
            except waiting.EnquiryError as refusal:
                said.append(str(refusal))

    pressing = Thread(target=press)
    pressing.start()
    pressing.join(timeout=1)  # it waits for the reply's transaction
    intake.commit()
    intake.close()
    pressing.join(timeout=30)
    assert said == [f"A new email for {reference} came in after your page showed it. Read it, then mark the "
                    "enquiry as answered."]
    assert stored_enquiry(database, reference).status == "open"


def test_try_again_sends_a_failed_acknowledgement_at_the_next_run(alice, client, clock, database, settings):
    reference = email_in(database, settings, 1, at(9, 0))
    failing = FakeSender()
    failing.fail()
    send(database, settings, at(9, 0), failing)
    send(database, settings, at(9, 1), failing)
    with database.session() as session:
        ack = session.scalars(select(EmailAcknowledgement)).one()
    assert ack.status == "failed"
    clock.now = at(9, 30)
    response = post_from_page(client, f"/queue/emails/acknowledgements/{ack.id}/retry")
    assert response.status_code == 302
    assert f"The acknowledgement for {ref(reference)} will be sent again within 15 seconds." in text_of(
        client.get("/queue"))
    sender = FakeSender()
    assert send(database, settings, at(9, 30), sender).sent == 1 and len(sender.messages) == 1
    assert "<strong>Sent late</strong>" in row(text_of(client.get("/queue")), reference)
    post_from_page(client, f"/queue/emails/acknowledgements/{ack.id}/retry")
    assert "has not failed, so there is nothing to retry" in text_of(client.get("/queue"))


def test_the_actions_need_the_forms_csrf_token(alice, client, database, settings):
    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    assert post_from_page(client, f"/queue/emails/{enquiry_id}/answered", with_token=False).status_code == 400
    assert stored_enquiry(database, reference).status == "open"


def test_unknown_enquiries_and_acknowledgements_are_not_found(alice, client, database, settings):
    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    assert post_from_page(client, f"/queue/emails/{enquiry_id + 99}/answered").status_code == 404
    assert post_from_page(client, "/queue/emails/acknowledgements/999/retry").status_code == 404
    assert post_from_page(client, "/queue/emails/not-a-number/answered").status_code == 404


def test_an_auditor_cannot_mark_an_email_enquiry_answered(app, client, database, settings):
    reference = email_in(database, settings, 1, at(9, 0))
    enquiry_id = stored_enquiry(database, reference).id
    add_agent(app, "audrey", "Audrey", role="auditor")
    sign_in(client, "audrey", PASSWORD)
    token = csrf_token(client, "/calls")  # the sign-out form on any page carries it
    response = client.post(f"/queue/emails/{enquiry_id}/answered", data={"csrf_token": token})
    assert response.status_code == 403 and stored_enquiry(database, reference).status == "open"


def test_the_section_keeps_the_pages_structure_for_screen_readers(alice, client, clock, database, settings):
    reference = email_in(database, settings, 1, at(9, 0))
    clock.now = at(9, 20)
    page = text_of(client.get("/queue"))
    assert re.search(r'<section class="queue-emails" id="emails" aria-labelledby="emails-title"', page)
    assert '<caption id="emails-caption">' in page and 'aria-labelledby="emails-caption"' in page
    columns = ["Received", "Enquiry", "Reply to", "Waiting", "Acknowledgement", "Action"]
    assert all(f'<th scope="col" role="columnheader">{name}</th>' in page for name in columns)
    # On a narrow screen each row is a card, its cells under their columns' headings (for the eye
    # alone: a screen reader says the column header), and the table's roles written out keep it a table.
    assert '<table class="calls emails cards" role="table">' in page
    assert [[heading for heading, _ in cells] for _, cells in table_rows(page, "emails", "email-")] == [columns]
    assert f'Mark as answered<span class="visually-hidden"> ({reference})</span>' in page
