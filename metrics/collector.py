"""The Prometheus collector for the help desk's business series.

It reads the database at scrape time and keeps nothing between scrapes, so every worker
and every node answers the same and nothing resets when the app restarts. Read the whole
snapshot first (`HelpdeskCollector.read`): a database error then fails the scrape before
any line is written, never giving half an exposition.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callbacks.awaiting import OLDER_DAYS
from callbacks.scheduler import AcknowledgementJob, SweepJob
from helpdesk.db import Database
from helpdesk.models import ImapMailboxState, Restore, SchedulerLease, SignInFailure, TwilioEvent
from helpdesk.models.event import found_in_log as found_in_log_events
from helpdesk.settings import Settings
from helpdesk.users import SIGN_IN_WINDOW
from helpdesk.spool import Spool
from metrics import compliance
from metrics.counts import Totals, totals
from metrics.history import SettledHistory

log = logging.getLogger(__name__)

# The contract asks for every call, callback and email: the target is all of them.
SLA_TARGET_RATIO = 1.0
# helpdesk_calls_found_in_twilio_log_last_hour: what the alert reads. A gauge read from the
# database, so a find is seen by any scrape in the hour after it, unlike increase() of the
# counter, which needs a sample from before the find (none, if the app was down for long).
FOUND_RECENTLY = timedelta(hours=1)


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape shows, read at `now`."""

    now: datetime
    totals: Totals
    live: compliance.LiveFigures
    periods: dict[str, dict[str, compliance.RuleFigures]]  # "today", "week", "month" -> rule -> figures
    desk_open: bool
    read_seconds: float
    operations: Operations  # the scheduler's jobs, the mailbox, finds in Twilio's log, restores, sign-ins
    mailbox_polled: bool  # whether [email.imap] has a host


def read_snapshot(database: Database, settings: Settings, now: datetime,
                  history: SettledHistory | None = None,
                  older: compliance.OlderAwaiting | None = None) -> Snapshot:
    """Read every figure from the database (raises SQLAlchemyError if it cannot).

    With `history`, the settled rows it has counted already are not counted again; with
    `older`, the older calls awaiting an outcome are read at most once a minute.
    """
    started = time.perf_counter()
    periods = [compliance.current_period(kind, now) for kind in compliance.PERIOD_KINDS]
    with database.session() as session:
        if history is None:
            all_time = totals(session, settings)
            by_period = compliance.figures_for_periods(session, periods, settings, now)
        else:
            all_time, by_period = history.read(session, settings, now, periods)
        live = compliance.live_figures(session, settings, now,
                                       None if older is None else older(session, settings, now))
        operations = read_operations(session, settings, now)
    return Snapshot(now, all_time, live, by_period, settings.calendar.is_open(now), time.perf_counter() - started,
                    operations, bool(settings.email.imap.host))


@dataclass(frozen=True)
class Operations:
    """How the desk's machinery is doing, from the database: what /metrics reports beside the
    business figures, and the System page (helpdesk.system_status) shows."""

    leases: dict[str, datetime]  # scheduler job lease -> when it runs out
    failures: dict[str, tuple[datetime, str]]  # job lease -> when its last run failed, and why
    mailbox_read_at: datetime | None  # the IMAP mailbox's last successful read (None: never, or none polled)
    found_in_log: int  # calls found in Twilio's call log that never reached the app
    found_last_hour: int  # of them, found in the hour before now
    restored_at: datetime | None  # when the database was last put back to a backup (None: never)
    sign_ins_refused: int  # within helpdesk.users.SIGN_IN_WINDOW, not followed by a good one


