"""The scheduler: the callback sweep and the supervisors' emails every `scheduler.sweep_seconds`,
the email acknowledgements every 15 seconds, the IMAP mailbox every `email.imap.poll_seconds`,
and every 5 minutes the calls whose last webhooks never came (asked of Twilio's REST API), the
calls that never reached the app (looked for in Twilio's call log), and personal data past
`retention.personal_data_days`.

Two shapes (DESIGN.md, "Deployment shapes"):

* in-process: `helpdesk run` starts a BackgroundScheduler in gunicorn's master process (one
  per server, however many workers);
* separate: `helpdesk scheduler` runs a BlockingScheduler in the foreground.

Either way each run first takes its job's database lease ("sweep", "email.acks", "email.imap",
"calls.reconcile", "personal_data": the names helpdesk_scheduler_lease_expires_timestamp_seconds
is labelled with),
so two schedulers (two servers, or a server and a separate scheduler) never run the same job at
the same time; the work is safe even if they did (a unique notice per callback and kind, an
atomic claim per email and acknowledgement, a unique key per inbound message).
Each job runs once at start, which is the catch-up after downtime: a late sweep records the
breaches that fell due meanwhile.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session

from callbacks.email.sending import send_due_acknowledgements
from callbacks.leased_job import FORK_WAIT_SECONDS, JobRun, LeasedJob, make_holder
from callbacks.notify import Notifier, SmtpNotifier, notify_pending
from callbacks.reconcile import reconcile_attempts
from callbacks.smtp import MessageSender, SmtpSender
from callbacks.sweep import sweep
from helpdesk.clock import LONDON
from helpdesk.db import Database
from helpdesk.retention import Scope, empty_write_ahead_log, record_removal, remove_personal_data
from helpdesk.settings import Settings
from helpdesk.voice.lookup import CallLookup, lookup_from_environment
from helpdesk.voice.missed import LOOK_BACK as MISSED_LOOK_BACK, SETTLE, MissedReport, find_missed
from helpdesk.voice.reconcile import ReconcileReport, reconcile_calls
from metrics.periods import uk_date, uk_midnight

# Also for those who import them from here.
__all__ = ["ACK_JOB_ID", "ACK_SECONDS", "FORK_WAIT_SECONDS", "IMAP_JOB_ID", "JOB_ID", "LEASE", "RECONCILE_JOB_ID",
           "RECONCILE_SECONDS", "AcknowledgementJob", "JobRun", "LeasedJob", "MailboxJob", "ReconcileJob", "SweepJob",
           "build_scheduler", "make_holder", "scheduled_jobs"]

log = logging.getLogger(__name__)

LEASE = "sweep"
JOB_ID = "callbacks.sweep"
ACK_JOB_ID = "email.acknowledgements"
IMAP_JOB_ID = "email.imap"
RECONCILE_JOB_ID = "calls.reconcile"
# Unfinished calls are looked for this often; each is asked about reconcile_after_minutes after it arrived.
RECONCILE_SECONDS = 300
# Acknowledgements are due within minutes (email.ack_within), so look for them often.
ACK_SECONDS = 15
RETENTION_JOB_ID = "personal_data.removal"
# Personal data past the retention period goes this often, at most this many chunks of rows a
# run (about 20,000 rows: seconds), so a first run over years of data never holds its lease,
# or gunicorn's forks, for long.
RETENTION_SECONDS = 300
RETENTION_CHUNKS = 40


@dataclass(eq=False)
class SweepJob(LeasedJob):
    """The callback sweep, then the supervisors' emails."""

    notifier: Notifier | None = None

    lease: ClassVar[str] = LEASE
    job_id: ClassVar[str] = JOB_ID
    description: ClassVar[str] = "callback sweep"

    @classmethod
    def from_settings(cls, settings: Settings, database_url: str, **kwargs: Any) -> "SweepJob":
        notifier = kwargs.pop("notifier", None) or SmtpNotifier.from_settings(settings)
        return cls(settings=settings, database=Database(database_url), notifier=notifier, **kwargs)

    @classmethod
    def from_app(cls, app, **kwargs: Any) -> "SweepJob":
        return cls.from_settings(app.extensions["helpdesk.settings"], app.config["DATABASE_URL"], **kwargs)

    @classmethod
    def interval(cls, settings: Settings) -> int:
        return settings.scheduler.sweep_seconds

    def work(self, session: Session, run: JobRun) -> None:
        run.recorded = len(sweep(session, self.settings, run.now).recorded)
        if self.notifier is not None:
            run.result = notify_pending(session, self.settings, self.notifier, run.now)
            run.emailed = run.result.sent


