"""Request-time access to the app's settings, database and clock."""
from __future__ import annotations

from datetime import datetime

from flask import current_app
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
