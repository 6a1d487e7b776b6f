"""Claiming a callback owed, so that two agents do not call the same person, and giving it back.
Each public function but release_all owns its transaction."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from callbacks.owed import CallbackError
from helpdesk.models import Callback

log = logging.getLogger("callbacks.service")  # where these lines were logged before


def claim(session: Session, callback_id: int, agent_id: int, now: datetime) -> None:
    """Take a callback; only one agent can hold it, the second is told who has it."""
    with session.begin():
        taken = session.execute(
            update(Callback)
            .where(Callback.id == callback_id, Callback.status == "open",
                   (Callback.claimed_by_id.is_(None)) | (Callback.claimed_by_id == agent_id))
            .values(claimed_by_id=agent_id, claimed_at=now)
        ).rowcount
        if not taken:
            callback = session.get(Callback, callback_id)
            if callback is None or callback.status != "open":
                raise CallbackError("This callback is no longer open.")
            holder = callback.claimed_by.display_name or callback.claimed_by.username
            raise CallbackError(f"{holder} has already claimed this callback.")


def release(session: Session, callback_id: int, agent_id: int, *, anyones: bool = False) -> None:
    """Give a claimed callback back to the queue: one's own, or (`anyones`, for managers) anyone's,
    so a callback is never stuck with an agent who has gone home."""
    with session.begin():
        holder = (Callback.claimed_by_id.is_not(None)) if anyones else (Callback.claimed_by_id == agent_id)
        if not _unclaim(session, Callback.id == callback_id, holder):
            callback = session.get(Callback, callback_id)
            if callback is None or callback.status != "open":
                raise CallbackError("This callback is no longer open.")
            raise CallbackError("Nobody holds this callback now." if anyones else "You have not claimed this callback.")
    log.info("callback %s released by user %s", callback_id, agent_id)


def release_all(session: Session, agent_id: int) -> int:
    """Give back every open callback `agent_id` holds (they were deactivated); how many."""
    return _unclaim(session, Callback.claimed_by_id == agent_id)


def _unclaim(session: Session, *which) -> int:
    """Clear the claim on the open callbacks `which` selects; how many there were."""
    return session.execute(
        update(Callback).where(Callback.status == "open", *which).values(claimed_by_id=None, claimed_at=None)
    ).rowcount
