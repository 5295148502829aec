"""Benchmark: N real servers (default 10,000) with TCP_CHECK at delay_loop 1 s on 127.0.0.0/8.

Prints checks/s achieved, lateness of each check against its schedule (p50/p99/max), CPU of
the checking process as a share of one core, peak RSS. The answering listeners run in a separate
process (wildcard sockets on a few ports: every 127.x.y.z address reaches them).

    .venv/bin/python bench/checks_tcp.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _checks_util import free_ports, make_config, raise_nofile, run_load, start_server

from lvsd.config.model import CheckKind


def connect_floor(ports: list[int], n: int = 3000) -> float:
    """CPU seconds per bare non-blocking connect + RST close to the same listeners (the kernel
    floor any checker pays; printed as the peer figure of this run)."""
    import resource
    import socket
    import struct

    from _checks_util import address

    linger = struct.pack("ii", 1, 0)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        s.connect_ex((address(i), ports[i % len(ports)]))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.close()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--delay-loop", type=float, default=1.0)
    ap.add_argument("--ports", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4096)
    ap.add_argument("--no-gc-freeze", action="store_true", help="leave the GC as it is")
    a = ap.parse_args()
    raise_nofile()
    ports = free_ports(a.ports)
    procs = start_server("tcp", ports, procs=2)
    try:
        floor = connect_floor(ports)
        print(f"peer: bare connect+close loop costs {floor * 1e6:.1f} us CPU per connect")
        cfg = make_config(a.servers, CheckKind.TCP_CHECK, ports, a.delay_loop, 5.0)
        asyncio.run(run_load("TCP_CHECK", cfg, a.servers, a.seconds, a.delay_loop,
                             a.concurrency, not a.no_gc_freeze))
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
