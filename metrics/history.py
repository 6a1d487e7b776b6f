"""Settled history, counted once per process, so a scrape only counts what can still change.

A scrape needs all-time counters and this week's and month's compliance, over millions of
rows. Rows whose counted state is final do not change, so they are counted once and kept:
items contacted before today (UK) that were settled when counted (a finished call, a decided
callback, an acknowledgement sent, suppressed, or given up and past due) and that existed
then (id at most the table's highest id at the time). Each scrape adds, by query, every
other row: today's, newer ids, and the ones that were unsettled (their ids are kept).

That is exact for every change the app makes: settled states never change back, and a call
is only changed by projecting a new journal event, so a new event for a counted call drops
the cache. The cache is rebuilt when the UK day changes and at least hourly, which bounds
how long a change made outside the app (an edit or deletion in SQL) goes unseen.
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
    key: tuple
    built: float  # time.monotonic()
    cutoff: datetime
    highest: dict  # model -> highest id when counted
    unsettled: dict  # model -> ids contacted before the cutoff, not settled then
    last_event: int
    totals: Totals
    periods: dict[str, dict[str, RuleFigures]]  # "week", "month": their part before the cutoff

    def live_scope(self) -> Scope:
        """Every row not in the cache."""
        conditions = {}
        for model, highest in self.highest.items():
            contact = _CONTACT[model]
            terms = [model.id > highest, contact >= self.cutoff, contact.is_(None)]
            if self.unsettled.get(model):
                terms.append(model.id.in_(self.unsettled[model]))
            conditions[model] = or_(*terms)
        return Scope(conditions)


class SettledHistory:
    """One per app (process): thread-safe, rebuilt as described in the module docstring."""

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
            cached = cache.periods.get(period.label)
            merged[period.label] = {
                rule: add_figures(figures, cached[rule]) if cached else figures
                for rule, figures in live_periods[period.label].items()}
        return add_totals(cache.totals, live_totals), merged

    def _current(self, session: Session, settings: Settings, now: datetime) -> _Cache:
        cutoff = compliance.uk_midnight(compliance.uk_date(now))
        key = (cutoff, settings.version, settings.answer_target_seconds, settings.ring_period_seconds)
        with self._lock:
            cache = self._cache
            fresh = (cache is not None and cache.key == key
                     and time.monotonic() - cache.built < REBUILD_SECONDS)
            if fresh and self._events_touch_cache(session, cache):
                fresh = False
            if not fresh:
                self._cache = cache = self._build(session, settings, now, cutoff, key)
            return cache

    def _events_touch_cache(self, session: Session, cache: _Cache) -> bool:
        """True when a journal event since the last check is for a counted call (then rebuild)."""
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

    def _build(self, session: Session, settings: Settings, now: datetime, cutoff: datetime, key: tuple) -> _Cache:
        started = time.perf_counter()
        with session.begin():
            last_event = session.scalar(select(func.max(TwilioEvent.id))) or 0
            highest = {model: session.scalar(select(func.max(model.id))) or 0 for model in _CONTACT}
            unsettled, counted = {}, {}
            for model, top in highest.items():
                old = (model.id <= top) & (_CONTACT[model] < cutoff)
                settled = _settled(model, cutoff)
                counted[model] = old if settled is None else old & settled
                unsettled[model] = [] if settled is None else list(
                    session.scalars(select(model.id).where(old, ~settled)))
        scope = Scope(counted)
        cached_totals = totals(session, settings, scope)
        parts = [Period(kind, compliance.current_period(kind, now).start, cutoff) for kind in ("week", "month")]
        cached_periods = compliance.figures_for_periods(session, [p for p in parts if p.start < cutoff],
                                                        settings, now, scope)
        log.info("counted the settled history in %.2f s", time.perf_counter() - started)
        return _Cache(key, time.monotonic(), cutoff, highest, unsettled, last_event, cached_totals, cached_periods)
