"""One enquiry's story, for a manager or auditor looking into it (a complaint, a question from
DWP): what came in, what the rules made of it, and what the help desk did, in time order.

Read from the stored records only, as the evidence pack is, and judged at `now` as the figures
are (a callback past its deadline untouched is a breach before the sweep records it); numbers
and addresses masked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from callbacks.deadlines import explain_stored
from callbacks.email.ack_rules import mask_address
from callbacks.not_dialled import why_not_dialled
from callbacks.queue import ATTEMPT_OUTCOMES, REASONS
from callbacks.queue_words import not_dialled_words
from callbacks.email.waiting import MARKED_ANSWERED
from callbacks.owed import CONCLUDED
from helpdesk.audit_log import TITLES
from helpdesk.models import (AuditEntry, Call, Callback, CallbackAttempt, CallbackNotice, EmailAcknowledgement,
                             Enquiry, FormerPhone, InboundEmail, User)
from helpdesk.pages import format as fmt
from helpdesk.pages import taken_by
from helpdesk.voice.sip_refusals import refused_legs
from metrics.compliance import rule_titles
from metrics.evidence.rows import ack_result

# A reference as people type it: any case, word processors' dashes, inside brackets as in a subject.
TYPED_REFERENCE = re.compile(r"HD[-‐‑‒–—―]([0-9]{4})[-‐‑‒–—―]([0-9]{6})", re.IGNORECASE)
EMAIL_DECISIONS = {"new_enquiry": "opened the enquiry", "joined": "joined the enquiry (a reply)",
                   "rate_limited": "opened the enquiry; not acknowledged (flood guard)"}
ACK_RESULTS = {"met": "Met", "late": "Sent late: breached", "unacknowledged": "Not sent by its due time: breached",
               "pending": "Not due yet", "": "Not sent on purpose: not counted"}
CLOSED = {"resolved": "resolved", "unreachable": "the caller could not be reached", "withdrawn": "withdrawn"}
# An attempt entered this long after it was made says when it was entered.
LATE_ENTRY = timedelta(minutes=5)
ENQUIRY_STATUSES = {"open": "Open", "concluded": "Concluded on the call", "callback_owed": "Callback owed",
                    "closed": "Answered (closed)"}


@dataclass(frozen=True)
class Step:
    """Something that happened to the enquiry, at `at`."""

    at: datetime
    what: str
    detail: str = ""
    note: str = ""  # an agent's note: shown to managers, not to auditors


@dataclass
class EnquiryStory:
    reference: str
    channel: str
    opened_at: datetime
    status: str
    results: list[tuple[str, str]] = field(default_factory=list)  # (rule, "Met" / "Breached" / ...)
    steps: list[Step] = field(default_factory=list)


def normal_reference(text: str) -> str | None:
    """The reference as stored ("HD-2026-000123"), from what a person typed ("hd–2026–000123",
    "[HD-2026-000123]"); None if it holds none."""
    found = TYPED_REFERENCE.search(text)
    return f"HD-{found.group(1)}-{found.group(2)}" if found else None


def enquiry_story(session: Session, reference: str, settings, now: datetime) -> EnquiryStory | None:
    """The enquiry's story, or None if there is no such enquiry."""
    with session.begin():
        enquiry = session.scalars(select(Enquiry).where(Enquiry.reference == reference)).one_or_none()
        if enquiry is None:
            return None
        story = EnquiryStory(reference, enquiry.channel, enquiry.opened_at,
                             ENQUIRY_STATUSES.get(enquiry.status, enquiry.status))
        users = list(session.scalars(select(User)))
        names = {user.id: user.display_name or user.username for user in users}
        titles = rule_titles(settings)
        book = taken_by.phone_book(users, session.scalars(select(FormerPhone)))
        answered = _calls(session, story, enquiry, titles["answer_within_rings"], book)
        if enquiry.status == "open" and answered:  # an agent took the call, and said nothing of it since
            story.status = fmt.enquiry_outcome("answered", "open")
        callbacks = _callbacks(session, story, enquiry, names, titles["callback_within_3h"], now)
        _emails(session, story, enquiry, titles["email_ack"], now)
        audited = _audit(session, story, reference, [callback.id for callback in callbacks])
        # Each "Marked as answered" is in the audit log (from 0.11.0), and each "Concluded" (from
        # 0.27.0); before, only the last one was kept.
        if enquiry.status in ("concluded", "closed") and enquiry.closed_at is not None \
                and not audited & {MARKED_ANSWERED, CONCLUDED}:
            who = names.get(enquiry.closed_by_id, "the help desk")
            story.steps.append(Step(enquiry.closed_at, "Recorded as concluded on the call" if enquiry.channel == "phone"
                                    else "Marked as answered", f"By {who}."))
        if enquiry.status == "callback_owed" and callbacks and all(c.status == "closed" for c in callbacks):
            story.status = f"Callback closed: {CLOSED.get(callbacks[-1].outcome, callbacks[-1].outcome)}"
    story.steps.sort(key=lambda step: step.at)
    return story


