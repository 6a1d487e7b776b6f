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

from helpdesk.config import Settings
from helpdesk.db import Database
from helpdesk.models import TwilioEvent
from helpdesk.voice.journal import record_event
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
    listed: int = 0  # inbound calls to the help desk's numbers in the log
    found: list[CallFacts] = field(default_factory=list)  # of them, never heard of by the app: stored now
    live: int = 0  # never heard of, still going on at Twilio: left for a later run
    earliest_live: datetime | None = None  # when the first of those started: a later run looks from there
    stopped: str | None = None  # why the run gave up (Twilio unreachable, or its answer unusable)


def find_missed(database: Database, settings: Settings, lookup: CallLookup, *, since: datetime, until: datetime,
                now: datetime) -> MissedReport:
    """Store every call to `webhooks.twilio_numbers` that started between `since` and `until`
    and that the app never heard of, from Twilio's call log."""
    report = MissedReport()
    for number in settings.webhooks.twilio_numbers:
        try:
            calls = [call for call in lookup.calls_to(number, since, until) if _inbound(call, number, since, until)]
        except LookupFailed as failure:
            report.stopped = failure.reason
            log.warning("missed calls: stopped, to try again later: %s", failure.reason)
            return report
        report.listed += len(calls)
        for call in _unheard_of(database, calls):
            if call.status not in TERMINAL:
                report.live += 1
                report.earliest_live = min(report.earliest_live or call.start_time, call.start_time)
                continue
            try:
                legs = [leg for leg in lookup.legs(call.sid) if leg.parent_sid == call.sid]
            except LookupFailed as failure:
                report.stopped = failure.reason
                log.warning("missed calls: stopped, to try again later: %s", failure.reason)
                return report
            _store(database, settings, call, legs, now)
            report.found.append(call)
            log.warning("missed calls: %s to %s never reached the app; stored from Twilio's call log",
                        call.sid, number)
    return report


def _inbound(call: CallFacts, number: str, since: datetime, until: datetime) -> bool:
    # The log's filters are Twilio's: check what came back is what was asked for.
    return (call.parent_sid is None and call.direction == "inbound" and call.to == number
            and call.start_time is not None and since <= call.start_time <= until)


def _unheard_of(database: Database, calls: list[CallFacts]) -> list[CallFacts]:
    """Those of `calls` of which the journal holds no event at all."""
    heard: set[str] = set()
    sids = sorted({call.sid for call in calls})
    with database.session() as session:
        for start in range(0, len(sids), _IN):
            heard.update(session.scalars(select(TwilioEvent.call_sid).distinct()
                                         .where(TwilioEvent.call_sid.in_(sids[start:start + _IN]))))
    unheard = {call.sid: call for call in calls if call.sid not in heard}
    return sorted(unheard.values(), key=lambda call: (call.start_time, call.sid))


def _store(database: Database, settings: Settings, call: CallFacts, legs: list[CallFacts], now: datetime) -> None:
    """Journal the log's account of one call, legs first: its callback (if owed) is decided
    once, with everything known."""
    with database.connection() as connection:
        for leg in legs:
            record_event(connection, settings, kind=API_LEG, path=f"api:Calls/{leg.sid}", params=leg.params(),
                         received_at=now)
        record_event(connection, settings, kind=API_LOG, path=f"api:Calls/{call.sid}", params=call.params(),
                     received_at=now)
