"""The `helpdesk` command."""
from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import click

from helpdesk.config import ConfigError, Secrets, load_settings
from helpdesk.dbutil import first_line

log = logging.getLogger(__name__)


QUIET_LOGGERS = ("twilio.http_client", "apscheduler.scheduler", "alembic.runtime.plugins")


@click.group()
@click.option("--verbose", "-v", is_flag=True, help="Log more detail.")
@click.version_option(package_name="helpdesk-sla", message="helpdesk %(version)s")
def main(verbose: bool) -> None:
    """Help-desk telephony and contact SLA monitor."""
    configure_logging(verbose)


class PrivateFormatter(logging.Formatter):
    """Log lines, tracebacks included, without the database's DETAIL lines: PostgreSQL puts the
    values of a row it refused there ("Key (caller_number)=(+447700900123) already exists",
    "Failing row contains (...)"), and its driver puts them in the error's text."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(line for line in super().format(record).split("\n")
                         if not line.lstrip().startswith("DETAIL:"))


def configure_logging(verbose: bool = False) -> None:
    """Log lines with time, level and logger to stderr: for every command, and for the app under
    plain gunicorn (helpdesk.server.on_starting), whose own loggers are gunicorn's alone."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrivateFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if not verbose:
        # twilio logs every REST request's URL, query and headers at INFO, APScheduler each job
        # it adds, and Alembic each of its plugins whenever it reads the migrations: detail for
        # --verbose, not for every command.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def database_url() -> str:
    return Secrets.from_environ().database_url


@main.group()
def db() -> None:
    """The database: migrate its schema, and record a restore from a backup."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Schema revision to upgrade to.")
def db_upgrade(revision: str) -> None:
    """Create or migrate the database named by DATABASE_URL."""
    from helpdesk.migrate import NotReady, check_url, current, is_known, newer_schema, upgrade

    if not revision.strip():
        raise click.BadParameter("give a revision, for example head", param_hint="--revision")
    url = database_url()
    try:
        check_url(url, missing_file_ok=True)  # SQLite: `db upgrade` is how the file is made
        before = current(url)
    except NotReady as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # driver errors: say what failed, no traceback
        raise click.ClickException(f"cannot reach the database: {first_line(exc)}") from None
    if before is not None and not is_known(before):
        raise click.ClickException(newer_schema(before))
    try:
        upgrade(url, revision)
        after = current(url)
    except Exception as exc:  # alembic and driver errors: say what failed, no traceback
        raise click.ClickException(f"could not migrate the database: {first_line(exc)}") from None
    if before == after:
        click.echo(f"The database is already at revision {after}: nothing to do.")
    else:
        click.echo(f"Migrated the database from {'an empty one' if before is None else 'revision ' + before} "
                   f"to revision {after}.")


@db.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    from helpdesk.migrate import NotReady, check_url, current, head, is_known

    url = database_url()
    try:
        check_url(url)
        revision = current(url)
    except NotReady as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # driver errors: say what failed, no traceback
        raise click.ClickException(f"cannot reach the database: {first_line(exc)}") from None
    newest = head()
    if revision is None:
        click.echo("empty (run 'helpdesk db upgrade')")
    elif revision == newest:
        click.echo(revision)
    elif not is_known(revision):
        click.echo(f"{revision} (newer than this version of the app, which goes up to {newest})")
    else:
        click.echo(f"{revision} (run 'helpdesk db upgrade': this version needs {newest})")


@main.command("files")
@click.option("--out", "out", required=True, metavar="DIR", type=click.Path(file_okay=False),
              help="Where to write them (made if missing).")
@click.option("--overwrite", is_flag=True, help="Replace files there that differ from this version's (your edits "
              "to them are lost; a link there is replaced, never written through).")
def files_command(out: str, overwrite: bool) -> None:
    """Write the files that come with this version into DIR, laid out as in a checkout:
    config/ (the example configuration with every key documented, gunicorn settings,
    Prometheus and Grafana set-up) and metrics/ (alert rules and their tests, Grafana
    dashboards). For an installation from a wheel: the README's commands then work from DIR."""
    from helpdesk.shipped import differing, inside_sources, shipped_files, write_files

    if not out.strip():
        raise click.BadParameter("name a directory", param_hint="--out")
    out = Path(out)
    if (source := inside_sources(out)) is not None:
        raise click.BadParameter(f"{out} is in {source}, where the files come from: choose a directory "
                                 "outside the installation", param_hint="--out")
    files = shipped_files()
    if missing := [name for name, path in files.items() if not path.is_file()]:
        raise click.ClickException(f"this installation lacks {', '.join(missing)}: reinstall it from a wheel or a "
                                   "checkout")
    clashes = differing(out, files)
    if clashes and not overwrite:
        raise click.ClickException(f"{out} already has {len(clashes)} of these files with other content "
                                   f"({', '.join(clashes)}): nothing written. Choose another directory, or "
                                   "add --overwrite to replace them")
    try:
        done = write_files(out, files)
    except OSError as exc:
        raise click.ClickException(f"cannot write in {out}: {exc.strerror or exc}") from None
    for name, what in done:
        click.echo(f"{what} {out / name}")
    click.echo(f"{len(done)} files of helpdesk-sla {version('helpdesk-sla')} in {out}.")


