"""A durable local spool for webhooks the database could not take.

When storing a Twilio webhook fails (the database is down, a disk is full, a lock timed out)
the event is appended here instead, flushed to disk before the webhook is answered, and
stored later by `drain`. Nothing else reads these files, and nothing but counts and call
SIDs from them ever reaches a log.

Files in the spool directory:

* ``webhooks.jsonl``: where events are appended, one JSON object per line;
* ``draining-*.jsonl``: a batch a drain has taken (left in place if the drain stopped);
* ``unstored.jsonl``: events the database refused for a reason other than being unreachable
  (kept for a person to look at, never retried by themselves: `retry_set_aside` puts them
  back among those waiting, `helpdesk webhooks replay --set-aside` from the command line);
* ``unreadable.jsonl``: lines that are not JSON (a write torn by a crash);
* ``drain.lock``: held while a drain runs, so only one process drains at a time.

Writers hold a shared lock on ``webhooks.jsonl`` while they append; a drain renames the file
and then takes an exclusive lock on it, so an append that began before the rename finishes
before the batch is read, and one that begins after it goes to a new file.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

CURRENT = "webhooks.jsonl"
UNSTORED = "unstored.jsonl"
UNREADABLE = "unreadable.jsonl"
LOCK = "drain.lock"
_DRAINING = "draining-"


class Unreachable(Exception):
    """Raised by a drain's `store` when the database cannot be reached: stop, try again later."""


@dataclass
class Drained:
    """What one drain did."""

    stored: int = 0
    unstored: int = 0
    unreadable: int = 0
    waiting: int = 0  # still in the spool: the database was unreachable
    busy: bool = False  # another process was draining; this one did nothing


