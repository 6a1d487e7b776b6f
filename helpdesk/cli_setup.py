"""`helpdesk files`, `check-config` and `calendar`: setting the help desk up, and checking it
before it goes live."""
from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

import click

from helpdesk.clock import local
from helpdesk.config import ConfigError, clock_text, load_settings
from helpdesk.settings import SipLogin


@click.command("files")
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


@click.command("check-config")
@click.argument("path", required=False)
def check_config(path: str | None) -> None:
    """Validate the configuration file (HELPDESK_CONFIG, or config/helpdesk.toml)."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{settings.source}: valid (version {settings.version}).")
    for warning in (_routing_warnings(settings) + _missed_calls_warnings(settings) + _smtp_warnings(settings)
                    + _spool_warnings(settings) + environment_warnings(settings) + _scheduler_warnings(settings)):
        click.echo(warning)
    for warning in _sip_login_warnings():
        click.echo(warning)


def _sip_login_warnings(environ=None) -> list[str]:
    """A SIP login the app would stop at (it says so when it starts), or one it would hand Twilio
    in TwiML over plain HTTP, across the internet."""
    from urllib.parse import urlsplit

    from callbacks.smtp import is_this_machine

    env = os.environ if environ is None else environ
    if problem := SipLogin.problem(env):
        return [f"warning: the app will not start here: {problem}."]
    base = urlsplit((env.get("PUBLIC_BASE_URL") or "").strip())
    if SipLogin.from_environ(env) and base.scheme == "http" and not is_this_machine(base.hostname or ""):
        return [f"warning: SIP_PASSWORD is set and PUBLIC_BASE_URL is http://{base.netloc}: the ring group's TwiML "
                "gives it to Twilio unencrypted. Serve the app over HTTPS (see \"Running it\")."]
    return []


def environment_warnings(settings, environ=None, imap: bool = True) -> list[str]:
    """What the environment this command runs in would get wrong with the file: settings the app
    takes from it that are set but unusable, found otherwise only when an agent presses "Call
    back now", or (`imap`, the scheduler's) in the scheduler's log."""
    from callbacks.telephony import UnconfiguredTelephony, telephony_from_app_config

    env = os.environ if environ is None else environ
    warnings = []
    twilio = ("TWILIO_ACCOUNT_SID", "TWILIO_FROM_NUMBER")
    if any(env.get(key) for key in twilio):  # meant to be set up: say what is wrong with it
        telephony = telephony_from_app_config({key: env.get(key) for key in (*twilio, "TWILIO_AUTH_TOKEN",
                                                                             "PUBLIC_BASE_URL")}, env)
        if isinstance(telephony, UnconfiguredTelephony):
            warnings.append(f"warning: \"Call back now\" will not work here: {telephony.message}")
    if imap and settings.email.imap.host and not (env.get("IMAP_USERNAME") and env.get("IMAP_PASSWORD")):
        warnings.append(f"warning: email.imap.host is set ({settings.email.imap.host}) but IMAP_USERNAME and "
                        "IMAP_PASSWORD are not both set here: the scheduler cannot read the mailbox.")
    return warnings


def _scheduler_warnings(settings) -> list[str]:
    """A lease that lapses between runs: schedulers take turns, and the stopped-scheduler alert fires."""
    scheduler = settings.scheduler
    if scheduler.lease_seconds <= scheduler.sweep_seconds:
        return [f"warning: scheduler.lease_seconds ({scheduler.lease_seconds}) is not longer than "
                f"scheduler.sweep_seconds ({scheduler.sweep_seconds}): the lease lapses between runs, so schedulers "
                "take turns and HelpdeskSchedulerStopped fires. Make the lease at least twice the sweep."]
    return []


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
    """Mail that would cross a network unencrypted, or that cannot be sent at all."""
    from callbacks.smtp import from_address, is_this_machine

    smtp, warnings = settings.smtp, []
    if smtp.host and smtp.security == "none" and not is_this_machine(smtp.host):
        warnings.append(f"warning: smtp.security is \"none\" and smtp.host ({smtp.host}) is not this machine: mail "
                        "to customers and supervisors would cross the network unencrypted, and the app will not send "
                        "SMTP_USERNAME and SMTP_PASSWORD that way. Use \"starttls\" or \"ssl\".")
    for what, wanted in (("supervisors.emails", settings.supervisors), ("email.addresses", settings.email.addresses)):
        mail = "warnings and breaches" if what == "supervisors.emails" else "acknowledgements"
        if wanted and not smtp.host:
            warnings.append(f"warning: {what} is set but smtp.host is not: {mail} will not be emailed.")
        elif wanted and not from_address(settings):
            warnings.append(f"warning: {what} is set but smtp.from_address is not, nor email.addresses: {mail} "
                            "will not be emailed. Set smtp.from_address.")
    return warnings


