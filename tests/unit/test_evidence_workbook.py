"""evidence.xlsx from the pack's CSVs: a sheet per table, numbers as numbers, long tables split."""
from __future__ import annotations

import openpyxl

from metrics.evidence import workbook
from metrics.evidence.csvs import write_csv


def test_each_csv_becomes_a_sheet_with_a_frozen_bold_header_and_numbers_as_numbers(tmp_path):
    write_csv(tmp_path / "calls.csv", ["arrived", "answer_seconds", "rings", "caller"],
              [["2026-11-24T10:00:00.000+00:00", "11.0", "4", "********123"], ["2026-11-24T10:05:00.000+00:00", "", "", "withheld"]])
    write_csv(tmp_path / "summary.csv", ["rule", "countable", "compliance"], [["email_ack", "0", ""]])
    workbook.write_workbook(tmp_path, tmp_path / "evidence.xlsx")
    book = openpyxl.load_workbook(tmp_path / "evidence.xlsx")
    assert book.sheetnames == ["Summary", "Calls"]
    calls = book["Calls"]
    assert calls.freeze_panes == "A2" and calls["A1"].font.bold
    assert list(calls.iter_rows(values_only=True)) == [
        ("arrived", "answer_seconds", "rings", "caller"),
        ("2026-11-24T10:00:00.000+00:00", 11.0, 4, "********123"),
        ("2026-11-24T10:05:00.000+00:00", None, None, "withheld"),
    ]
    assert calls.column_dimensions["A"].width == workbook.TIME_WIDTH
    assert list(book["Summary"].iter_rows(values_only=True))[1] == ("email_ack", 0, None)  # no data stays blank


def test_a_table_longer_than_a_sheet_continues_on_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "MAX_SHEET_ROWS", 4)  # a header and three rows per sheet
    write_csv(tmp_path / "emails.csv", ["enquiry_reference"], [[f"HD-2026-{n:06d}"] for n in range(1, 8)])
    workbook.write_workbook(tmp_path, tmp_path / "evidence.xlsx")
    book = openpyxl.load_workbook(tmp_path / "evidence.xlsx")
    assert book.sheetnames == ["Emails", "Emails (2)", "Emails (3)"]
    rows = [list(sheet.iter_rows(values_only=True)) for sheet in book]
    assert [r[0] for r in rows] == [("enquiry_reference",)] * 3  # each sheet has the header
    assert [v for sheet in rows for (v,) in sheet[1:]] == [f"HD-2026-{n:06d}" for n in range(1, 8)]


def test_an_empty_table_still_gets_its_sheet_with_the_header(tmp_path):
    write_csv(tmp_path / "callbacks.csv", ["callback_id", "reason"], [])
    workbook.write_workbook(tmp_path, tmp_path / "evidence.xlsx")
    book = openpyxl.load_workbook(tmp_path / "evidence.xlsx")
    assert list(book["Callbacks"].iter_rows(values_only=True)) == [("callback_id", "reason")]


def test_a_control_character_a_sheet_cannot_hold_is_shown_as_a_replacement_and_the_csv_keeps_it(tmp_path):
    note = "Rang twice\x00, no answer\x1b[0m\tthen\nvoicemail"
    write_csv(tmp_path / "callbacks.csv", ["callback_id", "note"], [["1", note]])
    workbook.write_workbook(tmp_path, tmp_path / "evidence.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "evidence.xlsx")["Callbacks"]
    assert list(sheet.iter_rows(values_only=True))[1] == (1, "Rang twice\ufffd, no answer\ufffd[0m\tthen\nvoicemail")
    assert note in (tmp_path / "callbacks.csv").read_text(encoding="utf-8")


def test_text_that_starts_like_a_formula_stays_text_in_the_workbook(tmp_path):
    write_csv(tmp_path / "callback_attempts.csv", ["callback_id", "note"],
              [["1", '=HYPERLINK("http://evil.example","click")'], ["2", "plain"]])
    workbook.write_workbook(tmp_path, tmp_path / "evidence.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "evidence.xlsx")["Callback attempts"]
    assert sheet["B2"].data_type == "s" and sheet["B2"].value == '=HYPERLINK("http://evil.example","click")'
    assert sheet["A2"].value == 1 and sheet["B3"].value == "plain"


def test_every_column_of_uk_times_is_wide_enough_for_them():
    from metrics.evidence.columns import DEFINITIONS, TIMES

    timed = {column for columns in DEFINITIONS.values() for column, meaning in columns.items() if TIMES in meaning}
    assert {"first_answered", "marked_answered", "received"} <= timed
    assert [column for column in timed if workbook._width(column) < workbook.TIME_WIDTH] == []
