"""Benchmark: N real servers (default 2,000) with HTTP_GET at delay_loop 1 s on 127.0.0.0/8.

Prints checks/s achieved, lateness of each check against its schedule (p50/p99/max), CPU of
the checking process as a share of one core, peak RSS. The answering listeners run in a separate
process (wildcard sockets on a few ports: every 127.x.y.z address reaches them).

    .venv/bin/python bench/checks_http.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _checks_util import free_ports, make_config, raise_nofile, run_load, start_server

from lvsd.config.model import CheckKind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=2_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--delay-loop", type=float, default=1.0)
    ap.add_argument("--ports", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4096)
    ap.add_argument("--no-gc-freeze", action="store_true", help="leave the GC as it is")
    a = ap.parse_args()
    raise_nofile()
    ports = free_ports(a.ports)
    procs = start_server("http", ports, procs=2)
    try:
        cfg = make_config(a.servers, CheckKind.HTTP_GET, ports, a.delay_loop, 5.0)
        asyncio.run(run_load("HTTP_GET", cfg, a.servers, a.seconds, a.delay_loop,
                             a.concurrency, not a.no_gc_freeze))
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
