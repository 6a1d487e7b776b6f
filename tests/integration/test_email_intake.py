"""store_inbound on SQLite and PostgreSQL: the corpus, duplicates, threading, the per-sender limit."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from callbacks.email.intake import store_inbound
from helpdesk.models import EmailAcknowledgement, Enquiry, InboundEmail
from helpdesk.retention import Scope, remove_personal_data
from tests.integration.conftest import make_settings
from tests.unit.email_corpus import OWN_ADDRESS, PER_SENDER_LIMIT, cases

RECEIVED = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def desk_settings():
    return make_settings(email={"addresses": [OWN_ADDRESS], "per_sender_limit": PER_SENDER_LIMIT,
                                "ack_within_minutes": 15})


def store(database, settings, raw, *, at=RECEIVED, source="sendgrid", source_ref=None):
    with database.session() as session, session.begin():
        return store_inbound(session, raw, source=source, received_at=at, settings=settings, source_ref=source_ref)


def count(database, model) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_the_corpus_is_stored_whole_with_the_expected_decisions(database, desk_settings):
    results = {}
    for n, case in enumerate(cases()):
        result = store(database, desk_settings, case.raw, at=RECEIVED + timedelta(seconds=n))
        results[case.file] = result
        assert result.decision == case.decision, case.file
        assert result.duplicate == case.duplicate, case.file
        if case.joins:
            assert result.enquiry_id == results[case.joins].enquiry_id, case.file
        if case.decision in ("new_enquiry", "rate_limited"):
            assert result.reference and result.reference.startswith("HD-2026-"), case.file
        elif not case.joins:
            assert result.enquiry_id is None, case.file

    assert results["01-ordinary-enquiry.eml"].reference == "HD-2026-000001"
    distinct = [case for case in cases() if not case.duplicate]
    assert count(database, InboundEmail) == len(distinct)
    with database.session() as session:
        for case in distinct:
            row = session.get(InboundEmail, results[case.file].inbound_email_id)
            assert row.raw == case.raw, case.file  # kept byte for byte, however broken
            assert row.decision == case.decision
        acknowledgements = session.scalars(select(EmailAcknowledgement)).all()
    # One acknowledgement row per opened enquiry, never one for a reply, bounce or duplicate.
    opened = [c for c in distinct if c.decision in ("new_enquiry", "rate_limited")]
    assert len(acknowledgements) == len(opened)
    assert len({a.enquiry_id for a in acknowledgements}) == len(opened)
    statuses = {a.inbound_email_id: a.status for a in acknowledgements}
    assert statuses[results["23-flood-4.eml"].inbound_email_id] == "suppressed"
    assert statuses[results["23-flood-3.eml"].inbound_email_id] == "pending"


def test_a_new_enquiry_owes_an_acknowledgement_due_within_the_configured_minutes(database, desk_settings):
    raw = next(c.raw for c in cases() if c.file == "01-ordinary-enquiry.eml")
    result = store(database, desk_settings, raw, source="imap", source_ref="mbox/1/7")
    assert result.acknowledgement_owed and result.decision == "new_enquiry"
    with database.session() as session:
        ack = session.scalars(select(EmailAcknowledgement)).one()
        email = session.get(InboundEmail, result.inbound_email_id)
        enquiry = session.get(Enquiry, result.enquiry_id)
    assert (ack.status, ack.attempts, ack.to_address) == ("pending", 0, "amira.khan@example.net")
    assert ack.received_at == RECEIVED and ack.next_attempt_at == RECEIVED
    assert ack.due_at == RECEIVED + timedelta(minutes=15)
    assert (email.source, email.source_ref, email.sender) == ("imap", "mbox/1/7", "amira.khan@example.net")
    assert email.message_id == "<CAF7ordinary.0001@mail.example.net>"
    assert (enquiry.channel, enquiry.opened_at, enquiry.closed_at) == ("email", RECEIVED, None)


def test_a_duplicate_delivery_returns_the_first_result_and_stores_nothing(database, desk_settings):
    raw = next(c.raw for c in cases() if c.file == "10-missing-message-id.eml")
    first = store(database, desk_settings, raw)
    again = store(database, desk_settings, raw, at=RECEIVED + timedelta(minutes=5))
    assert again.duplicate and not first.duplicate
    assert (again.inbound_email_id, again.enquiry_id, again.reference) == (
        first.inbound_email_id, first.enquiry_id, first.reference)
    assert count(database, InboundEmail) == 1
    assert count(database, EmailAcknowledgement) == 1
    assert count(database, Enquiry) == 1


def form_message(name: str, address: str, body: str, received: str = "Received: from relay-1\r\n") -> bytes:
    """A web form's email: the same sender and Message-ID every time (as some forms send)."""
    return (f"{received}From: Website <no-reply@forms.example.org>\r\nReply-To: {name} <{address}>\r\n"
            "To: help@helpdesk.example.org\r\nSubject: Contact form\r\n"
            "Message-ID: <contact-form@forms.example.org>\r\n\r\n" + body + "\r\n").encode()


