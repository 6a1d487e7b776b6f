"""What the agents' queue page shows: read-side queries, and the words for time left.

Nothing here changes data. "Due soon" and "overdue" use the callback's own clock, as the
sweep's warnings do: on the business clock, time left is opening time left.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, String, and_, case, false, func, or_, select, true
from sqlalchemy.orm import Session, joinedload

from callbacks.awaiting import awaiting
from callbacks.deadlines import due_soon_limits
from callbacks.owed import due_soon_condition, not_met
from callbacks.not_dialled import why_not_dialled
from callbacks.queue_words import (ATTEMPT_OUTCOMES, ATTEMPT_WORDS, CALL_STATES, CLOSING, REASONS, not_dialled_words,
                                   notice_text, span_words, summary_of, when)
from callbacks.service import CALL_UNDER_WAY
from callbacks.sweep import remaining
from helpdesk.models import Call, Callback, CallbackAttempt, CallbackNotice, Enquiry, User
from helpdesk.models.call import never_reached
from helpdesk.settings import Settings

if TYPE_CHECKING:
    from helpdesk.pages.taken_by import Holding

# Also for those who import them from here (the page's templates too, through this module).
__all__ = ["ATTEMPT_OUTCOMES", "ATTEMPT_WORDS", "CALL_STATES", "CLOSING", "FILTERS", "NOTICES_FIRST",
           "NOTICES_SINCE", "REASONS", "Awaiting", "PastAttempt", "QueueEntry", "QueueView", "RecentNotice", "Sibling",
           "awaiting_outcome", "callback_to_dial",
           "notice_text", "open_callbacks", "owed_to", "recent_notices", "reference_of", "signature",
           "span_words", "summary_of", "when"]

NOTICES_SINCE = timedelta(hours=24)
NOTICES_FIRST = 5  # shown at once on the agents' page; the rest of the latest are a click away


@dataclass(frozen=True)
class QueueEntry:
    callback: Callback
    state: str  # overdue, due_soon, on_time, met (first attempt made in time)
    time_left: str  # "1 h 12 min left", "Overdue by 25 min"
    time_left_spoken: str  # the same without abbreviations, for screen readers
    call: str = ""  # how the latest "Call back now" call is going, or why it did not count ("" if neither)
    history: tuple["PastAttempt", ...] = ()  # the attempts so far, oldest first
    unheard: bool = False  # its call never reached the help desk: found later in Twilio's call log
    same_number: tuple["Sibling", ...] = ()  # other open callbacks owed to the same number, earliest due first


@dataclass(frozen=True)
class Sibling:
    """Another open callback owed to the same number: one call back can serve both."""

    id: int
    reference: str
    due_at: datetime
    listed: bool  # on the page too, so it can be linked to


@dataclass(frozen=True)
class PastAttempt:
    """One attempt on a callback, as a colleague taking it over needs to see it."""

    at: datetime  # when the caller was dialled (or the call started, if they never were)
    outcome: str  # in words
    by: str  # the agent's name
    note: str


# Which open callbacks the list shows ("" for all of them): the key in the address, and its words.
FILTERS = {"": "All open", "mine": "Claimed by you", "free": "Not claimed"}


@dataclass(frozen=True)
class QueueView:
    entries: list[QueueEntry]
    total: int  # open callbacks, whichever are shown
    overdue: int
    due_soon: int
    signature: str  # changes when what the list says changes (not the minutes ticking by)
    counts: dict[str, int]  # how many each filter shows, by its key in FILTERS
    only: str = ""  # the filter shown

    @property
    def listed(self) -> int:
        return self.counts[self.only]

    @property
    def more(self) -> int:
        return self.listed - len(self.entries)

    @property
    def title(self) -> str:
        """The page's title: how many are overdue and due soon first, so that the browser's tab
        says so while the agent works in another ("(2 overdue, 1 due soon) Callback queue")."""
        urgent = [f"{count} {state}" for count, state in ((self.overdue, "overdue"), (self.due_soon, "due soon"))
                  if count]
        return f"({', '.join(urgent)}) Callback queue" if urgent else "Callback queue"


@dataclass(frozen=True)
class RecentNotice:
    text: str
    recorded_at: datetime
    breach: bool


def open_callbacks(session: Session, settings: Settings, now: datetime, *, limit: int, only: str = "",
                   me: int | None = None) -> QueueView:
    """The first `limit` open callbacks by due time that the filter `only` (a key of FILTERS) shows,
    for the user `me`; with counts over all of them, and how many each filter shows."""
    limits = due_soon_limits(settings, now)
    open_ = Callback.status == "open"
    shows = {"": true(), "mine": Callback.claimed_by_id == me, "free": Callback.claimed_by_id.is_(None)}
    with session.begin():
        total, overdue, due_soon, mine, free = session.execute(select(
            func.count(Callback.id),
            func.count(Callback.id).filter(not_met(), Callback.due_at < now),
            func.count(Callback.id).filter(due_soon_condition(limits, now)),
            func.count(Callback.id).filter(shows["mine"]),
            func.count(Callback.id).filter(shows["free"]),
        ).where(open_)).one()
        callbacks = list(session.scalars(
            select(Callback).options(joinedload(Callback.enquiry), joinedload(Callback.claimed_by))
            .where(open_, shows[only]).order_by(Callback.due_at, Callback.id).limit(limit)))
        calls, history = _latest_calls(session, [callback.id for callback in callbacks], now)
        unheard = _unheard_calls(session, callbacks)
        siblings = _same_number(session, callbacks)
    entries = [replace(_entry(settings, callback, now, limits), call=calls.get(callback.id, ""),
                       history=tuple(history.get(callback.id, ())), unheard=callback.call_sid in unheard,
                       same_number=tuple(s for s in siblings.get(callback.caller_number, ()) if s.id != callback.id))
               for callback in callbacks]
    fingerprint = signature([total, overdue, due_soon, mine, free] + [
        [e.callback.id, e.state, e.callback.claimed_by_id, e.callback.attempts_count, e.callback.note,
         str(e.callback.next_attempt_at), e.call, [s.id for s in e.same_number]] for e in entries])
    return QueueView(entries, int(total), int(overdue), int(due_soon), fingerprint,
                     {"": int(total), "mine": int(mine), "free": int(free)}, only)


def signature(shown: list) -> str:
    """A short digest of what a part of the queue page says (JSON-able values), which the live
    refresh compares to tell whether that part changed."""
    return hashlib.sha256(json.dumps(shown, default=str).encode()).hexdigest()[:16]


def _unheard_calls(session: Session, callbacks: list[Callback]) -> set[str]:
    """The calls of those failed-call callbacks that never reached the help desk, and were
    found afterwards in Twilio's call log (helpdesk/voice/missed.py)."""
    sids = [callback.call_sid for callback in callbacks if callback.reason == "failed" and callback.call_sid]
    if not sids:
        return set()
    return set(session.scalars(select(Call.call_sid).where(Call.call_sid.in_(sids), never_reached())))


