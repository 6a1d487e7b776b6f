"""`helpdesk calls`: inbound calls the help desk heard of only in part, or not at all, and the
words the scheduler's `--once` shares for what a look at Twilio found."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import click

from helpdesk.config import ConfigError, load_settings


class UkDay(click.ParamType):
    """A UK calendar day given as YYYY-MM-DD (helpdesk.clock.iso_day), or a message saying why not."""

    name = "YYYY-MM-DD"

    def convert(self, value, param, ctx):
        from datetime import date

        from helpdesk.clock import day_problem, iso_day

        if isinstance(value, date):
            return value
        day = iso_day(value)
        if day is None:
            self.fail(f"{value!r} {day_problem(value)}", param, ctx)
        return day


UK_DAY = UkDay()


def settings_with_numbers(why: str):
    """The configuration, which must name the help desk's Twilio numbers ([webhooks] twilio_numbers)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.webhooks.twilio_numbers:
        raise click.ClickException(f"{settings.source}: set [webhooks] twilio_numbers to the help desk's Twilio "
                                   f"numbers, {why}")
    return settings


@click.group("calls")
def calls_cli() -> None:
    """Inbound calls the help desk heard of only in part, or not at all."""


@calls_cli.command("unfinished")
@click.option("--since", type=UK_DAY, help="Only calls that arrived on or after this UK day, YYYY-MM-DD.")
@click.option("--ask-twilio", is_flag=True,
              help="First ask Twilio's REST API how each ended, however old, once older than [webhooks] "
                   "reconcile_after_minutes (calls that waited in a queue excepted). Needs TWILIO_ACCOUNT_SID "
                   "and TWILIO_AUTH_TOKEN.")
