"""Finish the records of calls whose last webhooks never came, from Twilio's REST API.

Twilio sends each status callback once. A call that ended while the app could not be
reached (the spool covers the database, not the app itself) never gets its ending: one still
"in progress" counts for nothing, and a missed call (the caller rang out to voicemail, or hung
up during the <Dial>) owes no callback, because a callback is owed once a missed call has
ended. Some time after such a call arrived, ask the Calls resource how it ended, and the
<Dial>'s agent legs whether anyone answered; journal what the API says as events of their own
("api_call", "api_leg") and recompute the record, as for any webhook. A caller who was offered
voicemail may have left a message whose webhooks never came either: for those calls the
call's recordings are asked for too ("api_recording"). Nothing the webhooks said is
overwritten: the API's facts are the last resort of the projection
(helpdesk/voice/projection.py). Answered calls with no ending yet are conversations going on,
and are not asked about.

Each run asks about BATCH calls: first those never asked about, oldest first, then those asked
about longest ago (what the API last said of each is kept in `twilio_lookups`). So calls
Twilio does not know, or that stay live, cannot keep newer calls from being asked about.

Calls that waited in a queue (`routing.mode = "queue"`) are left alone: the API cannot say
whether an agent took them off the queue, so their outcome would be a guess.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterator, NamedTuple

from sqlalchemy import ColumnElement, exists, select

from helpdesk.db import Database
from helpdesk.dbutil import dialect_insert, dialect_name
from helpdesk.models import Call, TwilioEvent, TwilioLookup
from helpdesk.models.call import unfinished
from helpdesk.settings import Settings
from helpdesk.voice.journal import record_event
from helpdesk.voice.lookup import CallFacts, CallLookup, LookupFailed, RecordingFacts
from helpdesk.voice.projection import API_CALL, API_LEG, API_RECORDING, TERMINAL

log = logging.getLogger(__name__)

# Calls older than this are not asked about again (Twilio keeps calls for 13 months; a call
# still unfinished after two days needs a person to look).
LOOK_BACK = timedelta(days=2)
BATCH = 50  # calls asked about in one run (in turn: see `in_turn`); the API's rate limits are per account
# A recording in these states may yet turn out to hold a message.
UNSETTLED_RECORDING = {"in-progress", "paused", "processing"}
_told_unknown: set[str] = set()  # calls Twilio did not know, already logged by this process


@dataclass
class ReconcileReport:
    checked: int = 0
    finished: int = 0  # the API said the call had ended: its record is complete now
    live: int = 0  # still going on Twilio's side
    unknown: int = 0  # Twilio does not know the call (another account, or deleted)
    failed: int = 0
    stopped: str | None = None  # why the run gave up early (Twilio unreachable)


def _queued():
    return exists().where(TwilioEvent.call_sid == Call.call_sid, TwilioEvent.decision == "queue")


def unfinished_calls(database: Database, now: datetime, after: timedelta, limit: int | None = BATCH,
                     since: datetime | None = None) -> list[str]:
    """CallSids of calls unfinished `after` their arrival: no ending yet, and not answered. Only
    those that arrived since `since` (by default LOOK_BACK before `now`); those never asked
    about first, oldest first, then those asked about longest ago."""
    since = now - LOOK_BACK if since is None else since
    with database.session() as session:
        return list(session.scalars(
            select(Call.call_sid)
            .outerjoin(TwilioLookup, TwilioLookup.call_sid == Call.call_sid)
            .where(unfinished(), Call.arrived_at < now - after, Call.arrived_at >= since, ~_queued())
            .order_by(*in_turn(), Call.arrived_at, Call.id)
            .limit(limit)))


def in_turn() -> tuple[ColumnElement, ...]:
    """ORDER BY, for a query joined to twilio_lookups: calls never asked about first, then
    those asked about longest ago."""
    return TwilioLookup.asked_at.is_not(None), TwilioLookup.asked_at


def note_answer(database: Database, call_sid: str, answer: str, now: datetime) -> None:
    """Keep what the API said about `call_sid` ("ended", "live", "unknown" or "failed"), and when."""
    with database.session() as session:
        insert = dialect_insert(dialect_name(session))(TwilioLookup).values(call_sid=call_sid, asked_at=now,
                                                                           answer=answer, times=1)
        session.execute(insert.on_conflict_do_update(
            index_elements=["call_sid"],
            set_={"asked_at": insert.excluded.asked_at, "answer": insert.excluded.answer,
                  "times": TwilioLookup.times + 1}))
        session.commit()


@dataclass(frozen=True)
class UnfinishedCall:
    call_sid: str
    arrived_at: datetime
    outcome: str
    queued: bool  # waited in a queue: the API cannot say how it ended, so it is never asked about
    asked_at: datetime | None = None  # when the API was last asked about it
    answer: str | None = None  # what it said then (see `note_answer`)


def list_unfinished(database: Database, since: datetime | None = None) -> list[UnfinishedCall]:
    """Every unfinished call (that arrived since `since`), oldest first, for a person to look at."""
    with database.session() as session:
        rows = session.execute(
            select(Call.call_sid, Call.arrived_at, Call.outcome, _queued(), TwilioLookup.asked_at, TwilioLookup.answer)
            .outerjoin(TwilioLookup, TwilioLookup.call_sid == Call.call_sid)
            .where(unfinished(), *([Call.arrived_at >= since] if since is not None else []))
            .order_by(Call.arrived_at, Call.id)).all()
    return [UnfinishedCall(sid, arrived_at, outcome, bool(queued), asked_at, answer)
            for sid, arrived_at, outcome, queued, asked_at, answer in rows]


def offered_voicemail(database: Database, call_sids: list[str]) -> frozenset[str]:
    """Those of `call_sids` whose caller the app sent to voicemail."""
    if not call_sids:
        return frozenset()
    with database.session() as session:
        return frozenset(session.scalars(
            select(TwilioEvent.call_sid).distinct()
            .where(TwilioEvent.call_sid.in_(call_sids), TwilioEvent.decision == "voicemail")))


def reconcile_calls(database: Database, settings: Settings, lookup: CallLookup, now: datetime,
                    since: datetime | None = None, limit: int | None = BATCH) -> ReconcileReport:
    """Ask the API about each unfinished call; store what it says about those that have ended.

    The scheduler asks about the last LOOK_BACK, BATCH at a time; `helpdesk calls unfinished
    --ask-twilio` about every call since `since`, with no limit.
    """
    report = ReconcileReport()
    after = timedelta(minutes=settings.webhooks.reconcile_after_minutes)
    sids = unfinished_calls(database, now, after, limit, since)
    for start in range(0, len(sids), BATCH):  # BATCH at a time: one IN (...) of a bounded size
        batch = sids[start:start + BATCH]
        for ended in ended_calls(database, lookup, batch, report, "unfinished calls", now,
                                 offered_voicemail(database, batch)):
            store_facts(database, settings, ended, now)
            report.finished += 1
        if report.stopped:
            break
    if report.checked and not report.stopped:
        log.info("reconcile: %d unfinished calls asked about; %d ended, %d still live, %d unknown to Twilio",
                 report.checked, report.finished, report.live, report.unknown)
    return report


class EndedCall(NamedTuple):
    """A call that has ended at Twilio, as the API describes it."""

    call_sid: str
    call: CallFacts
    legs: list[CallFacts]  # the calls it made (its <Dial>'s agent legs)
    recordings: list[RecordingFacts]  # asked for only when the caller was offered voicemail


def ended_calls(database: Database, lookup: CallLookup, call_sids: list[str], report: ReconcileReport, what: str,
                now: datetime, recordings_for: frozenset[str] = frozenset()) -> Iterator[EndedCall]:
    """Each of `call_sids` that has ended at Twilio, with its legs (and, for those in
    `recordings_for`, its recordings); the rest are counted in `report`. What the API said of
    each is kept (`note_answer`), so the next run asks about the others first.

    Stops at the first call Twilio cannot be asked about (unreachable, or rate-limited): that
    call keeps its turn, and the next run carries on from it.
    """
    for call_sid in call_sids:
        report.checked += 1
        try:
            ended = _ask(lookup, call_sid, call_sid in recordings_for)
        except LookupFailed as failure:
            if failure.unreachable:
                report.failed += 1
                report.stopped = failure.reason
                log.warning("reconcile: stopped after %d of the %s, to try again later: %s",
                            report.checked, what, failure.reason)
                return
            if failure.not_found:
                report.unknown += 1
                _tell_unknown(call_sid)
                note_answer(database, call_sid, "unknown", now)
            else:
                report.failed += 1
                log.warning("reconcile: %s", failure.reason)
                note_answer(database, call_sid, "failed", now)
            continue
        note_answer(database, call_sid, "live" if ended is None else "ended", now)
        if ended is None:
            report.live += 1
            continue
        yield ended


def _ask(lookup: CallLookup, call_sid: str, with_recordings: bool) -> EndedCall | None:
    """How the call ended, as the API describes it; None while it is still live, or while one of
    its recordings is still being made (a message may be in it: ask again once Twilio has it)."""
    call = lookup.call(call_sid)
    if call.sid != call_sid:
        raise LookupFailed(f"call {call_sid}: Twilio's answer is about another call")
    if call.status not in TERMINAL:
        return None
    legs = lookup.legs(call_sid)
    recordings = lookup.recordings(call_sid) if with_recordings else []
    if any(recording.status in UNSETTLED_RECORDING for recording in recordings):
        return None
    return EndedCall(call_sid, call, [leg for leg in legs if leg.parent_sid == call_sid],
                     [recording for recording in recordings if recording.call_sid == call_sid])


def _tell_unknown(call_sid: str) -> None:
    # Asked again every run for LOOK_BACK: say so once per process, not every 5 minutes.
    if call_sid in _told_unknown:
        log.debug("reconcile: Twilio still does not know %s", call_sid)
        return
    if len(_told_unknown) >= 10_000:
        _told_unknown.clear()
    _told_unknown.add(call_sid)
    log.warning("reconcile: Twilio does not know %s; it is left as it is "
                "('helpdesk calls unfinished' lists such calls)", call_sid)


def store_facts(database: Database, settings: Settings, ended: EndedCall, now: datetime) -> None:
    """Journal the API's account of one call, legs and recordings first, then the call: its
    callback (if owed) is decided once, with everything known."""
    with database.connection() as connection:
        for leg in ended.legs:
            record_event(connection, settings, kind=API_LEG, path=f"api:Calls/{leg.sid}", params=leg.params(),
                         received_at=now)
        for recording in ended.recordings:
            record_event(connection, settings, kind=API_RECORDING, path=f"api:Recordings/{recording.sid}",
                         params=recording.params(), received_at=now)
        record_event(connection, settings, kind=API_CALL, path=f"api:Calls/{ended.call_sid}",
                     params=ended.call.params(), received_at=now)
