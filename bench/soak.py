"""Soak: false failovers of a VRRP pair at 0.02 s adverts while the master checks 10,000 real
servers and its status endpoint is scraped; lvsd pair vs keepalived pair in the same run.

    sudo .venv/bin/python bench/soak.py [--minutes 10] [--servers 10000] [--rt-priority N]
                                        [--dataplane memory|nftables] [--no-peer]

lvsd pair (namespaces a, b and an observer o on one bridge): what ships, ``lvsd run``
(``testlab.DaemonNode`` with its own config): VRRP v3 at ``advert_int 0.02`` (RFC 9568
centiseconds: 2 cs), master priority 150 in ``a``, backup priority 100 in ``b``. The master
also runs ``--servers`` TCP_CHECK real servers at ``delay_loop 1`` (10,000 checks/s) on the
chosen data plane; the real servers are real listening sockets in its namespace (wildcard
listeners on a few ports reached at 127.x.y.z, as ``bench/daemon_checks.py`` does, in a process
of their own). The backup runs VRRP only (``--backup-checks``: the same checks too). A client
in ``a`` GETs ``/status`` and ``/metrics`` once a second for the whole run.

keepalived pair (a second bridge: namespaces ka, kb, ko): the same VRRP config, VRRP only (no
checks: a keepalived checker process would need IPVS, which this kernel lacks), for the same
duration under the same machine load.

After a warm-up (the lvsd master READY, every checker with a verdict, both pairs settled) the
window of ``--minutes`` starts. Counted over the window:

* false failovers: every state change of either node of a pair (lvsd: ``/status``'s
  became_master/released_master counters and "Entering ... STATE" log lines; keepalived: its
  "Entering ... STATE" lines), and every advert sent by a backup (``tcpdump`` in the observer's
  namespace: a backup only advertises as master);
* the longest gap between the master's adverts as the observer saw them (a gap over
  Master_Down_Interval = 3 x 20 ms + Skew_Time 12.2 ms = 72.2 ms is a failover; RFC 9568
  §6.1), the count of gaps over 2 and over 3 intervals;
* lvsd: the longest event-loop stall of the master's main loop (checks, pool, status) and of its
  VRRP child (``/status`` process.loop_max_stall, i.e. ``lvsd_event_loop_max_stall_seconds``)
  and the number of stalls over each watchdog's threshold; ``loop_max_stall`` is a maximum
  since start, so the figure printed is the window's when it grew during the window, else "<=
  the value at the start" (reached during start-up);
* CPU (share of one core, utime+stime from /proc) of the lvsd master's main process, of its VRRP
  child, and of keepalived's master VRRP process; checks/s (sum of checks_total); scrape times.

The load average is printed at the start and the end, and every minute with the progress line.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, Topology

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))
from _checks_util import SERVER, address, raise_nofile  # noqa: E402

import testlab  # noqa: E402
from testlab import DaemonNode, KeepalivedNode, NodeOpts, wait_for  # noqa: E402

VIP = "192.0.2.100"
INTERVAL = 0.02
MASTER_IP, BACKUP_IP = "192.0.2.1", "192.0.2.2"
PORTS = [20001, 20002, 20003, 20004]
RLIMIT_RTTIME = 200_000  # us, with --rt-priority (lvsd's default; keepalived's is 10,000)
HZ = os.sysconf("SC_CLK_TCK")

# GET /status and /metrics every PERIOD s; one JSON line per round on stdout
SCRAPER = r"""
import json, sys, time, urllib.request
base, period = sys.argv[1], float(sys.argv[2])
while True:
    t0 = time.monotonic()
    rec = {"t": time.time()}
    try:
        with urllib.request.urlopen(base + "/status", timeout=20) as r:
            st = json.load(r)
        t1 = time.monotonic()
        with urllib.request.urlopen(base + "/metrics", timeout=20) as r:
            r.read()
        t2 = time.monotonic()
        p = st.get("process", {})
        rec.update(status_ms=(t1 - t0) * 1e3, metrics_ms=(t2 - t1) * 1e3,
                   stall=p.get("loop_max_stall"), over=p.get("loop_stalls_over_threshold"),
                   state=[i.get("state") for i in st.get("instances", ())])
    except (OSError, ValueError) as exc:
        rec["error"] = str(exc)
    print(json.dumps(rec), flush=True)
    time.sleep(max(0.0, period - (time.monotonic() - t0)))
