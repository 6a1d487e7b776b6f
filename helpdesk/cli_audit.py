"""`helpdesk audit-log`: the Audit log page on the server: who did what, and when, in words, or
its CSV file."""
from __future__ import annotations

import csv
import os
import sys

import click

from helpdesk.audit_log import CSV_COLUMNS, KINDS, all_entries, csv_row, default_first, entries_page
from helpdesk.cli_calls import UK_DAY
from helpdesk.cli_users import cli_session
from helpdesk.clock import LONDON, local, now_utc
from helpdesk.users import existing_user


@click.command("audit-log")
@click.option("--from", "first", type=UK_DAY, help="The first UK day (default: six days before --to).")
@click.option("--to", "last", type=UK_DAY, help="The last UK day (default: today).")
@click.option("--what", "kind", type=click.Choice(list(KINDS)),
              help="Only one kind of entry (as the page's What): sign-ins, users, enquiries, evidence packs, "
                   "personal data, restores.")
@click.option("--user", "username", metavar="USERNAME", help="Only what this user did, and what was done to their account.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="Show at most this many entries, newest first.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write every entry selected to this CSV file ('-': standard output), oldest first, as the "
                   "page's CSV file, rather than list them. An existing file is not overwritten.")
def audit_log_command(first, last, kind, username, limit, csv_path) -> None:
    """Show the audit log: signing in and out, changes to users, callbacks and enquiries recorded
    by hand, evidence packs, searches for a person's data and its removal, and restores (uses
    DATABASE_URL). Times are UK times."""
    last = last or local(now_utc()).date()
    first = first or default_first(last)
    if first > last:
        raise click.BadParameter(f"{first} is after --to {last}: give a first day on or before the last",
                                 param_hint="--from")
    with cli_session() as session:  # a database not upgraded yet is named as such
        user_id = None
        if username is not None:
            with session.begin():
                user_id = existing_user(session, username).id
        if csv_path is not None:
            count = _write_csv(all_entries(session, first, last, kind=kind, user_id=user_id), csv_path)
            if csv_path != "-":
                click.echo(f"Wrote {count:,} entr{'y' if count == 1 else 'ies'} to {click.format_filename(csv_path)}.")
            return
        listing = entries_page(session, first, last, kind=kind, user_id=user_id, per_page=limit)
    span = f"{first}" if first == last else f"{first} to {last}"
    if not listing.entries:
        click.echo(f"No entries from {span}.")
        return
    for entry in listing.entries:
        click.echo(f"{entry.at.astimezone(LONDON):%Y-%m-%d %H:%M:%S %Z}  {_shown(entry.by)}  {_shown(entry.what)}")
    if listing.total > len(listing.entries):
        click.echo(f"The newest {len(listing.entries):,} of {listing.total:,} entries from {span}: "
                   "give --limit or a shorter range for the rest, or --csv for all of them.")


def _shown(text: str) -> str:
    """Text as a terminal may show it: a control character (an escape sequence, say, in the name
    of the system user who ran a command) as "?"."""
    return "".join(char if char.isprintable() else "?" for char in text)


def _write_csv(entries, path: str) -> int:
    """Write the CSV file (a new file: one already there is refused, as `evidence export` refuses
    to write over a pack); the number of entries."""
    try:
        out = sys.stdout if path == "-" else open(path, "x", newline="", encoding="utf-8")
    except FileExistsError:
        raise click.ClickException(f"{click.format_filename(path)} exists already: give a new file name") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {click.format_filename(path)}: {exc.strerror}") from None
    count, written = 0, False
    try:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for entry in entries:
            writer.writerow(csv_row(entry))
            count += 1
        written = True
    finally:
        if out is not sys.stdout:
            out.close()
            if not written:  # the database failed part of the way: no file that looks whole
                os.unlink(path)
    return count
