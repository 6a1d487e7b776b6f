"""Who took an answered call, from the phone its agent leg rang (a number, SIP address or Twilio
Client identity, as Twilio's `To` gave it): the user a Client identity names (client:alice is
user alice), or the users whose phone (for "Call back now") is that endpoint. By the usernames
and phones users have now. The enquiry's story, the agents' queue page and the Calls page say it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk.models import Call, User
from helpdesk.pages import format as fmt

# A phone number in a dial target ("+447700900123", "sip:+447700900123@pbx.example.org"): masked.
NUMBER_IN_ENDPOINT = re.compile(r"\+?[0-9]{6,}")


def own_endpoints(username: str, phone: str | None) -> list[str]:
    """The endpoints, lower case, that are this user's: their Client identity (usernames are lower
    case already) and their phone."""
    return sorted({f"client:{username}"} | ({phone.strip().lower()} if phone and phone.strip() else set()))


def phone_book(users: Iterable[User]) -> dict[str, list[User]]:
    """Each endpoint (lower case) that is some user's, and whose it is, by name."""
    book: dict[str, list[User]] = {}
    for user in users:
        for endpoint in own_endpoints(user.username, user.phone):
            book.setdefault(endpoint, []).append(user)
    return {endpoint: sorted(found, key=name) for endpoint, found in book.items()}


def takers(endpoint: str | None, book: dict[str, list[User]]) -> list[User]:
    """The users `endpoint` is the phone of (`book`: phone_book), by name; none for a phone nobody has."""
    return book.get(endpoint.strip().lower(), []) if endpoint else []


def name(user: User) -> str:
    return user.display_name or user.username


def shown_endpoint(endpoint: str) -> str:
    """The endpoint with any phone number in it masked."""
    return NUMBER_IN_ENDPOINT.sub(lambda found: fmt.mask_number(found.group()), endpoint)


def in_words(names: list[str]) -> str:
    """"Alice A", "Alice A or Bob A", "Alice A, Bob A or Carol A"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def answered_by(endpoint: str | None, book: dict[str, list[User]], me: int) -> str:
    """Who took the call, for the agents' queue page: "You" for user `me` (first, if the phone is
    others' too), their names, or the phone, masked, that nobody has."""
    if not endpoint:
        return "Not known"
    found = takers(endpoint, book)
    if not found:
        return shown_endpoint(endpoint)
    names = (["You"] if any(user.id == me for user in found) else []) + [name(user) for user in found if user.id != me]
    return in_words(names)


def answered_by_each(session: Session, calls: Iterable[Call], me: int) -> dict[str, str] | None:
    """A page's "Answered by" column: `answered_by` for each answered call among `calls`, by its
    SID; None when no call says which phone took it (calls reach agents through a queue), so the
    page has no such column. Reads the users only then, inside a transaction of `session`."""
    calls = list(calls)
    if not any(call.agent for call in calls):
        return None
    with session.begin():
        book = phone_book(session.scalars(select(User)))
        return {call.call_sid: answered_by(call.agent, book, me) for call in calls if call.outcome == "answered"}
