"""The configuration's [email] table (with its [email.imap]): the addresses the desk takes
enquiries at, how acknowledgements are sent, and the mailbox it reads (helpdesk/config.py)."""
from __future__ import annotations

import re
from pathlib import Path

from helpdesk.config_reader import Reader
from helpdesk.config_times import parse_day
from helpdesk.settings import EmailSettings, ImapSettings

EMAIL_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")


def parse_email(reader: Reader, source: str) -> EmailSettings:
    addresses = reader.strings("addresses", ())
    for address in addresses:
        if not EMAIL_ADDRESS.match(address):
            reader.fail("addresses", f"has {address!r}, which is not an email address")
    spacing = reader.get("retry_spacing_minutes", list, list(EmailSettings.retry_spacing_minutes))
    if not spacing or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in spacing):
        reader.fail("retry_spacing_minutes", "must be a non-empty list of whole numbers of minutes above 0")
    imap = Reader({"email.imap": reader.get("imap", dict, {})}, "email.imap", source)
    settings = EmailSettings(
        addresses=tuple(a.lower() for a in addresses),
        ack_within_minutes=reader.number("ack_within_minutes", 15, 1, 7 * 24 * 60, int),
        per_sender_limit=reader.number("per_sender_limit", 5, 1, 1000, int),
        per_sender_window_minutes=reader.number("per_sender_window_minutes", 60, 1, 7 * 24 * 60, int),
        unlimited_domains=_domains(reader, "unlimited_domains"),
        retry_spacing_minutes=tuple(spacing),
        max_send_attempts=reader.number("max_send_attempts", 8, 1, 50, int),
        html=reader.get("html", bool, False),
        imap=ImapSettings(
            host=imap.get("host", str, ""),
            port=imap.number("port", 993, 1, 65535, int),
            security=imap.choice("security", "ssl", ("ssl", "starttls")),
            mailbox=imap.get("mailbox", str, "INBOX") or imap.fail("mailbox", "must not be empty"),
            poll_seconds=imap.number("poll_seconds", 60, 5, 3600, int),
            ca_file=_ca_file(imap, source),
            take_in_from=parse_day(imap, "take_in_from"),
        ),
    )
    imap.all_read()
    reader.all_read()
    return settings


_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def _domains(reader: Reader, key: str) -> tuple[str, ...]:
    """A list of mail domains ("dwp.gov.uk"), lower-cased."""
    domains = []
    for value in reader.get(key, list, []):
        domain = value.strip().lower().lstrip("@") if isinstance(value, str) else ""
        if not _DOMAIN.fullmatch(domain):
            reader.fail(key, f"has {value!r}, which is not a mail domain (for example \"dwp.gov.uk\")")
        domains.append(domain)
    return tuple(domains)


def _ca_file(imap: Reader, source: str) -> str:
    """email.imap.ca_file as a path that exists and holds a PEM certificate ("" when not set)."""
    text = imap.get("ca_file", str, "").strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path(source).resolve().parent / path
    if not path.is_file():
        imap.fail("ca_file", f"names {path}, which is not a file")
    import ssl

    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, UnicodeDecodeError):
        imap.fail("ca_file", f"names {path}, which holds no certificate in PEM form")
    return str(path)