def read_operations(session: Session, settings: Settings, now: datetime) -> Operations:
    """The Operations at `now`, in one read-only transaction of `session`."""
    with session.begin():
        leases, failures = {}, {}
        for name, expires, failed_at, failure in session.execute(
                select(SchedulerLease.name, SchedulerLease.expires_at, SchedulerLease.failed_at,
                       SchedulerLease.failure)):
            leases[name] = expires
            if failed_at is not None:
                failures[name] = (failed_at, failure or "")
        read_at = session.scalar(select(func.max(ImapMailboxState.checked_at))) if settings.email.imap.host \
            else None
        # Events, not calls: the journal only grows, so the counter never goes down, even if
        # such a call's webhooks turn up later from a spool.
        found_in_log, last_hour = session.execute(
            select(func.count(TwilioEvent.id),
                   func.count(TwilioEvent.id).filter(TwilioEvent.received_at > now - FOUND_RECENTLY))
            .where(found_in_log_events())).one()
        restored_at = session.scalar(select(func.max(Restore.restored_at)))
        # As the sign-in limit counts them: a good sign-in clears its name's, so a mistyped
        # password put right at once is not here, and guesses are.
        refused = session.scalar(select(func.count(SignInFailure.id))
                                 .where(SignInFailure.failed_at > now - SIGN_IN_WINDOW))
    return Operations(leases, failures, read_at, int(found_in_log or 0), int(last_hour or 0), restored_at,
                      int(refused or 0))


class HelpdeskCollector:
    """Yields the business metric families from one snapshot (see `read`)."""

    def __init__(self, database: Database, settings: Settings, now: datetime, history: SettledHistory | None = None,
                 older: compliance.OlderAwaiting | None = None):
        self.database, self.settings, self.now, self.history, self.older = database, settings, now, history, older
        self.snapshot: Snapshot | None = None

    def read(self) -> Snapshot:
        self.snapshot = read_snapshot(self.database, self.settings, self.now, self.history, self.older)
        return self.snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot or self.read()
        yield from call_families(snapshot)
        yield from callback_families(snapshot)
        yield from email_families(snapshot)
        yield from sla_families(snapshot)
        yield from scheduler_families(snapshot)
        operations = snapshot.operations
        if snapshot.mailbox_polled:
            yield GaugeMetricFamily("helpdesk_imap_last_read_timestamp_seconds",
                                    "When the IMAP mailbox was last read (Unix time; 0 if never).",
                                    value=operations.mailbox_read_at.timestamp() if operations.mailbox_read_at else 0.0)
        yield GaugeMetricFamily("helpdesk_database_restored_timestamp_seconds",
                                "When the database was last put back to an older backup (Unix time; 0 if never): "
                                "the business counters went back then, and rate() reads it as a reset.",
                                value=operations.restored_at.timestamp() if operations.restored_at else 0.0)
        yield GaugeMetricFamily("helpdesk_sign_ins_refused_recently",
                                "Sign-ins refused in the last 15 minutes (wrong passwords, unknown usernames, "
                                "deactivated users) with no good sign-in for the same name after them.",
                                value=operations.sign_ins_refused)
        scrape = GaugeMetricFamily("helpdesk_metrics_read_seconds",
                                   "Time taken to read the business figures from the database for this scrape.")
        scrape.add_metric([], snapshot.read_seconds)
        yield scrape


class BuildCollector:
    """Which version of the app, and of the configuration file, this server runs: after an
    upgrade or a change to the file, every server should show the same."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        from metrics.evidence.manifest import software_version

        info = GaugeMetricFamily("helpdesk_build_info", "Always 1: the app's version and its configuration's "
                                 "version (the first 12 hex digits of the file's SHA-256).",
                                 labels=["version", "config_version"])
        info.add_metric([software_version(), self.settings.version], 1)
        yield info


class SpoolCollector:
    """Webhooks in this server's spool (helpdesk/spool.py): waiting for the database, or set aside."""

    def __init__(self, spool: Spool):
        self.spool = spool

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.spool.counts()
        except OSError as exc:  # an unreadable spool must not cost the business figures
            log.error("metrics: cannot read the webhook spool %s (%s)", self.spool.directory, exc.strerror)
            return
        spooled = GaugeMetricFamily(
            "helpdesk_webhooks_spooled",
            "Twilio webhooks in this server's spool: waiting to be stored, refused by the database, or unreadable.",
            labels=["state"])
        for state, count in counts.items():
            spooled.add_metric([state], count)
        yield spooled


