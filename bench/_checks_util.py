"""Shared pieces of the health-check benchmarks: a listener process on loopback, a synthetic
config with many real servers across 127.0.0.0/8, and the figures a run prints."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.checks.scheduler import HealthEvent, Scheduler
from lvsd.config.model import (
    NOPOS,
    Checker,
    CheckKind,
    Config,
    HttpUrl,
    Protocol,
    RealServer,
    VirtualServer,
)

# A separate process answers so that its CPU does not count against the checker's.
# Wildcard listeners: connections to any 127.x.y.z:port land on them (loopback only).
SERVER = r"""
import asyncio, os, socket, sys, threading
# exit with the benchmark (its end of our stdin closes, however it dies)
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
mode, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
RESP = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"

class Http(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
        self.buf = b""
    def data_received(self, d):
        self.buf += d
        if b"\r\n\r\n" in self.buf:
            self.t.write(RESP)
            self.t.close()

def tcp_accept(sock):
    sock.setblocking(True)
    while True:  # plain blocking accept loop: far cheaper than one awaitable per connection
        c, _ = sock.accept()
        c.close()

async def main():
    loop = asyncio.get_running_loop()
    tasks = []
    for p in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("0.0.0.0", p))
        s.listen(4096)
        if mode == "tcp":
            tasks.append(asyncio.to_thread(tcp_accept, s))
        else:
            s.setblocking(False)
            srv = await loop.create_server(Http, sock=s, backlog=4096)
            tasks.append(asyncio.create_task(srv.serve_forever()))
    print("ready", flush=True)
    await asyncio.gather(*tasks)

asyncio.run(main())
"""


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_ports(n: int) -> list[int]:
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def start_server(mode: str, ports: list[int], procs: int = 1) -> list[subprocess.Popen[str]]:
    out = []
    for _ in range(procs):
        p = subprocess.Popen([sys.executable, "-c", SERVER, mode, ",".join(map(str, ports))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            p.kill()
            raise SystemExit("benchmark server did not start")
        out.append(p)
    return out


def address(i: int) -> str:
    """The i-th real server address inside 127.0.0.0/8 (127.1.0.1 ...)."""
    return f"127.{1 + i // 65024}.{(i // 254) % 256}.{1 + i % 254}"


def make_config(n: int, kind: CheckKind, ports: list[int], delay_loop: float,
                connect_timeout: float, per_vs: int = 1000) -> Config:
    vss = []
    for v in range(0, n, per_vs):
        rss = []
        for i in range(v, min(n, v + per_vs)):
            ip, port = address(i), ports[i % len(ports)]
            urls = (HttpUrl("/health"),) if kind is CheckKind.HTTP_GET else ()
            ck = Checker(kind, NOPOS, ip, port, connect_timeout=connect_timeout, retry=1,
                         delay_before_retry=1.0, delay_loop=delay_loop, warmup=delay_loop,
                         urls=urls)
            rss.append(RealServer(ip, port, checkers=(ck,)))
        vss.append(VirtualServer(NOPOS, address=f"10.9.{v // per_vs}.1", port=80,
                                 protocol=Protocol.TCP, delay_loop=delay_loop,
                                 real_servers=tuple(rss)))
    return Config("<bench>", "bench", virtual_servers=tuple(vss))


def proc_stat() -> list[int]:
    """Machine-wide jiffies: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


@dataclass
class Figures:
    events: list[HealthEvent] = field(default_factory=list)


