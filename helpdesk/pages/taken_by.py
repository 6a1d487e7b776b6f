"""Who took an answered call, from the phone its agent leg rang (a number, SIP address or Twilio
Client identity, as Twilio's `To` gave it): the user a Client identity names (client:alice is
user alice), or the users whose phone (for "Call back now") it was when the call was answered:
their phone now since they set it (users.phone_since), or one they had then (former_phones).
The enquiry's story, the agents' queue page and the Calls page say it.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import Call, FormerPhone, User
from helpdesk.pages import format as fmt

# A phone number in a dial target ("+447700900123", "sip:+447700900123@pbx.example.org"): masked.
NUMBER_IN_ENDPOINT = re.compile(r"\+?[0-9]{6,}")


@dataclass(frozen=True)
class Holding:
    """A user had the phone `endpoint` (as phone_of reads it) from `since` (None: as far back as
    is known) until `until` (None: still)."""
    endpoint: str
    user: User
    since: datetime | None = None
    until: datetime | None = None

    def at(self, moment: datetime | None) -> bool:
        """Whether the user had it at `moment` (None: now)."""
        if moment is None:
            return self.until is None
        return (self.since is None or self.since <= moment) and (self.until is None or moment < self.until)


def phone_of(endpoint: str) -> str:
    """The phone (lower case) a leg's endpoint rings: the endpoint itself; for a SIP address whose
    user part is a number in international format ("sip:+447700900123@pbx.example.org", with or
    without parameters), that number, so that it names the user whose phone that is; for another
    SIP address, the address without its parameters and headers ("sip:1001@pbx.example.org" for
    "sip:1001@pbx.example.org;transport=tls"), as a user's desk phone is the same phone with or
    without them. `callbacks.queue.answered_on_any` matches the same in SQL."""
    endpoint = endpoint.strip().lower()
    if endpoint.startswith("sip:"):
        user, at, host = endpoint[4:].partition("@")
        if at and user.startswith("+") and user[1:].isdigit() and user[1:].isascii():
            return user
        if at and user and host:
            return f"sip:{user}@{re.split(r'[;?]', host, maxsplit=1)[0]}"
    return endpoint


def holdings(user: User, former: Iterable[FormerPhone] = ()) -> list[Holding]:
    """The endpoints that are or were `user`'s, and when: their Client identity (usernames are lower
    case already) always, their phone since they set it, and their `former` phones."""
    found = [Holding(f"client:{user.username}", user)]
    if user.phone and user.phone.strip():
        found.append(Holding(phone_of(user.phone), user, user.phone_since))
    found += [Holding(phone_of(phone.phone), user, phone.since, phone.until) for phone in former
              if phone.phone.strip()]
    return found


def own_holdings(book: dict[str, list[Holding]], me: int) -> list[Holding]:
    """The endpoints that are or were user `me`'s, and when, from `book` (phone_book)."""
    return [holding for found in book.values() for holding in found if holding.user.id == me]


def phone_book(users: Iterable[User], former: Iterable[FormerPhone] = ()) -> dict[str, list[Holding]]:
    """Each phone (as phone_of reads it) that is or was some user's, and whose, and when."""
    theirs: dict[int, list[FormerPhone]] = {}
    for phone in former:
        theirs.setdefault(phone.user_id, []).append(phone)
    book: dict[str, list[Holding]] = {}
    for user in users:
        for holding in holdings(user, theirs.get(user.id, ())):
            book.setdefault(holding.endpoint, []).append(holding)
    return book


def read_phone_book(session: Session) -> dict[str, list[Holding]]:
    """`phone_book` of every user, inside the caller's transaction of `session`."""
    return phone_book(session.scalars(select(User)), session.scalars(select(FormerPhone)))


def takers(endpoint: str | None, book: dict[str, list[Holding]], moment: datetime | None = None) -> list[User]:
    """The users `endpoint` was the phone of at `moment` (None: now), by name (`book`:
    phone_book); none for a phone nobody had then."""
    if not endpoint:
        return []
    found = {holding.user.id: holding.user for holding in book.get(phone_of(endpoint), []) if holding.at(moment)}
    return sorted(found.values(), key=name)


def name(user: User) -> str:
    return user.display_name or user.username


def shown_endpoint(endpoint: str) -> str:
    """The endpoint with any phone number in it masked."""
    return NUMBER_IN_ENDPOINT.sub(lambda found: fmt.mask_number(found.group()), endpoint)


def shown_phone(phone: str, mask: Callable[[str], str] = fmt.mask_number) -> str:
    """A user's phone as the Users pages and `helpdesk users list` show it: a number masked (with
    `mask`), a SIP address with any phone number in it masked ("sip:1001@pbx.example.org" as
    it is: a desk phone's extension is no one's own number)."""
    return shown_endpoint(phone) if phone.startswith("sip:") else mask(phone)


def in_words(names: list[str]) -> str:
    """"Alice A", "Alice A or Bob A", "Alice A, Bob A or Carol A"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def answered_by(endpoint: str | None, book: dict[str, list[Holding]], me: int, moment: datetime | None) -> str:
    """Who took the call answered at `moment`, for the agents' queue page: "You" for user `me`
    (first, if the phone was others' too), their names, or the phone, masked, that nobody had."""
    if not endpoint:
        return "Not known"
    found = takers(endpoint, book, moment)
    if not found:
        return shown_endpoint(endpoint)
    names = (["You"] if any(user.id == me for user in found) else []) + [name(user) for user in found if user.id != me]
    return in_words(names)


def answered_by_each(session: Session, calls: Iterable[Call], me: int,
                     book: dict[str, list[Holding]] | None = None) -> dict[str, str] | None:
    """A page's "Answered by" column: `answered_by` for each answered call among `calls`, by its
    SID; None when no call says which phone took it (calls taken from a queue before 0.28.0,
    whose agents' calls were not journalled), so the page has no such column. Reads the users
    only then, and only if not given their `book` (phone_book), inside a transaction of
    `session`."""
    calls = list(calls)
    if not any(call.agent for call in calls):
        return None
    if book is None:
        with session.begin():
            book = read_phone_book(session)
    return {call.call_sid: answered_by(call.agent, book, me, call.answer_moment) for call in calls
            if call.outcome == "answered"}