def test_a_different_message_reusing_a_message_id_is_a_new_enquiry_and_each_is_recognised_again(
        database, desk_settings):
    first = store(database, desk_settings, form_message("Ian One", "ian@example.net", "Please call me about my grant."))
    second = store(database, desk_settings, form_message("Jo Two", "jo@example.net", "My claim form is stuck."),
                   at=RECEIVED + timedelta(minutes=1))
    assert not second.duplicate and second.decision == "new_enquiry"
    assert second.enquiry_id != first.enquiry_id
    with database.session() as session:
        assert sorted(session.scalars(select(EmailAcknowledgement.to_address))) == ["ian@example.net", "jo@example.net"]
    # Each delivered again (through another relay, so with other headers): recognised, nothing new.
    again = [store(database, desk_settings, form_message(*args, received="Received: from relay-2\r\n"),
                   at=RECEIVED + timedelta(minutes=5))
             for args in (("Jo Two", "jo@example.net", "My claim form is stuck."),
                          ("Ian One", "ian@example.net", "Please call me about my grant."))]
    assert [(r.duplicate, r.inbound_email_id) for r in again] == [
        (True, second.inbound_email_id), (True, first.inbound_email_id)]
    assert count(database, InboundEmail) == 2 and count(database, EmailAcknowledgement) == 2


def test_concurrent_deliveries_of_one_message_open_one_enquiry(database, desk_settings):
    raw = next(c.raw for c in cases() if c.file == "01-ordinary-enquiry.eml")
    results, errors = [], []
    barrier = threading.Barrier(4)

    def deliver():
        try:
            barrier.wait()
            results.append(store(database, desk_settings, raw))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert len({r.enquiry_id for r in results}) == 1
    assert count(database, EmailAcknowledgement) == 1


def test_a_reply_threaded_to_our_acknowledgement_joins_its_enquiry(database, desk_settings):
    raw = next(c.raw for c in cases() if c.file == "10-missing-message-id.eml")
    first = store(database, desk_settings, raw)
    with database.session() as session, session.begin():
        ack = session.scalars(select(EmailAcknowledgement)).one()
        ack.message_id = "<ack.123@desk.example.org>"
    reply = (b"From: eve.jones@example.org\r\nSubject: Re: thanks\r\nMessage-ID: <r1@example.org>\r\n"
             b"In-Reply-To: <ack.123@DESK.example.org>\r\n\r\nThanks for replying.\r\n")
    result = store(database, desk_settings, reply)
    assert (result.decision, result.enquiry_id, result.acknowledgement_owed) == ("joined", first.enquiry_id, False)
    assert count(database, EmailAcknowledgement) == 1


