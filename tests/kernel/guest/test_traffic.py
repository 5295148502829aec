"""Real client traffic through kernel IPVS (NAT) to real HTTP servers, inside the VM.

Topology (namespaces on one bridge, built by :func:`vmutil.nat_lab` with :mod:`lvsd.lab.netns`):

    client 192.0.2.100/24 ---+--- director 192.0.2.1/24 + VIP 192.0.2.10, 10.0.0.1/24 (IPVS)
                             +--- rs1 10.0.0.11/24 (default via 10.0.0.1), HTTP :8080 "rs1"
                             +--- rs2 10.0.0.12/24 (default via 10.0.0.1), HTTP :8080 "rs2"

IPVS lives in the director's namespace, programmed by the planner + reconciler through
``IPVSDataPlane(netns=...)``. Each HTTP response names the server that answered, over
keep-alive connections, so the test sees which real server each connection landed on. It shows:
round robin spreads new connections over both; once rs1 is drained to weight 0 (health down with
``inhibit_on_failure``), every NEW connection goes to rs2 while rs1's ESTABLISHED connections
keep being served by rs1; IPVS counts them as active; removing rs1 leaves rs2 serving.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vmutil import VIP, connect, get, nat_lab

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.config.model import NOPOS, Config, LbKind, Protocol, RealServer, VirtualServer
from lvsd.dataplane.ipvs import IPVSDataPlane
from lvsd.lab.netns import Topology
from lvsd.pool.planner import Planner
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.table import DestKey, ServiceKey


@pytest.fixture
def lab() -> Iterator[Topology]:
    with nat_lab("lt-ipvs") as topo:
        yield topo


def config(with_rs1: bool = True) -> Config:
    servers = [RealServer("10.0.0.12", 8080, inhibit_on_failure=True)]
    if with_rs1:
        servers.insert(0, RealServer("10.0.0.11", 8080, inhibit_on_failure=True))
    vs = VirtualServer(pos=NOPOS, address=VIP, port=80, protocol=Protocol.TCP, lb_algo="rr",
                       lb_kind=LbKind.NAT,
                       real_servers=tuple(servers))
    return Config(source="traffic-test", config_id="1", virtual_servers=(vs,))


async def test_weight_zero_takes_no_new_connections_but_keeps_established(
        lab: Topology) -> None:
    client_ns = lab["client"].ns
    dp = IPVSDataPlane(netns=lab["dir"].ns)
    try:
        planner = Planner(config())
        rec = Reconciler(dp)
        rec.set_desired(planner.plan({}, now=0.0).table)
        assert (await rec.start()).ok
        svc = ServiceKey.for_addr(VIP, 80, 6)
        rs1 = DestKey("10.0.0.11", 8080)

        # round robin: four keep-alive connections land on both servers
        conns = [connect(client_ns) for _ in range(4)]
        first = [get(c) for c in conns]
        assert sorted(first) == ["rs1", "rs1", "rs2", "rs2"], first
        held = [c for c, who in zip(conns, first, strict=True) if who == "rs1"]

        # drain rs1: its health goes down, inhibit_on_failure keeps it at weight 0
        vs_ident = planner.config.virtual_servers[0].ident
        down = {RealServerId(vs_ident, "10.0.0.11", 8080): RealServerHealth(False)}
        rec.set_desired(planner.plan(down, now=1.0).table)
        res = await rec.reconcile("change")
        assert [type(op).__name__ for op in res.ops] == ["EditDest"]
        assert (await dp.dump())[svc].dests[rs1].weight == 0

        # every NEW connection goes to rs2
        fresh = []
        for _ in range(8):
            c = connect(client_ns)
            fresh.append(get(c))
            c.close()
        assert fresh == ["rs2"] * 8, fresh

        # the ESTABLISHED connections to rs1 keep being served by rs1
        for _ in range(3):
            assert [get(c) for c in held] == ["rs1", "rs1"]
        stats = await dp.stats()
        assert stats[(svc, rs1)].active_conns == 2  # exactly the held ones

        # then the operator removes rs1 from the config: rs2 keeps serving new connections
        planner.reload(config(with_rs1=False))
        rec.set_desired(planner.plan(down, now=2.0).table)
        res = await rec.reconcile("reload")
        assert [type(op).__name__ for op in res.ops] == ["DelDest"]
        c = connect(client_ns)
        assert get(c) == "rs2"
        c.close()
        for c in conns:
            c.close()
    finally:
        await dp.close()
