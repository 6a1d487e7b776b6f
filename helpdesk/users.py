"""People who sign in: adding them, checking passwords, signing in (the `helpdesk users` commands are
in helpdesk/cli_users.py, the rules for what a user may be given in helpdesk/user_rules.py).

Usernames are case-insensitive (stored in lower case). Passwords are stored only as
werkzeug scrypt hashes.
"""
from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from helpdesk.clock import now_utc
from helpdesk.models import AuditEntry, FormerPhone, PasswordLink, SignInFailure, User
from helpdesk.models.user import QUEUE_ROLES
from helpdesk.user_rules import (USERNAME, UserError, check_display_name, check_email, check_password, check_phone,
                                 check_role, check_username, is_text, normalise_username)

log = logging.getLogger(__name__)

class UsernameTaken(UserError):
    """Another user has the username."""


class EmailTaken(UserError):
    """Another user has the email address."""


class PhoneSinceRefused(UserError):
    """A user cannot have had the phone since the time given (phone_since_problem)."""


SINCE_IN_FUTURE = "the time they have had the phone from cannot be in the future"
# A DWP auditor answers no calls for the help desk: they have no phone, so no call names them.
PHONELESS_ROLES = ("auditor",)
NO_PHONE_FOR_AUDITOR = "a DWP auditor answers no calls, so has no phone"


class PhoneRefused(UserError):
    """The user's role has no phone (PHONELESS_ROLES)."""


# Said when a user with a phone is deactivated (deactivate frees it).
PHONE_FREED = ("Their phone is free for someone else: the calls they answered on it still name them, and calls "
               "answered on it from now on do not.")


# The audit log's actions for changes to users (helpdesk.models.AuditEntry).
ADDED, PASSWORD_SET, PASSWORD_CHANGED = "user.added", "user.password_set", "user.password_changed"
DEACTIVATED, REACTIVATED, ROLE_CHANGED, PHONE_CHANGED, NAME_CHANGED = (
    "user.deactivated", "user.reactivated", "user.role_changed", "user.phone_changed", "user.name_changed")
EMAIL_CHANGED = "user.email_changed"
# Links emailed to choose a password (helpdesk.password_links): sent by an administrator, or
# asked for by the user on the sign-in page; and a password chosen with one.
PASSWORD_LINK_SENT, PASSWORD_CHOSEN_WITH_LINK = "user.password_link_sent", "user.password_chosen_with_link"
# Two-step sign-in (helpdesk.two_step): set up by the user, turned off by them or an
# administrator, new recovery codes made by the user.
TWO_STEP_ON, TWO_STEP_OFF, RECOVERY_CODES_MADE = "user.two_step_on", "user.two_step_off", "user.recovery_codes_made"
# Access tokens for scripts (helpdesk.access_tokens): made by the user, revoked by them or an
# administrator.
TOKEN_MADE, TOKEN_REVOKED = "user.token_made", "user.token_revoked"
# The PIN for the agents' line (helpdesk.agents_pin): set by the user or an administrator, and
# locked by too many wrong ones typed on the phone.
AGENTS_PIN_SET, AGENTS_PIN_LOCKED = "user.agents_pin_set", "user.agents_pin_locked"
USER_ACTIONS = (ADDED, PASSWORD_SET, PASSWORD_CHANGED, DEACTIVATED, REACTIVATED, ROLE_CHANGED, PHONE_CHANGED,
                NAME_CHANGED, EMAIL_CHANGED, PASSWORD_LINK_SENT, PASSWORD_CHOSEN_WITH_LINK, TWO_STEP_ON, TWO_STEP_OFF,
                RECOVERY_CODES_MADE, TOKEN_MADE, TOKEN_REVOKED, AGENTS_PIN_SET, AGENTS_PIN_LOCKED)
# Signing in and out on the pages. A refused sign-in is recorded only for a username a user has
# (what else was typed may be a password), and not once the name is refused unheard. A wrong
# current password on the Change your password page counts as a refused sign-in, and is recorded
# as PASSWORD_CHANGE_REFUSED.
SIGNED_IN, SIGN_IN_REFUSED, SIGNED_OUT = "user.signed_in", "user.sign_in_refused", "user.signed_out"
PASSWORD_CHANGE_REFUSED = "user.password_change_refused"
SIGN_IN_ACTIONS = (SIGNED_IN, SIGN_IN_REFUSED, SIGNED_OUT, PASSWORD_CHANGE_REFUSED)


