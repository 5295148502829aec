"""VRRP failover time: lvsd pair vs keepalived pair, same topology, same run.

    sudo .venv/bin/python bench/failover.py [--trials N] [--intervals 1:2,0.1:3,0.05:3]
                                            [--faults kill,term,linkdown] [--rt-priority N]
    sudo .venv/bin/python bench/failover.py --intervals 0.02:3 --trials 10 --rt-priority 50

The lvsd pair is what ships, ``lvsd run --vrrp-only`` (``testlab.DaemonNode``, tests/support),
and keepalived runs VRRP-only; both read the same keepalived.conf (``testlab.keepalived_conf``).

For each implementation, advert interval/version and fault, N trials of: a master (priority
150, host a) and a backup (priority 100, host b) settle; after a random phase the fault is
injected on the master (SIGKILL of the daemon, SIGTERM = graceful stop with priority 0, or the
master's eth0 set down). The two implementations take turns trial by trial (lvsd first on
even trials, keepalived first on odd ones), so that a change in the machine's load during the
run weighs on both alike. Two times per trial, both ending when the new master's first
gratuitous ARP for the VIP leaves (``tcpdump`` in the backup's namespace: a kernel stamp; both
implementations send it right after adding the VIP). ``ip -ts monitor address`` (stamped when
that process gets to run: tens of ms late on a loaded machine) is only the fallback, and
detects a takeover before the fault:

* ``inject``: from the fault injection -- what a client sees; for SIGKILL/link-down it depends
  on where in the advert interval the fault fell, so compare means over many trials. For
  link-down the injection time is the kernel's report of eth0 going down (``ip -ts monitor
  link`` in the master's namespace), not the start of the ``ip link set`` command (which on a
  loaded machine takes tens of ms to start);
* ``adv``: from the last advert the backup captured from the master (``tcpdump -tt`` in the
  backup's namespace; for SIGTERM the priority-0 advert) -- what the RFC bound is about, phase
  independent: bound = Master_Down_Interval (kill, link-down) or Skew_Time (SIGTERM).

All stamps are kernel/wall-clock microsecond stamps taken in the namespaces.

A backup that takes the VIP *before* the fault (its down timer expired while the master was
still running: an advert late by more than Skew_Time + 3 intervals, e.g. a process starved by
the machine's load) is a false takeover: the trial is not timed and the count is printed
(``false``) per implementation.

``--rt-priority N`` puts ``vrrp_rt_priority N`` into ``global_defs`` for both implementations
(keepalived's keyword, which lvsd reads too: SCHED_RR for the VRRP process), with
``vrrp_rlimit_rttime 200000`` (lvsd's default; keepalived's 10,000 us got its VRRP child
SIGKILLed at start on this machine, "has rlimit_rttime been exceeded?", which the backup saw
as a dead master). At 20 ms adverts on
a loaded machine the scheduler's latency is a large part of the figure; with real-time
priority both measure their own work, not the other programs on the machine. The header says
which was used; the load average is printed on every line.

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
import os
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, Topology

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
import testlab
from testlab import DaemonNode, KeepalivedNode, NodeOpts, wait_for

VIP = "192.0.2.100"
RLIMIT_RTTIME = 200_000  # us, with --rt-priority (lvsd's default, for both)
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)")


def rfc_bound(fault: str, interval: float, version: int, prio: int = 100) -> float:
    skew = (256 - prio) / 256 * (1.0 if version == 2 else interval)
    return skew if fault == "term" else 3 * interval + skew


class AdvertCapture:
    """``tcpdump -tt`` of VRRP and ARP in ``host``: (stamp, source, priority) of the adverts
    and the stamps of the gratuitous ARPs for the VIP (priority -1, source the VIP)."""

    LINE = re.compile(r"^(\d+\.\d+) IP (\S+) > \S+: VRRPv\d, Advertisement, .*prio (\d+)")
    GARP = re.compile(r"^(\d+\.\d+) ARP, (?:Request who-has|Reply) " + re.escape(VIP) + r"\b")

    def __init__(self, host: Host) -> None:
        self.proc = subprocess.Popen(
            # --immediate-mode: without it the last packets (the ones that matter) are still in
            # a capture block that tcpdump drops at SIGINT
            host.cmd("timeout", "60", "tcpdump", "--immediate-mode", "-l", "-nn", "-tt", "-i",
                     "eth0", "ip proto 112 or arp"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)  # tcpdump is capturing

    def stop(self) -> list[tuple[float, str, int]]:
        time.sleep(0.05)
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        res = []
        for ln in out.splitlines():
            if m := self.LINE.match(ln):
                res.append((float(m.group(1)), m.group(2), int(m.group(3))))
            elif g := self.GARP.match(ln):
                res.append((float(g.group(1)), VIP, -1))
        return res


class Monitor:
    """``ip -ts monitor OBJECT`` in ``host``: wall-clock stamps of the lines ``match`` accepts."""

    def __init__(self, host: Host, obj: str, match: Callable[[str], bool]) -> None:
        self.match = match
        self.proc = subprocess.Popen(host.cmd("ip", "-ts", "monitor", obj),
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        time.sleep(0.05)  # let it subscribe

    def next_stamp(self, timeout: float) -> float | None:
        """The stamp of the next matching line, None after ``timeout`` s."""
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not r:
                continue
            line = self.proc.stdout.readline()
            if not line:
                return None
            if self.match(line):
                m = STAMP.match(line)
                if m:
                    return dt.datetime.fromisoformat(m.group(1)).timestamp()
        return None

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)


def vip_added(line: str) -> bool:
    return f" {VIP}/" in line and "Deleted" not in line


def eth0_down(line: str) -> bool:
    return ": eth0" in line and ",UP" not in line and "Deleted" not in line


def with_rt_priority(prio: int) -> None:
    """``vrrp_rt_priority PRIO`` and ``vrrp_rlimit_rttime`` in global_defs of every config the
    nodes write (both implementations read testlab.keepalived_conf)."""
    base = testlab.keepalived_conf

    def conf(name: str, o: NodeOpts) -> str:
        return base(name, o).replace("global_defs {\n",
                                     f"global_defs {{\n  vrrp_rt_priority {prio}\n"
                                     f"  vrrp_rlimit_rttime {RLIMIT_RTTIME}\n", 1)

    testlab.keepalived_conf = conf


def trial(topo: Topology, impl: str, interval: float, version: int, fault: str
          ) -> tuple[float, float | None] | str:
    """(from injection, from the last advert heard) in seconds, or why there is none
    ("false": the backup took over before the fault)."""
    a, b = topo["a"], topo["b"]
    cls: Any = DaemonNode if impl == "lvsd" else KeepalivedNode
    o: dict[str, Any] = dict(advert_int=interval, version=version, vips=[f"{VIP}/24"],
                             garp_master_delay=0)
    m = cls(a, NodeOpts(priority=150, **o))
    bk = cls(b, NodeOpts(priority=100, **o))
    watch = cap = link = None
    try:
        try:
            m.start()
            bk.start()
        except RuntimeError as exc:  # a start slower than testlab's 20 s on a loaded machine
            print(f"  {impl}: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
            return "did not start"
        ok = wait_for(lambda: m.state() == "MASTER" and bk.state() == "BACKUP"
                      and m.has_vip() and not bk.has_vip(), 30)
        if not ok:
            return "pair did not settle"
        watch = Monitor(b, "address", vip_added)
        cap = AdvertCapture(b)
        if fault == "linkdown":
            link = Monitor(a, "link", eth0_down)
        time.sleep(2 * interval + random.uniform(0, interval))  # arbitrary phase
        t0 = time.time()
        if fault == "kill":
            m.kill()
        elif fault == "term":
            assert m.proc is not None
            m.proc.send_signal(signal.SIGTERM)
        else:
            a.link(False)
            assert link is not None
            t0 = link.next_stamp(10) or t0
        t1 = watch.next_stamp(10 + 4 * interval)
        if t1 is not None and t1 < t0:  # the backup added the VIP before the fault
            print(f"  {impl}: false takeover {(t0 - t1) * 1000:.1f} ms before the fault; "
                  f"logs:\n--- master\n{_tail(m.log())}\n--- backup\n{_tail(bk.log())}",
                  file=sys.stderr, flush=True)
            return "false"
        if t1 is None:
            return "no takeover"
        pkts = cap.stop()
        # the end: the new master's first gratuitous ARP for the VIP (a kernel stamp, sent
        # right after the add by both implementations); `ip monitor`'s stamp (taken when that
        # process gets to run) only if none was captured
        t1 = next((t for t, _, prio in pkts if prio == -1 and t >= t0), t1)
        adverts = [t for t, src, prio in pkts if src == "192.0.2.1" and t < t1
                   and (prio == 0 if fault == "term" else prio >= 0)]
        return t1 - t0, (t1 - adverts[-1]) if adverts else None
    finally:
        if cap is not None and cap.proc.poll() is None:
            cap.proc.kill()
        for mon in (watch, link):
            if mon is not None:
                mon.close()
        if fault == "linkdown":
            a.link(True)
        for n in (m, bk):
            if n.proc is not None:  # started (a no-op for one that is already gone)
                n.stop()
        for h in (a, b):
            h.run("ip", "addr", "del", f"{VIP}/24", "dev", "eth0", check=False)


def _tail(log: str, n: int = 15) -> str:
    return "\n".join(log.splitlines()[-n:])


def _fmt(xs: list[float]) -> str:
    return f"{statistics.mean(xs):7.1f} [{min(xs):.1f}-{max(xs):.1f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--intervals", default="1:2,0.1:3,0.05:3",
                    help="comma list of INTERVAL:VERSION")
    ap.add_argument("--faults", default="kill,term,linkdown")
    ap.add_argument("--impls", default="lvsd,keepalived")
    ap.add_argument("--rt-priority", type=int, default=0,
                    help="vrrp_rt_priority for both implementations (0: none, the default)")
    a = ap.parse_args()
    pairs = [(float(x.split(":")[0]), int(x.split(":")[1])) for x in a.intervals.split(",")]
    faults = a.faults.split(",")
    impls = a.impls.split(",")
    if a.rt_priority:
        with_rt_priority(a.rt_priority)
    print(f"trials={a.trials}  times in ms: mean [min-max]; inject = from the fault, "
          f"adv = from the last advert heard; bound = RFC bound for adv; vrrp_rt_priority "
          f"{a.rt_priority or 'not set'} (both); {os.cpu_count()} CPUs", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the topology is cleaned up
    with Topology("lt-bench") as topo:
        topo.add_host("a", "192.0.2.1/24")
        topo.add_host("b", "192.0.2.2/24")
        for interval, version in pairs:
            for fault in faults:
                bound = rfc_bound(fault, interval, version) * 1000
                inj: dict[str, list[float]] = {i: [] for i in impls}
                adv: dict[str, list[float]] = {i: [] for i in impls}
                bad: dict[str, Counter[str]] = {i: Counter() for i in impls}
                loads: list[float] = []
                for k in range(a.trials):
                    for impl in (impls if k % 2 == 0 else impls[::-1]):  # take turns
                        loads.append(os.getloadavg()[0])
                        r = trial(topo, impl, interval, version, fault)
                        if isinstance(r, str):
                            bad[impl][r] += 1
                            continue
                        inj[impl].append(r[0] * 1000)
                        if r[1] is not None:
                            adv[impl].append(r[1] * 1000)
                load = f"load {min(loads):.1f}-{max(loads):.1f}"
                means: dict[str, dict[str, float]] = {"adv": {}, "inject": {}}
                for impl in impls:
                    fails = " ".join(f"{why.replace(' ', '-')}={n}"
                                     for why, n in sorted(bad[impl].items()))
                    if not inj[impl]:
                        print(f"v{version} {interval:g}s {fault:8} {impl:10} no result  "
                              f"{fails}  {load}", flush=True)
                        continue
                    means["inject"][impl] = statistics.mean(inj[impl])
                    if adv[impl]:
                        means["adv"][impl] = statistics.mean(adv[impl])
                    av = adv[impl]
                    line = (f"v{version} {interval:g}s {fault:8} {impl:10} inject "
                            f"{_fmt(inj[impl])}  adv {_fmt(av) if av else 'n/a'}  "
                            f"bound {bound:.1f}")
                    if av:
                        line += f"  adv max-bound {max(av) - bound:+.1f}"
                    print(line + f"  n={len(inj[impl])} {fails}  {load}".rstrip(), flush=True)
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
