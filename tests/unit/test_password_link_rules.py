"""A user's email address, and the email that carries a link to choose a password: pure functions."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from callbacks.smtp import MailError
from helpdesk.config import parse_settings
from helpdesk.password_links import ASKED, SENT, Link, digest, hide_secret, link_url, message, password_mark
from helpdesk.user_rules import UserError, check_email

SETTINGS = parse_settings({"helpdesk": {"name": "Access to Work help desk"}, "hours": {"monday": ["08:00-18:00"]},
                           "smtp": {"host": "127.0.0.1", "from_address": "helpdesk@example.org"}}, source="test.toml")
# 14:30 in London (BST), on a Friday.
EXPIRES = datetime(2026, 7, 3, 13, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("typed, stored", [
    ("alex@example.org", "alex@example.org"),
    ("  Alex.Smith@Example.ORG ", "alex.smith@example.org"),
    ("a+desk@sub.example.co.uk", "a+desk@sub.example.co.uk"),
    ("", None),
    ("   ", None),
    (None, None),
])
def test_an_address_is_stored_in_lower_case_and_nothing_clears_it(typed, stored):
    assert check_email(typed) == stored


@pytest.mark.parametrize("typed, problem", [
    ("alex", "not one"),
    ("alex@", "not one"),
    ("@example.org", "not one"),
    ("alex@example", "not one"),
    ("alex smith@example.org", "not one"),
    ("alex@@example.org", "not one"),
    ("Alex <alex@example.org>", "not one"),
    ("alex@example.org, sam@example.org", "not one"),
    ("alex@example.org\nBcc: x@example.org", "not one"),
    ("alex\x00@example.org", "not one"),
    ("a" * 250 + "@example.org", "too long"),
])
def test_anything_not_one_address_is_refused_naming_the_problem(typed, problem):
    with pytest.raises(UserError, match=problem):
        check_email(typed)


def link(kind: str = SENT, display_name: str = "Alex Smith") -> Link:
    return Link("SECRET-token_1", kind, EXPIRES, "alex", display_name, "manager", "alex@bücher.example")


def test_a_link_sent_by_an_administrator_says_who_sent_it_the_username_role_and_until_when():
    mail = message(link(), SETTINGS, "https://helpdesk.example.org/", sent_by="Dana Admin")
    assert mail["Subject"] == "Choose your password for Access to Work help desk"
    assert mail["From"] == "helpdesk@example.org" and mail["To"] == "alex@xn--bcher-kva.example"
    assert mail["Auto-Submitted"] == "auto-generated"
    # Dated and identified as every message of the app's own is (callbacks.smtp.plain_message).
    assert mail["Date"] and mail["Message-ID"].endswith("@example.org>")
    body = " ".join(mail.get_content().split())
    assert body.startswith("Hello Alex Smith, Dana Admin has sent you this link")
    assert "Your username is alex, and your role is Manager." in body
    assert "https://helpdesk.example.org/password/link/SECRET-token_1" in body
    assert "The link works once, until 14:30 on Friday 3 July 2026 (UK time)." in body


def test_a_link_asked_for_says_the_password_stays_as_it_is_if_it_was_not_them():
    mail = message(link(ASKED, display_name=""), SETTINGS, "https://helpdesk.example.org")
    body = " ".join(mail.get_content().split())
    assert mail["Subject"] == "Choose a new password for Access to Work help desk"
    assert body.startswith("Hello alex, Someone, probably you, asked for a link")
    assert "If it was not you who asked, ignore this email: your password stays as it is." in body


def test_no_link_is_made_without_public_base_url_or_an_address_to_send_from():
    with pytest.raises(MailError, match="PUBLIC_BASE_URL is not set"):
        link_url(None, "x")
    no_sender = parse_settings({"hours": {"monday": ["08:00-18:00"]}, "smtp": {"host": "127.0.0.1"}},
                               source="test.toml")
    with pytest.raises(MailError, match="set smtp.from_address"):
        message(link(), no_sender, "https://helpdesk.example.org")


def test_the_digest_and_the_password_mark_do_not_hold_what_they_are_made_from():
    assert len(digest("token")) == 64 and "token" not in digest("token") and digest("token") != digest("token2")
    assert password_mark("scrypt:32768:8:1$salt$hash") != password_mark("scrypt:32768:8:1$salt$hash2")
    assert len(password_mark("x")) == 32


@pytest.mark.parametrize("line, shown", [
    ('GET /password/link/Ab_c-9 HTTP/1.1', 'GET /password/link/[secret] HTTP/1.1'),
    ('GET /password/link/Ab_c-9?x=1 HTTP/1.1', 'GET /password/link/[secret]?x=1 HTTP/1.1'),
    ('"https://h.example/password/link/Ab_c-9"', '"https://h.example/password/link/[secret]"'),
    ('GET /password/choose HTTP/1.1', 'GET /password/choose HTTP/1.1'),
    ('GET /calls HTTP/1.1', 'GET /calls HTTP/1.1'),
])
def test_an_access_log_line_keeps_no_link_secret(line, shown):
    assert hide_secret(line) == shown