@dataclass(frozen=True)
class Actor:
    """Who changes a user, for the audit log: an administrator signed in to the pages (or the
    user themself), or, with no `user_id`, the system user running `helpdesk users`."""

    name: str
    user_id: int | None = None

    @property
    def via(self) -> str:
        return "command line" if self.user_id is None else "web"


def command_line() -> Actor:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):
        return Actor("unknown")
    # From LOGNAME or USER, which may be anything: as text the database takes, and no longer
    # than AuditEntry.actor holds (else every change from the command line failed).
    return Actor(name.encode("utf-8", "replace").decode("utf-8")[:128] or "unknown")


def audit(session: Session, action: str, user: User, by: Actor | None, now: datetime | None = None,
          **detail) -> None:
    """Record a change to `user` in the audit log, in the caller's transaction. Nothing secret is
    recorded: no password or hash, and of a phone only whether it was set."""
    by = by or command_line()
    session.add(AuditEntry(at=now or now_utc(), user_id=by.user_id, actor=by.name, action=action,
                           detail=json.dumps({"user": user.username, "user_id": user.id, "via": by.via, **detail},
                                             sort_keys=True)))


def add_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    display_name: str = "",
    now: datetime | None = None,
    phone: str | None = None,
    temporary: bool = False,
    by: Actor | None = None,
    email: str | None = None,
    by_link: bool = False,
    phone_since: datetime | None = None,
) -> User:
    """Add a user who can sign in at once (and, with `temporary`, must then choose their own
    password before anything else; `by_link`: they are to choose it with an emailed link, as
    nobody knows the one given). Their phone is theirs from now, or from `phone_since` if they
    have had it a while (the calls answered on it since then name them). Owns the transaction."""
    name = check_username(username)
    check_password(password, name)
    check_role(role)
    phone = check_phone(phone)
    email = check_email(email)
    display_name = check_display_name(display_name)
    now = now or now_utc()
    if phone_since is not None and phone is None:
        raise PhoneSinceRefused("a time they have had the phone from needs the phone")
    if phone_since is not None and phone_since > now:
        raise PhoneSinceRefused(SINCE_IN_FUTURE)
    if phone is not None and role in PHONELESS_ROLES:
        raise PhoneRefused(f"{NO_PHONE_FOR_AUDITOR}: leave the phone empty")
    user = User(
        username=name,
        display_name=display_name,
        password_hash=generate_password_hash(password),
        role=role,
        phone=phone,
        email=email,
        active=True,
        created_at=now,
        phone_since=None if phone is None else phone_since or now,
        must_change_password=temporary,
    )
    try:
        with session.begin():
            refuse_taken(session, name)
            if email is not None:
                refuse_email_taken(session, email)
            session.add(user)
            session.flush()
            # Whether there is an email address, and a link to come, only when there are (as before 0.20.0).
            extra = {key: True for key, value in (("email", email), ("link", by_link)) if value}
            if phone_since is not None:
                extra["since"] = phone_since.isoformat()
            audit(session, ADDED, user, by, user.created_at, role=role, temporary=temporary,
                  phone=phone is not None, **extra)
    except IntegrityError:  # added by someone else between the check and the insert
        if email is not None:
            with session.begin():
                refuse_email_taken(session, email)  # EmailTaken, if the address was what clashed
        raise UsernameTaken(f"username {name!r} is already taken") from None
    log.info("user %s added with role %s", name, role)
    return user


def refuse_taken(session: Session, name: str) -> None:
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise UsernameTaken(f"username {name!r} is already taken")


def refuse_email_taken(session: Session, email: str, user_id: int | None = None) -> None:
    other = session.scalar(select(User.id).where(User.email == email))
    if other is not None and other != user_id:
        raise EmailTaken(f"another user has the email address {email}")