def calls_unfinished(since, ask_twilio: bool) -> None:
    """List the calls not answered whose ending never came, oldest first.

    These are what `helpdesk_calls_unfinished` counts and the alert HelpdeskCallsUnfinished is
    about. The scheduler asks Twilio about such calls for two days after they arrive; this
    command shows the rest, and with --ask-twilio asks about them too. Uses DATABASE_URL and
    the configuration file.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from helpdesk.cli import migrated_database_url
    from helpdesk.clock import LONDON, now_utc
    from helpdesk.db import Database
    from helpdesk.dbutil import database_error
    from helpdesk.pages.format import outcome_label
    from helpdesk.voice.lookup import lookup_from_environment
    from helpdesk.voice.reconcile import LOOK_BACK, list_unfinished, reconcile_calls
    from metrics.periods import uk_midnight

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    lookup = lookup_from_environment() if ask_twilio else None
    if ask_twilio and lookup is None:
        raise click.ClickException("set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment to ask Twilio")
    url = migrated_database_url()
    first = uk_midnight(since) if since else None
    since_text = f" since {since:%d %b %Y}" if since else ""
    now = now_utc()
    database = Database(url)
    try:
        if lookup is not None:
            ever = datetime(1970, 1, 1, tzinfo=timezone.utc)  # no --since: every unfinished call
            report = reconcile_calls(database, settings, lookup, now, since=first or ever, limit=None)
            click.echo(reconcile_line("Unfinished calls", report))
        calls = list_unfinished(database, first)
    except SQLAlchemyError as exc:
        raise click.ClickException(database_error(exc)) from None
    finally:
        database.dispose()
    if not calls:
        click.echo(f"No calls with no ending{since_text}.")
        return
    click.echo(f"{len(calls)} call{'' if len(calls) == 1 else 's'} with no ending{since_text}:")
    recent = timedelta(minutes=settings.webhooks.reconcile_after_minutes)
    for call in calls:
        if call.queued:
            why = "waited in a queue: look it up in Twilio's call logs"
        elif recent and call.arrived_at >= now - recent:
            why = (f"arrived under {settings.webhooks.reconcile_after_minutes} minutes ago: not asked yet, as its "
                   "last webhooks may still come")
        elif call.arrived_at < now - LOOK_BACK:
            why = "over two days old: the scheduler no longer asks Twilio (use --ask-twilio)"
        elif not settings.webhooks.reconcile_after_minutes:
            why = "the check with Twilio is off ([webhooks] reconcile_after_minutes = 0)"
        else:
            why = "the scheduler asks Twilio about it every 5 minutes, when it has Twilio's credentials"
        if call.asked_at is not None:
            why += f"; asked {call.asked_at.astimezone(LONDON):%d %b %H:%M}: {ANSWERS.get(call.answer, call.answer)}"
        click.echo(f"  {call.call_sid}  {call.arrived_at.astimezone(LONDON):%a %d %b %Y %H:%M}  "
                   f"{outcome_label(call.outcome):<12}  {why}")


@calls_cli.command("missed")
@click.option("--since", type=UK_DAY, required=True, help="The first UK day to look at, YYYY-MM-DD.")
@click.option("--until", type=UK_DAY, help="The last UK day to look at, YYYY-MM-DD (default: today).")
def calls_missed(since, until) -> None:
    """Find calls that never reached the app in Twilio's call log, and store them.

    Lists the calls to [webhooks] twilio_numbers that started in those days, and stores each one
    the app never heard of (it was down, or could not be reached), from what the log says. Each
    counts as failed, a breach in hours, unless an agent answered it, and its caller is owed a
    callback. The scheduler does this for the last two days; use this for an older outage.
    Needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, DATABASE_URL and the configuration file.
    """
    from datetime import timedelta

    from sqlalchemy.exc import SQLAlchemyError

    from helpdesk.cli import migrated_database_url
    from helpdesk.clock import LONDON, now_utc
    from helpdesk.db import Database
    from helpdesk.dbutil import database_error
    from helpdesk.voice.lookup import lookup_from_environment
    from helpdesk.voice.missed import SETTLE, MissedReport, find_missed
    from metrics.periods import uk_midnight

    settings = settings_with_numbers("so their calls can be looked for")
    lookup = lookup_from_environment()
    if lookup is None:
        raise click.ClickException("set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the environment to ask Twilio")
    now = now_utc()
    today = now.astimezone(LONDON).date()
    if since > today:
        raise click.ClickException(f"--since {since:%Y-%m-%d} is in the future")
    last = min(until, today) if until else today  # no call has started after today
    if last < since:
        raise click.ClickException("--until is before --since")
    first = uk_midnight(since)
    end = uk_midnight(last + timedelta(days=1))
    end = min(end - timedelta(microseconds=1), now - SETTLE)  # the last few minutes' webhooks may be on their way
    if end < first:
        raise click.ClickException(f"nothing to look for yet: the calls of the last {SETTLE.seconds // 60} minutes "
                                   "are left to their webhooks")
    database = Database(migrated_database_url())
    report = MissedReport()
    try:
        find_missed(database, settings, lookup, since=first, until=end, now=now, report=report)
    except SQLAlchemyError as exc:
        if report.found:  # stored, and they stay stored: say which
            click.echo(f"Before the database failed, {count_words(len(report.found), 'call')} that never reached the app "
                       "had been stored from the log:")
            for line in _found_lines(report):
                click.echo(line)
        raise click.ClickException(f"{database_error(exc)}. Run it again once the database is back: what was "
                                   "stored stays stored.") from None
    finally:
        database.dispose()
    for line in _missed_report(report, settings.webhooks.twilio_numbers, first, end):
        click.echo(line)
    if report.refused:
        raise click.ClickException(f"{report.stopped}: Twilio did not take the credentials; check TWILIO_ACCOUNT_SID "
                                   "and TWILIO_AUTH_TOKEN")
    if report.stopped:
        raise click.ClickException(f"stopped early: {report.stopped}. Run it again: what was stored stays stored.")
    if not report.complete or report.failed or report.live:
        raise click.ClickException("some calls are left for a later look (above): run this again later")


def _when(moment: datetime) -> str:
    from helpdesk.clock import LONDON

    return f"{moment.astimezone(LONDON):%a %d %b %Y %H:%M %Z}"


def _found_lines(report) -> list[str]:
    """The calls a `calls missed` run stored, a line each: call SID and when it started."""
    return [f"  {call.sid}  {_when(call.start_time)}" for call in report.found]


def _missed_report(report, numbers, first: datetime, end: datetime) -> list[str]:
    """What `helpdesk calls missed` found, line by line."""
    if report.stopped and not report.listed:
        return []
    to = ", ".join(numbers) if len(numbers) <= 3 else f"the desk's {len(numbers)} numbers"
    lines = [f"Looked in Twilio's call log from {_when(first)} to {_when(end)}: {count_words(report.listed, 'call')} "
             f"to {to}."]
    found = len(report.found)
    if found:
        lines.append(f"{found} never reached the app, and {'is' if found == 1 else 'are'} now stored from the log:")
        lines += _found_lines(report)
    left = missed_left(report)
    lines += [part[0].upper() + part[1:] + "." for part in left]
    if report.listed and not (found or left or report.stopped):
        known = [f"{report.reached} had reached the app"] if report.reached else []
        if report.stored_before:
            known.append(f"{report.stored_before} {'was' if report.stored_before == 1 else 'were'} stored from the "
                         "log before")
        lines.append("None of them is new: " + ", ".join(known) + ".")
    return lines


# What Twilio's REST API last said about a call with no ending (helpdesk.voice.reconcile.note_answer).
ANSWERS = {
    "unknown": "Twilio did not know it (another account's call, or deleted)",
    "live": "still going on at Twilio",
    "failed": "Twilio's answer could not be used (see the scheduler's log)",
    "ended": "ended at Twilio, but its record could not be finished (see the scheduler's log)",
}


def reconcile_line(what: str, report) -> str:
    return (f"{what}: asked Twilio about {report.checked}; {report.finished} ended, {report.live} still live, "
            f"{report.unknown} unknown to Twilio" + (f"; stopped early: {report.stopped}." if report.stopped else "."))


def missed_line(report) -> str:
    """What the scheduler's look in Twilio's call log found, in one line."""
    if report.stopped and not report.listed:
        return f"Twilio's call log: stopped early: {report.stopped}."
    found = len(report.found)
    parts = [f"{count_words(report.listed, 'call')} to the help desk"]
    if found:
        parts.append(f"{found} never reached the app and {'is' if found == 1 else 'are'} now stored")
    parts += missed_left(report)
    if report.stopped:
        parts.append(f"stopped early: {report.stopped}")
    elif len(parts) == 1:
        parts[0] += ", none new"
    return "Twilio's call log: " + "; ".join(parts) + "."


def count_words(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def missed_left(report) -> list[str]:
    """What a look in Twilio's call log left for later, in short parts."""
    parts = []
    if report.live:
        parts.append(f"{report.live} that never reached the app {'is' if report.live == 1 else 'are'} still going on")
    if report.failed:
        parts.append(f"{count_words(report.failed, 'call')} left for a later look, as Twilio's answer about "
                     f"{'its' if report.failed == 1 else 'their'} agent legs could not be used")
    if report.unlisted:
        parts.append(f"the calls to {', '.join(report.unlisted)} could not be listed")
    if report.unreadable:
        parts.append(f"{count_words(report.unreadable, 'call')} with no start time left alone")
    if report.lost_in_restore:
        parts.append(f"{count_words(report.lost_in_restore, 'call')} in the time a restore of the database lost left "
                     "alone (see \"After a restore\" in the README)")
    return parts
