"""Active-active directors behind a router's ECMP, each announcing the VIP by BGP (issue 15).

The lab is ``tests/support/bgplab.py``: a client, a router running BIRD 2 (eBGP with every
director, ``merge paths on`` => one multipath kernel route, L4 hash), three directors and three
real servers answering their name. The host has no IPVS: the directors run the nftables data
plane, which does NAT only, so each director also masquerades what it translated (full NAT):
with several active directors no real server can send its replies through "the" director, the
reply must come back to the director that holds the translation. That is what active-active
NAT needs; DR with ``mh`` (kernel IPVS) is proven in the VM (``tests/kernel/guest/
test_bgp_mh.py``).

What is asserted is what the router and the flows show, never how fast:

* the topology itself, with BIRD configured by hand on the directors (no lvsd);
* ``lvsd run`` announces the VIP once its virtual server is healthy; flows spread over all
  directors;
* a director whose virtual server loses its quorum (an nftables drop rule makes its health
  checks fail) withdraws, and announces again when it recovers;
* SIGTERM: the route is withdrawn by a BGP Cease (not the hold timer) before lvsd exits;
* SIGKILL of lvsd alone: its BIRD child gets PR_SET_PDEATHSIG, still ends with a Cease;
* power loss of a director (its link cut, then every process killed: none can react, no
  socket sends a FIN): the router's hold timer withdraws it.

After each failure the flows are counted: every flow that the router still sends to the
director that carried it keeps working on the same real server; the failed director's flows
and the flows the router's ECMP re-hash moved to another director are lost here (NAT: the new
director has no translation for them; the VM test shows ``mh`` + sloppy TCP keeping them).
"""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Iterator

import pytest

import bgplab
from bgplab import BgpLab
from conftest import require
from lvsd.lab.netns import have_netns

pytestmark = pytest.mark.netns

FLOWS = 60
REPORT: list[str] = []


def _require_lab() -> None:
    require(have_netns())
    require(bgplab.missing_bird())


def _failover_counts(lab: bgplab.BgpLab, before: bgplab.Round, after: bgplab.Round,
                     failed: str) -> collections.Counter[str]:
    """Classify every flow by what happened to it between two rounds."""
    c: collections.Counter[str] = collections.Counter()
    for fid, d0 in before.director.items():
        if before.state[fid] != "ok":
            continue
        d1, st = after.director.get(fid), after.state.get(fid)
        if d0 == failed:
            c["failed director's: " + ("kept" if st == "ok" else "lost")] += 1
        elif d1 == d0:
            c["stayed: " + ("kept" if st == "ok" else "LOST")] += 1
        else:
            c["re-hashed: " + ("kept" if st == "ok" else "lost")] += 1
    return c


def _assert_survivors(lab: bgplab.BgpLab, before: bgplab.Round, after: bgplab.Round,
                      failed: str, event: str) -> None:
    counts = _failover_counts(lab, before, after, failed)
    REPORT.append(f"{event:<40} {dict(sorted(counts.items()))}")
    print(REPORT[-1])
    stayed = [f for f, d in before.director.items()
              if before.state[f] == "ok" and d != failed and after.director.get(f) == d]
    assert stayed, f"no flow stayed on a surviving director: {counts}"
    for f in stayed:  # a flow the router still sends to its director keeps working, same server
        assert after.state[f] == "ok", (f, counts)
        assert after.server[f] == lab.flows[f].server, (f, counts)
    for f, st in after.state.items():  # no flow reaches the failed director any more
        if st == "ok":
            assert after.director[f] != failed


def _wait_flows_settled(lab: bgplab.BgpLab) -> bgplab.Round:
    """Rounds until no flow is stalled (moved flows get their reset or answer; a busy machine
    may answer a healthy flow late)."""
    r = lab.round(timeout=10)
    for _ in range(5):
        if r.count("stalled") == 0:
            break
        r = lab.round(timeout=10)
    return r


