"""The acknowledgement rules: when a failed send is tried again, whether it was on time, and
what agents are told about it. Pure: plain values and `now` in, plain values out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from helpdesk.phones import REMOVED

# A sender that stopped mid-send (a crash, a killed process) leaves its claim; after this long
# another may take it. Far longer than a send can take (a 15-second SMTP timeout per step).
CLAIM_STALE_AFTER = timedelta(minutes=5)
# Why an acknowledgement is not sent after the database was restored from a backup
# (helpdesk/restore.py): it was owed when the backup was taken, or its email was read again from
# the mailbox. An agent can still send it ("Send it") to a customer who never had one.
HELD_BACK = ("Owed when the backup put back was taken: most likely sent before the database was lost, so not sent "
             "again.")
LOST_IN_RESTORE = ("Received while the database was lost to a restore, and read again from the mailbox: it may have "
                   "been acknowledged before, so it is not again.")
AFTER_RESTORE = (HELD_BACK, LOST_IN_RESTORE)


def retry_wait(attempts: int, spacing_minutes: tuple[int, ...]) -> timedelta:
    """The wait after the `attempts`-th failed send: spacing[attempts - 1], the last value repeating."""
    if attempts < 1 or not spacing_minutes:
        raise ValueError("retry_wait needs attempts >= 1 and at least one spacing")
    return timedelta(minutes=spacing_minutes[min(attempts, len(spacing_minutes)) - 1])


@dataclass(frozen=True)
class AfterFailure:
    status: str  # "pending" (tried again at next_attempt_at) or "failed" (no more automatic tries)
    next_attempt_at: datetime | None


# A retry that would come after the due time is brought forward to this long before it, so a
# mail server that is back in time still gets the acknowledgement out in time.
BEFORE_DUE = timedelta(minutes=1)


def after_failure(attempts: int, *, max_attempts: int, spacing_minutes: tuple[int, ...],
                  now: datetime, due_at: datetime | None = None) -> AfterFailure:
    """What a failed send leads to, `attempts` counting this one.

    Before the due time, the next try is never later than BEFORE_DUE before it (nor sooner than
    a minute from now); after it, the spacing alone decides.
    """
    if attempts >= max_attempts:
        return AfterFailure("failed", None)
    then = now + retry_wait(attempts, spacing_minutes)
    if due_at is not None and now < due_at:
        then = min(then, max(due_at - BEFORE_DUE, now + timedelta(minutes=1)))
    return AfterFailure("pending", then)


def sla_result(sent_at: datetime, due_at: datetime) -> str:
    """"met" when the acknowledgement left at or before its due time (email.ack_within), else "late"."""
    return "met" if sent_at <= due_at else "late"


@dataclass(frozen=True)
class AckState:
    """How an acknowledgement stands, for the agents' page."""

    key: str  # sent_on_time, sent_late, waiting, overdue, retrying, failed, flood_guard, not_sent, none
    label: str
    detail: str = ""
    can_retry: bool = False
    retry_label: str = "Try again"


def ack_state(*, status: str | None, sla: str | None, attempts: int, decision: str | None,
              due_at: datetime | None, now: datetime, last_error: str | None) -> AckState:
    """The acknowledgement's state in the agents' words; `status` None when none was owed."""
    error = f" Last error: {last_error}" if last_error else ""
    if status == "sent":
        if sla == "late":
            return AckState("sent_late", "Sent late")
        return AckState("sent_on_time", "Sent on time")
    if status == "failed":
        tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
        return AckState("failed", "Failed", f"Gave up after {tries}.{error}", can_retry=True)
    if status == "pending" and attempts:
        return AckState("retrying", "Sending failed: retrying", error.strip(), can_retry=True)
    if status == "pending":
        if due_at is not None and now > due_at:
            return AckState("overdue", "Not sent yet: overdue")
        return AckState("waiting", "Not sent yet")
    if status == "suppressed" and last_error in AFTER_RESTORE:
        return AckState("not_sent", "Not sent", f"{last_error} Send it if the customer never had one.",
                        can_retry=True, retry_label="Send it")
    if status == "suppressed" or decision == "rate_limited":
        if decision == "rate_limited":
            return AckState("flood_guard", "Not sent: flood guard",
                            "This sender passed the limit of acknowledgements in the time window.")
        return AckState("not_sent", "Not sent", (last_error or "").strip())
    return AckState("none", "None owed")


def mask_address(address: str | None) -> tuple[str, str]:
    """("j***@example.org", "address starting j, at example.org"): the first character and the domain only."""
    if address == REMOVED:
        return "Removed", "address removed"
    local, at, domain = (address or "").strip().rpartition("@")
    if not at or not local or not domain:
        return "Not known", "address not known"
    return f"{local[0]}***@{domain}", f"address starting {local[0]}, at {domain}"
