"""Benchmark: the whole daemon (`lvsd run --check-only --dataplane memory`) checking N real
servers with TCP_CHECK at delay_loop 1 s, next to the check scheduler alone (bench/checks_tcp.py)
measured in the same run.

Prints the daemon's CPU as a share of one core (utime+stime of its process from /proc/PID/stat
over a window after warm-up), the lateness of its checks against their schedule (p50/p99/max,
the same figure checks_tcp.py prints: loop time at launch minus the tracker's deadline), and the
ratio daemon / scheduler alone. Options add a status scraper (GET /status and /metrics every
second) and HTTP_GET checkers alongside the TCP ones.

The daemon is the real command line run as a subprocess; the only addition is a small wrapper
that turns on the scheduler's lateness list (what checks_tcp.py turns on too: one append per
launch), counts the time spent in garbage collections and the thread CPU time spent building
status snapshots and rendering /status and /metrics, and answers "mark"/"dump" on a pipe so
that the window can be cut out of it. Thread CPU time is what a starved process still reports
faithfully: use it (and CPU per check) to compare runs on a shared machine.

With ``--scrape`` a first window runs without the scraper: its CPU per check, subtracted from
the scraped window's CPU, gives the CPU one scrape (/status + /metrics) costs. On a shared
machine compare CPU per check and per scrape (the work done), not lateness: a starved daemon
is late whatever it does; the load average is printed beside every figure.

    .venv/bin/python bench/daemon_checks.py --seconds 30
    .venv/bin/python bench/daemon_checks.py --seconds 30 --scrape --http 2000
    .venv/bin/python bench/daemon_checks.py --no-peer --profile /tmp/p.txt   # py-spy, window
    .venv/bin/python bench/daemon_checks.py --no-peer --profile /tmp/p.svg --profile-format \
        flamegraph
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))

from _checks_util import address, free_ports, pct, raise_nofile, start_server

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs `lvsd run ...` in this process with the scheduler's lateness list on and the time spent
# in garbage collections counted. Control pipe (fd numbers in LVSD_BENCH_CTL="r,w"): "mark" ->
# "<len(lateness)> <completed> <gen0 s> <gen1 s> <gen2 s> <gen2 count>",
# "dump A B PATH" -> lateness[A:B] written to PATH (one float a line), then "ok".
WRAPPER = r"""
import gc, os, sys, threading, time
gct = [0.0, 0.0, 0.0, 0, 0.0]  # seconds in gen 0/1/2 collections, gen-2 count, start of one
def gc_cb(phase, info):
    if phase == "start":
        gct[4] = time.perf_counter()
    else:
        gct[info["generation"]] += time.perf_counter() - gct[4]
        gct[3] += info["generation"] == 2
gc.callbacks.append(gc_cb)
if os.environ.get("LVSD_BENCH_GC"):  # --gc-threshold: what the daemon could set at start
    gc.set_threshold(*(int(x) for x in os.environ.pop("LVSD_BENCH_GC").split(",")))
# thread CPU time spent building status snapshots and rendering them (seconds, calls)
stc = {"snapshot": [0.0, 0], "json": [0.0, 0], "metrics": [0.0, 0]}
def timed(name, fn):
    def run(*a, **kw):
        t0 = time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            stc[name][0] += time.thread_time() - t0
            stc[name][1] += 1
    return run
from lvsd.daemon import core as C
from lvsd.status import app as A
C.Daemon.snapshot = timed("snapshot", C.Daemon.snapshot)
A.to_dict = timed("json", A.to_dict)
A.render = timed("metrics", A.render)
from lvsd.checks import scheduler as S
inst = []
orig = S.Scheduler.__init__
def init(self, *a, **kw):
    kw["collect_lateness"] = True
    orig(self, *a, **kw)
    inst.append(self)
S.Scheduler.__init__ = init
rfd, wfd = (int(x) for x in os.environ.pop("LVSD_BENCH_CTL").split(","))
def ctl():
    r, w = os.fdopen(rfd, "r"), os.fdopen(wfd, "w")
    for line in r:
        cmd = line.split()
        st = inst[-1].stats if inst else None
        if cmd[0] == "mark":
            w.write(f"{len(st.lateness) if st else -1} {st.completed if st else -1} "
                    f"{gct[0]} {gct[1]} {gct[2]} {gct[3]} "
                    + " ".join(f"{v[0]} {v[1]}" for v in stc.values()) + "\n")
        elif cmd[0] == "dump":
            a, b = int(cmd[1]), int(cmd[2])
            with open(cmd[3], "w") as f:
                f.write("\n".join(repr(x) for x in st.lateness[a:b]))
            w.write("ok\n")
        w.flush()