@pytest.fixture(autouse=True, scope="module")
def _print_report() -> Iterator[None]:
    yield
    if REPORT:
        print("\n== bgp active-active: flows per event ==")
        for line in REPORT:
            print(line)


def test_lab_hand_speakers_spread_and_withdraw() -> None:
    """The lab without lvsd: BIRD by hand on two directors, nftables NAT by hand."""
    _require_lab()
    with BgpLab(2, 3, tag="lt-bgph") as lab:
        lab.build()
        for d in lab.director_names:
            lab.hand_nat(d)
            lab.start_hand_speaker(d)
        assert lab.wait_nexthops(lab.director_names), (lab.nexthops(), lab.logs())
        assert set(lab.sessions().values()) == {"Established"}
        lab.open_flows(40)
        assert len(lab.flows) == 40, lab.open_errors
        r = _wait_flows_settled(lab)
        assert r.count("ok") == 40
        assert set(r.by_director()) == {"d1", "d2"}  # ECMP spreads them
        # the same seeded hash on both directors: the server a flow gets does not depend on
        # the director (peer = the director that masqueraded it)
        assert all(r.server[f] == lab.flows[f].server for f in r.state)
        lab.speakers["d1"].stop()  # BIRD's graceful shutdown: a Cease, the route goes
        assert lab.wait_nexthops(["d2"]), (lab.nexthops(), lab.logs())
        after = _wait_flows_settled(lab)
        _assert_survivors(lab, r, after, "d1", "hand: d1's BIRD stopped")
        assert "Administrative shutdown" in lab.router_protocol("d1")


# --------------------------------------------------------------------------- lvsd directors
@pytest.fixture(scope="module")
def lab() -> Iterator[bgplab.BgpLab]:
    _require_lab()
    lab = BgpLab(3, 3, mode="nat", tag="lt-bgpa")
    try:
        lab.build()
        for d in lab.director_names:
            lab.masquerade(d)
            node = lab.lvsd_director(d, "nftables")
            cc = node.check_config()
            assert cc.returncode == 0, cc.stdout + cc.stderr
        for d in lab.director_names:
            lab.lvsd[d].start()
        assert lab.wait_nexthops(lab.director_names), (lab.nexthops(), lab.logs())
        yield lab
    finally:
        lab.close()


def _ensure_all(lab: bgplab.BgpLab) -> None:
    """Every director's lvsd running and announcing (restart the ones a test stopped)."""
    for name, node in lab.lvsd.items():
        if not node.alive():
            lab.host(name).run("nft", "delete", "table", "ip", "bgplabchk", check=False)
            lab.revive_director(name)
            node.start()
    assert lab.wait_nexthops(lab.director_names), (lab.nexthops(), lab.logs())


def _fresh_flows(lab: bgplab.BgpLab) -> bgplab.Round:
    lab.reset_flows()
    opened = lab.open_flows(FLOWS)
    assert len(opened) == FLOWS, lab.open_errors
    r = _wait_flows_settled(lab)
    assert r.count("ok") == FLOWS, collections.Counter(r.state.values())
    return r


def _bgp_status(node: bgplab.LvsdDirector) -> dict[str, object]:
    st = node.status().get("bgp")
    assert isinstance(st, dict), node.status().keys()
    return st


def test_announced_when_healthy_and_flows_spread(lab: bgplab.BgpLab) -> None:
    _ensure_all(lab)
    r = _fresh_flows(lab)
    per = r.by_director()
    REPORT.append(f"{'spread over directors':<40} "
                  f"{ {d: len(f) for d, f in sorted(per.items(), key=str)} }")
    assert set(per) == set(lab.director_names), per
    # NAT: the server saw the connection come from the director that carried it
    for fid in r.state:
        assert lab.flows[fid].server in lab.server_names
    for name, node in lab.lvsd.items():
        st = _bgp_status(node)
        ann = st["announcements"]
        assert isinstance(ann, list) and ann[0]["state"] == "announced", (name, st)
    assert set(lab.sessions().values()) == {"Established"}


