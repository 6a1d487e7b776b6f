"""Removing callers' and senders' personal data once the retention period has passed, or one
person's when they ask (`helpdesk anonymise`, in helpdesk/cli_retention.py).

UK GDPR keeps personal data no longer than it is needed. The contract owner sets how long; this
removes it from every contact that began before a given UK day, and keeps what the figures are
made of: times, outcomes, rings, caller types, references, deadlines and results. So every
page, `/metrics` and an evidence pack of those days show the same figures afterwards, with
"removed" where a number or address was ("withheld" stays: it says why no callback was owed).

- Calls: the caller's number. The journal's events of the call are blanked: every parameter's
  value but the times, statuses, SIDs, durations and the menu key, and their fingerprints
  (helpdesk/blanked_events.py).
- Callbacks: the number to call and the agent's note; each attempt's note, and its call's events.
- Emails: the sender, subject, Message-ID and the message as received (attachments included);
  the address each acknowledgement went to. Its digest (`raw_sha256`) stays: it proves what
  was received without saying it.

Anything still being worked is left, and counted: a callback not closed (and its call), a call
not yet finished (unless it never will be: UNFINISHED_FOR_GOOD), an email enquiry still open or
waiting for a callback, or an acknowledgement not yet sent.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, exists, func, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from helpdesk.blanked_events import blank_events, not_blanked, write_blanked
from helpdesk.dbutil import dialect_name
from helpdesk.models import (
    AuditEntry, Call, Callback, CallbackAttempt, EmailAcknowledgement, Enquiry, InboundEmail, TwilioEvent)
from helpdesk.phones import REMOVED, REMOVED_NUMBERS, REMOVED_WITHHELD
from helpdesk.subject_access import Found

ACTION = "personal_data.removed"
CHUNK = 500
PAUSE_SECONDS = 0.02  # SQLite: between two chunks, for the app's writes
EVENT_WINDOW = 20_000  # events of no call are looked for this many ids at a time
# A call with no ending this long after it arrived will not get one (Twilio's API is asked about
# it for two days): it is done, not still being worked.
UNFINISHED_FOR_GOOD = timedelta(days=3)
PART = "part"  # in `resume_at`: which of the calls, callbacks, emails and other events a run stopped in

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
    emails_left: int = 0  # their enquiry is open or waiting for a callback, or the acknowledgement not yet sent
    finished: bool = True  # False: it stopped at its limit of chunks, and the next run goes on

    def removed_any(self) -> bool:
        return any((self.calls, self.events, self.callbacks, self.attempts, self.emails, self.acknowledgements))


@dataclass
class _Run:
    """A removal's state as it goes: its budget of chunks, where to go on from, and its time."""

    now: datetime
    chunks: int | None  # None: no limit
    # Where the budget ran out (the part, and the last row read in its table), so the next run
    # goes on from there rather than reading again the rows it left (those still being worked).
    resume_at: dict[str, int] = field(default_factory=dict)
    stopped: bool = False

    def take(self) -> bool:
        if self.chunks is None:
            return True
        if self.chunks == 0:
            self.stopped = True
            return False
        self.chunks -= 1
        return True


@dataclass(frozen=True)
class Scope:
    """Which rows a removal takes, as a condition on each table (only those not being worked
    are changed): contacts begun before a day, or one person's (`helpdesk subject-access`)."""

    calls: ColumnElement[bool]
    callbacks: ColumnElement[bool]
    emails: ColumnElement[bool]
    events: ColumnElement[bool]  # of no call or attempt: those of one are taken with it

    @classmethod
    def before(cls, moment: datetime) -> Scope:
        return cls(calls=func.coalesce(Call.arrived_at, Call.ended_at) < moment, callbacks=Callback.owed_from < moment,
                   emails=InboundEmail.received_at < moment, events=TwilioEvent.received_at < moment)

    @classmethod
    def of_person(cls, found: Found) -> Scope:
        def ids(table: str, model):
            return model.id.in_([row["id"] for row in found.tables[table]])

        return cls(calls=ids("calls", Call), callbacks=ids("callbacks", Callback),
                   emails=ids("inbound_emails", InboundEmail), events=ids("twilio_events", TwilioEvent))