@cache
def _decoy_hash() -> str:
    return generate_password_hash("a password nobody has")


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this username and password, or None.

    Unknown usernames cost the same hashing time as wrong passwords, so the response
    time does not tell which usernames exist.
    """
    if not is_text(password or "") or not is_text(username or ""):
        return None  # no stored password or username can match it
    user = _user_named(session, username)
    if user is None:
        check_password_hash(_decoy_hash(), password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.active:
        return None
    return user


# Refused sign-ins for one username within SIGN_IN_WINDOW before more are refused unheard.
SIGN_IN_LIMIT = 10
SIGN_IN_WINDOW = timedelta(minutes=15)


def sign_in_keys(session: Session, username: str, secret: str | bytes) -> tuple[str, ...]:
    """What refused sign-ins are counted under, the first being where this one is recorded.

    A name is known by a digest of it keyed with `secret` (SECRET_KEY), so the database never
    holds what was typed (it may be a password), nor anything that could be reversed by guessing
    without the key; a user's name also by "user:<id>", first. Refusals under both count, so a
    run of them against a name carries on when a user of that name is created, rather than
    stopping and telling that the account now exists.
    """
    name = normalise_username(username)[:64]
    user = _user_named(session, name)
    return (_name_digest(name, secret),) if user is None else (f"user:{user.id}", _name_digest(name, secret))


def _name_digest(name: str, secret: str | bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "name:" + hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:40]


def begin_sign_in(session: Session, keys: tuple[str, ...], now: datetime) -> datetime | None:
    """Count a sign-in as refused before its password is checked; returns None, or when this
    username may try again if SIGN_IN_LIMIT sign-ins were already refused within the window
    (this one is then not counted, and its password must not be checked).

    Counting first makes the limit hold under parallel requests: each sees every try committed
    before its own, so at most SIGN_IN_LIMIT are ever checked in a window. (Checking the count,
    then adding to it, let 60 parallel tries have 12 checked.) Counted by the name typed (`keys`,
    from sign_in_keys), whether or not such a user exists, so the answer does not tell which
    usernames do.
    """
    with session.begin():
        session.execute(delete(SignInFailure).where(SignInFailure.failed_at < now - timedelta(days=1)))
        attempt = SignInFailure(who=keys[0], failed_at=now)
        session.add(attempt)
        session.flush()
        attempt_id = attempt.id
    with session.begin():
        earlier = session.scalars(
            select(SignInFailure.failed_at).where(SignInFailure.who.in_(keys), SignInFailure.id != attempt_id,
                                                  SignInFailure.failed_at > now - SIGN_IN_WINDOW)
            .order_by(SignInFailure.failed_at.desc()).limit(SIGN_IN_LIMIT)).all()
        if len(earlier) < SIGN_IN_LIMIT:
            return None
        session.execute(delete(SignInFailure).where(SignInFailure.id == attempt_id))  # refused unheard
    return min(earlier) + SIGN_IN_WINDOW


def finish_sign_in(session: Session, keys: tuple[str, ...], *, succeeded: bool) -> None:
    """A refused sign-in stays counted (for a day); a good one clears the name's record."""
    if succeeded:
        with session.begin():
            _forget_failures(session, *keys)


def from_address(address: str | None) -> dict:
    """The audit detail for where a sign-in (or sign-out) came from: `address` as the app took it
    (helpdesk.pages.auth.client_address), when there is one."""
    return {"address": address} if address else {}


def signed_in(session: Session, user: User, now: datetime, address: str | None = None,
              two_step: str | None = None) -> None:
    """Note when the user signed in, for the Users page, and that they did, from `address` (and
    how they passed two-step sign-in, if they have it), in the audit log."""
    with session.begin():
        session.execute(update(User).where(User.id == user.id).values(last_signed_in_at=now))
        audit(session, SIGNED_IN, user, Actor(user.username, user.id), now, **from_address(address),
              **({"two_step": two_step} if two_step else {}))


def sign_in_refused(session: Session, keys: tuple[str, ...], username: str, now: datetime,
                    address: str | None = None) -> int | None:
    """Record a refused sign-in against the user with this name, if there is one; their id, for
    the app's log (None for an unknown name, which is not recorded: it may be a password).

    Either way the same write is made, the refusal counted by begin_sign_in under keys[0] being
    written again, so that the time a refusal takes does not tell which usernames exist.
    """
    user = _user_named(session, normalise_username(username)[:64])
    with session.begin():
        session.execute(update(SignInFailure).where(SignInFailure.who == keys[0], SignInFailure.failed_at == now)
                        .values(failed_at=now))
        if user is not None:
            audit(session, SIGN_IN_REFUSED, user, Actor(user.username, user.id), now,
                  reason="wrong password" if user.active else "deactivated", **from_address(address))
    return None if user is None else user.id


