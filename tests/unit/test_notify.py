"""Supervisors' emails: what they say, and sending them through a real SMTP server (aiosmtpd on 127.0.0.1).

`SmtpServer` is also used by tests/integration/test_scheduler.py (notices emailed from the database).
"""
from __future__ import annotations

import json
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from callbacks.deadlines import callback_deadline
from callbacks.notify import FakeNotifier, SmtpNotifier, compose
from callbacks.smtp import MailError
from callbacks.smtp import is_this_machine, redact
from helpdesk.config import parse_settings
from helpdesk.models import Callback
from servers import free_port, require_program
from helpdesk.settings import SmtpSettings

SUPERVISORS = ("duty.manager@helpdesk.example.org", "team.lead@helpdesk.example.org")
CALLER = "+447700900123"


class Mailbox:
    """An aiosmtpd handler that keeps what it receives, or answers `reply` (e.g. "451 ...") instead."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.reply: str | None = None
        self.logins: list[tuple[bytes, bytes]] = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.reply is not None:
            return self.reply
        message = message_from_bytes(envelope.original_content or envelope.content, policy=default_policy)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        self.received.set()
        return "250 2.0.0 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd answers 535 itself when the credentials are wrong.
        valid = (auth_data.login, auth_data.password) == (b"alerts", b"s3cret-passw0rd")
        return AuthResult(success=valid, handled=False)


class SmtpServer:
    """A real SMTP server on 127.0.0.1 (aiosmtpd's Controller runs it in a thread)."""

    def __init__(self, *, starttls=None, implicit_tls=None, auth: bool = False, smtputf8: bool = True):
        self.mailbox = Mailbox()
        self.port = free_port()
        options = {"enable_SMTPUTF8": smtputf8}
        if starttls is not None:
            options.update(tls_context=starttls, require_starttls=True)
        if auth:
            options.update(authenticator=self.mailbox.authenticate, auth_require_tls=True)
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, ssl_context=implicit_tls,
                                     **options)

    def settings(self, security: str = "none") -> SmtpSettings:
        return SmtpSettings(host="127.0.0.1", port=self.port, security=security,
                            from_address="alerts@helpdesk.example.org")

    def __enter__(self) -> "SmtpServer":
        self.controller.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_server():
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (server context, client context that trusts it)."""
    import ssl

    openssl = require_program("openssl", "install the `openssl` package")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


def settings(**tables):
    data = {"hours": {day: ["08:00-18:00"] for day in ("monday", "tuesday", "wednesday", "thursday", "friday")},
            "supervisors": {"emails": list(SUPERVISORS)}}
    data.update(tables)
    return parse_settings(data, source="test.toml")


def callback(owed_from: datetime, *, number: str | None = CALLER, clock: str = "business", reason: str = "abandoned"):
    config = settings(callback={"clock": clock})
    deadline = callback_deadline(owed_from, clock=clock, within=timedelta(hours=3), calendar=config.calendar,
                                 config_version="abc123")
    return Callback(contact_key="call:CA1", enquiry_id=1, reason=reason, caller_number=number, caller_type="customer",
                    owed_from=owed_from, due_at=deadline.due_at, clock=clock,
                    explanation=json.dumps(deadline.explanation),
                    config_version="abc123", created_at=owed_from, status="open", attempts_count=0, note="")


# --------------------------------------------------------------------------- what the emails say

# Tuesday 14 July 2026, 10:00 UTC = 11:00 BST: due at 14:00 BST.
SUMMER = datetime(2026, 7, 14, 10, 0, tzinfo=timezone.utc)


def test_a_warning_names_the_enquiry_and_the_due_time_in_uk_time_and_hides_the_callers_number():
    due = callback(SUMMER).due_at
    subject, body = compose("warning_10", "HD-2026-000123", callback(SUMMER), settings(), due - timedelta(minutes=10))
    assert subject == "Callback HD-2026-000123 due in 10 minutes"
    assert "due at 14:00 on Tuesday 14 July 2026 (UK time), with 10 minutes of opening time left" in body
    assert "Customer, number ending 123" in body
    assert "the caller hung up before an answer" in body
    assert "Owed from 11:00 on Tuesday 14 July 2026; due after 3 hours of opening time" in body  # the explanation's summary
    assert CALLER not in body and "7700900" not in body and "447700" not in body


def test_a_warning_on_the_elapsed_clock_does_not_speak_of_opening_time():
    late = callback(SUMMER, clock="elapsed")
    subject, body = compose("warning_30", "HD-2026-000124", late, settings(), late.due_at - timedelta(minutes=30))
    assert subject == "Callback HD-2026-000124 due in 30 minutes"
    assert "with 30 minutes left" in body and "opening time left" not in body


def test_a_warning_first_recorded_late_says_the_time_that_was_left_not_its_lead_time():
    owed = callback(SUMMER)  # due at 14:00 BST; the sweep first saw it at 13:45 BST
    subject, body = compose("warning_30", "HD-2026-000127", owed, settings(), owed.due_at - timedelta(minutes=15))
    assert subject == "Callback HD-2026-000127 due in 15 minutes"
    assert "with 15 minutes of opening time left" in body and "30 minutes" not in body


def test_a_breach_says_which_target_was_missed_and_when_it_fell_due():
    subject, body = compose("breach", "HD-2026-000125", callback(SUMMER), settings(), SUMMER + timedelta(hours=4))
    assert subject == "Callback HD-2026-000125 breached the 3-hour target"
    assert "Nobody tried to call back by 14:00 on Tuesday 14 July 2026 (UK time)" in body


def test_a_withheld_number_is_said_to_be_withheld():
    _, body = compose("breach", "HD-2026-000126", callback(SUMMER, number=None, reason="not_concluded"), settings(),
                      SUMMER + timedelta(hours=4))
    assert "Customer, number withheld" in body
    assert "the enquiry could not be concluded on the call" in body


def test_redaction_removes_numbers_and_addresses_from_error_text():
    text = redact("550 rejected mail for bob@example.org about +44 7700 900123 (code 5.7.1)")
    assert text == "550 rejected mail for [address] about [number] (code 5.7.1)"


def test_the_fake_notifier_records_messages_and_fails_until_it_recovers():
    notifier = FakeNotifier()
    notifier.send("Subject", "Body", SUPERVISORS)
    notifier.fail("server down")
    with pytest.raises(MailError, match="server down"):
        notifier.send("Again", "Body", SUPERVISORS)
    notifier.recover()
    notifier.send("Third", "Body", SUPERVISORS)
    assert [m.subject for m in notifier.sent] == ["Subject", "Third"] and notifier.attempts == 3
    assert notifier.sent[0].to == SUPERVISORS


def test_the_message_has_from_to_date_message_id_and_is_marked_automatic():
    notifier = SmtpNotifier(SmtpSettings(host="smtp.example.org", from_address="alerts@helpdesk.example.org"))
    message = notifier.message("Callback HD-2026-000123 due in 10 minutes", "Body\n", SUPERVISORS)
    assert message["From"] == "alerts@helpdesk.example.org"
    assert message["To"] == ", ".join(SUPERVISORS)
    assert abs(parsedate_to_datetime(message["Date"]) - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert message["Message-ID"].endswith("@helpdesk.example.org>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"


def test_credentials_come_from_the_environment_and_the_timeout_is_15_seconds():
    config = settings(smtp={"host": "smtp.example.org"})
    notifier = SmtpNotifier.from_settings(config, {"SMTP_USERNAME": "alerts", "SMTP_PASSWORD": "pw"})
    assert (notifier.username, notifier.password, notifier.timeout) == ("alerts", "pw", 15.0)
    assert SmtpNotifier.from_settings(config, {}).username is None


def test_with_no_from_address_notices_come_from_the_first_help_desk_address_as_acknowledgements_do(smtp_server):
    # The shipped helpdesk.toml leaves smtp.from_address empty: notices went unsent, every sweep.
    config = settings(smtp={"host": "127.0.0.1", "port": smtp_server.port, "security": "none"},
                      email={"addresses": ["helpdesk@provider.example.org", "other@provider.example.org"]})
    notifier = SmtpNotifier.from_settings(config, {})
    notifier.send("Subject", "Body\n", SUPERVISORS)
    [(sender, recipients, message)] = smtp_server.mailbox.messages
    assert sender == message["From"] == "helpdesk@provider.example.org" and recipients == list(SUPERVISORS)
    with pytest.raises(MailError, match="smtp.from_address is not set, nor email.addresses"):
        SmtpNotifier.from_settings(settings(smtp={"host": "127.0.0.1"}), {}).send("Subject", "Body\n", SUPERVISORS)


# --------------------------------------------------------------------------- a real SMTP server


def test_an_email_reaches_a_real_smtp_server_with_its_subject_and_recipients(smtp_server):
    subject, body = compose("breach", "HD-2026-000123", callback(SUMMER), settings(), SUMMER + timedelta(hours=4))
    SmtpNotifier(smtp_server.settings()).send(subject, body, SUPERVISORS)
    [(sender, recipients, message)] = smtp_server.mailbox.messages
    assert sender == "alerts@helpdesk.example.org" and recipients == list(SUPERVISORS)
    assert message["Subject"] == "Callback HD-2026-000123 breached the 3-hour target"
    assert message["To"] == ", ".join(SUPERVISORS)
    text = message.get_content()
    assert "HD-2026-000123" in text and "number ending 123" in text and CALLER not in text


def test_starttls_and_login_use_the_credentials_from_the_environment(certificate):
    server_tls, client_tls = certificate
    with SmtpServer(starttls=server_tls, auth=True) as server:
        notifier = SmtpNotifier(server.settings("starttls"), username="alerts", password="s3cret-passw0rd",
                                ssl_context=client_tls)
        notifier.send("Subject", "Body\n", SUPERVISORS[:1])
        assert server.mailbox.logins == [(b"alerts", b"s3cret-passw0rd")]
        assert len(server.mailbox.messages) == 1
        wrong = SmtpNotifier(server.settings("starttls"), username="alerts", password="wrong", ssl_context=client_tls)
        with pytest.raises(MailError, match="answered 535"):
            wrong.send("Subject", "Body\n", SUPERVISORS[:1])
        assert len(server.mailbox.messages) == 1


def test_implicit_tls_works_with_security_ssl(certificate):
    server_tls, client_tls = certificate
    with SmtpServer(implicit_tls=server_tls) as server:
        SmtpNotifier(server.settings("ssl"), ssl_context=client_tls).send("Over TLS", "Body\n", SUPERVISORS)
        assert [m["Subject"] for _, _, m in server.mailbox.messages] == ["Over TLS"]


def test_a_server_without_starttls_is_refused_when_starttls_is_required(smtp_server):
    with pytest.raises(MailError, match="STARTTLS"):
        SmtpNotifier(smtp_server.settings("starttls")).send("Subject", "Body\n", SUPERVISORS)
    assert smtp_server.mailbox.messages == []


def test_a_refused_message_raises_a_short_error_with_the_code_and_no_addresses_or_numbers(smtp_server):
    smtp_server.mailbox.reply = "554 5.7.1 Message from +447700900123 to team.lead@helpdesk.example.org rejected"
    with pytest.raises(MailError) as raised:
        SmtpNotifier(smtp_server.settings()).send("Subject", "Body\n", SUPERVISORS)
    message = str(raised.value)
    assert message.startswith(f"127.0.0.1:{smtp_server.port} answered 554")
    assert "[number]" in message and "[address]" in message
    assert "900123" not in message and "team.lead" not in message


def test_a_login_is_never_sent_over_plain_smtp_to_another_machine():
    remote = SmtpSettings(host="mail.example.org", port=25, security="none", from_address="a@b.example")
    with pytest.raises(MailError, match="not sending the SMTP login to mail.example.org:25 over a connection "
                                          "without TLS"):
        SmtpNotifier(remote, username="alerts", password="s3cret-passw0rd").send("Subject", "Body\n", SUPERVISORS)


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.8.0.1", True), ("localhost", True),
                                         ("LOCALHOST.", True), ("::1", True), ("[::1]", True),
                                         ("mail.example.org", False), ("10.0.0.5", False), ("localhost.evil", False)])
def test_only_loopback_hosts_count_as_this_machine(host, local):
    assert is_this_machine(host) is local


def test_an_unreachable_server_raises_an_error_naming_host_and_port():
    port = free_port()
    notifier = SmtpNotifier(SmtpSettings(host="127.0.0.1", port=port, security="none", from_address="a@b.example"))
    with pytest.raises(MailError, match=f"could not reach the mail server at 127.0.0.1:{port} "):
        notifier.send("Subject", "Body\n", SUPERVISORS)


def test_sending_without_a_from_address_is_refused_before_connecting():
    with pytest.raises(MailError, match="smtp.from_address is not set"):
        SmtpNotifier(SmtpSettings(host="127.0.0.1", port=free_port())).send("Subject", "Body\n", SUPERVISORS)
