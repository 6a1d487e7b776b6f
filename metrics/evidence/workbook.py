"""evidence.xlsx: the pack's CSVs as sheets, written in openpyxl's write-only mode.

Built from the CSV files just written, so the workbook holds exactly what they hold, and
memory stays flat (write-only mode streams rows to disk). Numbers become numbers; times
stay ISO 8601 text, because Excel has no time zones and the offset must not be lost. The one
difference: a control character a worksheet cannot hold (in a note stored before the queue
page refused them, say) is shown as U+FFFD; the CSV keeps it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils import get_column_letter

from metrics.evidence.columns import DEFINITIONS, TIMES
from metrics.evidence.csvs import read_csv
from metrics.evidence.fields import FORMULA_STARTS

# Excel's limit, header included: a longer table continues on "Calls (2)" and so on.
MAX_SHEET_ROWS = 1_048_576
# (file, sheet title, numeric columns)
SHEETS = (
    ("summary.csv", "Summary", {"countable", "met", "breached", "compliance"}),
    ("calls.csv", "Calls", {"answer_seconds", "rings"}),
    ("callbacks.csv", "Callbacks", {"callback_id", "attempts"}),
    ("callback_attempts.csv", "Callback attempts", {"callback_id"}),
    ("emails.csv", "Emails", {"ack_seconds"}),
    ("columns.csv", "Columns", set()),  # what each column above means
)
WIDTHS = {
    "meaning": 100, "file": 22, "column": 22,
    "deadline_explanation": 80, "note": 60, "call_sid": 36, "config_version": 16, "enquiry_reference": 18,
    "lost_in_restore": 60,  # "from/to", two UK times
}
TIME_WIDTH = 30  # "2026-11-24T10:00:05.123+00:00"
# The columns of UK times: those columns.csv says are (one list, so a new one is never left narrow).
TIME_COLUMNS = frozenset(column for columns in DEFINITIONS.values() for column, meaning in columns.items()
                         if TIMES in meaning)


def _width(column: str) -> float:
    if column in WIDTHS:
        return WIDTHS[column]
    if column in TIME_COLUMNS:
        return TIME_WIDTH
    return max(10, len(column) + 2)


def _text(value: str) -> str:
    """A CSV value for a cell: the CSV's guard in front of formula-like text (fields.inert) is taken
    off, as the cell is text anyway (see _cells), so the sheet shows what was written."""
    if value[:1] == "'" and value[1:2] and value[1] in FORMULA_STARTS:
        value = value[1:]
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)


def _cells(sheet, values: list) -> list:
    """The row to append: text that starts with "=" stays text (openpyxl would make it a formula)."""
    if not any(isinstance(value, str) and value.startswith("=") for value in values):
        return values
    cells = []
    for value in values:
        cell = WriteOnlyCell(sheet, value=value)
        if isinstance(value, str):
            cell.data_type = "s"
        cells.append(cell)
    return cells


def _number(text: str) -> int | float | None | str:
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def write_workbook(directory: Path, path: Path, progress: Callable | None = None) -> None:
    """Write `path` with one sheet per pack CSV found in `directory`."""
    book = Workbook(write_only=True)
    for filename, title, numeric in SHEETS:
        source = directory / filename
        if not source.exists():
            continue
        rows = read_csv(source)
        header = next(rows)
        converters = [_number if name in numeric else None for name in header]
        part, sheet, written, total = 1, None, MAX_SHEET_ROWS, 0
        for row in rows:
            if written >= MAX_SHEET_ROWS:
                sheet = _new_sheet(book, title if part == 1 else f"{title} ({part})", header)
                part, written = part + 1, 1
            sheet.append(_cells(sheet, [convert(value) if convert else _text(value)
                                        for convert, value in zip(converters, row)]))
            written += 1
            total += 1
        if sheet is None:
            _new_sheet(book, title, header)
        if progress is not None:
            progress(f"evidence.xlsx ({title})", total, True)
    book.save(path)


def _new_sheet(book: Workbook, title: str, header: list[str]):
    sheet = book.create_sheet(title)
    sheet.freeze_panes = "A2"
    for index, name in enumerate(header, 1):
        sheet.column_dimensions[get_column_letter(index)].width = _width(name)
    bold = Font(bold=True)
    cells = []
    for name in header:
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    return sheet
