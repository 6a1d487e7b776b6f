"""`helpdesk users`: add, list and deactivate the people who sign in, set their passwords, phones and
email addresses, email them links to choose a password, and revoke their access tokens;
`password_for` and `administrator_for`: who another command runs as."""
from __future__ import annotations

import os
import secrets
import sys
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from helpdesk.account_notices import EMAIL_CHANGED, PASSWORD_SET, TWO_STEP_OFF
from helpdesk.clock import LONDON, now_utc, uk_moment
from helpdesk.db import Database
from helpdesk.dbutil import database_error
from helpdesk.migrate import database_words
from helpdesk.models.user import ROLES
from helpdesk.pages.format import format_date_time
from helpdesk.pages.taken_by import shown_phone
from helpdesk.user_rules import UserError, check_display_name, check_email, check_phone, check_username
from helpdesk.users import (NO_PHONE_FOR_AUDITOR, PHONE_FREED, PHONELESS_ROLES, SINCE_IN_FUTURE, add_user, command_line,
                            deactivate, existing_user, list_users, reactivate, refuse_email_taken, refuse_taken,
                            set_display_name, set_email, set_password, set_phone, set_role, user_changes)


users_cli = click.Group("users", help="Manage the people who sign in (uses DATABASE_URL).")


@contextmanager
def cli_session() -> Iterator[Session]:
    """A session on DATABASE_URL; every failure becomes a one-line message."""
    from helpdesk.cli import database_url  # here: helpdesk.cli imports this module

    url = database_url()
    database = None
    try:
        _refuse_unmigrated(url)
        database = Database(url)
        with database.session() as session:
            yield session
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(database_error(exc)) from None
    finally:
        if database is not None:
            database.dispose()


def _refuse_unmigrated(url: str) -> None:
    """A one-line message for a database these commands cannot use: an SQLite file that is not
    there (SQLite would quietly create an empty one), one that does not answer, or one whose
    schema is not this version's (after an upgrade of the app, before `helpdesk db upgrade`:
    else a change to a user failed on the audit log's column it lacks)."""
    from helpdesk.migrate import NotReady, check_migrated

    try:
        check_migrated(url)
    except NotReady as exc:  # Unreachable too
        raise click.ClickException(str(exc)) from None


def password_for(username: str) -> str:
    """The password of the user a command runs as: HELPDESK_PASSWORD (for scripts), or asked for."""
    password = os.environ.get("HELPDESK_PASSWORD")
    if password:
        return password
    return click.prompt(f"Password for {username}", hide_input=True, err=True)


def signed_in_as(session: Session, username: str, doing: str):
    """The active user a command runs as, once their password is right (and their code, if they
    have two-step sign-in), or a ClickException saying why not: `doing` is what they would do
    ("export")."""
    from helpdesk.clock import now_utc
    from helpdesk.two_step import passed
    from helpdesk.users import authenticate, normalise_username

    user = authenticate(session, username, password_for(username))
    if user is None:
        raise click.ClickException(f"cannot {doing} as {normalise_username(username)!r}: the password is wrong, or "
                                   "there is no such active user")
    if user.has_two_step and passed(session, user.id, code_for(user.username), now_utc()) is None:
        raise click.ClickException(f"cannot {doing} as {user.username!r}: the two-step code is wrong, or has been "
                                   "used already")
    refuse_temporary(user, doing)
    return user


def code_for(username: str) -> str:
    """The two-step code of the user a command runs as: HELPDESK_CODE, or asked for."""
    code = os.environ.get("HELPDESK_CODE")
    if code:
        return code
    return click.prompt(f"Code from the authenticator app for {username} (or a recovery code)", err=True)


def administrator_for(session: Session, username: str, doing: str):
    """The active administrator a command runs as, once their password is right, or a
    ClickException saying why not: `doing` is what they would do ("record a restore")."""
    user = signed_in_as(session, username, doing)
    if user.role != "admin":
        raise click.ClickException(f"{user.username!r} may not {doing} (role {user.role}): only an administrator may")
    return user


