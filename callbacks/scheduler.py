"""The scheduler: the callback sweep and the supervisors' emails, every `scheduler.sweep_seconds`.

Two shapes (DESIGN.md, "Deployment shapes"):

* in-process: `helpdesk run` starts a BackgroundScheduler in gunicorn's master process (one
  per server, however many workers);
* separate: `helpdesk scheduler` runs a BlockingScheduler in the foreground.

Either way each run first takes the database lease "sweep", so two schedulers (two servers, or a
server and a separate scheduler) never sweep at the same time; the sweep and the emails are
safe even if they did (a unique notice per callback and kind, an atomic claim per email).
The job runs once at start, which is the catch-up after downtime: a late sweep records the
breaches that fell due meanwhile.
"""
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
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from callbacks.notify import Notifier, SmtpNotifier, notify_pending
from callbacks.smtp import redact
from callbacks.sweep import acquire_lease, release_lease, sweep
from helpdesk.clock import now_utc
from helpdesk.config import Settings
from helpdesk.db import Database

log = logging.getLogger(__name__)

LONDON = ZoneInfo("Europe/London")
LEASE = "sweep"
JOB_ID = "callbacks.sweep"
# Waiting longer than this for a running sweep before gunicorn forks a worker is not worth it.
FORK_WAIT_SECONDS = 10.0


def make_holder() -> str:
    """Who holds the lease: host, process and a random part (a restarted process is someone else)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[-128:]


@dataclass
class JobRun:
    """What one run of the job did (for tests and logs)."""

    now: datetime
    held: bool = False
    recorded: int = 0
    emailed: int = 0
    failed: bool = False


@dataclass(eq=False)
class SweepJob:
    """One run: take the lease, sweep, email. Never raises: failures are logged and the next run tries again."""

    settings: Settings
    database: Database
    notifier: Notifier | None = None
    clock: Callable[[], datetime] = now_utc
    holder: str = field(default_factory=make_holder)
    # In gunicorn's master no connection is kept between runs, so none is inherited by a forked worker.
    close_connections: bool = False
    _running: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, database_url: str, **kwargs: Any) -> "SweepJob":
        notifier = kwargs.pop("notifier", None) or SmtpNotifier.from_settings(settings)
        return cls(settings=settings, database=Database(database_url), notifier=notifier, **kwargs)

    @classmethod
    def from_app(cls, app, **kwargs: Any) -> "SweepJob":
        return cls.from_settings(app.extensions["helpdesk.settings"], app.config["DATABASE_URL"], **kwargs)

    def __call__(self) -> JobRun:
        with self._running:
            run = JobRun(now=self.clock())
            try:
                with self.database.session() as session:
                    lease_seconds = self.settings.scheduler.lease_seconds
                    run.held = acquire_lease(session, LEASE, self.holder, run.now, lease_seconds)
                    if not run.held:
                        log.debug("another scheduler holds the sweep lease")
                        return run
                    run.recorded = len(sweep(session, self.settings, run.now).recorded)
                    if self.notifier is not None:
                        run.emailed = notify_pending(session, self.settings, self.notifier, run.now).sent
            except Exception as exc:  # noqa: BLE001 - a failed run must not stop the scheduler
                run.failed = True
                log.error("the callback sweep failed; it will run again in %d s: %s",
                          self.settings.scheduler.sweep_seconds, _describe(exc))
            finally:
                if self.close_connections:
                    self.database.dispose()
            return run

    def release(self) -> None:
        """Give the lease up (on shutdown), so another scheduler can take over at once."""
        try:
            with self.database.session() as session:
                release_lease(session, LEASE, self.holder)
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            log.warning("could not release the sweep lease: %s", _describe(exc))
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
            if self.database.engine is not None:
                self.database.engine.dispose(close=False)

        os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=after_in_child)


def _describe(exc: BaseException) -> str:
    """An exception for the log: its type, message and where it happened, with numbers and addresses removed."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(frames))
    message = str(exc).split("\n", 1)[0][:300]
    return redact(f"{type(exc).__name__}: {message} (at {where})")


def build_scheduler(app_or_factory, *, background: bool, clock: Callable[[], datetime] | None = None,
                    notifier: Notifier | None = None, holder: str | None = None) -> BaseScheduler:
    """An APScheduler 3 scheduler with the sweep job, not yet started.

    `app_or_factory` is a Flask app (settings and DATABASE_URL from it), a zero-argument
    factory returning one (`create_app`), or a ready `SweepJob`. `background=True` gives a
    BackgroundScheduler for `helpdesk run` (no connections kept between runs, forks held back
    while a run is in progress); otherwise a BlockingScheduler for `helpdesk scheduler`.
    On shutdown the lease is released. The job is `scheduler.get_job(JOB_ID).func`.
    """
    if isinstance(app_or_factory, SweepJob):
        job = app_or_factory
    else:
        app = app_or_factory if hasattr(app_or_factory, "extensions") else app_or_factory()
        extra = {k: v for k, v in (("clock", clock), ("notifier", notifier), ("holder", holder)) if v is not None}
        job = SweepJob.from_app(app, close_connections=background, **extra)
    settings = job.settings
    if settings.scheduler.lease_seconds <= settings.scheduler.sweep_seconds:
        log.warning("scheduler.lease_seconds (%d) is not longer than scheduler.sweep_seconds (%d) in %s: "
                    "the lease lapses between runs, so schedulers may take turns",
                    settings.scheduler.lease_seconds, settings.scheduler.sweep_seconds, settings.source)
    scheduler: BaseScheduler = (BackgroundScheduler if background else BlockingScheduler)(timezone=LONDON)
    scheduler.add_job(
        job, "interval", seconds=settings.scheduler.sweep_seconds, id=JOB_ID, name="callback sweep and emails",
        coalesce=True, max_instances=1,
        # However late (a suspended machine, a long stall), a run is still wanted: it catches up.
        misfire_grace_time=None,
        # At start: the catch-up after downtime.
        next_run_time=datetime.now(LONDON),
    )

    def on_shutdown(_event) -> None:
        job.release()
        log.info("scheduler stopped; the sweep lease is released")

    scheduler.add_listener(on_shutdown, EVENT_SCHEDULER_SHUTDOWN)
    if background:
        job.guard_forks()
    return scheduler
