"""Access tokens: what a script gives, in its request's Authorization header, to download
evidence packs (helpdesk.pages.api) with nobody there to type a password and a two-step code.

An auditor or a manager makes one for themself on Access tokens, after their password; it is
shown once. It holds a random secret, and the database keeps only its SHA-256, so a copy of the
database opens nothing. It lasts as long as they chose (LIFETIMES), or until it is revoked: by
them, or an administrator; all of a user's are revoked when they are deactivated or their role
changes, and everybody's once a restore is recorded (helpdesk.restore), as one revoked in the
window the database lost would work again.

A token acts for its user only while the pages would let them download a pack: active, an
auditor or a manager, with their own password chosen, and with two-step sign-in set up when
their role must have it. Each download is an evidence export in the audit log, naming the token.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from helpdesk.models import AccessToken, User
from helpdesk.models.user import EVIDENCE_ROLES
from helpdesk.two_step import still_to_set_up
from helpdesk.user_rules import UserError, is_text
from helpdesk.users import TOKEN_MADE, TOKEN_REVOKED, Actor, audit, from_address

log = logging.getLogger(__name__)

PREFIX = "hdt_"  # so that a token is known for what it is in a file or a secret scanner's findings
LIFETIMES = (30, 90, 180, 365)  # days a token may last
DEFAULT_DAYS = 90
MOST_LIVE = 10  # a user's tokens neither revoked nor run out
LONGEST_NAME = 60
# A token is PREFIX and 43 characters of base64url (token_urlsafe(32)); anything else is no token.
TOKEN = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_-]{43}\Z")


class TokenRefused(Exception):
    """The token does not let its request through; the message says why, for the script's owner.
    `status`: 401 when the token itself is no good, 403 when its user may not do this now."""

    def __init__(self, message: str, status: int = 401, token_id: int | None = None):
        super().__init__(message)
        self.status = status
        self.token_id = token_id


@dataclass(frozen=True)
class MadeToken:
    """A token just made: its secret (shown once, never stored) and its record."""

    secret: str
    token: AccessToken


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str | None) -> str:
    """A token's name as stored (what it is for: "Monthly pack for DWP"), or UserError."""
    name = " ".join((name or "").split())
    if not name:
        raise UserError("give the token a name, saying what it is for (for example “Monthly pack for DWP”)")
    if len(name) > LONGEST_NAME:
        raise UserError(f"the name is too long: use at most {LONGEST_NAME} characters")
    if not name.isprintable() or not is_text(name):
        raise UserError("the name has a control character: use letters, digits, spaces and punctuation")
    return name


def check_days(days) -> int:
    """How many days a token lasts: one of LIFETIMES, or UserError."""
    try:
        days = int(days)
    except (TypeError, ValueError):
        days = None
    if days not in LIFETIMES:
        raise UserError(f"choose how long the token lasts: {', '.join(str(d) for d in LIFETIMES)} days")
    return days


def make_token(session: Session, user: User, name: str, days: int, now: datetime,
               address: str | None = None) -> MadeToken:
    """A new token for `user` (an auditor or a manager), named `name`, lasting `days`; recorded in
    the audit log. UserError when the name or days break the rules, the user has MOST_LIVE
    tokens already, or one of that name. Owns the transaction."""
    name, days = check_name(name), check_days(days)
    secret = new_secret()
    with session.begin():
        user = session.get(User, user.id, populate_existing=True, with_for_update=True)
        if user is None or not user.active:
            raise UserError("there is no such user")
        if user.role not in EVIDENCE_ROLES:
            raise UserError("only auditors and managers download evidence packs, so only they make access tokens")
        live = list(session.scalars(_live(user.id, now)))
        if len(live) >= MOST_LIVE:
            raise UserError(f"you have {MOST_LIVE} access tokens already: revoke one you no longer use first")
        if any(token.name.casefold() == name.casefold() for token in live):
            raise UserError(f"you have an access token named “{name}” already: give this one another name")
        token = AccessToken(user_id=user.id, name=name, digest=digest(secret), hint=secret[-4:], created_at=now,
                            expires_at=now + timedelta(days=days))
        session.add(token)
        session.flush()
        audit(session, TOKEN_MADE, user, Actor(user.username, user.id), now, token=name, token_id=token.id,
              days=days, **from_address(address))
    session.expunge(token)
    log.info("user %s made access token %d for %d days", user.username, token.id, days)
    return MadeToken(secret, token)


