"""Polling an IMAP mailbox for enquiries: each message read once, none missed, across restarts.

The mailbox is opened read-only (EXAMINE) and read with BODY.PEEK[], so the poller changes
nothing in it. How far it has read is the mailbox's UIDVALIDITY and the last UID taken
(ImapMailboxState). Each message is stored in the same transaction that moves the last UID
past it, so a crash between two messages neither skips nor repeats one. When UIDVALIDITY
changes (the mailbox was rebuilt), reading starts again from the first UID; messages
already stored are recognised by their dedupe key and not taken in twice.

Credentials come from IMAP_USERNAME and IMAP_PASSWORD, which the caller reads from the
environment. Errors are ImapError with a reason that names no person or password.
"""
from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, update

from callbacks.email.intake import store_inbound
from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.models import ImapMailboxState
from helpdesk.settings import Settings
from metrics.periods import uk_midnight

log = logging.getLogger(__name__)

_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class ImapError(Exception):
    """The mailbox could not be read; the message says why (no personal data in it)."""


@dataclass(frozen=True)
class PollResult:
    mailbox: str  # the read position's key: "<user>@<host>:<port>/<mailbox>"
    uidvalidity: int
    last_uid: int  # after this poll
    fetched: int  # messages read from the server in this poll
    stored: int  # of those, new to the database
    duplicates: int  # already stored (a redelivery, or re-read after a UIDVALIDITY change)
    uidvalidity_changed: bool
    passed_over: int = 0  # received before email.imap.take_in_from: neither stored nor acknowledged


def mailbox_key(username: str, settings: Settings) -> str:
    imap = settings.email.imap
    return f"{username}@{imap.host}:{imap.port}/{imap.mailbox}"


def poll_mailbox(
    db,
    settings: Settings,
    *,
    username: str,
    password: str,
    now: datetime,
    ssl_context: ssl.SSLContext | None = None,
    batch_size: int = 20,
    timeout: float = 30.0,
) -> PollResult:
    """Take in every message above the stored last UID; return what was read.

    `db` is a helpdesk.db.Database. A message's receipt time is its INTERNALDATE (when the
    mailbox received it; never later than `now`), so time spent waiting for a poll counts
    against the acknowledgement deadline.
    """
    imap_settings = settings.email.imap
    if not imap_settings.host:
        raise ImapError("no IMAP server is configured ([email.imap] host is empty)")
    if not username or not password:
        raise ImapError("IMAP_USERNAME and IMAP_PASSWORD must both be set")
    cutoff = uk_midnight(imap_settings.take_in_from) if imap_settings.take_in_from else None
    if cutoff is not None and cutoff > now:
        # Every message would be passed over, for good: the read position moves past them.
        raise ImapError(f"email.imap.take_in_from is {imap_settings.take_in_from:%-d %B %Y}, after today, so every "
                        f"message would be passed over: correct it in {settings.source}")
    where = f"{imap_settings.host}:{imap_settings.port}"
    connection = _connect(imap_settings.host, imap_settings.port, imap_settings.security, ssl_context, timeout)
    try:
        try:
            connection.login(username, password)
        except imaplib.IMAP4.error:
            raise ImapError(f"the IMAP server {where} refused the login (check IMAP_USERNAME and IMAP_PASSWORD)") \
                from None
        return _read(connection, db, settings, mailbox_key(username, settings), now, batch_size, cutoff)
    except (OSError, imaplib.IMAP4.abort) as error:
        raise ImapError(f"the connection to the IMAP server {where} failed: "
                        f"{_reason(error, imap_settings.security)}") from None
    finally:
        try:
            connection.logout()
        except Exception:  # the connection may already be gone; nothing to tidy then
            pass


