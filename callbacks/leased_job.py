"""One run of a periodic job under its database lease, for the scheduler (callbacks/scheduler.py):
take the lease, do the work, log a failure and try again next run; give the lease up on shutdown."""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callbacks.smtp import redact
from callbacks.sweep import acquire_lease, release_lease
from helpdesk.clock import LONDON, now_utc
from helpdesk.db import Database
from helpdesk.models import SchedulerLease
from helpdesk.settings import Settings

# The scheduler's log, as before this was split from it: its lines keep the name they had.
log = logging.getLogger("callbacks.scheduler")

# Waiting longer than this for a running sweep before gunicorn forks a worker is not worth it.
FORK_WAIT_SECONDS = 10.0


def make_holder() -> str:
    """Who holds the lease: host, process and a random part (a restarted process is someone else)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[-128:]


@dataclass
class JobRun:
    """What one run of a job did (for tests and logs)."""

    now: datetime
    held: bool = False
    recorded: int = 0
    emailed: int = 0
    failed: bool = False
    result: Any = None  # the job's own report (SendReport, PollResult)


@dataclass(eq=False)
class LeasedJob:
    """One run of a periodic job: take its lease, do the work. Never raises: failures are logged
    and the next run tries again."""

    settings: Settings
    database: Database
    clock: Callable[[], datetime] = now_utc
    holder: str = field(default_factory=make_holder)
    # In gunicorn's master no connection is kept between runs, so none is inherited by a forked worker.
    close_connections: bool = False
    _running: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _held_before: bool | None = field(default=None, repr=False)  # whether the last run held the lease
    # Whether a failure of this job is kept with its lease (None: not known yet, as after a restart).
    _failure_kept: bool | None = field(default=None, repr=False)
    # Log when this scheduler stands by or takes over (not for `helpdesk scheduler --once`, which says so itself).
    announce: bool = field(default=True, repr=False)

    lease: ClassVar[str]
    job_id: ClassVar[str]
    description: ClassVar[str]

    @classmethod
    def interval(cls, settings: Settings) -> int:
        """How often the job runs with these settings, in seconds."""
        raise NotImplementedError

    def every_seconds(self) -> int:
        return self.interval(self.settings)

    def work(self, session: Session, run: JobRun) -> None:
        raise NotImplementedError

    def __call__(self) -> JobRun:
        with self._running:
            run = JobRun(now=self.clock())
            try:
                with self.database.session() as session:
                    lease_seconds = self.settings.scheduler.lease_seconds
                    run.held = acquire_lease(session, self.lease, self.holder, run.now, lease_seconds)
                    self._say_who_runs_it(run.held, session)
                    if not run.held:
                        return run
                    self.work(session, run)
                    if self._failure_kept is not False:  # a run that succeeds clears the last failure
                        with session.begin():
                            session.execute(update(SchedulerLease).where(SchedulerLease.name == self.lease,
                                                                         SchedulerLease.failed_at.is_not(None))
                                            .values(failed_at=None, failure=None))
                        self._failure_kept = False
            except Exception as exc:  # noqa: BLE001 - a failed run must not stop the scheduler
                run.failed = True
                described = _describe(exc)
                log.error("the %s failed; it will run again in %d s: %s",
                          self.description, self.every_seconds(), described)
                self._keep_failure(run.now, described)
            finally:
                if self.close_connections:
                    self.database.dispose()
            return run

    def _keep_failure(self, now: datetime, described: str) -> None:
        """Keep the failure with the job's lease, for the System page; if the database cannot take
        it (the likeliest failure), the log has it."""
        try:
            with self.database.session() as session, session.begin():
                session.execute(update(SchedulerLease).where(SchedulerLease.name == self.lease)
                                .values(failed_at=now, failure=described[:400]))
            self._failure_kept = True
        except Exception:  # noqa: BLE001 - logged above already
            self._failure_kept = None

    def _say_who_runs_it(self, held: bool, session: Session) -> None:
        # Once each time it changes, so a standby scheduler says it is one, and when it takes over.
        if held == self._held_before or not self.announce:
            return
        if not held:
            # Which process, and until when: after a crash it is this host's own dead predecessor,
            # whose lease runs out by itself (scheduler.lease_seconds), not a second scheduler.
            with session.begin():
                holder, expires = session.execute(select(SchedulerLease.holder, SchedulerLease.expires_at)
                                                  .where(SchedulerLease.name == self.lease)).one()
            log.info("the lease for the %s is held by %s until %s: this one stands by, and takes over then unless "
                     "that scheduler renews it (after a crash, it is the crashed one's)", self.description, holder,
                     expires.astimezone(LONDON).strftime("%H:%M:%S"))
        elif self._held_before is False:
            log.info("took over the %s: the other scheduler's lease lapsed or was released", self.description)
        self._held_before = held

    def release(self) -> None:
        """Give the lease up (on shutdown), so another scheduler can take over at once."""
        try:
            with self.database.session() as session:
                release_lease(session, self.lease, self.holder)
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.warning("could not release the %s lease: %s", self.lease, _describe(exc))
        finally:
            self.database.dispose()

    # gunicorn forks workers from the master while the scheduler's thread runs there. Hold
    # forks back until a run in progress has finished (bounded), so no worker starts life with
    # a copy of a half-used database connection.
    def guard_forks(self) -> None:
        held = threading.local()

        def before() -> None:
            held.value = self._running.acquire(timeout=FORK_WAIT_SECONDS)

        def after_in_parent() -> None:
            if getattr(held, "value", False):
                held.value = False
                self._running.release()

        def after_in_child() -> None:
            self._running = threading.Lock()
            self.database.dispose(close=False)

        os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=after_in_child)


def _describe(exc: BaseException) -> str:
    """An exception for the log: its type, message and where it happened, with numbers and addresses removed."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(frames))
    message = str(exc).split("\n", 1)[0][:300]
    return redact(f"{type(exc).__name__}: {message} (at {where})")
