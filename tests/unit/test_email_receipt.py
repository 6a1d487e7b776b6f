"""When SendGrid received an email (callbacks.email.receipt): its own Received stamp, read with care."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from callbacks.email.receipt import sendgrid_received_at

UTC = timezone.utc
POSTED = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
BODY = b"From: Jo <jo@example.org>\r\nTo: desk@example.org\r\nSubject: Grant\r\n\r\nHello\r\n"


def message(*received: str, return_path: bool = True) -> bytes:
    lines = [b"Return-Path: <jo@example.org>\r\n"] if return_path else []
    lines += [f"Received: {text}\r\n".encode() for text in received]
    return b"".join(lines) + BODY


@pytest.mark.parametrize(("received", "expected"), [
    # SendGrid's own form: no ";" before the date.
    ("by mx0047p1mdw1.sendgrid.net with SMTP id t5sWpZPHWH Wed, 02 Dec 2026 09:20:07 +0000 (UTC)",
     datetime(2026, 12, 2, 9, 20, 7, tzinfo=UTC)),
    # RFC 5321's form, another zone, folded over two lines.
    ("from mail.example.org (mail.example.org [192.0.2.1])\r\n\tby mx2.sendgrid.net with ESMTPS id abc;\r\n"
     "\tWed, 2 Dec 2026 11:05:00 +0200", datetime(2026, 12, 2, 9, 5, tzinfo=UTC)),
    ("by MX1.SendGrid.NET with SMTP id x; 2 Dec 2026 09:59 +0000", datetime(2026, 12, 2, 9, 59, tzinfo=UTC)),
])
def test_sendgrids_stamp_starts_the_clock(received, expected):
    assert sendgrid_received_at(message(received), POSTED) == expected
    assert sendgrid_received_at(message(received, return_path=False), POSTED) == expected


@pytest.mark.parametrize("received", [
    # Not written by SendGrid's inbound server: a sender or a server on the way can write anything.
    ["by mail.example.org with SMTP id q; Wed, 02 Dec 2026 08:00:00 +0000"],
    ["by mail.sendgrid.net.example.org with SMTP id q; Wed, 02 Dec 2026 08:00:00 +0000"],
    # SendGrid's stamp further down: an earlier hop (mail sent through SendGrid), not the receipt.
    ["by relay.example.org with SMTP id q; Wed, 02 Dec 2026 09:58:00 +0000",
     "by mx1.sendgrid.net with SMTP id x; Wed, 02 Dec 2026 08:00:00 +0000"],
    # Unreadable, or with no zone.
    ["by mx1.sendgrid.net with SMTP id x; yesterday morning"],
    ["by mx1.sendgrid.net with SMTP id x; Wed, 02 Dec 2026 09:00:00 -0000"],
    ["by mx1.sendgrid.net with SMTP id x; Wed, 31 Feb 2026 09:00:00 +0000"],
    ["by mx1.sendgrid.net with SMTP id x; Fri, 31 Dec 9999 23:59:59 -0100"],  # past the year 9999 in UTC
    # Later than the post by more than the clocks could disagree, or older than SendGrid keeps mail.
    ["by mx1.sendgrid.net with SMTP id x; Wed, 02 Dec 2026 10:06:00 +0000"],
    ["by mx1.sendgrid.net with SMTP id x; Fri, 27 Nov 2026 09:00:00 +0000"],
    [],
])
def test_any_other_stamp_leaves_the_posts_own_time(received):
    assert sendgrid_received_at(message(*received), POSTED) == POSTED


def test_a_stamp_a_little_ahead_of_the_post_is_the_clocks_disagreeing():
    ahead = message("by mx1.sendgrid.net with SMTP id x; Wed, 02 Dec 2026 10:03:00 +0000")
    assert sendgrid_received_at(ahead, POSTED) == POSTED


def test_a_message_held_for_almost_three_days_counts_from_its_receipt():
    held = POSTED - timedelta(days=3)
    stamp = f"by mx1.sendgrid.net with SMTP id x; {held:%a, %d %b %Y %H:%M:%S} +0000"
    assert sendgrid_received_at(message(stamp), POSTED) == held


def test_headers_that_cannot_be_parsed_leave_the_posts_own_time():
    assert sendgrid_received_at(b"\xff\xfe not a message", POSTED) == POSTED
    assert sendgrid_received_at(b"", POSTED) == POSTED