def owed_to(numbers: set[str]):
    """The open callbacks owed to `numbers`: (id, number, reference, due time), in no order."""
    return (select(Callback.id, Callback.caller_number, Enquiry.reference, Callback.due_at)
            .join(Enquiry, Enquiry.id == Callback.enquiry_id)
            .where(Callback.status == "open", Callback.caller_number.in_(sorted(numbers))))


def _same_number(session: Session, callbacks: list[Callback]) -> dict[str, list[Sibling]]:
    """Every open callback owed to a number that one of `callbacks` is owed to (a caller who
    called twice, say), by number, earliest due first; each says whether it is among `callbacks`."""
    numbers = {callback.caller_number for callback in callbacks if callback.caller_number}
    if not numbers:
        return {}
    shown = {callback.id for callback in callbacks}
    owed: dict[str, list[Sibling]] = {}
    for callback_id, number, reference, due_at in session.execute(owed_to(numbers)):
        owed.setdefault(number, []).append(Sibling(callback_id, reference, due_at, callback_id in shown))
    # Sorted here: ordered in SQL, SQLite would read every open callback by due time rather
    # than look the numbers up (ix_callbacks_status_number).
    return {number: sorted(found, key=lambda s: (s.due_at, s.id)) for number, found in owed.items() if len(found) > 1}


