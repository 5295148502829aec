"""The runner executes the machine's actions in keepalived's order (vrrp.c
vrrp_state_become_master: VIPs, then gratuitous ARPs, then notify; vrrp_state_leave_master /
shutdown: VIPs removed, then notify), with the host side recorded by in-memory stand-ins: a
transport, a VIP set whose netlink work waits on a gate the test opens, a GARP sender and
notifiers. No timed assertion: the test holds the VIP work and looks at what already ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from lvsd.vrrp.machine import State
from lvsd.vrrp.notify import Notifier
from lvsd.vrrp.params import VrrpParams
from lvsd.vrrp.runner import InstanceSpec, VrrpRunner, _Member
from lvsd.vrrp.transport import Packet
from lvsd.vrrp.vips import Vip, VipResult

pytestmark = pytest.mark.unit

ME = IPv4Address("192.0.2.1")
VIP = IPv4Address("192.0.2.100")


class FakeTransport:
    def __init__(self) -> None:
        self.source = ME
        self.destinations = (IPv4Address("224.0.0.18"),)
        self.sent: list[bytes] = []

    async def open(self, on_packet: Callable[[Packet], None]) -> None:
        pass

    def send(self, payload: bytes, dst: Any) -> None:
        self.sent.append(payload)

    def close(self) -> None:
        pass


class FakeVipSet:
    """Records adds/removes; each waits for ``gate`` (the netlink round trips)."""

    def __init__(self, log: list[str], gate: asyncio.Event, vips: tuple[Vip, ...]) -> None:
        self.log, self.gate = log, gate
        self.vips, self.excluded = vips, ()
        self.entered = asyncio.Event()
        self.opened_before_add: bool | None = None  # open() called, before the first add?

    @property
    def all(self) -> tuple[Vip, ...]:
        return self.vips

    async def _op(self, what: str) -> VipResult:
        self.log.append(f"{what} started")
        self.entered.set()
        await self.gate.wait()
        self.log.append(f"{what} done")
        return VipResult(ok=[v.cidr for v in self.vips])

    async def add_all(self) -> VipResult:
        return await self._op("add VIPs")

    async def remove_all(self) -> VipResult:
        return await self._op("remove VIPs")

    async def open(self) -> None:
        self.opened_before_add = "add VIPs started" not in self.log

    def close(self) -> None:
        pass


class FakeGarp:
    def __init__(self, log: list[str]) -> None:
        self.log, self.sent = log, 0
        self.bursts = 0

    def burst(self, addrs: Any, repeat: int = 1) -> int:
        self.bursts += 1
        self.log.append(f"garp x{repeat}")
        return repeat

    def open(self, family: int = 4) -> None:
        pass

    def close(self) -> None:
        pass


class RecordingNotifier(Notifier):
    log: list[str] | None = None

    def notify(self, state: str, priority: int | None) -> None:
        assert self.log is not None
        self.log.append(f"notify {self.kind} {state}")


class Runner(VrrpRunner):
    """The real runner with the host side swapped for the stand-ins above."""

    def __init__(self, specs: list[InstanceSpec], log: list[str], **kw: Any) -> None:
        super().__init__(specs, **kw)
        self.log = log
        self.gate = asyncio.Event()
        self.vipsets: dict[str, FakeVipSet] = {}
        self.garps: dict[str, FakeGarp] = {}

    def _new_member(self, spec: InstanceSpec) -> _Member:
        m = super()._new_member(spec)
        vs = FakeVipSet(self.log, self.gate, m.vipset.vips)
        self.vipsets[m.name] = vs
        self.garps[m.name] = FakeGarp(self.log)
        m.vipset = vs  # type: ignore[assignment]
        m.garp = self.garps[m.name]  # type: ignore[assignment]
        return m


def owner_spec(log: list[str], name: str = "VI_1", vrid: int = 51, *, repeat: int = 1,
               garp_interval: float = 0.0) -> InstanceSpec:
    """An address owner (priority 255): MASTER at start, no timer to wait for."""
    params = VrrpParams(name, vrid, priority=255, addresses=(VIP,), primary_address=ME,
                        garp_master_delay=0, garp_master_repeat=repeat)
    n = RecordingNotifier("INSTANCE", name)
    n.log = log
    return InstanceSpec(params=params, interface="eth0", transport=FakeTransport(),
                        notifier=n, garp_interval=garp_interval)


async def until(cond: Callable[[], bool]) -> None:
    """Let the loop run until ``cond`` (the test's own work is all in memory)."""
    for _ in range(10_000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never met")


async def test_new_master_notifies_after_vips_and_gratuitous_arps() -> None:
    log: list[str] = []
    r = Runner([owner_spec(log)], log)
    await r.start()
    assert r.state() == State.MASTER
    # the netlink socket was made ready when the member started, not by the takeover's add
    assert r.vipsets["VI_1"].opened_before_add is True
    await r.vipsets["VI_1"].entered.wait()
    # the VIP work is under way and held: nothing after it may have run yet
    assert log == ["add VIPs started"], log
    r.gate.set()
    await until(lambda: "notify INSTANCE MASTER" in log)
    assert log == ["add VIPs started", "add VIPs done", "garp x1", "notify INSTANCE MASTER"]
    log.clear()
    await r.stop()
    # shutdown: priority 0, VIPs removed, then notify STOP
    assert log == ["remove VIPs started", "remove VIPs done", "notify INSTANCE STOP"]


async def test_spaced_garps_do_not_hold_the_notify_and_stop_with_the_vips() -> None:
    log: list[str] = []
    # 3 bursts 1000 s apart: only the first can go out before the notify and the stop
    r = Runner([owner_spec(log, repeat=3, garp_interval=1000.0)], log)
    r.gate.set()
    await r.start()
    await until(lambda: "notify INSTANCE MASTER" in log)
    assert log == ["add VIPs started", "add VIPs done", "garp x1", "notify INSTANCE MASTER"]
    await r.stop()
    # the queued bursts were dropped with the VIPs (keepalived vrrp_remove_delayed_arp)
    assert r.garps["VI_1"].bursts == 1
    assert "notify INSTANCE STOP" in log


async def test_group_notify_follows_its_members_work() -> None:
    log: list[str] = []
    gn = RecordingNotifier("GROUP", "G")
    gn.log = log
    r = Runner([owner_spec(log, "VI_1", 51), owner_spec(log, "VI_2", 52)], log,
               sync_group="G", group_notifier=gn)
    await r.start()
    await until(lambda: sum(vs.entered.is_set() for vs in r.vipsets.values()) == 1)
    assert "notify GROUP MASTER" not in log and "notify INSTANCE MASTER" not in log
    r.gate.set()
    await until(lambda: "notify GROUP MASTER" in log)
    assert log[-1] == "notify GROUP MASTER"
    assert log.count("add VIPs done") == 2 and log.count("notify INSTANCE MASTER") == 2
    assert log.index("notify INSTANCE MASTER") > log.index("garp x1")
    log.clear()
    await r.stop()
    assert log[-1] == "notify GROUP STOP"
    assert log.count("notify INSTANCE STOP") == 2 and log.count("remove VIPs done") == 2
