"""How quickly contacts were handled (metrics.handling), from stored records on SQLite and
PostgreSQL, and on the Service levels page.

The clock stands at Tuesday 24 November 2026, 10:00 UK time (GMT).
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from callbacks.email.waiting import MARKED_ANSWERED
from helpdesk.models import AuditEntry, Callback, Enquiry
from helpdesk.pages.format import shown_seconds
from metrics.compliance import Period, current_period, date_range_period
from metrics.handling import Spread, handling, handling_for_periods, spread
from metrics.seconds_sql import as_shown, over_days_after, seconds_up_between
from tests.integration.compliance_data import add_call, add_callback, add_email
from tests.integration.test_users_and_login import make_user, sign_in

UTC = timezone.utc
TODAY = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
YESTERDAY = TODAY - timedelta(days=1)


def store_calls(session) -> None:
    with session.begin():
        for seconds in (2.0, 4.5, 6.0, 9.0, 12.0, 15.0, 21.0, 29.0, 33.0, 40.0):  # ten answered
            add_call(session, TODAY, answer_seconds=seconds)
        add_call(session, TODAY, outcome="abandoned", countable=False)  # hung up within the target
        add_call(session, TODAY, outcome="abandoned", sla_result="breached")  # hung up after it
        add_call(session, TODAY, outcome="voicemail", sla_result="breached")
        # Not in the figures: out of hours (answered, even), still ringing, another day.
        add_call(session, TODAY, outcome="answered", answer_seconds=1.0, in_hours=False, countable=False)
        add_call(session, TODAY, outcome="in_progress", countable=False)
        add_call(session, YESTERDAY, answer_seconds=80.0)


def answered_by_email(session, ack, answers: list[timedelta]) -> None:
    """The enquiry of `ack` marked as answered after each of `answers` from its receipt (audit log), then closed."""
    enquiry = session.get(Enquiry, ack.enquiry_id)
    for after in answers:
        session.add(AuditEntry(at=ack.received_at + after, user_id=None, actor="sam", action=MARKED_ANSWERED,
                               detail=json.dumps({"enquiry": enquiry.reference}, sort_keys=True)))
    if answers:
        session.execute(update(Enquiry).where(Enquiry.id == enquiry.id)
                        .values(status="closed", closed_at=ack.received_at + answers[-1]))


def test_calls_in_opening_hours_answered_hung_up_and_how_quickly(db_session, clock):
    store_calls(db_session)
    today = handling(db_session, current_period("today", clock()))
    assert (today.calls, today.answered, today.hung_up) == (13, 10, 2)
    # Ten answer times: half took no longer than the 5th (12 s), nine tenths than the 9th (33 s).
    assert today.answer == Spread(10, 12.0, 33.0)
    both = handling(db_session, date_range_period(YESTERDAY.date(), TODAY.date()))
    assert (both.calls, both.answered) == (14, 11)
    assert both.answer == Spread(11, 15.0, 40.0)  # the 6th and the 10th of 11


def test_callbacks_owed_attempted_reached_and_how_long_to_the_first_attempt(db_session, clock):
    agent = make_user(db_session, "sam", "agent").id
    with db_session.begin():
        for minutes in (10, 20, 30, 50, 200):
            callback = add_callback(db_session, TODAY, result="met" if minutes <= 180 else "breached")
            callback.first_attempt_at = TODAY + timedelta(minutes=minutes)
            callback.reached_at = callback.first_attempt_at if minutes != 30 else None
        add_callback(db_session, TODAY - timedelta(minutes=5), result=None)  # owed, not tried yet
        add_callback(db_session, YESTERDAY, result="met")  # another day
        # Withdrawn by the app, its call answered after all: never owed, so not counted. One an
        # agent withdrew was owed, and counts.
        never = add_callback(db_session, TODAY, result=None, status="closed")
        never.outcome = "withdrawn"
        agents = add_callback(db_session, TODAY, result=None, status="closed")
        agents.outcome, agents.closed_by_id = "withdrawn", agent
    today = handling(db_session, current_period("today", clock()))
    assert (today.callbacks, today.reached) == (7, 4)
    assert today.first_attempt == Spread(5, 30 * 60.0, 200 * 60.0)


def test_emails_acknowledged_and_answered_and_how_quickly(db_session, clock):
    with db_session.begin():
        sent = [add_email(db_session, TODAY, within=timedelta(minutes=m)) for m in (2, 4, 6, 8)]  # sent a minute early
        unsent = add_email(db_session, TODAY, status="pending", result=None)
        db_session.flush()
        answered_by_email(db_session, sent[0], [timedelta(hours=1)])
        # Answered, reopened by a reply and answered again: the first answer counts.
        answered_by_email(db_session, sent[1], [timedelta(hours=2), timedelta(hours=30)])
        answered_by_email(db_session, sent[2], [timedelta(hours=5)])
        # Answered before the audit log kept answers: its latest answer stands in.
        enquiry_id = unsent.enquiry_id
        db_session.execute(update(Enquiry).where(Enquiry.id == enquiry_id)
                           .values(status="closed", closed_at=TODAY + timedelta(hours=3)))
        # An unreadable entry is passed over.
        db_session.add(AuditEntry(at=TODAY, user_id=None, actor="x", action=MARKED_ANSWERED, detail="not json"))
        add_email(db_session, YESTERDAY)
    today = handling(db_session, current_period("today", clock()))
    assert today.email_enquiries == 5
    assert today.acknowledgement == Spread(4, 3 * 60.0, 7 * 60.0)
    assert today.email_answer == Spread(4, 2 * 3600.0, 5 * 3600.0)


def test_answer_times_count_in_whole_seconds_rounded_up(db_session, clock):
    with db_session.begin():
        for seconds in (7.2, 7.9, 8.0, 8.000001, 10.04):
            add_call(db_session, TODAY, answer_seconds=seconds)
    # 8, 8, 8, 9, 11: half took no longer than the 3rd (8 s), nine tenths than the 5th (11 s).
    assert handling(db_session, current_period("today", clock())).answer == Spread(5, 8.0, 11.0)


@pytest.mark.parametrize(("owed_us", "tried_us", "shown"), [
    (400, 1_000_600, 2.0),  # 1.0002 s: over a second, so "2 seconds"
    (400, 1_000_400, 1.0),  # exactly a second
    (400, 60_000_600, 120.0),  # 60.0002 s: over a minute, so "2 minutes"
    (999_999, 60_999_999, 60.0),  # exactly a minute
])
def test_times_between_two_stored_instants_are_exact_to_the_microsecond_on_both_databases(
        db_session, clock, owed_us, tried_us, shown):
    with db_session.begin():
        callback = add_callback(db_session, TODAY + timedelta(microseconds=owed_us), result="met")
        callback.first_attempt_at = TODAY + timedelta(microseconds=tried_us)
    assert handling(db_session, current_period("today", clock())).first_attempt == Spread(1, shown, shown)


def test_whole_seconds_between_stored_instants_are_exact_whatever_the_fractions_and_dates(db_session):
    # SQLite's own date functions round a fraction to the millisecond (…:05.9996 would count as
    # …:06), so these cover such fractions, whole seconds, midnight, both clock changes and
    # month ends, and times from none to several weeks.
    rng = random.Random(5)
    fractions = [0, 1, 400, 500, 999_500, 999_600, 999_999]
    starts = [datetime(2026, 3, 28, 23, 59, 59, tzinfo=UTC), datetime(2026, 10, 25, 0, 59, 59, tzinfo=UTC),
              datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC), TODAY]
    pairs = []
    for _ in range(300):
        start = rng.choice(starts) + timedelta(microseconds=rng.choice(fractions + [rng.randrange(10**6)]))
        took = rng.choice([timedelta(0), timedelta(microseconds=rng.choice(fractions)),
                           timedelta(seconds=rng.randrange(120), microseconds=rng.choice(fractions)),
                           timedelta(microseconds=rng.randrange(40 * 86400 * 10**6))])
        pairs.append((start, start + took))
    with db_session.begin():
        for start, end in pairs:
            add_callback(db_session, start, result="met").first_attempt_at = end
    seconds = seconds_up_between(Callback.owed_from, Callback.first_attempt_at)
    with db_session.begin():
        got = db_session.execute(select(seconds, as_shown(seconds)).order_by(Callback.id)).all()
    expected = []
    for start, end in pairs:
        whole = -(-((end - start) // timedelta(microseconds=1)) // 10**6)  # exact, in whole numbers
        expected.append((whole, shown_seconds(whole)))
    assert [tuple(row) for row in got] == expected


def test_over_a_day_after_is_exact_on_either_side_of_midnight(db_session):
    # On SQLite an end on the start's date is taken as not over a day from the stored text
    # alone; these cover the dates either side of that, to the microsecond, and times backwards.
    rng = random.Random(7)
    day, micro = timedelta(days=1), timedelta(microseconds=1)
    starts = [datetime(2026, 11, 23, 23, 59, 59, 999_999, tzinfo=UTC), datetime(2026, 11, 24, 0, 0, tzinfo=UTC),
              datetime(2026, 3, 29, 0, 30, 0, 500_000, tzinfo=UTC), TODAY]
    tooks = [timedelta(0), -micro, -day - micro, day - micro, day, day + micro, 2 * day, timedelta(hours=23),
             timedelta(seconds=1)]
    pairs = [(start, start + took) for start in starts for took in tooks]
    pairs += [(start, start + timedelta(microseconds=rng.randrange(-86400 * 10**6, 3 * 86400 * 10**6)))
              for start in (rng.choice(starts) for _ in range(200))]
    pairs.append((TODAY, None))
    with db_session.begin():
        for start, end in pairs:
            add_callback(db_session, start, result="met").first_attempt_at = end
    over = over_days_after(Callback.owed_from, Callback.first_attempt_at, 86400)
    with db_session.begin():
        got = [row[0] for row in db_session.execute(select(over).order_by(Callback.id))]
    assert [None if value is None else bool(value) for value in got] == [
        None if end is None else end - start > day for start, end in pairs]
    with pytest.raises(ValueError):
        over_days_after(Callback.owed_from, Callback.first_attempt_at, 3600)


def test_a_time_of_decades_counts_and_a_time_backwards_shows_as_none(db_session, clock):
    # Neither comes from the app's own entries; imported or damaged data must still not break
    # the page (69 years overflow a 32-bit count of seconds), and a negative time is never shown.
    decades = timedelta(days=69 * 365, microseconds=1)
    with db_session.begin():
        add_callback(db_session, TODAY - decades, result="met").first_attempt_at = TODAY
        for back in (timedelta(microseconds=1), timedelta(seconds=1.5), timedelta(seconds=90.2), decades):
            add_callback(db_session, TODAY, result="met").first_attempt_at = TODAY - back
    seconds = seconds_up_between(Callback.owed_from, Callback.first_attempt_at)
    with db_session.begin():
        got = db_session.execute(select(seconds, as_shown(seconds)).order_by(Callback.id)).all()
    assert got[0] == (69 * 365 * 86400 + 1, (69 * 365 * 86400 + 60) // 60 * 60)
    assert [shown for _, shown in got[1:]] == [0, 0, 0, 0]
    figures = handling(db_session, date_range_period((TODAY - decades).date(), TODAY.date()))
    assert figures.first_attempt == Spread(5, 0.0, float(got[0][1]))


def test_several_periods_at_once_give_each_its_own_figures(db_session, clock):
    # Contacts spread over October and November; the periods overlap (today, this week, this
    # month, and a range across the month's start) or stand apart (a range in October, and one
    # with nothing in it), as on the Service levels page.
    rng = random.Random(11)
    moments = [datetime(2026, 10, 1, 8, tzinfo=UTC) + timedelta(minutes=rng.randrange(55 * 24 * 60))
               for _ in range(120)]
    moments += [TODAY + timedelta(minutes=m) for m in range(0, 40, 4)]  # some today
    calls, waits, acks, answers = [], [], [], []
    with db_session.begin():
        for n, moment in enumerate(moments):
            seconds = round(rng.uniform(1, 90), 1)
            add_call(db_session, moment, answer_seconds=seconds) if n % 4 else \
                add_call(db_session, moment, outcome="abandoned", sla_result="breached")
            calls.append((moment, seconds if n % 4 else None))
            if n % 3 == 0:
                wait = timedelta(seconds=rng.randrange(60, 4 * 3600), microseconds=rng.randrange(10**6))
                add_callback(db_session, moment, result="met").first_attempt_at = moment + wait
                waits.append((moment, wait))
            if n % 2 == 0:
                sent = timedelta(seconds=rng.randrange(1, 900))
                ack = add_email(db_session, moment, within=sent + timedelta(minutes=1))
                acks.append((moment, sent))
                db_session.flush()
                if n % 4 == 0:
                    answer = timedelta(minutes=rng.randrange(5, 3000))
                    answered_by_email(db_session, ack, [answer, answer + timedelta(hours=1)])
                    answers.append((moment, answer))
    now = clock()
    periods = [current_period(kind, now) for kind in ("today", "week", "month")]
    periods += [Period("october", datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 10, 20, tzinfo=UTC)),
                Period("across", datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)),
                Period("nothing", datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))]
    figures = handling_for_periods(db_session, periods)

    def times(items, period):
        return spread(Counter(shown_seconds(taken.total_seconds() if isinstance(taken, timedelta) else taken)
                              for moment, taken in items if period.start <= moment < period.end))

    for period in periods:
        got = figures[period.label]
        inside = [seconds for moment, seconds in calls if period.start <= moment < period.end]
        assert (got.calls, got.answered, got.hung_up) == (
            len(inside), sum(s is not None for s in inside), sum(s is None for s in inside)), period.label
        assert got.answer == times([c for c in calls if c[1] is not None], period), period.label
        assert got.first_attempt == times(waits, period), period.label
        assert got.callbacks == got.first_attempt.count
        assert got.acknowledgement == times(acks, period), period.label
        assert got.email_enquiries == got.acknowledgement.count
        assert got.email_answer == times(answers, period), period.label
        assert got == handling(db_session, period)  # the same on its own
    assert figures["month"].calls > figures["week"].calls >= figures["today"].calls >= 10
    assert figures["nothing"] == handling(db_session, periods[-1]) and figures["nothing"].calls == 0
    with pytest.raises(ValueError, match="distinct labels"):
        handling_for_periods(db_session, [periods[0], periods[0]])


def test_a_period_with_nothing_in_it(db_session, clock):
    nothing = handling(db_session, current_period("month", clock()))
    assert (nothing.calls, nothing.answered, nothing.hung_up, nothing.callbacks, nothing.email_enquiries) == (0,) * 5
    assert nothing.answer == nothing.first_attempt == nothing.acknowledgement == nothing.email_answer == Spread(0)


def rows(page: str, key: str) -> dict[str, list[str]]:
    """The How quickly table `key` ("periods", "range"): figure -> cell texts (a figure named twice: group: figure)."""
    section = page.split(f'id="{key}-handling-caption"')[1].split("</table>")[0]
    found, group = {}, ""
    for row in re.findall(r"<tr>(.*?)</tr>", section, re.S):
        heading = re.search(r'<th scope="rowgroup"[^>]*>(.*?)</th>', row, re.S)
        if heading:
            group = heading.group(1).strip()
            continue
        label = re.search(r'<th scope="row">(.*?)</th>', row, re.S)
        if label:
            cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            found[f"{group}: {label.group(1).strip()}"] = cells
    return found


def test_the_service_levels_page_shows_how_quickly_for_each_period(app, client, db_session, clock):
    make_user(db_session, "alex", "manager")
    sign_in(client, "alex")
    store_calls(db_session)
    with db_session.begin():
        callback = add_callback(db_session, TODAY, result="met")
        callback.reached_at = callback.first_attempt_at
    page = client.get("/service-levels").get_data(as_text=True)
    shown = rows(page, "periods")
    assert re.findall(r'<th scope="col" class="num">([^<]+)</th>', page.split('id="periods-handling-caption"')[1]
                      .split("</thead>")[0]) == ["Today", "This week", "This month"]
    assert shown["Calls in opening hours: Calls"] == ["13", "14", "14"]
    assert shown["Calls in opening hours: Answered"] == ["10 (76.9%)", "11 (78.6%)", "11 (78.6%)"]
    assert shown["Calls in opening hours: Caller hung up before an answer"] == ["2 (15.4%)", "2 (14.3%)", "2 (14.3%)"]
    assert shown["Calls in opening hours: No answer, voicemail or failed"] == ["1 (7.7%)", "1 (7.1%)", "1 (7.1%)"]
    assert shown["Calls in opening hours: Half answered within"] == ["12 seconds", "15 seconds", "15 seconds"]
    assert shown["Calls in opening hours: 9 in 10 answered within"] == ["33 seconds", "40 seconds", "40 seconds"]
    assert shown["Callbacks: Owed"] == ["1"] * 3
    assert shown["Callbacks: Caller reached"] == ["1 (100.0%)"] * 3
    assert shown["Callbacks: Half had a first attempt within"] == ["20 minutes"] * 3
    assert shown["Email enquiries: Half acknowledged within"] == ["No data"] * 3
    assert "range-handling-caption" not in page
    chosen = client.get("/service-levels?from=2026-11-23&to=2026-11-23").get_data(as_text=True)
    ids = re.findall(r'\bid="([^"]+)"', chosen)
    assert len(ids) == len(set(ids)), "each id once on the page"
    assert rows(chosen, "range")["Calls in opening hours: Calls"] == ["1"]
    assert rows(chosen, "range")["Calls in opening hours: Half answered within"] == ["2 minutes"]  # 80 s, rounded up


def test_an_answer_recorded_by_the_agents_page_counts_from_the_audit_log(db_session, clock):
    from callbacks.email.waiting import mark_answered

    agent = make_user(db_session, "sam", "agent")
    with db_session.begin():
        ack = add_email(db_session, TODAY)
        db_session.flush()
        enquiry_id, email_id = ack.enquiry_id, ack.inbound_email_id
    mark_answered(db_session, enquiry_id, agent_id=agent.id, now=TODAY + timedelta(minutes=47), seen=email_id)
    # Reopened by a reply, and closed again later: the first answer still counts.
    with db_session.begin():
        db_session.execute(update(Enquiry).where(Enquiry.id == enquiry_id).values(status="open"))
    mark_answered(db_session, enquiry_id, agent_id=agent.id, now=TODAY + timedelta(hours=6), seen=email_id)
    assert handling(db_session, current_period("today", clock())).email_answer == Spread(1, 47 * 60.0, 47 * 60.0)