def call_families(snapshot: Snapshot) -> Iterator[Metric]:
    counts = snapshot.totals
    calls = CounterMetricFamily("helpdesk_calls", "Finished inbound calls by outcome and caller type.",
                                labels=["outcome", "caller_type"])
    for (outcome, caller_type), count in sorted(counts.calls.items()):
        calls.add_metric([outcome, caller_type], count)
    yield calls
    yield CounterMetricFamily("helpdesk_calls_countable",
                              "Calls that count for the answer rule (in hours, not abandoned before the target).",
                              value=counts.calls_countable)
    yield CounterMetricFamily("helpdesk_calls_answered_within_target",
                              "Countable calls answered by a person within the ring target.",
                              value=counts.calls_within_target)
    yield CounterMetricFamily("helpdesk_calls_found_in_twilio_log",
                              "Calls to the help desk's numbers that never reached the app, found later in Twilio's "
                              "call log: the app could not be reached when they rang. Also in helpdesk_calls.",
                              value=snapshot.operations.found_in_log)
    yield GaugeMetricFamily("helpdesk_calls_found_in_twilio_log_last_hour",
                            "Calls that never reached the app found in Twilio's call log in the last hour.",
                            value=snapshot.operations.found_last_hour)
    yield GaugeMetricFamily("helpdesk_calls_unfinished",
                            "Calls not answered and with no ending two hours after they arrived: Twilio's last "
                            "webhooks for them never came, and its REST API has not said how they ended.",
                            value=snapshot.live.calls_unfinished)
    yield GaugeMetricFamily("helpdesk_calls_awaiting_outcome",
                            "Answered calls on the agents' page whose enquiry has no outcome yet (concluded on "
                            "the call, or callback needed).",
                            value=snapshot.live.calls_awaiting_outcome)
    yield GaugeMetricFamily("helpdesk_call_awaiting_outcome_oldest_seconds",
                            "Seconds since the earliest-ended of the answered calls awaiting an outcome ended "
                            "(0 when none has ended).",
                            value=snapshot.live.oldest_awaiting_outcome_seconds)
    yield GaugeMetricFamily("helpdesk_calls_awaiting_outcome_older",
                            f"Answered calls of the last {OLDER_DAYS} days from before those on the agents' page, "
                            "whose enquiry still has no outcome (shown there with older calls).",
                            value=snapshot.live.calls_awaiting_outcome_older)
    buckets = [(floatToGoString(bound), count) for bound, count in zip(counts.answer_bounds, counts.answer_cumulative)]
    buckets.append(("+Inf", counts.answer_cumulative[-1]))
    yield HistogramMetricFamily("helpdesk_call_answer_seconds",
                                "Time from arrival to a person answering, for answered countable calls.",
                                buckets=buckets, sum_value=counts.answer_sum)
    if counts.last_answered_at is not None:
        last = GaugeMetricFamily("helpdesk_last_answered_call_timestamp_seconds",
                                 "When a person last answered a call (Unix time).")
        last.add_metric([], counts.last_answered_at.timestamp())
        yield last


def callback_families(snapshot: Snapshot) -> Iterator[Metric]:
    live = snapshot.live
    results = CounterMetricFamily("helpdesk_callbacks", "Callbacks decided: first attempt in time (met) or not.",
                                  labels=["result"])
    for result in ("met", "breached"):
        results.add_metric([result], snapshot.totals.callbacks[result])
    yield results
    yield GaugeMetricFamily("helpdesk_callbacks_open", "Callbacks open now.", value=live.callbacks_open)
    yield GaugeMetricFamily("helpdesk_callbacks_overdue", "Open callbacks past their due time that nobody has attempted yet.",
                            value=live.callbacks_overdue)
    yield GaugeMetricFamily("helpdesk_callbacks_due_soon", "Open callbacks due within callback.due_soon_minutes.",
                            value=live.callbacks_due_soon)
    yield GaugeMetricFamily("helpdesk_callbacks_due_soon_unclaimed", "Callbacks due soon that no agent has claimed.",
                            value=live.callbacks_due_soon_unclaimed)
    yield GaugeMetricFamily("helpdesk_callback_oldest_open_age_seconds",
                            "Age of the oldest open callback, from its contact (0 when none is open).",
                            value=live.oldest_open_callback_age_seconds)


