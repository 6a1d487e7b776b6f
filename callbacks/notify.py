"""Emailing the supervisors about warnings and breaches, each notice once.

The sweep records notices (`callback_notices`); `notify_pending` emails the ones not yet
emailed. A notice is claimed before it is sent (`emailed_at` set in its own transaction), so two
schedulers never email the same notice; a failed send gives the claim back and keeps the error,
so the next sweep tries again. Emails never carry a caller's full number.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callbacks.deadlines import explain, when_words
from callbacks.smtp import FakeMailServer, MailError, SmtpSender, from_address, plain_message, short_error
from callbacks.sweep import minutes_left, remaining
from helpdesk.models import Callback, CallbackNotice, Enquiry
from helpdesk.pages.format import caller_type_label
from helpdesk.phones import is_withheld, number_ending
from helpdesk.settings import Settings

log = logging.getLogger(__name__)

REASONS = {
    "abandoned": "the caller hung up before an answer",
    "no_answer": "nobody answered",
    "voicemail": "the caller left a voicemail",
    "out_of_hours": "the call came out of hours",
    "failed": "the call failed",
    "not_concluded": "the enquiry could not be concluded on the call",
    "email": "an email enquiry could not be concluded by email",
}


class Notifier(Protocol):
    def send(self, subject: str, body: str, to: Sequence[str]) -> None:
        """Send one plain-text message to `to`, or raise MailError."""


# --------------------------------------------------------------------------- notifiers


class SmtpNotifier(SmtpSender):
    """Plain-text email to the supervisors through the configured SMTP server."""

    @classmethod
    def from_settings(cls, settings: Settings, environ=None, **kwargs):
        """As SmtpSender's, from the same address as acknowledgements (smtp.from_address, else
        the first of email.addresses)."""
        notifier = super().from_settings(settings, environ, **kwargs)
        notifier.smtp = replace(settings.smtp, from_address=from_address(settings))
        return notifier

    def message(self, subject: str, body: str, to: Sequence[str]) -> EmailMessage:
        return plain_message(self.smtp.from_address, ", ".join(to), subject, body)

    def send(self, subject: str, body: str, to: Sequence[str]) -> None:
        if not self.smtp.host:
            raise MailError("smtp.host is not set")
        if not self.smtp.from_address:
            raise MailError("smtp.from_address is not set, nor email.addresses")
        if not to:
            raise MailError("no recipients")
        self.send_message(self.message(subject, body, to))


@dataclass(frozen=True)
class SentMessage:
    subject: str
    body: str
    to: tuple[str, ...]


@dataclass
class FakeNotifier(FakeMailServer):
    """Records messages instead of sending them."""

    sent: list[SentMessage] = field(default_factory=list)

    def send(self, subject: str, body: str, to: Sequence[str]) -> None:
        self._attempt(lambda: self.sent.append(SentMessage(subject, body, tuple(to))))


# --------------------------------------------------------------------------- sending notices


@dataclass
class NotifyResult:
    sent: int = 0
    failed: int = 0
    skipped: bool = False  # nobody to email, or no mail server: notices are shown on the page only


_said_page_only: set[str] = set()


# Notices are emailed within a day of being recorded, or not at all: one recorded while no
# supervisors or mail server were set, or while mail failed, is out of date by then (it is on
# the agents' page and in the evidence). Else setting supervisors.emails after months without
# would send every warning and breach of those months at once.
EMAIL_WITHIN = timedelta(hours=24)
# A notice's email_error once it has failed for EMAIL_WITHIN and is tried no more.
GAVE_UP = "Not sent within a day: no longer tried."


def notify_pending(session: Session, settings: Settings, notifier: Notifier, now: datetime) -> NotifyResult:
    """Email every notice recorded in the last EMAIL_WITHIN that has not been emailed yet: one
    message per notice."""
    result = NotifyResult()
    if not settings.supervisors or not settings.smtp.host:
        result.skipped = True
        missing = "supervisors.emails" if not settings.supervisors else "smtp.host"
        if missing not in _said_page_only:
            _said_page_only.add(missing)
            log.info("%s is not set in %s: warnings and breaches are shown on the Callback queue page only",
                     missing, settings.source)
        return result
    with session.begin():
        gave_up = session.execute(
            update(CallbackNotice)
            .where(CallbackNotice.emailed_at.is_(None), CallbackNotice.recorded_at < now - EMAIL_WITHIN,
                   CallbackNotice.email_error.is_not(None), CallbackNotice.email_error != GAVE_UP)
            .values(email_error=GAVE_UP)).rowcount
    if gave_up:
        log.warning("%d notice%s could not be emailed to the supervisors within a day and will not be tried again "
                    "(they are on the Callback queue page)", gave_up, "" if gave_up == 1 else "s")
    with session.begin():
        pending = list(session.scalars(
            select(CallbackNotice.id)
            .where(CallbackNotice.emailed_at.is_(None), CallbackNotice.recorded_at >= now - EMAIL_WITHIN)
            .order_by(CallbackNotice.id)))
    for notice_id in pending:
        with session.begin():
            claimed = session.execute(
                update(CallbackNotice)
                .where(CallbackNotice.id == notice_id, CallbackNotice.emailed_at.is_(None))
                .values(emailed_at=now)
            ).rowcount
        if not claimed:
            continue  # another scheduler has it
        try:
            with session.begin():
                kind, recorded_at, reference, callback = session.execute(
                    select(CallbackNotice.kind, CallbackNotice.recorded_at, Enquiry.reference, Callback)
                    .join(Callback, Callback.id == CallbackNotice.callback_id)
                    .join(Enquiry, Enquiry.id == Callback.enquiry_id)
                    .where(CallbackNotice.id == notice_id)
                ).one()
                subject, body = compose(kind, reference, callback, settings, recorded_at)
            notifier.send(subject, body, settings.supervisors)
        except Exception as exc:  # noqa: BLE001 - give the claim back whatever went wrong
            error = str(exc) if isinstance(exc, MailError) else f"{type(exc).__name__} while sending"
            error = short_error(error)
            with session.begin():
                session.execute(
                    update(CallbackNotice).where(CallbackNotice.id == notice_id, CallbackNotice.emailed_at == now)
                    .values(emailed_at=None, email_error=error))
            result.failed += 1
            log.warning("could not email notice %d (will try again at the next sweep): %s", notice_id, error)
            continue
        with session.begin():
            session.execute(update(CallbackNotice).where(CallbackNotice.id == notice_id).values(email_error=None))
        result.sent += 1
    if result.sent or result.failed:
        log.info("emailed %d notices to the supervisors, %d failed", result.sent, result.failed)
    return result


def compose(kind: str, reference: str, callback: Callback, settings: Settings,
            recorded_at: datetime) -> tuple[str, str]:
    """Subject and plain-text body for one notice, recorded at `recorded_at`. Only the last three
    digits of the number. A warning says the time that was left when it was recorded, which is
    less than its lead time when the sweep first saw the callback late."""
    explanation = json.loads(callback.explanation or "{}")
    due = _when(callback.due_at)
    if kind == "breach":
        target = _target(explanation.get("within_minutes", settings.callback.within_minutes))
        subject = f"Callback {reference} breached the {target} target"
        opening = f"Nobody tried to call back by {due}, so callback {reference} missed the {target} target."
    else:
        minutes = minutes_left(remaining(settings, callback.clock, recorded_at, callback.due_at))
        subject = f"Callback {reference} due in {minutes}"
        left = "of opening time left" if callback.clock == "business" else "left"
        opening = f"Callback {reference} is due at {due}, with {minutes} {left}. Please call back before then."
    lines = [
        opening,
        "",
        f"Enquiry:   {reference}",
        f"Caller:    {caller_type_label(callback.caller_type)}, {_number(callback.caller_number)}",
        f"Reason:    {REASONS.get(callback.reason, callback.reason.replace('_', ' '))}",
        f"Due:       {due}",
        f"Deadline:  {_summary(explanation)}",
        "",
        "The callback and its attempts so far are on the Callback queue page.",
        "",
        f"-- {settings.name}",
    ]
    return subject, "\n".join(lines) + "\n"


def _when(moment: datetime) -> str:
    return when_words(moment) + " (UK time)"


def _target(within_minutes: int) -> str:
    hours, minutes = divmod(int(within_minutes), 60)
    return f"{hours}-hour" if not minutes else f"{within_minutes}-minute"


def _number(number: str | None) -> str:
    if is_withheld(number):
        return "number withheld"
    ending = number_ending(number)
    return f"number ending {ending}" if ending else "number not shown"


def _summary(explanation: dict) -> str:
    try:
        return explain(explanation)
    except (KeyError, TypeError, ValueError):
        return "not recorded"
