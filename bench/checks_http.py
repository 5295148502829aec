"""Benchmark: N real servers (default 2,000) with HTTP_GET at delay_loop 1 s on 127.0.0.0/8.

Prints checks/s achieved, lateness of each check against its schedule (p50/p99/max), CPU of
the checking process as a share of one core, peak RSS. The answering listeners run in a separate
process (wildcard sockets on a few ports: every 127.x.y.z address reaches them).

    .venv/bin/python bench/checks_http.py --seconds 60
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _checks_util import bench_main

from lvsd.config.model import CheckKind

if __name__ == "__main__":
    bench_main(__doc__, CheckKind.HTTP_GET, "http", servers=2_000)
