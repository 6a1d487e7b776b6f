"""Everything the database holds about one person, found by phone number or email address: for
a subject access request (UK GDPR, article 15), and to see what an erasure would touch.

`find_person` gathers the rows; `write_copy` writes them, unmasked, as one CSV file per table
(and each email as it was received, an .eml file) into a new directory only its owner can read.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session

from helpdesk.dbutil import dialect_name
from helpdesk.models import (
    AuditEntry, Call, Callback, CallbackAttempt, EmailAcknowledgement, Enquiry, InboundEmail, TwilioEvent)
from helpdesk.paths import parent_problem
from helpdesk.phones import international, number_ending
from metrics.evidence.fields import inert, mask_email

ACTION = "subject_access.search"

# Held about callers, and not in this database: said in every copy's README.txt and by the command.
ELSEWHERE = (
    "Twilio: its call log, and any voicemail recordings (the RecordingUrl in twilio_events.csv), until deleted "
    "in the Twilio console or through its API.",
    "The email mailbox (IMAP) or SendGrid, if enquiries are read from there, and the mail server's copies of "
    "acknowledgements sent.",
    "Evidence packs already exported (helpdesk evidence exports lists them): numbers and addresses masked, "
    "agents' notes only if they were included.",
    "The spool directory ([webhooks] spool_dir), while the database could not take some webhooks.",
    "Backups of the database.",
)


class SubjectAccessError(Exception):
    """What was asked for cannot be searched for; the text says why."""


@dataclass
class Found:
    """The rows about one person, by table, each row a column -> value mapping."""

    searched: str  # for people: "phone number +447700900123"
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)  # each table's, found or not

    def counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}


def phone_to_search(typed: str) -> str:
    number = international(typed)
    if number is None:
        raise SubjectAccessError(f"{typed!r} is not a phone number: give it as people write it, e.g. 07700 900123 "
                                 "or +44 7700 900123")
    return number


def email_to_search(typed: str) -> str:
    address = typed.strip().lower()
    name, at, domain = address.rpartition("@")
    if not at or not name or "." not in domain or not address.isprintable() or " " in address:
        raise SubjectAccessError(f"{typed!r} is not an email address")
    return address


def check_copy_target(out: Path) -> None:
    """The copy goes into a new directory (made private from the start) in one that exists."""
    if out.exists():
        raise SubjectAccessError(f"{out} already exists: give a new directory for the copy")
    problem = parent_problem(out, "copy")
    if problem:
        raise SubjectAccessError(problem)


def find_person(session: Session, *, phone: str | None = None, email: str | None = None) -> Found:
    """Every row about the caller with this number (international format) or the sender with
    this address (lower case), and the rows that hang off them: their enquiries, callbacks and
    attempts, emails and acknowledgements, and the journal's events of their calls."""
    if (phone is None) == (email is None):
        raise SubjectAccessError("search by one phone number or one email address")
    with session.begin():
        calls: list[Call] = []
        emails: list[InboundEmail] = []
        if phone is not None:
            calls = _all(session, select(Call).where(Call.caller_number == phone))
            enquiry_ids = {call.enquiry_id for call in calls if call.enquiry_id is not None}
            callbacks = _all(session, select(Callback).where(or_(
                Callback.caller_number == phone, Callback.enquiry_id.in_(enquiry_ids))))
        else:
            emails = _emails_about(session, email)
            enquiry_ids = {row.enquiry_id for row in emails if row.enquiry_id is not None}
            # Every email of their enquiries: a web form's follow-up (From a no-reply address,
            # Reply-To them) joins by the reference it quotes.
            known = {row.id for row in emails}
            emails += [row for row in _all(session, select(InboundEmail).where(
                InboundEmail.enquiry_id.in_(enquiry_ids))) if row.id not in known]
            callbacks = _all(session, select(Callback).where(Callback.enquiry_id.in_(enquiry_ids)))
        addressed = [func.lower(EmailAcknowledgement.to_address) == email] if email is not None else []
        acknowledgements = _all(session, select(EmailAcknowledgement).where(or_(
            EmailAcknowledgement.inbound_email_id.in_([row.id for row in emails]), *addressed)))
        enquiry_ids |= {callback.enquiry_id for callback in callbacks}
        enquiries = _all(session, select(Enquiry).where(Enquiry.id.in_(enquiry_ids)))
        attempts = _all(session, select(CallbackAttempt).where(
            CallbackAttempt.callback_id.in_([callback.id for callback in callbacks])))
        # The journal: their calls' events, their callbacks' calls (journalled under each
        # attempt's call SID), and any other event that names the number.
        sids = [call.call_sid for call in calls] + [a.call_sid for a in attempts if a.call_sid]
        named = [TwilioEvent.params.like(f'%"{phone}"%')] if phone is not None else []
        events = _all(session, select(TwilioEvent).where(or_(TwilioEvent.call_sid.in_(sids), *named)))
        found = Found(f"phone number {phone}" if phone else f"email address {email}")
        for model, rows in ((Enquiry, enquiries), (Call, calls), (TwilioEvent, events), (Callback, callbacks),
                            (CallbackAttempt, attempts), (InboundEmail, emails),
                            (EmailAcknowledgement, acknowledgements)):
            name = model.__tablename__
            found.tables[name] = [_columns(row) for row in rows]
            found.columns[name] = [column.key for column in model.__table__.columns]
    return found


