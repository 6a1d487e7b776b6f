"""Settled rows, counted once per process, so a scrape counts only what can still change.

A scrape needs all-time counters and today's, this week's and this month's compliance over
millions of rows. Rows whose counted state is final are counted once and kept: a finished
call that ended over SETTLE_MARGIN ago, a decided callback or one closed over CLOSED_MARGIN
ago that no rule will decide (withdrawn, say), an acknowledgement sent, suppressed, or given
up and past due. Each scrape adds, by query, the rows newer than the
last count (higher ids) and the ones that were not settled then (their ids are kept).
Every ROLL_SECONDS the rows that have settled since are added to the kept counts, up to
the highest ids the count before saw: PostgreSQL hands out ids before commit, so a row can
become visible after one with a higher id, and would otherwise fall below the mark uncounted.
A process's first count has no count before it, so the one after counts everything again.

That is exact for every change the app makes: acknowledgements never leave a settled state;
a decided callback changes only when an attempt made in time is entered after its deadline,
which the audit log records; and a call is only changed by projecting a new journal event.
Either makes everything count again. So does a new configuration, the clock
going back, and the passing of REBUILD_SECONDS, which bounds how long a change made outside
the app (an edit or deletion in SQL) goes unseen.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, and_, any_, bindparam, func, not_, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from callbacks.owed import never_owed
from callbacks.service import BREACH_CORRECTED
from helpdesk.models import AuditEntry, Call, Callback, EmailAcknowledgement, InboundEmail, TwilioEvent
from helpdesk.settings import Settings
from helpdesk.voice.reconcile import LOOK_BACK as STUCK_AFTER
from metrics import compliance
from metrics.compliance import Period, RuleFigures, Scope, add_figures
from metrics.counts import Totals, add_totals, totals

log = logging.getLogger(__name__)
REBUILD_SECONDS = 3600
ROLL_SECONDS = 60
# Twilio's last status callbacks arrive within seconds of a call's end; a call is counted
# as settled only this long after it ended, so they rarely touch a counted call.
SETTLE_MARGIN = timedelta(minutes=15)
# A callback closed undecided before its deadline (withdrawn) is never decided, unless an attempt
# still in flight when it was closed reports back (Twilio ends a call after four hours at most).
CLOSED_MARGIN = timedelta(days=1)
MODELS = (Call, Callback, InboundEmail, EmailAcknowledgement)


def _settled(model, at: datetime):
    """Whether a row's counted state is final at `at` (None: always, it never changes)."""
    if model is Call:
        ended = func.coalesce(Call.ended_at, Call.arrived_at)
        # A call still in progress two days on will not end by itself (its last webhooks never
        # came, and the scheduler has stopped asking Twilio): counted as it stands, and counted
        # again if an event for it ever comes.
        return or_(and_(Call.outcome != "in_progress", ended < at - SETTLE_MARGIN), Call.arrived_at < at - STUCK_AFTER)
    if model is Callback:
        return Callback.sla_result.is_not(None) | _closed_for_good(at)
    if model is EmailAcknowledgement:
        ack = EmailAcknowledgement
        return ack.sla_result.is_not(None) | (ack.status == "suppressed") | ((ack.status == "failed") & (ack.due_at < at))
    return None  # inbound emails are stored once and never change


def _closed_for_good(at: datetime):
    """Closed undecided over CLOSED_MARGIN before `at`, and owed no decision: closed by its
    deadline, or withdrawn by the app (owed.undecided_owed, negated). Written so that no
    NULL column makes it NULL: a row must be settled or unsettled, never neither."""
    withdrawn_by_app = Callback.outcome.is_not(None) & never_owed()
    return (Callback.sla_result.is_(None) & (Callback.status == "closed") & Callback.closed_at.is_not(None)
            & (Callback.closed_at < at - CLOSED_MARGIN) & ((Callback.closed_at <= Callback.due_at) | withdrawn_by_app))


