"""Sending email through the configured SMTP server: one sender for the supervisors' notices and
the acknowledgements of email enquiries.

STARTTLS (port 587), SMTPS (`security = "ssl"`, port 465) or plain SMTP to a local relay
(`none`); credentials, when the server wants them, from SMTP_USERNAME and SMTP_PASSWORD.
Errors come back as `MailError` with a short text holding no addresses or numbers, fit for a
log line or the agents' page.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import smtplib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

from helpdesk.clock import LONDON
from helpdesk.settings import Settings, SmtpSettings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0
ERROR_LIMIT = 300  # the error columns are String(300)


def is_this_machine(host: str) -> bool:
    """Whether `host` names this machine (a loopback address), where plain SMTP crosses no network."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def from_address(settings: Settings) -> str:
    """Who the app's mail comes from, acknowledgements and supervisors' notices alike:
    smtp.from_address, else the first of email.addresses ("" when neither is set)."""
    return settings.smtp.from_address or (settings.email.addresses[0] if settings.email.addresses else "")


def plain_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text message of the app's own (a supervisors' notice, a link to choose a password,
    a notice to a user): dated, with a Message-ID at the sender's domain, and marked
    Auto-Submitted (RFC 3834) so that nobody auto-replies to it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(LONDON))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    return message


class MailError(Exception):
    """A message could not be sent. The text is short and holds no personal data.

    `permanent`: the server refused it for good (a 5xx reply, or an address it cannot take), so
    trying the same again later is pointless.
    """

    def __init__(self, text: str, *, permanent: bool = False):
        super().__init__(text)
        self.permanent = permanent


class MessageSender(Protocol):
    def send_message(self, message: EmailMessage) -> None:
        """Send a complete message to the addresses in its To header, or raise MailError."""


class SmtpSender:
    """Complete messages through the configured SMTP server (smtplib), one connection per message."""

    def __init__(self, smtp: SmtpSettings, *, username: str | None = None, password: str | None = None,
                 timeout: float = TIMEOUT_SECONDS, ssl_context: ssl.SSLContext | None = None):
        self.smtp, self.username, self.password, self.timeout = smtp, username, password, timeout
        self.ssl_context = ssl_context

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None, **kwargs):
        """Server from the configuration file, credentials (optional) from SMTP_USERNAME/SMTP_PASSWORD."""
        env = os.environ if environ is None else environ
        return cls(settings.smtp, username=env.get("SMTP_USERNAME") or None,
                   password=env.get("SMTP_PASSWORD") or None, **kwargs)

    def send_message(self, message: EmailMessage) -> None:
        if not self.smtp.host:
            raise MailError("smtp.host is not set")
        where = f"{self.smtp.host}:{self.smtp.port}"
        if self.username and self.smtp.security == "none" and not is_this_machine(self.smtp.host):
            # Nothing would protect the password on its way, nor the mail after it.
            raise MailError(f"not sending the SMTP login to {where} over a connection without TLS: set "
                            "smtp.security to \"starttls\" or \"ssl\"")
        try:
            if self.smtp.security == "ssl":
                client = smtplib.SMTP_SSL(self.smtp.host, self.smtp.port, timeout=self.timeout, context=self._tls())
            else:
                client = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout)
            with client:
                if self.smtp.security == "starttls":
                    client.starttls(context=self._tls())
                if self.username:
                    try:
                        client.login(self.username, self.password or "")
                    except smtplib.SMTPNotSupportedError:
                        raise MailError(f"{where} does not take a login (it offers no AUTH): for a relay that "
                                        "needs none, leave SMTP_USERNAME and SMTP_PASSWORD unset") from None
                try:
                    refused = client.send_message(message)
                except smtplib.SMTPNotSupportedError:
                    # Non-ASCII letters before the @, and the server does not take SMTPUTF8.
                    raise MailError(f"{where} does not take internationalised addresses (SMTPUTF8)",
                                    permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise MailError(short_error(f"{where} answered {exc.smtp_code}: {_text(exc.smtp_error)}"),
                            permanent=500 <= exc.smtp_code < 600) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            whom = "the address" if len(codes) == 1 else f"all {len(codes)} addresses"
            raise MailError(short_error(f"{where} refused {whom} ({', '.join(sorted({str(c) for c in codes}))})"),
                            permanent=bool(codes) and all(500 <= code < 600 for code in codes)) from None
        except ConnectionRefusedError:
            raise MailError(f"could not reach the mail server at {where} (nothing answers there)") from None
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise MailError(short_error(f"could not send through {where}: {type(exc).__name__}: {exc}")) from None
        except ValueError as exc:  # e.g. an address smtplib cannot put in an envelope
            raise MailError(short_error(f"the message could not be encoded: {type(exc).__name__}")) from None
        if refused:
            # Some got it: sending again would repeat it to them, so report and carry on.
            log.warning("the SMTP server refused %d of the message's recipients", len(refused))

    def _tls(self) -> ssl.SSLContext:
        # Made once: loading the system's certificate authorities takes tens of milliseconds.
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context


@dataclass
class FakeMailServer:
    """For tests: counts attempts; `fail()` makes every send raise until `recover()`."""

    failure: str | None = None
    attempts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, message: str = "the mail server is unreachable") -> None:
        self.failure = message

    def recover(self) -> None:
        self.failure = None

    def _attempt(self, keep) -> None:
        with self._lock:
            self.attempts += 1
            if self.failure is not None:
                raise MailError(self.failure)
            keep()


@dataclass
class FakeSender(FakeMailServer):
    """Keeps messages instead of sending them."""

    messages: list[EmailMessage] = field(default_factory=list)

    def send_message(self, message: EmailMessage) -> None:
        self._attempt(lambda: self.messages.append(message))


_EMAIL = re.compile(r"[^\s<>@,;]+@[^\s<>@,;]+")
_DIGITS = re.compile(r"\+?\d[\d\s-]{6,}\d")


def redact(text: str) -> str:
    """Remove anything that looks like an email address or a phone number."""
    return _DIGITS.sub("[number]", _EMAIL.sub("[address]", text))


def short_error(text: str) -> str:
    """`text` redacted, on one line, and cut to fit the error columns."""
    text = " ".join(redact(text).split())
    return text if len(text) <= ERROR_LIMIT else text[:ERROR_LIMIT - 1] + "…"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def ascii_domain(address: str) -> str:
    """`address` with an internationalised domain in its ASCII form (bücher.example is
    xn--bcher-kva.example), which every mail server takes; the part before the @ is left as it is."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address