def refuse_temporary(user, doing: str) -> None:
    """A ClickException if the user's password is one an administrator set (who knows it), as
    the pages allow nothing else until they choose their own."""
    if user.must_change_password:
        raise click.ClickException(f"cannot {doing} as {user.username!r} yet: their password was set by an "
                                   "administrator. They sign in to the help desk's pages and choose their own first")


def _new_password() -> str:
    return _typed_twice("HELPDESK_PASSWORD", "Password", "password")


def _typed_twice(variable: str, prompt: str, what: str) -> str:
    """A new secret: the environment's `variable`, or asked for twice."""
    value = os.environ.get(variable)
    if value:
        return value
    try:
        return click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    except click.Abort:
        if sys.stdin.isatty():
            raise  # Ctrl-C or Ctrl-D at the terminal: click says "Aborted!"
        raise click.ClickException(f"no {what} was given: send it twice, a line each, on standard input, or set "
                                   f"{variable}") from None


PERMANENT_HELP = ("The user may keep this password (you are adding yourself, or they chose it); without this, "
                  "they must choose their own when they next sign in.")


def _first_sign_in(user) -> str:
    if not user.must_change_password:
        return ""
    return " They choose their own password when they next sign in, as you know this one."


@users_cli.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the user may see and do.")
@click.option("--name", "display_name", default="", help="Display name, e.g. \"Alex Smith\".")
@click.option("--phone", default="", help="The agent's phone for \"Call back now\", e.g. +447700900123, or a desk "
              "phone's SIP address, e.g. sip:1001@pbx.example.org.")
@click.option("--since", metavar="'YYYY-MM-DD[ HH:MM]'",
              help="When they got the phone, UK time, if not now: calls answered on it since then name them.")
@click.option("--email", default="", help="Where links to choose a password are sent, e.g. alex@example.org.")
@click.option("--send-link", is_flag=True,
              help="Email them a link to choose their password (needs --email), rather than asking for one here.")
@click.option("--permanent", is_flag=True, help=PERMANENT_HELP)
def add_command(username: str, role: str, display_name: str, phone: str, since: str | None, email: str,
                send_link: bool, permanent: bool) -> None:
    """Add a user who can sign in.

    The password comes from HELPDESK_PASSWORD, or is asked for twice. It is for their first
    sign-in only: they then choose their own (unless --permanent). With --send-link, none is
    asked for: they choose theirs with a link emailed to them.
    """
    # Check everything that can be wrong before asking for a password.
    try:
        name = check_username(username)
        check_phone(phone)
        check_display_name(display_name)
        email = check_email(email) or ""
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    if send_link and (not email or permanent):
        raise click.UsageError("--send-link needs --email, and cannot go with --permanent")
    if role in PHONELESS_ROLES and phone.strip():
        raise click.UsageError(f"--phone is not for --role {role}: {NO_PHONE_FOR_AUDITOR}")
    start = _since(since)
    if start is not None and not phone.strip():
        raise click.UsageError("--since needs --phone: it says since when they have had it")
    if start is not None and start > now_utc():
        raise click.BadParameter(f"{since!r}: {SINCE_IN_FUTURE}", param_hint="--since")
    mail = _mail_setup() if send_link else None  # before adding anyone
    with cli_session() as session, session.begin():
        refuse_taken(session, name)
        if email:
            refuse_email_taken(session, email)
    password = secrets.token_urlsafe(32) if send_link else _new_password()
    with cli_session() as session:
        user = add_user(session, username, password, role, display_name, phone=phone, temporary=not permanent,
                        email=email, by_link=send_link, phone_since=start)
    named = f" ({user.display_name})" if user.display_name else ""
    click.echo(f"Added {user.role} {user.username!r}{named}.{'' if send_link else _first_sign_in(user)}")
    if start is not None:
        click.echo(f"Calls answered on {user.phone} since {format_date_time(start)} name them.")
    from helpdesk.cli import database_url

    click.echo(f"Database: {database_words(database_url())}")
    if mail is not None:
        _send_link(user, mail)