class Spool:
    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    # ------------------------------------------------------------------ writing

    def put(self, entry: dict[str, Any]) -> None:
        """Append one entry and flush it to disk. Raises OSError if it could not be kept."""
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / CURRENT
        _write_synced(self._open_current(path), line)  # closing releases the shared lock
        _fsync_directory(self.directory)  # the file may be new: make its name durable too

    def check_writable(self, create: bool = True) -> None:
        """Write, sync and remove a file in the directory, as `put` would, making the directory
        first (or, with `create` false, only checking that its nearest existing parent could
        take it): raises OSError if webhooks could not be kept here. Nothing waiting is touched."""
        if os.path.lexists(self.directory) and not self.directory.is_dir():  # a file, or a link to nothing
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        if not create and not os.path.lexists(self.directory):
            parent = next(p for p in self.directory.parents if os.path.lexists(p))
            if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
                raise PermissionError(errno.EACCES, f"{parent} cannot take a new directory")
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = self.directory / f".probe-{os.getpid()}"
        try:
            _write_synced(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), b"{}\n")
        finally:
            probe.unlink(missing_ok=True)

    @staticmethod
    def _open_current(path: Path) -> int:
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # a drain renamed it meanwhile: append to the new one

    # ------------------------------------------------------------------ reading

    def has_waiting(self) -> bool:
        """Whether any event waits to be stored (one directory listing)."""
        try:
            with os.scandir(self.directory) as entries:
                return any(_waiting(e.name) for e in entries)
        except FileNotFoundError:
            return False

    def counts(self) -> dict[str, int]:
        """Lines in each state: waiting, unstored, unreadable."""
        for _ in range(5):  # a drain renaming a file between listing and reading: count again
            counts, complete = self._count()
            if complete:
                break
        return counts

    def _count(self) -> tuple[dict[str, int], bool]:
        counts = {"waiting": 0, "unstored": 0, "unreadable": 0}
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return counts, True
        complete = True
        for name in names:
            state = ("waiting" if _waiting(name) else
                     "unstored" if name == UNSTORED else "unreadable" if name == UNREADABLE else None)
            if state:
                try:
                    with open(self.directory / name, "rb") as file:
                        counts[state] += sum(1 for line in file if line.strip())
                except FileNotFoundError:
                    complete = False
        return counts, complete

    def drain(self, store: Callable[[dict[str, Any]], None]) -> Drained:
        """Store every waiting entry with `store`, oldest batch first.

        `store` raises Unreachable when the database cannot be reached: the drain stops and
        keeps what is left for the next one. Any other exception moves that entry to
        ``unstored.jsonl`` (logged) and the drain goes on. `store` must recognise an entry it
        has stored before (a drain that stopped part-way reads its batch again next time).
        """
        result = Drained()
        if not self.has_waiting():
            return result
        with self._drain_lock() as held:
            if not held:
                result.busy = True
                return result
            self._take_current()
            for batch in sorted(self.directory.glob(_DRAINING + "*.jsonl")):
                if not self._drain_batch(batch, store, result):
                    break
            result.waiting = self.counts()["waiting"]
            return result

    def retry_set_aside(self) -> int | None:
        """Put the events in ``unstored.jsonl`` back among those waiting, for the next drain to
        try again (once whatever made the database refuse them is fixed). Returns how many;
        None if a drain is running (try again later)."""
        path = self.directory / UNSTORED
        if not path.exists():
            return 0
        with self._drain_lock() as held:
            if not held:
                return None
            try:
                count = len(self._lines(path))
                os.rename(path, self.directory / f"{_DRAINING}{time.time_ns():020d}-{os.getpid()}-retry.jsonl")
            except FileNotFoundError:
                return 0
            _fsync_directory(self.directory)
            return count

    @contextmanager
    def _drain_lock(self) -> Iterator[bool]:
        """The drain lock, if no other process holds it: yields whether this one got it."""
        lock_fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(lock_fd)

    def _take_current(self) -> None:
        current = self.directory / CURRENT
        batch = self.directory / f"{_DRAINING}{time.time_ns():020d}-{os.getpid()}.jsonl"
        try:
            os.rename(current, batch)
        except FileNotFoundError:
            return
        fd = os.open(batch, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # appends begun before the rename have finished
        finally:
            os.close(fd)
        _fsync_directory(self.directory)

    def _drain_batch(self, batch: Path, store: Callable[[dict[str, Any]], None], result: Drained) -> bool:
        """Store one batch; False if the database was unreachable (what is left stays)."""
        lines = self._lines(batch)
        for index, raw in enumerate(lines):
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                log.error("spool: a line of %s is not a stored webhook; kept in %s", batch.name, UNREADABLE)
                self._keep(UNREADABLE, raw)
                result.unreadable += 1
                continue
            try:
                store(entry)
            except Unreachable:
                self._replace(batch, lines[index:])
                return False
            except Exception:
                log.exception("spool: the database refused a webhook (%s, call %s); kept in %s",
                              entry.get("kind"), entry.get("call_sid"), UNSTORED)
                self._keep(UNSTORED, raw)
                result.unstored += 1
                continue
            result.stored += 1
        batch.unlink()
        batch.with_suffix(".partial").unlink(missing_ok=True)  # a rewrite a crash left unfinished
        return True

    @staticmethod
    def _lines(batch: Path) -> list[bytes]:
        with open(batch, "rb") as file:
            return [raw.rstrip(b"\n") for raw in file if raw.strip()]

    def _replace(self, batch: Path, lines: list[bytes]) -> None:
        """Keep only `lines` in the batch (what the stopped drain had not done), atomically."""
        partial = batch.with_suffix(".partial")
        _write_synced(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                      b"".join(raw + b"\n" for raw in lines))
        os.replace(partial, batch)
        _fsync_directory(self.directory)

    def _keep(self, name: str, raw: bytes) -> None:
        _write_synced(os.open(self.directory / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), raw + b"\n")


def _waiting(name: str) -> bool:
    # Not a draining batch's ".partial" rewrite, which a crash may leave behind: it is only
    # ever renamed over its batch, which still holds every line.
    return name == CURRENT or (name.startswith(_DRAINING) and name.endswith(".jsonl"))


def _write_synced(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, flush it to disk, and close `fd`."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