@dataclass(eq=False)
class AcknowledgementJob(LeasedJob):
    """Sends the email acknowledgements that are due (first sends and retries)."""

    sender: MessageSender | None = None

    lease: ClassVar[str] = "email.acks"
    job_id: ClassVar[str] = ACK_JOB_ID
    description: ClassVar[str] = "sending of email acknowledgements"

    @classmethod
    def interval(cls, settings: Settings) -> int:
        return ACK_SECONDS

    def work(self, session: Session, run: JobRun) -> None:
        if self.sender is None:  # made once: it keeps its TLS context between runs
            self.sender = SmtpSender.from_settings(self.settings)
        run.result = send_due_acknowledgements(session, self.sender, self.settings, run.now, clock=self.clock)
        run.emailed = run.result.sent


@dataclass(eq=False)
class MailboxJob(LeasedJob):
    """Reads new messages from the IMAP mailbox (email.imap), with IMAP_USERNAME/IMAP_PASSWORD."""

    environ: Mapping[str, str] | None = None
    poll: Callable[..., Any] | None = None  # callbacks.email.imap.poll_mailbox unless a test gives one
    ssl_context: Any = None  # None: made at the first poll from email.imap.ca_file, or the system's authorities

    lease: ClassVar[str] = "email.imap"
    job_id: ClassVar[str] = IMAP_JOB_ID
    description: ClassVar[str] = "IMAP mailbox poll"

    @classmethod
    def interval(cls, settings: Settings) -> int:
        return settings.email.imap.poll_seconds

    def work(self, session: Session, run: JobRun) -> None:
        poll = self.poll
        if poll is None:
            from callbacks.email.imap import poll_mailbox as poll
        env = os.environ if self.environ is None else self.environ
        if self.ssl_context is None:
            self.ssl_context = self.settings.email.imap.ssl_context()  # made once: loading it takes a while
        # The poller commits message by message through its own sessions; the lease is ours.
        run.result = poll(self.database, self.settings, username=env.get("IMAP_USERNAME", ""),
                          password=env.get("IMAP_PASSWORD", ""), now=run.now, ssl_context=self.ssl_context)


@dataclass(eq=False)
class RetentionJob(LeasedJob):
    """Removes callers' and senders' personal data from contacts that began more than
    retention.personal_data_days ago (whole UK days), a few chunks a run (helpdesk/retention.py);
    each run that removed anything is in the audit log, as the help desk's own."""

    # Where the last run stopped in each table, so this one goes on from there (in memory: a
    # restarted scheduler starts again from the beginning, reading what is already done quickly).
    resume_at: dict[str, int] = field(default_factory=dict)

    lease: ClassVar[str] = "personal_data"
    job_id: ClassVar[str] = RETENTION_JOB_ID
    description: ClassVar[str] = "removal of personal data past the retention period"

    @classmethod
    def interval(cls, settings: Settings) -> int:
        return RETENTION_SECONDS

    def work(self, session: Session, run: JobRun) -> None:
        days = self.settings.retention.personal_data_days
        day = uk_date(run.now) - timedelta(days=days)
        removal = remove_personal_data(session, Scope.before(uk_midnight(day)), apply=True, now=run.now,
                                       chunks=RETENTION_CHUNKS, resume_at=self.resume_at)
        if removal.removed_any():
            taken = {"before": day.isoformat(), "setting": f"retention.personal_data_days = {days}"}
            record_removal(session, taken=taken, removal=removal, user_id=None, username="helpdesk", now=run.now)
            log.info("removed personal data from contacts begun before %s (retention.personal_data_days = %d): "
                     "%d calls, %d callbacks, %d emails%s", day.isoformat(), days, removal.calls, removal.callbacks,
                     removal.emails, "" if removal.finished else "; more in the next run")
            if removal.finished:
                empty_write_ahead_log(session)
        run.result = removal


@dataclass(eq=False)
class ReconcileJob(LeasedJob):
    """Asks Twilio's REST API how the calls left with no ending (helpdesk/voice/reconcile.py), and the
    "Call back now" attempts left "placing" (callbacks/reconcile.py), ended; and looks in Twilio's
    call log for calls to webhooks.twilio_numbers that never reached the app (helpdesk/voice/missed.py)."""

    lookup: CallLookup | None = None
    # Where the next look in Twilio's call log starts; None: LOOK_BACK before the run.
    missed_from: datetime | None = None

    lease: ClassVar[str] = "calls.reconcile"
    job_id: ClassVar[str] = RECONCILE_JOB_ID
    description: ClassVar[str] = "check of unfinished calls with Twilio"

    @classmethod
    def interval(cls, settings: Settings) -> int:
        return RECONCILE_SECONDS

    def work(self, session: Session, run: JobRun) -> None:
        # The lease is ours; each call's events, and each attempt's outcome, are stored in a transaction of their own.
        calls = reconcile_calls(self.database, self.settings, self.lookup, run.now)
        attempts = ReconcileReport() if calls.stopped else reconcile_attempts(
            self.database, self.settings, self.lookup, run.now)
        missed = MissedReport()
        if self.settings.webhooks.twilio_numbers and not (calls.stopped or attempts.stopped):
            settle = max(SETTLE, timedelta(minutes=self.settings.webhooks.reconcile_after_minutes))
            since = run.now - MISSED_LOOK_BACK
            if self.missed_from is not None:
                since = max(since, self.missed_from)
            until = run.now - settle
            missed = find_missed(self.database, self.settings, self.lookup, since=since, until=until, now=run.now)
            if missed.complete:
                self.missed_from = min(until, missed.hold_from or until)
        run.result = (calls, attempts, missed)


