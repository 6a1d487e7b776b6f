"""`helpdesk run`, `scheduler` and `webhooks replay`: serving the app, running its scheduled
jobs, and storing the webhooks a database outage left in the spool."""
from __future__ import annotations

import logging

import click

from helpdesk.config import ConfigError, load_settings

log = logging.getLogger(__name__)


@click.group()
def webhooks() -> None:
    """Twilio webhooks kept in the spool while the database was unreachable."""


@webhooks.command("replay")
@click.option("--set-aside", "set_aside", is_flag=True,
              help="Also try again the webhooks the database refused before (unstored.jsonl in the spool), "
                   "once what made it refuse them is fixed.")
def webhooks_replay(set_aside: bool) -> None:
    """Store the webhooks waiting in the spool ([webhooks] spool_dir) in DATABASE_URL's database.

    The app does this by itself once the database is back; this is for when no app runs.
    """
    from helpdesk.cli import database_url  # here: helpdesk.cli adds this module's commands
    from helpdesk.db import Database
    from helpdesk.spool import UNSTORED
    from helpdesk.voice.recovery import replay, spool_for

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from helpdesk.migrate import NotReady, check_migrated

    url = database_url()
    try:  # never take the spool's webhooks to a database that cannot hold them: they would be set aside
        check_migrated(url)
    except NotReady as exc:
        raise click.ClickException(f"{exc}. The spool's webhooks are left where they are.") from None
    database = Database(url)
    try:
        if set_aside:
            moved = spool_for(settings).retry_set_aside()
            if moved is None:
                raise click.ClickException("another process is storing the spool right now; try again in a minute")
            click.echo(f"Trying again {moved} webhook{'' if moved == 1 else 's'} set aside in {UNSTORED}.")
        result = replay(database, settings)
        set_aside_now = spool_for(settings).counts()["unstored"]
    except OSError as exc:
        raise click.ClickException(f"cannot read the spool {spool_for(settings).directory}: {exc.strerror}") from None
    finally:
        database.dispose()
    if result.busy:
        raise click.ClickException("another process is storing the spool right now; try again in a minute")
    click.echo(f"Stored {result.stored} webhook{'' if result.stored == 1 else 's'} from {spool_for(settings).directory}.")
    if result.unstored or result.unreadable:
        click.echo(f"{result.unstored} refused by the database (kept in unstored.jsonl), "
                   f"{result.unreadable} unreadable (kept in unreadable.jsonl).")
    if set_aside_now:
        click.echo(f"{set_aside_now} set aside in {UNSTORED} (the log says why the database refused each): once "
                   "that is fixed, 'helpdesk webhooks replay --set-aside' tries them again.")
    if result.waiting:
        raise click.ClickException(f"{result.waiting} webhooks still wait: the database is unreachable")


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--no-scheduler", is_flag=True,
              help="Do not run the scheduler in this server (run `helpdesk scheduler` as its own process).")
def run(host: str, port: int, workers: int, no_scheduler: bool) -> None:
    """Serve the app with gunicorn (the one-machine set-up), with the scheduler in gunicorn's master."""
    from helpdesk.cli import check_before_serving

    app = check_before_serving()
    from helpdesk.server import MetricsDirError, serve

    try:
        serve(f"{host}:{port}", workers=workers, scheduler=None if no_scheduler else in_process_scheduler(app))
    except MetricsDirError as exc:
        raise click.ClickException(str(exc)) from None


# The scheduler's jobs (callbacks/scheduler.py: the sweep and supervisors' emails, email
# acknowledgements, the mailbox, the checks with Twilio): in-process under `helpdesk run`
# (started by gunicorn's master, see helpdesk/server.py), or its own process.


def in_process_scheduler(app):
    """A BackgroundScheduler for `run`; gunicorn's master starts it once it is ready."""
    from callbacks.scheduler import build_scheduler

    _quiet_apscheduler()
    return build_scheduler(app, background=True)


def _once_summary(job, outcome) -> str:
    from callbacks.scheduler import AcknowledgementJob, ReconcileJob, RetentionJob, SweepJob
    from helpdesk.cli_calls import count_words, missed_line, reconcile_line

    if isinstance(job, SweepJob):
        failed = getattr(outcome.result, "failed", 0)
        unsent = f", {failed} could not be (see the warnings above; tried again at the next sweep)" if failed else ""
        return (f"Swept: {count_words(outcome.recorded, 'new warning or breach notice')}, {outcome.emailed} "
                f"emailed{unsent}.")
    if isinstance(job, AcknowledgementJob):
        return f"Email acknowledgements: {outcome.emailed} sent."
    result = outcome.result
    if isinstance(job, ReconcileJob):
        lines = [reconcile_line(what, report)
                 for what, report in zip(("Unfinished calls", "Placing callback attempts"), result)]
        if job.settings.webhooks.twilio_numbers:
            lines.append(missed_line(result[2]))
        return " ".join(lines)
    if isinstance(job, RetentionJob):
        return (f"Personal data past the retention period removed from {count_words(result.calls, 'call')}, "
                f"{count_words(result.callbacks, 'callback')} and {count_words(result.emails, 'email')}"
                f"{'' if result.finished else '; more at the next run'}.")
    return f"Mailbox polled: {count_words(result.stored, 'new message')} ({result.fetched} read)."


def _quiet_apscheduler() -> None:
    # APScheduler logs every run at INFO; ours logs what a run did. Keep its detail for --verbose.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run every job once and exit (to check the set-up, or from cron).")
def scheduler_command(once: bool) -> None:
    """Run the scheduler in the foreground: callback warnings and breaches, email acknowledgements,
    (when [email.imap] has a host) the mailbox poll, the check of unfinished calls with Twilio,
    and (when [retention] sets a period) the removal of personal data past it. Ctrl-C stops it.

    For deployments that serve the app with `helpdesk run --no-scheduler` or plain gunicorn.
    Needs DATABASE_URL and the configuration file; SMTP_USERNAME/SMTP_PASSWORD if the mail
    server asks, IMAP_USERNAME/IMAP_PASSWORD for the mailbox, TWILIO_ACCOUNT_SID and
    TWILIO_AUTH_TOKEN for the checks with Twilio (without them those checks do not run).
    """
    import signal

    from callbacks.scheduler import SweepJob, build_scheduler, scheduled_jobs
    from helpdesk.cli import migrated_database_url

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    url = migrated_database_url(wait_if_unreachable=not once)
    job = SweepJob.from_settings(settings, url)
    if once:
        failed = []
        for each in scheduled_jobs(job):
            each.announce = False  # the summary below says whether it ran
            outcome = each()
            each.release()  # not running again: let the next run (or another scheduler) in at once
            if outcome.failed:
                failed.append(each.description)
            elif not outcome.held:
                click.echo(f"Another scheduler holds the {each.description} lease; skipped.")
            else:
                click.echo(_once_summary(each, outcome))
        if failed:
            raise click.ClickException(f"failed: {', '.join(failed)} (see the log above)")
        return
    _quiet_apscheduler()
    scheduler = build_scheduler(job, background=False)
    click.echo(f"Scheduler started with {settings.source}: sweeping every {settings.scheduler.sweep_seconds} s "
               f"as {job.holder}. Press Ctrl-C to stop.")

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        click.echo("Stopping the scheduler...")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if scheduler.running:
            scheduler.shutdown()
    click.echo("Scheduler stopped.")
