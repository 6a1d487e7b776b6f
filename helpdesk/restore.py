"""After the database is put back to a backup: `helpdesk db after-restore`.

A backup is older than what the world has seen since it was taken. Without this step the app
would hand out again the enquiry references given out since (to other people, so a reply
quoting one would join someone else's enquiry), acknowledge again the emails an IMAP mailbox
still holds, and store the calls in Twilio's call log from that window as calls that never
reached the app: failed, breached, and owed callbacks, though most were answered.

So the command records the restore (the window the database lost, from the backup to the
failure, `restores`), moves each year's reference counter on past anything that could have
been given out meanwhile, and holds back the acknowledgements the backup still had to send
(they most likely went out in the window). What reads the window afterwards: the look in
Twilio's call log leaves its calls alone (helpdesk/voice/missed.py), and an email taken in
again from the mailbox, received in it, opens an enquiry but is not acknowledged again
(callbacks/email/intake.py). After the failure the app was down, not lost: calls and mail
then are taken in as usual.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import click
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from callbacks.email.ack_rules import HELD_BACK
from helpdesk.clock import LONDON
from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.models import (
    AuditEntry, CallbackAttempt, EmailAcknowledgement, Enquiry, InboundEmail, ReferenceCounter, Restore,
    SchedulerLease, TwilioEvent)
from helpdesk.users import SIGN_IN_ACTIONS, USER_ACTIONS

log = logging.getLogger(__name__)

ACTION = "database.restored"
# References skipped: at least this many, and a multiple of it.
SKIP_STEP = 1000
# For mail, the window starts this long before the backup: mail that reached the mailbox just
# before it, but was read after, is in no backup (an email the backup holds is never touched).
MAIL_MARGIN = timedelta(minutes=15)
# The busiest day is looked for among this many days before the backup.
BUSIEST_WITHIN = timedelta(days=90)
LARGEST = 999_999  # HD-YYYY-NNNNNN: six digits


class RestoreError(Exception):
    """The restore cannot be recorded as asked; the text says why."""


@dataclass(frozen=True)
class Moved:
    year: int
    last: int  # the last number given out so far: the backup's, unless the app ran before the command
    now: int  # the counter now: the next reference is now + 1


@dataclass(frozen=True)
class Recorded:
    backup_taken_at: datetime
    lost_until: datetime
    restored_at: datetime
    moved: list[Moved]
    held_back: int  # acknowledgements the backup still had to send, not sent now
    ran_since: datetime | None  # the latest record after the failure: the app ran before this command
    tokens_revoked: int = 0  # access tokens still working in the backup, all revoked


def windows(session: Session, margin: timedelta = timedelta(0)) -> list[tuple[datetime, datetime]]:
    """Every window a restore lost, (from, to), oldest first, each starting `margin` early. Read in
    the caller's transaction."""
    return [(start - margin, end) for start, end in session.execute(
        select(Restore.backup_taken_at, Restore.lost_until).order_by(Restore.id))]


def lost_in_restore(lost: list[tuple[datetime, datetime]], moment: datetime) -> bool:
    """Whether `moment` falls in a window a restore lost."""
    return any(start <= moment <= end for start, end in lost)