def _mail_setup():
    """The settings, PUBLIC_BASE_URL and the mail server, for emailing a link; or a message
    naming what is missing."""
    from helpdesk.config import ConfigError, load_settings
    from helpdesk.password_links import smtp_sender

    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.smtp.host:
        raise click.ClickException("links cannot be emailed: smtp.host is not set in the configuration")
    base_url = (os.environ.get("PUBLIC_BASE_URL") or "").rstrip("/")
    if not base_url:
        raise click.ClickException("PUBLIC_BASE_URL is not set: the link needs the address people reach the app "
                                   "at, such as https://helpdesk.example.org")
    return settings, base_url, smtp_sender(settings)


def _send_link(user, mail) -> None:
    """Email `user` a new link, through `mail` (_mail_setup's settings, base URL and server)."""
    from callbacks.email.ack_rules import mask_address
    from callbacks.smtp import MailError
    from helpdesk.clock import now_utc
    from helpdesk.pages.format import format_moment
    from helpdesk.password_links import SENT, make_link, send

    settings, base_url, sender = mail
    with cli_session() as session:
        link = make_link(session, user, SENT, now_utc(), command_line())
    try:
        send(link, sender, settings, base_url)
    except MailError as failed:
        raise click.ClickException(f"the link could not be sent: {failed}. Try 'helpdesk users send-link "
                                   f"{user.username}' again once the mail server is reachable.") from None
    click.echo(f"Emailed {user.username!r} a link to choose a password, at {mask_address(link.email)[0]}. It "
               f"works once, until {format_moment(link.expires_at)}.")


@users_cli.command("send-link")
@click.argument("username")
def send_link_command(username: str) -> None:
    """Email a user a link to choose a new password (for one who has forgotten theirs).

    It goes to the address set with set-email, works once, for 3 days, and replaces any link
    sent before. Their password stays as it is until they use it. Needs [smtp] in the
    configuration and PUBLIC_BASE_URL.
    """
    mail = _mail_setup()
    with cli_session() as session, session.begin():
        user = existing_user(session, username)
        if not user.active:
            raise UserError(f"{user.username!r} is deactivated: 'helpdesk users reactivate {user.username}' first")
        if not user.email:
            raise UserError(f"{user.username!r} has no email address: set one with 'helpdesk users set-email "
                            f"{user.username} ADDRESS'")
        session.expunge(user)
    _send_link(user, mail)


@users_cli.command("list")
def list_command() -> None:
    """List users with their roles, whether they can sign in, and when they last did (UK time)."""
    from helpdesk.agents_pin import ASK, LOCKED, state_of

    with cli_session() as session:
        users = list_users(session)
    if not users:
        click.echo("No users yet: add one with 'helpdesk users add USERNAME --role admin'.")
        return
    for user in users:
        state = "active" if user.active else "deactivated"
        phone = f"phone {shown_phone(user.phone)}" if user.phone else "no phone"
        email = "email" if user.email else "no email"
        password = "password to choose" if user.must_change_password else "own password"
        two_step = "two-step" if user.has_two_step else "no two-step"
        # The agents' line PIN (helpdesk.agents_pin), for those who have one.
        pin = {ASK: "PIN set", LOCKED: "PIN locked"}.get(state_of(user), "")
        last = (f"last in {user.last_signed_in_at.astimezone(LONDON):%Y-%m-%d %H:%M}" if user.last_signed_in_at
                else "no sign-in recorded")
        click.echo(f"{user.username:<24} {user.role:<8} {state:<11} {phone:<22} {email:<8} {password:<18} "
                   f"{two_step:<11} {pin:<10} {last:<24} {user.display_name}".rstrip())


@users_cli.command("history")
@click.argument("username", required=False)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="How many changes to show, newest first.")
def history_command(username: str | None, limit: int) -> None:
    """Show who changed which user, and when (from the audit log), newest first."""
    from helpdesk.pages.format import format_date_time

    with cli_session() as session:
        with session.begin():
            user_id = existing_user(session, username).id if username else None
        changes = user_changes(session, user_id=user_id, limit=limit)
    if not changes:
        click.echo("No changes to users recorded yet.")
        return
    for change in changes:
        by = "" if change.own else f", by {change.actor} ({change.via})"
        click.echo(f"{format_date_time(change.at)}  {change.username}: {change.words}{by}")


