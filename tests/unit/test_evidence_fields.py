"""How an evidence pack writes values: UK times with offsets, masked numbers and addresses."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from metrics.evidence.fields import Redactor, london_times, mask_email, mask_number, ratio, seconds
from metrics.evidence.rows import ack_result
from metrics.evidence.tally import LATE, NO_ATTEMPT, lead_bucket

UTC = timezone.utc


@pytest.mark.parametrize("stored, shown", [
    ("2026-11-24 10:00:05.123456", "2026-11-24T10:00:05.123+00:00"),  # GMT
    ("2026-07-01 23:30:00.000000", "2026-07-02T00:30:00.000+01:00"),  # BST moves the date on
    ("2026-03-29 00:59:59.999000", "2026-03-29T00:59:59.999+00:00"),  # the last second of GMT
    ("2026-03-29 01:00:00.000000", "2026-03-29T02:00:00.000+01:00"),  # clocks go forward
    ("2026-10-25 00:30:00.000000", "2026-10-25T01:30:00.000+01:00"),  # the first 01:30
    ("2026-10-25 01:30:00.000000", "2026-10-25T01:30:00.000+00:00"),  # the second 01:30
])
def test_stored_sqlite_times_are_shown_in_uk_time_with_the_offset_in_force(stored, shown):
    assert london_times()(stored) == shown


def test_aware_datetimes_from_postgresql_give_the_same_text_as_sqlite_text():
    when = london_times()
    moment = datetime(2026, 10, 25, 1, 30, 0, 250000, tzinfo=UTC)
    assert when(moment) == when("2026-10-25 01:30:00.250000") == "2026-10-25T01:30:00.250+00:00"
    assert when(moment.astimezone(timezone(timedelta(hours=-5)))) == "2026-10-25T01:30:00.250+00:00"


def test_a_missing_time_is_an_empty_cell():
    assert london_times()(None) == ""


@pytest.mark.parametrize("number, masked", [
    ("+447700900123", "********123"),
    ("+12025550199", "********199"),
    (None, "withheld"),
    ("anonymous", "withheld"),
    ("+266696687", "withheld"),  # Twilio's stand-in for a withheld number
    ("+44123", "********"),  # too short to show any digits
])
def test_numbers_keep_only_their_last_three_digits(number, masked):
    assert mask_number(number) == masked
    assert Redactor("masked").number(number) == masked  # the fast path agrees


def test_unredacted_exports_show_numbers_but_still_say_withheld():
    full = Redactor("none")
    assert (full.number("+447700900123"), full.number(None), full.number("Restricted")) == (
        "+447700900123", "withheld", "withheld")


@pytest.mark.parametrize("address, masked", [
    ("jane.doe@example.org", "j***@e***.org"),
    ("sam@mail.example.co.uk", "s***@m***.uk"),
    ("x@localhost", "x***@l***"),
    ("not an address", "***"),
    ("", ""),
    (None, ""),
])
def test_email_addresses_keep_one_letter_of_name_and_domain_and_the_top_level(address, masked):
    assert mask_email(address) == masked
    assert Redactor("masked").email(address) == masked


def test_an_unknown_redaction_is_refused():
    with pytest.raises(ValueError, match="unknown redaction 'some'"):
        Redactor("some")


def test_no_data_is_a_blank_ratio_and_never_zero():
    assert (ratio(0, 0), ratio(0, 5), ratio(2, 3)) == ("", "0.0000", "0.6667")
    # Halves round up, as the pages' percentages do: 1 of 32 is 0.0313, not 0.0312.
    assert (ratio(1, 32), ratio(13, 16)) == ("0.0313", "0.8125")
    assert (ratio(19999, 20000), ratio(20000, 20000)) == ("0.9999", "1.0000")  # one breach is never 1.0000
    assert (seconds(None), seconds(timedelta(minutes=2)), seconds(11.04)) == ("", "120.0", "11.04")
    # Exact as stored, so a figure just over a limit never reads as on it: 900.00004 s is late
    # for a 15-minute acknowledgement, and 29.9996 s is ring 10.
    assert seconds(timedelta(minutes=15, microseconds=40)) == "900.00004"
    assert (seconds(29.9996), seconds(0.0), seconds(1e-6), seconds(123456.789012)) == (
        "29.9996", "0.0", "0.000001", "123456.789012")


NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("status, result, due, expected", [
    ("sent", "met", NOW - timedelta(hours=1), (True, "met")),
    ("sent", "late", NOW - timedelta(hours=1), (True, "late")),
    ("failed", None, NOW - timedelta(minutes=1), (True, "unacknowledged")),
    ("pending", None, NOW + timedelta(minutes=1), (False, "pending")),
    ("pending", None, NOW, (False, "pending")),  # due exactly now: not yet late
    ("suppressed", None, NOW - timedelta(hours=1), (False, "")),
])
def test_acknowledgements_count_as_metrics_compliance_counts_them(status, result, due, expected):
    assert ack_result(status, result, due, NOW) == expected


@pytest.mark.parametrize("spare_minutes, bucket", [
    (150, "2 hours or more"), (120, "2 hours or more"), (90, "1 to 2 hours"), (45, "30 to 60 minutes"),
    (0, "0 to 30 minutes"), (-1, LATE),
])
def test_callbacks_are_charted_by_time_to_spare_at_the_first_attempt(spare_minutes, bucket):
    assert lead_bucket(NOW, NOW - timedelta(minutes=spare_minutes)) == bucket


def test_a_callback_without_an_attempt_is_charted_as_no_attempt():
    assert lead_bucket(NOW, None) == NO_ATTEMPT


@pytest.mark.parametrize("text, written", [
    ("=2+3", "'=2+3"), ("+SUM(A1)", "'+SUM(A1)"), ("-1+cmd", "'-1+cmd"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("+447700900123", "+447700900123"), ("-5", "-5"), ("Rang twice.", "Rang twice."), ("", ""),
])
def test_free_text_that_a_spreadsheet_would_run_gets_a_quote_in_front(text, written):
    from metrics.evidence.fields import inert

    assert inert(text) == written


def test_addresses_and_numbers_as_received_are_made_inert_masked_or_not():
    from metrics.evidence.fields import Redactor

    assert Redactor("none").email("=cmd@evil.example.com") == "'=cmd@evil.example.com"
    assert Redactor("masked").email("=cmd@evil.example.com").startswith("'=")
    assert Redactor("none").number("=1+2") == "'=1+2" and Redactor("none").number("+447700900123") == "+447700900123"
