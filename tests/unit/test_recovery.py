"""The spool's background thread: it stops only when nothing waits, whenever events are kept."""
from __future__ import annotations

import time

from helpdesk.spool import Spool
from helpdesk.voice import recovery
from helpdesk.voice.recovery import Recovery


class LateSpool(Spool):
    """After its first drain has counted what waits, one more event is kept (another request)."""

    keeper: Recovery

    def drain(self, store):
        result = super().drain(store)
        if not hasattr(self, "late"):
            self.late = True
            self.keeper.keep({"n": 1}, None, None)  # the thread is still running: no new one starts
        return result


def test_an_event_kept_as_the_thread_finishes_is_stored_without_waiting_for_a_retry(tmp_path, monkeypatch):
    monkeypatch.setattr(recovery, "FIRST_RETRY_SECONDS", 60)  # storing it must not depend on a retry
    spool = LateSpool(tmp_path)
    spool.keeper = Recovery(spool)
    stored = []
    monkeypatch.setattr(recovery, "store_entry", lambda database, settings, entry: stored.append(entry["n"]))
    spool.keeper.keep({"n": 0}, None, None)
    deadline = time.monotonic() + 10
    while spool.keeper.running() or spool.has_waiting():
        assert time.monotonic() < deadline, (stored, spool.counts())
        time.sleep(0.01)
    assert stored == [0, 1]
