"""The reconciler against the in-memory data plane (same rules and errors as the kernel)."""

from __future__ import annotations

import logging

import pytest

from lvsd.dataplane.memory import MemoryDataPlane
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.table import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DestKey,
    DestSpec,
    EditDest,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
)

pytestmark = pytest.mark.unit

A = ServiceKey.for_addr("192.0.2.10", 80, Proto.TCP)
B = ServiceKey.for_addr("192.0.2.11", 443, Proto.TCP)
FOREIGN = ServiceKey.for_addr("198.51.100.1", 22, Proto.TCP)
R1, R2 = DestKey("10.0.0.1", 80), DestKey("10.0.0.2", 80)


def entry(key: ServiceKey, *dests: tuple[DestKey, int], sched: str = "wlc") -> ServiceEntry:
    return ServiceEntry(ServiceSpec(key, sched), {k: DestSpec(k, w) for k, w in dests})


async def _nosleep(_: float) -> None:
    return None


def make(dp: MemoryDataPlane, **kw: object) -> Reconciler:
    kw.setdefault("sleep", _nosleep)
    kw.setdefault("clock", lambda: 1000.0)
    return Reconciler(dp, **kw)  # type: ignore[arg-type]


async def test_start_adopts_without_deletes_and_leaves_foreign_alone() -> None:
    desired = {A: entry(A, (R1, 3), (R2, 1)), B: entry(B, (R1, 1))}
    foreign = entry(FOREIGN, (R2, 9))
    dp = MemoryDataPlane({A: entry(A, (R1, 3), (R2, 1)), FOREIGN: foreign})
    rec = make(dp)
    rec.set_desired(desired)
    res = await rec.start()
    assert res.ok
    assert not any(isinstance(op, DelService | DelDest) for op in dp.ops)
    assert dp.ops == [AddService(ServiceSpec(B)), AddDest(B, DestSpec(R1, 1))]
    assert dp.table[FOREIGN] == foreign
    assert rec.status.in_sync and rec.status.repairs == 0
    again = await rec.reconcile("sweep")
    assert again.ops == ()


async def test_lvs_flush_flushes_at_start_and_flush_on_stop_modes() -> None:
    dp = MemoryDataPlane({A: entry(A, (R1, 1)), FOREIGN: entry(FOREIGN, (R2, 1))})
    rec = make(dp, flush_on_start=True, flush_on_stop="vs")
    rec.set_desired({A: entry(A, (R1, 1))})
    await rec.start()
    assert DelService(FOREIGN) in dp.ops and DelService(A) in dp.ops
    assert set(dp.table) == {A}
    dp.drift(AddService(ServiceSpec(FOREIGN)))
    await rec.stop()
    assert set(dp.table) == {FOREIGN}  # "vs": only ours
    dp2 = MemoryDataPlane({FOREIGN: entry(FOREIGN)})
    rec2 = make(dp2)
    rec2.set_desired({A: entry(A, (R1, 1))})
    await rec2.start()
    await rec2.stop()
    assert set(dp2.table) == {A, FOREIGN}  # default: table left as it is
    rec3 = make(dp2, flush_on_stop="all")
    await rec3.stop()
    assert dp2.table == {}


async def test_drift_repaired_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    dp = MemoryDataPlane()
    rec = make(dp)
    rec.set_desired({A: entry(A, (R1, 3), (R2, 1))})
    await rec.start()
    dp.drift(DelDest(A, R1))  # ipvsadm -d
    dp.drift(EditDest(A, DestSpec(R2, 50)))  # ipvsadm -e
    dp.drift(AddDest(A, DestSpec(DestKey("10.9.9.9", 80), 1)))  # ipvsadm -a
    with caplog.at_level(logging.WARNING, "lvsd.pool.reconciler"):
        res = await rec.reconcile("sweep")
    assert res.repairs == 3 and rec.status.repairs == 3
    assert dp.table[A] == entry(A, (R1, 3), (R2, 1))
    assert sum("repair" in r.message for r in caplog.records) == 3


