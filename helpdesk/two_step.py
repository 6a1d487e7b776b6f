"""Two-step sign-in: after the password, a code from an authenticator app on the user's phone, or
one of their recovery codes (the rules are in helpdesk.two_step_rules).

A user sets it up themself (helpdesk.pages.two_step); the roles in `[web] two_step_for` must.
An administrator can turn it off for a user who has lost their phone and their recovery codes:
they set it up again when they next sign in, if their role must have it.

The app's key is stored as it is, as the app needs it to make each code: a copy of the
database still needs each user's password. Recovery codes are stored only as digests.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from helpdesk.models import RecoveryCode, User
from helpdesk.own_password import counted_as_sign_in
from helpdesk.two_step_rules import app_code_step, looks_like_app_code, new_recovery_codes, recovery_digest
from helpdesk.user_rules import UserError
from helpdesk.users import RECOVERY_CODES_MADE, TWO_STEP_OFF, TWO_STEP_ON, Actor, audit, existing_user, from_address

log = logging.getLogger(__name__)

# How a sign-in's second step was passed, for the audit log.
BY_APP, BY_RECOVERY_CODE = "app", "recovery code"


class CodeWrong(Exception):
    """The code typed is not the app's code (nor, where taken, a recovery code still unused)."""


def still_to_set_up(user: User, two_step_for: tuple[str, ...]) -> bool:
    """Whether `user`'s role must have two-step sign-in (`two_step_for`: [web] two_step_for) and
    they have not set it up yet: until they do, they may do nothing else, on the pages or with an
    access token."""
    return user.role in two_step_for and not user.has_two_step


def turn_on(session: Session, user: User, secret: str, typed: str, now: datetime,
            address: str | None = None) -> list[str]:
    """Set up two-step sign-in for `user` with the app's key `secret`, once `typed` shows the app
    has it; returns their new recovery codes, which are shown once and never again. CodeWrong if
    the code is not the app's; UserError if it is set up already (in another tab)."""
    step = app_code_step(secret, typed, now, None)
    if step is None:
        raise CodeWrong("that is not the code the app shows")
    codes = new_recovery_codes()
    with session.begin():
        turned = session.execute(update(User).where(User.id == user.id, User.two_step_secret.is_(None))
                                 .values(two_step_secret=secret, two_step_since=now, two_step_last_step=step)
                                 ).rowcount
        if not turned:
            raise UserError("two-step sign-in is set up already")
        _replace_codes(session, user.id, codes, now)
        audit(session, TWO_STEP_ON, user, Actor(user.username, user.id), now, **from_address(address))
    log.info("user %s set up two-step sign-in", user.username)
    return codes


def passed(session: Session, user_id: int, typed: str, now: datetime) -> str | None:
    """How `typed` passes the second step for this user (BY_APP, BY_RECOVERY_CODE), or None.

    Each of the app's codes is taken once, and each recovery code: the update that takes it is
    made only over what was read, so two requests with the same code cannot both pass.
    """
    with session.begin():
        user = session.get(User, user_id, populate_existing=True)
        if user is None or user.two_step_secret is None:
            return None
        if looks_like_app_code(typed):
            step = app_code_step(user.two_step_secret, typed, now, user.two_step_last_step)
            if step is None:
                return None
            taken = session.execute(update(User).where(
                User.id == user_id, or_(User.two_step_last_step.is_(None), User.two_step_last_step < step))
                .values(two_step_last_step=step)).rowcount
            return BY_APP if taken else None
        used = session.execute(update(RecoveryCode).where(
            RecoveryCode.user_id == user_id, RecoveryCode.digest == recovery_digest(typed),
            RecoveryCode.used_at.is_(None)).values(used_at=now)).rowcount
        return BY_RECOVERY_CODE if used else None


def passed_counted(session: Session, user: User, typed: str, secret: str | bytes, now: datetime) -> str | None:
    """`passed`, counted as a sign-in is, under the limit of refused ones (helpdesk.users): a
    wrong code stays counted, so a session left open, or a password known to someone else, gives
    no more tries at the code than at a password. TooManyWrongPasswords, before the code is
    checked, once the limit is reached (`secret`: SECRET_KEY, for sign_in_keys)."""
    return counted_as_sign_in(session, user, secret, now, lambda: passed(session, user.id, typed, now))


def codes_left(session: Session, user_id: int) -> int:
    """How many of the user's recovery codes are still unused."""
    with session.begin():
        return session.scalar(select(func.count()).select_from(RecoveryCode)
                              .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)))


def make_new_codes(session: Session, user: User, now: datetime, address: str | None = None) -> list[str]:
    """New recovery codes for `user` in place of all their old ones, used or not."""
    codes = new_recovery_codes()
    with session.begin():
        if session.scalar(select(User.two_step_secret).where(User.id == user.id)) is None:
            raise UserError("two-step sign-in is not set up")
        _replace_codes(session, user.id, codes, now)
        audit(session, RECOVERY_CODES_MADE, user, Actor(user.username, user.id), now, **from_address(address))
    log.info("user %s made new recovery codes", user.username)
    return codes


def turn_off(session: Session, username: str, by: Actor | None = None, now: datetime | None = None,
             address: str | None = None) -> User:
    """Turn two-step sign-in off for a user (themself, or an administrator for one who has lost
    their phone); their recovery codes go. UserError if it is not on."""
    with session.begin():
        user = existing_user(session, username, lock=True)
        if user.two_step_secret is None:
            raise UserError(f"{user.username!r} does not have two-step sign-in set up")
        user.two_step_secret = user.two_step_since = user.two_step_last_step = None
        session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        own = {"own": True} if by is not None and by.user_id == user.id else {}
        audit(session, TWO_STEP_OFF, user, by, now, **own, **from_address(address))
    log.info("two-step sign-in turned off for user %s", user.username)
    return user


def _replace_codes(session: Session, user_id: int, codes: list[str], now: datetime) -> None:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.add_all(RecoveryCode(user_id=user_id, digest=recovery_digest(code), created_at=now) for code in codes)
