"""``lvs_timeouts`` on the real kernel: the reconciler owns the IPVS connection timeouts.

Runs inside the VM. ``ipvsadm -L --timeout`` is the independent witness of what the kernel
holds, and ``ipvsadm --set`` the operator changing a value by hand (``0`` leaves a value as it
is). Every test puts the kernel's timeouts back as it found them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from vmutil import ipvsadm

from lvsd.dataplane.ipvs import IPVSDataPlane
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.table import (
    DestKey,
    DestSpec,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Timeouts,
)

VIP = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
RS = DestKey("10.0.0.1", 80)
TABLE = {VIP: ServiceEntry(ServiceSpec(VIP, "wlc"), {RS: DestSpec(RS, 1)})}


def kernel_timeouts() -> Timeouts:
    """What ``ipvsadm -L --timeout`` says: ``Timeout (tcp tcpfin udp): 900 120 300``."""
    out = ipvsadm("-L", "--timeout")
    m = re.search(r"Timeout \(tcp tcpfin udp\): (\d+) (\d+) (\d+)", out)
    assert m, f"unexpected ipvsadm output: {out!r}"
    return Timeouts(int(m[1]), int(m[2]), int(m[3]))


def by_hand(tcp: int = 0, tcpfin: int = 0, udp: int = 0) -> None:
    ipvsadm("--set", str(tcp), str(tcpfin), str(udp))


@pytest.fixture(autouse=True)
def _restore_timeouts() -> Iterator[Timeouts]:
    before = kernel_timeouts()
    yield before
    by_hand(before.tcp or 0, before.tcp_fin or 0, before.udp or 0)
    assert kernel_timeouts() == before


class _Spy:
    """Counts the timeout writes the reconciler sends (the kernel keeps no such count)."""

    def __init__(self, dp: IPVSDataPlane) -> None:
        self.writes: list[Timeouts] = []
        real = dp.set_timeouts

        async def spy(t: Timeouts) -> None:
            self.writes.append(t)
            await real(t)

        dp.set_timeouts = spy  # type: ignore[method-assign]


async def test_read_matches_ipvsadm(ipvs: IPVSDataPlane) -> None:
    by_hand(1234, 56, 78)
    assert await ipvs.get_timeouts() == kernel_timeouts() == Timeouts(1234, 56, 78)
    await ipvs.set_timeouts(Timeouts(udp=99))  # only udp is sent: the others stay
    assert kernel_timeouts() == Timeouts(1234, 56, 99)


async def test_set_read_back_repair_idempotent_restore(ipvs: IPVSDataPlane) -> None:
    by_hand(900, 120, 300)  # the kernel's defaults, whatever an earlier test left
    spy = _Spy(ipvs)
    rec = Reconciler(ipvs, timeouts=Timeouts(tcp=7200, udp=50))
    rec.set_desired(TABLE)
    res = await rec.start()
    assert res.ok, res.failed
    assert kernel_timeouts() == Timeouts(7200, 120, 50)
    assert spy.writes == [Timeouts(tcp=7200, udp=50)]  # tcpfin not configured: not written

    # idempotent: equal values are never written again
    for reason in ("sweep", "change", "sweep"):
        assert (await rec.reconcile(reason)).timeouts is None
    assert len(spy.writes) == 1

    # changed by hand: the next sweep repairs exactly that field
    by_hand(tcp=500)
    assert kernel_timeouts() == Timeouts(500, 120, 50)
    res = await rec.reconcile("sweep")
    assert res.timeouts == Timeouts(tcp=7200) and res.repairs == 1
    assert kernel_timeouts() == Timeouts(7200, 120, 50)

    # a field lvsd does not own (tcpfin) is left as the operator set it
    by_hand(tcpfin=33)
    assert (await rec.reconcile("sweep")).timeouts is None
    assert kernel_timeouts() == Timeouts(7200, 33, 50)

    # a reload dropping lvs_timeouts puts back the values from before lvsd changed them
    rec.set_timeouts(None)
    res = await rec.reconcile("change")
    assert res.timeouts == Timeouts(tcp=900, udp=300)
    assert kernel_timeouts() == Timeouts(900, 33, 300)
    assert len(spy.writes) == 3
    assert rec.status.in_sync and rec.status.timeouts_writes == 3
    await rec.stop()  # nothing left to restore
    assert len(spy.writes) == 3


async def test_stop_restores_and_restart_adopts(ipvs: IPVSDataPlane) -> None:
    by_hand(900, 120, 300)
    rec = Reconciler(ipvs, timeouts=Timeouts(tcp_fin=10))
    rec.set_desired(TABLE)
    assert (await rec.start()).ok
    assert kernel_timeouts() == Timeouts(900, 10, 300)
    await rec.stop()  # keepalived's ipvs_stop: back to the values found
    assert kernel_timeouts() == Timeouts(900, 120, 300)
    assert ipvsadm("-Sn").count("-A -t 192.0.2.10:80") == 1  # the table itself is left

    # a restart finding its values already in place adopts them: no write
    by_hand(tcpfin=10)
    again = Reconciler(ipvs, timeouts=Timeouts(tcp_fin=10))
    spy = _Spy(ipvs)
    again.set_desired(TABLE)
    res = await again.start()
    assert res.ok and res.timeouts is None and res.ops == () and spy.writes == []


async def test_kernel_refusal_is_an_alarm_not_a_crash(ipvs: IPVSDataPlane) -> None:
    """A value above the kernel's INT_MAX/HZ is EINVAL: named in an alarm, nothing changed."""
    before = kernel_timeouts()
    rec = Reconciler(ipvs, timeouts=Timeouts(udp=2**31 - 1), retry_wait=0.0)
    rec.set_desired(TABLE)
    res = await rec.start()
    assert [a.op for a in res.failed] == [f"set timeouts udp {2**31 - 1}"]
    assert "EINVAL" in res.failed[0].error
    assert kernel_timeouts() == before
    assert not rec.status.in_sync