@users_cli.command("deactivate")
@click.argument("username")
def deactivate_command(username: str) -> None:
    """Stop a user signing in (their record is kept) and free their phone."""
    with cli_session() as session:
        user, freed = deactivate(session, username)
    click.echo(f"Deactivated {user.username!r}: they can no longer sign in." + (f" {PHONE_FREED}" if freed else ""))


@users_cli.command("reactivate")
@click.argument("username")
def reactivate_command(username: str) -> None:
    """Let a deactivated user sign in again."""
    with cli_session() as session:
        user = reactivate(session, username)
    click.echo(f"Reactivated {user.username!r}: they can sign in again with the password they had "
               f"('helpdesk users set-password {user.username}' sets a new one).")


@users_cli.command("two-step-off")
@click.argument("username")
def two_step_off_command(username: str) -> None:
    """Turn off two-step sign-in for a user who has lost their phone and their recovery codes."""
    from helpdesk.two_step import turn_off

    with cli_session() as session:
        user = turn_off(session, username)
    click.echo(f"Turned off two-step sign-in for {user.username!r}: they sign in with their password alone, or set "
               "it up again when they next sign in if their role must have it.")
    _tell(user, TWO_STEP_OFF, user.email)


@users_cli.command("set-pin")
@click.argument("username")
def set_pin_command(username: str) -> None:
    """Set a user's PIN for the agents' line (routing.agents_pin), unlocking it.

    The PIN (4 to 8 digits) comes from HELPDESK_PIN, or is asked for twice. Users can set their
    own on the Agents' line PIN page.
    """
    from helpdesk.account_notices import AGENTS_PIN_SET as AGENTS_PIN_SET_NOTICE
    from helpdesk.agents_pin import set_pin

    with cli_session() as session, session.begin():
        existing_user(session, username)  # no PIN asked for a user who does not exist
    pin = _typed_twice("HELPDESK_PIN", "PIN for the agents' line", "PIN")
    with cli_session() as session:
        user = set_pin(session, username, pin.strip())
    click.echo(f"Set the PIN for the agents' line of {user.username!r}: they type it, then #, when their phone "
               "calls the agents' line.")
    _tell(user, AGENTS_PIN_SET_NOTICE, user.email)


@users_cli.command("tokens")
@click.argument("username")
def tokens_command(username: str) -> None:
    """List a user's access tokens still working (for scripts that download evidence packs)."""
    from helpdesk.access_tokens import live_tokens
    from helpdesk.clock import now_utc
    from helpdesk.pages.format import format_date_time

    with cli_session() as session:
        with session.begin():
            user = existing_user(session, username)
        tokens = live_tokens(session, user.id, now_utc())
    if not tokens:
        click.echo(f"{user.username!r} has no access tokens.")
        return
    for token in tokens:
        used = f"last used {format_date_time(token.last_used_at)}" if token.last_used_at else "not used yet"
        click.echo(f"{token.id:>6}  {token.name}  made {format_date_time(token.created_at)}, runs out "
                   f"{format_date_time(token.expires_at)}, {used}")


@users_cli.command("revoke-token")
@click.argument("username")
@click.argument("token_id", metavar="ID", required=False, type=click.IntRange(1))
@click.option("--all", "every", is_flag=True, help="Revoke all of the user's tokens.")
def revoke_token_command(username: str, token_id: int | None, every: bool) -> None:
    """Revoke a user's access token ID (from 'helpdesk users tokens'), or --all of them: a script
    that gives it is refused from then on."""
    from helpdesk.access_tokens import live_tokens, revoke
    from helpdesk.clock import now_utc

    if (token_id is None) == (not every):
        raise click.UsageError("give either the token's ID (from 'helpdesk users tokens USERNAME') or --all")
    now = now_utc()
    with cli_session() as session:
        with session.begin():
            user = existing_user(session, username)
            session.expunge(user)
        ids = [token.id for token in live_tokens(session, user.id, now)] if every else [token_id]
        for one in ids:
            token = revoke(session, user, one, command_line(), now)
            click.echo(f"Revoked {user.username!r}'s access token {token.id} “{token.name}”.")
    if every and not ids:
        click.echo(f"{user.username!r} has no access tokens to revoke.")