def _calls(session: Session, story: EnquiryStory, enquiry: Enquiry, title: str,
           book: dict[str, list[taken_by.Holding]]) -> bool:
    """The enquiry's calls in the story; whether one was answered."""
    answered = False
    calls = list(session.scalars(select(Call).where(Call.enquiry_id == enquiry.id).order_by(Call.arrived_at)))
    refused = refused_legs(session, {call.call_sid for call in calls}, "agent_status")
    for call in calls:
        caller = f"From {fmt.mask_number(call.caller_number)} ({fmt.caller_type_label(call.caller_type)})."
        if call.arrived_at is not None:  # None only until its first event has been worked out
            story.steps.append(Step(call.arrived_at, "Call arrived", caller))
        if call.answered_at is not None:
            story.steps.append(Step(call.answered_at, "Answered by an agent",
                                    f"After {fmt.format_seconds(call.answer_seconds)} seconds, on ring {call.rings}."
                                    + answered_on(call.agent, book, call.answer_moment)))
        if call.ended_at is not None:
            story.steps.append(Step(call.ended_at, "Call ended", f"Outcome: {fmt.outcome_label(call.outcome)}."
                                    + _refused_words(refused.get(call.call_sid, {}))))
        story.results.append((title, _call_result(call)))
        answered = answered or call.outcome == "answered"
    return answered


def _refused_words(legs: dict[str, str]) -> str:
    """What the phone system refusing some of a call's desk phones (legs to SIP addresses) did, in a
    sentence: why those phones did not ring, which may be why the call was not answered."""
    if not legs:
        return ""
    codes = ", ".join(sorted(set(legs.values())))
    phones = "1 desk phone, so it" if len(legs) == 1 else f"{len(legs)} desk phones, so they"
    return f" The phone system refused Twilio's call to {phones} did not ring (SIP {codes})."


def answered_on(endpoint: str | None, book: dict[str, list[taken_by.Holding]], moment: datetime) -> str:
    """Who took the call answered at `moment` (see taken_by), in a sentence; any number in its
    phone masked."""
    if not endpoint:
        return ""
    named = [taken_by.name(user) for user in taken_by.takers(endpoint, book, moment)]
    shown = taken_by.shown_endpoint(endpoint)
    if len(named) == 1:
        return f" Taken by {named[0]} ({shown})."
    if named:
        return f" Taken on {shown}, the phone of {taken_by.in_words(named)}."
    return f" Taken on {shown}."


def _call_result(call: Call) -> str:
    if call.countable and call.sla_result:
        return fmt.sla_label(call.sla_result)
    if not call.in_hours:
        return "Not counted (outside opening hours)"
    if call.outcome == "abandoned":
        return "Not counted (the caller hung up within the target)"
    return "Not decided yet (the call is still going on)"


