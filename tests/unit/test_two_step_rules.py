"""The rules of two-step sign-in (helpdesk.two_step_rules) and the emails about it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from helpdesk.account_notices import RECOVERY_CODE_USED, TWO_STEP_OFF, TWO_STEP_ON, Notice, message
from helpdesk.config import parse_settings
from helpdesk.two_step_rules import (app_code, app_code_step, grouped, looks_like_app_code, new_recovery_codes,
                                     new_secret, recovery_digest, setup_uri, step_at)

# RFC 6238's own test key (the ASCII "12345678901234567890", in base32) and times: its SHA-1 codes
# are 8 digits; an app shows their last 6.
RFC_KEY = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924"),
               (2000000000, "69279037"), (20000000000, "65353130")]
AT = datetime(2026, 12, 2, 10, 0, 15, tzinfo=timezone.utc)  # 15 seconds into a step


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


@pytest.mark.parametrize("seconds, code", RFC_VECTORS)
def test_the_codes_are_rfc_6238s(seconds, code):
    assert app_code(RFC_KEY, at(seconds)) == code[-6:]
    assert app_code_step(RFC_KEY, code[-6:], at(seconds), None) == seconds // 30


def test_a_code_is_taken_for_the_step_either_side_but_not_two_away():
    for offset, taken in ((-60, False), (-30, True), (0, True), (30, True), (60, False)):
        code = app_code(RFC_KEY, AT + timedelta(seconds=offset))
        assert (app_code_step(RFC_KEY, code, AT, None) is not None) is taken, offset


def test_a_step_at_or_before_the_last_one_taken_is_refused_so_no_code_is_taken_twice():
    code = app_code(RFC_KEY, AT)
    step = step_at(AT)
    assert app_code_step(RFC_KEY, code, AT, step - 1) == step
    assert app_code_step(RFC_KEY, code, AT, step) is None
    # the next step's code is still taken after this one
    assert app_code_step(RFC_KEY, app_code(RFC_KEY, AT + timedelta(seconds=30)), AT, step) == step + 1


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12\x003456", "🙂" * 6, None,
                                   "1" * 5000])
def test_what_is_not_six_ascii_digits_is_never_an_apps_code(typed):
    assert not looks_like_app_code(typed)
    assert app_code_step(RFC_KEY, typed, AT, None) is None


def test_spaces_and_hyphens_in_a_typed_code_do_not_matter():
    code = app_code(RFC_KEY, AT)
    assert app_code_step(RFC_KEY, f" {code[:3]} {code[3:]} ", AT, None) == step_at(AT)
    assert app_code_step(RFC_KEY, f"{code[:3]}-{code[3:]}", AT, None) == step_at(AT)


def test_a_new_key_is_160_random_bits_in_base32():
    keys = {new_secret() for _ in range(50)}
    assert len(keys) == 50 and all(len(key) == 32 and set(key) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
                                   for key in keys)
    assert grouped("ABCDEFGHIJKL") == "ABCD EFGH IJKL"


def test_the_setup_address_names_the_desk_and_the_user_without_a_colon_to_split_them():
    uri = setup_uri(RFC_KEY, "alex", "Access to Work: help desk")
    assert uri.startswith("otpauth://totp/Access%20to%20Work%20%20help%20desk:alex?")
    assert f"secret={RFC_KEY}" in uri and "issuer=Access%20to%20Work%20%20help%20desk" in uri


def test_recovery_codes_are_ten_unlike_groups_of_four_and_their_digest_ignores_case_and_hyphens():
    codes = new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert len(code) == 14 and code[4] == code[9] == "-"
        assert not set(code.replace("-", "")) & set("01IO")  # nothing to misread
    first = codes[0]
    assert recovery_digest(first) == recovery_digest(first.lower().replace("-", " "))
    assert recovery_digest(first) != recovery_digest(codes[1])
    assert first.replace("-", "") not in recovery_digest(first)


SETTINGS = parse_settings({"helpdesk": {"name": "Access to Work help desk"}, "hours": {"monday": ["08:00-18:00"]},
                           "smtp": {"host": "127.0.0.1", "from_address": "helpdesk@example.org"}}, source="test.toml")
WHEN = datetime(2026, 7, 3, 13, 30, tzinfo=timezone.utc)  # 14:30 in London


def body(notice: Notice) -> tuple[str, str]:
    mail = message(notice, SETTINGS)
    return mail["Subject"], " ".join(mail.get_content().split())


def test_the_notices_say_what_changed_when_and_what_to_do_if_it_was_not_them():
    subject, text = body(Notice(TWO_STEP_ON, "alex@example.org", "alex", "Alex Smith", WHEN))
    assert subject == "Two-step sign-in is set up for you on Access to Work help desk"
    assert "set up for your username alex" in text and "at 14:30 on Friday 3 July 2026" in text
    assert "someone knows your password: tell an administrator at once" in text

    subject, text = body(Notice(TWO_STEP_OFF, "alex@example.org", "alex", "Alex Smith", WHEN, by="Dana Admin"))
    assert subject == "Two-step sign-in was turned off for you on Access to Work help desk"
    assert text.startswith("Hello Alex Smith, Dana Admin turned off two-step sign-in for your username alex")
    _, text = body(Notice(TWO_STEP_OFF, "alex@example.org", "alex", "Alex Smith", WHEN, own=True))
    assert "You turned off two-step sign-in" in text
    _, text = body(Notice(TWO_STEP_OFF, "alex@example.org", "alex", "", WHEN))
    assert "Hello alex, An administrator turned off" in text

    subject, text = body(Notice(RECOVERY_CODE_USED, "alex@example.org", "alex", "Alex Smith", WHEN, left=9))
    assert subject == "A recovery code was used to sign in to Access to Work help desk"
    assert "It cannot be used again. You have 9 left." in text
    assert "someone has your password and your recovery codes" in text