def _all(session: Session, query) -> list:
    """The rows, in the order they were stored."""
    entity = query.column_descriptions[0]["entity"]
    return list(session.scalars(query.order_by(entity.id)))


def _emails_about(session: Session, email: str) -> list[InboundEmail]:
    """Emails from the address, acknowledged to it (a Reply-To), or naming it anywhere in the
    message as received (a form's Reply-To, say, on mail never acknowledged)."""
    acknowledged = set(session.scalars(select(EmailAcknowledgement.inbound_email_id).where(
        func.lower(EmailAcknowledgement.to_address) == email)))
    # A LIKE over the raw message, read as text, narrows it down ("_" in an address matches any
    # character there); the check below keeps exactly the messages that name the address.
    if dialect_name(session) == "postgresql":
        raw_text = func.encode(InboundEmail.raw, "escape")  # bytes that are not ASCII as \ooo
    else:
        raw_text = cast(InboundEmail.raw, Text)
    rows = _all(session, select(InboundEmail).where(or_(
        func.lower(InboundEmail.sender) == email, InboundEmail.id.in_(acknowledged),
        raw_text.ilike(f"%{email}%"))))
    return [row for row in rows if (row.sender or "").lower() == email or row.id in acknowledged
            or email.encode() in row.raw.lower()]


def _columns(row) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def described(*, phone: str | None, email: str | None) -> str:
    """Who was searched for, as the audit log keeps it: no more of them than the pages show."""
    if phone is not None:
        return f"phone number ending {number_ending(phone) or '(too short to show)'}"
    return f"email address {mask_email(email)}"


def record_search(session: Session, *, user_id: int, username: str, who: str, found: Found, wrote: Path | None,
                  now: datetime) -> None:
    detail = {"searched_for": who, "rows": found.counts(), "copy_written_to": str(wrote) if wrote else None}
    with session.begin():
        session.add(AuditEntry(at=now, user_id=user_id, actor=username, action=ACTION,
                               detail=json.dumps(detail, sort_keys=True)))