def _callbacks(session: Session, story: EnquiryStory, enquiry: Enquiry, names: dict[int, str], title: str,
               now: datetime) -> list[Callback]:
    callbacks = list(session.scalars(select(Callback).where(Callback.enquiry_id == enquiry.id)
                                     .order_by(Callback.owed_from, Callback.id)))
    for callback in callbacks:
        due = fmt.format_local_time(callback.due_at, True)
        # The agents' notes (what it is about, and any written as it closed) go with its last step.
        closed = callback.closed_at is not None
        story.steps.append(Step(callback.created_at, f"Callback owed: {REASONS.get(callback.reason, callback.reason)}",
                                f"To {fmt.mask_number(callback.caller_number)}. {explain_stored(callback.explanation)}",
                                note="" if closed else callback.note))
        for notice in session.scalars(select(CallbackNotice).where(CallbackNotice.callback_id == callback.id)):
            story.steps.append(Step(notice.recorded_at, _notice_words(notice.kind), f"For the deadline at {due}."))
        attempts = list(session.scalars(select(CallbackAttempt).where(CallbackAttempt.callback_id == callback.id)
                                        .order_by(CallbackAttempt.started_at, CallbackAttempt.id)))
        reasons = why_not_dialled(session, {a.call_sid for a in attempts if a.dialled_at is None and a.call_sid})
        for attempt in attempts:
            how = "with Call back now" if attempt.source == "twilio" else "entered by hand"
            who = names.get(attempt.agent_id, "the help desk")
            if attempt.dialled_at is None:
                reason = reasons.get(attempt.call_sid)
                why = f" {not_dialled_words(reason.why, reason.code).story}." if reason else ""
                story.steps.append(Step(attempt.started_at, "Call back did not ring the caller",
                                        f"Started by {who} {how}.{why}"))
                continue
            late = (f" Entered at {fmt.format_local_time(attempt.recorded_at, True)}."
                    if attempt.recorded_at is not None and attempt.recorded_at - attempt.dialled_at > LATE_ENTRY else "")
            story.steps.append(Step(attempt.dialled_at, "Callback attempt",
                                    f"{ATTEMPT_OUTCOMES.get(attempt.outcome, attempt.outcome)}; by {who}, {how}.{late}",
                                    note=attempt.note))
        if closed:
            story.steps.append(Step(callback.closed_at,
                                    f"Callback closed: {CLOSED.get(callback.outcome, callback.outcome)}",
                                    f"By {names.get(callback.closed_by_id, 'the help desk')}.", note=callback.note))
        story.results.append((f"{title} ({REASONS.get(callback.reason, callback.reason).lower()})",
                              _callback_result(callback, now)))
    return callbacks


def _callback_result(callback: Callback, now: datetime) -> str:
    if callback.sla_result in ("met", "breached"):
        return fmt.sla_label(callback.sla_result)
    if callback.outcome == "withdrawn":
        return "Withdrawn: not counted"
    if callback.status == "open" and callback.due_at < now:
        return "Breached (no attempt by its deadline)"  # as the figures count it, before the sweep records it
    if callback.status == "closed":
        return "Closed before its deadline with no number to dial: not counted"
    return f"Not decided yet (due {fmt.format_date_time(callback.due_at)})"


def _notice_words(kind: str) -> str:
    if kind == "breach":
        return "Breach recorded"
    minutes = kind.removeprefix("warning_")
    return f"Warning: {fmt.format_minutes(int(minutes))} left" if minutes.isdigit() else kind


def _emails(session: Session, story: EnquiryStory, enquiry: Enquiry, title: str, now: datetime) -> None:
    for email in session.scalars(select(InboundEmail).where(InboundEmail.enquiry_id == enquiry.id)
                                 .order_by(InboundEmail.received_at, InboundEmail.id)):
        story.steps.append(Step(email.received_at, "Email received",
                                f"From {mask_address(email.sender)[0]}; "
                                f"{EMAIL_DECISIONS.get(email.decision, email.decision.replace('_', ' '))}."))
    for ack in session.scalars(select(EmailAcknowledgement).where(EmailAcknowledgement.enquiry_id == enquiry.id)):
        if ack.sent_at is not None:
            story.steps.append(Step(ack.sent_at, "Acknowledgement sent", f"Due {fmt.format_local_time(ack.due_at, True)}."))
        _, verdict = ack_result(ack.status, ack.sla_result, ack.due_at, now)
        story.results.append((title, ACK_RESULTS.get(verdict, verdict)))


def _audit(session: Session, story: EnquiryStory, reference: str, callback_ids: list[int]) -> set[str]:
    """What the audit log records of it (a callback needed, each "Concluded" and "Marked as
    answered", a breach corrected by an attempt entered late, "Concluded" undone); the actions found."""
    mentions = [AuditEntry.detail.contains(f'"enquiry": "{reference}"')]
    mentions += [AuditEntry.detail.contains(f'"callback_id": {callback_id},') for callback_id in callback_ids]
    found = set()
    for entry in session.scalars(select(AuditEntry).where(or_(*mentions)).order_by(AuditEntry.at)):
        story.steps.append(Step(entry.at, TITLES.get(entry.action, f"Audit log: {entry.action}"),
                                f"By {entry.actor} (audit log)."))
        found.add(entry.action)
    return found
