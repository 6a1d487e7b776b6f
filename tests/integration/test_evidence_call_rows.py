"""calls.csv row by row on SQLite and PostgreSQL: UK times across both 2026 clock changes, quoting."""
from __future__ import annotations

import csv
from datetime import date, datetime, timedelta, timezone

from helpdesk.db import Database
from helpdesk.models import Call, Enquiry
from metrics.evidence.csvs import ENCODING, write_csv
from metrics.evidence.fields import Redactor
from metrics.evidence.rows import CALL_COLUMNS, call_rows
from metrics.evidence.snapshot import snapshot
from metrics.periods import date_range_period


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def add_calls(url: str, calls: list[dict]) -> None:
    database = Database(url)
    try:
        with database.session() as session, session.begin():
            for n, fields in enumerate(calls, start=1):
                sid = f"CA{n:032x}"
                enquiry = Enquiry(reference=f"HD-2026-{n:06d}", channel="phone", opened_at=fields["arrived_at"],
                                  call_sid=sid)
                session.add(Call(call_sid=sid, outcome="answered", in_hours=True, countable=True, sla_result="met",
                                 caller_number="+447700900123", caller_type="customer", enquiry=enquiry,
                                 config_version="test", **fields))
    finally:
        database.dispose()


def export(url: str, first: date, last: date, tmp_path, redaction: str = "masked") -> tuple[list[list[str]], list]:
    """calls.csv's rows as read back by the csv module, and the rows as call_rows iterates them."""
    period = date_range_period(first, last)
    with snapshot(url) as connection:
        header, rows = call_rows(connection, period.start, period.end, Redactor(redaction))
        write_csv(tmp_path / "calls.csv", header, rows)
        header, rows = call_rows(connection, period.start, period.end, Redactor(redaction))
        iterated = [list(row) for row in rows]
    with open(tmp_path / "calls.csv", encoding=ENCODING, newline="") as stream:
        written = list(csv.reader(stream))
    assert written[0] == CALL_COLUMNS
    return written[1:], iterated


def times(rows: list[list[str]]) -> list[tuple[str, str, str]]:
    return [(row[1], row[2], row[3]) for row in rows]


def test_calls_either_side_of_both_2026_clock_changes_show_the_uk_time_and_offset_in_force(migrated_url, tmp_path):
    add_calls(migrated_url, [
        # Spring: clocks go forward at 01:00 UTC on 29 March; answered and ended after the change.
        {"arrived_at": utc(2026, 3, 29, 0, 59, 50, 999999), "answered_at": utc(2026, 3, 29, 1, 0),
         "ended_at": utc(2026, 3, 29, 1, 4, 0, 1000)},
        {"arrived_at": utc(2026, 3, 29, 1, 0), "answered_at": None, "ended_at": None},
        # Autumn: clocks go back at 01:00 UTC on 25 October, so 01:30 UK time happens twice.
        {"arrived_at": utc(2026, 10, 24, 23, 30), "answered_at": utc(2026, 10, 25, 0, 59, 59, 999000),
         "ended_at": utc(2026, 10, 25, 1, 0, 0, 500)},
        {"arrived_at": utc(2026, 10, 25, 0, 30, 0, 123456), "answered_at": None, "ended_at": utc(2026, 10, 25, 1, 30)},
    ])
    written, iterated = export(migrated_url, date(2026, 3, 28), date(2026, 10, 25), tmp_path)
    assert times(written) == [
        ("2026-03-29T00:59:50.999+00:00", "2026-03-29T02:00:00.000+01:00", "2026-03-29T02:04:00.001+01:00"),
        ("2026-03-29T02:00:00.000+01:00", "", ""),
        ("2026-10-25T00:30:00.000+01:00", "2026-10-25T01:59:59.999+01:00", "2026-10-25T01:00:00.000+00:00"),
        ("2026-10-25T01:30:00.123+01:00", "", "2026-10-25T01:30:00.000+00:00"),
    ]
    assert iterated == written