threading.Thread(target=ctl, daemon=True).start()
from lvsd.cli import main
sys.argv = ["lvsd"] + sys.argv[1:]
sys.exit(main())
"""


def config_text(n_tcp: int, tcp_ports: list[int], n_http: int, http_ports: list[int],
                per_vs: int = 1000) -> str:
    out = []
    def block(first: int, count: int, ports: list[int], vsn: int, check: str) -> None:
        out.append(f"virtual_server 10.9.{vsn // 250}.{1 + vsn % 250} 80 {{\n"
                   "    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n")
        for i in range(first, first + count):
            out.append(f"    real_server {address(i)} {ports[i % len(ports)]} {{\n"
                       f"        weight 1\n        {check} {{\n"
                       + ("            url {\n              path /health\n"
                          "              status_code 200\n            }\n"
                          if check == "HTTP_GET" else "")
                       + "            connect_timeout 5\n            retry 1\n"
                         "            delay_before_retry 1\n            warmup 1\n"
                         "        }\n    }\n")
        out.append("}\n")
    vsn = 0
    for v in range(0, n_tcp, per_vs):
        block(v, min(per_vs, n_tcp - v), tcp_ports, vsn, "TCP_CHECK")
        vsn += 1
    for v in range(0, n_http, per_vs):
        block(n_tcp + v, min(per_vs, n_http - v), http_ports, vsn, "HTTP_GET")
        vsn += 1
    return "".join(out)


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of the process, in clock ticks (/proc/PID/stat fields 14, 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Scraper(threading.Thread):
    """GET /status and /metrics once a second (what a dashboard plus Prometheus do)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.n, self.errors = port, threading.Event(), 0, 0
        self.ms: list[float] = []

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            for path in ("/status", "/metrics"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                                timeout=10) as r:
                        r.read()
                    self.n += 1
                except OSError:
                    self.errors += 1
            self.ms.append((time.monotonic() - t0) * 1000)
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t0)))