def test_quorum_lost_withdraws_and_recovery_announces(lab: bgplab.BgpLab) -> None:
    _ensure_all(lab)
    d3 = lab.host("d3")
    # d3's health checks (locally generated connections to the real servers) fail; forwarded
    # client traffic is not touched: only d3's view of its pool changes
    d3.run("nft", "-f", "-", input=(
        "table ip bgplabchk {\n"
        "  chain out { type filter hook output priority 0;\n"
        f"    ip daddr {bgplab.LAN} tcp dport {bgplab.PORT} drop\n"
        "  }\n"
        "}\n"))
    try:
        assert lab.wait_nexthops(["d1", "d2"]), (lab.nexthops(), lab.logs())
        st = _bgp_status(lab.lvsd["d3"])
        ann = st["announcements"]
        assert isinstance(ann, list) and ann[0]["state"] == "withdrawn", st
        assert lab.lvsd["d3"].alive()
    finally:
        d3.run("nft", "delete", "table", "ip", "bgplabchk", check=False)
    assert lab.wait_nexthops(lab.director_names), (lab.nexthops(), lab.logs())


def test_sigterm_withdraws_by_cease_before_exit(lab: bgplab.BgpLab) -> None:
    _ensure_all(lab)
    before = _fresh_flows(lab)
    node = lab.lvsd["d3"]
    node.signal(signal.SIGTERM)
    assert lab.wait_nexthops(["d1", "d2"]), (lab.nexthops(), lab.logs())
    assert node.wait_exit() == 0, node.log()
    assert not node.bird_pids()
    proto = lab.router_protocol("d3")
    assert "Hold timer expired" not in proto, proto  # withdrawn by lvsd, not by a timeout
    after = _wait_flows_settled(lab)
    _assert_survivors(lab, before, after, "d3", "lvsd SIGTERM on d3")


def test_sigkill_of_lvsd_its_bird_follows(lab: bgplab.BgpLab) -> None:
    _ensure_all(lab)
    before = _fresh_flows(lab)
    node = lab.lvsd["d3"]
    birds = node.bird_pids()
    assert len(birds) == 1, birds
    assert node.proc is not None
    os.kill(node.proc.pid, signal.SIGKILL)  # lvsd alone: its BIRD child is not touched
    node.wait_exit()
    # PR_SET_PDEATHSIG: BIRD gets SIGTERM when lvsd dies and shuts its sessions down
    assert bgplab._wait(lambda: not node.bird_pids(), bgplab.WAIT), node.bird_pids()
    assert lab.wait_nexthops(["d1", "d2"]), (lab.nexthops(), lab.logs())
    proto = lab.router_protocol("d3")
    assert "Hold timer expired" not in proto, proto
    after = _wait_flows_settled(lab)
    _assert_survivors(lab, before, after, "d3", "lvsd SIGKILL on d3 (BIRD: PDEATHSIG)")


def test_power_loss_withdrawn_by_hold_timer(lab: bgplab.BgpLab) -> None:
    _ensure_all(lab)
    before = _fresh_flows(lab)
    node = lab.lvsd["d2"]
    assert node.proc is not None
    lab.kill_director("d2", node.proc.pid)  # link cut, every process killed: no Cease
    node.wait_exit()
    assert not node.bird_pids()
    assert lab.wait_nexthops(["d1", "d3"]), (lab.nexthops(), lab.logs())
    proto = lab.router_protocol("d2")
    assert "Hold timer expired" in proto, proto
    after = _wait_flows_settled(lab)
    _assert_survivors(lab, before, after, "d2", "power loss of d2 (hold timer)")


def test_restarted_director_announces_again(lab: bgplab.BgpLab) -> None:
    _ensure_all(lab)  # restarts whatever the tests above stopped
    assert set(lab.sessions().values()) == {"Established"}
