"""How quickly contacts were handled: the rates and times the three rules do not show.

Not targets (metrics.compliance has the rules' figures). They answer the seed's "processed in
an efficient, quick and customer-focused ... manner" (MHSS 3.15): of the calls in opening
hours, how many were answered and how many callers hung up first; and how long people waited
for an answer, a first callback attempt, an acknowledgement and an answer to their email.

Times are wall-clock time, every hour counted, as the caller or writer waited, whichever clock
the callback rule counts on, each rounded up as the pages show it: to the whole second under a
minute, to the whole minute from one (so "within" stays true). "Half within" and "9 in 10
within" are nearest-rank percentiles of those: the shortest time that at least half (nine
tenths) of the items took no longer than, always one of the items' own (rounded) times. Each
item belongs to the period of its contact, as in metrics.compliance: a call's arrival, the time
a callback was owed from, an email's receipt.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Integer, case, func, literal, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import Session

from callbacks.email.waiting import MARKED_ANSWERED
from callbacks.owed import never_owed
from helpdesk.models import AuditEntry, Call, Callback, EmailAcknowledgement, Enquiry
from helpdesk.pages.format import format_compliance, shown_seconds, within_words
from metrics.periods import Period

HALF = (1, 2)
NINE_TENTHS = (9, 10)
STREAMED = 20_000  # rows fetched at a time when times are read one by one


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


@dataclass(frozen=True)
class Handling:
    """One period's rates and times."""

    calls: int  # finished calls that arrived in opening hours
    answered: int  # of them, answered by a person
    hung_up: int  # of them, the caller hung up before anyone answered (early or late)
    answer: Spread  # the answered ones: arrival to answer
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


def ranked_counts(counts: list[tuple[float, int]], share: tuple[int, int]) -> float:
    """The nearest-rank value of `share` of the items counted in `counts` ((value, how many),
    sorted by value, at least one item)."""
    wanted, seen = rank(sum(n for _, n in counts), share), 0
    for value, n in counts:
        seen += n
        if seen >= wanted:
            return value
    raise ValueError("no items counted")


def spread(counts: Counter) -> Spread:
    """The Spread of items counted by shown time (seconds -> how many)."""
    times = sorted((float(time), count) for time, count in counts.items())
    total = sum(counts.values())
    return Spread(total, ranked_counts(times, HALF), ranked_counts(times, NINE_TENTHS)) if total else Spread(0)


def _shown(session: Session, statement) -> Spread:
    """The Spread of the times between two stored instants (the two columns `statement` selects),
    each exact to the microsecond and rounded up as shown: streamed, so only the counts of each
    shown time are kept, however many rows the range has."""
    counts: Counter = Counter()
    for start, end in session.execute(statement, execution_options={"yield_per": STREAMED}):
        if start is not None and end is not None:
            counts[shown_seconds((end - start).total_seconds())] += 1
    return spread(counts)


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


def _calls(session: Session, period: Period) -> tuple[int, int, int, Spread]:
    # The most rows by far: counted by the database, by outcome and whole second (rounding up to
    # the second and then as shown is rounding as shown), so a few hundred rows come back.
    second = case((Call.outcome == "answered", whole_seconds_up(Call.answer_seconds)), else_=None)
    rows = session.execute(
        select(Call.outcome, second, func.count())
        .where(Call.arrived_at >= period.start, Call.arrived_at < period.end, Call.in_hours == true(),
               Call.outcome != "in_progress")
        .group_by(Call.outcome, second)).all()
    outcomes: Counter = Counter()
    times: Counter = Counter()
    for outcome, seconds, count in rows:
        outcomes[outcome] += int(count)
        if outcome == "answered" and seconds is not None:
            times[shown_seconds(seconds)] += int(count)
    return sum(outcomes.values()), outcomes["answered"], outcomes["abandoned"], spread(times)


def _callbacks(session: Session, period: Period) -> tuple[int, int, Spread]:
    # Not a callback the app withdrew because its call was answered after all: never owed (an
    # open one has no outcome, and NOT of NULL would leave it out).
    owed = (Callback.owed_from >= period.start, Callback.owed_from < period.end,
            Callback.outcome.is_(None) | ~never_owed())
    callbacks, reached = session.execute(select(
        func.count(), func.sum(case((Callback.reached_at.is_not(None), 1), else_=0))).where(*owed)).one()
    waits = _shown(session, select(Callback.owed_from, Callback.first_attempt_at).where(
        *owed, Callback.first_attempt_at.is_not(None)))
    return int(callbacks), int(reached or 0), waits


def _emails(session: Session, period: Period) -> tuple[Spread, int, Spread]:
    # Every email enquiry has one acknowledgement row (sent, or not), received when the enquiry opened.
    ack = EmailAcknowledgement
    received = (ack.received_at >= period.start, ack.received_at < period.end)
    enquiries = session.scalar(select(func.count()).select_from(ack).where(*received))
    acknowledged = _shown(session, select(ack.received_at, ack.sent_at).where(*received, ack.sent_at.is_not(None)))
    first = first_answers(period.start)
    answer = answered_at(first)
    answered = _shown(session, select(ack.received_at, answer).select_from(ack)
                      .join(Enquiry, Enquiry.id == ack.enquiry_id)
                      .outerjoin(first, first.c.detail == answer_detail(Enquiry.reference))
                      .where(*received, answer.is_not(None)))
    return acknowledged, int(enquiries), answered


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
    return f"{part} ({format_compliance(part, whole)})" if whole else str(part)


def lines(figures: Handling) -> list[tuple[str, list[tuple[str, str]]]]:
    """The figures as people read them, in groups: [(group, [(what, value), ...]), ...], the
    same labels whatever the figures, so several periods line up as columns."""
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


def as_facts(figures: Handling) -> dict:
    """The figures for manifest.json: counts, and times in seconds (null with nothing to time)."""
    return {
        "note": "Not targets. Clock time in seconds, every hour counted, each time rounded up first as report.pdf "
                "shows it: to the whole second under a minute, to the whole minute from one. half and nine_tenths "
                "are nearest-rank times: the shortest time that at least half (nine tenths) of the items took no "
                "longer than",
        "calls_in_opening_hours": {"calls": figures.calls, "answered": figures.answered,
                                   "hung_up_before_an_answer": figures.hung_up,
                                   "answer_seconds": asdict(figures.answer)},
        "callbacks": {"owed": figures.callbacks, "reached": figures.reached,
                      "to_first_attempt_seconds": asdict(figures.first_attempt)},
        "email_enquiries": {"enquiries": figures.email_enquiries,
                            "to_acknowledgement_seconds": asdict(figures.acknowledgement),
                            "to_first_answer_seconds": asdict(figures.email_answer)},
    }
