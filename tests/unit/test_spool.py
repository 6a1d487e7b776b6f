"""The webhook spool: what is put is stored once, in order, whatever stops a drain part-way."""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import stat

import pytest

from helpdesk.spool import CURRENT, LOCK, UNREADABLE, UNSTORED, Spool, Unreachable


def entries(n, start=0):
    return [{"n": i, "call_sid": f"CA{i:032x}"} for i in range(start, start + n)]


def put(spool, count=1, start=0):
    """Put entries start, start + 1, ... into `spool`; returns it."""
    for entry in entries(count, start):
        spool.put(entry)
    return spool


class Store:
    """Records what it was given; raises for chosen entries."""

    def __init__(self, unreachable_at=(), refuse=()):
        self.stored, self.unreachable_at, self.refuse = [], set(unreachable_at), set(refuse)

    def __call__(self, entry):
        if entry["n"] in self.unreachable_at:
            self.unreachable_at.discard(entry["n"])  # reachable again next time
            raise Unreachable("connection refused")
        if entry["n"] in self.refuse:
            raise ValueError("no such column")
        self.stored.append(entry["n"])


def test_what_is_put_is_drained_in_order_and_the_spool_is_left_empty(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert not spool.has_waiting() and spool.drain(Store()).stored == 0
    put(spool, 5)
    assert spool.has_waiting() and spool.counts() == {"waiting": 5, "unstored": 0, "unreadable": 0}
    store = Store()
    result = spool.drain(store)
    assert (store.stored, result.stored, result.waiting) == ([0, 1, 2, 3, 4], 5, 0)
    assert not spool.has_waiting()
    assert sorted(os.listdir(spool.directory)) == [LOCK]


def test_spool_files_are_private_to_the_app(tmp_path):
    spool = put(Spool(tmp_path / "spool"))
    assert stat.S_IMODE(os.stat(spool.directory / CURRENT).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(spool.directory).st_mode) == 0o700


def test_an_unreachable_database_stops_the_drain_and_the_next_one_goes_on_from_there(tmp_path):
    spool = put(Spool(tmp_path), 6)
    store = Store(unreachable_at={3})
    first = spool.drain(store)
    assert (first.stored, first.waiting) == (3, 3)
    put(spool, start=6)  # arrives meanwhile
    second = spool.drain(store)
    assert (second.stored, second.waiting) == (4, 0)
    assert store.stored == [0, 1, 2, 3, 4, 5, 6]  # nothing twice, nothing lost


def test_an_entry_the_database_refuses_is_set_aside_and_the_rest_are_stored(tmp_path):
    spool = put(Spool(tmp_path), 4)
    store = Store(refuse={1})
    result = spool.drain(store)
    assert (result.stored, result.unstored, result.waiting) == (3, 1, 0)
    assert store.stored == [0, 2, 3]
    kept = [json.loads(line) for line in (tmp_path / UNSTORED).read_text().splitlines()]
    assert [e["n"] for e in kept] == [1]
    assert spool.counts() == {"waiting": 0, "unstored": 1, "unreadable": 0}
    assert not spool.has_waiting()


def test_a_line_torn_by_a_crash_is_set_aside_and_the_rest_are_stored(tmp_path):
    spool = put(Spool(tmp_path))
    with open(tmp_path / CURRENT, "ab") as file:
        file.write(b'{"n": 1, "call_si')  # the process died mid-write
    with open(tmp_path / CURRENT, "ab") as file:
        file.write(b"\n")
    put(spool, start=2)
    store = Store()
    result = spool.drain(store)
    assert (result.stored, result.unreadable, store.stored) == (2, 1, [0, 2])
    assert (tmp_path / UNREADABLE).read_bytes() == b'{"n": 1, "call_si\n'


def test_only_one_process_drains_at_a_time(tmp_path):
    spool = put(Spool(tmp_path))
    fd = os.open(tmp_path / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        store = Store()
        result = spool.drain(store)
        assert result.busy and store.stored == [] and spool.has_waiting()
    finally:
        os.close(fd)
    assert spool.drain(Store()).stored == 1


def _writer(directory, first, count):
    put(Spool(directory), count, first)


def _drainer(directory, stop, out):
    spool, seen = Spool(directory), []

    def store(entry):
        seen.append(entry["n"])

    while not stop.is_set():
        spool.drain(store)
    out.put(seen)


def test_appends_from_many_processes_while_another_drains_are_each_stored_once(tmp_path):
    context = multiprocessing.get_context("fork")
    stop, out = context.Event(), context.Queue()
    drainer = context.Process(target=_drainer, args=(tmp_path, stop, out))
    drainer.start()
    writers = [context.Process(target=_writer, args=(tmp_path, w * 1000, 150)) for w in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    stop.set()
    seen = out.get(timeout=60)
    drainer.join(60)
    store = Store()
    Spool(tmp_path).drain(store)  # whatever came after the drainer's last pass
    stored = seen + store.stored
    assert len(stored) == 600
    assert sorted(stored) == sorted(w * 1000 + i for w in range(4) for i in range(150))
    assert seen, "the drainer should have stored some while the writers wrote"


def test_a_spool_that_cannot_be_written_says_so(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        Spool(tmp_path / "file" / "spool").put(entries(1)[0])


def test_a_rewrite_left_half_done_by_a_crash_is_not_taken_for_waiting_events(tmp_path):
    spool = put(Spool(tmp_path), 3)
    store = Store(unreachable_at={1})
    spool.drain(store)  # stops at entry 1: its batch now holds entries 1 and 2
    (batch,) = tmp_path.glob("draining-*.jsonl")
    batch.with_suffix(".partial").write_bytes(b'{"n": 2')  # a crash during the next rewrite
    assert spool.counts()["waiting"] == 2
    result = spool.drain(store)
    assert (result.stored, result.waiting, store.stored) == (2, 0, [0, 1, 2])
    assert sorted(os.listdir(tmp_path)) == [LOCK]