@users_cli.command("set-role")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the user may see and do from now on.")
def set_role_command(username: str, role: str) -> None:
    """Change what a user may see and do (they sign in again)."""
    with cli_session() as session:
        user, freed = set_role(session, username, role)
    click.echo(f"{user.username!r} is now {'an' if role[0] in 'aeiou' else 'a'} {role}; they sign in again to act "
               "as one." + (f" {PHONE_FREED}" if freed else ""))


@users_cli.command("set-phone")
@click.argument("username")
@click.argument("phone", required=False, default="")
@click.option("--since", metavar="'YYYY-MM-DD[ HH:MM]'",
              help="When they got the phone, UK time, if not now: calls answered on it since then name them. "
                   "With the phone they have now, changes only this.")
def set_phone_command(username: str, phone: str, since: str | None) -> None:
    """Set the phone "Call back now" rings first: a number, or a desk phone's SIP address (leave
    PHONE out to clear it)."""
    start = _since(since)
    with cli_session() as session:
        user = set_phone(session, username, phone, since=start)
    if not user.phone:
        click.echo(f"Cleared the phone of {user.username!r}.")
    else:
        click.echo(f"{user.username!r} will be rung on {user.phone}"
                   + (f"; calls answered on it since {format_date_time(start)} name them." if start else "."))


def _since(since: str | None) -> datetime | None:
    """--since as an instant, or a message naming the problem."""
    if since is None:
        return None
    try:
        return uk_moment(since)
    except ValueError as problem:
        raise click.BadParameter(f"{since!r} {problem}", param_hint="--since") from None


@users_cli.command("set-email")
@click.argument("username")
@click.argument("email", required=False, default="")
def set_email_command(username: str, email: str) -> None:
    """Set the address links to choose a password are sent to (leave EMAIL out to clear it)."""
    with cli_session() as session, session.begin():
        before = existing_user(session, username).email
    with cli_session() as session:
        user = set_email(session, username, email)
    click.echo(f"Links for {user.username!r} go to {user.email}." if user.email
               else f"Cleared the email address of {user.username!r}.")
    if before and before != user.email:
        _tell(user, EMAIL_CHANGED, before)


@users_cli.command("set-name")
@click.argument("username")
@click.argument("name", required=False, default="")
def set_name_command(username: str, name: str) -> None:
    """Set the name shown for a user, e.g. "Alex Smith" (leave NAME out to clear it)."""
    with cli_session() as session:
        user = set_display_name(session, username, name)
    click.echo(f"{user.username!r} is shown as {user.display_name}." if user.display_name
               else f"Cleared the name of {user.username!r}.")


@users_cli.command("set-password")
@click.argument("username")
@click.option("--permanent", is_flag=True, help=PERMANENT_HELP)
def set_password_command(username: str, permanent: bool) -> None:
    """Set a user's password (for one who has forgotten theirs).

    The password comes from HELPDESK_PASSWORD, or is asked for twice. It is for their next
    sign-in only: they then choose their own (unless --permanent).
    """
    with cli_session() as session, session.begin():
        existing_user(session, username)  # no password asked for a user who does not exist
    password = _new_password()
    with cli_session() as session:
        user = set_password(session, username, password, temporary=not permanent)
    still = "" if user.active else (f" They are still deactivated: 'helpdesk users reactivate {user.username}' "
                                    "lets them sign in.")
    click.echo(f"Changed the password of {user.username!r}.{_first_sign_in(user)}{still}")
    _tell(user, PASSWORD_SET, user.email)


def _tell(user, kind: str, to: str | None) -> None:
    """Email `user` (at `to`) a notice of the change (helpdesk.account_notices), once a mail server
    is set up; a line says so, or why it could not be sent. The change stands either way."""
    from helpdesk.account_notices import Notice, send_quietly
    from helpdesk.clock import now_utc
    from helpdesk.config import ConfigError, load_settings
    from helpdesk.password_links import smtp_sender

    if not to:
        return
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"Could not email {user.username!r} about it: {exc}")
        return
    if not settings.smtp.host:
        return
    failed = send_quietly(Notice(kind, to, user.username, user.display_name, now_utc()), smtp_sender(settings),
                          settings)
    click.echo(f"Emailed {user.username!r} about it." if failed is None
               else f"Could not email {user.username!r} about it: {failed}.")