def test_a_range_ending_at_a_clock_change_keeps_calls_by_their_uk_date(migrated_url, tmp_path):
    add_calls(migrated_url, [
        {"arrived_at": utc(2026, 10, 24, 22, 59, 59), "answered_at": None, "ended_at": None},  # 23:59:59 BST, Saturday
        {"arrived_at": utc(2026, 10, 24, 23, 0), "answered_at": None, "ended_at": None},  # 00:00 BST, Sunday
    ])
    written, _ = export(migrated_url, date(2026, 10, 24), date(2026, 10, 24), tmp_path)
    assert times(written) == [("2026-10-24T23:59:59.000+01:00", "", "")]


def add_unanswered_calls(url: str, count: int, **second) -> None:
    """`count` unanswered calls a minute apart from 10:00 UTC on 24 November 2026; the second
    one then gets the values in `second`."""
    arrived = utc(2026, 11, 24, 10, 0)
    add_calls(url, [{"arrived_at": arrived + timedelta(minutes=n), "answered_at": None, "ended_at": None}
                    for n in range(count)])
    database = Database(url)
    try:
        with database.session() as session, session.begin():
            for name, value in second.items():
                setattr(session.get(Call, 2), name, value)
    finally:
        database.dispose()


def test_an_unredacted_number_that_needs_quoting_is_quoted_and_reads_back_exactly(migrated_url, tmp_path):
    odd = 'ext, "12"\r\n9'
    add_unanswered_calls(migrated_url, 3, caller_number=odd)
    written, iterated = export(migrated_url, date(2026, 11, 24), date(2026, 11, 24), tmp_path, redaction="none")
    caller = CALL_COLUMNS.index("caller")
    assert [row[caller] for row in written] == ["+447700900123", odd, "+447700900123"]
    assert [row[0] for row in written] == [f"CA{n:032x}" for n in (1, 2, 3)]
    assert all(len(row) == len(CALL_COLUMNS) for row in written) and iterated == written
    masked, _ = export(migrated_url, date(2026, 11, 24), date(2026, 11, 24), tmp_path)
    assert [row[caller] for row in masked] == ["********123", "********", "********123"]  # too few digits to show any


def test_a_call_finished_from_twilios_rest_api_says_so(migrated_url, tmp_path):
    add_unanswered_calls(migrated_url, 2, from_api=True)
    written, iterated = export(migrated_url, date(2026, 11, 24), date(2026, 11, 24), tmp_path)
    assert [row[CALL_COLUMNS.index("from_twilio_api")] for row in written] == ["no", "yes"]
    assert iterated == written


def test_a_call_whose_incoming_webhook_never_came_says_its_arrival_is_estimated(migrated_url, tmp_path):
    add_unanswered_calls(migrated_url, 2, incoming_seen=False)
    written, iterated = export(migrated_url, date(2026, 11, 24), date(2026, 11, 24), tmp_path)
    assert [row[CALL_COLUMNS.index("arrival_estimated")] for row in written] == ["no", "yes"]
    assert iterated == written


def test_answer_seconds_are_exact_so_rings_and_the_result_follow_from_them(migrated_url, tmp_path):
    # 29.9996 s is ring 10 and met; to a tenth it would read 30.0, which is ring 11. A time of
    # 10.000123 s counts as 11 seconds in How quickly, and reads so.
    arrived = utc(2026, 11, 24, 10, 0, 0, 400)
    add_calls(migrated_url, [
        {"arrived_at": arrived, "answered_at": arrived + timedelta(seconds=took), "ended_at": None,
         "answer_seconds": took, "rings": int(took // 3) + 1}
        for took in (29.9996, 10.000123, 10.04, 11.0)])
    written, iterated = export(migrated_url, date(2026, 11, 24), date(2026, 11, 24), tmp_path)
    assert [(row[4], row[5]) for row in written] == [("29.9996", "10"), ("10.000123", "4"), ("10.04", "4"),
                                                     ("11.0", "4")]
    assert iterated == written
