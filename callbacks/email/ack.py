"""The automatic acknowledgement of an email enquiry: headers, plain text and optional HTML.

Pure: the standard library and the configuration only. The words are written for screen
readers as much as for the eye: short sentences, one idea a line, no tables or ASCII art, times
in words ("8am to 6pm"), and the reference once more with its characters spaced out. Nothing
personal goes in beyond the sender's own subject line.
"""
from __future__ import annotations

import html
import re
import unicodedata
from datetime import datetime, time
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from helpdesk.clock import LONDON
from helpdesk.config import END_OF_DAY
from helpdesk.settings import Settings

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# "Subject: " and our subject on one line of at most 78 characters (RFC 5322 2.1.1): folded, the
# original would be split from our words, and some readers then show only the first line.
SUBJECT_LINE = 78
# A long thread's References are trimmed to its first message and the latest ones (RFC 5322 3.6.4).
REFERENCES_KEPT = 10
# Printable ASCII without "<", ">" and "@" on either side: nothing else may reach our headers.
_MESSAGE_ID = re.compile(r"<[!-;=?A-~]+@[!-;=?A-~]+>")


def acknowledgement_message(*, enquiry_reference: str, original_subject: str, original_message_id: str | None,
                            original_references: str | None, to_address: str, from_address: str,
                            settings: Settings, now: datetime, message_id_domain: str | None) -> EmailMessage:
    """The acknowledgement for one new email enquiry, ready to send.

    Threaded to the original (In-Reply-To, References), marked as an automatic reply (RFC 3834
    Auto-Submitted, and X-Auto-Response-Suppress for Exchange) so that well-behaved responders
    never answer it, with our own Message-ID: replies to it thread back to the enquiry.
    """
    message = EmailMessage()
    message["From"] = _sender(settings.name, from_address)
    message["To"] = to_address
    subject = subject_line(enquiry_reference, original_subject)
    message["Subject"] = subject if subject.isascii() else EncodedSubject(subject)
    message["Date"] = format_datetime(now.astimezone(LONDON))
    message["Message-ID"] = make_msgid(domain=message_id_domain or None)
    original = message_ids(original_message_id)[:1]
    if original:
        message["In-Reply-To"] = original[0]
        message["References"] = " ".join(thread_references(original_references, original[0]))
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    lines = body_lines(enquiry_reference, settings, now)
    message.set_content("\n".join(text for _, text in lines) + "\n")
    if settings.email.html:
        message.add_alternative(html_body(enquiry_reference, lines, settings), subtype="html")
    return message


class EncodedSubject(str):
    """A non-ASCII Subject, encoded by `email.header.Header` rather than the default policy's folder.

    Python 3.11's folder drops the space between two encoded words when it folds a line there
    ("ynglŷn â’r" arrives as "ynglŷnâ’r"). A value with a `name` is a header object to the
    policy, which then asks it to fold itself (email.policy.EmailPolicy.fold).
    """

    name = "Subject"

    def fold(self, *, policy) -> str:
        encoded = Header(str(self), "utf-8", header_name=self.name).encode(linesep=policy.linesep)
        return f"{self.name}: {encoded}{policy.linesep}"


def subject_line(reference: str, original_subject: str) -> str:
    """"We have your email [HD-2026-000123]: <the original subject, shortened>"."""
    ours = f"We have your email [{reference}]"
    shown = shorten(clean(original_subject), SUBJECT_LINE - len("Subject: ") - len(ours) - len(": "))
    return ours + (f": {shown}" if shown else "")


def clean(text: str | None) -> str:
    """One line of printable text: control characters dropped, runs of white space made one space."""
    return " ".join("".join(" " if _unprintable(ch) else ch for ch in text or "").split())


# Direction overrides could make a subject read differently from what it is; joiners (emoji,
# Persian, Indic scripts) are kept.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unprintable(ch: str) -> bool:
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch in _BIDI_CONTROLS
    return category[0] == "C" or (category[0] == "Z" and ch != " ")