def signed_out(session: Session, user: User, now: datetime, address: str | None = None) -> None:
    """End every session the user has, on every device, and record that they signed out."""
    with session.begin():
        session.execute(update(User).where(User.id == user.id).values(session_epoch=User.session_epoch + 1))
        audit(session, SIGNED_OUT, user, Actor(user.username, user.id), now, **from_address(address))


def user_id_named(session: Session, username: str) -> int | None:
    """The id of the user with this name, for the log (never the name typed: it may be a password)."""
    user = _user_named(session, normalise_username(username)[:64])
    return None if user is None else user.id


def _user_named(session: Session, username: str) -> User | None:
    """The user with this name; None, without asking the database, for a name no user can have
    (PostgreSQL refuses a NUL character in a query outright)."""
    name = normalise_username(username)
    if not USERNAME.match(name):
        return None
    with session.begin():
        return session.scalar(select(User).where(User.username == name))


def _forget_failures(session: Session, *keys: str) -> None:
    session.execute(delete(SignInFailure).where(SignInFailure.who.in_(keys)))


def forget_failures_of(session: Session, user: User, secret: str | bytes | None) -> None:
    """A new password lets the user straight back in after a run of wrong ones: those counted
    under their id, and under their name's digest when `secret` (SECRET_KEY) is known."""
    _forget_failures(session, f"user:{user.id}", *([_name_digest(user.username, secret)] if secret else []))


def existing_user(session: Session, username: str, lock: bool = False) -> User:
    """The user with this name, or UserError; with `lock`, read afresh and locked until the
    transaction ends (PostgreSQL)."""
    name = normalise_username(username)
    query = select(User).where(User.username == name)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    # A name no user can have is not asked for: one not UTF-8 (from a terminal) cannot be sent.
    user = session.scalar(query) if USERNAME.match(name) else None
    if user is None:
        raise UserError(f"there is no user {name!r}")
    return user


def set_password(session: Session, username: str, password: str, temporary: bool = False,
                 by: Actor | None = None) -> User:
    """Replace a user's password; sessions signed in with the old one stop working. With
    `temporary`, the user must choose their own at their next sign-in."""
    check_password(password, username)
    with session.begin():
        user = existing_user(session, username)
        user.password_hash = generate_password_hash(password)
        user.must_change_password = temporary
        # SECRET_KEY is set where the app runs, so the failures under the name's digest go too.
        forget_failures_of(session, user, os.environ.get("SECRET_KEY"))
        audit(session, PASSWORD_SET, user, by, temporary=temporary)
    log.info("password changed for user %s", user.username)
    return user


def set_display_name(session: Session, username: str, display_name: str | None, by: Actor | None = None) -> User:
    """Set (or, with nothing, clear) the name shown for a user."""
    return _set_detail(session, username, "display_name", check_display_name(display_name), NAME_CHANGED, "name", by)


def set_phone(session: Session, username: str, phone: str | None, by: Actor | None = None,
              now: datetime | None = None, since: datetime | None = None) -> User:
    """Set (or, with None, clear) the phone an agent's callbacks ring first, theirs from `now`, or
    from `since` if they have had it a while (phone_since_problem says which times may be given);
    not for a deactivated user (deactivate frees their phone) nor a DWP auditor. The phone they
    had is kept as a FormerPhone, theirs until then, so the calls they answered on it stay theirs.
    The same phone with another `since` changes only when they have had it from."""
    phone, now = check_phone(phone), now or now_utc()
    if since is not None and phone is None:
        raise UserError("a phone cleared has no time it was had from: give the phone they have had since then")
    with session.begin():
        user = existing_user(session, username)
        start = now if since is None else since
        if user.phone == phone and (since is None or since == user.phone_since):
            return user
        if not user.active and phone is not None:  # deactivating freed it: nothing of theirs to name
            raise UserError(f"{user.username!r} is deactivated: reactivate them first, then give them a phone")
        if user.role in PHONELESS_ROLES and phone is not None:
            raise PhoneRefused(f"{user.username!r} is a DWP auditor, who answers no calls, so has no phone")
        if since is not None:
            problem = phone_since_problem(session, user, phone, since, now)
            if problem:
                raise PhoneSinceRefused(problem)
        kept = user.phone == phone
        if user.phone and not kept:
            session.add(FormerPhone(user_id=user.id, phone=user.phone, since=user.phone_since, until=start))
        user.phone, user.phone_since = phone, start if phone else None
        # With `since`: when from, and whether it was the phone they had already.
        extra = {} if since is None else {"since": since.isoformat(), **({"kept": True} if kept else {})}
        audit(session, PHONE_CHANGED, user, by, now, phone=phone is not None, **extra)
    log.info("phone changed for user %s", user.username)
    return user


