"""The watchdog that cuts a database connection a webhook has held past its deadline."""
from __future__ import annotations

import os
import socket
import threading
import time

from helpdesk.db import Watchdog


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_connection_held_past_its_deadline_is_cut_and_a_blocked_read_wakes():
    watchdog, (ours, server) = Watchdog(), socket.socketpair()
    with ours, server:
        # Timed from before arming: arm starts the watchdog's thread, which may take a while on a busy machine.
        started = time.monotonic()
        token = watchdog.arm(ours.fileno(), 0.2)
        assert ours.recv(1) == b""  # waits for a server that never answers, until the cut
        assert 0.15 < time.monotonic() - started < 5
        assert watchdog.disarm(token) is False  # it was cut


def test_a_connection_given_back_in_time_is_left_alone_and_nothing_leaks():
    watchdog, (ours, server) = Watchdog(), socket.socketpair()
    with ours, server:
        before = open_descriptors()
        tokens = [watchdog.arm(ours.fileno(), 0.3) for _ in range(20)]
        assert all(watchdog.disarm(token) for token in tokens)
        assert open_descriptors() == before
        time.sleep(0.5)  # past the deadlines
        server.sendall(b"x")
        assert ours.recv(1) == b"x"


def test_each_connection_keeps_its_own_deadline():
    watchdog = Watchdog()
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        late = watchdog.arm(pairs[0][0].fileno(), 30)
        soon = [watchdog.arm(ours.fileno(), 0.1) for ours, _ in pairs[1:]]
        woken = []
        readers = [threading.Thread(target=lambda s=ours: woken.append(s.recv(1))) for ours, _ in pairs[1:]]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(5)
        assert woken == [b"", b""]
        assert [watchdog.disarm(token) for token in soon] == [False, False]
        assert watchdog.disarm(late) is True
    finally:
        for pair in pairs:
            for end in pair:
                end.close()
