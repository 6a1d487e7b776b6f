"""The pack's rows, streamed from the database: Core selects, never ORM objects.

Each function returns the CSV header and a generator of rows (lists of strings). Rows belong
to the range by their contact time (call arrival, callback owed-from, email receipt), as in
`metrics.compliance`. Results are fetched in batches (`yield_per`; a server-side cursor on
PostgreSQL), so memory stays flat however many rows there are. What the report counts goes into
a `Tally` (metrics.evidence.tally) on the way past: callbacks' lead times, and what was not counted.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Iterator, Sequence

from sqlalchemy import String, case, func, select, type_coerce
from sqlalchemy.engine import Connection

from callbacks.deadlines import explain_stored
from callbacks.owed import breach_unrecorded
from helpdesk.models import Call, Callback, CallbackAttempt, EmailAcknowledgement, Enquiry, InboundEmail, TwilioEvent
from helpdesk.models.event import found_in_log
from metrics.evidence.csvs import Lines, RowBatches
from metrics.evidence.fields import (Redactor, STORED_LENGTH, UKHours, as_utc, inert, london_times, seconds, uk_time,
                                     yes_no)
from metrics.evidence.tally import DECIDED, ENQUIRY_OUTCOMES, Tally, lead_bucket
from metrics.handling import answer_detail, answered_at, first_answers

BATCH = 10_000

CALL_COLUMNS = [
    "call_sid", "arrived", "answered", "ended", "answer_seconds", "rings", "outcome", "in_hours",
    "counted", "ten_ring_result", "caller_type", "enquiry_reference", "caller", "from_twilio_api",
    "arrival_estimated", "found_in_call_log", "config_version", "enquiry_outcome", "enquiry_outcome_recorded",
]
CALLBACK_COLUMNS = [
    "callback_id", "enquiry_reference", "reason", "caller_type", "caller", "owed_from", "due", "clock",
    "deadline_explanation", "attempts", "first_attempt", "reached", "counted", "three_hour_result",
    "breach_recorded", "status", "closed", "closed_outcome", "config_version",
]
ATTEMPT_COLUMNS = ["callback_id", "enquiry_reference", "started", "dialled", "source", "outcome", "answered", "ended",
                   "recorded"]
EMAIL_COLUMNS = [
    "enquiry_reference", "received", "due", "acknowledged", "ack_seconds", "status", "counted",
    "ack_result", "sender", "not_sent_reason", "enquiry_status", "marked_answered", "first_answered",
]
# Where an email enquiry stands (emails.csv's enquiry_status).
EMAIL_ENQUIRY_STATUSES = {"open": "awaiting_response", "closed": "answered", "callback_owed": "callback_needed"}
# Why an acknowledgement held back by the flood guard was not sent (its row has no reason of its own).
FLOOD_GUARD = "flood guard: the sender passed the limit of acknowledgements in the time window"
NOTE = "note"


def _stream(connection: Connection, statement) -> Iterator:
    return connection.execute(statement.execution_options(yield_per=BATCH))


def _batches(connection: Connection, statement) -> Iterator[Sequence[tuple]]:
    """The statement's rows, up to BATCH at a time, as plain tuples.

    On SQLite they come straight from the driver's cursor: SQLAlchemy's Row objects and result
    processing cost more than the query itself in a million-row export. SQLAlchemy still runs the
    statement (binds, transaction) and fetches nothing itself until asked. On PostgreSQL they come
    from a server-side cursor, as `_stream`'s do.
    """
    if connection.dialect.name != "sqlite":
        yield from _stream(connection, statement).partitions()
        return
    result = connection.execute(statement)
    try:
        while batch := result.cursor.fetchmany(BATCH):
            yield batch
    finally:
        result.close()


def _stored_utc(connection: Connection) -> Callable:
    """How to select an instant as SQLite stores it, "YYYY-MM-DD HH:MM:SS.ffffff" in UTC, on any database."""
    if connection.dialect.name == "sqlite":
        return lambda column: type_coerce(column, String)  # as stored, without building a datetime
    return lambda column: func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI:SS.US")


def call_rows(connection: Connection, start: datetime, end: datetime,
              redactor: Redactor) -> tuple[list[str], RowBatches]:
    """One row per call that arrived in [start, end), oldest first."""
    # The hot path of a big export: plain columns, the times as text in one form on both
    # databases (uk_time formats that far faster than a datetime), and no SQL CASE expressions
    # (SQLite evaluates those more slowly than the loop below).
    stored = _stored_utc(connection)
    statement = (
        select(
            Call.call_sid, stored(Call.arrived_at), stored(Call.answered_at), stored(Call.ended_at),
            Call.answer_seconds, Call.rings, Call.outcome, Call.in_hours, Call.countable, Call.sla_result,
            Call.caller_type, Enquiry.reference, Call.caller_number, Call.from_api, Call.incoming_seen,
            Call.config_version, Enquiry.status, stored(Enquiry.outcome_recorded_at),
        )
        .select_from(Call)
        .outerjoin(Enquiry, Enquiry.id == Call.enquiry_id)
        .where(Call.arrived_at >= start, Call.arrived_at < end)
        .order_by(Call.arrived_at, Call.id)
    )

    # Calls found in Twilio's call log (few, read from a partial index, in the export's
    # snapshot): those with no incoming webhook since never reached the help desk, as
    # helpdesk.models.call.never_reached says.
    found = set(connection.execute(select(TwilioEvent.call_sid).where(found_in_log())).scalars())

    def batches() -> Iterator[Lines]:
        hours = UKHours()
        for batch in _batches(connection, statement):
            yield Lines(_call_lines(batch, hours, redactor.number, found),
                        lambda batch=batch: _call_lines(batch, hours, redactor.number, found, joined=False))

    return list(CALL_COLUMNS), RowBatches(batches())


def _call_lines(batch: Sequence[tuple], hours: UKHours, number: Callable[[str | None], str],
                found: set[str], joined: bool = True) -> list:
    """Calls' rows from call_rows' plain tuples: CSV lines (`joined`), or tuples of fields.

    The hot loop of a big export, so it does without calls where it can: uk_time() is inlined for
    times in the stored form (as all of them are), and each row is joined at once, so its tuple
    never reaches the garbage collector.
    """
    rows = []
    add = rows.append
    for (sid, arrived, answered, ended, answer_seconds, rings, outcome, in_hours, countable, result,
         caller_type, reference, caller, from_api, incoming_seen, version, enquiry_status, recorded) in batch:
        if len(arrived) == STORED_LENGTH:
            local_hour, offset = hours[arrived[:13]]
            arrived = local_hour + arrived[13:23] + offset
        else:
            arrived = uk_time(arrived, hours)
        if answered is None:
            answered = ""
        elif len(answered) == STORED_LENGTH:
            local_hour, offset = hours[answered[:13]]
            answered = local_hour + answered[13:23] + offset
        else:
            answered = uk_time(answered, hours)
        if ended is None:
            ended = ""
        elif len(ended) == STORED_LENGTH:
            local_hour, offset = hours[ended[:13]]
            ended = local_hour + ended[13:23] + offset
        else:
            ended = uk_time(ended, hours)
        # When the agent recorded the enquiry's outcome: most answered calls have one.
        if recorded is None or outcome != "answered":
            recorded = ""
        elif len(recorded) == STORED_LENGTH:
            local_hour, offset = hours[recorded[:13]]
            recorded = local_hour + recorded[13:23] + offset
        else:
            recorded = uk_time(recorded, hours)
        counted = countable and result in DECIDED
        fields = (
            sid, arrived, answered, ended, seconds(answer_seconds),
            "" if rings is None else str(rings), outcome, "yes" if in_hours else "no", "yes" if counted else "no",
            result if counted else "", caller_type, reference or "", number(caller), "yes" if from_api else "no",
            "no" if incoming_seen else "yes", "no" if incoming_seen or sid not in found else "yes", version or "",
            ENQUIRY_OUTCOMES.get(enquiry_status, "") if outcome == "answered" else "", recorded,
        )
        add(",".join(fields) if joined else fields)
    return rows


def callback_rows(connection: Connection, start: datetime, end: datetime, redactor: Redactor, tally: Tally,
                  now: datetime, include_notes: bool = False) -> tuple[list[str], Iterator[list[str]]]:
    """One row per callback owed from a moment in [start, end), oldest first; one past its deadline
    undecided is breached at `now`, as metrics.compliance counts it, before the sweep records it."""
    columns = [
        Callback.id, Enquiry.reference, Callback.reason, Callback.caller_type, Callback.caller_number,
        Callback.owed_from, Callback.due_at, Callback.clock, Callback.explanation, Callback.attempts_count,
        Callback.first_attempt_at, Callback.reached_at,
        case((breach_unrecorded(now), "breached"), else_=Callback.sla_result),
        Callback.breached_at, Callback.status, Callback.closed_at, Callback.outcome, Callback.config_version,
        Callback.note,
    ]
    statement = (
        select(*columns)
        .join(Enquiry, Enquiry.id == Callback.enquiry_id)
        .where(Callback.owed_from >= start, Callback.owed_from < end)
        .order_by(Callback.owed_from, Callback.id)
    )

    def rows() -> Iterator[list[str]]:
        when = london_times()
        for (callback_id, reference, reason, caller_type, caller, owed_from, due_at, clock, explanation, attempts,
             first_attempt_at, reached_at, result, breached_at, status, closed_at, outcome, version,
             note) in _stream(connection, statement):
            counted = result in DECIDED
            if counted:
                tally.lead[lead_bucket(due_at, first_attempt_at)] += 1
                tally.reached += reached_at is not None
                tally.corrected += result == "met" and breached_at is not None
            elif outcome == "withdrawn":
                tally.withdrawn += 1
            elif outcome == "unreachable":
                tally.no_number += 1  # closing as unreachable undecided needs an attempt unless there is no number
            elif status == "open":
                tally.pending_callbacks += 1  # undecided and open: not yet due (a late one is counted, breached)
            row = [
                str(callback_id), reference, reason, caller_type, redactor.number(caller), when(owed_from),
                when(due_at), clock, explain_stored(explanation), str(attempts or 0), when(first_attempt_at),
                when(reached_at), yes_no(counted), result if counted else "", when(breached_at), status, when(closed_at),
                outcome or "", version,
            ]
            if include_notes:
                row.append(inert(note or ""))
            yield row

    return CALLBACK_COLUMNS + ([NOTE] if include_notes else []), rows()


def attempt_rows(connection: Connection, start: datetime, end: datetime,
                 include_notes: bool = False) -> tuple[list[str], Iterator[list[str]]]:
    """One row per callback attempt, for the callbacks in callbacks.csv, in the same order."""
    statement = (
        select(
            CallbackAttempt.callback_id, Enquiry.reference, CallbackAttempt.started_at, CallbackAttempt.dialled_at,
            CallbackAttempt.source, CallbackAttempt.outcome, CallbackAttempt.answered_at, CallbackAttempt.ended_at,
            CallbackAttempt.recorded_at, CallbackAttempt.note,
        )
        .join(Callback, Callback.id == CallbackAttempt.callback_id)
        .join(Enquiry, Enquiry.id == Callback.enquiry_id)
        .where(Callback.owed_from >= start, Callback.owed_from < end)
        .order_by(Callback.owed_from, Callback.id, CallbackAttempt.started_at, CallbackAttempt.id)
    )

    def rows() -> Iterator[list[str]]:
        when = london_times()
        for callback_id, reference, started, dialled, source, outcome, answered, ended, recorded, note in _stream(
                connection, statement):
            row = [str(callback_id), reference, when(started), when(dialled), source, outcome, when(answered),
                   when(ended), when(recorded)]
            if include_notes:
                row.append(inert(note or ""))
            yield row

    return ATTEMPT_COLUMNS + ([NOTE] if include_notes else []), rows()


def ack_result(status: str, sla_result: str | None, due_at: datetime, now: datetime) -> tuple[bool, str]:
    """Whether an acknowledgement counts for the rule, and its result, as metrics.compliance judges it."""
    if status == "suppressed":
        return False, ""
    if sla_result in ("met", "late"):
        return True, sla_result
    if due_at < now:
        return True, "unacknowledged"
    return False, "pending"


def email_rows(connection: Connection, start: datetime, end: datetime, redactor: Redactor,
               now: datetime, tally: Tally | None = None) -> tuple[list[str], Iterator[list[str]]]:
    """One row per acknowledgement owed for an email received in [start, end), oldest first."""
    ack = EmailAcknowledgement
    first = first_answers(start)
    statement = (
        select(Enquiry.reference, ack.received_at, ack.due_at, ack.sent_at, ack.status, ack.sla_result,
               InboundEmail.sender, ack.to_address, InboundEmail.decision, ack.last_error, Enquiry.status,
               Enquiry.closed_at, answered_at(first))
        .select_from(ack)
        .join(Enquiry, Enquiry.id == ack.enquiry_id)
        .outerjoin(InboundEmail, InboundEmail.id == ack.inbound_email_id)
        .outerjoin(first, first.c.detail == answer_detail(Enquiry.reference))
        .where(ack.received_at >= start, ack.received_at < end)
        .order_by(ack.received_at, ack.id)
    )

    def rows() -> Iterator[list[str]]:
        when = london_times()
        for (reference, received, due_at, sent, status, result, sender, to_address, decision, error, enquiry_status,
             closed_at, first_answer) in _stream(connection, statement):
            counted, verdict = ack_result(status, result, as_utc(due_at), now)
            if tally is not None:
                tally.pending_acks += verdict == "pending"
                tally.awaiting_emails += enquiry_status == "open"
            waited = as_utc(sent) - as_utc(received) if sent is not None else None
            # A suppressed row's reason is the app's own words (never a mail server's, which are
            # kept for rows that failed): the flood guard, the help desk's own address, a restore.
            reason = "" if status != "suppressed" else FLOOD_GUARD if decision == "rate_limited" else (error or "")
            yield [
                reference, when(received), when(due_at), when(sent), seconds(waited), status, yes_no(counted),
                verdict, redactor.email(sender or to_address), inert(reason),
                EMAIL_ENQUIRY_STATUSES.get(enquiry_status, enquiry_status),
                when(closed_at) if enquiry_status == "closed" else "", when(first_answer),
            ]

    return list(EMAIL_COLUMNS), rows()
