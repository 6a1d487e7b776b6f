"""The scheduler's sweep: each warning once, each breach once, whenever it runs."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, aliased

from callbacks.deadlines import notices_due
from callbacks.owed import undecided_owed
from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.models import Callback, CallbackNotice, SchedulerLease
from helpdesk.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    recorded: list[tuple[int, str]] = field(default_factory=list)  # (callback id, kind)


def remaining(settings: Settings, clock: str, now: datetime, due_at: datetime) -> timedelta:
    if clock == "business":
        return settings.calendar.business_time_between(now, due_at)
    return max(due_at - now, timedelta(0))


def minutes_left(left: timedelta) -> str:
    """The time a warning says is left, in whole minutes, never more than there was."""
    minutes = int(left.total_seconds() // 60)
    return "under a minute" if minutes < 1 else f"{minutes} minute{'' if minutes == 1 else 's'}"


def may_need_a_notice():
    """Undecided callbacks still owed at their deadline (owed.undecided_owed); and those
    breached already by a late first attempt but with no breach notice yet, so the supervisors
    are still told, once. Each side is read through its partial index (ix_callbacks_undecided,
    ix_callbacks_breached), never by reading every callback ever owed."""
    breach = aliased(CallbackNotice)
    no_breach_notice = ~exists().where(breach.callback_id == Callback.id, breach.kind == "breach")
    return undecided_owed() | ((Callback.sla_result == "breached") & no_breach_notice)


def sweep(session: Session, settings: Settings, now: datetime) -> SweepResult:
    """Record the warnings and breaches due at `now`: for every callback still owed its decision
    (open, or closed late, and undecided), and the breach notice of one already breached by a
    late first attempt (`may_need_a_notice`).

    Safe to run twice or late: a notice is inserted at most once per callback and kind
    (a unique constraint), and a late sweep records the breaches that happened meanwhile.
    """
    result = SweepResult()
    leads = settings.callback.warn_before_minutes
    with session.begin():
        undecided = may_need_a_notice()
        candidates = session.execute(
            select(Callback.id, Callback.due_at, Callback.clock, Callback.first_attempt_at, Callback.status)
            .where(undecided)
        ).all()
        sent: dict[int, set[str]] = {}
        for callback_id, kind in session.execute(
            select(CallbackNotice.callback_id, CallbackNotice.kind)
            .join(Callback, Callback.id == CallbackNotice.callback_id)
            .where(undecided)
        ):
            sent.setdefault(callback_id, set()).add(kind)
        desk_open = settings.calendar.is_open(now)

        def due_notices(due_at, clock, first_attempt_at, status, already):
            # Warnings go out while someone can act: an open callback, and on the business
            # clock only while the desk is open (overnight the time left does not change).
            warn = status == "open" and (clock != "business" or desk_open)
            return notices_due(due_at=due_at, now=now, first_attempt_at=first_attempt_at,
                               remaining=remaining(settings, clock, now, due_at),
                               warn_before=leads if warn else (), already=already)

        for callback_id, due_at, clock, first_attempt_at, status in candidates:
            already = sent.get(callback_id, set())
            if not due_notices(due_at, clock, first_attempt_at, status, already):
                continue
            # Read again, locked: an agent may have closed it, or attempted it in time, since the
            # candidates were read (on PostgreSQL the lock waits for their commit and the
            # condition is checked against it), and a breach must not be recorded over that.
            fresh = session.execute(
                select(Callback.due_at, Callback.clock, Callback.first_attempt_at, Callback.status)
                .where(Callback.id == callback_id, undecided).with_for_update()
            ).first()
            if fresh is None:
                continue
            due_at = fresh.due_at
            for notice in due_notices(fresh.due_at, fresh.clock, fresh.first_attempt_at, fresh.status, already):
                inserted = session.execute(insert_ignoring_conflicts(session, CallbackNotice, {
                    "callback_id": callback_id, "kind": notice.kind, "fell_due_at": notice.due_at, "recorded_at": now,
                })).rowcount
                if not inserted:
                    continue
                result.recorded.append((callback_id, notice.kind))
                if notice.kind == "breach":
                    session.execute(update(Callback).where(Callback.id == callback_id, Callback.sla_result.is_(None))
                                    .values(sla_result="breached", breached_at=due_at))
    if result.recorded:
        log.info("sweep recorded %d notices", len(result.recorded))
    return result


def acquire_lease(session: Session, name: str, holder: str, now: datetime, seconds: int) -> bool:
    """Take or renew the lease `name` for `holder`; False while another holder's lease runs."""
    expires = now + timedelta(seconds=seconds)
    with session.begin():
        if session.execute(insert_ignoring_conflicts(
                session, SchedulerLease, {"name": name, "holder": holder, "expires_at": expires})).rowcount:
            return True
        return bool(session.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == name, (SchedulerLease.holder == holder) | (SchedulerLease.expires_at < now))
            .values(holder=holder, expires_at=expires)
        ).rowcount)


def release_lease(session: Session, name: str, holder: str) -> None:
    with session.begin():
        session.execute(update(SchedulerLease).where(SchedulerLease.name == name, SchedulerLease.holder == holder)
                        .values(expires_at=datetime(1970, 1, 1).astimezone()))