async def run_load(name: str, cfg: Config, n: int, seconds: float, delay_loop: float,
                   concurrency: int, gc_freeze: bool = True) -> None:
    figs = Figures()
    sched = Scheduler(cfg, rng=random.Random(42), concurrency=concurrency,
                      on_change=figs.events.append, collect_lateness=True)
    await sched.start()
    if gc_freeze:
        # what a daemon does after loading its config: the long-lived objects (trackers,
        # checkers) leave the collector's generations, so its passes stay short
        gc.freeze()
    settle = 1.0 + delay_loop + 0.5  # bootstrap + warmup spread
    await asyncio.sleep(settle)
    lat = sched.stats.lateness
    assert lat is not None
    i0, c0 = len(lat), sched.stats.completed
    ps0 = proc_stat()
    ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await asyncio.sleep(seconds)
    ru1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    ps1 = proc_stat()
    i1, c1 = len(lat), sched.stats.completed
    window = [x * 1000 for x in lat[i0:i1]]
    probe_ms = [st.last_latency * 1000 for st in sched.status() if st.last_latency is not None]
    await sched.close()
    wall = t1 - t0
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    health: dict[RealServerId, RealServerHealth] = dict(sched.health)
    down = [h for h in health.values() if not h.alive]
    print(f"{name}: {n} real servers, delay_loop {delay_loop} s, measured {wall:.1f} s "
          f"(after {settle:.1f} s start-up), gc.freeze {'on' if gc_freeze else 'off'}")
    print(f"  checks completed/s : {(c1 - c0) / wall:9.0f}   (target {n / delay_loop:.0f})")
    print(f"  launched/s         : {(i1 - i0) / wall:9.0f}")
    print(f"  lateness ms        : p50 {pct(window, 50):.2f}  p99 {pct(window, 99):.2f}  "
          f"max {max(window) if window else float('nan'):.2f}")
    usr = ru1.ru_utime - ru0.ru_utime
    done = max(1, c1 - c0)
    print(f"  probe latency ms   : p50 {pct(probe_ms, 50):.2f}  p99 {pct(probe_ms, 99):.2f}  "
          "(next check = end of attempt + delay_loop, as keepalived)")
    print(f"  CPU (one core)     : {100 * cpu / wall:6.1f} %  (user {100 * usr / wall:.1f} %, "
          f"system {100 * (cpu - usr) / wall:.1f} %)")
    print(f"  CPU per check      : {1e6 * cpu / done:6.1f} us  -> {n / delay_loop:.0f} checks/s "
          f"would need {100 * cpu / done * n / delay_loop:.0f} % of one core")
    d = [b - a for a, b in zip(ps0, ps1, strict=True)]
    tot = max(1, sum(d))
    ncpu = os.cpu_count() or 1
    print(f"  machine (all CPUs) : busy {100 * ncpu * (tot - d[3] - d[4]) / tot:.0f} % of one "
          f"core, softirq {100 * ncpu * d[6] / tot:.0f} % (loopback TCP of BOTH ends, not "
          "billed to the checker)")
    print(f"  machine load avg   : {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(shared machine: starvation shows as lateness)")
    print(f"  peak RSS           : {ru1.ru_maxrss / 1024:.0f} MiB")
    print(f"  max in flight      : {sched.stats.max_in_flight}")
    print(f"  servers decided    : {len(health)}  down: {len(down)}"
          + (f"  e.g. {down[0].reason}" if down else ""))


def bench_main(doc: str, kind: CheckKind, mode: str, servers: int,
               peer: Callable[[list[int]], None] | None = None) -> None:
    """The command line of a check benchmark: start the listeners, print the ``peer`` figure
    (if any) against the same listeners, then run the load."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--servers", type=int, default=servers)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--delay-loop", type=float, default=1.0)
    ap.add_argument("--ports", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4096)
    ap.add_argument("--no-gc-freeze", action="store_true", help="leave the GC as it is")
    a = ap.parse_args()
    raise_nofile()
    ports = free_ports(a.ports)
    procs = start_server(mode, ports, procs=2)
    try:
        if peer is not None:
            peer(ports)
        cfg = make_config(a.servers, kind, ports, a.delay_loop, 5.0)
        asyncio.run(run_load(kind.value, cfg, a.servers, a.seconds, a.delay_loop,
                             a.concurrency, not a.no_gc_freeze))
    finally:
        for p in procs:
            p.kill()
            p.wait()
