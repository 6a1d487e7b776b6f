"""The acknowledgement of an email enquiry (what it says and how it threads), and the sending rules."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime

import pytest

from callbacks.email.ack import (
    REFERENCES_KEPT,
    acknowledgement_message,
    opening_hours_words,
    shorten,
    spell,
    subject_line,
    time_words,
)
from callbacks.email.ack_rules import (
    HELD_BACK, LOST_IN_RESTORE, after_failure, ack_state, mask_address, retry_wait, sla_result,
)
from helpdesk.config import parse_settings

REFERENCE = "HD-2026-000123"
ORIGINAL_ID = "<CAF=abc.123@mail.example.org>"
# Tuesday 24 November 2026 (GMT): 10:00 open, 19:00 closed until 08:00 Wednesday.
OPEN = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)
EVENING = datetime(2026, 11, 24, 19, 0, tzinfo=timezone.utc)


def settings(**tables):
    data = {
        "helpdesk": {"name": "Access to Work help desk", "phone": "0800 121 7479"},
        "hours": {day: ["08:00-18:00"] for day in ("monday", "tuesday", "thursday", "friday")},
        "email": {"addresses": ["help@helpdesk.example.org"]},
    }
    data["hours"]["wednesday"] = ["08:00-12:30", "13:30-18:00"]
    for table, values in tables.items():
        data.setdefault(table, {}).update(values)
    return parse_settings(data, source="test.toml")


def acknowledgement(*, subject="Help with my support worker's hours", message_id=ORIGINAL_ID,
                    references="<first@mail.example.org> <second@mail.example.org>", now=OPEN, config=None):
    message = acknowledgement_message(
        enquiry_reference=REFERENCE, original_subject=subject, original_message_id=message_id,
        original_references=references, to_address="jo.bloggs@example.org",
        from_address="help@helpdesk.example.org", settings=config or settings(), now=now,
        message_id_domain="helpdesk.example.org")
    # As the recipient will see it: serialised and parsed again.
    return message_from_bytes(message.as_bytes(), policy=default_policy)


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


# --------------------------------------------------------------------------- headers


def test_the_subject_carries_the_reference_and_the_original_subject():
    message = acknowledgement(subject="Help with my grant")
    assert message["Subject"] == f"We have your email [{REFERENCE}]: Help with my grant"


def test_a_long_subject_is_shortened_at_a_word_and_an_empty_one_is_left_out():
    long = "Question about my Access to Work grant and the support worker invoices for October and November"
    subject = subject_line(REFERENCE, long)
    assert subject.startswith(f"We have your email [{REFERENCE}]: Question about my Access")
    assert subject.endswith("...") and len(f"Subject: {subject}") <= 78  # one line, never folded
    assert subject.split("]: ", 1)[1][:-3] in long  # cut between words, not within one
    # Plain ASCII stays unencoded, so the header is one line as sent, not an encoded word folded in two.
    header = acknowledgement(subject=long).as_bytes().split(b"\nSubject: ", 1)[1].split(b"\n", 1)[0].rstrip(b"\r")
    assert header.decode("ascii") == subject
    assert shorten("Rückfrage zu meinem Antrag auf Unterstützung am Arbeitsplatz", 30).endswith("…")
    assert subject_line(REFERENCE, "   ") == f"We have your email [{REFERENCE}]"
    assert shorten("short", 60) == "short"


def test_line_breaks_and_control_characters_in_the_original_subject_never_reach_our_headers():
    message = acknowledgement(subject="Help\r\nBcc: x@example.org\x00\tplease")
    assert message["Subject"] == f"We have your email [{REFERENCE}]: Help Bcc: x@example.org please"
    assert message["Bcc"] is None


def test_direction_overrides_are_dropped_from_the_subject_but_joined_emoji_are_kept():
    subject = subject_line(REFERENCE, "Invoice \u202egnp.exe \U0001f469\u200d\U0001f4bb")
    assert subject == f"We have your email [{REFERENCE}]: Invoice gnp.exe \U0001f469\u200d\U0001f4bb"


def test_the_reply_threads_to_the_original_message_and_its_references():
    message = acknowledgement()
    assert message["In-Reply-To"] == ORIGINAL_ID
    assert message["References"].split() == ["<first@mail.example.org>", "<second@mail.example.org>", ORIGINAL_ID]


def test_without_references_the_original_message_id_alone_is_referenced():
    message = acknowledgement(references=None)
    assert message["References"] == ORIGINAL_ID and message["In-Reply-To"] == ORIGINAL_ID


def test_without_a_message_id_there_is_no_in_reply_to_or_references():
    message = acknowledgement(message_id=None)
    assert message["In-Reply-To"] is None and message["References"] is None


def test_a_long_thread_keeps_its_first_message_and_the_latest_references_and_drops_junk():
    chain = " ".join(f"<m{n}@mail.example.org>" for n in range(1, 31)) + " junk <no-at-sign> <bad\u00e9@x.org>"
    references = acknowledgement(references=chain)["References"].split()
    assert len(references) == REFERENCES_KEPT
    assert references[0] == "<m1@mail.example.org>" and references[-1] == ORIGINAL_ID
    assert references[-2] == "<m30@mail.example.org>"
    assert all(r.isascii() and r.count("@") == 1 for r in references)


def test_it_is_marked_as_an_automatic_reply_so_that_responders_do_not_answer_it():
    message = acknowledgement()
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"


def test_from_to_date_and_our_own_message_id():
    message = acknowledgement(now=EVENING)
    assert message["From"].addresses[0].addr_spec == "help@helpdesk.example.org"
    assert message["From"].addresses[0].display_name == "Access to Work help desk"
    assert message["To"] == "jo.bloggs@example.org"
    assert parsedate_to_datetime(message["Date"]) == EVENING
    assert message["Message-ID"].endswith("@helpdesk.example.org>") and message["Message-ID"] != ORIGINAL_ID


def test_two_acknowledgements_never_share_a_message_id():
    assert acknowledgement()["Message-ID"] != acknowledgement()["Message-ID"]


# --------------------------------------------------------------------------- the words


def test_the_plain_text_gives_the_reference_next_steps_hours_phone_and_how_to_reply():
    message = acknowledgement()
    assert message.get_content_type() == "text/plain"
    text = text_of(message)
    assert f"Your reference is {REFERENCE}." in text
    assert "Spelled out, that is H D, 2026, 0 0 0 1 2 3." in text
    assert "A member of our team will read your email and reply to you." in text
    assert "Monday, Tuesday, Thursday and Friday: 8am to 6pm." in text
    assert "Wednesday: 8am to 12:30pm and 1:30pm to 6pm." in text
    assert "We are closed on Saturdays, Sundays and bank holidays." in text
    assert "You can also phone us on 0800 121 7479." in text
    assert f"Keep {REFERENCE} in the subject line. Your reply will then join this enquiry." in text
    assert "This is an automatic message." in text and text.rstrip().endswith("Access to Work help desk")


def test_the_text_reads_well_aloud_short_lines_and_no_ascii_art():
    text = text_of(acknowledgement())
    lines = [line for line in text.splitlines() if line]
    assert all(len(line) <= 90 for line in lines)
    for art in ("---", "===", "***", "|", "#", ">>", "e.g."):
        assert art not in text


def test_nothing_of_the_sender_is_repeated_but_their_subject():
    message = acknowledgement(subject="My claim")
    assert "jo.bloggs" not in text_of(message) and "My claim" not in text_of(message)


def test_when_the_desk_is_closed_it_says_when_it_opens_again():
    assert "We are closed at the moment. We open again at 8am on Wednesday 25 November." in text_of(
        acknowledgement(now=EVENING))
    early = datetime(2026, 11, 24, 6, 30, tzinfo=timezone.utc)
    assert "We open again at 8am today." in text_of(acknowledgement(now=early))
    assert "closed at the moment" not in text_of(acknowledgement(now=OPEN))


def test_without_a_phone_number_the_phone_paragraph_is_left_out():
    text = text_of(acknowledgement(config=settings(helpdesk={"phone": ""})))
    assert "phone us" not in text and "\nPhone\n" not in text


def test_a_simple_html_alternative_when_configured_in_british_english():
    config = settings(email={"html": True}, helpdesk={"name": "Smith & Jones <help desk>"})
    message = acknowledgement(config=config)
    assert message.get_content_type() == "multipart/alternative"
    markup = message.get_body(("html",)).get_content()
    assert '<html lang="en-GB"' in markup and "<h1>" in markup and "<h2>Opening hours</h2>" in markup
    assert "<li>Monday, Tuesday, Thursday and Friday: 8am to 6pm.</li>" in markup
    assert '<a href="tel:08001217479">0800 121 7479</a>' in markup
    assert "Smith &amp; Jones &lt;help desk&gt;" in markup and "<help desk>" not in markup
    assert "<table" not in markup and "<img" not in markup
    assert f"Your reference is {REFERENCE}." in text_of(message)


def test_non_ascii_subjects_survive_encoding():
    message = acknowledgement(subject="Cwestiwn ynglŷn â’r grant")
    assert message["Subject"] == f"We have your email [{REFERENCE}]: Cwestiwn ynglŷn â’r grant"


@pytest.mark.parametrize("moment, words", [
    (time(8), "8am"), (time(17, 30), "5:30pm"), (time(12), "midday"), (time(12, 15), "12:15pm"),
    (time(0, 30), "12:30am"), (time(0), "midnight"), (time(23, 59, 59, 999999), "midnight")])
def test_times_are_written_in_words(moment, words):
    assert time_words(moment) == words


def test_opening_hours_in_words_group_days_and_name_the_closed_ones():
    weekdays = {day: ((time(9), time(17)),) for day in range(5)}
    assert opening_hours_words(weekdays) == [
        "Monday to Friday: 9am to 5pm.", "We are closed on Saturdays, Sundays and bank holidays."]
    always = {day: ((time(0), time(23, 59, 59, 999999)),) for day in range(7)}
    assert opening_hours_words(always) == ["Monday to Sunday: open all day.", "We are closed on bank holidays."]
    assert opening_hours_words({}) == []
    assert opening_hours_words(always, bank_holidays=False) == ["Monday to Sunday: open all day."]
    assert opening_hours_words(weekdays, bank_holidays=False)[-1] == "We are closed on Saturdays and Sundays."


def test_the_reference_is_spelled_out_for_reading_aloud():
    assert spell("HD-2026-000123") == "H D, 2026, 0 0 0 1 2 3"


# --------------------------------------------------------------------------- the rules


def test_retries_follow_the_spacing_and_the_last_value_repeats():
    spacing = (1, 5, 15)
    assert [retry_wait(n, spacing) for n in (1, 2, 3, 4, 9)] == [
        timedelta(minutes=m) for m in (1, 5, 15, 15, 15)]
    with pytest.raises(ValueError):
        retry_wait(0, spacing)


def test_after_the_last_allowed_attempt_the_acknowledgement_has_failed():
    first = after_failure(1, max_attempts=3, spacing_minutes=(1, 5), now=OPEN)
    assert (first.status, first.next_attempt_at) == ("pending", OPEN + timedelta(minutes=1))
    assert after_failure(2, max_attempts=3, spacing_minutes=(1, 5), now=OPEN).next_attempt_at == OPEN + timedelta(minutes=5)
    last = after_failure(3, max_attempts=3, spacing_minutes=(1, 5), now=OPEN)
    assert (last.status, last.next_attempt_at) == ("failed", None)


def test_a_retry_that_would_come_after_the_due_time_comes_a_minute_before_it():
    due = OPEN + timedelta(minutes=15)
    # Third failure at 10:06 with 15 minutes to wait: tried at 10:14, not 10:21.
    early = after_failure(3, max_attempts=8, spacing_minutes=(1, 5, 15), now=OPEN + timedelta(minutes=6), due_at=due)
    assert early.next_attempt_at == due - timedelta(minutes=1)
    # Inside the last minutes: a minute from now (never at once, never later than needed).
    close = after_failure(3, max_attempts=8, spacing_minutes=(1, 5, 15), now=due - timedelta(seconds=30), due_at=due)
    assert close.next_attempt_at == due + timedelta(seconds=30)
    # A short wait stays as it is; after the due time the spacing alone decides.
    assert after_failure(1, max_attempts=8, spacing_minutes=(1,), now=OPEN, due_at=due).next_attempt_at == (
        OPEN + timedelta(minutes=1))
    late = after_failure(3, max_attempts=8, spacing_minutes=(1, 5, 15), now=due + timedelta(minutes=2), due_at=due)
    assert late.next_attempt_at == due + timedelta(minutes=17)


def test_sent_at_the_due_time_is_on_time_and_a_second_later_is_late():
    due = OPEN + timedelta(minutes=15)
    assert sla_result(due, due) == "met"
    assert sla_result(due + timedelta(seconds=1), due) == "late"


@pytest.mark.parametrize("values, key, label, can_retry", [
    ({"status": "sent", "sla": "met"}, "sent_on_time", "Sent on time", False),
    ({"status": "sent", "sla": "late"}, "sent_late", "Sent late", False),
    ({"status": "pending"}, "waiting", "Not sent yet", False),
    ({"status": "pending", "now": OPEN + timedelta(minutes=16)}, "overdue", "Not sent yet: overdue", False),
    ({"status": "pending", "attempts": 2, "last_error": "451 busy"}, "retrying", "Sending failed: retrying", True),
    ({"status": "failed", "attempts": 8, "last_error": "451 busy"}, "failed", "Failed", True),
    ({"status": "suppressed", "decision": "rate_limited"}, "flood_guard", "Not sent: flood guard", False),
    ({"status": "suppressed", "last_error": "own address"}, "not_sent", "Not sent", False),
    ({"status": "suppressed", "last_error": HELD_BACK}, "not_sent", "Not sent", True),  # after a restore: "Send it"
    ({"status": "suppressed", "last_error": LOST_IN_RESTORE}, "not_sent", "Not sent", True),
    ({"status": None}, "none", "None owed", False),
])
def test_agents_see_the_acknowledgement_state_in_words(values, key, label, can_retry):
    arguments = {"status": None, "sla": None, "attempts": 0, "decision": "new_enquiry",
                 "due_at": OPEN + timedelta(minutes=15), "now": OPEN, "last_error": None, **values}
    state = ack_state(**arguments)
    assert (state.key, state.label, state.can_retry) == (key, label, can_retry)
    if values.get("last_error"):
        assert values["last_error"] in state.detail


def state_of(**values):
    arguments = {"status": None, "sla": None, "attempts": 0, "decision": "new_enquiry",
                 "due_at": OPEN + timedelta(minutes=15), "now": OPEN, "last_error": None, **values}
    return ack_state(**arguments)


def test_an_acknowledgement_not_sent_yet_is_overdue_only_after_its_due_time():
    # Sent at its due time is on time (sla_result), so at that instant it is not overdue yet.
    due = OPEN + timedelta(minutes=15)
    assert state_of(status="pending", now=due).key == "waiting"
    assert state_of(status="pending", now=due + timedelta(seconds=1)).key == "overdue"


@pytest.mark.parametrize("attempts, last_error, detail", [
    (1, None, "Gave up after 1 attempt."),
    (3, None, "Gave up after 3 attempts."),
    (2, "451 busy", "Gave up after 2 attempts. Last error: 451 busy"),
])
def test_a_failed_acknowledgement_says_after_how_many_attempts_and_only_an_error_there_was(attempts, last_error,
                                                                                            detail):
    assert state_of(status="failed", attempts=attempts, last_error=last_error).detail == detail


def test_a_retrying_or_suppressed_acknowledgement_without_a_reason_shows_no_made_up_one():
    assert state_of(status="pending", attempts=1).detail == ""
    assert state_of(status="suppressed", decision="new_enquiry").detail == ""


def test_the_button_is_send_it_after_a_restore_and_try_again_after_a_failure():
    # README: "Send it" sends a held-back acknowledgement; "Try again" a failed or retrying one.
    for reason in (HELD_BACK, LOST_IN_RESTORE):
        assert state_of(status="suppressed", last_error=reason).retry_label == "Send it"
    assert state_of(status="failed", attempts=8).retry_label == "Try again"
    assert state_of(status="pending", attempts=2).retry_label == "Try again"


def test_the_flood_guard_says_why_the_acknowledgement_was_not_sent():
    state = state_of(status="suppressed", decision="rate_limited")
    assert state.key == "flood_guard" and "limit" in state.detail


@pytest.mark.parametrize("address, shown, spoken", [
    ("jo.bloggs@example.org", "j***@example.org", "address starting j, at example.org"),
    ("  Jo@Mail.Example.org ", "J***@Mail.Example.org", "address starting J, at Mail.Example.org"),
    ('"jo@home"@example.org', '"***@example.org', 'address starting ", at example.org'),  # the last @ parts
])
def test_an_address_is_shown_as_its_first_character_and_its_domain(address, shown, spoken):
    # README: on the agents' page addresses are masked, "j***@example.org".
    assert mask_address(address) == (shown, spoken)


@pytest.mark.parametrize("address", [None, "", "   ", "jo.bloggs", "@example.org", "jo.bloggs@"])
def test_an_address_without_a_name_and_a_domain_is_not_known(address):
    assert mask_address(address) == ("Not known", "address not known")
