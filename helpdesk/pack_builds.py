"""One evidence pack at a time for each user's scripts (helpdesk.pages.api).

A pack is built inside its request, holding a web worker for as long as it takes (up to half
a minute for a quarter of a busy year). A script on a loop, or several scripts with one user's
tokens, could otherwise hold every worker and leave none for the pages. So a build first
claims its user's row in `pack_builds`, in a transaction of its own that every worker sees; a
second request for the same user meanwhile is refused (Busy), and its script is told to try
again later. The row goes when the pack is built, or fails to be. A worker killed in the middle
leaves its row behind: it stops counting after STALE_AFTER, and the next request takes it over.

The Evidence page is not limited here: a second click on its button, refused, would lose the
first click's pack in the browser. Its own script ignores a second click while a pack is built
(static/evidence.js).
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError

from helpdesk.db import Database
from helpdesk.dbutil import insert_ignoring_conflicts
from helpdesk.models import PackBuild

log = logging.getLogger(__name__)

# Longer than any pack the web builds takes (a quarter of a busy year: about 30 s), so a row
# only this old is one whose worker died; the next request then takes it over.
STALE_AFTER = timedelta(minutes=10)
# What a refused script is told to wait (Retry-After), in seconds; curl's --retry honours it.
RETRY_AFTER_SECONDS = 30
# How often a claim is tried while the row it met goes before it can be read.
CLAIM_TRIES = 3


class Busy(Exception):
    """A pack is being built for this user already, since `started_at`."""

    def __init__(self, started_at: datetime):
        super().__init__(f"a pack is being built for this user since {started_at.isoformat()}")
        self.started_at = started_at


@contextmanager
def one_at_a_time(database: Database, user_id: int, now: datetime) -> Iterator[None]:
    """Hold `user_id`'s build for the block; Busy (at once, before the block) while another runs."""
    claim = secrets.token_hex(16)
    with database.session() as session, session.begin():
        row = {"user_id": user_id, "claim": claim, "started_at": now}
        for _ in range(CLAIM_TRIES):
            if session.execute(insert_ignoring_conflicts(session, PackBuild, row)).rowcount:
                break
            if session.execute(
                    update(PackBuild).where(PackBuild.user_id == user_id, PackBuild.started_at <= now - STALE_AFTER)
                    .values(claim=claim, started_at=now)).rowcount:
                log.warning("took over user %d's evidence pack build left from over %s ago", user_id, STALE_AFTER)
                break
            started_at = session.scalar(select(PackBuild.started_at).where(PackBuild.user_id == user_id))
            if started_at is not None:
                raise Busy(started_at)
            # The other build ended between the insert and this read: claim again.
        else:
            raise Busy(now)  # builds ending and starting that fast: this one can wait its turn
    try:
        yield
    finally:
        try:
            with database.session() as session, session.begin():
                session.execute(delete(PackBuild).where(PackBuild.user_id == user_id, PackBuild.claim == claim))
        except SQLAlchemyError:  # the pack is made: its row stops counting after STALE_AFTER
            log.exception("could not release user %d's evidence pack build", user_id)