def phone_since_problem(session: Session, user: User, phone: str, since: datetime, now: datetime) -> str | None:
    """Why `user` cannot have had `phone` since `since`, or None: not after `now`; after they got
    the phone they have now, if it is another; and not while they had another (former_phones)."""
    from helpdesk.pages.format import format_date_time

    if since > now:
        return SINCE_IN_FUTURE
    if user.phone and user.phone != phone and user.phone_since is not None and since <= user.phone_since:
        return (f"they have had the phone they have now since {format_date_time(user.phone_since)}: "
                "give a time after that, when they changed phone")
    last_change = session.scalar(select(func.max(FormerPhone.until)).where(FormerPhone.user_id == user.id))
    if last_change is not None and since < last_change:
        return (f"they had another phone until {format_date_time(last_change)}: give a time from then on")
    return None


def set_email(session: Session, username: str, email: str | None, by: Actor | None = None) -> User:
    """Set (or, with None, clear) the address links to choose a password are sent to. Setting or
    clearing it ends any link sent to the old one."""
    email = check_email(email)

    def before(user: User) -> None:
        if email is not None:
            refuse_email_taken(session, email, user.id)
        session.execute(delete(PasswordLink).where(PasswordLink.user_id == user.id))

    try:
        return _set_detail(session, username, "email", email, EMAIL_CHANGED, "email", by, before)
    except IntegrityError:  # given to someone else between the check and the update
        raise EmailTaken(f"another user has the email address {email}") from None


def _set_detail(session: Session, username: str, column: str, value, action: str, what: str,
                by: Actor | None, before=None) -> User:
    """Set one of a user's details, checked already; the audit log has only whether `what` is now
    set. A value unchanged is neither stored nor recorded. `before(user)`, if given, runs first,
    in the same transaction."""
    with session.begin():
        user = existing_user(session, username)
        if getattr(user, column) == value:
            return user
        if before is not None:
            before(user)
        setattr(user, column, value)
        audit(session, action, user, by, **{what: bool(value)})
    log.info("%s changed for user %s", what, user.username)
    return user


def deactivate(session: Session, username: str, by: Actor | None = None, now: datetime | None = None
               ) -> tuple[User, bool]:
    """Stop a user signing in; their record stays for the audit trail. Their phone is freed: kept
    as a FormerPhone, theirs until now, so the calls they answered on it stay theirs and the calls
    answered on it from now on are not (it may go to someone else). Returns the user, and whether
    a phone was freed (PHONE_FREED says so)."""
    now = now or now_utc()
    with session.begin():
        user, admins = _locked_user(session, username)
        if not user.active:
            raise UserError(f"{user.username!r} is already deactivated")
        if _last_active_admin(user, admins):
            raise UserError(f"{user.username!r} is the last active administrator: add another one first")
        user.active = False
        # Their sessions end for good: reactivated, they sign in again. So do links emailed to them,
        # and their access tokens.
        user.session_epoch = User.session_epoch + 1
        session.execute(delete(PasswordLink).where(PasswordLink.user_id == user.id))
        from helpdesk.access_tokens import revoke_all

        tokens = revoke_all(session, now, user.id)
        # Their claims would otherwise hold those callbacks for good: give them back to the queue.
        from callbacks.claims import release_all

        released = release_all(session, user.id)
        freed = _free_phone(session, user, now)
        audit(session, DEACTIVATED, user, by, now, callbacks_released=released, **_revoked(tokens), **freed)
    log.info("user %s deactivated; %d claimed callbacks given back to the queue", user.username, released)
    return user, bool(freed)