def remove_personal_data(session: Session, scope: Scope, *, apply: bool, now: datetime, chunks: int | None = None,
                         resume_at: dict[str, int] | None = None, into: Removal | None = None) -> Removal:
    """Remove (with `apply`, else only count) the personal data of the contacts in `scope`, a
    chunk of rows per transaction, so a large first run holds no lock for long and can be
    stopped and run again: it takes up where it stopped. With `chunks`, it stops after that
    many (the scheduler's runs stay short) and says it has not finished; give the next run the
    same `resume_at` (kept up to date here) and it goes on from where this one stopped. The
    counts go into `into` as it goes, so a caller can say what was done when it is stopped."""
    removal = into if into is not None else Removal()
    run = _Run(now, chunks, resume_at if resume_at is not None else {})
    parts = ((_calls, scope.calls), (_callbacks, scope.callbacks), (_emails, scope.emails),
             (_orphan_events, scope.events))
    for index in range(run.resume_at.pop(PART, 0), len(parts)):
        remove, condition = parts[index]
        remove(session, condition, removal, apply, run)
        if run.stopped:
            run.resume_at[PART] = index
            break
    removal.finished = not run.stopped
    return removal


def empty_write_ahead_log(session: Session) -> bool:
    """SQLite: copy the write-ahead log into the file and empty it, so the pages it held from
    before the removal go too; False when a reader (the app) kept it from being emptied now (the
    app's own checkpoints reuse it later). Nothing to do on PostgreSQL."""
    if dialect_name(session) != "sqlite":
        return True
    # On the driver's connection as it is, outside the transaction every engine connection begins;
    # and without waiting, which would hold back the app's writes (webhooks) while it waited.
    connection = session.get_bind().raw_connection()
    try:
        cursor = connection.cursor()
        waits = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
        cursor.execute("PRAGMA busy_timeout = 0")
        try:
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(waits)}")
            cursor.close()
    finally:
        connection.close()
    return not busy


def record_removal(session: Session, *, taken: dict[str, str], removal: Removal, user_id: int | None,
                   username: str, now: datetime) -> None:
    """The audit log's entry: what was taken ({"before": day} or {"person": as subject access
    describes them}) and the counts."""
    with session.begin():
        session.add(AuditEntry(at=now, user_id=user_id, actor=username, action=ACTION,
                               detail=json.dumps({**taken, "rows": asdict(removal)}, sort_keys=True)))


def _chunks(session: Session, query, key, run: _Run, window: int | None = None):
    """The query's rows in chunks of CHUNK, by `key` (a unique, increasing column), each chunk
    in a transaction of its own (rows changed in one are not read again), while the budget lasts.
    With `window`, a chunk is the rows whose key lies in the next `window` values instead (a
    query that must read many rows to find a few never reads them all in one transaction)."""
    table = key.class_.__tablename__
    last = run.resume_at.pop(table, None)
    sqlite = dialect_name(session) == "sqlite"
    top = None
    if window is not None:
        with session.begin():
            top = session.scalar(select(func.max(key))) or 0
    while True:
        if window is not None and (last or 0) >= top:
            return
        if not run.take():
            if last is not None:
                run.resume_at[table] = last
            return
        with session.begin():
            if sqlite:  # what is removed is overwritten in the file, not only unlinked (on whatever build)
                session.execute(text("PRAGMA secure_delete = ON"))
            after = query if last is None else query.where(key > last)
            if window is None:
                page = session.execute(after.order_by(key).limit(CHUNK)).all()
                if not page:
                    return
            else:
                page = session.execute(after.where(key <= (last or 0) + window)).all()
            if page:
                yield page
        if window is not None:
            last = (last or 0) + window
        elif len(page) < CHUNK:  # the last of them
            return
        else:
            last = getattr(page[-1], key.key)
        if sqlite:
            # Writers queue for SQLite's lock, not fairly: let the webhooks waiting for it in
            # before the next chunk takes it, or they give up and go to the spool.
            time.sleep(PAUSE_SECONDS)


def _not_removed(column):
    return or_(column.is_(None), column.not_in(REMOVED_NUMBERS))


def _removed_number(column):
    """What a caller's number becomes: "withheld" stays known, as the pages and packs show it."""
    return case((column.is_(None), REMOVED_WITHHELD), else_=REMOVED)