def _last_correction(session: Session, begin: bool = True) -> int:
    """The newest breach corrected to met (an attempt made in time, entered late): a decided
    callback changed, so the kept counts are counted again."""
    query = select(func.max(AuditEntry.id)).where(AuditEntry.action == BREACH_CORRECTED)
    if not begin:
        return session.scalar(query) or 0
    with session.begin():
        return session.scalar(query) or 0


def _among(column, ids: list[int], dialect: str):
    """`column IN ids`, with the ids as one parameter: PostgreSQL gets an array, SQLite a JSON
    list it reads with json_each. As separate parameters (thousands under load) they cost more
    to render, send and parse than the lookups themselves, and on SQLite each list's length made
    a statement of its own, each cached by every connection: about 1 MB of SQLite's memory each,
    kept for good (a soak test's workers grew by 100 MB in an hour)."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, ids, type_=ARRAY(column.type)))
    if dialect == "sqlite":
        listed = func.json_each(bindparam(None, json.dumps(ids), type_=String)).table_valued("value")
        return column.in_(select(listed.c.value))
    return column.in_(ids)


@dataclass
class _Cache:
    key: tuple  # the settings it was counted with
    built: float  # time.monotonic() of the last full count
    counted_at: datetime  # the app's `now` at the last count or roll
    highest: dict  # model -> highest id when counted; every row up to it is counted or unsettled
    unsettled: dict  # model -> ids up to `highest` that were not settled
    last_event: int
    last_correction: int  # the audit log's newest breach corrected to met, when counted
    totals: Totals
    parts: dict[str, tuple[Period, dict[str, RuleFigures]]]  # "today", "week", "month": counted rows' figures
    dialect: str  # the database dialect's name: how the id lists are sent
    # model -> the highest id seen at this count. The next count counts rows only up to these:
    # on PostgreSQL ids are handed out before commit, so a row may become visible after one
    # with a higher id; a count's newest rows stay live until the next, by when it has come.
    observed: dict | None = None
    # Whether the count held its mark back to the count before's: the first count in a process
    # has none, so the next one counts everything again, with the mark held back.
    held_back: bool = False

    def scope(self, counted: bool) -> Scope:
        """The rows counted here (counted=True), or every other row (the live part)."""
        conditions = {}
        for model, highest in self.highest.items():
            ids = self.unsettled.get(model) or []
            if counted:
                conditions[model] = ((model.id <= highest) & not_(_among(model.id, ids, self.dialect))
                                     if ids else model.id <= highest)
            else:
                conditions[model] = or_(model.id > highest, _among(model.id, ids, self.dialect)) if ids else model.id > highest
        return Scope(conditions, bounded=counted)


class SettledHistory:
    """One per app (process): thread-safe, kept up to date as the module docstring says."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: _Cache | None = None

    def read(self, session: Session, settings: Settings, now: datetime,
             periods: list[Period]) -> tuple[Totals, dict[str, dict[str, RuleFigures]]]:
        """All-time totals and the figures for `periods` (today, week, month) at `now`."""
        cache = self._current(session, settings, now, periods)
        live = cache.scope(counted=False)
        live_totals = totals(session, settings, live)
        live_periods = compliance.figures_for_periods(session, periods, settings, now, live)
        merged = {}
        for period in periods:
            kept = cache.parts[period.label][1]
            merged[period.label] = {rule: add_figures(f, kept[rule]) for rule, f in live_periods[period.label].items()}
        return add_totals(cache.totals, live_totals), merged

    def _current(self, session: Session, settings: Settings, now: datetime, periods: list[Period]) -> _Cache:
        key = (settings.version, settings.answer_target_seconds, settings.ring_period_seconds, settings.max_rings)
        with self._lock:
            cache = self._cache
            seen = cache.observed if cache is not None else None
            if (cache is None or cache.key != key or time.monotonic() - cache.built >= REBUILD_SECONDS
                    or now < cache.counted_at or self._events_touch_cache(session, cache)
                    or _last_correction(session) != cache.last_correction
                    or (not cache.held_back and now - cache.counted_at >= timedelta(seconds=ROLL_SECONDS))):
                cache = self._count(session, settings, now, key, periods, None, seen)
            elif (now - cache.counted_at >= timedelta(seconds=ROLL_SECONDS)
                  or any(cache.parts.get(p.label, (None,))[0] != p for p in periods)):
                cache = self._count(session, settings, now, key, periods, cache, seen)
            self._cache = cache
            return cache

    def _events_touch_cache(self, session: Session, cache: _Cache) -> bool:
        """True when a journal event since the last check is for a counted call, or the journal went
        back (a restore): then count again."""
        with session.begin():
            newest = session.scalar(select(func.max(TwilioEvent.id))) or 0
            if newest < cache.last_event:
                # The journal only grows: the database was put back to an older copy under this process.
                log.error("the journal's newest webhook is older than one counted before: the database was restored "
                          "while the app ran (stop it, and see \"After a restore\" in the README); counting "
                          "everything again")
                return True
            if newest == cache.last_event:
                return False
            counted = cache.scope(counted=True).conditions[Call]
            touched = session.scalar(
                select(TwilioEvent.id).join(Call, Call.call_sid == TwilioEvent.call_sid)
                .where(TwilioEvent.id > cache.last_event, TwilioEvent.id <= newest, counted).limit(1))
        if touched is not None:
            log.info("a journal event changed a counted call: counting everything again")
            return True
        cache.last_event = newest
        return False

    def _count(self, session: Session, settings: Settings, now: datetime, key: tuple, periods: list[Period],
               base: _Cache | None, seen: dict | None = None) -> _Cache:
        """Count the settled rows: all of them, or only those `base` left to the live part; up to
        the highest ids `seen` at the last count (all there are, at the first)."""
        started = time.perf_counter()
        previous = base.scope(counted=False) if base is not None else None
        dialect = session.get_bind().dialect.name
        with session.begin():
            last_event = session.scalar(select(func.max(TwilioEvent.id))) or 0
            last_correction = _last_correction(session, begin=False)
            observed = {model: session.scalar(select(func.max(model.id))) or 0 for model in MODELS}
            highest = {model: min(top, seen.get(model, top)) if seen else top for model, top in observed.items()}
            if base is not None:  # never below what is counted already
                highest = {model: max(top, base.highest[model]) for model, top in highest.items()}
            unsettled, delta = {}, {}
            for model, top in highest.items():
                candidate = model.id <= top
                if previous is not None:
                    candidate = candidate & previous.conditions[model]
                settled = _settled(model, now)
                if settled is None:
                    unsettled[model], delta[model] = [], candidate
                    continue
                unsettled[model] = list(session.scalars(select(model.id).where(candidate, ~settled)))
                # Excluded by id as well: a row that settles between these queries stays live only.
                delta[model] = candidate & settled
                if unsettled[model]:
                    delta[model] = delta[model] & not_(_among(model.id, unsettled[model], dialect))
        delta_scope = Scope(delta, bounded=base is None)
        counted_totals = totals(session, settings, delta_scope)
        if base is not None:
            counted_totals = add_totals(base.totals, counted_totals)
        cache = _Cache(key, base.built if base is not None else time.monotonic(), now, highest, unsettled,
                       last_event, last_correction, counted_totals, {}, dialect, observed,
                       held_back=bool(seen) or (base is not None and base.held_back))
        # A period already kept gets the newly counted rows; a new one (a new day, week or
        # month) is counted from everything kept, which is little so soon after it started.
        same = [p for p in periods if base is not None and base.parts.get(p.label, (None,))[0] == p]
        fresh = [p for p in periods if p not in same]
        added = compliance.figures_for_periods(session, same, settings, now, delta_scope)
        for period in same:
            kept = base.parts[period.label][1]
            cache.parts[period.label] = (period, {r: add_figures(f, kept[r]) for r, f in added[period.label].items()})
        counted = compliance.figures_for_periods(session, fresh, settings, now, cache.scope(counted=True))
        for period in fresh:
            cache.parts[period.label] = (period, counted[period.label])
        log.log(logging.INFO if base is None else logging.DEBUG, "counted the settled rows%s in %.3f s",
                "" if base is None else " since the last count", time.perf_counter() - started)
        return cache