def shorten(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with "…" when cut ("..." for
    plain ASCII text, which then stays unencoded on one header line)."""
    if len(text) <= limit:
        return text
    ellipsis = "..." if text.isascii() else "…"
    cut = text[:limit - len(ellipsis)]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:-–—") + ellipsis


def message_ids(header: str | None) -> list[str]:
    """The well-formed <id@domain> message identifiers in a header, in order (nothing else survives)."""
    return _MESSAGE_ID.findall(header or "")


def thread_references(original_references: str | None, original_message_id: str) -> list[str]:
    """The original's References plus its Message-ID, without repeats, trimmed to the first and the latest."""
    seen: list[str] = []
    for message_id in message_ids(original_references) + [original_message_id]:
        if message_id not in seen:
            seen.append(message_id)
    if len(seen) > REFERENCES_KEPT:
        seen = seen[:1] + seen[-(REFERENCES_KEPT - 1):]
    return seen


def _sender(name: str, address: str) -> str:
    try:
        return str(Address(display_name=clean(name), addr_spec=address))
    except (ValueError, IndexError):  # an address the header parser rejects: send it bare
        return address


# --------------------------------------------------------------------------- the words

# Each line of the text with its kind: "h" a heading, "p" a paragraph, "li" an item, "" a blank.
Line = tuple[str, str]


def body_lines(reference: str, settings: Settings, now: datetime) -> list[Line]:
    """The acknowledgement's text, a line at a time, for the plain part and the HTML part alike."""
    lines: list[Line] = [
        ("p", "Hello,"), ("", ""),
        ("p", "Thank you for your email. We have received it."), ("", ""),
        ("p", f"Your reference is {reference}."),
        ("p", f"Spelled out, that is {spell(reference)}."),
        ("p", "Please quote it if you contact us about this enquiry."), ("", ""),
        ("h", "What happens next"),
        ("p", "A member of our team will read your email and reply to you."),
        ("p", "We reply during our opening hours."),
    ]
    reopens = next_opening_words(settings, now)
    if reopens:
        lines.append(("p", f"We are closed at the moment. We open again at {reopens}."))
    hours = opening_hours_words(settings.opening_hours, bank_holidays=settings.bank_holidays)
    if hours:
        lines += [("", ""), ("h", "Opening hours")] + [("li", line) for line in hours]
    if settings.phone.strip():
        lines += [("", ""), ("h", "Phone"), ("p", f"You can also phone us on {clean(settings.phone)}.")]
    lines += [
        ("", ""), ("h", "If you reply"),
        ("p", f"Keep {reference} in the subject line. Your reply will then join this enquiry."),
        ("p", "You do not need to send your email again."), ("", ""),
        ("p", "This is an automatic message."), ("", ""),
        ("p", clean(settings.name)),
    ]
    return lines


def spell(reference: str) -> str:
    """"HD-2026-000123" as a screen reader should say it: "H D, 2026, 0 0 0 1 2 3"."""
    parts = reference.split("-")
    if len(parts) != 3:
        return " ".join(reference)
    letters, year, number = parts
    return f"{' '.join(letters)}, {year}, {' '.join(number)}"


def time_words(moment: time) -> str:
    """"8am", "5:30pm", "midday", "midnight" (GOV.UK style)."""
    if moment == time(0) or moment == END_OF_DAY:
        return "midnight"
    if moment == time(12):
        return "midday"
    hour = moment.hour % 12 or 12
    minutes = f":{moment.minute:02d}" if moment.minute else ""
    return f"{hour}{minutes}{'am' if moment.hour < 12 else 'pm'}"


def _intervals_words(intervals: tuple[tuple[time, time], ...]) -> str:
    if intervals == ((time(0), END_OF_DAY),):
        return "open all day"
    return listed([f"{time_words(opens)} to {time_words(closes)}" for opens, closes in intervals])


def day_names(days: list[int], plural: bool = False) -> list[str]:
    """[0, 1, 2, 3, 4] -> ["Monday to Friday"]; [0, 1, 3] -> ["Monday", "Tuesday", "Thursday"]."""
    names: list[str] = []
    run: list[int] = []
    for day in sorted(days) + [None]:
        if run and (day is None or day != run[-1] + 1):
            if len(run) >= 3:
                names.append(f"{DAYS[run[0]]} to {DAYS[run[-1]]}")
            else:
                names += [DAYS[d] + ("s" if plural else "") for d in run]
            run = []
        if day is not None:
            run.append(day)
    return names


def listed(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def opening_hours_words(opening_hours: dict[int, tuple[tuple[time, time], ...]],
                        bank_holidays: bool = True) -> list[str]:
    """The weekly hours in sentences, days with the same hours together, and the days we are closed
    (bank holidays among them unless the desk opens on them too)."""
    groups: dict[tuple, list[int]] = {}
    for day in sorted(opening_hours):
        if opening_hours[day]:
            groups.setdefault(tuple(opening_hours[day]), []).append(day)
    if not groups:
        return []
    lines = [f"{listed(day_names(days))}: {_intervals_words(hours)}." for hours, days in groups.items()]
    closed = day_names([day for day in range(7) if not opening_hours.get(day)], plural=True)
    closed += ["bank holidays"] if bank_holidays else []
    if closed:
        lines.append(f"We are closed on {listed(closed)}.")
    return lines


def next_opening_words(settings: Settings, now: datetime) -> str | None:
    """"8am on Wednesday 25 November" when the desk is closed at `now`, else None."""
    calendar = settings.calendar
    if calendar.is_open(now):
        return None
    try:
        opens = calendar.next_opening(now).astimezone(LONDON)
    except ValueError:  # never opens within a year: say nothing rather than something wrong
        return None
    if opens.date() == now.astimezone(LONDON).date():
        return f"{time_words(opens.time())} today"
    return f"{time_words(opens.time())} on {opens:%A} {opens.day} {opens:%B}"


def html_body(reference: str, lines: list[Line], settings: Settings) -> str:
    """A simple semantic HTML version of the same lines: headings, paragraphs, a list for the hours."""
    title = html.escape(f"We have your email: reference {reference}")
    parts = ["<!doctype html>", '<html lang="en-GB" dir="ltr">', "<head>", '<meta charset="utf-8">',
             f"<title>{title}</title>", "</head>", "<body>", f"<h1>{title}</h1>"]
    in_list = False
    for kind, text in lines:
        if kind != "li" and in_list:
            parts.append("</ul>")
            in_list = False
        if kind == "h":
            parts.append(f"<h2>{html.escape(text)}</h2>")
        elif kind == "p":
            parts.append(f"<p>{_html_text(text, settings)}</p>")
        elif kind == "li":
            if not in_list:
                parts.append("<ul>")
                in_list = True
            parts.append(f"<li>{html.escape(text)}</li>")
    if in_list:
        parts.append("</ul>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _html_text(text: str, settings: Settings) -> str:
    escaped = html.escape(text)
    phone = clean(settings.phone)
    digits = "".join(ch for ch in phone if ch.isdigit() or ch == "+")
    if phone and digits and html.escape(phone) in escaped:
        link = f'<a href="tel:{html.escape(digits)}">{html.escape(phone)}</a>'
        escaped = escaped.replace(html.escape(phone), link, 1)
    return escaped