def _routing_warnings(settings) -> list[str]:
    """What a valid configuration may still get wrong: a phone's own voicemail counted as an answer
    (a number's, or a SIP address's on the provider's phone system; a Twilio Client has none)."""
    routing, warnings = settings.routing, []
    phones = [target for target in routing.dial_targets if target.startswith(("+", "sip:"))]
    if routing.mode == "dial" and phones and not routing.screen_calls:
        warnings.append(f"warning: routing.dial_targets has phones ({', '.join(phones)}) and routing.screen_calls is "
                        "false: if a phone's own voicemail, or its phone system's, picks up, the call counts as "
                        "answered. Turn voicemail off on those phones, or set screen_calls = true (see the README).")
    # Queue mode's ways for agents to take the next caller, which a ring group never uses.
    for key, unused in (("agents_numbers", "the numbers are not used"),
                        ("agents_apps", "the TwiML Apps' Voice URLs are not used")):
        if routing.mode == "dial" and getattr(routing, key):
            warnings.append(f"warning: routing.{key} is set but routing.mode is \"dial\": agents take no calls "
                            f"from a queue, so {unused}.")
    if routing.mode == "queue" and routing.agents_numbers and not routing.agents_pin:
        warnings.append("warning: routing.agents_numbers is set and routing.agents_pin is false: a call to the agents' "
                        "line is put through to a caller on its caller ID alone, which can be faked. Once each agent "
                        "has set their PIN, set agents_pin = true (see the README).")
    return warnings


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


def _span_words(day: date, start: datetime, end: datetime, *, zones: bool) -> str:
    """An open span of a UK day as "08:00-17:00". On the days the clocks change (`zones`) each
    time also says BST or GMT, and a span's end is read on the clock in force just before it:
    an hour open to 02:00 BST as the clocks go back ends at 02:00 BST, not at 01:00 GMT."""
    begins, last = local(start), local(end - timedelta(microseconds=1))
    ends = end + last.utcoffset()  # naive: the wall clock's reading at the end
    # A day open until midnight ends at its last instant (clock_text's 24:00), or at the next day.
    end_words = "24:00" if ends.date() != day else clock_text(ends.time())
    if zones:
        return f"{begins:%H:%M} {begins.tzname()}-{end_words} {last.tzname()}"
    return f"{clock_text(begins.time())}-{end_words}"


@click.command("calendar")
@click.option("--from", "first", metavar="YYYY-MM-DD", help="The first UK day to show (today by default).")
@click.option("--days", type=click.IntRange(1, 400), default=14, show_default=True, help="How many days to show.")
@click.option("--owed-from", "owed_from", metavar="'YYYY-MM-DD HH:MM'",
              help="Also say when a callback owed from this UK time would be due, and why.")
def calendar_command(first: str | None, days: int, owed_from: str | None) -> None:
    """The opening hours in force day by day (bank holidays and closures taken off), from the
    configuration (HELPDESK_CONFIG, or config/helpdesk.toml): check them before going live."""
    from callbacks.deadlines import callback_deadline, explain
    from helpdesk.clock import LONDON, SKIPPED, day_problem, iso_day, uk_time_problem, wall_time
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
        hours = ", ".join(_span_words(day, a, b, zones=local(midnight).utcoffset() != local(following).utcoffset())
                          for a, b in calendar.open_intervals(midnight, following))
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


@click.command("status")
def status_command() -> None:
    """Say whether each part of the help desk is working, as the System page does.

    Read from the database and this environment (run it with the app's environment). Exits 1 if
    any part needs attention, so a monitoring script can run it.
    """
    from callbacks.telephony import telephony_from_app_config
    from helpdesk.cli import migrated_database_url
    from helpdesk.clock import now_utc
    from helpdesk.db import Database
    from helpdesk.system_status import ATTENTION, OFF, OK, checks, read_facts, setup_of

    try:
        settings = load_settings(None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    database = Database(migrated_database_url())
    try:
        with database.session() as session:
            facts = read_facts(session, settings, now_utc())
    finally:
        database.dispose()
    config = {key: os.environ.get(key) for key in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL",
                                                    "SENDGRID_INBOUND_SECRET")}
    config["SIP_LOGIN"] = SipLogin.from_environ()
    found = checks(facts, setup_of(settings, config, telephony_from_app_config(config)), settings)
    width = max(len(check.part) for check in found)
    for check in found:
        shown = {ATTENTION: "ATTENTION", OFF: "NOT SET UP"}.get(check.state, "WORKING")
        todo = " ".join(filter(None, [check.todo, f'(README: "{check.readme}")' if check.state != OK and
                                      check.readme else ""]))
        click.echo(f"{shown:<10}  {check.part:<{width}}  {check.said}" + (f" {todo}" if todo else ""))
    attention = sum(check.state == ATTENTION for check in found)
    if attention:
        click.echo(f"{attention} part{' needs' if attention == 1 else 's need'} attention.", err=True)
        raise SystemExit(1)
    click.echo("Every part that is set up is working.")
