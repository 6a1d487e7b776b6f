"""The PIN for the agents' line (queue mode's `routing.agents_pin`).

An agent's phone calls the agents' Voice URL to take the next caller; the app puts through only
a call from the phone of someone who works the queue. A caller ID can be faked, so with
`agents_pin` on, a call from a phone number or SIP address is also asked for that person's PIN
(4 to 8 digits, then #). A Twilio Client app is not asked: Twilio has checked who it is with the
access token the app was given.

The PIN is stored as a password is (a salted hash). Each call has PIN_TRIES tries; wrong PINs
count across calls, and at LOCK_AFTER in a row since the last right one the PIN is locked
(recorded in the audit log) until the user or an administrator sets a new one: whoever fakes a
caller ID cannot go on guessing. The PIN typed is never stored: the journal keeps the webhook
without its `Digits`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from helpdesk.models import User
from helpdesk.models.user import QUEUE_ROLES
from helpdesk.user_rules import UserError
from helpdesk.voice.call_events import NOT_AN_AGENT
from helpdesk.users import AGENTS_PIN_LOCKED, AGENTS_PIN_SET, Actor, audit, existing_user, from_address

log = logging.getLogger(__name__)

SHORTEST, LONGEST = 4, 8
PIN_TRIES = 3  # a call's tries, before it is hung up on
LOCK_AFTER = 5  # wrong PINs in a row, over any calls, before it locks
_PIN = re.compile(rf"[0-9]{{{SHORTEST},{LONGEST}}}")  # not \d: that takes any script's digits

# What the agents' line finds (pin_state, check_pin); or NOT_AN_AGENT, for nobody's phone.
ASK, RIGHT, WRONG, LOCKED, NOT_SET = "ask", "right", "wrong", "locked", "not_set"


def needs_pin(came_from: str) -> bool:
    """Whether a call from `came_from` (its `From`) is asked for a PIN: all but a Twilio Client
    app's, whose identity Twilio has checked."""
    return not came_from.startswith("client:")


def pin_problem(pin: str) -> str | None:
    """Why `pin` cannot be a PIN for the agents' line, or None."""
    if not _PIN.fullmatch(pin or ""):
        return f"must be {SHORTEST} to {LONGEST} digits (0 to 9), and nothing else"
    if len(set(pin)) == 1:
        return "must not be one digit over and over: it is the first PIN anyone tries"
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:])}
    if steps in ({1}, {9}):
        return "must not be a run of digits such as 1234 or 9876: it is among the first PINs anyone tries"
    return None


def set_pin(session: Session, username: str, pin: str, by: Actor | None = None, now: datetime | None = None,
            address: str | None = None) -> User:
    """Give the user `pin` for the agents' line (unlocking it); UserError if it is not a PIN, or
    their role does not take callers from the queue."""
    problem = pin_problem(pin)
    if problem:
        raise UserError(f"the PIN {problem}")
    with session.begin():
        user = existing_user(session, username, lock=True)
        if not user.has_role(*QUEUE_ROLES):
            raise UserError(f"{user.username!r} does not take callers from the queue, so has no PIN for the "
                            "agents' line")
        user.agents_pin_hash = generate_password_hash(pin)
        user.agents_pin_failures = 0
        own = {"own": True} if by is not None and by.user_id == user.id else {}
        audit(session, AGENTS_PIN_SET, user, by, now, **own, **from_address(address))
    log.info("PIN for the agents' line set for user %s", user.username)
    return user


def agents_at(session: Session, came_from: str) -> list[User]:
    """The active users who work the queue and have `came_from` (a call's `From`) as their phone
    or Client identity now: usually one; a desk phone may be several people's. Queue mode's
    agents' Voice URL puts no one else through to a caller. Inside the caller's transaction."""
    from helpdesk.pages.taken_by import read_phone_book, takers

    return [user for user in takers(came_from, read_phone_book(session))
            if user.active and user.has_role(*QUEUE_ROLES)]


def state_of(user: User) -> str:
    """NOT_SET, LOCKED, or ASK: whether a call from this user's phone can be asked for their PIN."""
    if user.agents_pin_hash is None:
        return NOT_SET
    return LOCKED if user.agents_pin_failures >= LOCK_AFTER else ASK


def _askable(agents: list[User]) -> list[User]:
    """Those of `agents` whose PIN can be typed: set, and not locked."""
    return [user for user in agents if state_of(user) == ASK]


def pin_state(agents: list[User]) -> str:
    """What the agents' line does with a call from the phone of `agents` (agents_at): NOT_AN_AGENT
    (nobody's), ASK for a PIN, or NOT_SET or LOCKED (nobody there has a PIN that can be typed)."""
    states = {state_of(user) for user in agents}
    if not states:
        return NOT_AN_AGENT
    if ASK in states:
        return ASK
    return NOT_SET if NOT_SET in states else LOCKED


@dataclass(frozen=True)
class Locked:
    """A user whose PIN a wrong one just locked, to be told (helpdesk.account_notices)."""

    username: str
    display_name: str | None
    email: str | None


@dataclass(frozen=True)
class Judged:
    """What a PIN typed is (judge_pin), before it is counted (count_pin)."""

    found: str  # RIGHT or WRONG; or NOT_SET or LOCKED when nobody's PIN can be typed (pin_state)
    whose: int | None = None  # RIGHT: the id of the user whose PIN it is
    guess: bool = False  # WRONG: a PIN was typed (nothing typed, or not a PIN at all, is not counted)


def judge_pin(agents: list[User], typed: str) -> Judged:
    """Whether `typed` is the PIN of one of `agents` (agents_at) whose PIN can be typed; nothing
    is written."""
    askable = _askable(agents)
    if not askable:
        return Judged(pin_state(agents))
    if not _PIN.fullmatch(typed or ""):
        return Judged(WRONG)
    for user in askable:
        if check_password_hash(user.agents_pin_hash, typed):
            return Judged(RIGHT, whose=user.id)
    return Judged(WRONG, guess=True)


def count_pin(session: Session, agents: list[User], judged: Judged, now: datetime,
              locked: list[Locked] | None = None) -> str:
    """Count what judge_pin found, in a transaction of `session` (the one `agents` were read
    with): a right PIN clears its user's wrong ones; a wrong guess adds one to each of `agents`
    whose PIN could be typed, and locks those it brings to LOCK_AFTER (audit log; added to
    `locked`, to be told). Returns what was found, or LOCKED once that locked them all."""
    if judged.found == RIGHT:
        with session.begin():
            session.execute(update(User).where(User.id == judged.whose).values(agents_pin_failures=0))
        return RIGHT
    if not judged.guess:
        return judged.found
    askable = _askable(agents)
    with session.begin():
        for user in askable:
            # Counted in the database, so two calls guessing at once each add theirs.
            session.execute(update(User).where(User.id == user.id)
                            .values(agents_pin_failures=User.agents_pin_failures + 1))
            session.refresh(user, ["agents_pin_failures"])
            if user.agents_pin_failures == LOCK_AFTER:
                audit(session, AGENTS_PIN_LOCKED, user, Actor("agents' line"), now, wrong=LOCK_AFTER, via="phone")
                if locked is not None:
                    locked.append(Locked(user.username, user.display_name, user.email))
                log.warning("PIN for the agents' line of user %s locked after %d wrong PINs", user.username,
                            LOCK_AFTER)
    return WRONG if _askable(askable) else LOCKED
