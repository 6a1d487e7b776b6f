"""POST /email/inbound (SendGrid Inbound Parse) on SQLite and PostgreSQL: raw and parsed modes."""
from __future__ import annotations

import base64
import email
import email.policy
import io
import json

import pytest
from sqlalchemy import func, select

from callbacks.email.inbound import MAX_POST_BYTES
from helpdesk.models import EmailAcknowledgement, InboundEmail
from tests.unit.email_corpus import cases

SECRET = "inbound-secret-0123456789abcdef"
ORDINARY = next(c.raw for c in cases() if c.file == "01-ordinary-enquiry.eml")


@pytest.fixture
def app(app):
    app.config["SENDGRID_INBOUND_SECRET"] = SECRET
    return app


def auth(password: str = SECRET, user: str = "inbound") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def stored(app) -> list[InboundEmail]:
    with app.extensions["helpdesk.db"].session() as session:
        return list(session.scalars(select(InboundEmail).order_by(InboundEmail.id)))


def acknowledgements(app) -> int:
    with app.extensions["helpdesk.db"].session() as session:
        return session.scalar(select(func.count(EmailAcknowledgement.id)))


ENVELOPE = json.dumps({"to": ["enquiries@desk.example.org"], "from": "amira.khan@example.net"})


def _multipart(fields: list[tuple[str, bytes, str | None, str | None]], boundary: str = "xYzZY") -> tuple[bytes, str]:
    """A multipart/form-data body with fields as bytes (name, data, filename, content type)."""
    body = io.BytesIO()
    for name, data, filename, content_type in fields:
        body.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body.write(f"Content-Disposition: {disposition}\r\n".encode())
        if content_type:
            body.write(f"Content-Type: {content_type}\r\n".encode())
        body.write(b"\r\n" + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"


def post_bytes(client, fields, headers=None):
    body, content_type = _multipart(fields)
    return client.post("/email/inbound", data=body, content_type=content_type,
                       headers=auth() if headers is None else headers)


def test_raw_mode_keeps_8_bit_bytes_exactly_and_adds_the_envelope_return_path(client, app):
    raw = ORDINARY.replace(b"Hello,", b"Hello \xe9\xff,")  # not UTF-8: must not be "repaired"
    response = post_bytes(client, [("email", raw, None, None), ("envelope", ENVELOPE.encode(), None, None)])
    assert response.status_code == 200, response.data
    assert response.json == {"stored": True, "duplicate": False, "decision": "new_enquiry",
                             "reference": "HD-2026-000001"}
    (row,) = stored(app)
    assert row.raw == b"Return-Path: <amira.khan@example.net>\r\n" + raw
    assert (row.source, row.sender) == ("sendgrid", "amira.khan@example.net")
    assert acknowledgements(app) == 1


def test_a_bounce_posted_with_an_empty_envelope_sender_is_a_null_sender(client, app):
    raw = b"From: someone@example.com\r\nSubject: Hi\r\nMessage-ID: <b@example.com>\r\n\r\nbody\r\n"
    envelope = json.dumps({"to": ["enquiries@desk.example.org"], "from": ""}).encode()
    response = post_bytes(client, [("email", raw, None, None), ("envelope", envelope, None, None)])
    assert response.json["decision"] == "null_sender"
    assert stored(app)[0].raw.startswith(b"Return-Path: <>\r\n")
    assert acknowledgements(app) == 0


def test_a_duplicate_post_is_acknowledged_to_sendgrid_but_stored_once(client, app):
    first = post_bytes(client, [("email", ORDINARY, None, None)])
    again = post_bytes(client, [("email", ORDINARY, None, None)])
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json["duplicate"] is True and again.json["reference"] == first.json["reference"]
    assert len(stored(app)) == 1
    assert acknowledgements(app) == 1


PARSED_HEADERS = (
    b"Received: by mx.sendgrid.net with SMTP id abc; Tue, 24 Nov 2026 10:00:00 +0000\n"
    b"From: Ben Ortiz <ben@example.org>\n"
    b"To: enquiries@desk.example.org\n"
    b"Subject: =?iso-8859-1?q?Grant_=A3250?=\n"
    b"Message-ID: <parsed.1@example.org>\n"
    b"In-Reply-To: <elsewhere@example.org>\n"
    b"References: <elsewhere@example.org>\n"
    b"  <folded@example.org>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=\"original\"\n"
)


def parsed_fields(**extra):
    fields = [
        ("headers", PARSED_HEADERS, None, None),
        ("from", b"Ben Ortiz <ben@example.org>", None, None),
        ("to", b"enquiries@desk.example.org", None, None),
        ("subject", "Grant £250".encode(), None, None),
        ("text", "My grant is £250 a week.\n".encode("iso-8859-1"), None, None),
        ("html", "<p>My grant is £250 a week.</p>".encode("iso-8859-1"), None, None),
        ("charsets", json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "iso-8859-1",
                                 "html": "iso-8859-1"}).encode(), None, None),
        ("envelope", json.dumps({"to": ["enquiries@desk.example.org"], "from": "ben@example.org"}).encode(),
         None, None),
        ("SPF", b"pass", None, None),
        ("attachments", b"2", None, None),
        ("attachment-info", json.dumps({
            "attachment1": {"filename": "payslip.pdf", "name": "payslip.pdf", "type": "application/pdf"},
            "attachment2": {"filename": "logo.png", "name": "logo.png", "type": "image/png", "content-id": "logo1"},
        }).encode(), None, None),
        ("attachment1", b"%PDF-1.4 payslip", "payslip.pdf", "application/pdf"),
        ("attachment2", b"\x89PNG\r\n\x1a\n", "logo.png", "image/png"),
    ]
    return fields + list(extra.items())


