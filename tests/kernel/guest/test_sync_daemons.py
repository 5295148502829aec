"""The kernel's IPVS connection sync daemons through lvsd's generic netlink codec, in the VM:
start / read / stop round trips (IPv4 and IPv6 groups, every parameter), the kernel's errors,
and the reconciler owning them (adopt, a hand stop repaired by the sweep, a parameter change
restarts the daemon). ``ipvsadm -L --daemon`` is the independent witness."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest
from vmutil import ipvsadm

from lvsd.dataplane.base import DataPlaneError
from lvsd.dataplane.ipvs import IPVSDataPlane
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.syncd import SyncDaemon, SyncRole

IF = "ltsync0"
M, B = SyncRole.MASTER, SyncRole.BACKUP


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
async def dp() -> AsyncIterator[IPVSDataPlane]:
    _ip("link", "add", IF, "type", "dummy")
    try:
        _ip("link", "set", IF, "multicast", "on", "up")
        _ip("addr", "add", "10.99.0.1/24", "dev", IF)
        _ip("-6", "addr", "add", "fd00:99::1/64", "dev", IF, "nodad")
        plane = IPVSDataPlane()
        await plane.open()
        try:
            yield plane
        finally:
            for role in (M, B):
                ipvsadm("--stop-daemon", role.value, check=False)
            await plane.close()
    finally:
        _ip("link", "del", IF)


async def test_start_read_stop_round_trip(dp: IPVSDataPlane) -> None:
    assert await dp.get_sync_daemons() == ()
    await dp.start_sync_daemon(SyncDaemon(B, IF, 7))
    await dp.start_sync_daemon(SyncDaemon(M, IF, 9, maxlen=1000, port=9000, ttl=3,
                                          group="239.1.2.3"))
    got = {d.role: d for d in await dp.get_sync_daemons()}
    # the kernel's defaults filled in for the backup (group, port, ttl; maxlen from the MTU)
    assert got[B] == SyncDaemon(B, IF, 7, maxlen=1472, port=8848, ttl=1, group="224.0.0.81")
    assert got[M] == SyncDaemon(M, IF, 9, maxlen=1000, port=9000, ttl=3, group="239.1.2.3")
    witness = ipvsadm("-L", "--daemon")
    assert f"master sync daemon (mcast={IF}, syncid=9, maxlen=1000, group=239.1.2.3, " \
           "port=9000, ttl=3)" in witness, witness
    assert f"backup sync daemon (mcast={IF}, syncid=7" in witness, witness
    with pytest.raises(DataPlaneError, match="EEXIST"):
        await dp.start_sync_daemon(SyncDaemon(B, IF, 7))
    await dp.stop_sync_daemon(M)
    await dp.start_sync_daemon(SyncDaemon(M, IF, 9, group="ff15::81"))
    got = {d.role: d for d in await dp.get_sync_daemons()}
    assert got[M].group == "ff15::81" and got[M].maxlen == 1500 - 48
    await dp.stop_sync_daemon(M)
    await dp.stop_sync_daemon(B)
    assert await dp.get_sync_daemons() == ()
    with pytest.raises(DataPlaneError, match="ESRCH"):
        await dp.stop_sync_daemon(B)
    with pytest.raises(DataPlaneError, match="ENODEV"):
        await dp.start_sync_daemon(SyncDaemon(B, "nosuch9", 1))


async def test_reconciler_adopts_repairs_and_restarts_on_a_parameter_change(
        dp: IPVSDataPlane) -> None:
    want = [SyncDaemon(M, IF, 51), SyncDaemon(B, IF, 51)]
    await dp.start_sync_daemon(SyncDaemon(B, IF, 51))  # left by an earlier lvsd
    rec = Reconciler(dp)
    rec.set_sync_daemons(want, configured=True)
    res = await rec.start()
    assert [op.describe() for op in res.sync] == ["start sync daemon master ltsync0 syncid 51"]
    assert "master sync daemon" in ipvsadm("-L", "--daemon")
    ipvsadm("--stop-daemon", "backup")  # by hand
    res = await rec.reconcile("sweep")
    assert [op.describe() for op in res.sync] == ["start sync daemon backup ltsync0 syncid 51"]
    assert res.repairs == 1
    rec.set_sync_daemons([SyncDaemon(M, IF, 51), SyncDaemon(B, IF, 51, maxlen=1200)],
                         configured=True)
    res = await rec.reconcile("change")
    assert [op.describe() for op in res.sync] == [
        "stop sync daemon backup", "start sync daemon backup ltsync0 syncid 51 maxlen 1200"]
    assert "backup sync daemon (mcast=ltsync0, syncid=51, maxlen=1200" in \
        ipvsadm("-L", "--daemon")
    assert (await rec.reconcile("sweep")).sync == ()
    assert rec.status.in_sync
