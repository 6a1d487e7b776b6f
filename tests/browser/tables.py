"""The pages' tables as Chromium lays them out, for the tests of their shape on narrow screens."""
from __future__ import annotations

# For each table in the page's main content: its caption's id, how far its box scrolls sideways,
# whether its column headers are shown, their words, and for each row of its body the column
# heading each cell shows on a card (null for a cell that shows none).
_TABLES = """() => [...document.querySelectorAll('main table')].map(table => {
    const wrap = table.closest('.table-wrap'), shown = e => e && e.getClientRects().length > 0;
    return {id: table.caption ? table.caption.id : '', sideways: wrap.scrollWidth - wrap.clientWidth,
            headers: table.tHead.getBoundingClientRect().height > 1,
            columns: [...table.tHead.rows[0].cells].map(cell => cell.textContent.trim()),
            rows: [...table.tBodies[0].rows].map(row => [...row.cells].map(cell =>
                shown(cell.querySelector('.cell-heading')) ? cell.querySelector('.cell-heading').textContent : null))};
})"""


def tables_as_laid_out(page) -> list[dict]:
    return page.evaluate(_TABLES)


def assert_cards(tables: list[dict]) -> None:
    """Each table a list of cards: nothing to scroll sideways, no column headers on show, and each
    cell under its own column's heading."""
    for table in tables:
        assert table["sideways"] <= 0 and not table["headers"], table
        assert table["rows"] and all(row == table["columns"] for row in table["rows"]), table


def assert_tables(tables: list[dict]) -> None:
    """Each table a table: its column headers on show, and no heading in any cell."""
    for table in tables:
        assert table["headers"] and table["sideways"] <= 0, table
        assert table["rows"] and all(row == [None] * len(table["columns"]) for row in table["rows"]), table
