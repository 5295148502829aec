"""Scoped reads: ``dump(services)`` and the change-triggered reconcile that reads only what changed.

Against the in-memory data plane (kernel IPVS's rules and errors; its read counters show what
each reconcile read). The kernel's scoped dump is tested in tests/kernel/guest/test_scoped_dump.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lvsd.dataplane.base import DataPlane, ServiceLister
from lvsd.dataplane.memory import MemoryDataPlane
from lvsd.pool.reconciler import Reconciler
from lvsd.pool.table import (
    AddDest,
    DelDest,
    DelService,
    DestKey,
    DestSpec,
    EditDest,
    EditService,
    Op,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Table,
    op_service,
)

pytestmark = pytest.mark.unit

KEYS = [ServiceKey.for_addr(f"192.0.2.{10 + i}", 80, Proto.TCP) for i in range(8)]
A, B, C, D = KEYS[:4]
FOREIGN = ServiceKey.for_addr("198.51.100.1", 22, Proto.TCP)
R1, R2, R3 = DestKey("10.0.0.1", 80), DestKey("10.0.0.2", 80), DestKey("10.0.0.3", 80)


def entry(key: ServiceKey, *dests: tuple[DestKey, int], sched: str = "wlc") -> ServiceEntry:
    return ServiceEntry(ServiceSpec(key, sched), {k: DestSpec(k, w) for k, w in dests})


def table(**changes: ServiceEntry | None) -> dict[ServiceKey, ServiceEntry]:
    """The eight-service desired table; ``a=...`` replaces (None removes) service A etc."""
    out = {k: entry(k, (R1, 1), (R2, 2)) for k in KEYS}
    for name, e in changes.items():
        k = {"a": A, "b": B, "c": C, "d": D}[name]
        if e is None:
            del out[k]
        else:
            out[k] = e
    return out


async def _nosleep(_: float) -> None:
    return None


def make(dp: DataPlane) -> Reconciler:
    return Reconciler(dp, sleep=_nosleep, clock=lambda: 1000.0)


def services_of(ops: Sequence[Op]) -> set[ServiceKey]:
    return {op_service(op) for op in ops}


async def started(initial: Table | None = None) -> tuple[MemoryDataPlane, Reconciler]:
    dp = MemoryDataPlane(initial)
    rec = make(dp)
    rec.set_desired(table())
    assert (await rec.start()).ok
    assert rec.status.last_read == "full" and dp.dumps == 1
    dp.ops.clear()
    return dp, rec


# ------------------------------------------------------------------- the data plane contract


async def test_memory_scoped_dump_returns_exactly_the_requested_services_fresh() -> None:
    dp = MemoryDataPlane({A: entry(A, (R1, 1), (R2, 2)), B: entry(B, (R3, 5)),
                          FOREIGN: entry(FOREIGN, (R1, 9))})
    assert isinstance(dp, DataPlane) and isinstance(dp, ServiceLister)
    got = await dp.dump([A, C, FOREIGN])  # C is not held: simply absent
    assert got == {A: entry(A, (R1, 1), (R2, 2)), FOREIGN: entry(FOREIGN, (R1, 9))}
    assert await dp.dump([]) == {}
    dp.drift(EditDest(A, DestSpec(R1, 7)))  # fresh: a later read sees a hand edit
    assert (await dp.dump({A}))[A].dests[R1].weight == 7
    assert set(await dp.dump()) == {A, B, FOREIGN}  # None: everything, as before
    assert await dp.dump_services() == {A: ServiceSpec(A), B: ServiceSpec(B),
                                         FOREIGN: ServiceSpec(FOREIGN)}
    assert (dp.dumps, dp.scoped_dumps, dp.service_lists) == (1, 3, 1)
    assert dp.services_read == 2 + 0 + 1 + 3


# ------------------------------------------------------------------- change-triggered reconcile


async def test_change_reads_and_touches_only_the_changed_service() -> None:
    dp, rec = await started()
    before = dp.services_read
    rec.set_desired(table(b=entry(B, (R1, 1), (R2, 9))))
    res = await rec.reconcile("change")
    assert res.ok and res.ops == (EditDest(B, DestSpec(R2, 9)),)
    # one cheap service list, one scoped read of B only, no full dump
    assert (dp.dumps, dp.scoped_dumps, dp.service_lists) == (1, 1, 1)
    assert dp.services_read - before == 1
    st = rec.status
    assert st.last_read == "scoped 1" and (st.full_reads, st.scoped_reads) == (1, 1)
    assert st.actual == dp.table  # the kept view includes what was just applied
    assert res.repairs == 0


async def test_change_that_changes_nothing_reads_no_destinations() -> None:
    dp, rec = await started()
    rec.set_desired(table())  # equal values, new objects (a health event that moved nothing)
    res = await rec.reconcile("change")
    assert res.ok and res.ops == ()
    assert (dp.dumps, dp.scoped_dumps) == (1, 0) and rec.status.last_read == "none"


async def test_removed_and_added_services_are_in_the_scope() -> None:
    dp, rec = await started()
    new = table(c=None)
    new[FOREIGN] = entry(FOREIGN, (R3, 1))
    rec.set_desired(new)
    res = await rec.reconcile("change")
    assert res.ok and services_of(res.ops) == {C, FOREIGN}
    assert DelService(C) in res.ops and C not in rec.owned
    assert dp.dumps == 1 and rec.status.last_read == "scoped 2"
    assert dp.table == new and rec.status.actual == new


async def test_dest_drift_in_an_untouched_service_waits_for_the_sweep() -> None:
    dp, rec = await started()
    dp.drift(DelDest(C, R1))  # by hand, in a service the next change does not touch
    rec.set_desired(table(a=entry(A, (R1, 3), (R2, 2))))
    res = await rec.reconcile("change")
    assert services_of(res.ops) == {A}  # C was not read: a change costs what changed
    assert C not in services_of(dp.ops)
    assert dp.table[C].dests.keys() == {R2}
    res = await rec.reconcile("sweep")  # the sweep reads everything and repairs it
    assert res.ops == (AddDest(C, DestSpec(R1, 1)),) and res.repairs == 1
    assert rec.status.last_read == "full" and dp.dumps == 2
    assert dp.table == table(a=entry(A, (R1, 3), (R2, 2))) and rec.status.actual == dp.table


async def test_service_drift_is_seen_by_the_service_list_at_the_next_change() -> None:
    dp, rec = await started()
    dp.drift(DelService(C))  # ipvsadm -D
    dp.drift(EditService(ServiceSpec(D, "rr")))  # ipvsadm -E
    rec.set_desired(table(a=entry(A, (R1, 3), (R2, 2))))
    res = await rec.reconcile("change")
    assert res.ok and services_of(res.ops) == {A, C, D}
    assert res.repairs == 4  # C back (service + 2 dests), D's scheduler; A is the change
    assert dp.dumps == 1 and rec.status.last_read == "scoped 3"
    assert dp.table == table(a=entry(A, (R1, 3), (R2, 2)))


async def test_foreign_services_are_never_read_by_a_change() -> None:
    dp, rec = await started({FOREIGN: entry(FOREIGN, (R1, 9))})
    dp.drift(DelDest(FOREIGN, R1))
    rec.set_desired(table(a=entry(A, (R1, 3))))
    res = await rec.reconcile("change")
    assert services_of(res.ops) == {A} and dp.table[FOREIGN] == entry(FOREIGN)


async def test_large_change_failure_and_forcing_take_a_full_read() -> None:
    dp, rec = await started()
    # more than half of the table changed: one full read is cheaper than many scoped ones
    rec.set_desired({k: entry(k, (R1, 4)) for k in KEYS})
    assert (await rec.reconcile("change")).ok and rec.status.last_read == "full"
    # a failed change: the next reconcile trusts nothing it kept and reads everything
    dp.fail_next(1000, transient=False, match=lambda op: op is not None)
    rec.set_desired({k: entry(k, (R1, 4)) for k in KEYS} | {A: entry(A, (R1, 5))})
    assert not (await rec.reconcile("change")).ok
    dp._faults.clear()
    full_before = dp.dumps
    assert (await rec.reconcile("change")).ok
    assert dp.dumps == full_before + 1 and rec.status.last_read == "full"
    # an explicit full=True
    assert (await rec.reconcile("change", full=True)).ops == ()
    assert dp.dumps == full_before + 2


async def test_status_view_is_a_snapshot_not_a_live_alias() -> None:
    _dp, rec = await started()
    seen = rec.status.actual
    rec.set_desired(table(a=entry(A, (R1, 3))))
    await rec.reconcile("change")
    assert seen[A] == entry(A, (R1, 1), (R2, 2))  # the earlier snapshot did not move
    assert rec.status.actual[A] == entry(A, (R1, 3))
    with pytest.raises(TypeError):
        rec.status.actual[A] = entry(A)  # type: ignore[index]