"""


def vs_config(n: int, ports: list[int], per_vs: int = 1000) -> str:
    """``n`` TCP_CHECK real servers at delay_loop 1 s, ``per_vs`` per virtual server (the
    shape of bench/daemon_checks.py's config)."""
    out = []
    for vsn, first in enumerate(range(0, n, per_vs)):
        out.append(f"virtual_server 10.9.{vsn // 250}.{1 + vsn % 250} 80 {{\n"
                   "    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n")
        for i in range(first, min(n, first + per_vs)):
            out.append(f"    real_server {address(i)} {ports[i % len(ports)]} {{\n"
                       "        weight 1\n        TCP_CHECK {\n"
                       "            connect_timeout 5\n            retry 1\n"
                       "            delay_before_retry 1\n        }\n    }\n")
        out.append("}\n")
    return "".join(out)


def base_conf(rt_priority: int) -> None:
    """Every config the nodes write gets ``vrrp_rt_priority`` (and ``vrrp_rlimit_rttime``) in
    its global_defs when asked (both implementations read testlab.keepalived_conf)."""
    if not rt_priority:
        return
    orig = testlab.keepalived_conf

    def conf(name: str, o: NodeOpts) -> str:
        return orig(name, o).replace(
            "global_defs {\n", f"global_defs {{\n  vrrp_rt_priority {rt_priority}\n"
            f"  vrrp_rlimit_rttime {RLIMIT_RTTIME}\n", 1)

    testlab.keepalived_conf = conf


_GET_SLOW = ("import sys, urllib.request\n"
             "with urllib.request.urlopen('http://%s/status' % sys.argv[1], timeout=30) as r:\n"
             "    sys.stdout.write(r.read().decode())\n")


class SoakNode(DaemonNode):
    """``lvsd run`` (full mode, VRRP and checks) with ``vs_text`` after the VRRP config;
    without it ``--vrrp-only`` as DaemonNode."""

    def __init__(self, host: Host, opts: NodeOpts, vs_text: str, dataplane: str) -> None:
        super().__init__(host, opts)
        self.vs_text = vs_text
        self.dataplane = dataplane

    def start(self) -> SoakNode:
        if not self.vs_text:
            super().start()
            return self
        conf = os.path.join(self.workdir, "lvsd.conf")
        with open(conf, "w") as fh:
            fh.write(testlab.keepalived_conf(self.host.name, self.opts) + self.vs_text)
        self.logfile = os.path.join(self.workdir, "lvsd-run.log")
        out = open(self.logfile, "w")  # noqa: SIM115 - handed to the child
        self.proc = self.host.popen(
            [sys.executable, "-m", "lvsd.cli", "run", "-f", conf, "--dataplane", self.dataplane,
             "--status-listen", self.STATUS, "--no-syslog",
             "--pid-file", os.path.join(self.workdir, "lvsd.pid"), "--dump-dir", self.workdir],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        out.close()
        if not wait_for(lambda: self.full_status() or not self.alive(), 120, 0.5):
            raise RuntimeError(f"lvsd run on {self.host.name} did not start:\n{self.log()}")
        return self

    def full_status(self, tries: int = 1) -> dict[str, Any]:
        """The whole ``/status`` document ({} while the daemon does not answer ``tries``
        times; a busy main loop may take seconds to render 10,000 checkers)."""
        for _ in range(tries):
            if not self.alive():
                return {}
            p = self.host.run(sys.executable, "-c", _GET_SLOW, self.STATUS, check=False,
                              timeout=60)
            try:
                data: dict[str, Any] = json.loads(p.stdout) if p.returncode == 0 else {}
            except ValueError:
                data = {}
            if data:
                return data
        return {}


@dataclass
class Figures:
    """What one node looks like at one moment."""

    t: float
    became: int = 0
    released: int = 0
    entering: int = 0  # "Entering X STATE" log lines
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds
    stall: dict[str, float] = field(default_factory=dict)
    over: dict[str, int] = field(default_factory=dict)
    checks: int = 0
    checkers_up: int = 0
    checkers: int = 0
    state: str | None = None


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / HZ


ENTERING = re.compile(r"\(VI_1\) Entering \w+ STATE")


def lvsd_figures(node: SoakNode) -> Figures:
    st = node.full_status(tries=3)
    if not st:
        raise SystemExit(f"no /status from lvsd on {node.host.name}:\n{node.log()[-2000:]}")
    f = Figures(time.monotonic(), entering=len(ENTERING.findall(node.log())))
    inst = next((i for i in st.get("instances", ()) if i.get("name") == "VI_1"), {})
    f.became, f.released = int(inst.get("became_master", 0)), int(inst.get("released_master", 0))
    f.state = inst.get("state")
    proc = st.get("process", {})
    f.stall = dict(proc.get("loop_max_stall", {}))
    f.over = dict(proc.get("loop_stalls_over_threshold", {}))
    assert node.proc is not None
    f.cpu = {"main": cpu_seconds(node.proc.pid), "vrrp": cpu_seconds(proc.get("vrrp_pid"))}
    ck = st.get("checkers", ())
    f.checks = sum(int(c.get("checks_total", 0)) for c in ck)
    f.checkers, f.checkers_up = len(ck), sum(1 for c in ck if c.get("up") is True)
    return f


def ka_figures(node: KeepalivedNode) -> Figures:
    f = Figures(time.monotonic(), entering=len(ENTERING.findall(node.log())))
    f.state = node.state()
    pids = node._pids()  # VRRP child first
    f.cpu = {"vrrp": cpu_seconds(pids[0] if pids else None)}
    return f


class Capture:
    """``tcpdump -tt`` of VRRP in the observer's namespace, to a file."""

    LINE = re.compile(r"^(\d+\.\d+) IP (\S+) > \S+: VRRPv\d, Advertisement, .*prio (\d+)")

    def __init__(self, host: Host, path: str) -> None:
        self.path = path
        self.out = open(path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = host.popen(["tcpdump", "--immediate-mode", "-l", "-nn", "-tt", "-i", "eth0",
                                "ip proto 112"],
                               stdout=self.out, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # capturing

    def stop(self) -> list[tuple[float, str, int]]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        res = []
        with open(self.path) as fh:
            for ln in fh:
                m = self.LINE.match(ln)
                if m:
                    res.append((float(m.group(1)), m.group(2), int(m.group(3))))
        return res


@dataclass
class Wire:
    adverts: int
    from_backup: int
    max_gap: float  # ms
    p999: float
    over2: int  # gaps over 2 intervals
    over3: int  # over 3 intervals
    max_gap_at: float = float("nan")  # wall time of the advert before the longest gap


def wire(adverts: list[tuple[float, str, int]], t0: float, t1: float) -> Wire:
    """The master's adverts between wall times t0 and t1, and the backup's."""
    mine = [t for t, src, _ in adverts if src == MASTER_IP and t0 <= t <= t1]
    at = max(itertools.pairwise(mine), key=lambda p: p[1] - p[0], default=(float("nan"),))[0]
    gaps = sorted((b - a) * 1000 for a, b in itertools.pairwise(mine))
    back = sum(1 for t, src, _ in adverts if src == BACKUP_IP and t0 <= t <= t1)
    p999 = gaps[min(len(gaps) - 1, int(0.999 * len(gaps)))] if gaps else float("nan")
    return Wire(len(mine), back, gaps[-1] if gaps else float("nan"), p999,
                sum(1 for g in gaps if g > 2000 * INTERVAL),
                sum(1 for g in gaps if g > 3000 * INTERVAL), at)


def listener(host: Host) -> subprocess.Popen[str]:
    """The real servers: wildcard TCP listeners in ``host``'s namespace (two processes)."""
    p = host.popen([sys.executable, "-c", SERVER, "tcp", ",".join(map(str, PORTS))],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        raise SystemExit("real-server listener did not start")
    return p


def pair_topology(tag: str) -> tuple[Topology, Host, Host, Host]:
    topo = Topology(tag)
    try:
        a = topo.add_host("a", f"{MASTER_IP}/24")
        b = topo.add_host("b", f"{BACKUP_IP}/24")
        o = topo.add_host("o", "192.0.2.9/24")
    except BaseException:
        topo.close()
        raise
    return topo, a, b, o


def settled(m: Any, bk: Any) -> bool:
    return bool(m.state() == "MASTER" and bk.state() == "BACKUP" and m.has_vip()
                and not bk.has_vip())


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def _log_time(line: str) -> float | None:
    """The wall time of an lvsd log line ("2026-12-03 21:13:01,194 ...")."""
    try:
        t = time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return time.mktime(t) + int(line[20:23]) / 1000 if line[19:20] == "," else None


def _stall(before: Figures, after: Figures, loop: str) -> str:
    b, e = before.stall.get(loop), after.stall.get(loop)
    if e is None:
        return "n/a"
    over = after.over.get(loop, 0) - before.over.get(loop, 0)
    where = f"{e * 1e3:.1f} ms" if b is None or e > b else f"<= {e * 1e3:.1f} ms (start-up)"
    return f"{where}, {over} over threshold in the window"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--servers", type=int, default=10_000)
    ap.add_argument("--dataplane", default="memory", choices=("memory", "nftables"))
    ap.add_argument("--rt-priority", type=int, default=0,
                    help="vrrp_rt_priority for both pairs (0: none, the default)")
    ap.add_argument("--scrape-period", type=float, default=1.0)
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds after settling")
    ap.add_argument("--backup-checks", action="store_true",
                    help="the lvsd backup checks the same real servers too")
    ap.add_argument("--no-peer", action="store_true", help="no keepalived pair")
    a = ap.parse_args()
    base_conf(a.rt_priority)
    raise_nofile()  # the daemon and the listeners inherit it: 10,000 sockets at once
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the topologies are cleaned up
    tmp = tempfile.mkdtemp(prefix="lvsd-soak-")
    opts: dict[str, Any] = dict(advert_int=INTERVAL, version=3, vips=[f"{VIP}/24"],
                                garp_master_delay=0)
    vs_text = vs_config(a.servers, PORTS)
    print(f"soak: {a.minutes:g} min window; VRRP v3 advert_int {INTERVAL} s (Master_Down_Interval"
          f" of the backup {3 * INTERVAL * 1e3 + (156 / 256) * INTERVAL * 1e3:.1f} ms); "
          f"vrrp_rt_priority {a.rt_priority or 'not set'} (both pairs); {os.cpu_count()} CPUs",
          flush=True)
    print(f"  lvsd master: {a.servers} TCP_CHECK at delay_loop 1 s, --dataplane {a.dataplane}, "
          f"/status + /metrics every {a.scrape_period:g} s; lvsd backup: "
          f"{'the same checks' if a.backup_checks else 'VRRP only'}; keepalived pair: "
          f"{'none' if a.no_peer else 'VRRP only (no checks)'}", flush=True)
    topo, ha, hb, ho = pair_topology("lt-soak")
    ktopo = None
    try:
        listener(ha)
        if a.backup_checks:
            listener(hb)
        m = SoakNode(ha, NodeOpts(priority=150, **opts), vs_text, a.dataplane)
        bk = SoakNode(hb, NodeOpts(priority=100, **opts),
                      vs_text if a.backup_checks else "", a.dataplane)
        t_start = time.monotonic()
        m.start()
        bk.start()
        if not wait_for(lambda: settled(m, bk), 120, 0.5):
            raise SystemExit(f"lvsd pair did not settle:\n{m.log()[-3000:]}\n{bk.log()[-2000:]}")

        def verdicts() -> bool:
            st = m.full_status()
            ck = st.get("checkers", ())
            return (st.get("process", {}).get("ready") is True and len(ck) >= a.servers
                    and all(c.get("up") is not None for c in ck))

        if not wait_for(verdicts, 300, 1.0):
            raise SystemExit("the lvsd master's checkers have no verdict after 300 s")
        print(f"  lvsd pair settled, master READY with verdicts after "
              f"{time.monotonic() - t_start:.1f} s", flush=True)
        scraper = ha.popen([sys.executable, "-c", SCRAPER, f"http://{m.STATUS}",
                            str(a.scrape_period)], stdout=subprocess.PIPE, text=True)
        scrape_lines: list[str] = []

        def drain() -> None:
            assert scraper.stdout is not None
            for line in scraper.stdout:
                scrape_lines.append(line)

        threading.Thread(target=drain, daemon=True).start()
        kpair: tuple[KeepalivedNode, KeepalivedNode] | None = None
        kcap = kcap_src = kcap_rx = None
        if not a.no_peer:
            ktopo, ka, kb, ko = pair_topology("lt-soakk")
            km = KeepalivedNode(ka, NodeOpts(priority=150, **opts)).start()
            kbk = KeepalivedNode(kb, NodeOpts(priority=100, **opts)).start()
            kpair = (km, kbk)
            if not wait_for(lambda: settled(km, kbk), 60, 0.2):
                raise SystemExit(f"keepalived pair did not settle:\n{km.log()[-2000:]}")
            kcap = Capture(ko, os.path.join(tmp, "ka-adverts.txt"))
            kcap_src = Capture(ka, os.path.join(tmp, "ka-sent.txt"))
            kcap_rx = Capture(kb, os.path.join(tmp, "ka-received.txt"))
        cap = Capture(ho, os.path.join(tmp, "lvsd-adverts.txt"))
        cap_src = Capture(ha, os.path.join(tmp, "lvsd-sent.txt"))  # as the master sent them
        cap_rx = Capture(hb, os.path.join(tmp, "lvsd-received.txt"))  # as the backup got them
        time.sleep(a.warmup)

        # ---- the window
        load0 = os.getloadavg()
        w0 = time.time()
        f0m, f0b = lvsd_figures(m), lvsd_figures(bk)
        k0 = [ka_figures(n) for n in kpair] if kpair else []
        n_scr0 = len(scrape_lines)
        print(f"  window starts: load avg {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
              f"{f0m.checkers_up}/{f0m.checkers} checkers up", flush=True)
        end = time.monotonic() + a.minutes * 60
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(60.0, left))
            la = os.getloadavg()[0]
            ent = (len(ENTERING.findall(m.log())) + len(ENTERING.findall(bk.log()))
                   - f0m.entering - f0b.entering)
            kent = (sum(len(ENTERING.findall(n.log())) for n in kpair)
                    - sum(f.entering for f in k0)) if kpair else 0
            print(f"  {(time.monotonic() - end) / 60 + a.minutes:5.1f} min: load {la:.2f}; "
                  f"state changes so far: lvsd {ent}, keepalived {kent}", flush=True)
        f1m, f1b = lvsd_figures(m), lvsd_figures(bk)
        k1 = [ka_figures(n) for n in kpair] if kpair else []
        w1 = time.time()
        load1 = os.getloadavg()
        time.sleep(0.2)
        lw = wire(cap.stop(), w0, w1)
        lw_src = wire(cap_src.stop(), w0, w1)
        lw_rx = wire(cap_rx.stop(), w0, w1)
        kw = wire(kcap.stop(), w0, w1) if kcap is not None else None
        kw_src = wire(kcap_src.stop(), w0, w1) if kcap_src is not None else None
        kw_rx = wire(kcap_rx.stop(), w0, w1) if kcap_rx is not None else None
        scraper.terminate()
        scraper.wait(5)
        recs = [json.loads(x) for x in scrape_lines[n_scr0:] if x.strip()]
        ok = [r for r in recs if "error" not in r]

        # ---- figures
        wall = f1m.t - f0m.t
        changes = (f1m.became - f0m.became + f1m.released - f0m.released
                   + f1b.became - f0b.became + f1b.released - f0b.released)
        entering = f1m.entering - f0m.entering + f1b.entering - f0b.entering
        # a backup advertises only as master: that alone is one, if nothing else said so
        false_lvsd = max(changes, entering) or (1 if lw.from_backup else 0)
        print(f"window: {wall / 60:.2f} min; load avg at start {load0[0]:.2f} {load0[1]:.2f} "
              f"{load0[2]:.2f}, at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
        print(f"lvsd       false failovers {false_lvsd}  (state changes: counters {changes}, "
              f"log lines {entering}; adverts from the backup {lw.from_backup}; states now "
              f"{f1m.state}/{f1b.state})")
        print(f"lvsd       master adverts {lw.adverts} ({lw.adverts / wall:.1f}/s), longest gap "
              f"{lw.max_gap:.1f} ms, p99.9 {lw.p999:.1f} ms, gaps > 40 ms {lw.over2}, "
              f"> 60 ms {lw.over3} (observer); as sent (capture in the master's namespace): "
              f"longest {lw_src.max_gap:.1f} ms, > 60 ms {lw_src.over3}; as received (backup's "
              f"namespace): longest {lw_rx.max_gap:.1f} ms, > 60 ms {lw_rx.over3}")
        print(f"lvsd       longest loop stall: main {_stall(f0m, f1m, 'main')}; "
              f"vrrp {_stall(f0m, f1m, 'vrrp')}")
        cpu_main = (f1m.cpu["main"] - f0m.cpu["main"]) / wall * 100
        cpu_vrrp = (f1m.cpu["vrrp"] - f0m.cpu["vrrp"]) / wall * 100
        print(f"lvsd       master CPU (one core): main {cpu_main:.1f} %, VRRP child "
              f"{cpu_vrrp:.1f} %; checks {(f1m.checks - f0m.checks) / wall:.0f}/s, "
              f"{f1m.checkers_up}/{f1m.checkers} up at the end; backup VRRP child "
              f"{(f1b.cpu['vrrp'] - f0b.cpu['vrrp']) / wall * 100:.1f} %")
        if recs:
            st_ms = [r["status_ms"] for r in ok]
            mt_ms = [r["metrics_ms"] for r in ok]
            print(f"lvsd       scrapes {len(recs)} ({len(recs) - len(ok)} failed): /status p50 "
                  f"{_pct(st_ms, 50):.0f} ms max {max(st_ms, default=float('nan')):.0f} ms, "
                  f"/metrics p50 {_pct(mt_ms, 50):.0f} ms max "
                  f"{max(mt_ms, default=float('nan')):.0f} ms")
        if kpair and kw is not None:
            kent = sum(f.entering for f in k1) - sum(f.entering for f in k0)
            kfalse = kent or (1 if kw.from_backup else 0)
            kcpu = (k1[0].cpu["vrrp"] - k0[0].cpu["vrrp"]) / wall * 100
            print(f"keepalived false failovers {kfalse}  (log lines {kent}; adverts from the "
                  f"backup {kw.from_backup}; states now {k1[0].state}/{k1[1].state})")
            print(f"keepalived master adverts {kw.adverts} ({kw.adverts / wall:.1f}/s), longest "
                  f"gap {kw.max_gap:.1f} ms, p99.9 {kw.p999:.1f} ms, gaps > 40 ms {kw.over2}, "
                  f"> 60 ms {kw.over3} (observer); as sent: longest "
                  f"{kw_src.max_gap if kw_src else float('nan'):.1f} ms; as received: longest "
                  f"{kw_rx.max_gap if kw_rx else float('nan'):.1f} ms; master VRRP process "
                  f"CPU {kcpu:.1f} % (no checks)")
            print(f"ratio lvsd/keepalived longest advert gap {lw.max_gap / kw.max_gap:.2f}; "
                  f"false failovers {false_lvsd} vs {kfalse}")
        stalls = [ln for ln in (m.log() + bk.log()).splitlines() if "was blocked" in ln]
        if stalls:
            print(f"lvsd stall log lines ({len(stalls)}), last: {stalls[-1]}")
        if lw.max_gap > 3000 * INTERVAL:
            stamp = time.strftime("%H:%M:%S", time.localtime(lw.max_gap_at))
            print(f"lvsd longest gap after the advert at {stamp}"
                  f"{lw.max_gap_at % 1:.3f}; log lines within 2 s:")
            for node in (m, bk):
                for ln in node.log().splitlines():
                    lt = _log_time(ln)
                    if lt is not None and abs(lt - lw.max_gap_at) < 2:
                        print("   ", node.host.name, ln)
        if false_lvsd:
            print("lvsd log around the state changes:")
            for node in (m, bk):
                for ln in node.log().splitlines():
                    if "STATE" in ln or "blocked" in ln or "timeout" in ln.lower():
                        print("   ", node.host.name, ln)
        return 1 if false_lvsd else 0
    finally:
        for t in (ktopo, topo):
            if t is not None:
                t.close()
        with contextlib.suppress(OSError):
            for fn in os.listdir(tmp):
                os.unlink(os.path.join(tmp, fn))
            os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