def _free_phone(session: Session, user: User, now: datetime) -> dict:
    """Take `user`'s phone off them, kept as a FormerPhone, theirs until `now`: the calls they
    answered on it stay theirs, and those answered on it from now on are not. The audit detail
    that says so ({} with no phone)."""
    if not user.phone:
        return {}
    session.add(FormerPhone(user_id=user.id, phone=user.phone, since=user.phone_since, until=now))
    user.phone = user.phone_since = None
    return {"phone_freed": True}


def _revoked(tokens: int) -> dict:
    """The audit detail of access tokens revoked with a change (none: nothing said)."""
    return {"tokens_revoked": tokens} if tokens else {}


def _locked_user(session: Session, username: str) -> tuple[User, list[int]]:
    """The user, read afresh and locked until the transaction ends, for a change that depends on
    what they are now (their role, whether they are active); and the active administrators' ids.

    On PostgreSQL the active administrators' rows are locked first, always in the same order, then
    the user's: two such changes at once (two administrators deactivating each other, or the same
    user) run one after the other rather than deadlock, and the second sees the first's change.
    SQLite runs one writing transaction at a time anyway.
    """
    admins = session.scalars(select(User.id).where(User.role == "admin", User.active.is_(True)).order_by(User.id)
                             .with_for_update()).all()
    return existing_user(session, username, lock=True), admins


def _last_active_admin(user: User, active_admins: list[int]) -> bool:
    """Whether `user` is the only active administrator (`active_admins` as _locked_user read them)."""
    return user.role == "admin" and user.active and all(admin_id == user.id for admin_id in active_admins)


def reactivate(session: Session, username: str, by: Actor | None = None) -> User:
    """Let a deactivated user sign in again, with the password they had (set a new one if it
    might be known to others)."""
    with session.begin():
        user, _ = _locked_user(session, username)
        if user.active:
            raise UserError(f"{user.username!r} is not deactivated")
        user.active = True
        audit(session, REACTIVATED, user, by)
    log.info("user %s reactivated", user.username)
    return user


def set_role(session: Session, username: str, role: str, by: Actor | None = None, now: datetime | None = None
             ) -> tuple[User, bool]:
    """Change what a user may see and do. Their sessions end, so the new role holds from their
    next sign-in; callbacks they had claimed go back to the queue when the new role cannot work it.
    Made a DWP auditor, their phone is freed (as deactivate does). Returns the user, and whether a
    phone was freed (PHONE_FREED says so)."""
    role, now = check_role(role), now or now_utc()
    with session.begin():
        user, admins = _locked_user(session, username)
        if user.role == role:
            raise UserError(f"{user.username!r} has the role {role} already")
        if _last_active_admin(user, admins):
            raise UserError(f"{user.username!r} is the last active administrator: add another one first")
        before, user.role = user.role, role
        user.session_epoch = User.session_epoch + 1
        from helpdesk.access_tokens import revoke_all

        tokens = revoke_all(session, now, user.id)  # made for the old role, as sessions were
        released = 0
        if not user.has_role(*QUEUE_ROLES):
            from callbacks.claims import release_all

            released = release_all(session, user.id)
        freed = _free_phone(session, user, now) if role in PHONELESS_ROLES else {}
        audit(session, ROLE_CHANGED, user, by, now, before=before, after=role, callbacks_released=released,
              **_revoked(tokens), **freed)
    log.info("user %s role changed from %s to %s; %d claimed callbacks given back to the queue", user.username,
             before, role, released)
    return user, bool(freed)


def list_users(session: Session) -> list[User]:
    with session.begin():
        return list(session.scalars(select(User).order_by(User.username)))


@dataclass(frozen=True)
class Change:
    """A change to a user, as the audit log has it."""

    at: datetime
    actor: str  # the administrator, the user themself, or the system user of `helpdesk users`
    via: str  # "web" or "command line"
    username: str
    user_id: int
    words: str  # what was done, e.g. "role changed from Agent to Manager"
    own: bool  # made by the user themself (their own password), so no "by" to say


def user_changes(session: Session, user_id: int | None = None, limit: int = 50) -> list[Change]:
    """The latest changes to users (to one user, with `user_id`), newest first."""
    query = select(AuditEntry).where(AuditEntry.action.in_(USER_ACTIONS))
    if user_id is not None:
        # The detail is JSON with sorted keys: "user_id" is always followed by "via".
        query = query.where(AuditEntry.detail.contains(f'"user_id": {int(user_id)}, '))
    with session.begin():
        entries = list(session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)))
    changes = []
    for entry in entries:
        detail = json.loads(entry.detail)
        changes.append(Change(at=entry.at, actor=entry.actor, via=detail.get("via", ""), username=detail["user"],
                              user_id=detail["user_id"], words=change_words(entry.action, detail),
                              own=own_doing(entry.action, detail)))
    return changes


