"""VRRP failover time: lvsd pair vs keepalived pair, same topology, same run.

    sudo .venv/bin/python bench/failover.py [--trials N] [--intervals 1:2,0.1:3,0.05:3]
                                            [--faults kill,term,linkdown]

The lvsd pair is what ships, ``lvsd run --vrrp-only`` (``testlab.DaemonNode``, tests/support),
and keepalived runs VRRP-only; both read the same keepalived.conf (``testlab.keepalived_conf``).

For each implementation, advert interval/version and fault, N trials of: a master (priority
150, host a) and a backup (priority 100, host b) settle; after a random phase the fault is
injected on the master (SIGKILL of the daemon, SIGTERM = graceful stop with priority 0, or the
master's eth0 set down). Two times per trial, both ending when the VIP appears on the backup's
interface (``ip -ts monitor address`` in its namespace; the new master sends its gratuitous
ARPs right after adding it):

* ``inject``: from the fault injection -- what a client sees; for SIGKILL/link-down it depends
  on where in the advert interval the fault fell, so compare means over many trials;
* ``adv``: from the last advert the backup captured from the master (``tcpdump -tt`` in the
  backup's namespace; for SIGTERM the priority-0 advert) -- what the RFC bound is about, phase
  independent: bound = Master_Down_Interval (kill, link-down) or Skew_Time (SIGTERM).

All stamps are kernel/wall-clock microsecond stamps taken in the namespaces.

RFC bounds for the backup (priority 100): Master_Down_Interval = 3 × interval + Skew_Time for
SIGKILL and link-down (the last advert was up to one interval earlier, so the mean is about
half an interval below the bound), Skew_Time for SIGTERM (RFC 5798 §6.4.2: priority 0).
v2 Skew_Time = (256 - 100)/256 s; v3 Skew_Time = (256 - 100)/256 × interval.

Prints one line per (interval, fault, implementation) and the lvsd/keepalived ratio of means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, Topology

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from testlab import DaemonNode, KeepalivedNode, NodeOpts, wait_for

VIP = "192.0.2.100"
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)")


def rfc_bound(fault: str, interval: float, version: int, prio: int = 100) -> float:
    skew = (256 - prio) / 256 * (1.0 if version == 2 else interval)
    return skew if fault == "term" else 3 * interval + skew


class AdvertCapture:
    """``tcpdump -tt`` of VRRP in ``host``: stamps of adverts from ``src``."""

    LINE = re.compile(r"^(\d+\.\d+) IP (\S+) > \S+: VRRPv\d, Advertisement, .*prio (\d+)")

    def __init__(self, host: Host) -> None:
        self.proc = subprocess.Popen(
            host.cmd("timeout", "60", "tcpdump", "-l", "-nn", "-tt", "-i", "eth0", "ip proto 112"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)  # tcpdump is capturing

    def stop(self) -> list[tuple[float, str, int]]:
        time.sleep(0.05)
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        res = []
        for ln in out.splitlines():
            m = self.LINE.match(ln)
            if m:
                res.append((float(m.group(1)), m.group(2), int(m.group(3))))
        return res


class VipWatch:
    """``ip -ts monitor address`` in ``host``: the wall-clock time the VIP was added."""

    def __init__(self, host: Host) -> None:
        self.proc = subprocess.Popen(host.cmd("ip", "-ts", "monitor", "address"),
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        time.sleep(0.05)  # let it subscribe

    def wait_added(self, timeout: float) -> float | None:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        import select

        while time.monotonic() < end:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not r:
                continue
            line = self.proc.stdout.readline()
            if not line:
                return None
            if f" {VIP}/" in line and "Deleted" not in line:
                m = STAMP.match(line)
                if m:
                    return dt.datetime.fromisoformat(m.group(1)).timestamp()
        return None

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(Exception):
            self.proc.wait(2)


def trial(topo: Topology, impl: str, interval: float, version: int, fault: str
          ) -> tuple[float, float | None] | None:
    """(from injection, from the last advert heard) in seconds, or None on failure."""
    a, b = topo["a"], topo["b"]
    cls: Any = DaemonNode if impl == "lvsd" else KeepalivedNode
    o: dict[str, Any] = dict(advert_int=interval, version=version, vips=[f"{VIP}/24"],
                             garp_master_delay=0)
    m = cls(a, NodeOpts(priority=150, **o)).start()
    bk = cls(b, NodeOpts(priority=100, **o)).start()
    watch = cap = None
    try:
        ok = wait_for(lambda: m.state() == "MASTER" and bk.state() == "BACKUP"
                      and m.has_vip() and not bk.has_vip(), 30)
        if not ok:
            print(f"  {impl}: pair did not settle", file=sys.stderr)
            return None
        watch = VipWatch(b)
        cap = AdvertCapture(b)
        time.sleep(2 * interval + random.uniform(0, interval))  # arbitrary phase
        t0 = time.time()
        if fault == "kill":
            m.kill()
        elif fault == "term":
            assert m.proc is not None
            m.proc.send_signal(signal.SIGTERM)
        else:
            a.link(False)
        t1 = watch.wait_added(10 + 4 * interval)
        if t1 is None:
            return None
        adverts = [t for t, src, prio in cap.stop() if src == "192.0.2.1" and t < t1
                   and (prio == 0 if fault == "term" else True)]
        return t1 - t0, (t1 - adverts[-1]) if adverts else None
    finally:
        if cap is not None and cap.proc.poll() is None:
            cap.proc.kill()
        if watch is not None:
            watch.close()
        if fault == "linkdown":
            a.link(True)
        for n in (m, bk):
            n.stop()  # a no-op for a node that is already gone
        for h in (a, b):
            h.run("ip", "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)


def _fmt(xs: list[float]) -> str:
    return f"{statistics.mean(xs):7.1f} [{min(xs):.1f}-{max(xs):.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--intervals", default="1:2,0.1:3,0.05:3",
                    help="comma list of INTERVAL:VERSION")
    ap.add_argument("--faults", default="kill,term,linkdown")
    ap.add_argument("--impls", default="lvsd,keepalived")
    a = ap.parse_args()
    pairs = [(float(x.split(":")[0]), int(x.split(":")[1])) for x in a.intervals.split(",")]
    faults = a.faults.split(",")
    impls = a.impls.split(",")
    print(f"trials={a.trials}  times in ms: mean [min-max]; inject = from the fault, "
          f"adv = from the last advert heard; bound = RFC bound for adv")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the topology is cleaned up
    with Topology("lt-bench") as topo:
        topo.add_host("a", "192.0.2.1/24")
        topo.add_host("b", "192.0.2.2/24")
        for interval, version in pairs:
            for fault in faults:
                bound = rfc_bound(fault, interval, version) * 1000
                means: dict[str, dict[str, float]] = {"adv": {}, "inject": {}}
                for impl in impls:
                    inj: list[float] = []
                    adv: list[float] = []
                    for _ in range(a.trials):
                        r = trial(topo, impl, interval, version, fault)
                        if r is not None:
                            inj.append(r[0] * 1000)
                            if r[1] is not None:
                                adv.append(r[1] * 1000)
                    if not inj:
                        print(f"v{version} {interval:g}s {fault:8} {impl:10} no result")
                        continue
                    means["inject"][impl] = statistics.mean(inj)
                    if adv:
                        means["adv"][impl] = statistics.mean(adv)
                    line = (f"v{version} {interval:g}s {fault:8} {impl:10} inject {_fmt(inj)}"
                            f"  adv {_fmt(adv) if adv else 'n/a'}  bound {bound:.1f}")
                    if adv:
                        line += f"  adv max-bound {max(adv) - bound:+.1f}"
                    print(line + f"  n={len(inj)}", flush=True)
                # the same kind of time for both (adv when both have it), never adv vs inject
                for kind in ("adv", "inject"):
                    mk = means[kind]
                    if "lvsd" in mk and "keepalived" in mk:
                        print(f"v{version} {interval:g}s {fault:8} ratio lvsd/keepalived "
                              f"({kind} means) {mk['lvsd'] / mk['keepalived']:.3f}", flush=True)
                        break
    return 0


if __name__ == "__main__":
    sys.exit(main())