def email_families(snapshot: Snapshot) -> Iterator[Metric]:
    live = snapshot.live
    yield CounterMetricFamily("helpdesk_emails_received", "Inbound emails stored.",
                              value=snapshot.totals.emails_received)
    acks = CounterMetricFamily("helpdesk_emails_acknowledged", "Acknowledgements sent: in time (met) or late.",
                               labels=["result"])
    for result in ("met", "late"):
        acks.add_metric([result], snapshot.totals.acknowledgements[result])
    yield acks
    yield GaugeMetricFamily("helpdesk_emails_unacknowledged", "Acknowledgements owed and not sent (pending or failed).",
                            value=live.emails_unacknowledged)
    yield GaugeMetricFamily("helpdesk_emails_unacknowledged_overdue",
                            "Acknowledgements owed, not sent, and past their due time.",
                            value=live.emails_unacknowledged_overdue)


def sla_families(snapshot: Snapshot) -> Iterator[Metric]:
    ratio = GaugeMetricFamily("helpdesk_sla_compliance_ratio",
                              "Met over countable per rule and period (absent when nothing was countable).",
                              labels=["sla", "period"])
    countable = GaugeMetricFamily("helpdesk_sla_countable", "Items countable per rule and period.",
                                  labels=["sla", "period"])
    met = GaugeMetricFamily("helpdesk_sla_met", "Items that met the rule per rule and period.", labels=["sla", "period"])
    for period, by_rule in snapshot.periods.items():
        for rule in compliance.RULES:
            figures = by_rule[rule]
            countable.add_metric([rule, period], figures.countable)
            met.add_metric([rule, period], figures.met)
            if figures.compliance is not None:
                ratio.add_metric([rule, period], figures.compliance)
    yield ratio
    yield countable
    yield met
    target = GaugeMetricFamily("helpdesk_sla_target_ratio", "The contract's target per rule (all items).",
                               labels=["sla"])
    for rule in compliance.RULES:
        target.add_metric([rule], SLA_TARGET_RATIO)
    yield target
    yield GaugeMetricFamily("helpdesk_open", "1 while the help desk is open (business calendar), else 0.",
                            value=1.0 if snapshot.desk_open else 0.0)


# Leases every scheduler takes (the sweep's and the acknowledgements'): reported (as 0) even
# before any scheduler has ever run.
ALWAYS_LEASED = (SweepJob.lease, AcknowledgementJob.lease)


def scheduler_families(snapshot: Snapshot) -> Iterator[Metric]:
    """When each scheduler job's lease runs out: every run renews it, so a time in the past means
    no scheduler has run that job since (stopped, or never started); and whether its last run
    failed (kept with its lease until a run works)."""
    leases = GaugeMetricFamily(
        "helpdesk_scheduler_lease_expires_timestamp_seconds",
        "When each scheduler job's lease runs out (Unix time); each run renews it, so a time in the past "
        "means no scheduler is running the job.", labels=["lease"])
    failing = GaugeMetricFamily(
        "helpdesk_scheduler_job_failing",
        "1 while a scheduler job's last run failed (the scheduler's log says why), 0 once a run works.",
        labels=["lease"])
    for name in sorted(set(ALWAYS_LEASED) | set(snapshot.operations.leases)):
        expires = snapshot.operations.leases.get(name)
        leases.add_metric([name], expires.timestamp() if expires is not None else 0.0)
        failing.add_metric([name], 1.0 if name in snapshot.operations.failures else 0.0)
    yield leases
    yield failing