def test_parsed_mode_rebuilds_one_faithful_message(client, app):
    response = post_bytes(client, parsed_fields())
    assert response.status_code == 200, response.data
    assert response.json["decision"] == "new_enquiry"
    (row,) = stored(app)
    message = email.message_from_bytes(row.raw, policy=email.policy.default)
    assert message["Return-Path"] == "<ben@example.org>"
    assert str(message["Subject"]) == "Grant £250"
    assert message["Message-ID"] == "<parsed.1@example.org>"
    assert message["References"].split() == ["<elsewhere@example.org>", "<folded@example.org>"]
    assert message["Received"].startswith("by mx.sendgrid.net")
    assert message.get_content_type() == "multipart/mixed"
    assert len(message.get_all("Content-Type")) == 1  # the original's is replaced, not repeated
    body = message.get_body(preferencelist=("plain",))
    assert body.get_content_charset() == "iso-8859-1"
    assert body.get_payload(decode=True) == "My grant is £250 a week.\n".encode("iso-8859-1")
    assert message.get_body(preferencelist=("html",)) is not None
    files = {part.get_filename(): part for part in message.iter_attachments()}
    assert files["payslip.pdf"].get_payload(decode=True) == b"%PDF-1.4 payslip"
    assert files["logo.png"]["Content-ID"] == "<logo1>"
    assert files["logo.png"].get_content_type() == "image/png"
    assert row.message_id == "<parsed.1@example.org>" and row.subject == "Grant £250"


def test_a_message_posted_parsed_and_then_read_raw_from_the_mailbox_is_stored_once(client, app):
    """The same email through both ways in (SendGrid's parsed post, then IMAP's raw bytes, whose
    headers and MIME layout differ) is one message, acknowledged once."""
    from datetime import datetime, timezone
    from email.message import EmailMessage

    from callbacks.email.intake import store_inbound

    assert post_bytes(client, parsed_fields()).json["decision"] == "new_enquiry"
    original = EmailMessage()
    original["Received"] = "from mail.example.org by imap.desk.example.org"
    original["From"] = "Ben Ortiz <ben@example.org>"
    original["To"] = "enquiries@desk.example.org"
    original["Subject"] = "Grant £250"
    original["Message-ID"] = "<parsed.1@example.org>"
    original.set_content("My grant is £250 a week.\r\n")
    original.add_alternative("<p>My grant is £250 a week.</p>", subtype="html")
    original.add_attachment(b"%PDF-1.4 payslip", maintype="application", subtype="pdf", filename="payslip.pdf")
    with app.extensions["helpdesk.db"].session() as session, session.begin():
        again = store_inbound(session, original.as_bytes(), source="imap", settings=app.extensions["helpdesk.settings"],
                              received_at=datetime(2026, 11, 24, 10, 5, tzinfo=timezone.utc))
    assert again.duplicate and len(stored(app)) == 1 and acknowledgements(app) == 1


