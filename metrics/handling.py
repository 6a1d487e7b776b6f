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

from sqlalchemy import case, func, literal, select, true
from sqlalchemy.orm import Session

from callbacks.email.waiting import MARKED_ANSWERED
from callbacks.owed import never_owed
from helpdesk.models import AuditEntry, Call, Callback, EmailAcknowledgement, Enquiry
from helpdesk.pages.format import format_compliance, shown_seconds, within_words
from metrics.periods import Period, overlapping_groups
from metrics.seconds_sql import as_shown, seconds_up_between, whole_seconds_up

PERIODS_PER_QUERY = 400  # a few columns each; SQLite returns at most 2,000 columns

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
    return handling_for_periods(session, [period])[period.label]


def handling_for_periods(session: Session, periods: list[Period]) -> dict[str, Handling]:
    """`handling` for several periods (distinct labels) at once. Each part is one grouped query
    per group of overlapping periods, counting for every period in it (the Service levels page's
    today, this week and this month read this month's rows once, not three times)."""
    if len({p.label for p in periods}) != len(periods):
        raise ValueError("periods must have distinct labels")
    result: dict[str, Handling] = {}
    with session.begin():
        for group in overlapping_groups(periods):
            for start in range(0, len(group), PERIODS_PER_QUERY):
                chunk = group[start:start + PERIODS_PER_QUERY]
                parts = zip(_calls(session, chunk), _callbacks(session, chunk), _emails(session, chunk))
                for period, (calls, callbacks, emails) in zip(chunk, parts):
                    result[period.label] = Handling(*calls, *callbacks, *emails)
    return result


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


def _in_each(contact, periods: list[Period], condition=None) -> list:
    """A count per period of the rows whose `contact` time is in it (and meet `condition`)."""
    columns = []
    for period in periods:
        inside = (contact >= period.start) & (contact < period.end)
        columns.append(func.sum(case((inside if condition is None else inside & condition, 1), else_=0)))
    return columns


def _span(contact, periods: list[Period]) -> tuple:
    return contact >= min(p.start for p in periods), contact < max(p.end for p in periods)


def _timed(start, end):
    """The rows' times from `start` (their contact time, which places each in a period) to `end`,
    in whole seconds rounded up: a select to add joins and conditions to."""
    return select(seconds_up_between(start, end).label("seconds"), start.label("contact"))


def _spreads(session: Session, timed, periods: list[Period]) -> list[Spread]:
    """Each period's Spread of the times `timed` (see _timed) selects, counted by the database
    per shown time. OFFSET 0 keeps the database from merging `timed` into the grouping, which
    would work each row's time out again for every mention of it in as_shown (SQLite does)."""
    rows = timed.offset(0).subquery()
    shown = as_shown(rows.c.seconds)
    counts = [Counter() for _ in periods]
    for row in session.execute(select(shown, *_in_each(rows.c.contact, periods)).group_by(shown)):
        for index, n in enumerate(row[1:]):
            if n:
                counts[index][shown_seconds(row[0])] += int(n)
    return [spread(c) for c in counts]


def _calls(session: Session, periods: list[Period]) -> list[tuple[int, int, int, Spread]]:
    # The most rows by far: counted by the database, by outcome and whole second (rounding up to
    # the second and then as shown is rounding as shown), so a few hundred rows come back.
    second = case((Call.outcome == "answered", whole_seconds_up(Call.answer_seconds)), else_=None)
    rows = session.execute(
        select(Call.outcome, second, *_in_each(Call.arrived_at, periods))
        .where(*_span(Call.arrived_at, periods), Call.in_hours == true(), Call.outcome != "in_progress")
        .group_by(Call.outcome, second)).all()
    result = []
    for index in range(len(periods)):
        outcomes: Counter = Counter()
        times: Counter = Counter()
        for outcome, seconds, *counts in rows:
            count = int(counts[index] or 0)
            outcomes[outcome] += count
            if outcome == "answered" and seconds is not None and count:
                times[shown_seconds(seconds)] += count
        result.append((sum(outcomes.values()), outcomes["answered"], outcomes["abandoned"], spread(times)))
    return result


def _callbacks(session: Session, periods: list[Period]) -> list[tuple[int, int, Spread]]:
    # Not a callback the app withdrew because its call was answered after all: never owed (an
    # open one has no outcome, and NOT of NULL would leave it out).
    owed = (*_span(Callback.owed_from, periods), Callback.outcome.is_(None) | ~never_owed())
    owing = _in_each(Callback.owed_from, periods)
    reaching = _in_each(Callback.owed_from, periods, Callback.reached_at.is_not(None))
    row = session.execute(select(*owing, *reaching).where(*owed)).one()
    waits = _spreads(session, _timed(Callback.owed_from, Callback.first_attempt_at)
                     .where(*owed, Callback.first_attempt_at.is_not(None)), periods)
    many = len(periods)
    return [(int(row[i] or 0), int(row[many + i] or 0), waits[i]) for i in range(many)]


def _emails(session: Session, periods: list[Period]) -> list[tuple[Spread, int, Spread]]:
    # Every email enquiry has one acknowledgement row (sent, or not), received when the enquiry opened.
    ack = EmailAcknowledgement
    received = _span(ack.received_at, periods)
    each = _in_each(ack.received_at, periods)
    enquiries = session.execute(select(*each).select_from(ack).where(*received)).one()
    acknowledged = _spreads(session, _timed(ack.received_at, ack.sent_at)
                            .where(*received, ack.sent_at.is_not(None)), periods)
    first = first_answers(min(p.start for p in periods))
    answer = answered_at(first)
    answered = _spreads(session, _timed(ack.received_at, answer).select_from(ack)
                        .join(Enquiry, Enquiry.id == ack.enquiry_id)
                        .outerjoin(first, first.c.detail == answer_detail(Enquiry.reference))
                        .where(*received, answer.is_not(None)), periods)
    return [(acknowledged[i], int(enquiries[i] or 0), answered[i]) for i in range(len(periods))]


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
