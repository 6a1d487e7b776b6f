"""The migrations build exactly the schema the models describe, and undo it cleanly."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import column, func, insert, inspect, select, table

from helpdesk import migrate
from helpdesk.db import make_engine
from helpdesk.models import Base, Call, Callback, CallbackAttempt, Enquiry


def test_migrated_schema_matches_the_models(migrated_url):
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_downgrade_to_base_removes_every_table_and_upgrade_restores_them(migrated_url):
    migrate.downgrade(migrated_url, "base")
    engine = make_engine(migrated_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(migrated_url)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def upgraded_from(url: str, revision: str, store, read):
    """Downgrade to `revision`, `store` rows as that schema had them, upgrade to head, and `read`."""
    migrate.downgrade(url, revision)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            store(connection)
        migrate.upgrade(url)
        with engine.connect() as connection:
            return read(connection)
    finally:
        engine.dispose()


def an_enquiry(connection, opened_at: datetime) -> int:
    """A phone enquiry stored as any schema since revision 0001 has it; its id."""
    return connection.execute(insert(Enquiry.__table__).values(
        reference="HD-2026-000001", channel="phone", opened_at=opened_at, status="open")).inserted_primary_key[0]


def a_user(connection, username: str, role: str, created_at: datetime) -> int:
    """A user stored as every schema from revision 0009 to 0015 has them; their id."""
    users = table("users", *(column(name) for name in (
        "id", "username", "display_name", "password_hash", "role", "active", "created_at", "session_epoch")))
    return connection.execute(insert(users).values(
        username=username, display_name="", password_hash="x", role=role, active=True, created_at=created_at,
        session_epoch=0).returning(users.c.id)).scalar_one()


def test_attempts_stored_before_dialled_at_keep_the_judgement_they_were_given(migrated_url):
    # Before revision 0005 an attempt counted from when it started, even one still ringing
    # the agent; upgrading must not turn them into attempts that never rang the caller.
    started = datetime(2026, 11, 30, 10, 5, tzinfo=timezone.utc)

    def store(connection):
        enquiry = an_enquiry(connection, started)
        callback = connection.execute(insert(Callback.__table__).values(
            contact_key="call:CA1", enquiry_id=enquiry, reason="abandoned", caller_type="customer",
            owed_from=started, due_at=started, clock="business", explanation="{}", config_version="v",
            created_at=started, status="open", attempts_count=2, first_attempt_at=started, note="",
        )).inserted_primary_key[0]
        for minutes, source, outcome in ((0, "manual", "no_answer"), (30, "twilio", "placing")):
            connection.execute(insert(CallbackAttempt.__table__).values(
                callback_id=callback, started_at=started + timedelta(minutes=minutes), source=source,
                outcome=outcome, note=""))

    rows = upgraded_from(migrated_url, "0004", store, lambda connection: connection.execute(
        select(CallbackAttempt.started_at, CallbackAttempt.dialled_at).order_by(CallbackAttempt.id)).all())
    assert rows == [(started, started), (started + timedelta(minutes=30), started + timedelta(minutes=30))]


def test_calls_stored_before_from_api_were_not_finished_from_the_api(migrated_url):
    def store(connection):
        connection.execute(insert(Call.__table__).values(
            call_sid="CA1", arrived_at=datetime(2026, 11, 30, 10, 5, tzinfo=timezone.utc), outcome="in_progress",
            in_hours=True, countable=False, caller_type="unknown", incoming_seen=True))

    def read(connection):
        return (connection.execute(select(Call.call_sid, Call.from_api)).all(),
                {index["name"] for index in inspect(connection).get_indexes("calls")})

    rows, indexes = upgraded_from(migrated_url, "0005", store, read)
    assert rows == [("CA1", False)]
    assert "ix_calls_unfinished" in indexes and "ix_calls_in_progress" not in indexes


def test_the_unfinished_calls_index_takes_missed_calls_with_no_ending_and_the_scrape_uses_it(migrated_url):
    # Revision 0007: a call rang out to voicemail whose last status callback never came has its
    # outcome and no ending; it must be found (and counted) as quickly as one still in progress.
    from helpdesk.dbutil import dialect_name
    from helpdesk.models.call import unfinished

    arrived = datetime(2026, 11, 30, 10, 5, tzinfo=timezone.utc)
    engine = make_engine(migrated_url)
    try:
        with engine.begin() as connection:
            for n, outcome, ended in ((1, "in_progress", None), (2, "no_answer", None), (3, "answered", None),
                                      (4, "no_answer", arrived)):
                connection.execute(insert(Call.__table__).values(
                    call_sid=f"CA{n}", arrived_at=arrived, ended_at=ended, outcome=outcome, in_hours=True,
                    countable=False, caller_type="unknown", incoming_seen=True))
        query = select(Call.call_sid).where(unfinished(), Call.arrived_at < arrived + timedelta(hours=2))
        with engine.connect() as connection:
            assert sorted(connection.execute(query).scalars()) == ["CA1", "CA2"]
            if dialect_name(connection) == "sqlite":
                plan = " ".join(str(row) for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + str(query.compile(connection, compile_kwargs={"literal_binds": True}))))
                assert "ix_calls_unfinished" in plan, plan
    finally:
        engine.dispose()


def test_callbacks_withdrawn_as_never_owed_lose_the_breach_earlier_versions_kept_with_an_audit_entry(migrated_url):
    from helpdesk.models import AuditEntry

    owed = datetime(2026, 11, 30, 10, 5, tzinfo=timezone.utc)

    def store(connection):
        enquiry = an_enquiry(connection, owed)
        agent = a_user(connection, "ann", "agent", owed)
        rows = (("CA1", "abandoned", None, "breached"),  # withdrawn by the app: never owed
                ("CA2", "abandoned", agent, "breached"),  # withdrawn by an agent after its deadline: a breach
                ("CA3", "not_concluded", None, "breached"))  # not the app's withdrawal
        for sid, reason, closed_by, result in rows:
            connection.execute(insert(Callback.__table__).values(
                contact_key=f"call:{sid}", enquiry_id=enquiry, reason=reason, caller_type="customer",
                owed_from=owed, due_at=owed + timedelta(hours=3), clock="business", explanation="{}",
                config_version="v", created_at=owed, status="closed", outcome="withdrawn", closed_by_id=closed_by,
                closed_at=owed + timedelta(hours=4), attempts_count=0, note="", sla_result=result,
                breached_at=owed + timedelta(hours=3)))

    def read(connection):
        return (connection.execute(select(Callback.contact_key, Callback.sla_result, Callback.breached_at)
                                   .order_by(Callback.id)).all(),
                connection.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.detail)).all())

    rows, audit = upgraded_from(migrated_url, "0009", store, read)
    assert rows == [("call:CA1", None, None), ("call:CA2", "breached", owed + timedelta(hours=3)),
                    ("call:CA3", "breached", owed + timedelta(hours=3))]
    assert [(actor, action) for actor, action, _ in audit] == [("helpdesk db upgrade", "callback.not_owed_uncounted")]
    assert '"was": "breached"' in audit[0][2]


def test_outcomes_recorded_before_revision_0024_keep_when_they_were_recorded(migrated_url):
    opened = datetime(2026, 11, 30, 10, 5, tzinfo=timezone.utc)
    concluded, needed = opened + timedelta(minutes=4), opened + timedelta(days=2)

    def store(connection):
        def enquiry(n: int, status: str, channel: str = "phone", closed_at: datetime | None = None) -> int:
            return connection.execute(insert(Enquiry.__table__).values(
                reference=f"HD-2026-{n:06d}", channel=channel, opened_at=opened, status=status,
                call_sid=f"CA{n}" if channel == "phone" else None, closed_at=closed_at)).inserted_primary_key[0]

        def callback(enquiry_id: int, sid: str, reason: str, created_at: datetime) -> None:
            connection.execute(insert(Callback.__table__).values(
                contact_key=f"call:{sid}", enquiry_id=enquiry_id, reason=reason, caller_type="customer",
                owed_from=opened, due_at=opened + timedelta(hours=3), clock="business", explanation="{}",
                config_version="v", created_at=created_at, status="open", attempts_count=0, note=""))

        enquiry(1, "concluded", closed_at=concluded)
        callback(enquiry(2, "callback_owed"), "CA2", "not_concluded", needed)
        # Owed automatically while the call looked missed, and kept when its answer came: no agent's word.
        callback(enquiry(3, "callback_owed"), "CA3", "abandoned", opened + timedelta(minutes=2))
        enquiry(4, "open")
        enquiry(5, "closed", channel="email", closed_at=concluded)

    def read(connection):
        return connection.execute(select(Enquiry.reference, Enquiry.outcome_recorded_at).order_by(Enquiry.id)).all()

    assert upgraded_from(migrated_url, "0023", store, read) == [
        ("HD-2026-000001", concluded), ("HD-2026-000002", needed), ("HD-2026-000003", None),
        ("HD-2026-000004", None), ("HD-2026-000005", None)]


def test_phones_set_before_revision_0025_are_had_since_before_and_none_is_former(migrated_url):
    from helpdesk.models import FormerPhone, User

    added = datetime(2026, 11, 30, 10, 5, tzinfo=timezone.utc)

    def store(connection):
        ann = a_user(connection, "ann", "agent", added)
        users = table("users", column("id"), column("phone"))
        connection.execute(users.update().where(users.c.id == ann).values(phone="+447700900555"))
        a_user(connection, "bob", "agent", added)

    def read(connection):
        return (connection.execute(select(User.username, User.phone, User.phone_since).order_by(User.id)).all(),
                connection.execute(select(func.count()).select_from(FormerPhone)).scalar())

    # Not known since when: had since before, so a call answered on it at any time is still ann's.
    assert upgraded_from(migrated_url, "0024", store, read) == (
        [("ann", "+447700900555", None), ("bob", None, None)], 0)


def test_phones_of_users_deactivated_before_revision_0026_are_theirs_until_they_left(migrated_url):
    from helpdesk.models import AuditEntry, FormerPhone, User

    added = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    left, came_back, left_again = added + timedelta(days=3), added + timedelta(days=5), added + timedelta(days=9)
    before = datetime.now(timezone.utc)

    def store(connection):
        users = table("users", column("id"), column("phone"), column("phone_since"), column("active"))

        def user(name: str, phone: str | None, since: datetime | None, active: bool) -> int:
            user_id = a_user(connection, name, "agent", added)
            connection.execute(users.update().where(users.c.id == user_id).values(
                phone=phone, phone_since=since, active=active))
            return user_id

        ann = user("ann", "+447700900111", added, False)  # left, came back, left again
        user("bob", "+447700900222", None, False)  # deactivated with no audit entry kept
        user("cat", "+447700900333", added, True)  # still here: hers
        dan = user("dan", "+447700900444", left + timedelta(days=1), False)  # given it while deactivated
        user("eve", None, None, False)  # nothing to free
        for user_id, action, at in ((ann, "user.deactivated", left), (ann, "user.reactivated", came_back),
                                    (ann, "user.deactivated", left_again), (dan, "user.deactivated", left)):
            connection.execute(insert(AuditEntry.__table__).values(
                at=at, actor="root on the server", action=action, detail=json.dumps({"user_id": user_id})))
        connection.execute(insert(AuditEntry.__table__).values(  # not a user's: skipped
            at=left, actor="helpdesk", action="user.deactivated", detail="not json"))

    def read(connection):
        return (connection.execute(select(User.username, User.phone, User.phone_since).order_by(User.id)).all(),
                connection.execute(select(FormerPhone.user_id, FormerPhone.phone, FormerPhone.since, FormerPhone.until)
                                   .order_by(FormerPhone.user_id)).all())

    users, former = upgraded_from(migrated_url, "0025", store, read)
    assert users == [("ann", None, None), ("bob", None, None), ("cat", "+447700900333", added), ("dan", None, None),
                     ("eve", None, None)]
    assert former[:1] == [(1, "+447700900111", added, left_again)]
    # No entry, or given after leaving: theirs until the upgrade, as the earlier version said.
    assert [(user_id, phone, since) for user_id, phone, since, _ in former[1:]] == [
        (2, "+447700900222", None), (4, "+447700900444", left + timedelta(days=1))]
    assert all(before <= until <= datetime.now(timezone.utc) for *_, until in former[1:])


def test_phones_of_dwp_auditors_before_revision_0027_are_theirs_until_the_upgrade(migrated_url):
    from helpdesk.models import FormerPhone, User

    added = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    before = datetime.now(timezone.utc)

    def store(connection):
        users = table("users", column("id"), column("phone"), column("phone_since"), column("active"))
        for name, role, phone, since in (("ann", "auditor", "+447700900111", added), ("bob", "auditor", None, None),
                                         ("cat", "agent", "+447700900333", added),
                                         ("dan", "auditor", "+447700900444", None)):
            user_id = a_user(connection, name, role, added)
            connection.execute(users.update().where(users.c.id == user_id).values(phone=phone, phone_since=since))

    def read(connection):
        return (connection.execute(select(User.username, User.phone, User.phone_since).order_by(User.id)).all(),
                connection.execute(select(FormerPhone.user_id, FormerPhone.phone, FormerPhone.since, FormerPhone.until)
                                   .order_by(FormerPhone.user_id)).all())

    users, former = upgraded_from(migrated_url, "0026", store, read)
    assert users == [("ann", None, None), ("bob", None, None), ("cat", "+447700900333", added), ("dan", None, None)]
    assert [(user_id, phone, since) for user_id, phone, since, _ in former] == [
        (1, "+447700900111", added), (4, "+447700900444", None)]
    assert all(before <= until <= datetime.now(timezone.utc) for *_, until in former)


def test_a_restore_recorded_before_its_window_had_an_end_keeps_the_window_it_was_recorded_with(migrated_url):
    # Revision 0015: lost_until, first written into 0014 before 0.9.0 was released.
    from sqlalchemy import text

    from helpdesk.models import Restore

    taken, restored = datetime(2026, 12, 4, 2, tzinfo=timezone.utc), datetime(2026, 12, 4, 15, tzinfo=timezone.utc)

    def store(connection):
        user = a_user(connection, "ada", "admin", taken)
        connection.execute(text('INSERT INTO restores (backup_taken_at, restored_at, recorded_by_id, "references") '
                                "VALUES (:taken, :restored, :user, '{}')"),
                           {"taken": taken.replace(tzinfo=None) if connection.dialect.name == "sqlite" else taken,
                            "restored": restored.replace(tzinfo=None) if connection.dialect.name == "sqlite"
                            else restored, "user": user})

    rows = upgraded_from(migrated_url, "0014", store, lambda connection: connection.execute(
        select(Restore.backup_taken_at, Restore.lost_until)).all())
    assert rows == [(taken, restored)]


def test_three_upgrades_at_once_on_an_empty_postgresql_database_take_turns_and_all_succeed(postgres_url):
    """As when several servers start at once: separate processes (Alembic's context is per process)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": postgres_url}
    for _ in range(2):  # each round from an empty database
        if migrate.current(postgres_url):
            migrate.downgrade(postgres_url, "base")
        runs = [subprocess.Popen([sys.executable, "-m", "helpdesk.cli", "db", "upgrade"], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
        outputs = [run.communicate(timeout=180)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0, 0], outputs
        assert migrate.current(postgres_url) == migrate.head()


def test_the_open_rows_indexes_are_what_the_agents_page_and_the_sweep_read(migrated_url):
    # Revision 0013: among a long history, the open email enquiries and the callbacks the sweep
    # looks at are read through partial indexes, not by reading every row ever stored.
    from callbacks.awaiting import awaiting
    from callbacks.email.waiting import open_email_enquiries
    from callbacks.queue import owed_to
    from callbacks.sweep import may_need_a_notice
    from helpdesk.dbutil import dialect_name

    engine = make_engine(migrated_url)
    start = datetime(2025, 12, 1, tzinfo=timezone.utc)
    try:
        with engine.begin() as connection:
            rows = 5000
            connection.execute(insert(Enquiry.__table__), [
                {"id": n, "reference": f"HD-2026-{n:06d}", "channel": "email" if n % 4 == 0 else "phone",
                 "opened_at": start + timedelta(minutes=n), "status": "open" if n > rows - 20 else "closed",
                 "call_sid": f"CA{n:032x}" if n % 4 else None}
                for n in range(1, rows + 1)])
            # Revision 0023: the open phone enquiries' calls, answered (awaiting an outcome) or not.
            connection.execute(insert(Call.__table__), [
                {"id": n, "call_sid": f"CA{n:032x}", "arrived_at": start + timedelta(minutes=n),
                 "outcome": "answered" if n % 3 else "abandoned", "enquiry_id": n}
                for n in range(1, rows + 1) if n % 4])
            connection.execute(insert(Callback.__table__), [
                {"id": n, "contact_key": f"call:CA{n}", "enquiry_id": n, "reason": "abandoned",
                 "caller_type": "customer", "owed_from": start + timedelta(minutes=n),
                 "due_at": start + timedelta(minutes=n, hours=3), "clock": "elapsed", "explanation": "{}",
                 "config_version": "x", "created_at": start, "status": "open" if n > rows - 10 else "closed",
                 "sla_result": None if n > rows - 10 else "breached" if n % 50 == 0 else "met", "attempts_count": 0,
                 "note": "", "caller_number": f"+4477009{n % 2000:05d}"} for n in range(1, rows + 1)])
            if dialect_name(connection) == "postgresql":
                connection.exec_driver_sql("ANALYZE enquiries")
                connection.exec_driver_sql("ANALYZE callbacks")
        awaiting_since_then = (start + timedelta(minutes=rows)).date()
        queries = {"ix_enquiries_open_email": select(func.count(Enquiry.id)).where(*open_email_enquiries()),
                   "ix_enquiries_open_phone": awaiting(select(func.count(Call.id)), awaiting_since_then),
                   "ix_callbacks_undecided": select(Callback.id).where(may_need_a_notice()),
                   # Revision 0015: the agents' page looks up the numbers it shows among the open callbacks.
                   "ix_callbacks_status_number": owed_to({"+447700900999", "+447700900998"})}
        with engine.connect() as connection:
            assert connection.execute(queries["ix_enquiries_open_email"]).scalar() == 5
            # The open phone enquiries (the last 20, less every 4th, an email), answered (not every 3rd).
            assert connection.execute(queries["ix_enquiries_open_phone"]).scalar() == len(
                [n for n in range(rows - 19, rows + 1) if n % 4 and n % 3]) == 10
            assert len(connection.execute(queries["ix_callbacks_undecided"]).all()) == 10 + 99  # open; breached, no notice
            assert sorted(row.id for row in connection.execute(queries["ix_callbacks_status_number"])) == [4998, 4999]
            explain = ("EXPLAIN QUERY PLAN " if dialect_name(connection) == "sqlite" else "EXPLAIN ")
            for index, query in queries.items():
                if index == "ix_callbacks_undecided" and dialect_name(connection) == "sqlite":
                    continue  # SQLite does not OR two partial indexes: it reads the table (fine at its sizes)
                if index == "ix_callbacks_status_number" and dialect_name(connection) == "postgresql":
                    continue  # ten open rows: PostgreSQL may as well read them by status alone
                plan = " ".join(str(row) for row in connection.exec_driver_sql(
                    explain + str(query.compile(connection, compile_kwargs={"literal_binds": True}))))
                assert index in plan, plan
                if index == "ix_callbacks_undecided":
                    assert "ix_callbacks_breached" in plan, plan
    finally:
        engine.dispose()


def referred_to(connection, user_id: int, at: datetime) -> None:
    """Rows that refer to a user, as in any database in use: an audit entry and a claimed callback."""
    from helpdesk.models import AuditEntry

    connection.execute(insert(AuditEntry.__table__).values(at=at, user_id=user_id, actor="ann",
                                                          action="evidence.export", detail="{}"))
    connection.execute(insert(Callback.__table__).values(
        contact_key="call:CA1", enquiry_id=an_enquiry(connection, at), reason="abandoned", caller_type="customer",
        owed_from=at, due_at=at + timedelta(hours=3), clock="business", explanation="{}", config_version="v",
        created_at=at, status="open", claimed_by_id=user_id, attempts_count=0, note=""))


def test_users_added_before_a_password_had_to_be_chosen_keep_theirs_and_their_callbacks(migrated_url):
    """Revision 0016 on a database whose users other rows refer to (on SQLite, rebuilding
    `users` to add the column would fail there, as their callbacks and audit entries hold them)."""
    from helpdesk.models import AuditEntry, User

    added = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)

    def store(connection):
        agent = a_user(connection, "ann", "agent", added)
        referred_to(connection, agent, added)

    def read(connection):
        return (connection.execute(select(User.username, User.must_change_password)).all(),
                connection.execute(select(Callback.claimed_by_id)).scalars().all(),
                connection.execute(select(AuditEntry.user_id)).scalars().all())

    users, claimed, audited = upgraded_from(migrated_url, "0015", store, read)
    assert users == [("ann", False)]
    assert claimed == audited == [1]


def an_agent_in_use(engine, must_change_password: bool) -> int:
    """An agent stored as the newest schema has them, with rows that refer to them; their id."""
    from helpdesk.models import User

    added = datetime(2026, 12, 7, 9, tzinfo=timezone.utc)
    with engine.begin() as connection:
        agent = connection.execute(insert(User.__table__).values(
            username="ann", display_name="", password_hash="x", role="agent", active=True, created_at=added,
            session_epoch=0, must_change_password=must_change_password)).inserted_primary_key[0]
        referred_to(connection, agent, added)
    return agent


def test_going_back_before_revision_0016_keeps_users_that_other_rows_refer_to(migrated_url):
    """Revision 0016's downgrade on a database in use: its users have callbacks and audit entries
    (on SQLite, rebuilding `users` to drop the column failed there, as dropping the old table
    broke those references)."""
    from helpdesk.models import AuditEntry, User

    engine = make_engine(migrated_url)
    try:
        agent = an_agent_in_use(engine, must_change_password=True)

        migrate.downgrade(migrated_url, "0015")

        with engine.connect() as connection:
            assert "must_change_password" not in {column["name"] for column in inspect(connection).get_columns("users")}
            assert connection.exec_driver_sql("SELECT username FROM users").scalars().all() == ["ann"]
            assert connection.execute(select(Callback.claimed_by_id)).scalars().all() == [agent]
            assert connection.execute(select(AuditEntry.user_id)).scalars().all() == [agent]
        migrate.upgrade(migrated_url)
        with engine.connect() as connection:
            assert connection.execute(select(User.username, User.must_change_password)).all() == [("ann", False)]
    finally:
        engine.dispose()


def test_a_database_in_use_goes_back_to_an_early_revision_and_up_again(migrated_url):
    """SQLite alters a table by rebuilding it: with foreign keys enforced, dropping the old table
    failed once other rows referred to its rows (going back before revision 0009 rebuilds `users`,
    which callbacks and the audit log refer to). Migrations run with enforcement off."""
    from helpdesk.models import AuditEntry, User

    engine = make_engine(migrated_url)
    try:
        agent = an_agent_in_use(engine, must_change_password=False)

        migrate.downgrade(migrated_url, "0003")
        migrate.upgrade(migrated_url)

        with engine.connect() as connection:
            assert connection.execute(select(User.username)).scalars().all() == ["ann"]
            assert connection.execute(select(Callback.claimed_by_id)).scalars().all() == [agent]
            assert connection.execute(select(AuditEntry.user_id)).scalars().all() == [agent]
            if connection.dialect.name == "sqlite":  # and enforced again for the app
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
