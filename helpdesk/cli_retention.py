"""`helpdesk anonymise`: remove callers' and senders' personal data, from every contact begun
before a UK day (the retention period), or from one person's contacts (`--phone`, `--email`)."""
from __future__ import annotations

from datetime import date, datetime

import click

from helpdesk.clock import day_problem, iso_day
from helpdesk.pages.format import quoted
from helpdesk.retention import Removal, Scope, empty_write_ahead_log, record_removal, remove_personal_data
from helpdesk.subject_access import SubjectAccessError, described, email_to_search, find_person, phone_to_search
from metrics.periods import uk_date, uk_midnight


@click.command("anonymise")
@click.option("--before", "before_day", metavar="DATE",
              help="Remove personal data from every contact that began before this UK day, YYYY-MM-DD.")
@click.option("--phone", metavar="NUMBER", help="Remove one caller's, by their number (07700 900123).")
@click.option("--email", metavar="ADDRESS", help="Remove one sender's, by their email address.")
@click.option("--user", "username", required=True,
              help="Who is removing it: an active administrator (their password is asked for).")
@click.option("--apply", is_flag=True, help="Remove it. Without --apply, only say what would be removed.")
def anonymise_command(before_day: str | None, phone: str | None, email: str | None, username: str,
                      apply: bool) -> None:
    """Remove callers' and senders' personal data: from every contact that began before a UK
    day (--before, for the retention period your contract owner sets), or from one person's
    (--phone or --email, when they ask for it to be erased).

    Removes callers' numbers, senders' addresses, emails as received, agents' notes and what
    Twilio's webhooks said of people; keeps what the figures are made of, so pages, /metrics
    and evidence packs give the same figures. Anything still being worked is left. Without
    --apply it only counts. The password comes from HELPDESK_PASSWORD (for scripts), or is
    asked for. Each removal is in the audit log. Uses DATABASE_URL.
    """
    from helpdesk.cli import migrated_database_url
    from helpdesk.cli_users import administrator_for
    from helpdesk.clock import now_utc
    from helpdesk.db import Database
    from helpdesk.dbutil import command_errors

    if sum(given is not None for given in (before_day, phone, email)) != 1:
        raise click.UsageError("give one of --before, --phone and --email")
    now = now_utc()
    try:
        number = phone_to_search(phone) if phone is not None else None
        address = email_to_search(email) if email is not None else None
    except SubjectAccessError as exc:
        raise click.UsageError(str(exc)) from None
    day = _day_until_today(before_day, now) if before_day is not None else None
    database = Database(migrated_database_url())
    try:
        with command_errors("removal", None), database.session() as session:
            user = administrator_for(session, username, "remove personal data")
            if day is not None:
                scope, taken = Scope.before(uk_midnight(day)), {"before": day.isoformat()}
                whose = f"Contacts that began before {day:%-d %B %Y} (UK time)"
            else:
                scope = Scope.of_person(find_person(session, phone=number, email=address))
                taken = {"person": described(phone=number, email=address)}
                whose = f"The contacts of the {taken['person']}"
            removal = Removal()
            try:
                remove_personal_data(session, scope, apply=apply, now=now, into=removal)
            except BaseException:
                if apply and removal.removed_any():  # what was done is done: it goes in the audit log
                    removal.finished = False
                    _record_stopped(session, taken, removal, user, now)
                raise
            emptied = True
            if apply:
                record_removal(session, taken=taken, removal=removal, user_id=user.id, username=user.username,
                               now=now)
                emptied = empty_write_ahead_log(session)
    finally:
        database.dispose()
    _report(whose, removal, apply)
    if not emptied:
        click.echo("SQLite's write-ahead log could not be emptied now, as the app was reading: it is written over "
                   "as the app runs, or run this again when the app is stopped.")


def _record_stopped(session, taken: dict[str, str], removal: Removal, user, now: datetime) -> None:
    session.rollback()
    try:
        record_removal(session, taken={**taken, "stopped": "before the end"}, removal=removal, user_id=user.id,
                       username=user.username, now=now)
    except Exception:  # noqa: BLE001 - the database error that stopped it is the one to report
        return
    click.echo(f"Stopped: personal data was removed from about {removal.calls:,} {_counted(removal.calls, 'call')} "
               f"and {removal.emails:,} {_counted(removal.emails, 'email')} before it stopped (in the audit log). "
               "Run it again to go on.", err=True)


def _report(whose: str, removal: Removal, apply: bool) -> None:
    click.echo(f"{whose}: {'removed' if apply else 'would remove'} personal data from")
    for count, what in ((removal.calls, "call"), (removal.events, "webhook as received"),
                        (removal.callbacks, "callback"), (removal.attempts, "callback attempt"),
                        (removal.emails, "email"), (removal.acknowledgements, "acknowledgement")):
        click.echo(f"  {count:,} {_counted(count, what)}")
    left = ((removal.calls_left, "call", "not finished, or {its} callback is not closed"),
            (removal.callbacks_left, "callback", "not closed"),
            (removal.emails_left, "email", "{its} enquiry is open or waiting for a callback, or {its} "
                                           "acknowledgement not yet sent"))
    for count, what, why in left:
        if count:
            why = why.format(its="its" if count == 1 else "their")
            click.echo(f"Left: {count:,} {_counted(count, what)} still being worked ({why}).")
    if apply:
        click.echo("This removal is in the audit log. Backups, evidence packs already exported, Twilio and the "
                   "mailbox keep their own copies: see the README.")
    else:
        click.echo("Nothing was changed: add --apply to remove it.")


def _day_until_today(text: str, now: datetime) -> date:
    day = iso_day(text)
    if day is None:
        raise click.BadParameter(f"{quoted(text)} {day_problem(text)}", param_hint="--before")
    if day > uk_date(now):
        raise click.BadParameter(f"{day.isoformat()} is after today: give today's date or an earlier one",
                                 param_hint="--before")
    return day


def _counted(count: int, what: str) -> str:
    if count == 1:
        return what
    return "webhooks as received" if what == "webhook as received" else f"{what}s"
