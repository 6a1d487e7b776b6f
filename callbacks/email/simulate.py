"""Realistic SendGrid Inbound Parse posts for the demo and for trying a deployment.

A run mixes new enquiries (raw and parsed mode, some with HTML and an attachment),
replies that quote a reference or thread by In-Reply-To, an out-of-office auto-reply,
a bounce with an empty envelope sender, and a second delivery of an earlier message.
Addresses are in the reserved example domains; nobody real is written to.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

DESK_ADDRESS = "enquiries@desk.example.org"
PEOPLE = (
    ("Amira Khan", "amira.khan@example.net"), ("Ben Ortiz", "ben.ortiz@example.org"),
    ("Cara Lee", "cara.lee@example.com"), ("Dev Patel", "dev.patel@example.net"),
    ("Eve Jones", "eve.jones@example.org"), ("Finn Ray", "finn.ray@example.com"),
)
QUESTIONS = (
    ("Support worker hours for my new job", "I start a new job next month and need my support worker for 20 hours a week."),
    ("Taxi to work claim", "My claim for taxis to work was sent three weeks ago. Can you tell me where it is?"),
    ("Screen reader software", "I need JAWS on my new work laptop. Who pays for the licence?"),
    ("Change of address", "I have moved house. Please update my address before my next grant letter."),
)
# The order of kinds in a run: enquiries first, so replies and bounces have something to refer to.
PLAN = ("new_raw", "new_parsed", "reply_reference", "new_raw", "auto_reply", "reply_threaded", "bounce",
        "duplicate", "new_parsed")


@dataclass
class Sent:
    kind: str
    status: int
    answer: dict = field(default_factory=dict)


@dataclass
class _Thread:
    message_id: str
    subject: str
    person: tuple[str, str]
    raw: bytes
    reference: str | None = None
    fields: list = field(default_factory=list)  # exactly what was posted, to deliver it again


def inbound_url(url: str) -> str:
    """The endpoint from a base URL or the full one."""
    url = url.rstrip("/")
    return url if url.endswith("/email/inbound") else url + "/email/inbound"


def simulate(url: str, secret: str, count: int, now: datetime, report=print) -> list[Sent]:
    """Post `count` messages to `url`; return what each post got. Raises OSError if unreachable."""
    endpoint = inbound_url(url)
    threads: list[_Thread] = []
    sent: list[Sent] = []
    for n in range(count):
        kind = PLAN[n % len(PLAN)]
        if kind != "new_raw" and kind != "new_parsed" and not threads:
            kind = "new_raw"
        fields, thread = _message(kind, n, threads, now)
        status, answer = _post(endpoint, secret, fields)
        if thread is not None and status == 200:
            thread.reference = answer.get("reference")
            threads.append(thread)
        sent.append(Sent(kind, status, answer))
        report(f"{n + 1}/{count} {kind.replace('_', ' ')}: HTTP {status} "
               f"{answer.get('decision', '')} {answer.get('reference') or ''}".rstrip())
    return sent


def _headers(person, subject, message_id, now, extra=()) -> bytes:
    # SendGrid's inbound server stamps each message it takes in (the receipt time the help desk reads).
    lines = [f"Received: by mx0001.sendgrid.net with SMTP id {uuid.uuid4().hex[:10]} {format_datetime(now)}",
             f"From: {person[0]} <{person[1]}>", f"To: Help desk <{DESK_ADDRESS}>", f"Subject: {subject}",
             f"Date: {format_datetime(now)}", f"Message-ID: {message_id}", *extra]
    return ("\r\n".join(lines) + "\r\n").encode()


def _envelope(sender: str) -> tuple[str, bytes]:
    return ("envelope", json.dumps({"to": [DESK_ADDRESS], "from": sender}).encode())


def _message(kind: str, n: int, threads: list[_Thread], now: datetime):
    message_id = f"<{uuid.uuid4().hex}@mail.example.net>"
    if kind in ("new_raw", "new_parsed"):
        person = PEOPLE[n % len(PEOPLE)]
        subject, question = QUESTIONS[n % len(QUESTIONS)]
        text = f"Hello,\r\n\r\n{question}\r\n\r\nThank you,\r\n{person[0]}\r\n"
        headers = _headers(person, subject, message_id, now, ["MIME-Version: 1.0"])
        raw = headers + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()
        thread = _Thread(message_id, subject, person, raw)
        if kind == "new_raw":
            thread.fields = [("email", raw), _envelope(person[1])]
            return thread.fields, thread
        html = f"<p>Hello,</p><p>{question}</p><p>Thank you,<br>{person[0]}</p>".encode()
        thread.fields = [("headers", headers), ("text", text.encode()), ("html", html), ("from", f"{person[0]} <{person[1]}>".encode()),
                ("to", DESK_ADDRESS.encode()), ("subject", subject.encode()),
                ("charsets", json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "utf-8",
                                         "html": "utf-8"}).encode()),
                _envelope(person[1]), ("attachments", b"1"),
                ("attachment-info", json.dumps({"attachment1": {"filename": "letter.txt", "name": "letter.txt",
                                                                "type": "text/plain"}}).encode()),
                ("attachment1", b"A copy of my grant letter.\n", "letter.txt", "text/plain")]
        return thread.fields, thread
    original = threads[n % len(threads)]
    if kind == "duplicate":  # the same post again, as SendGrid retries it
        return original.fields, None
    if kind == "reply_reference":
        subject = f"RE: {original.subject} [{original.reference}]"
        body = f"Sorry, one more thing about {original.reference}: I can do mornings only.\r\n"
        return [("email", _headers(original.person, subject, message_id, now) + b"\r\n" + body.encode()),
                _envelope(original.person[1])], None
    if kind == "reply_threaded":
        headers = _headers(original.person, f"Re: {original.subject}", message_id, now,
                           [f"In-Reply-To: {original.message_id}", f"References: {original.message_id}"])
        return [("headers", headers), ("text", b"Thanks. Could you call me after 2pm?\r\n"),
                _envelope(original.person[1])], None
    if kind == "auto_reply":
        headers = _headers(original.person, f"Automatic reply: {original.subject}", message_id, now,
                           ["Auto-Submitted: auto-replied", f"In-Reply-To: {original.message_id}"])
        return [("email", headers + b"\r\nI am out of the office until Monday.\r\n"), _envelope(original.person[1])], None
    # A bounce: the acknowledgement to `original` could not be delivered.
    headers = _headers(("Mail Delivery System", "mailer-daemon@mx.example.net"), "Undelivered Mail Returned to Sender",
                       message_id, now, ["Auto-Submitted: auto-replied", "MIME-Version: 1.0",
                                         'Content-Type: multipart/report; report-type=delivery-status; boundary="b"'])
    body = (f"--b\r\nContent-Type: text/plain\r\n\r\nYour message about {original.reference} could not be "
            f"delivered: mailbox full.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; {original.person[1]}\r\n"
            "Action: failed\r\nStatus: 5.2.2\r\n--b--\r\n")
    return [("email", headers + b"\r\n" + body.encode()), _envelope("")], None


def _post(endpoint: str, secret: str, fields) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = bytearray()
    for name, data, *upload in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{upload[0]}"' if upload else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if upload:
            body += f"Content-Type: {upload[1]}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    token = base64.b64encode(f"inbound:{secret}".encode()).decode()
    request = urllib.request.Request(endpoint, data=bytes(body), method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Basic {token}",
        "User-Agent": "helpdesk email simulate"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {"error": error.read().decode("utf-8", "replace").strip()}
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):  # not the help desk's /email/inbound: a page, say
        return 502, {"error": "the answer is not the help desk's (not a JSON object): check --url"}
    return response.status, answer
