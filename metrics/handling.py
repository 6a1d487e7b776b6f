"""How quickly contacts were handled: the rates and times the three rules do not show.

Not targets (metrics.compliance has the rules' figures). They answer the seed's "processed in
an efficient, quick and customer-focused ... manner" (MHSS 3.15): of the calls in opening
hours, how many were answered and how many callers hung up first; and how long people waited
for an answer, a first callback attempt, an acknowledgement and an answer to their email.

Times are wall-clock time, every hour counted, as the caller or writer waited, whichever clock
the callback rule counts on. "Half within" and "9 in 10 within" are nearest-rank percentiles:
the shortest time that at least half (nine tenths) of the items took no longer than, so it is
always one of the items' own times. Each item belongs to the period of its contact, as in
metrics.compliance: a call's arrival, the time a callback was owed from, an email's receipt.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import Integer, case, func, literal, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import Session

from callbacks.email.waiting import MARKED_ANSWERED
from callbacks.owed import never_owed
from helpdesk.models import AuditEntry, Call, Callback, EmailAcknowledgement, Enquiry
from metrics.periods import Period

HALF = (1, 2)
NINE_TENTHS = (9, 10)


def rank(count: int, share: tuple[int, int]) -> int:
    """The nearest rank (from 1) of `share` of `count` sorted items: the smallest rank at or
    below which at least that share of them lies. Whole numbers, so 9/10 of 10 is 9, never 10."""
    if count < 1:
        raise ValueError("no items to rank")
    numerator, denominator = share
    return -(-count * numerator // denominator)


@dataclass(frozen=True)
class Spread:
    """How long a set of items took: how many, and the times half and nine tenths took no longer than."""

    count: int
    half: float | None = None  # seconds; None when there are no items
    nine_tenths: float | None = None


def spread(seconds: Iterable[float]) -> Spread:
    """The Spread of some durations, in seconds."""
    values = sorted(seconds)
    if not values:
        return Spread(0)
    return Spread(len(values), values[rank(len(values), HALF) - 1], values[rank(len(values), NINE_TENTHS) - 1])


@dataclass(frozen=True)
class Handling:
    """One period's rates and times."""

    calls: int  # finished calls that arrived in opening hours
    answered: int  # of them, answered by a person
    hung_up: int  # of them, the caller hung up before anyone answered (early or late)
    answer: Spread  # the answered ones: arrival to answer, in whole seconds rounded up
    callbacks: int  # callbacks owed (not those the app withdrew as never owed: their call was answered)
    reached: int  # of them, the caller was reached
    first_attempt: Spread  # the attempted ones: owed to the first attempt
    acknowledgement: Spread  # acknowledgements sent: receipt to sending
    email_enquiries: int  # email enquiries opened
    email_answer: Spread  # the ones an agent marked answered: first email to the first answer


def handling(session: Session, period: Period) -> Handling:
    """The rates and times of items whose contact time is in `period`."""
    with session.begin():
        return Handling(*_calls(session, period), *_callbacks(session, period), *_emails(session, period))


class whole_seconds_up(FunctionElement):
    """A number of seconds rounded up to the whole second, in SQL: CEIL on PostgreSQL; SQLite
    (whose CEIL is not always built in) truncates and adds one for any fraction."""

    type = Integer()
    inherit_cache = True


@compiles(whole_seconds_up)
def _ceil(element, compiler, **kw) -> str:
    return f"CAST(CEIL({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(whole_seconds_up, "sqlite")
def _ceil_sqlite(element, compiler, **kw) -> str:
    value = compiler.process(element.clauses, **kw)
    return f"(CAST({value} AS INTEGER) + ({value} > CAST({value} AS INTEGER)))"


def ranked_counts(counts: list[tuple[float, int]], share: tuple[int, int]) -> float:
    """The nearest-rank value of `share` of the items counted in `counts` ((value, how many),
    sorted by value, at least one item)."""
    wanted, seen = rank(sum(n for _, n in counts), share), 0
    for value, n in counts:
        seen += n
        if seen >= wanted:
            return value
    raise ValueError("no items counted")


def _calls(session: Session, period: Period) -> tuple[int, int, int, Spread]:
    # One pass, by outcome and by whole second: the shown times are whole seconds rounded up
    # (the nearest rank of the rounded times is the rounded nearest rank), and however long the
    # range only a few hundred groups come back.
    answered = Call.outcome == "answered"
    second = case((answered, whole_seconds_up(Call.answer_seconds)), else_=None)
    rows = session.execute(
        select(Call.outcome, second, func.count())
        .where(Call.arrived_at >= period.start, Call.arrived_at < period.end, Call.in_hours == true(),
               Call.outcome != "in_progress")
        .group_by(Call.outcome, second)).all()
    by_outcome: dict[str, int] = {}
    for outcome, _, count in rows:
        by_outcome[outcome] = by_outcome.get(outcome, 0) + int(count)
    times = sorted((float(s), int(count)) for outcome, s, count in rows if outcome == "answered" and s is not None)
    timed = sum(count for _, count in times)
    answer = Spread(timed, ranked_counts(times, HALF), ranked_counts(times, NINE_TENTHS)) if timed else Spread(0)
    return sum(by_outcome.values()), by_outcome.get("answered", 0), by_outcome.get("abandoned", 0), answer


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)


