"""The settled-history cache behind /metrics gives exactly the uncached figures, whatever
changes after it counted: unsettled items settling, late rows, journal events, a new day."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, update

from helpdesk.models import Call, Callback, EmailAcknowledgement, TwilioEvent, User
from metrics import history as history_module
from metrics.compliance import current_period, figures_for_periods
from metrics.counts import totals
from metrics.history import SettledHistory
from tests.integration.compliance_data import add_call, add_callback, add_email
from tests.integration.test_compliance import store_known_mix

UTC = timezone.utc
TODAY = datetime(2026, 11, 24, tzinfo=UTC)  # the test clock's UK midnight


def periods(now):
    return [current_period(kind, now) for kind in ("today", "week", "month")]


def uncached(database, settings, now):
    with database.session() as session:
        return totals(session, settings), figures_for_periods(session, periods(now), settings, now)


def cached(history, database, settings, now):
    with database.session() as session:
        return history.read(session, settings, now, periods(now))


def assert_same(history, database, settings, now):
    expected_totals, expected_periods = uncached(database, settings, now)
    got_totals, got_periods = cached(history, database, settings, now)
    assert got_totals == expected_totals
    assert got_periods == expected_periods


@pytest.fixture
def history_with_old_items(app, settings, clock):
    """A history counted once, holding settled and unsettled items from before today."""
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        store_known_mix(session)
    with database.session() as session, session.begin():
        add_call(session, datetime(2026, 11, 23, 17, 59, tzinfo=UTC), outcome="in_progress", countable=False)
        add_callback(session, datetime(2026, 11, 23, 16, 30, tzinfo=UTC), result=None, due_in=timedelta(hours=19))
        add_email(session, datetime(2026, 11, 23, 9, tzinfo=UTC), status="pending", result=None)
    history = SettledHistory()
    assert_same(history, database, settings, clock())
    # A process's first count holds nothing back (there is no count before it), so the next
    # counts everything again with its mark held back; the counts after that are the rolls.
    clock.advance(history_module.ROLL_SECONDS + 1)
    assert_same(history, database, settings, clock())
    assert history._cache.held_back
    return history


def test_items_from_before_today_that_settle_later_are_counted_when_they_do(app, settings, clock,
                                                                             history_with_old_items):
    database = app.extensions["helpdesk.db"]
    before = cached(history_with_old_items, database, settings, clock())[0]
    with database.session() as session, session.begin():
        session.execute(update(Call).where(Call.outcome == "in_progress", Call.arrived_at < TODAY)
                        .values(outcome="answered", answer_seconds=12.0, countable=True, sla_result="met",
                                answered_at=datetime(2026, 11, 23, 17, 59, 12, tzinfo=UTC)))
        session.execute(update(Callback).where(Callback.sla_result.is_(None), Callback.owed_from < TODAY)
                        .values(sla_result="met", first_attempt_at=clock()))
        session.execute(update(EmailAcknowledgement).where(EmailAcknowledgement.status == "pending",
                                                           EmailAcknowledgement.received_at < TODAY)
                        .values(status="sent", sent_at=clock(), sla_result="late"))
    assert_same(history_with_old_items, database, settings, clock())
    after = cached(history_with_old_items, database, settings, clock())[0]
    assert after.calls_within_target == before.calls_within_target + 1
    assert after.callbacks["met"] == before.callbacks["met"] + 1
    assert after.acknowledgements["late"] == before.acknowledgements["late"] + 1


def test_rows_added_later_for_earlier_days_are_counted(app, settings, clock, history_with_old_items):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        add_call(session, datetime(2026, 11, 2, 10, tzinfo=UTC), answer_seconds=50.0)
        add_callback(session, datetime(2026, 11, 23, 9, tzinfo=UTC), result="breached")
        add_email(session, datetime(2026, 11, 20, 9, tzinfo=UTC), result="met")
    assert_same(history_with_old_items, database, settings, clock())


def test_a_journal_event_for_a_counted_call_makes_it_count_again(app, settings, clock, history_with_old_items):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        old = session.scalars(select(Call).where(Call.arrived_at < TODAY,
                                                 Call.sla_result == "met").order_by(Call.id).limit(1)).one()
        # The projection rewrites a call only for a new journal event: a late correction.
        session.execute(insert(TwilioEvent).values(received_at=clock(), kind="status", call_sid=old.call_sid,
                                                   leg_sid=old.call_sid, fingerprint="f" * 64, params="[]"))
        session.execute(update(Call).where(Call.id == old.id).values(outcome="abandoned", sla_result="breached",
                                                                     answer_seconds=None, answered_at=None))
    assert_same(history_with_old_items, database, settings, clock())


def test_the_next_day_counts_yesterday_into_the_history(app, settings, clock, history_with_old_items):
    database = app.extensions["helpdesk.db"]
    clock.advance(24 * 3600)
    assert_same(history_with_old_items, database, settings, clock())
    clock.now = datetime(2026, 12, 1, 9, tzinfo=UTC)  # a new month
    assert_same(history_with_old_items, database, settings, clock())


def test_a_database_put_back_to_an_older_copy_under_the_app_is_counted_again_at_once(app, settings, clock, caplog):
    """A restore while the app runs: the journal goes back, and the counted calls with it."""
    from sqlalchemy import delete

    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        calls = [add_call(session, TODAY - timedelta(days=1, hours=-9 - n), answer_seconds=5.0) for n in range(3)]
        session.flush()
        for n, call in enumerate(calls):
            session.execute(insert(TwilioEvent).values(received_at=call.arrived_at, kind="incoming",
                                                       call_sid=call.call_sid, leg_sid=call.call_sid,
                                                       fingerprint=f"{n:064d}", params="[]"))
    history = SettledHistory()
    for _ in range(2):
        clock.advance(history_module.ROLL_SECONDS + 1)
        assert_same(history, database, settings, clock())
    with database.session() as session, session.begin():  # the copy put back lacks the last call
        session.execute(delete(TwilioEvent).where(TwilioEvent.call_sid == calls[-1].call_sid))
        session.execute(delete(Call).where(Call.id == calls[-1].id))
    with caplog.at_level("ERROR", logger="metrics.history"):
        assert_same(history, database, settings, clock())  # at once, not at the next full count
    assert "the database was restored while the app ran" in caplog.text


def test_a_change_made_outside_the_app_is_seen_once_the_history_is_counted_again(app, settings, clock, monkeypatch,
                                                                                 history_with_old_items):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        session.execute(update(Call).where(Call.arrived_at < TODAY)
                        .values(caller_type="dwp"))
    stale = cached(history_with_old_items, database, settings, clock())[0]
    assert stale != uncached(database, settings, clock())[0]  # unseen until the next count
    monkeypatch.setattr(history_module, "REBUILD_SECONDS", 0)
    assert_same(history_with_old_items, database, settings, clock())


def test_a_new_day_counts_only_what_settled_since_and_the_figures_stay_exact(app, settings, clock, caplog,
                                                                                   history_with_old_items):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        add_call(session, datetime(2026, 11, 24, 23, 50, tzinfo=UTC), outcome="in_progress", countable=False)
        add_callback(session, datetime(2026, 11, 24, 15, tzinfo=UTC), result="met")
    clock.now = datetime(2026, 11, 25, 9, tzinfo=UTC)
    with caplog.at_level("DEBUG", logger="metrics.history"):
        assert_same(history_with_old_items, database, settings, clock())
    assert "counted the settled rows since the last count" in caplog.text
    assert "counting everything again" not in caplog.text
    with database.session() as session, session.begin():
        session.execute(update(Call).where(Call.outcome == "in_progress")
                        .values(outcome="no_answer", countable=True, sla_result="breached"))
        session.execute(update(Callback).where(Callback.sla_result.is_(None)).values(sla_result="breached"))
    assert_same(history_with_old_items, database, settings, clock())
    clock.now = datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert_same(history_with_old_items, database, settings, clock())


def test_calls_that_ended_recently_are_counted_by_a_later_roll_and_meanwhile_live(app, settings, clock, caplog,
                                                                                 history_with_old_items):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        recent = add_call(session, clock() - timedelta(minutes=2), answer_seconds=8.0)
    assert_same(history_with_old_items, database, settings, clock())
    clock.advance(20 * 60)
    with caplog.at_level("DEBUG", logger="metrics.history"):
        assert_same(history_with_old_items, database, settings, clock())
    assert "since the last count" in caplog.text
    # Rows newer than the last count's highest ids stay live for one more roll (a row may
    # commit after one with a higher id), then are counted.
    clock.advance(history_module.ROLL_SECONDS + 1)
    assert_same(history_with_old_items, database, settings, clock())
    assert recent.id not in history_with_old_items._cache.unsettled[Call]
    assert recent.id <= history_with_old_items._cache.highest[Call]  # now among the counted rows


def test_a_callback_closed_undecided_after_its_deadline_is_counted_once_the_sweep_decides_it(app, settings, clock,
                                                                                            history_with_old_items):
    from callbacks.sweep import sweep

    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        late = add_callback(session, clock() - timedelta(hours=4), result=None, status="closed")
        late.closed_at, late.outcome = clock() - timedelta(minutes=30), "resolved"  # after its deadline, no decision
    clock.advance(history_module.ROLL_SECONDS + 1)
    assert_same(history_with_old_items, database, settings, clock())
    clock.advance(history_module.ROLL_SECONDS + 1)
    assert_same(history_with_old_items, database, settings, clock())  # counted past it, still undecided
    with database.session() as session:
        assert (late.id, "breach") in sweep(session, settings, clock()).recorded
    assert_same(history_with_old_items, database, settings, clock())


def test_callbacks_closed_for_good_undecided_leave_the_live_part_a_day_after_closing(app, settings, clock,
                                                                                     history_with_old_items):
    """Withdrawn before the deadline, or by the app as never owed, a callback is never decided:
    kept live for a day (an attempt in flight may still report), then counted, not kept live
    for ever. One closed undecided after its deadline waits for the sweep; one whose outcome
    is missing stays live rather than falling out of both parts."""
    database = app.extensions["helpdesk.db"]
    owed = clock() - timedelta(hours=2)
    with database.session() as session, session.begin():
        agent = User(username="agent", password_hash="x", role="agent", created_at=owed)
        session.add(agent)
        session.flush()
        by_agent = add_callback(session, owed, result=None, status="closed")
        by_agent.outcome, by_agent.closed_at, by_agent.closed_by_id = "withdrawn", owed + timedelta(hours=1), agent.id
        by_app = add_callback(session, owed - timedelta(hours=4), result=None, status="closed")
        by_app.outcome, by_app.closed_at = "withdrawn", owed  # after its deadline, never owed
        late = add_callback(session, owed - timedelta(hours=4), result=None, status="closed")
        late.outcome, late.closed_at, late.closed_by_id = "resolved", owed, agent.id  # owed a decision
        odd = add_callback(session, owed - timedelta(hours=4), result=None, status="closed")
        odd.closed_at = owed  # after its deadline, with no outcome: it must still be counted somewhere
    ids = {by_agent.id, by_app.id, late.id, odd.id}
    for _ in range(2):
        clock.advance(history_module.ROLL_SECONDS + 1)
        assert_same(history_with_old_items, database, settings, clock())
    assert ids <= set(history_with_old_items._cache.unsettled[Callback])
    clock.advance(history_module.CLOSED_MARGIN.total_seconds())
    for _ in range(2):
        clock.advance(history_module.ROLL_SECONDS + 1)
        assert_same(history_with_old_items, database, settings, clock())
    live = set(history_with_old_items._cache.unsettled[Callback])
    assert by_agent.id not in live and by_app.id not in live
    assert late.id in live  # the sweep has not run in this test
    assert odd.id in live


def test_a_call_still_in_progress_two_days_on_leaves_the_live_part_and_an_event_for_it_counts_again(
        app, settings, clock, history_with_old_items):
    database = app.extensions["helpdesk.db"]
    with database.session() as session, session.begin():
        stuck = add_call(session, clock() - timedelta(hours=20), outcome="in_progress", countable=False)
    for _ in range(2):
        clock.advance(history_module.ROLL_SECONDS + 1)
        assert_same(history_with_old_items, database, settings, clock())
    assert stuck.id in history_with_old_items._cache.unsettled[Call]
    clock.advance(history_module.STUCK_AFTER.total_seconds())
    for _ in range(2):
        clock.advance(history_module.ROLL_SECONDS + 1)
        assert_same(history_with_old_items, database, settings, clock())
    assert stuck.id not in history_with_old_items._cache.unsettled[Call]
    with database.session() as session, session.begin():  # its ending comes at last, from the spool
        session.execute(insert(TwilioEvent).values(received_at=clock(), kind="status", call_sid=stuck.call_sid,
                                                   leg_sid=stuck.call_sid, fingerprint="e" * 64, params="[]"))
        session.execute(update(Call).where(Call.id == stuck.id).values(outcome="abandoned", ended_at=clock()))
    assert_same(history_with_old_items, database, settings, clock())


@pytest.fixture
def postgresql_desk(postgres_url):
    """(database, settings) on a migrated PostgreSQL, where ids are handed out before commit."""
    from helpdesk.db import Database
    from helpdesk.migrate import upgrade
    from tests.integration.conftest import make_settings

    upgrade(postgres_url)
    database = Database(postgres_url)
    yield database, make_settings()
    database.dispose()


def email_in_flight(database, now: datetime):
    """An email stored in a transaction left open (its ids taken), then a later one committed:
    the open transaction, to commit when the test says."""
    slow = database.session()
    slow.begin()
    add_email(slow, now - timedelta(minutes=30))
    with database.session() as session, session.begin():
        add_email(session, now - timedelta(minutes=20))
    return slow


def counted_through_rolls(history, database, settings, now: datetime, rolls: int, emails: int) -> None:
    for _ in range(rolls):
        now += timedelta(seconds=history_module.ROLL_SECONDS + 1)
        assert_same(history, database, settings, now)
        assert cached(history, database, settings, now)[0].emails_received == emails


def test_a_row_in_flight_at_a_processs_first_count_is_counted_by_the_next(postgresql_desk):
    """The first count in a process has no earlier count to hold its mark back to: the next one
    counts everything again, so a row committed after the first count with a lower id is seen."""
    database, settings = postgresql_desk
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    slow = email_in_flight(database, now)
    history = SettledHistory()
    assert_same(history, database, settings, now)  # the first count: the first email is invisible
    slow.commit()
    slow.close()
    counted_through_rolls(history, database, settings, now, rolls=3, emails=2)


def test_a_row_that_becomes_visible_after_one_with_a_higher_id_is_still_counted(postgresql_desk):
    """PostgreSQL hands out ids before commit: an email stored in a transaction still open while
    a later one commits has the lower id, and is seen by the next count, not lost below it."""
    database, settings = postgresql_desk
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    with database.session() as session, session.begin():
        add_email(session, now - timedelta(hours=1))
    history = SettledHistory()
    assert_same(history, database, settings, now)
    slow = email_in_flight(database, now)
    now += timedelta(seconds=history_module.ROLL_SECONDS + 1)
    assert_same(history, database, settings, now)  # a count while the first is still invisible
    slow.commit()
    slow.close()
    counted_through_rolls(history, database, settings, now, rolls=2, emails=3)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_ids_kept_live_go_to_the_database_as_one_parameter_whatever_their_number(dialect):
    """Thousands of separate parameters, and a statement of its own for each length, cost
    SQLite about 1 MB of memory per cached statement (a soak test's workers grew 100 MB an hour)."""
    from sqlalchemy.dialects import postgresql, sqlite

    compiler = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[dialect]
    statements = []
    for count in (3, 5000):
        compiled = select(Call.id).where(history_module._among(Call.id, list(range(count)), dialect)).compile(
            dialect=compiler)
        assert len(compiled.params) == 1
        statements.append(str(compiled))
    assert statements[0] == statements[1]