def wanted_jobs(settings: Settings) -> list[type[LeasedJob]]:
    """The jobs a scheduler runs with these settings: the sweep and the acknowledgements always; the
    mailbox's when [email.imap] has a host; the retention's when retention.personal_data_days is
    set; the check of unfinished calls unless webhooks.reconcile_after_minutes is 0 (and only with
    Twilio's credentials: scheduled_jobs)."""
    wanted: list[type[LeasedJob]] = [SweepJob, AcknowledgementJob]
    if settings.email.imap.host:
        wanted.append(MailboxJob)
    if settings.retention.personal_data_days:
        wanted.append(RetentionJob)
    if settings.webhooks.reconcile_after_minutes:
        wanted.append(ReconcileJob)
    return wanted


def scheduled_jobs(job: SweepJob, *, sender: MessageSender | None = None, close_connections: bool = False,
                   lookup: CallLookup | None = None) -> list[LeasedJob]:
    """The sweep, the acknowledgement job, the mailbox job (when [email.imap] has a host), and the
    check of unfinished calls (unless webhooks.reconcile_after_minutes is 0, or there is no `lookup`
    and no Twilio credentials in the environment)."""
    url = job.database.url
    # Each job has its own engine: one job disposing of its connections never touches another's.
    shared = {"settings": job.settings, "clock": job.clock, "holder": job.holder,
              "close_connections": close_connections}
    wanted = wanted_jobs(job.settings)
    jobs: list[LeasedJob] = [job, AcknowledgementJob(database=Database(url), sender=sender, **shared)]
    if MailboxJob in wanted:
        jobs.append(MailboxJob(database=Database(url), **shared))
    if RetentionJob in wanted:
        jobs.append(RetentionJob(database=Database(url), **shared))
    if ReconcileJob not in wanted and job.settings.webhooks.twilio_numbers:
        log.warning("calls that never reached the app are not looked for in Twilio's call log: "
                    "webhooks.reconcile_after_minutes is 0")
    if ReconcileJob in wanted:
        lookup = lookup or lookup_from_environment()
        if lookup is None:
            log.warning("calls whose last webhooks never came stay unfinished: set TWILIO_ACCOUNT_SID and "
                        "TWILIO_AUTH_TOKEN to ask Twilio how they ended (webhooks.reconcile_after_minutes)"
                        + ("; calls that never reached the app are not looked for in Twilio's call log either"
                           if job.settings.webhooks.twilio_numbers else ""))
        else:
            jobs.append(ReconcileJob(database=Database(url), lookup=lookup, **shared))
    return jobs


def build_scheduler(app_or_factory, *, background: bool, clock: Callable[[], datetime] | None = None,
                    notifier: Notifier | None = None, holder: str | None = None,
                    sender: MessageSender | None = None, lookup: CallLookup | None = None) -> BaseScheduler:
    """An APScheduler 3 scheduler with the jobs of `scheduled_jobs`, not yet started.

    `app_or_factory` is a Flask app (settings and DATABASE_URL from it), a zero-argument
    factory returning one (`create_app`), or a ready `SweepJob` (the other jobs then use its
    settings, database address, clock and holder). `background=True` gives a
    BackgroundScheduler for `helpdesk run` (no connections kept between runs, forks held back
    while a run is in progress); otherwise a BlockingScheduler for `helpdesk scheduler`.
    On shutdown the leases are released. A job is `scheduler.get_job(JOB_ID).func`.
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
    jobs = scheduled_jobs(job, sender=sender, close_connections=background, lookup=lookup)
    scheduler: BaseScheduler = (BackgroundScheduler if background else BlockingScheduler)(timezone=LONDON)
    for each in jobs:
        scheduler.add_job(
            each, "interval", seconds=each.every_seconds(), id=each.job_id, name=each.description,
            coalesce=True, max_instances=1,
            # However late (a suspended machine, a long stall), a run is still wanted: it catches up.
            misfire_grace_time=None,
            # At start: the catch-up after downtime.
            next_run_time=datetime.now(LONDON),
        )

    def on_shutdown(_event) -> None:
        for each in jobs:
            each.release()
        log.info("scheduler stopped; its leases are released")

    scheduler.add_listener(on_shutdown, EVENT_SCHEDULER_SHUTDOWN)
    if background:
        for each in jobs:
            each.guard_forks()
    return scheduler
