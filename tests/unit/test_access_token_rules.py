"""Access tokens' rules (helpdesk.access_tokens): what a token looks like, its digest, the names
and lifetimes a user may give, and the email telling them one was made."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest

from helpdesk.access_tokens import LIFETIMES, PREFIX, TOKEN, check_days, check_name, digest, new_secret
from helpdesk.account_notices import TOKEN_MADE, Notice
from helpdesk.user_rules import UserError
from tests.unit.test_two_step_rules import body

WHEN = datetime(2026, 12, 2, 14, 30, tzinfo=timezone.utc)


def test_a_new_token_is_the_prefix_and_256_random_bits_and_each_is_new():
    secrets = {new_secret() for _ in range(1000)}
    assert len(secrets) == 1000
    assert all(secret.startswith(PREFIX) and TOKEN.match(secret) and len(secret) == 47 for secret in secrets)


def test_only_the_digest_is_kept_and_it_is_sha256_of_the_whole_token():
    secret = "hdt_" + "A" * 43
    assert digest(secret) == hashlib.sha256(secret.encode("ascii")).hexdigest()
    assert digest(secret) != digest(secret[:-1] + "B") and len(digest(secret)) == 64


@pytest.mark.parametrize("typed, stored", [
    ("Monthly pack for DWP", "Monthly pack for DWP"),
    ("  Monthly \t pack\n for DWP  ", "Monthly pack for DWP"),  # spaces and line breaks as one space
    ("Pâquets mensuels — DWP", "Pâquets mensuels — DWP"),
    ("x" * 60, "x" * 60),
])
def test_a_name_is_stored_with_its_spaces_tidied(typed, stored):
    assert check_name(typed) == stored


@pytest.mark.parametrize("typed, said", [
    ("", "give the token a name"),
    (None, "give the token a name"),
    ("   ", "give the token a name"),
    ("x" * 61, "the name is too long"),
    ("nightly\x00", "control character"),
    ("nightly\u202e", "control character"),  # right-to-left override: shows one name as another
    ("nightly\udcff", "control character"),  # not UTF-8, as a terminal passes it on
])
def test_a_name_that_breaks_the_rules_is_refused_saying_why(typed, said):
    with pytest.raises(UserError, match=said):
        check_name(typed)


@pytest.mark.parametrize("typed", [*LIFETIMES, *(str(days) for days in LIFETIMES)])
def test_a_token_lasts_30_90_180_or_365_days(typed):
    assert check_days(typed) in LIFETIMES


@pytest.mark.parametrize("typed", [0, 7, 366, "ninety", "", None, "90.5", "-30"])
def test_no_other_lifetime_is_taken(typed):
    with pytest.raises(UserError, match="choose how long the token lasts: 30, 90, 180, 365 days"):
        check_days(typed)


def test_the_email_says_which_token_was_made_and_what_to_do_if_it_was_not_them():
    subject, text = body(Notice(TOKEN_MADE, "dana@example.org", "dana", "Dana Auditor", WHEN, token="Monthly"))
    assert subject == "An access token was made for you on Access to Work help desk"
    assert "Hello Dana Auditor, An access token named “Monthly” was made for your username dana" in text
    assert "at 14:30 on Wednesday 2 December 2026 (UK time)" in text
    assert "revoke it on the Access tokens page and tell an administrator at once" in text
