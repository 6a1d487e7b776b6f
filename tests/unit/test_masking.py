"""How the Calls page shows numbers, outcomes, caller types, times and compliance."""
from __future__ import annotations

import html
import re
from datetime import date, datetime, timezone

import pytest
from markupsafe import Markup

from helpdesk.pages.format import (
    caller_type_label,
    format_compliance,
    format_day,
    format_local_time,
    format_seconds,
    mask_number,
    masked_number_html,
    number_ending,
    outcome_label,
    sla_label,
)


def test_a_uk_mobile_number_shows_only_its_last_three_digits():
    assert mask_number("+447700900123") == "•••••••• 123"


def test_the_mask_is_the_same_length_whatever_the_number_length():
    assert mask_number("+441234567890") == "•••••••• 890"
    assert mask_number("+3531234567") == "•••••••• 567"


def test_no_other_digit_of_the_number_appears_in_the_mask():
    masked = mask_number("+447700900123")
    assert "7700" not in masked and "900" not in masked and "+44" not in masked


@pytest.mark.parametrize("withheld", [None, "", "  ", "anonymous", "Anonymous", "restricted", "+266696687", "+7378742833"])
def test_withheld_numbers_are_shown_as_withheld(withheld):
    assert mask_number(withheld) == "Withheld"
    assert number_ending(withheld) is None


def test_a_short_number_is_masked_completely_because_three_digits_would_give_most_of_it_away():
    assert mask_number("12345") == "••••••••"
    assert number_ending("12345") is None


def test_a_sip_address_without_digits_is_masked_completely():
    assert mask_number("sip:alice@example.org") == "••••••••"


def test_the_number_ending_ignores_spaces_and_punctuation():
    assert number_ending("+44 (0)7700 900-123") == "123"


@pytest.mark.parametrize(
    ("outcome", "label"),
    [
        ("answered", "Answered"),
        ("abandoned", "Abandoned"),
        ("no_answer", "No answer"),
        ("voicemail", "Voicemail"),
        ("out_of_hours", "Out of hours"),
        ("failed", "Failed"),
        ("in_progress", "In progress"),
    ],
)
def test_each_outcome_is_shown_in_words(outcome, label):
    assert outcome_label(outcome) == label


def test_an_outcome_added_later_is_still_shown_in_words_rather_than_as_a_code():
    assert outcome_label("sent_to_queue") == "Sent to queue"


def test_caller_types_are_dwp_customer_or_unknown():
    assert [caller_type_label(t) for t in ("dwp", "customer", "unknown", None, "robot")] == [
        "DWP", "Customer", "Unknown", "Unknown", "Unknown",
    ]


def test_only_met_and_breached_calls_have_a_result_label():
    assert (sla_label("met"), sla_label("breached"), sla_label(None)) == ("Met", "Breached", "")


def test_a_winter_time_is_shown_in_gmt():
    assert format_local_time(datetime(2026, 11, 24, 10, 0, 5, tzinfo=timezone.utc)) == "10:00:05"


def test_a_summer_time_is_shown_in_bst_an_hour_ahead_of_utc():
    assert format_local_time(datetime(2026, 7, 1, 8, 59, 59, tzinfo=timezone.utc)) == "09:59:59"


def test_the_repeated_hour_in_october_can_be_told_apart_by_its_zone():
    first = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)
    second = datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc)
    assert format_local_time(first) == format_local_time(second) == "01:30:00"
    assert format_local_time(first, with_zone=True) == "01:30:00 BST"
    assert format_local_time(second, with_zone=True) == "01:30:00 GMT"


def test_a_missing_time_is_shown_as_nothing():
    assert format_local_time(None) == ""


def test_answer_seconds_are_shown_to_one_decimal_place():
    assert (format_seconds(11.0), format_seconds(29.96), format_seconds(None)) == ("11.0", "30.0", "")


def test_two_met_of_three_countable_is_66_point_7_percent():
    assert format_compliance(2, 3) == "66.7%"


def test_compliance_rounds_half_up_to_one_decimal():
    assert format_compliance(1, 16) == "6.3%"  # 6.25 exactly


def test_all_met_is_100_percent_and_none_met_is_0_percent():
    assert (format_compliance(4, 4), format_compliance(0, 4)) == ("100.0%", "0.0%")


def test_one_breach_never_reads_as_100_percent():
    assert (format_compliance(1999, 2000), format_compliance(19999, 20000)) == ("99.9%", "99.9%")
    assert format_compliance(1998, 2000) == "99.9%"  # 99.9 exactly, as before


def test_a_day_with_nothing_countable_has_no_compliance_figure():
    assert format_compliance(0, 0) == "No data"


def test_a_day_is_written_the_british_way():
    assert format_day(date(2026, 11, 4)) == "Wednesday 4 November 2026"


@pytest.mark.parametrize(("minutes", "words"), [
    (180, "3 hours"), (60, "1 hour"), (5, "5 minutes"), (1, "1 minute"),
    (90, "1 hour 30 minutes"), (150, "2 hours 30 minutes"), (45, "45 minutes"), (1440, "24 hours"),
])
def test_a_length_of_time_is_written_in_numerals(minutes, words):
    from helpdesk.pages.format import format_minutes

    assert format_minutes(minutes) == words


@pytest.mark.parametrize("rings, words, label", [
    (10, "10 rings", "10-ring target"), (1, "1 ring", "1-ring target"), (15, "15 rings", "15-ring target")])
def test_ring_counts_in_numerals_and_as_a_label(rings, words, label):
    from helpdesk.pages.format import format_rings, ring_target

    assert (format_rings(rings), ring_target(rings)) == (words, label)


def test_a_number_or_address_removed_after_the_retention_period_says_so_everywhere_it_is_shown():
    from callbacks.email.ack_rules import mask_address
    from metrics.evidence.fields import Redactor, mask_email

    assert mask_number("removed") == "Removed" and number_ending("removed") is None
    assert mask_address("removed") == ("Removed", "address removed")
    assert mask_email("removed") == "removed"
    for redaction in ("masked", "none"):
        assert Redactor(redaction).number("removed") == "removed" and Redactor(redaction).email("removed") == "removed"


@pytest.mark.parametrize("number, shown", [
    ("+447700900123", '<span class="masked" aria-hidden="true">•••••••• 123</span>'
                      '<span class="visually-hidden">Number ending 123</span>'),
    ("sip:desk.7@example.org", "••••••••"),  # one digit: masked completely, as mask_number does
    ("12345", "••••••••"),
    (None, "Withheld"), ("anonymous", "Withheld"), ("removed:withheld", "Withheld"),
    ("removed", "Removed"),
    ("<b>+447700900123</b>", '<span class="masked" aria-hidden="true">•••••••• 123</span>'
                             '<span class="visually-hidden">Number ending 123</span>'),
])
def test_the_pages_show_the_mask_to_the_eye_and_the_ending_to_a_screen_reader(number, shown):
    assert masked_number_html(number) == Markup(shown)
    assert html.unescape(re.sub(r"<[^>]+>", "", shown)).startswith(mask_number(number))
