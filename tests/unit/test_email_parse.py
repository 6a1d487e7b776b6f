"""Reading inbound email: the corpus of awkward messages, and the rules one by one."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbacks.email.parse import (
    MAX_TEXT_CHARS,
    classify,
    clean_text,
    dedupe_key,
    html_to_text,
    message_ids,
    normalise_message_id,
    parse,
    references_in,
)
from tests.unit.email_corpus import OWN_ADDRESS, cases

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[case.file for case in CASES])
def test_each_corpus_message_is_read_and_classified_as_expected(case):
    parsed = parse(case.raw)
    assert classify(parsed, (OWN_ADDRESS,)) == case.classify
    assert len(parsed.text) <= MAX_TEXT_CHARS
    assert "\x00" not in parsed.text + parsed.subject
    if case.text_contains:
        assert case.text_contains in parsed.text
    if case.attachments is not None:
        assert parsed.attachments == case.attachments


def _raw(name):
    return next(case.raw for case in CASES if case.file == name)


def test_a_huge_body_is_cut_to_the_cap_and_says_so():
    parsed = parse(_raw("07-huge-body.eml"))
    assert len(parsed.text) == MAX_TEXT_CHARS
    assert parsed.text_truncated


def test_html_only_mail_becomes_text_without_styles_or_scripts():
    text = parse(_raw("06-html-only.eml")).text
    assert "Dear help desk," in text
    assert "alert" not in text and "color:red" not in text and "<p>" not in text


def test_an_undecodable_charset_still_gives_the_readable_words_and_subject():
    parsed = parse(_raw("05-undecodable-charset.eml"))
    assert parsed.subject.startswith("Café and “quotes”")
    assert parsed.sender == "bad.charset@example.com"


def test_an_unbalanced_quote_in_from_still_finds_the_address():
    assert parse(_raw("09-malformed-headers.eml")).sender == "dev.patel@example.com"


def test_a_missing_message_id_reads_as_none_and_is_deduplicated_by_the_raw_bytes():
    raw = _raw("10-missing-message-id.eml")
    parsed = parse(raw)
    assert parsed.message_id is None
    assert dedupe_key(parsed.message_id, raw) == hashlib.sha256(raw).hexdigest()


def test_a_redelivery_has_the_same_dedupe_key_though_its_bytes_differ():
    first, again = _raw("01-ordinary-enquiry.eml"), _raw("04-duplicate-delivery.eml")
    assert first != again
    assert dedupe_key(parse(first).message_id, first) == dedupe_key(parse(again).message_id, again)


def test_threading_headers_are_read_in_order():
    parsed = parse(_raw("03-reply-threaded-by-in-reply-to.eml"))
    assert parsed.in_reply_to == ("<CAF7ordinary.0001@mail.example.net>",)
    assert parsed.references == ("<CAF7ordinary.0001@mail.example.net>",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<Abc.123@MAIL.Example.COM>", "<Abc.123@mail.example.com>"),
        ("  <abc@example.com> (comment)", "<abc@example.com>"),
        ("abc@example.com", "<abc@example.com>"),
        ("", None),
        (None, None),
        ("<>", None),
        ("not an id", None),
    ],
)
def test_message_ids_are_normalised_with_the_domain_lower_cased(value, expected):
    assert normalise_message_id(value) == expected


def test_references_headers_give_every_id_once():
    assert message_ids("<a@X.org> <b@y.org>\r\n <a@x.org>") == ("<a@x.org>", "<b@y.org>")


def test_references_are_found_in_any_case_and_only_in_the_right_shape():
    text = "Re: hd-2026-000123 and HD-2026-000123, not HD-26-1 nor XHD-2026-0001234"
    assert references_in(text) == ["HD-2026-000123"]
    assert references_in("first HD-2025-000002 then HD-2026-000001") == ["HD-2025-000002", "HD-2026-000001"]


def _message(*headers: str, body: str = "Hello\r\n") -> bytes:
    base = ["From: Pat <pat@example.com>", "To: enquiries@desk.example.org", "Subject: A question",
            "Message-ID: <m1@example.com>"]
    return ("\r\n".join(base + list(headers)) + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize(
    ("headers", "subject", "expected"),
    [
        (["Auto-Submitted: auto-generated"], None, "auto_reply"),
        (["Auto-Submitted: no"], None, None),
        (["X-Autoreply: yes"], None, "auto_reply"),
        (["X-Autorespond: on"], None, "auto_reply"),
        (["Precedence: auto_reply"], None, "auto_reply"),
        (["Precedence: junk"], None, "list"),
        (["List-Unsubscribe: <mailto:x@example.com>"], None, "list"),
        (["X-Failed-Recipients: pat@example.com"], None, "bounce"),
        (["Return-Path: <>"], None, "null_sender"),
        (["Return-Path: <pat@example.com>"], None, None),
        ([], "Out of Office: back Monday", "auto_reply"),
        ([], "Out of office hours support?", None),
        ([], "Can I get an automatic reply?", None),
    ],
)
def test_classify_names_mail_that_must_not_be_acknowledged(headers, subject, expected):
    raw = _message(*headers)
    if subject:
        raw = raw.replace(b"Subject: A question", f"Subject: {subject}".encode())
    assert classify(parse(raw), (OWN_ADDRESS,)) == expected


def test_own_addresses_are_matched_whatever_their_case():
    raw = _message().replace(b"pat@example.com", b"Enquiries@DESK.example.org")
    assert classify(parse(raw), ("enquiries@desk.example.org",)) == "own_address"


def test_html_to_text_keeps_blocks_on_their_own_lines():
    assert html_to_text("<p>One &amp; two</p><p>Three<br>Four</p>") == "One & two\n\nThree\nFour"


def test_clean_text_recovers_8_bit_utf8_and_drops_control_characters():
    assert clean_text("caf\udcc3\udca9\x00!") == "café!"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_parse_never_raises_on_arbitrary_bytes(raw):
    parsed = parse(raw)
    assert isinstance(parsed.text, str)
    classify(parsed, (OWN_ADDRESS,))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b"From: ", b"Subject: ", b"Content-Type: multipart/mixed; boundary=x", b"Content-Type: text/html; charset=",
    b"Message-ID: <", b"=?utf-8?b?", b"\xff\xfe", b"\r\n", b"\r\n\r\n", b"--x\r\n", b"@", b"<", b">", b'"',
    b"Return-Path: <>", b"Content-Transfer-Encoding: base64", b"\x00", b"a@b.c",
]), max_size=60))
def test_parse_never_raises_on_header_like_garbage(pieces):
    parsed = parse(b"".join(pieces))
    assert len(parsed.text) <= MAX_TEXT_CHARS
    assert "\x00" not in parsed.text + parsed.subject + (parsed.sender or "")
