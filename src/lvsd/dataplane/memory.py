"""A data plane held in memory: the same interface as kernel IPVS, for demos and tests.

Theory of operation
-------------------
The table is a dict of services, each with a dict of destinations. Operations follow the
kernel's rules and errors (adding what exists is EEXIST, editing or deleting what does not is
ENOENT / ESRCH, a destination needs its service), so code that works here behaves the same
against IPVS. :func:`apply_op` is shared with the nftables data plane, which computes its next
state the same way before writing it in one transaction.

Tests can make it misbehave: :meth:`MemoryDataPlane.drift` changes the table behind the
reconciler's back (what ``ipvsadm -d`` / ``-e`` by hand does), and
:meth:`MemoryDataPlane.fail_next` makes the next operations (or dumps) raise
:class:`DataPlaneError`, transient or not.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from lvsd.dataplane.base import DataPlaneError, DestStats
from lvsd.pool.table import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DestKey,
    DestSpec,
    EditDest,
    EditService,
    Op,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Table,
    describe,
)

MutableTable = dict[ServiceKey, tuple[ServiceSpec, dict[DestKey, DestSpec]]]


def to_mutable(table: Table) -> MutableTable:
    return {k: (e.spec, dict(e.dests)) for k, e in table.items()}


def freeze(table: MutableTable) -> dict[ServiceKey, ServiceEntry]:
    return {k: ServiceEntry(spec, dict(dests)) for k, (spec, dests) in table.items()}


def apply_op(table: MutableTable, op: Op) -> None:
    """Apply one operation to ``table`` in place, with the kernel's error rules."""
    match op:
        case AddService(spec):
            if spec.key in table:
                raise DataPlaneError(f"{describe(op)}: File exists (EEXIST)")
            table[spec.key] = (spec, {})
        case EditService(spec):
            if spec.key not in table:
                raise DataPlaneError(f"{describe(op)}: No such process (ESRCH)")
            table[spec.key] = (spec, table[spec.key][1])
        case DelService(key):
            if key not in table:
                raise DataPlaneError(f"{describe(op)}: No such process (ESRCH)")
            del table[key]
        case AddDest(svc, dest):
            if svc not in table:
                raise DataPlaneError(f"{describe(op)}: No such process (ESRCH)")
            if dest.key in table[svc][1]:
                raise DataPlaneError(f"{describe(op)}: File exists (EEXIST)")
            table[svc][1][dest.key] = dest
        case EditDest(svc, dest):
            if svc not in table:
                raise DataPlaneError(f"{describe(op)}: No such process (ESRCH)")
            if dest.key not in table[svc][1]:
                raise DataPlaneError(f"{describe(op)}: No such file or directory (ENOENT)")
            table[svc][1][dest.key] = dest
        case DelDest(svc, key):
            if svc not in table:
                raise DataPlaneError(f"{describe(op)}: No such process (ESRCH)")
            if key not in table[svc][1]:
                raise DataPlaneError(f"{describe(op)}: No such file or directory (ENOENT)")
            del table[svc][1][key]
        case _:  # pragma: no cover
            raise DataPlaneError(f"unknown operation {op!r}")


@dataclass(slots=True)
class _Fault:
    count: int
    transient: bool
    match: Callable[[Op | None], bool]
    message: str


class MemoryDataPlane:
    """In-memory IPVS lookalike. ``ops`` records every operation applied (for tests/demos).

    Read counters, for tests: ``dumps`` full dumps, ``scoped_dumps`` scoped ones,
    ``services_read`` services returned with their destinations by any dump (what a scoped
    read saves), ``service_lists`` calls of :meth:`dump_services`.
    """

    name = "memory"

    def __init__(self, initial: Table | None = None) -> None:
        self._table: MutableTable = to_mutable(initial or {})
        self.ops: list[Op] = []
        self.dumps = 0
        self.scoped_dumps = 0
        self.services_read = 0
        self.service_lists = 0
        self._faults: list[_Fault] = []
        self.closed = False

    # --- DataPlane --------------------------------------------------------------------------

    def refuse(self, spec: ServiceSpec | DestSpec) -> str | None:
        return None

    async def dump(self, services: Collection[ServiceKey] | None = None) -> Table:
        self._maybe_fail(None)
        if services is None:
            self.dumps += 1
            out = freeze(self._table)
        else:
            self.scoped_dumps += 1
            out = freeze({k: self._table[k] for k in services if k in self._table})
        self.services_read += len(out)
        return out

    async def dump_services(self) -> dict[ServiceKey, ServiceSpec]:
        self._maybe_fail(None)
        self.service_lists += 1
        return {k: spec for k, (spec, _) in self._table.items()}

    async def apply(self, op: Op) -> None:
        self._maybe_fail(op)
        apply_op(self._table, op)
        self.ops.append(op)

    async def apply_many(self, ops: Sequence[Op]) -> None:
        for op in ops:  # not atomic, like IPVS: the reconciler re-dumps after a failure
            await self.apply(op)

    async def stats(self) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        return {}

    async def close(self) -> None:
        self.closed = True

    # --- test hooks -------------------------------------------------------------------------

    @property
    def table(self) -> dict[ServiceKey, ServiceEntry]:
        return freeze(self._table)

    def drift(self, op: Op) -> None:
        """Change the table behind the reconciler's back (like a hand-typed ipvsadm)."""
        apply_op(self._table, op)

    def fail_next(self, count: int = 1, *, transient: bool = True,
                  match: Callable[[Op | None], bool] | None = None,
                  message: str = "Resource temporarily unavailable (EAGAIN)") -> None:
        """Make the next ``count`` calls matching ``match`` raise. ``match(None)`` is a dump."""
        self._faults.append(_Fault(count, transient, match or (lambda _op: True), message))

    def _maybe_fail(self, op: Op | None) -> None:
        for f in self._faults:
            if f.count > 0 and f.match(op):
                f.count -= 1
                what = "dump" if op is None else describe(op)
                raise DataPlaneError(f"{what}: {f.message}", transient=f.transient)
        self._faults = [f for f in self._faults if f.count > 0]
