"""A signed-in user changing their own password (the Change your password page).

The current password is checked as a sign-in's is (helpdesk.users), and counted against the
same limit of wrong passwords: a session left open on a shared desk cannot be used to guess
the password, nor to change it without knowing it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from helpdesk.models import User
from helpdesk.user_rules import UserError, check_password
from helpdesk.users import (PASSWORD_CHANGE_REFUSED, PASSWORD_CHANGED, SIGN_IN_REFUSED, Actor, audit, authenticate,
                            begin_sign_in, finish_sign_in, from_address, sign_in_keys)

log = logging.getLogger(__name__)
Checked = TypeVar("Checked")


class PasswordNotChanged(Exception):
    """What is wrong, by form field: current_password, new_password or new_password_again."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(problems.values()))
        self.problems = problems


class TooManyWrongPasswords(Exception):
    """The limit of wrong passwords was reached: nothing was checked; try again after `until`."""

    def __init__(self, until: datetime):
        super().__init__(f"too many wrong passwords: try again after {until.isoformat()}")
        self.until = until


def sentence(problem: Exception) -> str:
    """A rule's message ("the password is too short: ...") as a page shows it: a sentence."""
    text = str(problem)
    return text[:1].upper() + text[1:] + "."


def password_confirmed(session: Session, user: User, typed: str, secret: str | bytes, now: datetime,
                       address: str | None = None, page: str | None = None) -> User | None:
    """`user`, read afresh, when `typed` is their password; else None, counted as a refused sign-in
    and recorded in the audit log as PASSWORD_CHANGE_REFUSED (or SIGN_IN_REFUSED on another `page`,
    named in it), so that a session left open being used to guess the password shows. Raises
    TooManyWrongPasswords before checking anything once the sign-in limit is reached."""
    try:
        checked = counted_as_sign_in(session, user, secret, now, lambda: authenticate(session, user.username, typed))
    except TooManyWrongPasswords:
        log.warning("%s refused unheard for user id %s: too many wrong passwords", _what(page), user.id)
        raise
    if checked is None:
        log.info("%s refused for user id %s: the password was wrong", _what(page), user.id)
        action, detail = ((PASSWORD_CHANGE_REFUSED, {"reason": "wrong current password"}) if page is None
                          else (SIGN_IN_REFUSED, {"reason": "wrong password", "page": page}))
        with session.begin():
            audit(session, action, user, Actor(user.username, user.id), now, **detail, **from_address(address))
    return checked


def counted_as_sign_in(session: Session, user: User, secret: str | bytes, now: datetime,
                       check: Callable[[], Checked | None]) -> Checked | None:
    """What `check` finds (a password, a two-step code), counted as a sign-in is, under the limit
    of refused ones (helpdesk.users): None counts as refused. TooManyWrongPasswords, before
    `check` runs, once the limit is reached (`secret`: SECRET_KEY, for sign_in_keys)."""
    keys = sign_in_keys(session, user.username, secret)
    blocked = begin_sign_in(session, keys, now)
    if blocked is not None:
        raise TooManyWrongPasswords(blocked)
    checked = check()
    finish_sign_in(session, keys, succeeded=checked is not None)
    return checked


def _what(page: str | None) -> str:
    return "password change" if page is None else f"password check on {page}"


def change_own_password(session: Session, user: User, current: str, new: str, again: str, secret: str | bytes,
                        now: datetime, address: str | None = None) -> None:
    """Give `user` the password `new` in place of `current`, typed twice (`again`).

    Raises TooManyWrongPasswords before checking anything once the sign-in limit is reached,
    or PasswordNotChanged with every problem found: the current password wrong (counted as a
    refused sign-in, and recorded in the audit log), the new one breaking the password rules or the same as the current one,
    or typed differently the second time (`address`: where the form came from, for the audit
    log). Sessions signed in with the old password end (see
    helpdesk.pages.access.password_mark); the caller keeps its own.
    """
    checked = password_confirmed(session, user, current, secret, now, address)
    problems: dict[str, str] = {}
    if checked is None:
        problems["current_password"] = "Your current password is wrong."
    try:
        check_password(new, user.username)
    except UserError as problem:
        problems["new_password"] = sentence(problem)
    else:
        if checked is not None and new == current:  # not when what was typed there is not their password
            problems["new_password"] = "The new password is the same as your current one. Choose a different one."
        elif again != new:
            problems["new_password_again"] = "The new password was not the same the second time. Type it again."
    if problems:
        raise PasswordNotChanged(problems)
    with session.begin():
        # Only over the password just checked: one changed meanwhile (an administrator's
        # `helpdesk users set-password`, or this form in another tab) is not overwritten.
        changed = session.execute(update(User).where(User.id == checked.id,
                                                     User.password_hash == checked.password_hash)
                                  .values(password_hash=generate_password_hash(new), must_change_password=False)
                                  ).rowcount
        if changed:
            audit(session, PASSWORD_CHANGED, checked, Actor(checked.username, checked.id), now)
    if not changed:
        raise PasswordNotChanged({"current_password": "Your password was changed meanwhile, in another tab or by "
                                                      "an administrator, so this change was not made."})
    log.info("user %s changed their password", user.username)
