"""Planner + reconciler + kernel IPVS: program, drain, repair drift, adopt on restart, reload.

Runs inside the VM. The chain is the daemon's: a :class:`Config` -> :class:`Planner` -> desired
table -> :class:`Reconciler` -> :class:`IPVSDataPlane` -> kernel. ``ipvsadm`` is the independent
witness and the operator's hand making drift. Every operation the reconciler sends to the
kernel is recorded by :class:`Spy` (a pass-through around the real data plane).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import replace

import pytest
from vmutil import ipvsadm, saved

from lvsd.checks.health import RealServerHealth, RealServerId
from lvsd.config.model import NOPOS, Config, LbKind, Protocol, RealServer, VirtualServer
from lvsd.dataplane.ipvs import IPVSDataPlane
from lvsd.pool.planner import Planner
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.service import PoolService
from lvsd.pool.table import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DestKey,
    DestStats,
    EditDest,
    EditService,
    Op,
    ServiceKey,
    Table,
    op_service,
)


class Spy:
    """The real data plane, with a record of every write (reads pass through)."""

    def __init__(self, inner: IPVSDataPlane) -> None:
        self.inner = inner
        self.name = inner.name
        self.writes: list[Op] = []

    def refuse(self, spec: object) -> str | None:
        return self.inner.refuse(spec)  # type: ignore[arg-type]

    async def dump(self, services: Collection[ServiceKey] | None = None) -> Table:
        return await self.inner.dump(services)

    async def apply(self, op: Op) -> None:
        self.writes.append(op)
        await self.inner.apply(op)

    async def apply_many(self, ops: Sequence[Op]) -> None:
        self.writes.extend(ops)
        await self.inner.apply_many(ops)

    async def stats(self) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        return await self.inner.stats()

    async def close(self) -> None:
        await self.inner.close()

    def kinds(self) -> list[str]:
        return [type(op).__name__ for op in self.writes]


def rs(addr: str, port: int = 8080, weight: int = 1, **kw: object) -> RealServer:
    return RealServer(address=addr, port=port, weight=weight, inhibit_on_failure=True,
                      **kw)  # type: ignore[arg-type]


WEB = VirtualServer(pos=NOPOS, address="192.0.2.10", port=80, protocol=Protocol.TCP, lb_algo="wrr",
                    lb_kind=LbKind.NAT,
                    real_servers=(rs("10.0.0.11", weight=3), rs("10.0.0.12", weight=2),
                                  rs("10.0.0.13")))
WEB6 = VirtualServer(pos=NOPOS, address="fd00::10", port=443, protocol=Protocol.TCP, family=6,
                     lb_algo="mh",
                     sched_flags=frozenset({"mh-port"}), persistence_timeout=60,
                     persistence_granularity="64",
                     real_servers=(rs("fd00::11", 443), rs("fd00::12", 443)))
MARK = VirtualServer(pos=NOPOS, fwmark=5, lb_algo="sh", lb_kind=LbKind.DR,
                     sched_flags=frozenset({"sh-port"}),
                     real_servers=(RealServer("10.0.0.21", 0, lb_kind=LbKind.DR),
                                   RealServer("10.0.0.22", 0, lb_kind=LbKind.DR, weight=4)))
CONFIG = Config(source="kernel-test", config_id="1", virtual_servers=(WEB, WEB6, MARK))

EXPECTED = sorted([
    "-A -t 192.0.2.10:80 -s wrr",
    "-a -t 192.0.2.10:80 -r 10.0.0.11:8080 -m -w 3",
    "-a -t 192.0.2.10:80 -r 10.0.0.12:8080 -m -w 2",
    "-a -t 192.0.2.10:80 -r 10.0.0.13:8080 -m -w 1",
    "-A -t [fd00::10]:443 -s mh -p 60 -M 64 -b mh-port",
    "-a -t [fd00::10]:443 -r [fd00::11]:443 -m -w 1",
    "-a -t [fd00::10]:443 -r [fd00::12]:443 -m -w 1",
    "-A -f 5 -s sh -b sh-port",
    "-a -f 5 -r 10.0.0.21:0 -g -w 1",
    "-a -f 5 -r 10.0.0.22:0 -g -w 4",
])
FOREIGN = ["-A -u 203.0.113.5:53 -s rr", "-a -u 203.0.113.5:53 -r 10.9.9.9:53 -m -w 1"]


def add_foreign() -> None:
    """A service some other tool owns: lvsd must never touch it."""
    ipvsadm("-A", "-u", "203.0.113.5:53", "-s", "rr")
    ipvsadm("-a", "-u", "203.0.113.5:53", "-r", "10.9.9.9:53", "-m", "-w", "1")


@pytest.fixture
async def spy() -> AsyncIterator[Spy]:
    s = Spy(IPVSDataPlane())
    yield s
    await s.close()


async def program(spy: Spy, config: Config = CONFIG) -> tuple[Planner, Reconciler]:
    planner = Planner(config)
    rec = Reconciler(spy)  # type: ignore[arg-type]
    plan = planner.plan({}, now=0.0)
    assert not plan.problems, plan.problems
    rec.set_desired(plan.table)
    res = await rec.start()
    assert res.ok, res.failed
    return planner, rec


async def test_program_a_config(spy: Spy) -> None:
    add_foreign()
    _, rec = await program(spy)
    assert saved() == sorted(EXPECTED + FOREIGN)
    assert spy.kinds().count("AddService") == 3 and spy.kinds().count("AddDest") == 7
    assert len(spy.writes) == 10
    # converged: a sweep changes nothing
    res = await rec.reconcile("sweep")
    assert res.ops == () and len(spy.writes) == 10


async def test_drain_to_weight_zero_then_remove(spy: Spy) -> None:
    planner, rec = await program(spy)
    spy.writes.clear()
    down = {RealServerId(WEB.ident, "10.0.0.12", 8080): RealServerHealth(alive=False,
                                                                          reason="test")}
    rec.set_desired(planner.plan(down, now=1.0).table)
    await rec.reconcile("change")
    assert len(spy.writes) == 1 and isinstance(spy.writes[0], EditDest)
    assert spy.writes[0].service == ServiceKey.for_addr("192.0.2.10", 80, 6)
    assert (spy.writes[0].dest.key, spy.writes[0].dest.weight) == (DestKey("10.0.0.12", 8080), 0)
    assert "-a -t 192.0.2.10:80 -r 10.0.0.12:8080 -m -w 0" in saved()
    # the operator removes it from the config: one delete, nothing else moves
    spy.writes.clear()
    web = replace(WEB, real_servers=(WEB.real_servers[0], WEB.real_servers[2]))
    planner.reload(replace(CONFIG, virtual_servers=(web, WEB6, MARK)))
    rec.set_desired(planner.plan(down, now=2.0).table)
    await rec.reconcile("change")
    assert spy.writes == [DelDest(ServiceKey.for_addr("192.0.2.10", 80, 6),
                                  DestKey("10.0.0.12", 8080))]
    assert saved() == sorted(e for e in EXPECTED if "10.0.0.12" not in e)


class NoChecks:
    """A health source with no verdict (every server as before its first check)."""

    def __init__(self) -> None:
        self.health: dict[RealServerId, RealServerHealth] = {}

    def add_callback(self, cb: object) -> None:
        pass

    async def start(self) -> None:
        pass

    def update(self, config: object) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_hand_made_drift_is_repaired_within_one_sweep(spy: Spy) -> None:
    # the pool service's loop, sweeping every 0.2 s; let it settle first
    rec = Reconciler(spy)  # type: ignore[arg-type]
    pool = PoolService(NoChecks(), Planner(CONFIG), rec, sweep_interval=0.2,
                       publish=lambda ev: None)
    await pool.start()
    add_foreign()
    try:
        for _ in range(150):  # bounded: up to ~30 s on an emulated CPU
            if pool.view().passes >= 2:
                break
            await asyncio.sleep(0.2)
        spy.writes.clear()
        # the operator, by hand:
        ipvsadm("-d", "-t", "192.0.2.10:80", "-r", "10.0.0.11:8080")  # removes a server
        ipvsadm("-e", "-t", "192.0.2.10:80", "-r", "10.0.0.13:8080", "-m", "-w", "9")  # reweights
        ipvsadm("-a", "-t", "[fd00::10]:443", "-r", "[fd00::99]:443", "-m")  # adds a stranger
        ipvsadm("-E", "-t", "[fd00::10]:443", "-s", "rr")  # changes the scheduler
        ipvsadm("-D", "-f", "5")  # ...and deletes a whole service
        assert saved() != sorted(EXPECTED + FOREIGN)
        # the next periodic sweep repairs it
        for _ in range(150):  # bounded: up to ~30 s on an emulated CPU
            if rec.status.repairs:
                break
            await asyncio.sleep(0.2)
    finally:
        await pool.stop(script_timeout=1.0)  # lvs_flush_on_stop off: the table stays
    assert rec.status.last_reason == "sweep" and rec.status.repairs == 7
    assert saved() == sorted(EXPECTED + FOREIGN)
    assert sorted(spy.kinds()) == sorted(["AddDest", "EditDest", "EditService", "DelDest",
                                          "AddService", "AddDest", "AddDest"])
    # the foreign service was never touched (no operation of any kind names it)
    foreign = ServiceKey.for_addr("203.0.113.5", 53, 17)
    assert all(op_service(op) != foreign for op in spy.writes)


async def test_restart_adopts_without_a_single_delete(spy: Spy) -> None:
    _, rec = await program(spy)
    add_foreign()
    await rec.stop()  # lvs_flush_on_stop off: the table stays
    assert saved() == sorted(EXPECTED + FOREIGN)
    # a new process: new socket, new planner, new reconciler, same config
    fresh = Spy(IPVSDataPlane())
    try:
        await program(fresh)
        assert fresh.writes == []  # not one add, edit or delete
        assert saved() == sorted(EXPECTED + FOREIGN)
    finally:
        await fresh.close()
    # with lvs_flush the start wipes the table first (keepalived lvs_flush), foreign included
    flushing = Spy(IPVSDataPlane())
    try:
        rec2 = Reconciler(flushing, flush_on_start=True)  # type: ignore[arg-type]
        rec2.set_desired(Planner(CONFIG).plan({}, 0.0).table)
        await rec2.start()
        assert flushing.kinds().count("DelService") == 4
        assert saved() == EXPECTED
    finally:
        await flushing.close()


async def test_reload_applies_only_the_diff(spy: Spy) -> None:
    planner, rec = await program(spy)
    spy.writes.clear()
    web = replace(WEB, lb_algo="wlc", real_servers=(
        rs("10.0.0.11", weight=5), WEB.real_servers[1], WEB.real_servers[2], rs("10.0.0.14")))
    planner.reload(replace(CONFIG, virtual_servers=(web, MARK), config_id="2"))
    rec.set_desired(planner.plan({}, now=3.0).table)
    res = await rec.reconcile("reload")
    assert res.ok
    k = ServiceKey.for_addr("192.0.2.10", 80, 6)
    assert [type(op) for op in spy.writes] == [EditService, EditDest, AddDest, DelService]
    assert isinstance(spy.writes[0], EditService) and spy.writes[0].spec.scheduler == "wlc"
    assert isinstance(spy.writes[2], AddDest) and spy.writes[2].service == k
    assert spy.writes[2].dest.key == DestKey("10.0.0.14", 8080)
    assert spy.writes[3] == DelService(ServiceKey.for_addr("fd00::10", 443, 6))
    assert saved() == sorted([
        "-A -t 192.0.2.10:80 -s wlc",
        "-a -t 192.0.2.10:80 -r 10.0.0.11:8080 -m -w 5",
        "-a -t 192.0.2.10:80 -r 10.0.0.12:8080 -m -w 2",
        "-a -t 192.0.2.10:80 -r 10.0.0.13:8080 -m -w 1",
        "-a -t 192.0.2.10:80 -r 10.0.0.14:8080 -m -w 1",
        *[e for e in EXPECTED if "-f 5" in e],
    ])
    assert (await rec.reconcile("sweep")).ops == ()
    assert AddService not in [type(op) for op in spy.writes]
