"""Calls that never reached the app, found in Twilio's call log.

Every figure is computed from the webhooks the app stored. A call made while no app answered
Twilio (an upgrade, a crash, a network fault in front of the app) left no webhook at all:
the caller heard Twilio's error message, and the call was missing from every figure, every
callback queue and every evidence pack. The scheduler's other check with Twilio
(helpdesk/voice/reconcile.py) cannot help, as it asks only about calls already stored.

So list the calls to the help desk's own numbers (`webhooks.twilio_numbers`) in Twilio's call
log, and store each one the app never heard of from what the log says: the call as an
"api_log" event, and the agent legs it made (if anything answered it, a fallback URL
elsewhere perhaps) as "api_leg" events. The projection (helpdesk/voice/projection.py) counts
such a call as failed unless an agent leg answered it, and a callback is owed as for any
missed call. Calls still going on are left for a later run.

A webhook of such a call that was still waiting in a server's spool (helpdesk/spool.py) is
stored later as usual, and the record recomputed with it: whatever the webhooks say comes
first, and the call's log entry only fills the gaps, as an "api_call" would.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from helpdesk.db import Database
from helpdesk.models import TwilioEvent
from helpdesk.restore import lost_in_restore, windows
from helpdesk.settings import Settings
from helpdesk.voice.journal import record_unheard_call
from helpdesk.voice.lookup import CallFacts, CallLookup, LookupFailed
from helpdesk.voice.projection import API_LEG, API_LOG, TERMINAL

log = logging.getLogger(__name__)

# The scheduler looks this far back when it starts: two days, as for unfinished calls, so a
# call missed while the scheduler was down too is found once it is back. Later runs look from
# where the last one finished (or from the first call it left because it was still going on).
LOOK_BACK = timedelta(days=2)
# Calls that started in the last few minutes are left to their webhooks, which may still be
# on their way; the scheduler leaves webhooks.reconcile_after_minutes.
SETTLE = timedelta(minutes=5)
_IN = 500  # call SIDs in one IN (...) when looking for those already stored


@dataclass
class MissedReport:
    listed: int = 0  # inbound calls to the help desk's numbers in the log (each once)
    found: list[CallFacts] = field(default_factory=list)  # of them, never heard of by the app: stored now
    reached: int = 0  # of them, calls the app heard of
    stored_before: int = 0  # of them, found in the log before (by an earlier look, or another process's)
    live: int = 0  # never heard of, still going on at Twilio: left for a later run
    failed: int = 0  # never heard of, but Twilio's answer about its legs could not be used: left for a later run
    unreadable: int = 0  # listed with no start time Twilio's answer could give: left alone
    lost_in_restore: int = 0  # never heard of, as they came while a restored database was lost: left alone
    unlisted: list[str] = field(default_factory=list)  # numbers whose calls Twilio's answer could not list
    hold_from: datetime | None = None  # when the first call left for a later run started: the next look starts there
    stopped: str | None = None  # why the run gave up (Twilio unreachable, or refused the credentials)
    refused: bool = False  # it gave up because Twilio did not take the credentials

    def hold(self, call: CallFacts) -> None:
        self.hold_from = min(self.hold_from or call.start_time, call.start_time)

    @property
    def complete(self) -> bool:
        """Whether every number's calls were listed, and the run did not stop."""
        return not self.stopped and not self.unlisted