def _latest_calls(session: Session, callback_ids: list[int],
                  now: datetime) -> tuple[dict[int, str], dict[int, list[PastAttempt]]]:
    """For callbacks whose latest attempt is a "Call back now" call under way or not dialled, what to
    say of it (a phone system that refused to ring the agent's desk phone, too); and each callback's
    attempts so far."""
    if not callback_ids:
        return {}, {}
    rows = session.execute(
        select(CallbackAttempt.callback_id, CallbackAttempt.outcome, CallbackAttempt.started_at,
               CallbackAttempt.dialled_at, CallbackAttempt.call_sid, CallbackAttempt.note, User.display_name,
               User.username)
        .outerjoin(User, User.id == CallbackAttempt.agent_id)
        .where(CallbackAttempt.callback_id.in_(callback_ids)).order_by(CallbackAttempt.id)).all()
    reasons = why_not_dialled(session, {row.call_sid for row in rows if row.outcome == "not_dialled" and row.call_sid})
    latest, history = {}, {}
    for callback_id, outcome, started_at, dialled_at, call_sid, note, name, username in rows:
        reason = reasons.get(call_sid) if outcome == "not_dialled" else None
        why = not_dialled_words(reason.why, reason.code) if reason else None
        latest[callback_id] = (outcome, started_at, dialled_at, why)  # the last one entered wins
        words = f"Call back now: {why.attempt}" if why else ATTEMPT_WORDS.get(outcome, outcome.replace("_", " "))
        history.setdefault(callback_id, []).append(PastAttempt(dialled_at or started_at, words,
                                                               name or username or "", note or ""))
    for attempts in history.values():
        attempts.sort(key=lambda past: past.at)  # in the order they were made, however entered
    said = {}
    for callback_id, (outcome, started_at, dialled_at, why) in latest.items():
        if why:
            said[callback_id] = CALL_STATES["not_dialled_because"].format(state=why.state)
        elif outcome == "not_dialled":
            said[callback_id] = CALL_STATES["not_dialled"]
        elif outcome == "placing" and started_at > now - CALL_UNDER_WAY:
            said[callback_id] = CALL_STATES["ringing_caller" if dialled_at else "ringing_agent"]
    return said, history


def _entry(settings: Settings, callback: Callback, now: datetime, limits: dict[str, datetime]) -> QueueEntry:
    if callback.sla_result == "met":
        return QueueEntry(callback, "met", "First attempt made in time", "First attempt made in time")
    if callback.due_at < now:
        shown, spoken = span_words(now - callback.due_at)
        return QueueEntry(callback, "overdue", f"Overdue by {shown}", f"Overdue by {spoken}")
    wall = callback.due_at - now
    left = remaining(settings, callback.clock, now, callback.due_at)
    # owed.due_soon_condition, for this one callback (not met, and not yet due, here).
    state = "due_soon" if callback.due_at < limits.get(callback.clock, limits["elapsed"]) else "on_time"
    shown, spoken = span_words(left)
    if callback.clock == "business" and wall - left >= timedelta(minutes=1):
        return QueueEntry(callback, state, f"{shown} of opening hours left", f"{spoken} of opening hours left")
    return QueueEntry(callback, state, f"{shown} left", f"{spoken} left")


def recent_notices(session: Session, settings: Settings, now: datetime,
                   limit: int = 20) -> tuple[list[RecentNotice], int]:
    """The sweep's latest `limit` warnings and breaches of the last 24 hours, newest first (a
    breach since corrected to met, by an attempt in time entered late, says so); and how many
    there were. A warning says the time that was left when it was recorded."""
    since = CallbackNotice.recorded_at >= now - NOTICES_SINCE
    with session.begin():
        total = session.scalar(select(func.count(CallbackNotice.id)).where(since)) or 0
        rows = session.execute(
            select(CallbackNotice.kind, CallbackNotice.recorded_at, Enquiry.reference, Callback.sla_result,
                   Callback.clock, Callback.due_at)
            .join(Callback, Callback.id == CallbackNotice.callback_id)
            .join(Enquiry, Enquiry.id == Callback.enquiry_id)
            .where(since)
            .order_by(CallbackNotice.recorded_at.desc(), CallbackNotice.id.desc()).limit(limit)
        ).all()
    return [RecentNotice(notice_text(kind, reference, remaining(settings, clock, recorded_at, due_at))
                         + (" (corrected: an attempt in time was entered later)"
                            if kind == "breach" and result == "met" else ""),
                         recorded_at, kind == "breach" and result != "met")
            for kind, recorded_at, reference, result, clock, due_at in rows], int(total)


