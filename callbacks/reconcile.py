"""Finish "Call back now" attempts whose status callbacks never came, from Twilio's REST API.

An attempt stays "placing" until the status callbacks of its two legs (the agent's phone,
then the caller) say how it ended. If they never reached the app, the attempt stayed
"placing" for good: no retry was scheduled, and the evidence pack showed it unfinished.
Some time after the click, ask the Calls resource about the agent's call and the caller leg
it dialled, and record the outcome through `finish_attempt`, as the webhooks would have:
the same outcomes, the same retry, the same "not dialled" when the caller was never rung.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from callbacks.service import AGENT_LEG_ENDED, LEG_ENDED, finish_attempt
from helpdesk.db import Database
from helpdesk.models import CallbackAttempt, TwilioLookup
from helpdesk.settings import Settings
from helpdesk.voice.lookup import CallFacts, CallLookup
from helpdesk.voice.reconcile import BATCH, LOOK_BACK, ReconcileReport, ended_calls, in_turn

log = logging.getLogger(__name__)


def attempt_outcome(agent: CallFacts, legs: list[CallFacts], now: datetime) -> tuple[str, datetime | None, datetime]:
    """(outcome, when the caller answered, when the attempt ended) of an agent's call that has ended."""
    dialled = sorted(legs, key=lambda leg: leg.start_time or now)
    if not dialled:  # the caller was never dialled: the agent's leg ending is all there is
        return AGENT_LEG_ENDED.get(agent.status, "no_answer"), None, _end(agent, now)
    caller = dialled[0]
    ended = _end(caller, now)
    if caller.status == "completed":
        seconds = int(caller.duration) if (caller.duration or "").isdigit() else None
        return "reached", ended - timedelta(seconds=seconds) if seconds is not None else None, ended
    return LEG_ENDED.get(caller.status, "no_answer"), None, ended


def _end(call: CallFacts, now: datetime) -> datetime:
    return call.end_time or call.updated or now


def placing_attempts(database: Database, now: datetime, after: timedelta, limit: int = BATCH) -> list[str]:
    """CallSids of "Call back now" attempts still placing `after` the click (within LOOK_BACK):
    those never asked about first, oldest first, then those asked about longest ago."""
    with database.session() as session:
        return list(session.scalars(
            select(CallbackAttempt.call_sid)
            .outerjoin(TwilioLookup, TwilioLookup.call_sid == CallbackAttempt.call_sid)
            .where(CallbackAttempt.outcome == "placing", CallbackAttempt.call_sid.is_not(None),
                   CallbackAttempt.started_at < now - after, CallbackAttempt.started_at >= now - LOOK_BACK)
            .order_by(*in_turn(), CallbackAttempt.started_at, CallbackAttempt.id)
            .limit(limit)))


def reconcile_attempts(database: Database, settings: Settings, lookup: CallLookup, now: datetime) -> ReconcileReport:
    """Ask the API about each attempt still placing; record how those that have ended went."""
    report = ReconcileReport()
    after = timedelta(minutes=settings.webhooks.reconcile_after_minutes)
    sids = placing_attempts(database, now, after)
    for ended in ended_calls(database, lookup, sids, report, "placing callback attempts", now):
        outcome, answered_at, ended_at = attempt_outcome(ended.call, ended.legs, now)
        with database.session() as session:
            finish_attempt(session, settings, call_sid=ended.call_sid, outcome=outcome, now=ended_at,
                           answered_at=answered_at)
        log.info("reconcile: callback call %s ended as %s (from Twilio's REST API)", ended.call_sid, outcome)
        report.finished += 1
    return report
