"""Request-time access to the app's settings, database and clock."""
from __future__ import annotations

import re
from datetime import datetime

from flask import current_app, url_for
from werkzeug.routing import BaseConverter, ValidationError

from helpdesk.clock import now_utc
from helpdesk.db import Database
from helpdesk.settings import Settings


def settings() -> Settings:
    return current_app.extensions["helpdesk.settings"]


def database() -> Database:
    return current_app.extensions["helpdesk.db"]


def clock() -> datetime:
    """Now, from the app's clock (tests may set CLOCK to a callable)."""
    return current_app.config.get("CLOCK", now_utc)()


MAX_ROW_ID = 2**31 - 1
# Built into an address in place of a row's value: past MAX_ROW_ID, so no row's id, and digits only,
# which no converter changes and no page argument (a count, a filter's name, "yes") holds.
_SLOT = 98765432109
# Characters the default converter leaves as they are (a call SID is made of them).
_AS_IS = re.compile(r"[A-Za-z0-9_.~-]+")


class RowHrefs:
    """`url_for(endpoint, <its one argument>=value, **args)` for each row of a list, at the cost
    of one `url_for` for the whole list.

    Werkzeug took about 20 µs to build an address, and the agents' page has a thousand, for the
    actions on each callback, call and email. A row's id (an int) and a call's SID (letters and
    digits) come out of the route's converter as they go in, so they are put where the slot was;
    any other value goes through `url_for`.
    """

    def __init__(self, endpoint: str, **args: str | int):
        (rule,) = current_app.url_map.iter_rules(endpoint)
        (self.key,) = rule.arguments - args.keys()
        self.endpoint, self.args = endpoint, args
        self.head, slot, self.tail = url_for(endpoint, **{self.key: _SLOT}, **args).partition(str(_SLOT))
        if not slot:
            raise ValueError(f"{endpoint}: the row's value is not in its address as given")

    def __call__(self, value: str | int) -> str:
        if (type(value) is int and value >= 0) or (isinstance(value, str) and _AS_IS.fullmatch(value)):
            return f"{self.head}{value}{self.tail}"
        return url_for(self.endpoint, **{self.key: value}, **self.args)


class RowId(BaseConverter):
    """`<id:name>` in a route: a row's id, in ASCII digits, small enough for any database.

    Flask's `<int:...>` takes any length, so an id of 2**63 reached the database and failed
    there with a 500 (and it takes other scripts' digits): such a path is a 404 instead. So is
    one past 2**31 - 1, the largest id PostgreSQL's integer columns hold (it failed there too).
    """

    regex = r"[0-9]{1,10}"

    def to_python(self, value: str) -> int:
        if int(value) > MAX_ROW_ID:
            raise ValidationError()
        return int(value)

    def to_url(self, value: int) -> str:
        return str(int(value))