def wait_ready(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("daemon not ready in time")


def run_daemon(a: argparse.Namespace, tmp: str) -> dict[str, float]:
    tcp_ports = free_ports(a.ports)
    http_ports = free_ports(a.ports) if a.http else []
    procs = start_server("tcp", tcp_ports, procs=2)
    if a.http:
        procs += start_server("http", http_ports, procs=1)
    conf = os.path.join(tmp, "keepalived.conf")
    with open(conf, "w") as f:
        f.write(config_text(a.servers, tcp_ports, a.http, http_ports))
    status_port = free_ports(1)[0]
    c_r, c_w = os.pipe()  # bench -> daemon
    r_r, r_w = os.pipe()  # daemon -> bench
    env = dict(os.environ, LVSD_BENCH_CTL=f"{c_r},{r_w}")
    if a.gc_threshold:
        env["LVSD_BENCH_GC"] = a.gc_threshold
    log = open(os.path.join(tmp, "daemon.log"), "wb")  # noqa: SIM115 (closed below)
    cmd = [sys.executable, "-c", WRAPPER, "run", "-f", conf, "--check-only", "--dataplane",
           "memory", "--status-listen", f"127.0.0.1:{status_port}", "--pid-file", "",
           "--dump-dir", tmp]
    proc = subprocess.Popen(cmd, env=env, pass_fds=(c_r, r_w), stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    os.close(c_r)
    os.close(r_w)
    ctl_w, ctl_r = os.fdopen(c_w, "w"), os.fdopen(r_r, "r")

    def ask(line: str) -> str:
        ctl_w.write(line + "\n")
        ctl_w.flush()
        return ctl_r.readline().strip()

    scraper = None
    pid = proc.pid
    try:
        try:
            wait_ready(status_port, proc, time.monotonic() + 120)
        except SystemExit:
            log.flush()
            with open(os.path.join(tmp, "daemon.log")) as f:
                sys.stderr.write(f.read()[-3000:])
            raise
        time.sleep(a.warmup)
        base = None
        if a.scrape:
            # a window without the scraper first: its CPU per check, subtracted from the
            # scraped window's CPU, leaves the CPU the scrapes cost
            b0, q0 = ask("mark").split()[1], cpu_ticks(pid)
            time.sleep(a.seconds / 2)
            b1, q1 = ask("mark").split()[1], cpu_ticks(pid)
            base = (sum(q1) - sum(q0)) / os.sysconf("SC_CLK_TCK") / max(1, int(b1) - int(b0))
            scraper = Scraper(status_port)
            scraper.start()
            time.sleep(2)
            n0 = scraper.n
        spy = None
        if a.profile:
            # attached for the measured window only (not start-up, not the unscraped window);
            # --nonblocking: the daemon is sampled without being stopped
            spy = subprocess.Popen([
                os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                "--nonblocking", "-r", "200", "-o", a.profile, "-f", a.profile_format,
                "-d", str(int(a.seconds)), "--pid", str(pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        m0 = ask("mark").split()
        i0, c0, g0 = int(m0[0]), int(m0[1]), [float(x) for x in m0[2:6]]
        s0 = [float(x) for x in m0[6:]]
        t0, k0 = time.monotonic(), cpu_ticks(pid)
        la0 = os.getloadavg()[0]
        time.sleep(a.seconds)
        t1, k1 = time.monotonic(), cpu_ticks(pid)
        if spy is not None:
            spy.wait(60)
        m1 = ask("mark").split()
        i1, c1, g1 = int(m1[0]), int(m1[1]), [float(x) for x in m1[2:6]]
        s1 = [float(x) for x in m1[6:]]
        scrapes = (scraper.n - n0) / 2 if scraper is not None else 0
        lat_file = os.path.join(tmp, "lateness.txt")
        ask(f"dump {i0} {i1} {lat_file}")
        with open(lat_file) as f:
            window = [float(x) * 1000 for x in f.read().split()]
        with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status",
                                    timeout=30) as r:
            st = json.load(r)
        rss = rss_mib(pid)
    finally:
        if scraper is not None:
            scraper.stop.set()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for p in procs:
            p.kill()
            p.wait()
    wall = t1 - t0
    hz = os.sysconf("SC_CLK_TCK")
    usr, sy = (k1[0] - k0[0]) / hz, (k1[1] - k0[1]) / hz
    cpu = (usr + sy) / wall * 100
    per = (usr + sy) / max(1, c1 - c0) * 1e6
    down = sum(1 for c in st.get("checkers", ()) if c.get("up") is False)
    print(f"daemon: {a.servers} TCP_CHECK + {a.http} HTTP_GET, delay_loop 1 s, window "
          f"{wall:.1f} s after {a.warmup:.0f} s warm-up, scrape {'on' if a.scrape else 'off'}"
          + (f", gc threshold {a.gc_threshold}" if a.gc_threshold else ""))
    print(f"  checks completed/s : {(c1 - c0) / wall:9.0f}   (target {a.servers + a.http})")
    print(f"  lateness ms        : p50 {pct(window, 50):.2f}  p99 {pct(window, 99):.2f}  "
          f"max {max(window) if window else float('nan'):.2f}")
    print(f"  CPU (one core)     : {cpu:6.1f} %  (user {100 * usr / wall:.1f} %, system "
          f"{100 * sy / wall:.1f} %)   peak RSS {rss:.0f} MiB")
    print(f"  CPU per check      : {per:6.1f} us  -> {a.servers + a.http} checks/s would need "
          f"{per * (a.servers + a.http) / 1e4:.0f} % of one core")
    gcs = [b - a for a, b in zip(g0, g1, strict=True)]
    print(f"  garbage collection : {100 * sum(gcs[:3]) / wall:6.1f} % of one core (gen 0 "
          f"{1000 * gcs[0] / wall:.1f}, gen 1 {1000 * gcs[1] / wall:.1f}, gen 2 "
          f"{1000 * gcs[2] / wall:.1f} ms/s; {gcs[3]:.0f} gen-2 passes)")
    if scraper is not None and base is not None:
        print(f"  scrapes            : {scrapes:.0f} in the window, {scraper.errors} failed, "
              f"/status+/metrics p50 {pct(scraper.ms, 50):.0f} ms  max "
              f"{max(scraper.ms) if scraper.ms else float('nan'):.0f} ms")
        print(f"  without scraper    : {base * 1e6:6.1f} us CPU per check (first window)")
        sd = [b - a for a, b in zip(s0, s1, strict=True)]
        print("  status CPU (thread): " + ", ".join(
            f"{name} {1000 * sd[2 * k] / max(1, sd[2 * k + 1]):.0f} ms x {sd[2 * k + 1]:.0f}"
            for k, name in enumerate(("snapshot", "JSON", "metrics")))
            + f"; {100 * (sd[0] + sd[2] + sd[4]) / wall:.1f} % of one core")
        if scrapes:
            per_scrape = (usr + sy - base * (c1 - c0)) / scrapes
            print(f"  CPU per scrape     : {per_scrape * 1000:6.0f} ms (/status + /metrics, "
                  "both built: window CPU less its checks at the unscraped rate)")
    if st:
        print(f"  checkers down      : {down} of {len(st.get('checkers', ()))}")
    print(f"  load avg (1 min)   : {la0:.2f} at start, {os.getloadavg()[0]:.2f} at end, "
          f"{os.cpu_count()} CPUs")
    return {"cpu": cpu, "p99": pct(window, 99), "per": per, "user": 100 * usr / wall}


def run_peer(a: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run([sys.executable, os.path.join(HERE, "checks_tcp.py"), "--servers",
                          str(a.servers), "--seconds", str(a.seconds)],
                         capture_output=True, text=True, check=True).stdout
    fig = {}
    for line in out.splitlines():
        if "CPU (one core)" in line:
            fig["cpu"] = float(line.split(":")[1].split("%")[0])
            fig["user"] = float(line.split("user")[1].split("%")[0])
        if "lateness ms" in line:
            fig["p99"] = float(line.split("p99")[1].split()[0])
        if "CPU per check" in line:
            fig["per"] = float(line.split(":")[1].split("us")[0])
        if "checks completed/s" in line:
            fig["rate"] = float(line.split(":")[1].split()[0])
        if "bare connect" in line:
            fig["floor"] = float(line.split("costs")[1].split("us")[0])
        if "load avg" in line:
            fig["load"] = float(line.split(":")[1].split()[0])
    nan = float("nan")
    print(f"peer: bench/checks_tcp.py (scheduler alone, {a.servers} TCP_CHECK): "
          f"{fig.get('rate', nan):.0f} checks/s, CPU {fig.get('cpu', nan):.1f} % (user "
          f"{fig.get('user', nan):.1f} %), "
          f"{fig.get('per', nan):.1f} us per check, lateness p99 {fig.get('p99', nan):.2f} ms, "
          f"load avg {fig.get('load', nan):.2f}; kernel floor (bare connect+close) "
          f"{fig.get('floor', nan):.1f} us")
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", type=int, default=10_000, help="TCP_CHECK real servers")
    ap.add_argument("--http", type=int, default=0, help="HTTP_GET real servers alongside")
    ap.add_argument("--scrape", action="store_true", help="GET /status and /metrics every 1 s")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds after READY")
    ap.add_argument("--ports", type=int, default=4)
    ap.add_argument("--no-peer", action="store_true", help="skip bench/checks_tcp.py")
    ap.add_argument("--profile", metavar="FILE",
                    help="py-spy record the daemon during the measured window")
    ap.add_argument("--profile-format", default="raw", help="py-spy output format")
    ap.add_argument("--gc-threshold", metavar="G0,G1,G2",
                    help="gc.set_threshold in the daemon before it starts (default: Python's)")
    a = ap.parse_args()
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="lvsd-bench-") as tmp:
        d = run_daemon(a, tmp)
    if a.no_peer:
        return
    p = run_peer(a)
    if p.get("cpu") and p.get("per"):
        print(f"ratio daemon / scheduler alone: CPU {d['cpu'] / p['cpu']:.2f}, CPU per check "
              f"{d['per'] / p['per']:.2f}  (goal: daemon <= 50 % of one core, lateness p99 "
              "< 50 ms)")


if __name__ == "__main__":
    main()
