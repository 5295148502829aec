"""Status endpoint cost vs pool size: a real ``lvsd run`` (check-only, in-memory data plane).

    .venv/bin/python bench/status_scale.py [--sizes 10,1000,5000] [--requests 30]

For each size N, one virtual server with N real servers (no checkers: always alive, so all N
are in the data plane) is started as a real daemon on loopback; then GET /healthz (the peer:
same server, no snapshot), /status and /metrics are timed over loopback HTTP. Prints the
median and p90 per endpoint, the response sizes, and the ratio /status : /healthz, so numbers
from different machines compare. No root needed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(n: int) -> str:
    rs = "\n".join(f"    real_server 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256} 80 {{\n"
                   f"        weight 1\n    }}" for i in range(1, n + 1))
    return ("virtual_server 192.0.2.100 80 {\n    lb_algo rr\n    lb_kind NAT\n"
            f"    protocol TCP\n{rs}\n}}\n")


def _get(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,1000,5000")
    ap.add_argument("--requests", type=int, default=30)
    a = ap.parse_args()
    print(f"{'real servers':>12} {'endpoint':<9} {'median ms':>10} {'p90 ms':>8} {'bytes':>9} "
          f"{'x healthz':>9}")
    for n in (int(x) for x in a.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "k.conf"
            conf.write_text(_conf(n))
            port = _port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only",
                 "--dataplane", "memory", "--status-listen", f"127.0.0.1:{port}",
                 "--pid-file", "", "--sweep", "3600"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
            try:
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 120
                while True:
                    try:
                        _get(base + "/healthz")
                        break
                    except OSError:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            msg = f"daemon with {n} real servers did not start"
                            raise SystemExit(msg) from None
                        time.sleep(0.2)
                res: dict[str, tuple[float, float, int]] = {}
                for ep in ("/healthz", "/status", "/metrics"):
                    times, size = [], 0
                    for _ in range(a.requests):
                        t, size = _get(base + ep)
                        times.append(t * 1000)
                    times.sort()
                    res[ep] = (statistics.median(times), times[int(len(times) * 0.9) - 1], size)
                for ep, (med, p90, size) in res.items():
                    print(f"{n:>12} {ep:<9} {med:>10.2f} {p90:>8.2f} {size:>9} "
                          f"{med / res['/healthz'][0]:>9.1f}")
            finally:
                proc.terminate()
                proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
