"""Benchmark: N real servers (default 10,000) with TCP_CHECK at delay_loop 1 s on 127.0.0.0/8.

Prints checks/s achieved, lateness of each check against its schedule (p50/p99/max), CPU of
the checking process as a share of one core, peak RSS. The answering listeners run in a separate
process (wildcard sockets on a few ports: every 127.x.y.z address reaches them).

    .venv/bin/python bench/checks_tcp.py --seconds 60
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _checks_util import address, bench_main

from lvsd.config.model import CheckKind


def connect_floor(ports: list[int], n: int = 3000) -> float:
    """CPU seconds per bare non-blocking connect + RST close to the same listeners (the kernel
    floor any checker pays; printed as the peer figure of this run)."""
    import resource
    import socket
    import struct

    linger = struct.pack("ii", 1, 0)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        s.connect_ex((address(i), ports[i % len(ports)]))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.close()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / n


def print_floor(ports: list[int]) -> None:
    print(f"peer: bare connect+close loop costs {connect_floor(ports) * 1e6:.1f} us CPU per "
          "connect")


if __name__ == "__main__":
    bench_main(__doc__, CheckKind.TCP_CHECK, "tcp", servers=10_000, peer=print_floor)