def overlapping(lost: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The windows among `lost` that overlap the period from `start` (included) to `end` (not)."""
    return [(first, last) for first, last in lost if last >= start and first < end]


def newest_activity(session: Session, until: datetime | None = None) -> datetime | None:
    """The latest moment (up to `until`) the database has a record of: webhook, email, enquiry,
    attempt or audited action. Changes to users, and signing in and out, are left out: they are
    made on the server with the app stopped too (a password for the administrator recording the
    restore), or by people checking the restored app, and say nothing of what the help desk took in."""
    def latest(column, *where):
        return session.scalar(select(func.max(column)).where(*where, *([column <= until] if until else [])))

    moments = [latest(column) for column in (
        TwilioEvent.received_at, InboundEmail.received_at, Enquiry.opened_at, CallbackAttempt.started_at)]
    moments.append(latest(AuditEntry.at, AuditEntry.action.not_in(USER_ACTIONS + SIGN_IN_ACTIONS)))
    moments = [moment for moment in moments if moment is not None]
    return max(moments) if moments else None


def references_to_skip(session: Session, backup_taken_at: datetime, lost_until: datetime) -> int:
    """Twice as many references as the busiest day of the last 90 gave out, for each day (or
    part of one) the database lost; at least SKIP_STEP, in steps of it."""
    opened = session.scalars(select(Enquiry.opened_at).where(
        Enquiry.opened_at >= backup_taken_at - BUSIEST_WITHIN, Enquiry.opened_at <= backup_taken_at))
    per_day: dict = {}
    for moment in opened:
        day = moment.astimezone(LONDON).date()
        per_day[day] = per_day.get(day, 0) + 1
    busiest = max(per_day.values(), default=0)
    days = max(1, math.ceil((lost_until - backup_taken_at) / timedelta(days=1)))
    wanted = 2 * busiest * days
    return max(SKIP_STEP, math.ceil(wanted / SKIP_STEP) * SKIP_STEP)


def record_restore(session: Session, *, backup_taken_at: datetime | None, lost_until: datetime, now: datetime,
                   user_id: int, actor: str, skip: int | None = None) -> Recorded:
    """Record that the database was put back to a backup taken at `backup_taken_at` (by default,
    the latest moment it has a record of before `lost_until`), the database it replaced having
    taken in data until `lost_until`; move the reference counters of the years from the
    backup's to now's on by `skip` (by default `references_to_skip`); and hold back the
    acknowledgements the backup still had to send."""
    with session.begin():
        if lost_until > now:
            raise RestoreError(f"the failure time {_uk(lost_until)} is in the future")
        running = session.scalar(select(func.max(SchedulerLease.expires_at)).where(SchedulerLease.expires_at > now))
        if running is not None:
            raise RestoreError(f"a scheduler is running (its lease runs until {_uk(running)}): stop the app and the "
                               "scheduler on every server first")
        newest = newest_activity(session, until=lost_until)
        if backup_taken_at is None:
            if newest is None:
                raise RestoreError("the database holds nothing from before the failure: there is nothing a restore "
                                   "could have lost")
            backup_taken_at = newest
        if backup_taken_at >= lost_until:
            raise RestoreError(f"the backup time {_uk(backup_taken_at)} is not before the failure time "
                               f"{_uk(lost_until)}")
        if newest is not None and newest > backup_taken_at + timedelta(minutes=1):
            raise RestoreError(f"the database holds a record of {_uk(newest)}, after the backup time given "
                               f"({_uk(backup_taken_at)}) and before the failure: give the time the backup was "
                               "taken, or leave --backup-taken out to use that record's")
        for start, end in windows(session):
            if start < lost_until and backup_taken_at < end:
                raise RestoreError(f"a restore losing {_uk(start)} to {_uk(end)} is recorded already")
        skip = references_to_skip(session, backup_taken_at, lost_until) if skip is None else skip
        moved = []
        for year in range(backup_taken_at.astimezone(LONDON).year, now.astimezone(LONDON).year + 1):
            session.execute(insert_ignoring_conflicts(session, ReferenceCounter, {"year": year, "last": 0}))
            last = session.scalar(select(ReferenceCounter.last).where(ReferenceCounter.year == year)
                                  .with_for_update())
            if last + skip > LARGEST:
                raise RestoreError(f"skipping {skip:,} references would take {year}'s past HD-{year}-{LARGEST}: "
                                   "give a smaller --skip")
            session.execute(update(ReferenceCounter).where(ReferenceCounter.year == year).values(last=last + skip))
            moved.append(Moved(year, last, last + skip))
        # Owed when the backup was taken, and not tried yet: sent within seconds, so most likely in
        # the window, and not sent again. One already failing then is left to its retries.
        held_back = session.execute(
            update(EmailAcknowledgement)
            .where(EmailAcknowledgement.status == "pending", EmailAcknowledgement.attempts == 0,
                   EmailAcknowledgement.received_at <= lost_until)
            .values(status="suppressed", next_attempt_at=None, claimed_at=None,
                    last_error=HELD_BACK)).rowcount
        # A token revoked in the window the database lost would work again: none is trusted.
        from helpdesk.access_tokens import revoke_all

        tokens = revoke_all(session, now)
        latest = newest_activity(session)
        ran_since = latest if latest is not None and latest > lost_until else None
        references = {str(m.year): {"last_in_backup": m.last, "moved_to": m.now} for m in moved}
        session.add(Restore(backup_taken_at=backup_taken_at, lost_until=lost_until, restored_at=now,
                            recorded_by_id=user_id, references=json.dumps(references, sort_keys=True)))
        session.add(AuditEntry(at=now, user_id=user_id, actor=actor, action=ACTION, detail=json.dumps({
            "backup_taken_at": backup_taken_at.isoformat(), "lost_until": lost_until.isoformat(),
            "restored_at": now.isoformat(), "references": references, "acknowledgements_held_back": held_back,
            "tokens_revoked": tokens},
            sort_keys=True)))
    log.warning("restore recorded: the database lost %s to %s; references moved on by %d; %d acknowledgements "
                "held back", backup_taken_at.isoformat(), lost_until.isoformat(), skip, held_back)
    return Recorded(backup_taken_at, lost_until, now, moved, held_back, ran_since, tokens)


def _uk(moment: datetime) -> str:
    return f"{moment.astimezone(LONDON):%H:%M:%S %a %d %b %Y}" if moment.second else \
        f"{moment.astimezone(LONDON):%H:%M %a %d %b %Y}"


def _uk_time(text: str | None, option: str) -> datetime | None:
    """'YYYY-MM-DD HH:MM', UK time, as an aware instant; in the hour the clocks repeat, its first
    pass (the earlier). None when not given."""
    if text is None:
        return None
    from helpdesk.clock import SKIPPED, uk_time_problem, wall_time

    naive = wall_time(text, seconds=True)
    if naive is None:
        raise click.BadParameter(f"{text!r} is not a UK time: use 'YYYY-MM-DD HH:MM' or 'YYYY-MM-DD HH:MM:SS'",
                                 param_hint=option)
    if uk_time_problem(naive) == SKIPPED:
        raise click.BadParameter(f"{text!r} {SKIPPED}", param_hint=option)
    return naive.replace(tzinfo=LONDON, fold=0).astimezone(timezone.utc)


@click.command("after-restore")
@click.option("--lost-until", "lost_until", metavar="'YYYY-MM-DD HH:MM[:SS]'", required=True,
              help="When the database that was lost last took anything in (the failure, or when the app was "
                   "stopped), UK time, rounded up: a call answered before it, but given as after, would count as "
                   "failed. After it the app was down.")
@click.option("--backup-taken", "backup_taken", metavar="'YYYY-MM-DD HH:MM'",
              help="When the backup put back was taken, UK time, rounded down (by default, the latest record it "
                   "holds).")
@click.option("--skip", type=click.IntRange(SKIP_STEP, LARGEST), metavar="N",
              help=f"How many references to skip, at least {SKIP_STEP:,} (by default twice the busiest day's, for "
                   "each day lost).")
@click.option("--user", "username", required=True,
              help="Who restored it: an active administrator (their password is asked for).")
def after_restore_command(lost_until: str, backup_taken: str | None, skip: int | None, username: str) -> None:
    """Run once the database is put back to a backup, before the app and the scheduler start again.

    Records what the database lost (from the backup to the failure), and moves each year's
    enquiry references on, so none given out since the backup is given out again.
    Acknowledgements the backup still had to send are held back (they most likely went out
    before the failure). Afterwards the look in Twilio's call log leaves the lost window's calls
    alone (they were not missed: the database lost them), and an email read again from the
    mailbox that arrived in the window opens an enquiry but is not acknowledged again; calls
    and mail after the failure are taken in as usual. The password comes from HELPDESK_PASSWORD
    (for scripts), or is asked for. Uses DATABASE_URL.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from helpdesk.cli import migrated_database_url
    from helpdesk.clock import now_utc
    from helpdesk.db import Database
    from helpdesk.dbutil import database_error
    from helpdesk.cli_users import administrator_for

    failed = _uk_time(lost_until, "--lost-until")
    taken = _uk_time(backup_taken, "--backup-taken")
    database = Database(migrated_database_url())
    try:
        with database.session() as session:
            user = administrator_for(session, username, "record a restore")
            recorded = record_restore(session, backup_taken_at=taken, lost_until=failed, now=now_utc(),
                                      user_id=user.id, actor=user.username, skip=skip)
    except RestoreError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(database_error(exc)) from None
    finally:
        database.dispose()
    click.echo(f"Recorded: the database lost what it took in from {_uk(recorded.backup_taken_at)} (the backup) "
               f"to {_uk(recorded.lost_until)} (the failure).")
    for moved in recorded.moved:
        click.echo(f"References for {moved.year}: the last given out was HD-{moved.year}-{moved.last:06d}; the next "
                   f"is HD-{moved.year}-{moved.now + 1:06d} ({moved.now - moved.last:,} skipped).")
    if recorded.held_back:
        click.echo(f"Held back {recorded.held_back} email acknowledgement{'' if recorded.held_back == 1 else 's'} "
                   "the backup still had to send: most likely sent before the failure.")
    if recorded.tokens_revoked:
        click.echo(f"Revoked all {recorded.tokens_revoked} access token{'' if recorded.tokens_revoked == 1 else 's'}: "
                   "one revoked since the backup would otherwise work again. Their users make new ones.")
    if recorded.ran_since:
        click.echo(f"Warning: the app has run since the failure (its latest record is of {_uk(recorded.ran_since)}): "
                   "what it did before this command, it did from the backup's state. References it gave out then "
                   "may repeat ones given out before the failure, and emails it read again may have been "
                   "acknowledged twice.")
    click.echo("Before you start the app, see \"After a restore\" in the README: what cannot be had again, "
               "and what to check.")