def write_copy(found: Found, out: Path, now: datetime) -> None:
    """Write the rows, unmasked, into the new directory `out` (mode 0700, files 0600)."""
    out.mkdir(mode=0o700)
    for name, rows in found.tables.items():
        # Each email as received is a file of its own, byte for byte, not a cell.
        raw_messages = {row["id"]: row["raw"] for row in rows} if name == "inbound_emails" else {}
        columns = [column for column in found.columns[name] if (name, column) != ("inbound_emails", "raw")]
        path = out / f"{name}.csv"
        with _private(path, newline="") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            writer.writerows([_text(row[column]) for column in columns] for row in rows)
        for email_id, raw in raw_messages.items():
            message = out / f"email-{email_id}.eml"
            with _private(message, binary=True) as file:
                file.write(raw)
    readme = out / "README.txt"
    with _private(readme) as file:
        file.write(f"Everything the help desk's database held about the {found.searched}, on "
                   f"{now.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC.\n\n"
                   "One CSV file per table (times in UTC); each email as it was received, in email-<id>.eml.\n"
                   "The twilio_events rows are the webhooks Twilio sent about the calls, as received (params).\n\n"
                   "Held elsewhere, and not in this copy:\n" + "".join(f"- {place}\n" for place in ELSEWHERE))


def _private(path: Path, *, binary: bool = False, newline: str | None = None):
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    if binary:
        return os.fdopen(descriptor, "wb")
    return os.fdopen(descriptor, "w", encoding="utf-8", newline=newline)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    return inert(str(value))  # notes and subjects: nothing a spreadsheet would run


@click.command("subject-access")
@click.option("--phone", metavar="NUMBER", help="The caller's number, as people write it (07700 900123).")
@click.option("--email", metavar="ADDRESS", help="The sender's email address.")
@click.option("--user", "username", required=True,
              help="Who is searching: an active administrator (their password is asked for).")
@click.option("--out", type=click.Path(path_type=Path),
              help="A new directory for a copy of everything found, unmasked (one CSV file per table). Its path "
                   "goes into the audit log: name it after the request (SAR-2026-017), not the person.")
def subject_access_command(phone: str | None, email: str | None, username: str, out: Path | None) -> None:
    """Find everything the database holds about one caller (--phone) or email sender (--email).

    For a subject access request, or to see what an erasure would touch. Says how many rows of
    each kind there are, and where else such data is held; --out writes a copy of the rows. The
    password comes from HELPDESK_PASSWORD (for scripts), or is asked for. Every search is in the
    audit log, with no more of the number or address than the pages show. Uses DATABASE_URL.
    """
    from helpdesk.cli import migrated_database_url
    from helpdesk.clock import now_utc
    from helpdesk.db import Database
    from helpdesk.dbutil import command_errors
    from helpdesk.cli_users import administrator_for

    try:
        if (phone is None) == (email is None):
            raise SubjectAccessError("give one of --phone and --email")
        number = phone_to_search(phone) if phone is not None else None
        address = email_to_search(email) if email is not None else None
        if out is not None:
            check_copy_target(out)
    except SubjectAccessError as exc:
        raise click.ClickException(str(exc)) from None
    database = Database(migrated_database_url())
    try:
        with command_errors("copy", out), database.session() as session:
            user = administrator_for(session, username, "search for a person's data")
            now = now_utc()
            found = find_person(session, phone=number, email=address)
            try:
                if out is not None:
                    write_copy(found, out, now)
                record_search(session, user_id=user.id, username=user.username,
                              who=described(phone=number, email=address), found=found,
                              wrote=out.absolute() if out is not None else None, now=now)
            except BaseException:
                if out is not None:  # a copy nobody can account for must not exist, nor half of one
                    shutil.rmtree(out, ignore_errors=True)
                raise
    finally:
        database.dispose()
    click.echo(f"Held about the {found.searched}:")
    for name, rows in found.counts().items():
        click.echo(f"  {name}: {rows} row{'' if rows == 1 else 's'}")
    references = [row["reference"] for row in found.tables["enquiries"]]
    if references:
        click.echo(f"Enquiries: {', '.join(references)}")
    if out is not None:
        click.echo(f"A copy of every row is in {out} (readable by you only).")
    click.echo("Held elsewhere, and not searched here:")
    for place in ELSEWHERE:
        click.echo(f"  - {place}")
    click.echo("This search is in the audit log.")
