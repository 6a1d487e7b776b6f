"""Removing callers' and senders' personal data once the retention period has passed
(`helpdesk anonymise`).

UK GDPR keeps personal data no longer than it is needed. The contract owner sets how long; this
removes it from every contact that began before a given UK day, and keeps what the figures are
made of: times, outcomes, rings, caller types, references, deadlines and results. So every
page, `/metrics` and an evidence pack of those days show the same figures afterwards, with
"removed" where a number or address was.

- Calls: the caller's number. The journal's events of the call: every parameter's value but
  those in KEPT_PARAMETERS (times, statuses, SIDs, durations, the menu key) is blanked, so the
  events stay in place and in order, as DESIGN.md's journal asks, without the person in them.
  Their fingerprints (a digest of the values) go too: a digest of a phone number can be
  reversed by trying every number.
- Callbacks: the number to call and the agent's note; each attempt's note, and its call's events.
- Emails: the sender, subject, Message-ID and the message as received (attachments included);
  the address each acknowledgement went to. Its digest (`raw_sha256`) stays: it proves what
  was received without saying it.

Anything still being worked is left, and counted: a callback not closed (and its call), a call
not yet finished, an email enquiry still open or an acknowledgement not yet sent.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, datetime

import click
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session

from helpdesk.models import (
    AuditEntry, Call, Callback, CallbackAttempt, EmailAcknowledgement, Enquiry, InboundEmail, TwilioEvent)
from helpdesk.clock import day_problem, iso_day
from helpdesk.pages.format import quoted
from helpdesk.phones import REMOVED
from metrics.periods import uk_date, uk_midnight

ACTION = "personal_data.removed"
CHUNK = 500
ANONYMISED = "anonymised:"  # a blanked event's fingerprint starts so

# Twilio's parameters that say nothing about a person: what the call records are computed from.
KEPT_PARAMETERS = frozenset({
    "AccountSid", "ApiVersion", "CallSid", "ParentCallSid", "CallStatus", "Direction", "Timestamp",
    "SequenceNumber", "CallbackSource", "CallDuration", "Duration", "StartTime", "EndTime", "DateUpdated",
    "DialCallStatus", "DialCallSid", "DialCallDuration", "DialBridged", "QueueResult", "QueueSid", "QueueTime",
    "DequeingCallSid", "Digits", "AnsweredBy", "MachineDetectionDuration", "RecordingStatus",
    "RecordingDuration", "RecordingSource", "ErrorCode", "SipResponseCode", "StirVerstat",
})


@dataclass
class Removal:
    """How many rows had personal data removed (or would have), and how many were left."""

    calls: int = 0
    events: int = 0
    callbacks: int = 0
    attempts: int = 0
    emails: int = 0
    acknowledgements: int = 0
    calls_left: int = 0  # not finished, or their callback is not closed
    callbacks_left: int = 0  # not closed
    emails_left: int = 0  # their enquiry is open, or the acknowledgement not yet sent


def blanked(params: str) -> str:
    """A journal event's parameters with every value a person could be known by blanked."""
    return json.dumps([[name, value if name in KEPT_PARAMETERS else ""] for name, value in json.loads(params)],
                      ensure_ascii=False)


def remove_personal_data(session: Session, before: datetime, *, apply: bool) -> Removal:
    """Remove (with `apply`, else only count) the personal data of contacts begun before
    `before`, a chunk of rows per transaction, so a large first run holds no lock for long and
    can be stopped and run again: it takes up where it stopped."""
    removal = Removal()
    _calls(session, before, removal, apply)
    _callbacks(session, before, removal, apply)
    _emails(session, before, removal, apply)
    _orphan_events(session, before, removal, apply)
    return removal


def record_removal(session: Session, *, before_day: str, removal: Removal, user_id: int, username: str,
                   now: datetime) -> None:
    with session.begin():
        session.add(AuditEntry(at=now, user_id=user_id, actor=username, action=ACTION,
                               detail=json.dumps({"before": before_day, "rows": asdict(removal)}, sort_keys=True)))