async def test_transient_error_retried_then_succeeds() -> None:
    dp = MemoryDataPlane()
    rec = make(dp, retry_attempts=4)
    rec.set_desired({A: entry(A, (R1, 1))})
    dp.fail_next(2, transient=True, match=lambda op: isinstance(op, AddDest))
    dp.fail_next(1, transient=True, match=lambda op: op is None)  # one dump fails too
    res = await rec.start()
    assert res.ok and dp.table == {A: entry(A, (R1, 1))}
    assert rec.status.alarms == ()


async def test_persistent_error_becomes_alarm_not_dropped() -> None:
    dp = MemoryDataPlane()
    rec = make(dp, retry_attempts=3)
    rec.set_desired({A: entry(A, (R1, 1), (R2, 1)), B: entry(B, (R1, 1))})
    dp.fail_next(1000, transient=True, match=lambda op: isinstance(op, AddDest)
                 and op.dest.key == R2)
    dp.fail_next(1000, transient=False, match=lambda op: isinstance(op, AddService)
                 and op.spec.key == B, message="Invalid argument (EINVAL)")
    res = await rec.start()
    assert not res.ok
    alarms = {a.op: a for a in rec.status.alarms}
    assert "add dest 10.0.0.2:80 to TCP 192.0.2.10:80 weight 1 masq" in alarms
    assert alarms["add service TCP 192.0.2.11:443 sched wlc"].error.endswith("(EINVAL)")
    assert not alarms["add service TCP 192.0.2.11:443 sched wlc"].transient
    assert "skipped" in alarms["add dest 10.0.0.1:80 to TCP 192.0.2.11:443 weight 1 masq"].error
    assert dp.table[A].dests.keys() == {R1}  # the rest went through
    assert not rec.status.in_sync
    res = await rec.reconcile("sweep")  # still failing: alarm kept, counted
    assert rec.status.alarms and max(a.count for a in rec.status.alarms) == 2
    dp._faults.clear()  # the kernel recovers
    res = await rec.reconcile("sweep")
    assert res.ok and rec.status.alarms == () and rec.status.in_sync
    assert res.repairs == 0  # finishing a failed change is not a drift repair


async def test_dump_failure_is_an_alarm() -> None:
    dp = MemoryDataPlane()
    rec = make(dp, retry_attempts=2)
    rec.set_desired({A: entry(A)})
    dp.fail_next(2, transient=True, match=lambda op: op is None)
    res = await rec.start()
    assert [a.op for a in res.failed] == ["dump"]
    assert (await rec.reconcile()).ok


async def test_reload_drops_removed_service_but_restart_does_not_know_it() -> None:
    dp = MemoryDataPlane()
    rec = make(dp)
    rec.set_desired({A: entry(A, (R1, 1)), B: entry(B, (R1, 1))})
    await rec.start()
    rec.set_desired({A: entry(A, (R1, 1))})
    res = await rec.reconcile()
    assert res.ops == (DelService(B),) and B not in rec.owned
    # a fresh process only owns its config's services
    dp.drift(AddService(ServiceSpec(B)))
    rec2 = make(dp)
    rec2.set_desired({A: entry(A, (R1, 1))})
    res = await rec2.start()
    assert res.ops == () and B in dp.table


def test_bad_flush_on_stop_named() -> None:
    with pytest.raises(ValueError, match="lvs_flush_on_stop"):
        Reconciler(MemoryDataPlane(), flush_on_stop="yes")


async def test_memory_plane_follows_kernel_rules() -> None:
    from lvsd.dataplane.base import DataPlane, DataPlaneError

    dp = MemoryDataPlane()
    assert isinstance(dp, DataPlane)
    with pytest.raises(DataPlaneError, match="ESRCH"):
        await dp.apply(AddDest(A, DestSpec(R1)))
    await dp.apply(AddService(ServiceSpec(A)))
    with pytest.raises(DataPlaneError, match="EEXIST"):
        await dp.apply(AddService(ServiceSpec(A)))
    with pytest.raises(DataPlaneError, match="ENOENT"):
        await dp.apply(DelDest(A, R1))
