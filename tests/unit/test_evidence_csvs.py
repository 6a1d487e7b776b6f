"""Writing pack CSVs a batch at a time: ready-made lines, the csv module's quoting when needed, progress."""
from __future__ import annotations

import csv

from metrics.evidence.csvs import ENCODING, Lines, RowBatches, read_csv, write_csv


def lines(rows: list[tuple[str, ...]]) -> Lines:
    return Lines([",".join(row) for row in rows], lambda: rows)


def test_ready_made_lines_are_written_as_they_are_with_crlf_ends(tmp_path):
    rows = [("1", "2026-11-24T10:00:05.123+00:00", ""), ("2", "", "yes")]
    write_csv(tmp_path / "a.csv", ["n", "at", "flag"], RowBatches([lines(rows)]))
    assert (tmp_path / "a.csv").read_bytes() == (
        "\ufeffn,at,flag\r\n1,2026-11-24T10:00:05.123+00:00,\r\n2,,yes\r\n".encode())


def test_a_batch_with_a_value_that_needs_quoting_goes_through_the_csv_module(tmp_path):
    awkward = [("1", "plain"), ("2", 'a, "b"'), ("3", "two\r\nlines")]
    write_csv(tmp_path / "a.csv", ["n", "text"], RowBatches([lines([("0", "first")]), lines(awkward)]))
    with open(tmp_path / "a.csv", encoding=ENCODING, newline="") as stream:
        assert list(csv.reader(stream)) == [["n", "text"], ["0", "first"], *map(list, awkward)]
    assert (tmp_path / "a.csv").read_bytes().endswith(b'2,"a, ""b"""\r\n3,"two\r\nlines"\r\n')


def test_batches_iterate_as_plain_rows_whether_lines_or_lists():
    rows = RowBatches([lines([("1", "a")]), [["2", "b"]], lines([])])
    assert [list(row) for row in rows] == [["1", "a"], ["2", "b"]]


def test_progress_is_reported_as_each_multiple_of_50000_rows_is_passed_by_uneven_batches(tmp_path):
    reports = []
    batches = [[[str(n)] for n in range(start, start + size)] for start, size in ((0, 30_000), (30_000, 30_000),
                                                                                  (60_000, 0), (60_000, 45_000))]
    count = write_csv(tmp_path / "a.csv", ["n"], RowBatches(batches), lambda *report: reports.append(report))
    assert count == 105_000 and sum(1 for _ in read_csv(tmp_path / "a.csv")) == 105_001
    assert reports == [("a.csv", 60_000, False), ("a.csv", 105_000, False), ("a.csv", 105_000, True)]