def find_missed(database: Database, settings: Settings, lookup: CallLookup, *, since: datetime, until: datetime,
                now: datetime, report: MissedReport | None = None) -> MissedReport:
    """Store every call to `webhooks.twilio_numbers` that started between `since` and `until`
    and that the app never heard of, from Twilio's call log.

    A call that started in a window a restore of the database lost (helpdesk.restore) is left
    alone: the app most likely heard it, and its record went with the window. Stops when
    Twilio cannot be reached or refuses the credentials. A number whose calls cannot
    be listed, and a call whose legs Twilio gives no usable answer about, are left for a later
    run, and the others are looked at. A database error is raised; the calls stored before it
    are in `report`, when the caller passes one in.
    """
    report = report if report is not None else MissedReport()
    with database.session() as session, session.begin():
        lost = windows(session)
    for number in settings.webhooks.twilio_numbers:
        try:
            listed = lookup.calls_to(number, since, until)
        except LookupFailed as failure:
            if failure.unreachable or failure.refused:
                return _stop(report, failure)
            report.unlisted.append(number)
            log.warning("missed calls: the calls to %s are left for a later look: %s", number, failure.reason)
            continue
        calls = _inbound(listed, number, since, until, report)
        report.listed += len(calls)
        for call in _unheard_of(database, calls, report):
            if lost_in_restore(lost, call.start_time):
                # The app heard it, most likely, but the backup put back was older: its webhooks
                # are what the database lost, and the log alone would make it a failure.
                report.lost_in_restore += 1
                continue
            if call.status not in TERMINAL:
                report.live += 1
                report.hold(call)
                continue
            try:
                legs = [leg for leg in lookup.legs(call.sid) if leg.parent_sid == call.sid]
            except LookupFailed as failure:
                if failure.unreachable or failure.refused:
                    return _stop(report, failure)
                report.failed += 1
                report.hold(call)
                log.warning("missed calls: %s left for a later look: %s", call.sid, failure.reason)
                continue
            stored = _store(database, settings, call, legs, now)
            if stored == "stored":
                report.found.append(call)
                log.warning("missed calls: %s to %s never reached the app; stored from Twilio's call log",
                            call.sid, number)
            elif stored == "found":
                report.stored_before += 1  # by another process, a moment ago
            else:
                report.reached += 1
                log.info("missed calls: %s reached the app after all (a webhook was stored meanwhile)", call.sid)
    if report.lost_in_restore:
        log.info("missed calls: %d in the time a restore of the database lost left alone", report.lost_in_restore)
    return report


def _stop(report: MissedReport, failure: LookupFailed) -> MissedReport:
    report.stopped, report.refused = failure.reason, failure.refused
    log.warning("missed calls: stopped, to try again later: %s", failure.reason)
    return report


def _inbound(listed: list[CallFacts], number: str, since: datetime, until: datetime,
             report: MissedReport) -> list[CallFacts]:
    """The calls to `number` in the period, each once. The log's filters are Twilio's: check
    that what came back is what was asked for."""
    calls: dict[str, CallFacts] = {}
    for call in listed:
        if call.parent_sid is not None or call.direction != "inbound" or call.to != number:
            continue
        if call.start_time is None:
            report.unreadable += 1
            log.warning("missed calls: Twilio's call log gives %s no start time; left alone", call.sid)
        elif since <= call.start_time <= until:
            calls.setdefault(call.sid, call)
    return list(calls.values())


def _unheard_of(database: Database, calls: list[CallFacts], report: MissedReport) -> list[CallFacts]:
    """Those of `calls` of which the journal holds no event at all, by start; the others are
    counted in `report`, as reached or stored before."""
    heard: set[str] = set()
    found: set[str] = set()
    sids = sorted(call.sid for call in calls)
    with database.session() as session:
        for start in range(0, len(sids), _IN):
            # One pass over the calls' events: each call once or twice, as (sid, from the log or not).
            for sid, from_log in session.execute(select(TwilioEvent.call_sid, TwilioEvent.kind == API_LOG).distinct()
                                                 .where(TwilioEvent.call_sid.in_(sids[start:start + _IN]))):
                heard.add(sid)
                if from_log:
                    found.add(sid)
    report.stored_before += len(found)
    report.reached += len(heard - found)
    unheard = [call for call in calls if call.sid not in heard]
    return sorted(unheard, key=lambda call: (call.start_time, call.sid))


def _store(database: Database, settings: Settings, call: CallFacts, legs: list[CallFacts], now: datetime) -> str:
    """Journal the log's account of one call, its legs and the call together (its callback, if
    owed, is decided once, with everything known): "stored", or why not ("found", "heard")."""
    events = [(API_LEG, f"api:Calls/{leg.sid}", leg.params()) for leg in legs]
    events.append((API_LOG, f"api:Calls/{call.sid}", call.params()))
    with database.connection() as connection:
        return record_unheard_call(connection, settings, call_sid=call.sid, events=events, received_at=now)
