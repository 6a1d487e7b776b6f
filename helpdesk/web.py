"""Request-time access to the app's settings, database and clock."""
from __future__ import annotations

from datetime import datetime

from flask import current_app

from helpdesk.clock import now_utc
from helpdesk.config import Settings
from helpdesk.db import Database


def settings() -> Settings:
    return current_app.extensions["helpdesk.settings"]


def database() -> Database:
    return current_app.extensions["helpdesk.db"]


def clock() -> datetime:
    """Now, from the app's clock (tests may set CLOCK to a callable)."""
    return current_app.config.get("CLOCK", now_utc)()
