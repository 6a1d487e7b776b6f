"""Writing and reading the pack's CSV files, a batch of rows at a time, with progress reports.

UTF-8 with a byte-order mark, so Excel opens them with the right characters; CRLF line ends,
as RFC 4180 says.
"""
from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TextIO

Progress = Callable[[str, int, bool], None]
Row = Sequence[str]
ENCODING = "utf-8-sig"
PROGRESS_EVERY = 50_000
BATCH = 5_000  # divides PROGRESS_EVERY
BUFFER = 1 << 20  # bytes: batches arrive as ~1 MB of text


@dataclass
class Lines:
    """A batch of rows already joined with commas: CSV lines, without their line ends.

    They are right as they stand only if no value needed quoting. `write_csv` checks that (a comma,
    quote or line break in a value shows in its counts) and otherwise writes `fields()`, the same
    rows as fields, through the csv module.
    """

    lines: list[str]
    fields: Callable[[], list[Row]]

    def __len__(self) -> int:
        return len(self.lines)


Batch = list[Row] | Lines


class RowBatches:
    """Rows that arrive a batch at a time, as a database cursor gives them.

    Iterating gives the rows one by one, like any other rows; `write_csv` takes the batches
    whole, which spares a million-row export a step per row.
    """

    def __init__(self, batches: Iterable[Batch]):
        self.batches = batches

    def __iter__(self) -> Iterator[Row]:
        for batch in self.batches:
            yield from batch.fields() if isinstance(batch, Lines) else batch


def write_csv(path: Path, header: list[str], rows: Iterable[Row], progress: Progress | None = None) -> int:
    """Write `header` and `rows` to `path`; returns the number of rows (not counting the header)."""
    count = 0
    batches = rows.batches if isinstance(rows, RowBatches) else _batches(rows)
    width = len(header)
    with open(path, "w", encoding=ENCODING, newline="", buffering=BUFFER) as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(header)
        for batch in batches:
            if not len(batch):
                continue
            _write_batch(stream, writer, batch, width)
            reported = count // PROGRESS_EVERY
            count += len(batch)
            if progress is not None and count // PROGRESS_EVERY > reported:
                progress(path.name, count, False)
        if progress is not None:
            progress(path.name, count, True)
    return count


def _batches(rows: Iterable[Row]) -> Iterator[list[Row]]:
    rows = iter(rows)
    while batch := list(islice(rows, BATCH)):
        yield batch


def _write_batch(stream: TextIO, writer, batch: Batch, width: int) -> None:
    """Write rows as the csv module would, joining them directly when nothing needs quoting.

    Most rows hold only times, numbers and fixed words; checking the joined text once (in C)
    is far cheaper than the csv module's per-field work. Anything unusual goes through it.
    """
    rows = len(batch)
    try:
        text = "\r\n".join(batch.lines if isinstance(batch, Lines) else map(",".join, batch))
    except TypeError:  # a value that is not text: let the csv module convert it
        text = None
    if (text is not None and width > 1 and text.count(",") == rows * (width - 1) and '"' not in text
            and text.count("\n") == rows - 1 and text.count("\r") == rows - 1):
        stream.write(text)
        stream.write("\r\n")
    else:
        writer.writerows(batch.fields() if isinstance(batch, Lines) else batch)


def read_csv(path: Path) -> Iterator[list[str]]:
    """The rows of a pack CSV, header first, one at a time."""
    with open(path, encoding=ENCODING, newline="") as stream:
        yield from csv.reader(stream)


class TerminalProgress:
    """Progress on stderr: a line rewritten in place on a terminal, else a line per report."""

    def __init__(self, stream: TextIO | None = None, every_seconds: float = 1.0):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every = every_seconds
        self._last = 0.0

    def __call__(self, name: str, rows: int, done: bool) -> None:
        now = time.monotonic()
        if not done and now - self._last < self.every:
            return
        self._last = now
        text = f"{name}: {rows:,} row{'' if rows == 1 else 's'}{' written' if done else '...'}"
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if done else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
