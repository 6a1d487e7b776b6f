"""Settled history, counted once per process, so a scrape only counts what can still change.

A scrape needs all-time counters and this week's and month's compliance, over millions of
rows. Rows whose counted state is final do not change, so they are counted once and kept:
items contacted before today (UK) that were settled when counted (a finished call, a decided
callback, an acknowledgement sent, suppressed, or given up and past due) and that existed
then (id at most the table's highest id at the time). Each scrape adds, by query, every
other row: today's, newer ids, and the ones that were unsettled (their ids are kept).

That is exact for every change the app makes: settled states never change back, and a call
is only changed by projecting a new journal event, so a new event for a counted call drops
the cache. At UK midnight the rows left to the live part that have settled are added to it;
everything is counted again at least hourly, which bounds how long a change made outside
the app (an edit or deletion in SQL) goes unseen.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from helpdesk.config import Settings
from helpdesk.models import Call, Callback, EmailAcknowledgement, InboundEmail, TwilioEvent
from metrics import compliance
from metrics.compliance import Period, RuleFigures, Scope, add_figures
from metrics.counts import Totals, add_totals, totals

log = logging.getLogger(__name__)
REBUILD_SECONDS = 3600
_CONTACT = {Call: Call.arrived_at, Callback: Callback.owed_from, InboundEmail: InboundEmail.received_at,
            EmailAcknowledgement: EmailAcknowledgement.received_at}


def _settled(model, cutoff: datetime):
    """Whether a row's counted state is final, for rows contacted before `cutoff`."""
    if model is Call:
        return Call.outcome != "in_progress"
    if model is Callback:
        return Callback.sla_result.is_not(None)
    if model is EmailAcknowledgement:
        ack = EmailAcknowledgement
        return (ack.sla_result.is_not(None) | (ack.status == "suppressed")
                | ((ack.status == "failed") & (ack.due_at < cutoff)))
    return None  # inbound emails are stored once and never change


@dataclass
class _Cache:
    key: tuple  # the settings it was counted with
    built: float  # time.monotonic() of the last full count
    cutoff: datetime
    highest: dict  # model -> highest id when counted
    unsettled: dict  # model -> ids contacted before the cutoff, not settled then
    last_event: int
    totals: Totals
    period_starts: dict[str, datetime]  # "week", "month" -> the period's start
    periods: dict[str, dict[str, RuleFigures]]  # "week", "month": their part before the cutoff

    def live_scope(self) -> Scope:
        """Every row not in the cache."""
        conditions = {}
        for model, highest in self.highest.items():
            contact = _CONTACT[model]
            terms = [model.id > highest, contact >= self.cutoff]
            if contact.nullable:
                terms.append(contact.is_(None))
            if self.unsettled.get(model):
                terms.append(model.id.in_(self.unsettled[model]))
            conditions[model] = or_(*terms)
        return Scope(conditions, bounded=False)


class SettledHistory:
    """One per app (process): thread-safe, kept up to date as the module docstring says."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: _Cache | None = None

    def read(self, session: Session, settings: Settings, now: datetime,
             periods: list[Period]) -> tuple[Totals, dict[str, dict[str, RuleFigures]]]:
        """All-time totals and the figures for `periods` (today, week, month) at `now`."""
        cache = self._current(session, settings, now)
        live = cache.live_scope()
        live_totals = totals(session, settings, live)
        live_periods = compliance.figures_for_periods(session, periods, settings, now, live)
        merged = {}
        for period in periods:
            cached = cache.periods.get(period.label) if period.start == cache.period_starts.get(period.label) else None
            merged[period.label] = {
                rule: add_figures(figures, cached[rule]) if cached else figures
                for rule, figures in live_periods[period.label].items()}
        return add_totals(cache.totals, live_totals), merged

    def _current(self, session: Session, settings: Settings, now: datetime) -> _Cache:
        cutoff = compliance.uk_midnight(compliance.uk_date(now))
        key = (settings.version, settings.answer_target_seconds, settings.ring_period_seconds, settings.max_rings)
        starts = {kind: compliance.current_period(kind, now).start for kind in ("week", "month")}
        with self._lock:
            cache = self._cache
            usable = (cache is not None and cache.key == key and time.monotonic() - cache.built < REBUILD_SECONDS
                      and cache.cutoff <= cutoff and not self._events_touch_cache(session, cache))
            if not usable:
                cache = self._count(session, settings, now, cutoff, key, starts, None)
            elif cache.cutoff < cutoff:  # a new UK day: count what settled since, if the periods allow
                rollable = all(start >= cutoff or cache.period_starts[kind] == start for kind, start in starts.items())
                cache = self._count(session, settings, now, cutoff, key, starts, cache if rollable else None)
            self._cache = cache
            return cache

    def _events_touch_cache(self, session: Session, cache: _Cache) -> bool:
        """True when a journal event since the last check is for a counted call (then count again)."""
        with session.begin():
            newest = session.scalar(select(func.max(TwilioEvent.id))) or 0
            if newest <= cache.last_event:
                return False
            touched = session.scalar(
                select(TwilioEvent.id).join(Call, Call.call_sid == TwilioEvent.call_sid)
                .where(TwilioEvent.id > cache.last_event, TwilioEvent.id <= newest,
                       Call.id <= cache.highest[Call], Call.arrived_at < cache.cutoff).limit(1))
        if touched is not None:
            log.info("a journal event changed a call from before today: counting the history again")
            return True
        cache.last_event = newest
        return False

    def _count(self, session: Session, settings: Settings, now: datetime, cutoff: datetime, key: tuple,
               starts: dict[str, datetime], base: _Cache | None) -> _Cache:
        """Count the settled rows before `cutoff`: all of them, or only those `base` left to the live part."""
        started = time.perf_counter()
        previous = base.live_scope() if base is not None else None
        with session.begin():
            last_event = session.scalar(select(func.max(TwilioEvent.id))) or 0
            highest = {model: session.scalar(select(func.max(model.id))) or 0 for model in _CONTACT}
            unsettled, counted = {}, {}
            for model, top in highest.items():
                candidate = (model.id <= top) & (_CONTACT[model] < cutoff)
                if previous is not None:
                    candidate = candidate & previous.conditions[model]
                settled = _settled(model, cutoff)
                if settled is None:
                    unsettled[model], counted[model] = [], candidate
                    continue
                unsettled[model] = list(session.scalars(select(model.id).where(candidate, ~settled)))
                # Excluded by id as well: a row that settles between these queries stays live only.
                counted[model] = candidate & settled
                if unsettled[model]:
                    counted[model] = counted[model] & model.id.not_in(unsettled[model])
        scope = Scope(counted, bounded=base is None)
        counted_totals = totals(session, settings, scope)
        parts = [Period(kind, start, cutoff) for kind, start in starts.items() if start < cutoff]
        counted_periods = compliance.figures_for_periods(session, parts, settings, now, scope)
        if base is not None:
            counted_totals = add_totals(base.totals, counted_totals)
            for label, figures in counted_periods.items():
                kept = base.periods.get(label)
                if kept:
                    counted_periods[label] = {rule: add_figures(f, kept[rule]) for rule, f in figures.items()}
        log.info("counted the settled history%s in %.2f s", "" if base is None else " since yesterday",
                 time.perf_counter() - started)
        return _Cache(key, time.monotonic() if base is None else base.built, cutoff, highest, unsettled,
                      last_event, counted_totals, dict(starts), counted_periods)