@main.command("check-config")
@click.argument("path", required=False)
def check_config(path: str | None) -> None:
    """Validate the configuration file (HELPDESK_CONFIG, or config/helpdesk.toml)."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{settings.source}: valid (version {settings.version}).")
    for warning in (_routing_warnings(settings) + _missed_calls_warnings(settings) + _smtp_warnings(settings)
                    + _spool_warnings(settings)):
        click.echo(warning)


def _spool_warnings(settings) -> list[str]:
    """A spool this user cannot write to, or one that moves with the working directory."""
    from helpdesk.voice.recovery import spool_for, spool_problem

    if problem := spool_problem(settings, create=False):
        return [f"warning: {problem} (as this user; the server checks again when it starts)."]
    if not Path(settings.webhooks.spool_dir).is_absolute():
        return [f"warning: webhooks.spool_dir \"{settings.webhooks.spool_dir}\" is relative, so it is taken from "
                f"each process's working directory (here {spool_for(settings).directory}), and 'helpdesk webhooks "
                "replay' must run from the same one. Write an absolute path."]
    return []


def _smtp_warnings(settings) -> list[str]:
    """Mail that would cross a network unencrypted."""
    from callbacks.smtp import is_this_machine

    smtp = settings.smtp
    if smtp.host and smtp.security == "none" and not is_this_machine(smtp.host):
        return [f"warning: smtp.security is \"none\" and smtp.host ({smtp.host}) is not this machine: mail to "
                "callers and supervisors would cross the network unencrypted, and the app will not send "
                "SMTP_USERNAME and SMTP_PASSWORD that way. Use \"starttls\" or \"ssl\"."]
    return []


def _routing_warnings(settings) -> list[str]:
    """What a valid configuration may still get wrong: a phone's own voicemail counted as an answer."""
    routing = settings.routing
    phones = [target for target in routing.dial_targets if target.startswith("+")]
    if routing.mode == "dial" and phones and not routing.screen_calls:
        return [f"warning: routing.dial_targets has phone numbers ({', '.join(phones)}) and routing.screen_calls "
                "is false: if a phone's own voicemail picks up, the call counts as answered. Turn voicemail off on "
                "those phones, or set screen_calls = true (see the README)."]
    return []


def _missed_calls_warnings(settings) -> list[str]:
    """Calls made while the app could not be reached would go uncounted."""
    missing = ("calls made while the app could not be reached will not be found in Twilio's call log, and will be "
               "missing from every figure")
    if not settings.webhooks.twilio_numbers:
        return [f"warning: webhooks.twilio_numbers is empty: {missing}. Set it to the help desk's Twilio numbers "
                "(see the README)."]
    if not settings.webhooks.reconcile_after_minutes:
        return [f"warning: webhooks.reconcile_after_minutes is 0, so the scheduler never asks Twilio: {missing}, "
                "unless you run 'helpdesk calls missed'."]
    return []


