"""The sweep on a real database (SQLite and PostgreSQL): each warning once, each breach once, whenever it runs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from threading import Barrier, Thread

import pytest
from sqlalchemy import select

from callbacks import owed, service
from callbacks.sweep import sweep
from helpdesk.db import Database
from helpdesk.models import Callback, CallbackNotice, Enquiry
from helpdesk.users import add_user
from tests.integration.conftest import OPEN_TIME, make_settings
from tests.integration.twilio_requests import inbound, post, sid, stamp

CALLER = "+447700900123"
# Tuesday 24 November 2026, 10:00 GMT: owed now, due at 13:00 on the business clock (08:00-18:00).
OWED = OPEN_TIME
DUE = OWED + timedelta(hours=3)


def at(hours: int, minutes: int = 0, seconds: int = 0, day: int = 24) -> datetime:
    """A moment on November 2026 (GMT, so UK time is UTC)."""
    return datetime(2026, 11, day, hours, minutes, seconds, tzinfo=timezone.utc)


@pytest.fixture
def database(migrated_url):
    database = Database(migrated_url)
    yield database
    database.dispose()


def owe(database: Database, settings, n: int, owed_from: datetime = OWED, caller: str | None = CALLER) -> int:
    """A missed call's callback, made by the same service function the webhooks use."""
    with database.session() as session, session.begin():
        enquiry = Enquiry(reference=f"HD-2026-{n:06d}", channel="phone", opened_at=owed_from, call_sid=sid(n),
                          status="open")
        session.add(enquiry)
        session.flush()
        owed.owe_for_missed_call(session, settings, call_sid=sid(n), enquiry_id=enquiry.id, outcome="abandoned",
                                    caller_number=caller, caller_type="customer", arrived_at=owed_from, now=owed_from)
        return session.scalar(select(Callback.id).where(Callback.contact_key == f"call:{sid(n)}"))


def run_sweep(database: Database, settings, now: datetime) -> list[tuple[int, str]]:
    with database.session() as session:
        return sweep(session, settings, now).recorded


def notices(database: Database, callback_id: int | None = None) -> dict[str, datetime]:
    """kind -> fell_due_at, failing if any kind was recorded twice."""
    with database.session() as session:
        query = select(CallbackNotice.kind, CallbackNotice.fell_due_at)
        if callback_id is not None:
            query = query.where(CallbackNotice.callback_id == callback_id)
        rows = session.execute(query).all()
    kinds = [kind for kind, _ in rows]
    assert len(kinds) == len(set(kinds)), f"a notice was recorded twice: {sorted(kinds)}"
    return dict(rows)


def load(database: Database, callback_id: int) -> Callback:
    with database.session() as session:
        return session.get(Callback, callback_id)


def attempt(database: Database, settings, callback_id: int, started_at: datetime, outcome: str = "no_answer") -> None:
    with database.session() as session:
        agent = add_user(session, f"agent{callback_id}", "a-long-enough-password", "agent", now=OWED)
    with database.session() as session:
        service.add_attempt(session, settings, callback_id=callback_id, agent_id=agent.id, source="manual",
                            started_at=started_at, outcome=outcome, now=started_at)


def test_the_30_and_10_minute_warnings_are_each_recorded_once_however_often_the_sweep_runs(database):
    settings = make_settings()
    callback_id = owe(database, settings, 1)
    assert load(database, callback_id).due_at == DUE
    assert run_sweep(database, settings, at(12, 29, 59)) == []
    assert run_sweep(database, settings, at(12, 30)) == [(callback_id, "warning_30")]
    assert run_sweep(database, settings, at(12, 30)) == []  # the same moment again
    assert run_sweep(database, settings, at(12, 45)) == []
    assert run_sweep(database, settings, at(12, 50)) == [(callback_id, "warning_10")]
    for later in (at(12, 50), at(12, 55), at(13, 0)):
        assert run_sweep(database, settings, later) == []
    assert notices(database, callback_id) == {"warning_30": at(12, 30), "warning_10": at(12, 50)}
    assert load(database, callback_id).sla_result is None