def _called_back(session: Session) -> set[int]:
    """The enquiries with a callback still open: read in each chunk's transaction (they are few,
    and found by the status index), so a callback opened meanwhile is seen."""
    return set(session.scalars(select(Callback.enquiry_id).where(Callback.status == "open")))


def _calls(session: Session, scope: ColumnElement[bool], removal: Removal, apply: bool,
           run: _Run) -> None:
    query = select(Call.id, Call.call_sid, Call.enquiry_id, Call.ended_at, Call.arrived_at.label("started")).where(
        scope, _not_removed(Call.caller_number))
    for page in _chunks(session, query, Call.id, run):
        worked = _called_back(session)
        done = [row for row in page if row.enquiry_id not in worked and (
            row.ended_at is not None or (row.started or run.now) < run.now - UNFINISHED_FOR_GOOD)]
        removal.calls_left += len(page) - len(done)
        removal.calls += len(done)
        if apply and done:
            session.execute(update(Call).where(Call.id.in_([row.id for row in done])).values(
                caller_number=_removed_number(Call.caller_number)))
        removal.events += blank_events(session, [row.call_sid for row in done], apply)


def _callbacks(session: Session, scope: ColumnElement[bool], removal: Removal, apply: bool,
               run: _Run) -> None:
    query = select(Callback.id, (Callback.status != "closed").label("left")).where(
        scope, _not_removed(Callback.caller_number))
    for page in _chunks(session, query, Callback.id, run):
        done = [row.id for row in page if not row.left]
        removal.callbacks_left += len(page) - len(done)
        removal.callbacks += len(done)
        attempts = session.execute(select(CallbackAttempt.id, CallbackAttempt.call_sid)
                                   .where(CallbackAttempt.callback_id.in_(done))).all()
        removal.attempts += len(attempts)
        if apply and done:
            session.execute(update(Callback).where(Callback.id.in_(done)).values(
                caller_number=_removed_number(Callback.caller_number), note=""))
            session.execute(update(CallbackAttempt).where(CallbackAttempt.callback_id.in_(done)).values(note=""))
        removal.events += blank_events(session, [row.call_sid for row in attempts if row.call_sid], apply)


def _emails(session: Session, scope: ColumnElement[bool], removal: Removal, apply: bool,
            run: _Run) -> None:
    open_enquiry = exists().where(Enquiry.id == InboundEmail.enquiry_id, Enquiry.status == "open")
    query = select(InboundEmail.id, InboundEmail.enquiry_id, open_enquiry.label("open")).where(
        scope, _not_removed(InboundEmail.sender))
    for page in _chunks(session, query, InboundEmail.id, run):
        unsent = set(session.scalars(select(EmailAcknowledgement.inbound_email_id)
                                     .where(EmailAcknowledgement.status == "pending")))
        called_back = _called_back(session)
        done = [row for row in page if not row.open and row.id not in unsent and row.enquiry_id not in called_back]
        removal.emails_left += len(page) - len(done)
        removal.emails += len(done)
        # An acknowledgement is one per enquiry (found by that index), sent for the email it names.
        acknowledged = and_(EmailAcknowledgement.enquiry_id.in_({row.enquiry_id for row in done} - {None}),
                            EmailAcknowledgement.inbound_email_id.in_([row.id for row in done]))
        removal.acknowledgements += session.scalar(select(func.count()).where(acknowledged)) or 0
        if apply and done:
            session.execute(update(InboundEmail).where(InboundEmail.id.in_([row.id for row in done])).values(
                sender=REMOVED, subject="", message_id=None, raw=b""))
            session.execute(update(EmailAcknowledgement).where(acknowledged).values(to_address=REMOVED))


def _orphan_events(session: Session, scope: ColumnElement[bool], removal: Removal, apply: bool,
                   run: _Run) -> None:
    """Events in scope of no call record and no callback attempt (a leg's event whose call was
    never stored, say)."""
    owned = or_(exists().where(Call.call_sid == TwilioEvent.call_sid),
                exists().where(CallbackAttempt.call_sid == TwilioEvent.call_sid))
    query = select(TwilioEvent.id, TwilioEvent.params).where(
        scope, not_blanked(), ~owned)
    for page in _chunks(session, query, TwilioEvent.id, run, window=EVENT_WINDOW):
        removal.events += len(page)
        if apply:
            write_blanked(session, page)