def test_parsed_mode_with_text_only_is_a_plain_message(client, app):
    fields = [f for f in parsed_fields() if not f[0].startswith("attachment") and f[0] != "html"]
    assert post_bytes(client, fields).status_code == 200
    message = email.message_from_bytes(stored(app)[0].raw, policy=email.policy.default)
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "My grant is £250 a week.\n"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([("from", b"x@example.com", None, None)], "Neither an email field"),
        ([("email", b" \r\n", None, None)], "The email field is empty"),
        ([("headers", b"\n\n", None, None)], "no header lines"),
        ([("email", ORDINARY, None, None), ("envelope", b"{not json", None, None)], "envelope field is not valid JSON"),
        ([("headers", PARSED_HEADERS, None, None), ("charsets", b"[1]", None, None)], "must be JSON objects"),
    ],
)
def test_a_post_that_is_not_an_inbound_parse_request_gets_400_with_the_reason(client, app, fields, reason):
    response = post_bytes(client, fields)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert stored(app) == []


@pytest.mark.parametrize("described", [[1], "x", None, 7])
def test_an_attachment_described_oddly_is_kept_with_its_upload_s_own_name_and_type(client, app, described):
    info = json.dumps({"attachment1": described, "attachment2": {"filename": "logo.png"}}).encode()
    fields = [(f[0], info, None, None) if f[0] == "attachment-info" else f for f in parsed_fields()]
    fields.append(("attachment" + "9" * 5000, b"late", "late.txt", "text/plain"))  # a number too long for int()
    response = post_bytes(client, fields)
    assert response.status_code == 200, response.data
    message = email.message_from_bytes(stored(app)[0].raw, policy=email.policy.default)
    files = {part.get_filename(): part for part in message.iter_attachments()}
    assert files["payslip.pdf"].get_payload(decode=True) == b"%PDF-1.4 payslip"
    assert files["payslip.pdf"].get_content_type() == "application/pdf"
    assert [part.get_filename() for part in message.iter_attachments()] == ["payslip.pdf", "logo.png", "late.txt"]


def test_an_envelope_sender_with_a_line_break_is_refused(client, app):
    envelope = json.dumps({"to": ["enquiries@desk.example.org"], "from": "evil@example.org\n"}).encode()
    fields = [(f[0], envelope, None, None) if f[0] == "envelope" else f for f in parsed_fields()]
    response = post_bytes(client, fields)
    assert response.status_code == 400 and "The envelope's from is not an address." in response.get_data(as_text=True)
    assert stored(app) == []


def test_a_raw_message_sent_as_an_upload_is_taken_too(client, app):
    response = post_bytes(client, [("email", ORDINARY, "message.eml", "message/rfc822")])
    assert response.status_code == 200 and stored(app)[0].raw == ORDINARY


def test_a_post_that_is_not_multipart_gets_400(client, app):
    response = client.post("/email/inbound", data={"email": "x"}, headers=auth(),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "multipart/form-data" in response.get_data(as_text=True)


def test_a_post_of_too_many_parts_gets_413_saying_so(client, app):
    fields = [("email", ORDINARY, None, None)] + [(f"x{n}", b"", None, None) for n in range(1001)]
    response = post_bytes(client, fields)
    assert response.status_code == 413 and "or has more than 1,000 parts" in response.get_data(as_text=True)
    assert stored(app) == []


def test_a_truncated_form_gets_400(client, app):
    body, content_type = _multipart([("email", ORDINARY, None, None)])
    response = client.post("/email/inbound", data=body[:-20], content_type=content_type, headers=auth())
    assert response.status_code == 400 and stored(app) == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (auth("wrong-secret-0123456789"), 403), (auth(""), 403), ({"Authorization": "Bearer " + SECRET}, 401)],
)
def test_a_post_without_the_secret_is_refused_and_stores_nothing(client, app, headers, status):
    response = post_bytes(client, [("email", ORDINARY, None, None)], headers=headers)
    assert response.status_code == status
    assert stored(app) == []


def test_without_a_configured_secret_nothing_is_accepted(client, app):
    app.config["SENDGRID_INBOUND_SECRET"] = None
    response = post_bytes(client, [("email", ORDINARY, None, None)])
    assert response.status_code == 403 and stored(app) == []


def test_a_post_over_the_limit_gets_413_and_stores_nothing(client, app):
    huge = b"x" * (MAX_POST_BYTES + 1)
    response = post_bytes(client, [("email", huge, None, None)])
    assert response.status_code == 413
    assert stored(app) == []


def test_a_large_message_under_the_limit_is_stored_whole(client, app):
    raw = ORDINARY + b"y" * (2 * 1024 * 1024)  # above Flask's 500 kB form-field default
    assert post_bytes(client, [("email", raw, None, None)]).status_code == 200
    assert stored(app)[0].raw == raw