@main.command("calendar")
@click.option("--from", "first", metavar="YYYY-MM-DD", help="The first UK day to show (today by default).")
@click.option("--days", type=click.IntRange(1, 400), default=14, show_default=True, help="How many days to show.")
@click.option("--owed-from", "owed_from", metavar="'YYYY-MM-DD HH:MM'",
              help="Also say when a callback owed from this UK time would be due, and why.")
def calendar_command(first: str | None, days: int, owed_from: str | None) -> None:
    """The opening hours in force day by day (bank holidays and closures taken off), from the
    configuration (HELPDESK_CONFIG, or config/helpdesk.toml): check them before going live."""
    from datetime import date, timedelta

    from callbacks.deadlines import callback_deadline, explain
    from helpdesk.clock import LONDON, SKIPPED, day_problem, iso_day, local, uk_time_problem, wall_time
    from helpdesk.config import clock_text
    from metrics.periods import uk_midnight

    try:
        settings = load_settings(None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    start = iso_day(first) if first else local(datetime.now(timezone.utc)).date()
    if start is None:
        raise click.BadParameter(f"{first!r} {day_problem(first)}", param_hint="--from")
    # The last day shown, and the day after it, must be dates Python can compute.
    if start + timedelta(days=days) > date(9998, 12, 31):
        raise click.BadParameter(f"{first!r} is out of range: use a date up to "
                                 f"{date(9998, 12, 31) - timedelta(days=days):%Y-%m-%d} for {days} days",
                                 param_hint="--from")
    owed = None
    if owed_from:
        naive = wall_time(owed_from)
        if naive is None or naive.year > 9997:  # room for its deadline
            raise click.BadParameter(f"{owed_from!r} is not a UK time: use 'YYYY-MM-DD HH:MM', from 1900 to 9997",
                                     param_hint="--owed-from") from None
        problem = uk_time_problem(naive)
        if problem == SKIPPED:
            raise click.BadParameter(f"{owed_from!r} {problem}", param_hint="--owed-from")
        owed = naive.replace(tzinfo=LONDON)
        if problem:  # the hour the clocks repeat: its first pass (BST), said so below
            click.echo(f"{naive:%H:%M} {problem}: this is the first {naive:%H:%M}, British Summer Time.")
    calendar = settings.calendar
    nation = settings.nation.replace('-', ' ').title().replace(' And ', ' and ')
    click.echo(f"{settings.source} (version {settings.version}); UK time; "
               + (f"bank holidays of {nation}." if settings.bank_holidays else f"open on {nation}'s bank holidays."))
    for day in (start + timedelta(days=n) for n in range(days)):
        midnight, following = uk_midnight(day), uk_midnight(day + timedelta(days=1))
        spans = [(local(a), local(b)) for a, b in calendar.open_intervals(midnight, following)]
        # A day open until midnight ends at its last instant (clock_text's 24:00), or at the next day.
        hours = ", ".join(f"{clock_text(a.time())}-" + ("24:00" if b.date() != day else clock_text(b.time()))
                          for a, b in spans)
        why = [f"bank holiday: {name}" for name in [calendar.holiday_name(day)] if name]
        why += [f"closure: {closure.reason or 'no reason given'} ({local(closure.start):%d %b %H:%M} to "
                f"{local(closure.end):%d %b %H:%M})" for closure in settings.closures
                if closure.start < following and closure.end > midnight]
        line = f"{day:%a %d %b %Y}  {hours or 'closed'}"
        click.echo(line + (f"  ({'; '.join(why)})" if why else ""))
    if owed is not None:
        deadline = callback_deadline(owed, clock=settings.callback.clock,
                                     within=timedelta(minutes=settings.callback.within_minutes),
                                     calendar=calendar, config_version=settings.version)
        click.echo(f"\nA callback owed from {owed:%a %d %b %Y %H:%M}: {explain(deadline.explanation)}")
    for warning in _routing_warnings(settings):
        click.echo(warning)


@main.group()
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


def build_app():
    """The app, or a clear message about what is missing."""
    from helpdesk.app import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def check_before_serving(as_workers=None):
    """The app, once the environment, the configuration and the database are fit to serve it.

    `helpdesk run` and gunicorn's master (config/gunicorn.conf.py) call this before any worker
    starts, so a mistake stops the server with one line naming it, rather than failing every
    request or every worker with a traceback. `as_workers` runs the spool's check as the
    workers' user (helpdesk.server.as_workers), when gunicorn switches to another for them.
    """
    missing = [name for name in ("SECRET_KEY", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL") if not os.environ.get(name)]
    if missing:
        raise click.ClickException(f"set {', '.join(missing)} in the environment first")
    try:
        settings = load_settings()  # the configuration's problems first, then the spool's, then the database's
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from helpdesk.voice.recovery import spool_problem

    if problem := (as_workers or (lambda check: check()))(lambda: spool_problem(settings)):
        raise click.ClickException(problem)
    from helpdesk.migrate import NotReady, Unreachable, check_migrated

    try:
        check_migrated(database_url())
    except Unreachable as exc:
        # Serve anyway: webhooks wait in the spool until the database answers, and Twilio
        # gets its TwiML. A schema that is missing or behind is refused: it will not fix itself.
        log.error("%s: starting anyway; webhooks are kept in the spool until it answers", exc)
    except NotReady as exc:
        raise click.ClickException(str(exc)) from None
    return build_app()


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--no-scheduler", is_flag=True,
              help="Do not run the scheduler in this server (run `helpdesk scheduler` as its own process).")
def run(host: str, port: int, workers: int, no_scheduler: bool) -> None:
    """Serve the app with gunicorn (the one-machine set-up), with the scheduler in gunicorn's master."""
    app = check_before_serving()
    from helpdesk.server import MetricsDirError, serve

    try:
        serve(f"{host}:{port}", workers=workers, scheduler=None if no_scheduler else in_process_scheduler(app))
    except MetricsDirError as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------- scheduler
# The scheduler's jobs (callbacks/scheduler.py: the sweep and supervisors' emails, email
# acknowledgements, the mailbox, the checks with Twilio): in-process under `helpdesk run`
# (started by gunicorn's master, see helpdesk/server.py), or its own process.


def in_process_scheduler(app):
    """A BackgroundScheduler for `run`; gunicorn's master starts it once it is ready."""
    from callbacks.scheduler import build_scheduler

    _quiet_apscheduler()
    return build_scheduler(app, background=True)


def _once_summary(job, outcome) -> str:
    from callbacks.scheduler import AcknowledgementJob, ReconcileJob, SweepJob
    from helpdesk.cli_calls import count_words, missed_line, reconcile_line

    if isinstance(job, SweepJob):
        return f"Swept: {count_words(outcome.recorded, 'new warning or breach notice')}, {outcome.emailed} emailed."
    if isinstance(job, AcknowledgementJob):
        return f"Email acknowledgements: {outcome.emailed} sent."
    result = outcome.result
    if isinstance(job, ReconcileJob):
        lines = [reconcile_line(what, report)
                 for what, report in zip(("Unfinished calls", "Placing callback attempts"), result)]
        if job.settings.webhooks.twilio_numbers:
            lines.append(missed_line(result[2]))
        return " ".join(lines)
    return f"Mailbox polled: {count_words(result.stored, 'new message')} ({result.fetched} read)."


def migrated_database_url(wait_if_unreachable: bool = False) -> str:
    """DATABASE_URL, once its database is known to be reachable and migrated to this version.

    With `wait_if_unreachable` (a long-running scheduler), a database server that does not
    answer yet is logged and the URL returned: every job tries again on its next run, as the
    scheduler in `helpdesk run` does. Anything else wrong stops the command.
    """
    from helpdesk.migrate import NotReady, Unreachable, check_migrated

    url = database_url()
    try:
        check_migrated(url)
    except Unreachable as exc:
        if not wait_if_unreachable:
            raise click.ClickException(str(exc)) from None
        log.error("%s: starting anyway; each job tries again on its next run", exc)
    except NotReady as exc:
        raise click.ClickException(str(exc)) from None
    return url


def _quiet_apscheduler() -> None:
    # APScheduler logs every run at INFO; ours logs what a run did. Keep its detail for --verbose.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)


@main.command("scheduler")
@click.option("--once", is_flag=True, help="Run every job once and exit (to check the set-up, or from cron).")
def scheduler_command(once: bool) -> None:
    """Run the scheduler in the foreground: callback warnings and breaches, email acknowledgements,
    (when [email.imap] has a host) the mailbox poll, and the check of unfinished calls with
    Twilio. Ctrl-C stops it.

    For deployments that serve the app with `helpdesk run --no-scheduler` or plain gunicorn.
    Needs DATABASE_URL and the configuration file; SMTP_USERNAME/SMTP_PASSWORD if the mail
    server asks, IMAP_USERNAME/IMAP_PASSWORD for the mailbox, TWILIO_ACCOUNT_SID and
    TWILIO_AUTH_TOKEN for the checks with Twilio (without them those checks do not run).
    """
    import signal

    from callbacks.scheduler import SweepJob, build_scheduler, scheduled_jobs

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


# --------------------------------------------------------------------------- email
# Inbound email (callbacks/email): IMAP polling by hand, and SendGrid posts for the demo.


@main.group("email")
def email_cli() -> None:
    """Inbound email enquiries: poll the IMAP mailbox, simulate SendGrid posts."""


@email_cli.command("poll")
@click.option("--once", is_flag=True, help="Poll once and exit (otherwise every [email.imap] poll_seconds).")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False),
              help="Trust this CA certificate for the IMAP server (a private or self-signed certificate); "
                   "default: email.imap.ca_file.")
