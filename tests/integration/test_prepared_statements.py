"""Statements run on the driver's cursor store and read exactly what SQLAlchemy Core would."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from helpdesk.models import Call, TwilioEvent
from helpdesk.prepared import Prepared

EVENTS = TwilioEvent.__table__
CALLS = Call.__table__
# Microseconds and a non-UTC offset: both must come out as the same UTC instant.
RECEIVED = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))


def event_row(n: int, received_at: datetime = RECEIVED) -> dict:
    return {"received_at": received_at, "kind": "status", "call_sid": f"CA{n:032x}", "leg_sid": f"CA{n:032x}",
            "fingerprint": f"{n:064x}", "idempotency_token": None, "params": '[["CallSid", "x"]]',
            "decision": None}


def stored(connection, table, key: str, value) -> tuple:
    # The raw values in the database, as the driver returns them, without the row id.
    columns = [column for column in table.columns if column.name != "id"]
    row = connection.exec_driver_sql(
        f"SELECT {', '.join(c.name for c in columns)} FROM {table.name} "
        f"WHERE {key} = {'?' if connection.dialect.name == 'sqlite' else '%(v)s'}",
        (value,) if connection.dialect.name == "sqlite" else {"v": value},
    ).one()
    return tuple(row)


def test_an_insert_stores_the_same_values_as_core(database):
    with database.connection() as connection, connection.begin():
        connection.execute(insert(EVENTS), event_row(1))
        Prepared(insert(EVENTS), connection.dialect, event_row(2)).execute(connection, event_row(2))
        by_core, by_cursor = stored(connection, EVENTS, "leg_sid", f"CA{1:032x}"), \
            stored(connection, EVENTS, "leg_sid", f"CA{2:032x}")
    differing = {column.name for column, a, b in zip([c for c in EVENTS.columns if c.name != "id"],
                                                      by_core, by_cursor) if a != b}
    assert differing == {"call_sid", "leg_sid", "fingerprint"}


def test_a_select_reads_aware_utc_datetimes_through_the_column_types(database):
    with database.connection() as connection, connection.begin():
        connection.execute(insert(EVENTS), event_row(3))
        query = select(EVENTS.c.kind, EVENTS.c.received_at).where(EVENTS.c.call_sid == bindparam("sid"))
        rows = Prepared(query, connection.dialect).rows(connection, {"sid": f"CA{3:032x}"})
        core = connection.execute(query, {"sid": f"CA{3:032x}"}).all()
    assert rows == [tuple(row) for row in core]
    assert rows[0][1] == RECEIVED and rows[0][1].utcoffset() == timedelta(0)


def test_rowcount_says_whether_an_insert_ignoring_conflicts_inserted(database):
    with database.connection() as connection, connection.begin():
        module = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = Prepared(module.insert(EVENTS).on_conflict_do_nothing(index_elements=["fingerprint"]),
                             connection.dialect, event_row(4))
        first = statement.execute(connection, event_row(4)).rowcount
        again = statement.execute(connection, event_row(4, RECEIVED + timedelta(seconds=5))).rowcount
    assert (first, again) == (1, 0)


def test_an_update_sets_booleans_floats_and_nulls_like_core(database):
    values = {"outcome": "answered", "in_hours": False, "countable": True, "answer_seconds": 12.5,
              "answered_at": RECEIVED, "agent": None}
    with database.connection() as connection, connection.begin():
        for n in (5, 6):
            connection.execute(insert(CALLS), {"call_sid": f"CA{n:032x}", "agent": "someone"})
        by_id = update(CALLS).where(CALLS.c.call_sid == bindparam("sid"))
        connection.execute(by_id, {**values, "sid": f"CA{5:032x}"})
        Prepared(by_id, connection.dialect, values).execute(connection, {**values, "sid": f"CA{6:032x}"})
        core, cursor = stored(connection, CALLS, "call_sid", f"CA{5:032x}"), \
            stored(connection, CALLS, "call_sid", f"CA{6:032x}")
    assert [a for a, b in zip(core, cursor) if a != b] == [f"CA{5:032x}"]


def test_values_that_do_not_match_the_statements_parameters_are_refused(database):
    row = event_row(7)
    without_decision = [key for key in row if key != "decision"]
    with database.connection() as connection, connection.begin():
        statement = Prepared(insert(EVENTS), connection.dialect, without_decision)
        with pytest.raises(ValueError, match="takes"):
            statement.execute(connection, row)  # a value it would otherwise drop unstored
        with pytest.raises(ValueError, match="takes"):
            statement.execute(connection, {key: row[key] for key in without_decision if key != "kind"})
        stored_rows = connection.execute(select(EVENTS.c.id).where(EVENTS.c.call_sid == row["call_sid"])).all()
    assert stored_rows == []


def test_a_driver_error_is_raised_as_core_would_raise_it_without_the_values(database):
    from sqlalchemy import exc

    row = {**event_row(3), "params": '[["From", "+447700900123"]]'}
    with database.connection() as connection, connection.begin():
        Prepared(insert(EVENTS), connection.dialect, row).execute(connection, row)
        with pytest.raises(exc.IntegrityError) as raised:  # the same fingerprint again: unique
            with connection.begin_nested():
                Prepared(insert(EVENTS), connection.dialect, row).execute(connection, row)
    assert "+447700900123" not in str(raised.value)  # nothing personal if it is logged
