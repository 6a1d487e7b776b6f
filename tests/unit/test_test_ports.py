"""The test harness's ports (servers.free_port): never the same port twice, never one in use,
never from the kernel's ephemeral range, and each pytest-xdist worker in a block of its own."""
from __future__ import annotations

import socket

import pytest

import servers
from servers import HOST, PORT_RANGE, free_port, port_block


def ephemeral_range() -> range:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            low, high = map(int, file.read().split())
    except OSError:
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def test_ports_are_never_handed_out_twice_and_stay_in_this_processs_block():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(port in port_block() for port in ports)


def test_the_ports_are_below_the_kernels_ephemeral_range():
    assert PORT_RANGE[1] <= ephemeral_range().start
    assert PORT_RANGE[0] >= 1024


def test_each_xdist_worker_has_a_block_of_its_own():
    blocks = [set(port_block(worker=f"gw{n}")) for n in range(servers.PORT_BLOCKS)]
    assert all(blocks)
    assert all(not (a & b) for i, a in enumerate(blocks) for b in blocks[i + 1:])
    assert set().union(*blocks) <= set(range(*PORT_RANGE))
    # Outside xdist (a benchmark, a serial run) the process id chooses the block.
    assert port_block(worker="", pid=3) == port_block(worker="gw3")


def test_a_port_something_else_holds_is_passed_over(monkeypatch):
    block = port_block()
    turn = iter(range(10**6))
    monkeypatch.setattr(servers, "_port_turn", turn)
    first = free_port()
    monkeypatch.setattr(servers, "_port_turn", iter(range(10**6)))  # the same turn again
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, first))
        holder.listen()
        again = free_port()
    assert again != first and again in block


def test_a_whole_block_taken_is_an_error_that_says_so(monkeypatch):
    monkeypatch.setattr(servers, "_bindable", lambda port, host: False)
    with pytest.raises(RuntimeError, match=r"no free TCP port on 127\.0\.0\.1 in \d+-\d+"):
        free_port()