def _reason(error: BaseException, security: str | None = None) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return (f"its TLS certificate is not trusted ({error.verify_message}); if it is signed by your own "
                "certificate authority, name that authority's certificate in email.imap.ca_file")
    if isinstance(error, ssl.SSLError):
        usual = {"ssl": "993", "starttls": "143"}.get(security or "")
        hint = (f": is email.imap.port the server's port for security = \"{security}\" (usually {usual})?"
                if usual else "")
        return f"TLS failed ({error.reason or type(error).__name__}){hint}"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "it timed out"
    return getattr(error, "strerror", None) or type(error).__name__


def _connect(host: str, port: int, security: str, context: ssl.SSLContext | None, timeout: float):
    context = context or ssl.create_default_context()
    try:
        if security == "ssl":
            return imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
        connection = imaplib.IMAP4(host, port, timeout=timeout)
        try:
            connection.starttls(ssl_context=context)
        except BaseException:
            try:
                connection.shutdown()
            except OSError:  # a failed handshake may have closed the socket already
                pass
            raise
        return connection
    except imaplib.IMAP4.error as error:  # e.g. the server offers no STARTTLS
        raise ImapError(f"the IMAP server {host}:{port} would not start TLS: {error}") from None
    except OSError as error:
        raise ImapError(f"cannot connect to the IMAP server {host}:{port}: {_reason(error, security)}") from None


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read(connection, db, settings: Settings, key: str, now: datetime, batch_size: int,
          cutoff: datetime | None) -> PollResult:
    """Take in the new messages; those received before `cutoff` (take_in_from) are passed over."""
    mailbox = settings.email.imap.mailbox
    status, _ = connection.select(_quoted(mailbox), readonly=True)
    if status != "OK":
        raise ImapError(f"the mailbox {mailbox!r} cannot be opened")
    _, values = connection.response("UIDVALIDITY")
    if not values or not values[-1] or not values[-1].strip().isdigit():
        raise ImapError(f"the server gave no UIDVALIDITY for the mailbox {mailbox!r}")
    uidvalidity = int(values[-1])

    last_uid, changed = _position(db, key, uidvalidity, now)
    status, data = connection.uid("SEARCH", f"UID {last_uid + 1}:*")
    if status != "OK":
        raise ImapError(f"searching the mailbox {mailbox!r} failed")
    # "n:*" always matches the highest UID, even when it is below n: keep only new ones.
    uids = sorted(u for u in (int(v) for v in b" ".join(data).split()) if u > last_uid)
    fetched = stored = duplicates = passed_over = 0
    for start in range(0, len(uids), batch_size):
        batch = uids[start:start + batch_size]
        wanted = batch
        if cutoff is not None:  # only the dates first, so older messages are never downloaded
            old = _received_before(connection, batch, cutoff, mailbox)
            passed_over += len(old)
            wanted = [uid for uid in batch if uid not in old]
        messages = _fetch(connection, wanted, mailbox) if wanted else {}
        for uid in batch:
            if uid not in messages:
                continue  # passed over, or expunged since the search; moved past below
            raw, internal_date = messages[uid]
            fetched += 1
            received_at = min(internal_date or now, now)
            result = _take(db, settings, key, uidvalidity, uid, raw, received_at, now)
            if result is None:
                continue  # another poller took it first
            duplicates += result.duplicate
            stored += not result.duplicate
        last_uid = _advance(db, key, uidvalidity, batch[-1], now)
    if not uids:
        _advance(db, key, uidvalidity, last_uid, now)
    if fetched:
        log.info("IMAP %s: %d read, %d new, %d already stored", mailbox, fetched, stored, duplicates)
    if passed_over:
        log.warning("IMAP %s: %d passed over, never to be read: received before email.imap.take_in_from",
                    mailbox, passed_over)
    return PollResult(key, uidvalidity, last_uid, fetched, stored, duplicates, changed, passed_over)