@dataclass(frozen=True)
class Awaiting:
    """Answered calls awaiting an outcome: those shown (the user's own first), how many there are,
    and how many of them the user took."""
    calls: list[Call]
    count: int
    yours: int


def _rang(endpoint: str) -> ColumnElement[bool]:
    """In SQL, over calls: the answering leg rang `endpoint` (a phone as
    helpdesk.pages.taken_by.phone_of reads it): a phone number also through a SIP address whose
    user part it is, and a SIP address also with parameters or headers."""
    agent = func.lower(Call.agent, type_=String)
    if endpoint.startswith("+"):
        return or_(agent == endpoint, agent.like(f"sip:{endpoint}@%"))
    if endpoint.startswith("sip:"):
        return or_(agent == endpoint, agent.startswith(f"{endpoint};", autoescape=True),
                   agent.startswith(f"{endpoint}?", autoescape=True))
    return agent == endpoint


def answered_on_any(held: Sequence[Holding]) -> ColumnElement[bool]:
    """In SQL, over calls: answered on one of the endpoints while it was held (`held`: a user's
    helpdesk.pages.taken_by.holdings), as taken_by.takers judges it."""
    moment = Call.answer_moment
    each = [and_(_rang(holding.endpoint),
                 *([moment >= holding.since] if holding.since is not None else []),
                 *([moment < holding.until] if holding.until is not None else []))
            for holding in held]
    return or_(*each) if each else false()


def awaiting_outcome(session: Session, since: date, limit: int = 100, yours: Sequence[Holding] = ()) -> Awaiting:
    """Answered calls since the UK day `since` (see callbacks.awaiting.awaiting_since) whose enquiry nobody has
    concluded or turned into a callback yet: newest first, but first those answered on a phone
    that was the user's then (`yours`: helpdesk.pages.taken_by.own_holdings), so an agent finds
    their own calls at the top however many others are waiting."""
    is_yours = answered_on_any(yours)
    with session.begin():
        # Which to show, and how many there are (window functions, over all of them), from the
        # calls' ids alone; then the calls shown. With older calls shown, sorting 6,000 whole rows
        # and counting them in a second pass took 27 to 47 ms on SQLite, this 22 to 35.
        shown = session.execute(
            awaiting(select(Call.id, func.count(Call.id).over(), func.count(case((is_yours, Call.id))).over()), since)
            .order_by(case((is_yours, 0), else_=1), Call.arrived_at.desc(), Call.id.desc()).limit(limit)).all()
        if not shown:
            return Awaiting([], 0, 0)
        ids = [row[0] for row in shown]
        calls = {call.id: call for call in session.scalars(
            select(Call).where(Call.id.in_(ids)).options(joinedload(Call.enquiry)))}
    return Awaiting([calls[id_] for id_ in ids], int(shown[0][1]), int(shown[0][2]))


def callback_to_dial(session: Session, callback_id: int) -> tuple[str, str | None] | None:
    """(reference, caller number) of an open callback, or None if it is not open."""
    with session.begin():
        row = session.execute(
            select(Enquiry.reference, Callback.caller_number)
            .join(Enquiry, Enquiry.id == Callback.enquiry_id)
            .where(Callback.id == callback_id, Callback.status == "open")
        ).one_or_none()
    return tuple(row) if row is not None else None


def reference_of(session: Session, *, callback_id: int | None = None, call_sid: str | None = None) -> str:
    """The enquiry reference of a callback or a call, for messages ("" if there is none)."""
    query = select(Enquiry.reference)
    if callback_id is not None:
        query = query.join(Callback, Callback.enquiry_id == Enquiry.id).where(Callback.id == callback_id)
    else:
        query = query.where(Enquiry.call_sid == call_sid)
    with session.begin():
        return session.scalar(query) or ""