def _chunks(session: Session, query, key):
    """The query's rows in chunks of CHUNK, by `key` (a unique, increasing column), each chunk
    in a transaction of its own: rows changed in one are not read again."""
    last = None
    while True:
        with session.begin():
            page = session.execute((query if last is None else query.where(key > last)).order_by(key).limit(CHUNK)).all()
            if not page:
                return
            yield page
        last = getattr(page[-1], key.key)


def _not_removed(column):
    return or_(column.is_(None), column != REMOVED)


def _calls(session: Session, before: datetime, removal: Removal, apply: bool) -> None:
    being_worked = exists().where(Callback.enquiry_id == Call.enquiry_id, Callback.status != "closed")
    query = select(Call.id, Call.call_sid, (Call.ended_at.is_(None) | being_worked).label("left")).where(
        func.coalesce(Call.arrived_at, Call.ended_at) < before, _not_removed(Call.caller_number))
    for page in _chunks(session, query, Call.id):
        done = [row for row in page if not row.left]
        removal.calls_left += len(page) - len(done)
        removal.calls += len(done)
        if apply and done:
            session.execute(update(Call).where(Call.id.in_([row.id for row in done])).values(caller_number=REMOVED))
        removal.events += _blank_events(session, [row.call_sid for row in done], apply)


def _callbacks(session: Session, before: datetime, removal: Removal, apply: bool) -> None:
    query = select(Callback.id, (Callback.status != "closed").label("left")).where(
        Callback.owed_from < before, _not_removed(Callback.caller_number))
    for page in _chunks(session, query, Callback.id):
        done = [row.id for row in page if not row.left]
        removal.callbacks_left += len(page) - len(done)
        removal.callbacks += len(done)
        attempts = session.execute(select(CallbackAttempt.id, CallbackAttempt.call_sid)
                                   .where(CallbackAttempt.callback_id.in_(done))).all()
        removal.attempts += len(attempts)
        if apply and done:
            session.execute(update(Callback).where(Callback.id.in_(done)).values(caller_number=REMOVED, note=""))
            session.execute(update(CallbackAttempt).where(CallbackAttempt.callback_id.in_(done)).values(note=""))
        removal.events += _blank_events(session, [row.call_sid for row in attempts if row.call_sid], apply)


def _emails(session: Session, before: datetime, removal: Removal, apply: bool) -> None:
    open_enquiry = exists().where(Enquiry.id == InboundEmail.enquiry_id, Enquiry.status == "open")
    unsent = exists().where(EmailAcknowledgement.inbound_email_id == InboundEmail.id,
                            EmailAcknowledgement.status == "pending")
    query = select(InboundEmail.id, (open_enquiry | unsent).label("left")).where(
        InboundEmail.received_at < before, _not_removed(InboundEmail.sender))
    for page in _chunks(session, query, InboundEmail.id):
        done = [row.id for row in page if not row.left]
        removal.emails_left += len(page) - len(done)
        removal.emails += len(done)
        acknowledged = EmailAcknowledgement.inbound_email_id.in_(done)
        removal.acknowledgements += session.scalar(select(func.count()).where(acknowledged)) or 0
        if apply and done:
            session.execute(update(InboundEmail).where(InboundEmail.id.in_(done)).values(
                sender=REMOVED, subject="", message_id=None, raw=b""))
            session.execute(update(EmailAcknowledgement).where(acknowledged).values(to_address=REMOVED))


def _orphan_events(session: Session, before: datetime, removal: Removal, apply: bool) -> None:
    """Events of no call record and no callback attempt (a leg's event whose call was never
    stored, say), received before the day."""
    owned = or_(exists().where(Call.call_sid == TwilioEvent.call_sid),
                exists().where(CallbackAttempt.call_sid == TwilioEvent.call_sid))
    query = select(TwilioEvent.id, TwilioEvent.params).where(
        TwilioEvent.received_at < before, ~TwilioEvent.fingerprint.startswith(ANONYMISED), ~owned)
    for page in _chunks(session, query, TwilioEvent.id):
        removal.events += len(page)
        if apply:
            _write_blanked(session, page)