def own_doing(action: str, detail: dict) -> bool:
    """Whether the user did this themself (their own password, a link they asked for), so that
    there is nobody else to name as having done it."""
    return action in (PASSWORD_CHANGED, PASSWORD_CHOSEN_WITH_LINK, TWO_STEP_ON, RECOVERY_CODES_MADE, TOKEN_MADE) or (
        action == PASSWORD_LINK_SENT and bool(detail.get("asked"))) or (
        action in (TWO_STEP_OFF, TOKEN_REVOKED, AGENTS_PIN_SET) and bool(detail.get("own")))


def change_words(action: str, detail: dict) -> str:
    from helpdesk.pages.format import role_label

    released = detail.get("callbacks_released") or 0
    given_back = f"; {released} claimed callback{'' if released == 1 else 's'} back to the queue" if released else ""
    tokens = detail.get("tokens_revoked") or 0
    given_back += f"; {tokens} access token{'' if tokens == 1 else 's'} revoked" if tokens else ""
    freed = "; phone freed" if detail.get("phone_freed") else ""  # deactivated, or made a DWP auditor
    if action == ADDED:
        phone = f"a phone, theirs since {_since_words(detail['since'])}" if detail.get("since") else "a phone"
        having = " and ".join(what for key, what in (("phone", phone), ("email", "an email address"))
                              if detail.get(key))
        return (f"added as {role_label(detail.get('role'))}"
                + (", to choose their password with an emailed link" if detail.get("link")
                   else ", with a password for their first sign-in only" if detail.get("temporary") else "")
                + (f", with {having}" if having else ""))
    if action == PASSWORD_SET:
        return "password set for their next sign-in only" if detail.get("temporary") else "password set"
    if action == PASSWORD_CHANGED:
        return "changed their own password"
    if action == DEACTIVATED:
        return f"deactivated{freed}{given_back}"
    if action == REACTIVATED:
        return "reactivated"
    if action == ROLE_CHANGED:
        return (f"role changed from {role_label(detail.get('before'))} to {role_label(detail.get('after'))}"
                f"{freed}{given_back}")
    if action == NAME_CHANGED:
        return "name changed" if detail.get("name") else "name cleared"
    if action == EMAIL_CHANGED:
        return "email address set" if detail.get("email") else "email address cleared"
    if action == PASSWORD_LINK_SENT:
        return ("asked for a link to choose a new password" if detail.get("asked")
                else "emailed a link to choose a password")
    if action == PASSWORD_CHOSEN_WITH_LINK:
        return "chose a password with an emailed link"
    if action == TWO_STEP_ON:
        return "set up two-step sign-in"
    if action == TWO_STEP_OFF:
        return "turned off their two-step sign-in" if detail.get("own") else "two-step sign-in turned off"
    if action == RECOVERY_CODES_MADE:
        return "made new recovery codes"
    if action == TOKEN_MADE:
        return f"made the access token “{detail.get('token', '?')}”, for {detail.get('days', '?')} days"
    if action == TOKEN_REVOKED:
        return (f"revoked their access token “{detail.get('token', '?')}”" if detail.get("own")
                else f"access token “{detail.get('token', '?')}” revoked")
    if action == AGENTS_PIN_SET:
        return "set their own PIN for the agents' line" if detail.get("own") else "PIN for the agents' line set"
    if action == AGENTS_PIN_LOCKED:
        return f"PIN for the agents' line locked after {detail.get('wrong', '?')} wrong PINs on the phone"
    if detail.get("since"):
        return f"phone {'unchanged' if detail.get('kept') else 'set'}, theirs since {_since_words(detail['since'])}"
    return "phone set" if detail.get("phone") else "phone cleared"


def _since_words(since: str) -> str:
    """The time a phone was theirs from, as an audit entry keeps it (ISO), in UK time."""
    from helpdesk.pages.format import format_date_time

    return format_date_time(datetime.fromisoformat(since))