def test_a_reply_to_a_closed_enquiry_opens_it_again_but_an_auto_reply_does_not(database, desk_settings):
    raw = next(c.raw for c in cases() if c.file == "01-ordinary-enquiry.eml")
    first = store(database, desk_settings, raw)
    with database.session() as session, session.begin():  # as an agent's "answered" does
        enquiry = session.get(Enquiry, first.enquiry_id)
        enquiry.status, enquiry.closed_at = "closed", RECEIVED + timedelta(hours=1)
    auto = (b"From: amira.khan@example.net\r\nSubject: Out of office: back soon\r\nMessage-ID: <oo@example.net>\r\n"
            b"Auto-Submitted: auto-replied\r\nIn-Reply-To: <CAF7ordinary.0001@mail.example.net>\r\n\r\nAway.\r\n")
    assert store(database, desk_settings, auto).enquiry_id == first.enquiry_id
    with database.session() as session:
        assert session.get(Enquiry, first.enquiry_id).closed_at is not None
    reply = next(c.raw for c in cases() if c.file == "02-reply-quoting-reference.eml")
    assert store(database, desk_settings, reply).decision == "joined"
    with database.session() as session:
        reopened = session.get(Enquiry, first.enquiry_id)
        assert (reopened.status, reopened.closed_at, reopened.closed_by_id) == ("open", None, None)


def test_a_reply_threads_to_an_enquiry_whose_personal_data_was_removed(database, desk_settings):
    """The removal takes the Message-ID (helpdesk/retention.py), but not the digest of it that
    recognises a redelivery: a reply that does not quote the reference still finds its enquiry."""
    raw = next(c.raw for c in cases() if c.file == "01-ordinary-enquiry.eml")
    first = store(database, desk_settings, raw)
    with database.session() as session, session.begin():
        session.get(Enquiry, first.enquiry_id).status = "closed"
        session.scalars(select(EmailAcknowledgement)).one().status = "sent"
    with database.session() as session:
        removal = remove_personal_data(session, Scope.before(RECEIVED + timedelta(days=1)), apply=True,
                                       now=RECEIVED + timedelta(days=40))
    with database.session() as session:
        assert removal.emails == 1 and session.get(InboundEmail, first.inbound_email_id).message_id is None
    reply = (b"From: amira.khan@example.net\r\nSubject: Re: my claim\r\nMessage-ID: <again@example.net>\r\n"
             b"In-Reply-To: <CAF7ordinary.0001@mail.example.net>\r\n\r\nOne more thing.\r\n")
    result = store(database, desk_settings, reply, at=RECEIVED + timedelta(days=41))
    assert (result.decision, result.enquiry_id) == ("joined", first.enquiry_id)
    unrelated = reply.replace(b"<again@", b"<other@").replace(b"<CAF7ordinary.0001@", b"<someone.else@")
    assert store(database, desk_settings, unrelated, at=RECEIVED + timedelta(days=41)).decision == "new_enquiry"


def test_a_quoted_reference_that_does_not_exist_opens_a_new_enquiry(database, desk_settings):
    raw = (b"From: someone@example.com\r\nSubject: About HD-2026-999999\r\nMessage-ID: <q@example.com>\r\n\r\nHi\r\n")
    result = store(database, desk_settings, raw)
    assert result.decision == "new_enquiry" and result.reference == "HD-2026-000001"


def test_the_per_sender_limit_counts_only_acknowledgements_inside_the_window(database, desk_settings):
    window = desk_settings.email.per_sender_window_minutes
    decisions = []
    for n in range(PER_SENDER_LIMIT + 2):
        raw = f"From: flood@example.com\r\nSubject: {n}\r\nMessage-ID: <f{n}@example.com>\r\n\r\nx\r\n".encode()
        decisions.append(store(database, desk_settings, raw, at=RECEIVED + timedelta(minutes=n)).decision)
    assert decisions == ["new_enquiry"] * PER_SENDER_LIMIT + ["rate_limited"] * 2
    later = RECEIVED + timedelta(minutes=window + 1)  # the first acknowledgement has left the window
    raw = b"From: flood@example.com\r\nSubject: later\r\nMessage-ID: <later@example.com>\r\n\r\nx\r\n"
    assert store(database, desk_settings, raw, at=later).decision == "new_enquiry"