def email_poll(once: bool, ca_file: str | None) -> None:
    """Read new messages from the [email.imap] mailbox into email enquiries.

    Needs DATABASE_URL, IMAP_USERNAME and IMAP_PASSWORD. The scheduler does this on its own;
    this command is for checking the set-up or running the poller by hand. Ctrl-C stops it.
    """
    import ssl
    import time

    from callbacks.email.imap import ImapError, poll_mailbox
    from helpdesk.clock import now_utc
    from helpdesk.db import Database

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        context = ssl.create_default_context(cafile=ca_file) if ca_file else settings.email.imap.ssl_context()
    except ssl.SSLError:
        raise click.BadParameter(f"{ca_file} holds no certificate in PEM form", param_hint="--ca-file") from None
    db = Database(migrated_database_url())
    try:
        while True:
            try:
                result = poll_mailbox(db, settings, username=os.environ.get("IMAP_USERNAME", ""),
                                      password=os.environ.get("IMAP_PASSWORD", ""), now=now_utc(), ssl_context=context)
            except ImapError as exc:
                raise click.ClickException(str(exc)) from None
            passed_over = (f" {result.passed_over} passed over, received before "
                           f"{settings.email.imap.take_in_from:%-d %B %Y}." if result.passed_over else "")
            click.echo(f"{settings.email.imap.mailbox}: {result.fetched} read, {result.stored} new, "
                       f"{result.duplicates} already stored (last UID {result.last_uid}).{passed_over}")
            if once:
                return
            time.sleep(settings.email.imap.poll_seconds)
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        db.dispose()