def test_on_the_wall_clock_the_warnings_go_out_30_and_10_minutes_before_the_deadline_while_the_desk_is_closed(
        database):
    settings = make_settings(callback={"clock": "elapsed"})
    callback_id = owe(database, settings, 12, owed_from=at(19, 0))  # after closing: due at 22:00
    assert load(database, callback_id).due_at == at(22, 0)
    assert run_sweep(database, settings, at(19, 1)) == []
    assert run_sweep(database, settings, at(21, 29, 59)) == []
    assert run_sweep(database, settings, at(21, 30)) == [(callback_id, "warning_30")]
    assert run_sweep(database, settings, at(21, 49, 59)) == []
    assert run_sweep(database, settings, at(21, 50)) == [(callback_id, "warning_10")]
    assert notices(database, callback_id) == {"warning_30": at(21, 30), "warning_10": at(21, 50)}


def sweep_twice_at_once(database: Database, settings, now: datetime) -> list[tuple[int, str]]:
    barrier, recorded = Barrier(2), []

    def run():
        barrier.wait()
        recorded.extend(run_sweep(database, settings, now))

    threads = [Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return recorded


def test_two_sweeps_at_the_same_moment_record_each_warning_once(database):
    settings = make_settings()
    ids = [owe(database, settings, n) for n in range(1, 21)]
    recorded = sweep_twice_at_once(database, settings, at(12, 50))
    assert set(recorded) == {(i, "warning_10") for i in ids}  # 10 minutes left: the most urgent only
    for callback_id in ids:
        assert set(notices(database, callback_id)) == {"warning_10"}


def test_two_sweeps_at_the_same_moment_report_each_new_notice_once(database):
    settings = make_settings()
    ids = [owe(database, settings, n) for n in range(1, 21)]
    recorded = sweep_twice_at_once(database, settings, at(12, 50))
    assert sorted(recorded) == sorted((i, "warning_10") for i in ids)


def test_the_breach_is_recorded_once_at_the_due_time_and_not_at_the_deadline_itself(database):
    settings = make_settings()
    callback_id = owe(database, settings, 2)
    run_sweep(database, settings, at(12, 50))
    assert [kind for _, kind in run_sweep(database, settings, DUE)] == []  # at due_at an attempt still meets it
    assert run_sweep(database, settings, DUE + timedelta(seconds=1)) == [(callback_id, "breach")]
    assert run_sweep(database, settings, DUE + timedelta(seconds=1)) == []
    assert run_sweep(database, settings, at(15, 0)) == []
    callback = load(database, callback_id)
    assert (callback.sla_result, callback.breached_at) == ("breached", DUE)
    assert notices(database, callback_id)["breach"] == DUE


def test_a_sweep_after_five_hours_of_downtime_records_the_breach_at_the_due_time_and_no_stale_warnings(database):
    settings = make_settings()
    callback_id = owe(database, settings, 3)
    assert run_sweep(database, settings, at(12, 0)) == []
    # The scheduler was down from 12:00 to 17:00: both warnings and the deadline passed meanwhile.
    assert run_sweep(database, settings, at(17, 0)) == [(callback_id, "breach")]
    assert run_sweep(database, settings, at(17, 1)) == []
    callback = load(database, callback_id)
    assert (callback.sla_result, callback.breached_at) == ("breached", DUE)
    assert notices(database, callback_id) == {"breach": DUE}


def test_an_attempt_at_the_deadline_means_no_breach_and_no_further_warnings(database):
    settings = make_settings()
    callback_id = owe(database, settings, 4)
    assert run_sweep(database, settings, at(12, 30)) == [(callback_id, "warning_30")]
    attempt(database, settings, callback_id, started_at=DUE)
    for later in (at(12, 55), DUE, DUE + timedelta(minutes=1), at(17, 0)):
        assert run_sweep(database, settings, later) == []
    callback = load(database, callback_id)
    assert (callback.sla_result, callback.breached_at) == ("met", None)
    assert notices(database, callback_id) == {"warning_30": at(12, 30)}


def test_an_attempt_before_any_warning_means_no_notice_at_all(database):
    settings = make_settings()
    callback_id = owe(database, settings, 5)
    attempt(database, settings, callback_id, started_at=at(11, 0), outcome="reached")
    for later in (at(12, 30), at(12, 50), at(17, 0)):
        assert run_sweep(database, settings, later) == []
    assert notices(database, callback_id) == {}


def test_a_first_attempt_after_the_deadline_does_not_prevent_the_breach(database):
    settings = make_settings()
    callback_id = owe(database, settings, 6)
    attempt(database, settings, callback_id, started_at=DUE + timedelta(minutes=5))
    assert run_sweep(database, settings, DUE + timedelta(minutes=6)) == [(callback_id, "breach")]
    assert load(database, callback_id).breached_at == DUE


def test_a_callback_breached_by_a_late_first_attempt_after_its_warning_still_gets_its_breach_notice(database):
    settings = make_settings()
    other = owe(database, settings, 13, owed_from=OWED - timedelta(minutes=10))  # due at 12:50
    callback_id = owe(database, settings, 14)  # due at 13:00
    run_sweep(database, settings, at(12, 30))
    assert (other, "breach") in run_sweep(database, settings, at(12, 51))
    attempt(database, settings, callback_id, at(13, 5))  # too late: breached at once, before any sweep saw it
    assert load(database, callback_id).sla_result == "breached"
    # Warned already, and another callback's breach recorded: its own breach notice still goes out, once.
    assert run_sweep(database, settings, at(13, 10)) == [(callback_id, "breach")]
    assert run_sweep(database, settings, at(13, 11)) == []
    assert set(notices(database, callback_id)) == {"warning_30", "warning_10", "breach"}


def test_on_the_business_clock_a_callback_due_at_0910_gets_its_30_minute_warning_at_1640_the_day_before(database):
    # Open 09:00-17:00 on Tuesday and Wednesday: owed at 14:10 on Tuesday, 2 h 50 min are left
    # that day, so it is due at 09:10 on Wednesday.
    settings = make_settings(hours={"tuesday": ["09:00-17:00"], "wednesday": ["09:00-17:00"]})
    callback_id = owe(database, settings, 7, owed_from=at(14, 10))
    assert load(database, callback_id).due_at == at(9, 10, day=25)
    assert run_sweep(database, settings, at(16, 39)) == []
    assert run_sweep(database, settings, at(16, 40)) == [(callback_id, "warning_30")]
    assert notices(database, callback_id) == {"warning_30": at(16, 40)}
    # Overnight 10 minutes of opening time are left, but nobody is there: the 10-minute
    # warning waits for the desk to open.
    assert run_sweep(database, settings, at(17, 0, 30)) == []
    assert run_sweep(database, settings, at(23, 0)) == []
    assert run_sweep(database, settings, at(9, 0, day=25)) == [(callback_id, "warning_10")]
    assert run_sweep(database, settings, at(9, 11, day=25)) == [(callback_id, "breach")]
    assert load(database, callback_id).breached_at == at(9, 10, day=25)


def test_a_missed_call_through_the_webhooks_is_warned_about_and_breached_by_the_sweep(app, client, clock, settings):
    arrived = clock.now
    post(client, "/twilio/voice/incoming", inbound(sid(8), caller=CALLER))
    clock.advance(40)
    post(client, "/twilio/voice/dial-action", {"CallSid": sid(8), "DialCallStatus": "canceled"})
    post(client, "/twilio/voice/status", {"CallSid": sid(8), "CallStatus": "completed",
                                          "Timestamp": stamp(arrived + timedelta(seconds=40))})
    database = app.extensions["helpdesk.db"]
    with database.session() as session:
        [callback] = session.scalars(select(Callback)).all()
    assert callback.due_at == arrived + timedelta(hours=3)
    assert [kind for _, kind in run_sweep(database, settings, arrived + timedelta(hours=2, minutes=55))] == [
        "warning_10"]  # a sweep that missed the first warning sends the most urgent, not a stale "30 minutes"
    assert [kind for _, kind in run_sweep(database, settings, arrived + timedelta(hours=4))] == ["breach"]
    assert set(notices(database, callback.id)) == {"warning_10", "breach"}


def an_agent(database, username: str) -> int:
    with database.session() as session:
        return add_user(session, username, "a-long-enough-password", "agent", now=OWED).id


def test_a_callback_attempted_late_and_closed_while_the_scheduler_was_down_is_still_breached(database):
    settings = make_settings()
    callback_id = owe(database, settings, 9)
    agent = an_agent(database, "late-agent")
    with database.session() as session:
        service.add_attempt(session, settings, callback_id=callback_id, agent_id=agent, source="manual",
                            started_at=at(14, 0), outcome="reached", now=at(14, 0))
    with database.session() as session:
        service.close(session, callback_id=callback_id, agent_id=agent, outcome="resolved", now=at(14, 5))
    run_sweep(database, settings, at(15, 0))  # the first sweep after the downtime
    callback = load(database, callback_id)
    assert (callback.sla_result, callback.breached_at) == ("breached", DUE)


def test_a_callback_an_agent_withdrew_before_its_deadline_is_never_warned_about_or_breached(database):
    settings = make_settings()
    callback_id = owe(database, settings, 10)
    agent = an_agent(database, "withdrawing-agent")
    with database.session() as session:
        service.close(session, callback_id=callback_id, agent_id=agent, outcome="withdrawn", now=at(12, 0),
                      note="The caller emailed: sorted")
    assert run_sweep(database, settings, at(12, 50)) == []  # the warnings' times
    assert run_sweep(database, settings, at(15, 0)) == []  # and well past the deadline
    assert notices(database, callback_id) == {}
    assert load(database, callback_id).sla_result is None


def test_a_callback_an_agent_withdrew_at_its_very_deadline_was_withdrawn_in_time_and_is_not_breached(database):
    settings = make_settings()
    callback_id = owe(database, settings, 11)
    agent = an_agent(database, "withdrawing-agent")
    with database.session() as session:
        service.close(session, callback_id=callback_id, agent_id=agent, outcome="withdrawn", now=DUE,
                      note="The caller emailed: sorted")
    assert run_sweep(database, settings, at(15, 0)) == [] and notices(database, callback_id) == {}
    assert load(database, callback_id).sla_result is None


@pytest.mark.parametrize("change, result", [
    ("status = 'closed', outcome = 'withdrawn', closed_at = :before", None),  # withdrawn in time: not counted
    ("sla_result = 'met', first_attempt_at = :before, attempts_count = 1", "met"),  # attempted in time
])
def test_a_callback_withdrawn_or_attempted_just_before_its_deadline_is_not_breached_by_a_sweep_at_the_same_time(
        postgres_url, change, result):
    import time

    from sqlalchemy import text

    from helpdesk.migrate import upgrade

    upgrade(postgres_url)
    database = Database(postgres_url)
    try:
        settings = make_settings()
        callback_id = owe(database, settings, 1)
        # The agent's transaction: written a moment before the deadline, not yet committed.
        agent = database.engine.connect()
        transaction = agent.begin()
        agent.execute(text(f"UPDATE callbacks SET {change} WHERE id = :id"),
                      {"id": callback_id, "before": DUE - timedelta(seconds=2)})
        recorded: list = []
        sweeping = Thread(target=lambda: recorded.extend(run_sweep(database, settings, DUE + timedelta(seconds=5))))
        sweeping.start()
        time.sleep(0.5)  # the sweep has read its candidates and waits on the agent's row
        transaction.commit()
        agent.close()
        sweeping.join(timeout=30)
        assert not sweeping.is_alive()
        assert recorded == [] and notices(database, callback_id) == {}
        assert load(database, callback_id).sla_result == result
    finally:
        database.dispose()
