"""Real kernel IPVS, inside the VM: a real server removed by a reload, with and without drain.

Topology: the one of test_traffic.py (``vmutil.nat_lab``: client, director with the VIP and
IPVS, rs1/rs2 serving keep-alive HTTP that names the server), built under its own tag. No
daemon: the planner and reconciler are driven as the daemon drives them on a reload
(``Planner.reload`` then plan + reconcile), with ``now`` scripted.

* ``lvs_drain_on_remove 0`` (keepalived's behaviour): rs1 is deleted at once and, with the
  kernel default ``net.ipv4.vs.expire_nodest_conn=0``, IPVS silently drops the packets of the
  established connection to rs1: the request is never answered. This is the problem.
* ``lvs_drain_on_remove 30``: rs1 stays at weight 0, the established connection keeps being
  answered by rs1, new connections go to rs2; at the drain end rs1 is deleted.
* When the connections to rs1 close, the data plane's counters end the drain early.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator

import pytest
from vmutil import VIP, connect, get, nat_lab

from lvsd.config.loader import loads
from lvsd.config.model import Config
from lvsd.dataplane.ipvs import IPVSDataPlane
from lvsd.lab.netns import Topology
from lvsd.pool.planner import Planner
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.table import DestKey, ServiceKey

SVC = ServiceKey.for_addr(VIP, 80, 6)
RS1 = DestKey("10.0.0.11", 8080)
RS2 = DestKey("10.0.0.12", 8080)


@pytest.fixture
def lab() -> Iterator[Topology]:
    with nat_lab("lt-drain") as topo:
        yield topo


def config(drain: float, with_rs1: bool) -> Config:
    rs1 = "  real_server 10.0.0.11 8080 { weight 1 }\n" if with_rs1 else ""
    cfg = loads(f"global_defs {{\n  lvs_drain_on_remove {drain:g}\n}}\n"
                f"virtual_server {VIP} 80 {{\n  protocol TCP\n  lb_algo rr\n  lb_kind NAT\n"
                f"{rs1}  real_server 10.0.0.12 8080 {{ weight 1 }}\n}}\n", name="drain.conf")
    assert cfg.ok, cfg.diagnostics
    return cfg


def unanswered(conn: http.client.HTTPConnection) -> bool:
    """True when a request on this established connection gets no answer (packets dropped)."""
    assert conn.sock is not None
    conn.sock.settimeout(3)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    except TimeoutError:
        return True
    return False


async def setup(lab: Topology, drain: float) -> tuple[IPVSDataPlane, Planner, Reconciler,
                                                      http.client.HTTPConnection,
                                                      list[http.client.HTTPConnection]]:
    """Both servers in; keep-alive connections until one lands on rs1; then the reload
    that removes rs1 (planned at now=10)."""
    assert lab["dir"].run("cat", "/proc/sys/net/ipv4/vs/expire_nodest_conn").stdout.strip() \
        == "0"  # the kernel default this feature exists for
    dp = IPVSDataPlane(netns=lab["dir"].ns)
    planner = Planner(config(drain, with_rs1=True))
    rec = Reconciler(dp)
    rec.set_desired(planner.plan({}, now=0.0).table)
    assert (await rec.start()).ok
    conns = [connect(lab["client"].ns) for _ in range(2)]
    who = [get(c) for c in conns]
    assert sorted(who) == ["rs1", "rs2"], who  # round robin
    held = conns[who.index("rs1")]
    planner.reload(config(drain, with_rs1=False))
    rec.set_desired(planner.plan({}, now=10.0).table)
    return dp, planner, rec, held, conns


def new_connections(lab: Topology, n: int) -> list[str]:
    out = []
    for _ in range(n):
        c = connect(lab["client"].ns)
        out.append(get(c))
        c.close()
    return out


async def test_without_drain_the_established_connection_dies(lab: Topology) -> None:
    dp, _planner, rec, held, conns = await setup(lab, drain=0)
    try:
        res = await rec.reconcile("change")
        assert [type(op).__name__ for op in res.ops] == ["DelDest"]  # keepalived: at once
        assert set((await dp.dump())[SVC].dests) == {RS2}
        assert unanswered(held)  # the problem: rs1's client hangs
        assert new_connections(lab, 4) == ["rs2"] * 4
    finally:
        for c in conns:
            c.close()
        await dp.close()


async def test_drain_keeps_the_established_connection_until_its_end(lab: Topology) -> None:
    dp, planner, rec, held, conns = await setup(lab, drain=30)
    try:
        res = await rec.reconcile("change")
        assert [type(op).__name__ for op in res.ops] == ["EditDest"]
        assert (await dp.dump())[SVC].dests[RS1].weight == 0
        for _ in range(3):
            assert get(held) == "rs1"  # still answered, by rs1
        assert new_connections(lab, 6) == ["rs2"] * 6  # new ones avoid rs1
        assert (await dp.stats())[(SVC, RS1)].active_conns == 1

        plan = planner.plan({}, now=39.9)  # just before the end: nothing changes
        assert plan.next_deadline == 40.0
        rec.set_desired(plan.table)
        assert (await rec.reconcile("change")).ops == ()
        assert get(held) == "rs1"

        plan = planner.plan({}, now=40.0)  # the drain ends: rs1 is deleted
        assert plan.next_deadline is None
        rec.set_desired(plan.table)
        res = await rec.reconcile("drain end")
        assert [type(op).__name__ for op in res.ops] == ["DelDest"]
        assert set((await dp.dump())[SVC].dests) == {RS2}
    finally:
        for c in conns:
            c.close()
        await dp.close()


async def test_drain_ends_early_when_the_connections_are_gone(lab: Topology) -> None:
    dp, planner, rec, held, conns = await setup(lab, drain=300)
    try:
        assert [type(op).__name__ for op in (await rec.reconcile("change")).ops] == ["EditDest"]
        stats = await dp.stats()  # read after weight 0 was programmed (stats_at 11 > start 10)
        assert stats[(SVC, RS1)].active_conns == 1
        rec.set_desired(planner.plan({}, 12.0, stats, 11.0).table)
        assert (await rec.reconcile("change")).ops == ()  # a connection left: still draining

        assert get(held) == "rs1"
        held.close()
        deadline = time.monotonic() + 10  # bounded wait for the FIN exchange to pass IPVS
        while (stats := await dp.stats())[(SVC, RS1)].active_conns and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats[(SVC, RS1)].active_conns == 0
        plan = planner.plan({}, 14.0, stats, 13.0)
        assert plan.next_deadline is None
        rec.set_desired(plan.table)
        res = await rec.reconcile("change")
        assert [type(op).__name__ for op in res.ops] == ["DelDest"]
    finally:
        for c in conns:
            c.close()
        await dp.close()
