"""Writing and reading the pack's CSV files, row by row, with progress reports.

UTF-8 with a byte-order mark, so Excel opens them with the right characters; CRLF line ends,
as RFC 4180 says.
"""
from __future__ import annotations

import csv
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

Progress = Callable[[str, int, bool], None]
ENCODING = "utf-8-sig"
PROGRESS_EVERY = 50_000
BATCH = 5_000  # divides PROGRESS_EVERY


def write_csv(path: Path, header: list[str], rows: Iterable[list[str]], progress: Progress | None = None) -> int:
    """Write `header` and `rows` to `path`; returns the number of rows (not counting the header)."""
    count = 0
    rows = iter(rows)
    width = len(header)
    with open(path, "w", encoding=ENCODING, newline="") as stream:
        writer = csv.writer(stream, lineterminator="\r\n")
        writer.writerow(header)
        while batch := list(islice(rows, BATCH)):
            _write_batch(stream, writer, batch, width)
            count += len(batch)
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(path.name, count, False)
        if progress is not None:
            progress(path.name, count, True)
    return count


def _write_batch(stream: TextIO, writer, batch: list[list[str]], width: int) -> None:
    """Write rows as the csv module would, joining them directly when nothing needs quoting.

    Most rows hold only times, numbers and fixed words; checking the joined text once (in C)
    is far cheaper than the csv module's per-field work. Anything unusual goes through it.
    """
    try:
        text = "\r\n".join(map(",".join, batch))
    except TypeError:  # a value that is not text: let the csv module convert it
        text = None
    rows = len(batch)
    if (text is not None and width > 1 and text.count(",") == rows * (width - 1) and '"' not in text
            and text.count("\n") == rows - 1 and text.count("\r") == rows - 1):
        stream.write(text)
        stream.write("\r\n")
    else:
        writer.writerows(batch)

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