def _blank_events(session: Session, call_sids: list[str], apply: bool) -> int:
    """Blank the events of these calls not blanked yet (in the caller's transaction)."""
    if not call_sids:
        return 0
    events = session.execute(select(TwilioEvent.id, TwilioEvent.params).where(
        TwilioEvent.call_sid.in_(call_sids), ~TwilioEvent.fingerprint.startswith(ANONYMISED))).all()
    if apply and events:
        _write_blanked(session, events)
    return len(events)


def _write_blanked(session: Session, events) -> None:
    session.execute(update(TwilioEvent), [
        {"id": event.id, "params": blanked(event.params), "fingerprint": f"{ANONYMISED}{event.id}"}
        for event in events])



@click.command("anonymise")
@click.option("--before", "before_day", required=True, metavar="DATE",
              help="Remove personal data from contacts that began before this UK day, YYYY-MM-DD.")
@click.option("--user", "username", required=True,
              help="Who is removing it: an active administrator (their password is asked for).")
@click.option("--apply", is_flag=True, help="Remove it. Without --apply, only say what would be removed.")
def anonymise_command(before_day: str, username: str, apply: bool) -> None:
    """Remove callers' and senders' personal data from contacts that began before a UK day.

    For the retention period your contract owner sets. Removes callers' numbers, senders'
    addresses, emails as received, agents' notes and what Twilio's webhooks said of people;
    keeps what the figures are made of, so pages, /metrics and evidence packs give the same
    figures. Anything still being worked is left. Without --apply it only counts. The password
    comes from HELPDESK_PASSWORD (for scripts), or is asked for. Each removal is in the audit
    log. Uses DATABASE_URL.
    """
    from helpdesk.cli import migrated_database_url
    from helpdesk.cli_users import administrator_for
    from helpdesk.clock import now_utc
    from helpdesk.db import Database
    from helpdesk.dbutil import command_errors

    now = now_utc()
    day = _day_before_tomorrow(before_day, now)
    before = uk_midnight(day)
    database = Database(migrated_database_url())
    try:
        with command_errors("removal", None), database.session() as session:
            user = administrator_for(session, username, "remove personal data")
            removal = remove_personal_data(session, before, apply=apply)
            if apply:
                record_removal(session, before_day=day.isoformat(), removal=removal, user_id=user.id,
                               username=user.username, now=now)
    finally:
        database.dispose()
    click.echo(f"Contacts that began before {day:%-d %B %Y} (UK time): "
               f"{'removed' if apply else 'would remove'} personal data from")
    for count, what in ((removal.calls, "call"), (removal.events, "webhook as received"),
                        (removal.callbacks, "callback"), (removal.attempts, "callback attempt"),
                        (removal.emails, "email"), (removal.acknowledgements, "acknowledgement")):
        click.echo(f"  {count:,} {what if count == 1 else _plural(what)}")
    left = ((removal.calls_left, "call", "not finished, or its callback is not closed"),
            (removal.callbacks_left, "callback", "not closed"),
            (removal.emails_left, "email", "its enquiry is open, or its acknowledgement not yet sent"))
    for count, what, why in left:
        if count:
            click.echo(f"Left: {count:,} {what if count == 1 else _plural(what)} still being worked ({why}).")
    if apply:
        click.echo("This removal is in the audit log. Backups, evidence packs already exported, Twilio and the "
                   "mailbox keep their own copies: see the README.")
    else:
        click.echo("Nothing was changed: add --apply to remove it.")


def _day_before_tomorrow(text: str, now: datetime) -> date:
    day = iso_day(text)
    if day is None:
        raise click.BadParameter(f"{quoted(text)} {day_problem(text)}", param_hint="--before")
    if day > uk_date(now):
        raise click.BadParameter(f"{day.isoformat()} is after today: give today's date or an earlier one",
                                 param_hint="--before")
    return day


def _plural(what: str) -> str:
    return what.replace("webhook as received", "webhooks as received") if what.startswith("webhook") else what + "s"