def _fetch(connection, uids: list[int], mailbox: str) -> dict[int, tuple[bytes, datetime | None]]:
    status, data = connection.uid("FETCH", ",".join(map(str, uids)), "(UID INTERNALDATE BODY.PEEK[])")
    if status != "OK":
        raise ImapError(f"fetching messages from the mailbox {mailbox!r} failed")
    return dict(_fetched(data))


def _received_before(connection, uids: list[int], cutoff: datetime, mailbox: str) -> set[int]:
    """The UIDs among `uids` whose INTERNALDATE is before `cutoff` (one with no date that can be
    read is taken in: nothing says it is older)."""
    status, data = connection.uid("FETCH", ",".join(map(str, uids)), "(UID INTERNALDATE)")
    if status != "OK":
        raise ImapError(f"fetching message dates from the mailbox {mailbox!r} failed")
    old = set()
    for item in data or ():
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        uid, when = _UID.search(line), _INTERNALDATE.search(line)
        received = _internal_date(when.group(1)) if when else None
        if uid and received is not None and received < cutoff:
            old.add(int(uid.group(1)))
    return old


def _position(db, key: str, uidvalidity: int, now: datetime) -> tuple[int, bool]:
    """The last UID taken under `uidvalidity`: 0 for a new mailbox or a changed UIDVALIDITY."""
    with db.session() as session, session.begin():
        session.execute(insert_ignoring_conflicts(session, ImapMailboxState, {
            "mailbox": key, "uidvalidity": uidvalidity, "last_uid": 0, "checked_at": now}))
        state = session.get(ImapMailboxState, key, with_for_update=True)
        if state.uidvalidity == uidvalidity:
            return state.last_uid, False
        log.warning("IMAP UIDVALIDITY changed (%d to %d): reading the mailbox again from the start; "
                    "messages already stored are recognised", state.uidvalidity, uidvalidity)
        state.uidvalidity, state.last_uid, state.checked_at = uidvalidity, 0, now
        return 0, True


def _take(db, settings, key, uidvalidity, uid, raw, received_at, now):
    """Store one message and move the read position past it, in one transaction."""
    with db.session() as session, session.begin():
        moved = session.execute(
            update(ImapMailboxState)
            .where(ImapMailboxState.mailbox == key, ImapMailboxState.uidvalidity == uidvalidity,
                   ImapMailboxState.last_uid < uid)
            .values(last_uid=uid, checked_at=now)
        ).rowcount
        if not moved:
            return None
        return store_inbound(session, raw, source="imap", received_at=received_at, settings=settings,
                             source_ref=f"{key}/{uidvalidity}/{uid}")


def _advance(db, key: str, uidvalidity: int, uid: int, now: datetime) -> int:
    with db.session() as session, session.begin():
        session.execute(
            update(ImapMailboxState)
            .where(ImapMailboxState.mailbox == key, ImapMailboxState.uidvalidity == uidvalidity)
            .values(last_uid=_greatest(ImapMailboxState.last_uid, uid), checked_at=now)
        )
        state = session.get(ImapMailboxState, key)
        return state.last_uid if state is not None else uid


def _greatest(column, value: int):
    return case((column < value, value), else_=column)


def _fetched(data) -> list[tuple[int, tuple[bytes, datetime | None]]]:
    """(UID, (raw bytes, INTERNALDATE)) from a UID FETCH response, whatever order the items come in."""
    found = []
    items = list(data or ())
    for index, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) != 2:
            continue
        head, raw = item
        match = _UID.search(head)
        trailer = items[index + 1] if index + 1 < len(items) and isinstance(items[index + 1], bytes) else b""
        match = match or _UID.search(trailer)
        if match is None:
            continue
        date = _INTERNALDATE.search(head) or _INTERNALDATE.search(trailer)
        found.append((int(match.group(1)), (raw, _internal_date(date.group(1)) if date else None)))
    return found


def _internal_date(value: bytes) -> datetime | None:
    try:
        return datetime.strptime(value.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except (UnicodeDecodeError, ValueError):
        return None