def _callbacks(session: Session, period: Period) -> tuple[int, int, Spread]:
    # Not a callback the app withdrew because its call was answered after all: never owed (an
    # open one has no outcome, and NOT of NULL would leave it out).
    owed = Callback.outcome.is_(None) | ~never_owed()
    rows = session.execute(select(Callback.owed_from, Callback.first_attempt_at, Callback.reached_at).where(
        Callback.owed_from >= period.start, Callback.owed_from < period.end, owed)).all()
    reached = sum(1 for _, _, reached_at in rows if reached_at is not None)
    waits = spread(_seconds(owed, first) for owed, first, _ in rows if first is not None)
    return len(rows), reached, waits


def _emails(session: Session, period: Period) -> tuple[Spread, int, Spread]:
    # Every email enquiry has one acknowledgement row (sent, or not), received when the enquiry opened.
    ack = EmailAcknowledgement
    first = first_answers(period.start)
    rows = session.execute(
        select(ack.received_at, ack.sent_at, answered_at(first))
        .join(Enquiry, Enquiry.id == ack.enquiry_id)
        .outerjoin(first, first.c.detail == answer_detail(Enquiry.reference))
        .where(ack.received_at >= period.start, ack.received_at < period.end)).all()
    acknowledged = spread(_seconds(received, sent) for received, sent, _ in rows if sent is not None)
    answered = spread(_seconds(received, answer) for received, _, answer in rows if answer is not None)
    return acknowledged, len(rows), answered


def first_answers(since: datetime):
    """Each email enquiry's first "Marked as answered" at or after `since` (an enquiry's answers
    all come after it opened), from the audit log: a subquery of (detail, at)."""
    return (select(AuditEntry.detail.label("detail"), func.min(AuditEntry.at).label("at"))
            .where(AuditEntry.action == MARKED_ANSWERED, AuditEntry.at >= since)
            .group_by(AuditEntry.detail).subquery())


def answer_detail(reference):
    """The audit entry's detail as mark_answered writes it for the enquiry `reference` (a column):
    json.dumps({"enquiry": reference}, sort_keys=True). A reference is letters, digits and hyphens."""
    return literal('{"enquiry": "') + reference + literal('"}')


def answered_at(first):
    """When an email enquiry was first marked as answered. The audit log keeps each answer from
    0.11.0; for an enquiry answered only before that, its latest answer (the enquiry's closing)."""
    return func.coalesce(first.c.at, case((Enquiry.status == "closed", Enquiry.closed_at), else_=None))


def _share(part: int, whole: int) -> str:
    from helpdesk.pages.format import format_compliance

    return f"{part} ({format_compliance(part, whole)})" if whole else str(part)


def lines(figures: Handling) -> list[tuple[str, list[tuple[str, str]]]]:
    """The figures as people read them, in groups: [(group, [(what, value), ...]), ...], the
    same labels whatever the figures, so several periods line up as columns."""
    from helpdesk.pages.format import within_words

    def times(what: str, taken: Spread) -> list[tuple[str, str]]:
        return [(f"Half {what} within", within_words(taken.half)),
                (f"9 in 10 {what} within", within_words(taken.nine_tenths))]

    return [
        ("Calls in opening hours", [
            ("Calls", str(figures.calls)),
            ("Answered", _share(figures.answered, figures.calls)),
            ("Caller hung up before an answer", _share(figures.hung_up, figures.calls)),
            ("No answer, voicemail or failed", _share(figures.calls - figures.answered - figures.hung_up,
                                                       figures.calls)),
            *times("answered", figures.answer),
        ]),
        ("Callbacks", [
            ("Owed", str(figures.callbacks)),
            ("First attempt made", _share(figures.first_attempt.count, figures.callbacks)),
            ("Caller reached", _share(figures.reached, figures.callbacks)),
            *times("had a first attempt", figures.first_attempt),
        ]),
        ("Email enquiries", [
            ("Enquiries", str(figures.email_enquiries)),
            ("Acknowledgement sent", _share(figures.acknowledgement.count, figures.email_enquiries)),
            *times("acknowledged", figures.acknowledgement),
            ("Marked as answered", _share(figures.email_answer.count, figures.email_enquiries)),
            *times("answered", figures.email_answer),
        ]),
    ]


def _times(taken: Spread) -> dict:
    return {"count": taken.count, "half": taken.half, "nine_tenths": taken.nine_tenths}


def as_facts(figures: Handling) -> dict:
    """The figures for manifest.json: counts, and times in seconds (null with nothing to time)."""
    return {
        "note": "Not targets. Clock time in seconds, every hour counted. half and nine_tenths are nearest-rank "
                "times: the shortest time that at least half (nine tenths) of the items took no longer than. "
                "Calls' answer times are in whole seconds, each rounded up first",
        "calls_in_opening_hours": {"calls": figures.calls, "answered": figures.answered,
                                   "hung_up_before_an_answer": figures.hung_up,
                                   "answer_seconds": _times(figures.answer)},
        "callbacks": {"owed": figures.callbacks, "reached": figures.reached,
                      "to_first_attempt_seconds": _times(figures.first_attempt)},
        "email_enquiries": {"enquiries": figures.email_enquiries,
                            "to_acknowledgement_seconds": _times(figures.acknowledgement),
                            "to_first_answer_seconds": _times(figures.email_answer)},
    }