def test_the_per_sender_limit_sees_one_mailbox_through_plus_tags_and_case(database, desk_settings):
    """victim+1@, Victim+2@... reach one mailbox: the guard must not be walked round to mail-bomb it."""
    decisions = []
    for n in range(PER_SENDER_LIMIT + 2):
        to = ["victim@target.example", f"victim+{n}@target.example", f"VICTIM+x{n}@Target.Example"][n % 3]
        raw = (f"From: attacker@evil.example\r\nReply-To: {to}\r\nSubject: {n}\r\n"
               f"Message-ID: <p{n}@evil.example>\r\n\r\nx\r\n").encode()
        decisions.append(store(database, desk_settings, raw, at=RECEIVED + timedelta(minutes=n)).decision)
    assert decisions == ["new_enquiry"] * PER_SENDER_LIMIT + ["rate_limited"] * 2
    # Another mailbox whose name merely starts the same is not held back.
    raw = b"From: victimised@target.example\r\nSubject: mine\r\nMessage-ID: <own@target.example>\r\n\r\nx\r\n"
    assert store(database, desk_settings, raw, at=RECEIVED + timedelta(minutes=9)).decision == "new_enquiry"


def test_senders_at_an_unlimited_domain_are_never_held_back_by_the_flood_guard(database):
    settings = make_settings(email={"addresses": [OWN_ADDRESS], "per_sender_limit": 2,
                                    "unlimited_domains": ["dwp.gov.uk"]})
    decisions = {}
    for sender in ("alex.smith@dwp.gov.uk", "case.team@region.dwp.gov.uk", "flood@notdwp.gov.uk"):
        decisions[sender] = [store(database, settings, (
            f"From: {sender}\r\nSubject: Referral {n}\r\nMessage-ID: <{n}.{sender}>\r\n\r\nx\r\n").encode(),
            at=RECEIVED + timedelta(minutes=n)).decision for n in range(4)]
    assert decisions["alex.smith@dwp.gov.uk"] == ["new_enquiry"] * 4
    assert decisions["case.team@region.dwp.gov.uk"] == ["new_enquiry"] * 4  # a subdomain
    assert decisions["flood@notdwp.gov.uk"] == ["new_enquiry"] * 2 + ["rate_limited"] * 2
    # Anybody's mail whose Reply-To names a DWP officer is held back as any other sender's is.
    forged = [store(database, settings, (
        f"From: attacker@evil.example\r\nReply-To: victim.officer@dwp.gov.uk\r\nSubject: Locked {n}\r\n"
        f"Message-ID: <forged{n}@evil.example>\r\n\r\nx\r\n").encode(),
        at=RECEIVED + timedelta(minutes=n)).decision for n in range(4)]
    assert forged == ["new_enquiry"] * 2 + ["rate_limited"] * 2


def test_the_reference_year_is_the_uk_year_of_receipt(database, desk_settings):
    raw = b"From: a@example.com\r\nSubject: New year\r\nMessage-ID: <ny@example.com>\r\n\r\nx\r\n"
    new_year = datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc)  # GMT: still 2026 in London
    assert store(database, desk_settings, raw, at=new_year).reference == "HD-2026-000001"
    raw2 = raw.replace(b"<ny@", b"<ny2@")
    assert store(database, desk_settings, raw2, at=new_year + timedelta(seconds=2)).reference == "HD-2027-000001"


def test_an_unknown_source_or_a_naive_time_is_refused(database, desk_settings):
    with database.session() as session:
        with pytest.raises(ValueError):
            store_inbound(session, b"x", source="fax", received_at=RECEIVED, settings=desk_settings)
        with pytest.raises(ValueError):
            store_inbound(session, b"x", source="imap", received_at=RECEIVED.replace(tzinfo=None),
                          settings=desk_settings)