@email_cli.command("simulate")
@click.option("--url", required=True, help="The help desk's base URL, or its /email/inbound URL.")
@click.option("--count", default=9, show_default=True, type=click.IntRange(1, 1000), help="How many posts.")
def email_simulate(url: str, count: int) -> None:
    """Post realistic SendGrid Inbound Parse requests: enquiries, replies, an auto-reply, a bounce, a redelivery.

    Authenticates with SENDGRID_INBOUND_SECRET from the environment, as SendGrid would.
    """
    from urllib.parse import urlsplit

    from callbacks.email.simulate import simulate
    from helpdesk.clock import now_utc

    secret = os.environ.get("SENDGRID_INBOUND_SECRET")
    if not secret:
        raise click.ClickException("set SENDGRID_INBOUND_SECRET in the environment first (the server's secret)")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise click.BadParameter("give an http:// or https:// URL", param_hint="--url")
    try:
        sent = simulate(url, secret, count, now_utc(), report=click.echo)
    except OSError as exc:
        raise click.ClickException(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    failed = [s for s in sent if not 200 <= s.status < 300]
    if failed:
        raise click.ClickException(f"{len(failed)} of {count} posts were not accepted "
                                   f"(first: HTTP {failed[0].status} {failed[0].answer.get('error', '')})")


@main.command("simulate-agent")
@click.option("--url", "base_url", required=True, help="The help desk's base URL, for example http://127.0.0.1:5000.")
@click.option("--username", required=True, help="An agent's username (the password comes from HELPDESK_PASSWORD).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Stop after this many rounds (default: until stopped).")
@click.option("--interval", type=click.FloatRange(min=0), default=5.0, show_default=True, help="Seconds between rounds.")
@click.option("--late-share", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of callbacks left alone until overdue, so they breach.")
@click.option("--per-round", type=click.IntRange(min=1), default=5, show_default=True,
              help="Callbacks worked each round at most.")
@click.option("--seed", type=int, default=None, help="Repeat a run's choices exactly.")
def simulate_agent(base_url: str, username: str, rounds: int | None, interval: float, late_share: float,
                   per_round: int, seed: int | None) -> None:
    """Play an agent at the callback queue page: claim, log attempts, close, answer emails."""
    import random
    import signal
    import threading
    from urllib.parse import urlsplit

    from helpdesk.agent_simulator import AgentSimulator, Behaviour, RequestsTransport, run

    password = os.environ.get("HELPDESK_PASSWORD", "")
    if not password:
        raise click.UsageError("HELPDESK_PASSWORD is not set: export the agent's password first.")
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise click.BadParameter("give an http:// or https:// base URL", param_hint="--url")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    transport = RequestsTransport(base_url)
    agent = AgentSimulator(transport, username, password, Behaviour(late_share=late_share, per_round=per_round),
                           rng=random.Random(seed), report=click.echo)
    try:
        played = run(agent, interval=interval, rounds=rounds, stopping=stop.is_set, sleep=stop.wait)
    except KeyboardInterrupt:
        click.echo("Stopped.")
        return
    finally:
        transport.close()
    click.echo(f"{'Stopped' if stop.is_set() else 'Done'}: {played.actions} actions.")
    if played.played and played.failed == played.played:
        raise click.ClickException(f"every round failed ({played.failed}): see the reasons above")


def _register() -> None:
    from helpdesk.cli_calls import calls_cli
    from helpdesk.restore import after_restore_command
    from helpdesk.simulator import simulate_command
    from helpdesk.subject_access import subject_access_command
    from helpdesk.users import users_cli
    from helpdesk.voice.numbers import twilio_numbers_command
    from metrics.evidence.cli import evidence_cli

    main.add_command(calls_cli)
    main.add_command(simulate_command)
    main.add_command(subject_access_command)
    db.add_command(after_restore_command)
    main.add_command(users_cli)
    main.add_command(evidence_cli)
    main.add_command(twilio_numbers_command)


_register()

if __name__ == "__main__":
    sys.exit(main())
