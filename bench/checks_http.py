"""Benchmark: N real servers (default 2,000) with HTTP_GET at delay_loop 1 s on 127.0.0.0/8.

Prints checks/s achieved, lateness of each check against its schedule (p50/p99/max), CPU of
the checking process as a share of one core, peak RSS. The answering listeners run in a separate
process (wildcard sockets on a few ports: every 127.x.y.z address reaches them).

The peer figure, measured first against the same listeners: a bare blocking GET loop (connect,
send keepalived's request, read until the server closes, close) with no scheduling, parsing or
verdict: the kernel's and the listener's floor any HTTP checker pays per check.

    .venv/bin/python bench/checks_http.py --seconds 60
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _checks_util import address, bench_main

from lvsd.config.model import CheckKind


def get_floor(ports: list[int], n: int = 2000) -> float:
    """CPU seconds per bare blocking GET to the listeners (see the module docstring)."""
    import resource
    import socket

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(n):
        ip, port = address(i), ports[i % len(ports)]
        with socket.create_connection((ip, port), timeout=5) as s:
            s.sendall(f"GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\n"
                      f"Host: {ip}:{port}\r\n\r\n".encode())
            while s.recv(65536):
                pass
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / n


def print_floor(ports: list[int]) -> None:
    print(f"peer: bare blocking GET loop costs {get_floor(ports) * 1e6:.1f} us CPU per GET")


if __name__ == "__main__":
    bench_main(__doc__, CheckKind.HTTP_GET, "http", servers=2_000, peer=print_floor)
