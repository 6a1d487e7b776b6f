"""When SendGrid received an email: the start of its acknowledgement clock. Pure.

DESIGN: "The clock starts at the contact (call arrival or email receipt)". SendGrid posts a
message when it arrives, but after a post the help desk could not store (a 503, the database
down) it posts it again later, for up to 3 days. Timing from the post that was stored would
hide that wait; the time SendGrid's own mail server stamped on the message does not.

Only that stamp is read: the topmost Received header (the last server to take the message,
written by SendGrid's inbound server, "Received: by mx0000.sendgrid.net with SMTP id ...
Tue, 01 Mar 2022 13:31:57 +0000 (UTC)"). Any earlier Received header was written by servers
along the way, and a sender can write anything there. A stamp that is not SendGrid's, that
cannot be read, or that is later than the post or older than SendGrid keeps a message gives
the post's own time instead.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime

# SendGrid drops a message it could not post for 3 days; a little more for its queue and clocks.
LONGEST_HELD = timedelta(days=3, hours=6)
# A stamp this little ahead of the post is the two clocks disagreeing: the post's time is used.
AHEAD = timedelta(minutes=5)
# "by mx0047p1mdw1.sendgrid.net" (any of SendGrid's inbound servers).
_BY_SENDGRID = re.compile(r"\bby\s+[A-Za-z0-9.-]+\.sendgrid\.net(?=[\s;(]|$)", re.IGNORECASE)
# The date-time at the end of a Received header, after a ";" (RFC 5321) or, as SendGrid
# writes it, after the SMTP id with none: "Tue, 01 Mar 2022 13:31:57 +0000 (UTC)".
_DATE = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{4}\s+"
                   r"\d{1,2}:\d{2}(?::\d{2})?\s*(?:[+-]\d{4}|UT|GMT|[A-Z]{1,3})?")


def sendgrid_received_at(raw: bytes, posted_at: datetime) -> datetime:
    """When SendGrid received the message `raw`, posted to the help desk at `posted_at` (aware)."""
    stamped = _stamp(raw)
    if stamped is None or stamped > posted_at + AHEAD or stamped < posted_at - LONGEST_HELD:
        return posted_at
    return min(stamped, posted_at)


def _stamp(raw: bytes) -> datetime | None:
    try:
        received = BytesHeaderParser(policy=compat32).parsebytes(raw).get_all("Received") or []
    except (ValueError, TypeError):
        return None
    if not received:
        return None
    top = " ".join(str(received[0]).split())
    if not _BY_SENDGRID.search(top):
        return None
    dates = _DATE.findall(top.rpartition(";")[2] if ";" in top else top)
    if not dates:
        return None
    try:
        stamped = parsedate_to_datetime(dates[-1])
        if stamped is None or stamped.tzinfo is None:  # "-0000": a time whose zone is not known
            return None
        return stamped.astimezone(timezone.utc)
    except (ValueError, TypeError, IndexError, OverflowError):  # OverflowError: past the year 9999 in UTC
        return None