def _live(user_id: int, now: datetime):
    return select(AccessToken).where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None),
                                     AccessToken.expires_at > now)


def live_tokens(session: Session, user_id: int, now: datetime) -> list[AccessToken]:
    """The user's tokens neither revoked nor run out, newest first."""
    with session.begin():
        tokens = list(session.scalars(_live(user_id, now).order_by(AccessToken.created_at.desc(),
                                                                    AccessToken.id.desc())))
        session.expunge_all()
    return tokens


def revoke(session: Session, user: User, token_id: int, by: Actor, now: datetime,
           address: str | None = None) -> AccessToken:
    """Revoke `user`'s token `token_id` (by them, or an administrator); recorded in the audit log.
    UserError when they have no such token still working."""
    with session.begin():
        token = session.scalar(select(AccessToken).where(AccessToken.id == token_id, AccessToken.user_id == user.id))
        if token is None:
            raise UserError("there is no such access token")
        revoked = session.execute(update(AccessToken).where(AccessToken.id == token.id,
                                                            AccessToken.revoked_at.is_(None))
                                  .values(revoked_at=now)).rowcount
        if not revoked:
            raise UserError(f"the access token “{token.name}” was revoked already")
        own = {"own": True} if by.user_id == user.id else {}
        audit(session, TOKEN_REVOKED, user, by, now, token=token.name, token_id=token.id, **own,
              **from_address(address))
        session.refresh(token)
    session.expunge(token)
    log.info("access token %d of user %s revoked", token.id, user.username)
    return token


def revoke_all(session: Session, now: datetime, user_id: int | None = None) -> int:
    """Revoke every token still working, of one user or (None) of everybody, in the caller's
    transaction; how many."""
    query = update(AccessToken).where(AccessToken.revoked_at.is_(None), AccessToken.expires_at > now)
    if user_id is not None:
        query = query.where(AccessToken.user_id == user_id)
    return session.execute(query.values(revoked_at=now)).rowcount


def token_user(session: Session, presented: str, now: datetime, two_step_for: tuple[str, ...]
               ) -> tuple[User, AccessToken]:
    """The user a token presented acts for, and the token, its use recorded; or TokenRefused.
    `two_step_for`: the roles that must have two-step sign-in ([web] two_step_for)."""
    if not TOKEN.match(presented):
        raise TokenRefused("that is not an access token: make one on the Access tokens page, and send it as "
                           "“Authorization: Bearer hdt_...”")
    with session.begin():
        token = session.scalar(select(AccessToken).where(AccessToken.digest == digest(presented)))
        if token is None:
            raise TokenRefused("the access token is not known: check it was copied whole, or make a new one")
        if token.revoked_at is not None:
            raise TokenRefused("the access token has been revoked: make a new one", token_id=token.id)
        if token.expires_at <= now:
            raise TokenRefused("the access token has run out: make a new one", token_id=token.id)
        user = session.get(User, token.user_id)
        if not user.active:
            raise TokenRefused("the access token's user is deactivated", token_id=token.id)
        if user.role not in EVIDENCE_ROLES:
            raise TokenRefused("the access token's user is no longer an auditor or a manager", 403, token.id)
        if user.must_change_password:
            raise TokenRefused("the access token's user has a password to choose: they sign in and choose it, "
                               "then the token works again", 403, token.id)
        if still_to_set_up(user, two_step_for):
            raise TokenRefused("the access token's user must set up two-step sign-in: they sign in and set it up, "
                               "then the token works again", 403, token.id)
        token.last_used_at = now
    session.expunge(token)
    session.expunge(user)
    return user, token