def test_a_database_failure_answers_503_so_sendgrid_retries(client, app, monkeypatch):
    import callbacks.email.inbound as inbound

    def fail(*args, **kwargs):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(inbound, "store_inbound", fail)
    response = post_bytes(client, [("email", ORDINARY, None, None)])
    assert response.status_code == 503
    monkeypatch.undo()
    assert post_bytes(client, [("email", ORDINARY, None, None)]).status_code == 200
    assert len(stored(app)) == 1


def test_the_webhook_needs_no_csrf_token(app):
    app.config["WTF_CSRF_ENABLED"] = True
    response = post_bytes(app.test_client(), [("email", ORDINARY, None, None)])
    assert response.status_code == 200


@pytest.fixture
def live_url(app):
    """The app served over real HTTP on 127.0.0.1 (a thread), for the simulator."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_the_simulator_posts_every_kind_of_mail_over_http(live_url, app, clock):
    from callbacks.email.simulate import simulate

    from datetime import timedelta

    # Stamped by "SendGrid" two minutes before the posts: the receipt counts from the stamp.
    taken_in = (clock() - timedelta(minutes=2)).replace(microsecond=0)
    sent = simulate(live_url, SECRET, 9, taken_in, report=lambda line: None)
    assert [s.status for s in sent] == [200] * 9
    assert {email.received_at for email in stored(app)} == {taken_in}
    decisions = [(s.kind, s.answer["decision"], s.answer["duplicate"]) for s in sent]
    assert decisions == [
        ("new_raw", "new_enquiry", False), ("new_parsed", "new_enquiry", False),
        ("reply_reference", "joined", False), ("new_raw", "new_enquiry", False),
        ("auto_reply", "auto_reply", False), ("reply_threaded", "joined", False),
        ("bounce", "bounce", False), ("duplicate", "new_enquiry", True), ("new_parsed", "new_enquiry", False),
    ]
    assert len(stored(app)) == 8
    assert acknowledgements(app) == 4


def test_the_simulator_command_says_what_is_missing_or_refused(live_url):
    from click.testing import CliRunner

    from helpdesk.cli import main

    missing = CliRunner().invoke(main, ["email", "simulate", "--url", live_url], env={"SENDGRID_INBOUND_SECRET": ""})
    assert missing.exit_code == 1 and "SENDGRID_INBOUND_SECRET" in missing.output
    wrong = CliRunner().invoke(main, ["email", "simulate", "--url", live_url, "--count", "2"],
                               env={"SENDGRID_INBOUND_SECRET": "not-the-secret-at-all"})
    assert wrong.exit_code == 1 and "2 of 2 posts were not accepted (first: HTTP 403" in wrong.output
    assert "Traceback" not in wrong.output
    env = {"SENDGRID_INBOUND_SECRET": "any"}
    not_a_url = CliRunner().invoke(main, ["email", "simulate", "--url", "notaurl"], env=env)
    assert not_a_url.exit_code == 2 and "give an http:// or https:// URL" in not_a_url.output
    a_page = CliRunner().invoke(main, ["email", "simulate", "--url", f"{live_url}/healthz?", "--count", "1"], env=env)
    assert a_page.exit_code == 1 and "Traceback" not in a_page.output, a_page.output
    assert "check --url" in a_page.output or "HTTP 40" in a_page.output


def test_a_post_sendgrid_retried_counts_from_sendgrids_receipt_not_from_the_post(client, app, clock):
    from datetime import timedelta

    # SendGrid took the message 40 minutes ago; its first posts were refused (the database was down).
    stamped = clock.now - timedelta(minutes=40)
    raw = (f"Received: by mx0047p1mdw1.sendgrid.net with SMTP id t5sWpZPHWH {stamped:%a, %d %b %Y %H:%M:%S} "
           "+0000 (UTC)\r\n").encode() + ORDINARY
    response = post_bytes(client, [("email", raw, None, None), ("envelope", ENVELOPE.encode(), None, None)])
    assert response.status_code == 200, response.data
    with app.extensions["helpdesk.db"].session() as session:
        ack = session.scalars(select(EmailAcknowledgement)).one()
        row = session.scalars(select(InboundEmail)).one()
    assert row.received_at == ack.received_at == stamped.replace(microsecond=0)
    assert ack.due_at == stamped.replace(microsecond=0) + timedelta(minutes=15)  # already past: it will count late
    # A message with no stamp of SendGrid's counts from the post, as before.
    response = post_bytes(client, [("email", ORDINARY.replace(b"Message-ID: <", b"Message-ID: <other-"), None, None),
                                   ("envelope", ENVELOPE.encode(), None, None)])
    assert response.status_code == 200, response.data
    assert [email.received_at for email in stored(app)][-1] == clock.now
