"""Benchmark: detection latency of a dead real server against the worst-case bound.

Each trial is a real server (its own TCP listener on 127.0.0.1) checked by TCP_CHECK through the
scheduler. Once all are up, each listener is killed at a random moment; the time from the kill
to the down event is compared with the bound
``delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry``.

Kill modes: ``blackhole`` (the port then drops SYNs: every attempt runs into connect_timeout, the
worst case) or ``refuse`` (connects are refused at once). Trials run concurrently.

    .venv/bin/python bench/detection.py --trials 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _checks_util import pct, raise_nofile

from lvsd.checks.health import RealServerId
from lvsd.checks.scheduler import HealthEvent, Scheduler
from lvsd.checks.tracker import detection_bound
from lvsd.config.model import (
    NOPOS,
    Checker,
    CheckKind,
    Config,
    Protocol,
    RealServer,
    VirtualServer,
)


class Trial:
    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.killed_at: float | None = None
        self.down_at: float | None = None
        self.hole: list[socket.socket] = []

    async def start(self) -> None:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    def kill(self, mode: str) -> None:
        assert self.server is not None
        self.server.close()
        if mode == "blackhole":
            # same port, backlog full: further SYNs are dropped, connects time out
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", self.port))
            ls.listen(0)
            self.hole.append(ls)
            for _ in range(3):
                c = socket.socket()
                c.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    c.connect(("127.0.0.1", self.port))
                self.hole.append(c)
        self.killed_at = asyncio.get_running_loop().time()

    def close(self) -> None:
        for s in self.hole:
            s.close()


async def run(a: argparse.Namespace) -> None:
    trials = [Trial() for _ in range(a.trials)]
    for t in trials:
        await t.start()
    ck_of = {}
    rss = []
    for t in trials:
        ck = Checker(CheckKind.TCP_CHECK, NOPOS, "127.0.0.1", t.port,
                     connect_timeout=a.connect_timeout, retry=a.retry,
                     delay_before_retry=a.delay_before_retry, delay_loop=a.delay_loop,
                     warmup=a.delay_loop)
        ck_of[t.port] = ck
        rss.append(RealServer("127.0.0.1", t.port, checkers=(ck,)))
    cfg = Config("<bench>", "bench", virtual_servers=(VirtualServer(
        NOPOS, address="10.9.0.1", port=80, protocol=Protocol.TCP, delay_loop=a.delay_loop,
        real_servers=tuple(rss)),))
    by_port = {t.port: t for t in trials}
    loop = asyncio.get_running_loop()
    all_up = asyncio.Event()
    all_down = asyncio.Event()

    def on_change(ev: HealthEvent) -> None:
        if ev.health is None:
            return
        health = sched.health
        if not all_up.is_set() and len(health) == len(trials) and all(
                h.alive for h in health.values()):
            all_up.set()
        t = by_port[ev.rsid.port]
        if not ev.health.alive and t.killed_at is not None and t.down_at is None:
            t.down_at = ev.at
            if all(x.down_at is not None for x in trials):
                all_down.set()

    sched = Scheduler(cfg, rng=random.Random(a.seed), on_change=on_change)
    await sched.start()
    await asyncio.wait_for(all_up.wait(), 10 + 2 * a.delay_loop)
    rng = random.Random(a.seed)
    for t in trials:  # kill at a random phase of the check cycle
        loop.call_later(rng.uniform(0, 2 * a.delay_loop), t.kill, a.mode)
    bound = detection_bound(next(iter(ck_of.values())))
    await asyncio.wait_for(all_down.wait(), 2 * a.delay_loop + 2 * bound + 5)
    await sched.close()
    for t in trials:
        t.close()
    det = [t.down_at - t.killed_at for t in trials
           if t.down_at is not None and t.killed_at is not None]
    over = [d for d in det if d > bound]
    print(f"detection ({a.mode}): {len(det)} trials, delay_loop {a.delay_loop} s, retry "
          f"{a.retry}, connect_timeout {a.connect_timeout} s, delay_before_retry "
          f"{a.delay_before_retry} s")
    print(f"  bound              : {bound * 1000:8.1f} ms")
    print(f"  detection ms       : min {min(det) * 1000:.1f}  p50 {pct(det, 50) * 1000:.1f}  "
          f"p99 {pct(det, 99) * 1000:.1f}  max {max(det) * 1000:.1f}")
    print(f"  max / bound        : {max(det) / bound:.3f}   over the bound: {len(over)}"
          + (f" (worst +{(max(over) - bound) * 1000:.1f} ms)" if over else ""))
    print(f"  servers            : {len(trials)} (RealServerId e.g. "
          f"{RealServerId('10.9.0.1:80/TCP', '127.0.0.1', trials[0].port)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--delay-loop", type=float, default=1.0)
    ap.add_argument("--retry", type=int, default=1)
    ap.add_argument("--connect-timeout", type=float, default=0.5)
    ap.add_argument("--delay-before-retry", type=float, default=0.5)
    ap.add_argument("--mode", choices=("blackhole", "refuse"), default="blackhole")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    raise_nofile()
    asyncio.run(run(a))


if __name__ == "__main__":
    main()
