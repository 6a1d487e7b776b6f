"""The `helpdesk` command."""
from __future__ import annotations

import logging
import os
import sys

import click

from helpdesk.config import ConfigError, load_settings
from helpdesk.dbutil import first_line
from helpdesk.settings import Secrets

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
    if problem := Secrets.database_url_problem():
        raise click.ClickException(problem)
    return Secrets.from_environ().database_url


@main.group()
def db() -> None:
    """The database: migrate its schema, and record a restore from a backup."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Schema revision to upgrade to.")
def db_upgrade(revision: str) -> None:
    """Create or migrate the database named by DATABASE_URL."""
    from helpdesk.migrate import NotReady, check_url, current, database_words, is_known, newer_schema, upgrade

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
    click.echo(f"Database: {database_words(url)}")


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
    request or every worker with a traceback. `as_workers` runs the spool's and the SQLite
    file's checks as the workers' user (helpdesk.server.as_workers), when gunicorn switches to
    another for them.
    """
    missing = [name for name in ("SECRET_KEY", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL") if not os.environ.get(name)]
    if missing:
        raise click.ClickException(f"set {', '.join(missing)} in the environment first")
    try:
        settings = load_settings()  # the configuration's problems first, then the spool's, then the database's
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from helpdesk.voice.recovery import spool_problem

    as_workers = as_workers or (lambda check: check())
    if problem := as_workers(lambda: spool_problem(settings)):
        raise click.ClickException(problem)
    from helpdesk.migrate import NotReady, Unreachable, check_migrated, sqlite_file_problem

    url = database_url()
    if problem := as_workers(lambda: sqlite_file_problem(url)):
        raise click.ClickException(problem)
    try:
        check_migrated(url)
    except Unreachable as exc:
        # Serve anyway: webhooks wait in the spool until the database answers, and Twilio
        # gets its TwiML. A schema that is missing or behind is refused: it will not fix itself.
        log.error("%s: starting anyway; webhooks are kept in the spool until it answers", exc)
    except NotReady as exc:
        raise click.ClickException(str(exc)) from None
    from helpdesk.cli_setup import environment_warnings

    for warning in environment_warnings(settings, imap=False):  # the scheduler reads the mailbox
        log.warning(warning.removeprefix("warning: "))
    return build_app()


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


@main.command("simulate-agent")
@click.option("--url", "base_url", required=True, help="The help desk's base URL, for example http://127.0.0.1:5000.")
@click.option("--username", required=True, help="An agent's username (the password comes from HELPDESK_PASSWORD).")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Stop after this many rounds (default: until stopped).")
@click.option("--interval", type=click.FloatRange(min=0), default=5.0, show_default=True, help="Seconds between rounds.")
@click.option("--late-share", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of callbacks left alone until overdue, so they breach.")
@click.option("--per-round", type=click.IntRange(min=1), default=5, show_default=True,
              help="Callbacks worked each round at most.")
@click.option("--call-back-now-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of attempts made with \"Call back now\" rather than logged by hand (the app must be able "
                   "to place calls: Twilio, or simulate --call-log-port).")
@click.option("--seed", type=int, default=None, help="Repeat a run's choices exactly.")
def simulate_agent(base_url: str, username: str, rounds: int | None, interval: float, late_share: float,
                   per_round: int, call_back_now_share: float, seed: int | None) -> None:
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
    behaviour = Behaviour(late_share=late_share, per_round=per_round, call_back_now_share=call_back_now_share)
    agent = AgentSimulator(transport, username, password, behaviour, rng=random.Random(seed), report=click.echo)
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
    from helpdesk.cli_audit import audit_log_command
    from helpdesk.cli_email import email_cli
    from helpdesk.cli_serve import run, scheduler_command, webhooks
    from helpdesk.cli_setup import calendar_command, check_config, files_command, status_command
    from helpdesk.cli_calls import calls_cli
    from helpdesk.restore import after_restore_command
    from helpdesk.cli_retention import anonymise_command
    from helpdesk.simulator import simulate_command
    from helpdesk.subject_access import subject_access_command
    from helpdesk.cli_users import users_cli
    from helpdesk.voice.numbers import twilio_numbers_command
    from metrics.evidence.cli import evidence_cli

    for command in (files_command, check_config, calendar_command, status_command, webhooks, run, scheduler_command,
                    email_cli):
        main.add_command(command)
    main.add_command(calls_cli)
    main.add_command(simulate_command)
    main.add_command(subject_access_command)
    main.add_command(anonymise_command)
    db.add_command(after_restore_command)
    main.add_command(users_cli)
    main.add_command(evidence_cli)
    main.add_command(audit_log_command)
    main.add_command(twilio_numbers_command)


_register()

if __name__ == "__main__":
    sys.exit(main())

