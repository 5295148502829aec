"""Director failure to route withdrawn at the router: BGP (hold timer, BFD) vs VRRP failover.

    sudo .venv/bin/python bench/bgp_failover.py [--trials N] [--speaker lvsd|hand]
                                                [--faults poweroff,term] [--no-vrrp]

The BGP lab is ``tests/support/bgplab.py`` (host namespaces): a router running BIRD 2 with
ECMP and two directors announcing the VIP. The speaker on the directors is ``lvsd run`` with
its ``bgp_speaker``/``bgp_announce`` blocks (``--speaker lvsd``, the default; memory data plane:
no traffic is needed) or BIRD configured by hand (``--speaker hand``: the floor, what BIRD
alone does). Per setting (BGP hold timer 3 s, keepalive 1 s; the same with BFD 100 ms x 3) and
fault, N trials of: both directors announce; after a random phase director d1 fails; the time
ends when the router's kernel route to the VIP no longer goes through d1 (``ip -o -ts monitor
route`` in the router's namespace, wall-clock microsecond stamps, as ``bench/failover.py``).

Faults: ``poweroff`` = the director's link cut, then every process of it stopped and killed
(nothing can react: no BGP Cease, no BFD Down, no FIN of a closed socket; the router's hold
timer or BFD detection must notice), ``term`` =
SIGTERM of the speaker (lvsd: withdraw, then BIRD's Cease; hand: BIRD's Cease).

The VRRP figures come from ``bench/failover.py``'s trial (an ``lvsd run --vrrp-only`` pair,
time from the fault to the VIP on the backup) in the same run, advert 1 s (v2) and 0.1 s (v3),
faults SIGKILL (``kill``) and SIGTERM. The table pairs hold-timer BGP with 1 s VRRP and BFD
with 0.1 s VRRP (detection budgets of the same order: 3 x 1 s, 3 x 100 ms) and prints the
ratios of the means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))
sys.path.insert(0, str(HERE))
import bgplab  # noqa: E402
from bgplab import VIP, BgpLab  # noqa: E402
from lvsd.lab.netns import Host, Topology  # noqa: E402

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\]\s*(.*)$")
VIA = re.compile(r"\bvia (\d+\.\d+\.\d+\.\d+)")


class RouteWatch:
    """``ip -o -ts monitor route`` in the router: when the VIP's route stops using ``addr``."""

    def __init__(self, router: Host) -> None:
        self.proc = subprocess.Popen(router.cmd("ip", "-o", "-ts", "monitor", "route"),
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        time.sleep(0.1)  # let it subscribe

    def wait_without(self, addr: str, timeout: float) -> float | None:
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not r:
                continue
            line = self.proc.stdout.readline()
            if not line:
                return None
            m = STAMP.match(line)
            if not m:
                continue
            rest = m.group(2)
            deleted = rest.startswith("Deleted ")
            words = rest.removeprefix("Deleted ").split()
            if not words or words[0] not in (VIP, f"{VIP}/32"):
                continue
            if deleted or addr not in VIA.findall(rest):
                return dt.datetime.fromisoformat(m.group(1)).timestamp()
        return None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _bfd_up(lab: BgpLab) -> bool:
    assert lab.router_bird is not None
    out = lab.router_bird.birdc("show", "bfd", "sessions")
    return sum(1 for ln in out.splitlines() if " Up " in f" {ln} ") >= len(lab.director_names)


def _start(lab: BgpLab, name: str, speaker: str) -> None:
    lab.revive_director(name)
    if speaker == "hand":
        lab.start_hand_speaker(name)
    else:
        node = lab.lvsd.get(name) or lab.lvsd_director(name, "memory", rise_delay=0)
        node.start()


def bgp_trial(lab: BgpLab, speaker: str, fault: str) -> float | None:
    """Seconds from the fault on d1 to the router's route without d1, or None."""
    for d in lab.director_names:
        alive = (lab.speakers[d].alive() if speaker == "hand" and d in lab.speakers
                 else speaker == "lvsd" and d in lab.lvsd and lab.lvsd[d].alive())
        if not alive:
            _start(lab, d, speaker)
    if not lab.wait_nexthops(lab.director_names, 60):
        print(f"  directors not announcing: {lab.nexthops()}\n{lab.logs()}", file=sys.stderr)
        return None
    if lab.bfd and not bgplab._wait(lambda: _bfd_up(lab), 30, 0.2):
        print("  BFD sessions not up", file=sys.stderr)
        return None
    watch = RouteWatch(lab.host("router"))
    try:
        time.sleep(1 + random.uniform(0, 1))  # an arbitrary phase against the keepalives
        t0 = time.time()
        if fault == "poweroff":
            pids = [lab.lvsd["d1"].proc.pid] if speaker == "lvsd" and lab.lvsd["d1"].proc \
                else []
            lab.kill_director("d1", *pids)
        elif speaker == "hand":
            proc = lab.speakers["d1"].proc
            assert proc is not None
            proc.send_signal(signal.SIGTERM)
        else:
            lab.lvsd["d1"].signal(signal.SIGTERM)
        t1 = watch.wait_without(lab.addr["d1"], 30)
        return None if t1 is None else t1 - t0
    finally:
        watch.close()
        if speaker == "lvsd":
            lab.lvsd["d1"].wait_exit(30)
        else:
            lab.speakers["d1"].stop()


def vrrp_trials(trials: int, fault: str, interval: float, version: int) -> list[float]:
    from failover import trial  # bench/failover.py: one lvsd VRRP pair trial

    out: list[float] = []
    with Topology("lt-bgpbv") as topo:
        topo.add_host("a", "192.0.2.1/24")
        topo.add_host("b", "192.0.2.2/24")
        for _ in range(trials):
            r = trial(topo, "lvsd", interval, version, fault)
            if r is not None:
                out.append(r[0])
    return out


def _fmt(xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return f"{statistics.mean(ms):8.1f} [{min(ms):.1f}-{max(ms):.1f}] n={len(ms)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--speaker", choices=("lvsd", "hand"), default="lvsd")
    ap.add_argument("--faults", default="poweroff,term")
    ap.add_argument("--no-vrrp", action="store_true", help="skip the VRRP reference")
    a = ap.parse_args()
    why = bgplab.missing_bird()
    if why:
        print(why, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the namespaces are removed
    faults = a.faults.split(",")
    bgp: dict[tuple[str, str], list[float]] = {}
    for setting, bfd in (("hold 3s", False), ("BFD 100ms x3", True)):
        for fault in faults:
            with BgpLab(2, 2, hold=3, bfd=bfd, bfd_interval_ms=100, tag="lt-bgpb") as lab:
                lab.build()
                xs = [x for _ in range(a.trials)
                      if (x := bgp_trial(lab, a.speaker, fault)) is not None]
            bgp[(setting, fault)] = xs
            print(f"BGP  {setting:<13} {fault:<9} speaker {a.speaker:<5} "
                  f"{_fmt(xs) if xs else 'no result'}", flush=True)
    vrrp: dict[tuple[str, str], list[float]] = {}
    if not a.no_vrrp:
        for setting, interval, version in (("advert 1s", 1.0, 2), ("advert 0.1s", 0.1, 3)):
            for fault in faults:
                vfault = "kill" if fault == "poweroff" else "term"
                xs = vrrp_trials(a.trials, vfault, interval, version)
                vrrp[(setting, fault)] = xs
                print(f"VRRP {setting:<13} {vfault:<9} lvsd pair     "
                      f"{_fmt(xs) if xs else 'no result'}", flush=True)
    print("\nms, mean [min-max]: fault on d1 -> router's route without d1 (BGP) / VIP on the "
          "backup (VRRP)")
    for (bset, vset) in (("hold 3s", "advert 1s"), ("BFD 100ms x3", "advert 0.1s")):
        for fault in faults:
            b, v = bgp.get((bset, fault)), vrrp.get((vset, fault))
            line = f"{fault:<9} BGP {bset:<13} {_fmt(b) if b else 'n/a':<30}"
            if v:
                line += f" VRRP {vset:<12} {_fmt(v):<30}"
                if b:
                    line += f" ratio BGP/VRRP {statistics.mean(b) / statistics.mean(v):.2f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
