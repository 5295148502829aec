"""Active-active DR directors on kernel IPVS with ``mh``: a director's power loss costs only its
own share, and flows the router's ECMP re-hash moves keep their real server (issue 15).

The lab is ``tests/support/bgplab.py`` in DR mode, inside the VM: a router running BIRD 2 (ECMP
over every director announcing the VIP, L4 hash), three directors each running ``lvsd run
--dataplane ipvs`` (``lb_algo mh`` with ``mh-port``, ``lb_kind DR``, a ``bgp_announce`` of the
VIP), three real servers holding the VIP on ``lo`` (arp_ignore/arp_announce) with their default
route via the router, and a client holding 60 TCP flows.

Why the flows survive: the real server a flow gets is Maglev's choice from the flow's address
and port over the same set of real servers, so every director picks the same one; lvsd sets
``net.ipv4.vs.sloppy_tcp=1`` (a director that receives a flow mid-connection schedules it
instead of dropping a non-SYN packet). Linux's ECMP is hash-threshold: removing one of three
nexthops also moves part of a surviving director's flows to the other survivor.

Scenario: all three announce; the flows spread over all of them. Director d1 (the first
nexthop: its loss moves a part of d2's flows to d3) loses power: its link is cut, then every
process killed (no Cease: the router's hold timer withdraws it). Once the route is gone every
flow is asked again, and each is classified by the director that carried it before and after.
Asserted: every flow d2 and d3 carried still works on its real server, including those that
moved between them (at least one did); d1's own flows are counted (they reach d2/d3 after the
withdrawal and, with ``mh``, their real server: re-homed, or lost when TCP gave up).
Figures go to ``$LVSD_VM_OUT/bgp_mh.report``. Bounded waits only.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import pytest

import bgplab
from bgplab import BgpLab

FLOWS = 60
WAIT = 240.0  # software emulation, three lvsd + four BIRD


def _sysctl(lab: BgpLab, host: str, key: str) -> str:
    return lab.host(host).run("sysctl", "-n", key, check=False).stdout.strip()


@pytest.mark.timeout(1200)
def test_director_power_loss_mh_keeps_other_directors_flows() -> None:
    report: list[str] = []
    lab = BgpLab(3, 3, mode="dr", tag="lt-bgpm")
    try:
        t0 = time.monotonic()
        lab.build()
        for d in lab.director_names:  # started together: each start is slow under emulation
            lab.lvsd_director(d, "ipvs").launch()
        for d in lab.director_names:
            lab.lvsd[d].wait_ready(timeout=WAIT)
        t1 = time.monotonic()
        assert lab.wait_nexthops(lab.director_names, WAIT), (lab.nexthops(), lab.logs())
        report.append(f"lab built {t1 - t0:.0f} s after start, three lvsd ready; all three "
                      f"announced {time.monotonic() - t1:.0f} s later")
        for d in lab.director_names:
            assert _sysctl(lab, d, "net.ipv4.vs.sloppy_tcp") == "1", lab.lvsd[d].log()
            lo = lab.host(d).run("ip", "-o", "addr", "show", "dev", "lo").stdout
            assert f" {bgplab.VIP}/32 " in lo, lo

        opened = lab.open_flows(FLOWS, timeout=30)
        assert len(opened) == FLOWS, lab.open_errors
        before = lab.round(timeout=20)
        assert before.count("ok") == FLOWS, collections.Counter(before.state.values())
        per = before.by_director()
        spread = {str(d): len(f) for d, f in per.items()}
        report.append(f"flows per director: {dict(sorted(spread.items()))}")
        assert set(per) == set(lab.director_names), per

        node = lab.lvsd["d1"]
        assert node.proc is not None
        t2 = time.monotonic()
        lab.kill_director("d1", node.proc.pid)
        node.wait_exit()
        assert lab.wait_nexthops(["d2", "d3"], WAIT), (lab.nexthops(), lab.logs())
        report.append(f"d1's route withdrawn at the router {time.monotonic() - t2:.1f} s after "
                      "its power loss (hold time 3 s)")
        proto = lab.router_protocol("d1")
        assert "Hold timer expired" in proto, proto

        after = lab.round(timeout=20)
        for _ in range(6):  # d1's flows retransmit into the new route: let them settle
            if after.count("stalled") == 0:
                break
            after = lab.round(timeout=20)

        c: collections.Counter[str] = collections.Counter()
        moved_between_survivors = []
        for fid, d0 in before.director.items():
            d1, st = after.director.get(fid), after.state[fid]
            same = st == "ok" and after.server[fid] == lab.flows[fid].server
            if d0 == "d1":
                c["d1's flows: " + ("re-homed, same server" if same else st)] += 1
                continue
            if d1 != d0:
                moved_between_survivors.append(fid)
                c["moved by the ECMP re-hash: " + ("kept server" if same else "LOST")] += 1
            else:
                c["stayed: " + ("kept server" if same else "LOST")] += 1
            assert st == "ok", (fid, d0, d1, st, dict(c))
            assert after.server[fid] == lab.flows[fid].server, (fid, d0, d1, dict(c))
        report.append(f"after d1's power loss: {dict(sorted(c.items()))}")
        # the point of mh: flows that changed director kept their server (needs at least one)
        assert moved_between_survivors, dict(c)
    finally:
        lab.close()
        text = "== BGP active-active, DR + mh on kernel IPVS ==\n" + "\n".join(report) + "\n"
        print(text)
        out = os.environ.get("LVSD_VM_OUT")
        if out:
            Path(out, "bgp_mh.report").write_text(text)
