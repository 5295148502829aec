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

It also holds the IPVS connection timeouts (:class:`~lvsd.dataplane.base.TimeoutHolder`),
starting at the kernel's defaults (tcp 900, tcpfin 120, udp 300: ip_vs_proto_tcp.c /
ip_vs_proto_udp.c) and following the kernel's rules for a write (ip_vs_ctl.c
``ip_vs_set_timeout``: a field left out or 0 keeps its value, a value above INT_MAX/HZ is
EINVAL); :meth:`MemoryDataPlane.drift_timeouts` changes them by hand (``ipvsadm --set``) and
:meth:`MemoryDataPlane.fail_timeouts` makes timeout reads or writes fail.

And the IPVS connection sync daemons (:class:`~lvsd.dataplane.base.SyncDaemonHolder`): one per
role, started with the kernel's defaults filled in and its maxlen clamp (ip_vs_sync.c
start_sync_thread; the MTU taken as 1500), a second start of a role EEXIST, a stop of one not
running ESRCH; :meth:`MemoryDataPlane.drift_stop_daemon` stops one by hand (``ipvsadm
--stop-daemon``) and :meth:`MemoryDataPlane.fail_sync` makes the next sync calls fail.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from lvsd.dataplane.base import DataPlaneError
from lvsd.pool.syncd import (
    DEFAULT_GROUP,
    DEFAULT_PORT,
    DEFAULT_TTL,
    SyncDaemon,
    SyncRole,
    kernel_maxlen,
)
from lvsd.pool.table import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DestKey,
    DestSpec,
    DestStats,
    EditDest,
    EditService,
    Op,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Table,
    Timeouts,
    describe,
)

#: the kernel's initial values (net/netfilter/ipvs/ip_vs_proto_tcp.c, ip_vs_proto_udp.c)
KERNEL_DEFAULT_TIMEOUTS = Timeouts(tcp=900, tcp_fin=120, udp=300)
#: the kernel refuses a timeout above INT_MAX / HZ seconds (ip_vs_set_timeout; HZ=250 on Debian)
KERNEL_MAX_TIMEOUT = (2**31 - 1) // 250

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


def set_timeouts(have: Timeouts, write: Timeouts) -> Timeouts:
    """``have`` after a write of ``write``, with the kernel's rules (ip_vs_ctl.c
    ``ip_vs_set_timeout``: every value is checked first, then each non-zero one is set)."""
    for f, v in write.items():
        if not 0 <= v <= KERNEL_MAX_TIMEOUT:
            raise DataPlaneError(f"set timeouts {write}: {f} {v}: Invalid argument (EINVAL)")
    return Timeouts(**{f: (getattr(write, f) or getattr(have, f)) for f in ("tcp", "tcp_fin",
                                                                          "udp")})


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
        self._timeouts = KERNEL_DEFAULT_TIMEOUTS
        self.timeout_reads = 0
        self.timeout_writes: list[Timeouts] = []  # every successful set_timeouts, as asked
        self._timeout_faults: list[tuple[int, bool, bool]] = []  # (count, transient, writes)
        self._daemons: dict[SyncRole, SyncDaemon] = {}
        self.sync_calls: list[str] = []  # every successful start/stop, described
        self.sync_reads = 0
        self._sync_faults = 0

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

    # --- TimeoutHolder ----------------------------------------------------------------------

    async def get_timeouts(self) -> Timeouts:
        self._maybe_fail_timeouts(write=False)
        self.timeout_reads += 1
        return self._timeouts

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        self._maybe_fail_timeouts(write=True)
        self._timeouts = set_timeouts(self._timeouts, timeouts)
        self.timeout_writes.append(timeouts)

    # --- SyncDaemonHolder -------------------------------------------------------------------

    async def get_sync_daemons(self) -> tuple[SyncDaemon, ...]:
        self._maybe_fail_sync("get sync daemons")
        self.sync_reads += 1
        return tuple(self._daemons[r] for r in (SyncRole.MASTER, SyncRole.BACKUP)
                     if r in self._daemons)

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        self._maybe_fail_sync(f"start sync daemon {daemon.role.value}")
        if daemon.role in self._daemons:
            raise DataPlaneError(f"start sync daemon {daemon.role.value}: File exists (EEXIST)")
        hlen = 48 if daemon.group is not None and ":" in daemon.group else 28
        self._daemons[daemon.role] = SyncDaemon(
            daemon.role, daemon.interface, daemon.sync_id,
            kernel_maxlen(daemon.role, daemon.maxlen, daemon.group)
            if daemon.maxlen else 1500 - hlen,
            daemon.port or DEFAULT_PORT, daemon.ttl or DEFAULT_TTL,
            daemon.group or DEFAULT_GROUP)
        self.sync_calls.append(f"start {daemon.describe()}")

    async def stop_sync_daemon(self, role: SyncRole) -> None:
        self._maybe_fail_sync(f"stop sync daemon {role.value}")
        if self._daemons.pop(role, None) is None:
            raise DataPlaneError(f"stop sync daemon {role.value}: No such process (ESRCH)")
        self.sync_calls.append(f"stop {role.value}")

    # --- test hooks -------------------------------------------------------------------------

    @property
    def sync_daemons(self) -> dict[SyncRole, SyncDaemon]:
        return dict(self._daemons)

    def drift_stop_daemon(self, role: SyncRole) -> None:
        """Stop a sync daemon behind the reconciler's back (``ipvsadm --stop-daemon``)."""
        self._daemons.pop(role, None)

    def fail_sync(self, count: int = 1) -> None:
        """Make the next ``count`` sync daemon calls raise a non-transient error."""
        self._sync_faults += count

    def _maybe_fail_sync(self, what: str) -> None:
        if self._sync_faults > 0:
            self._sync_faults -= 1
            raise DataPlaneError(f"{what}: No such device (ENODEV)")

    @property
    def table(self) -> dict[ServiceKey, ServiceEntry]:
        return freeze(self._table)

    def drift(self, op: Op) -> None:
        """Change the table behind the reconciler's back (like a hand-typed ipvsadm)."""
        apply_op(self._table, op)

    @property
    def timeouts(self) -> Timeouts:
        return self._timeouts

    def drift_timeouts(self, timeouts: Timeouts) -> None:
        """Change the timeouts behind the reconciler's back (like ``ipvsadm --set``)."""
        self._timeouts = set_timeouts(self._timeouts, timeouts)

    def fail_timeouts(self, count: int = 1, *, transient: bool = True,
                      writes_only: bool = False) -> None:
        """Make the next ``count`` timeout reads and writes (or writes only) raise."""
        self._timeout_faults.append((count, transient, writes_only))

    def _maybe_fail_timeouts(self, *, write: bool) -> None:
        for i, (count, transient, writes_only) in enumerate(self._timeout_faults):
            if count > 0 and (write or not writes_only):
                self._timeout_faults[i] = (count - 1, transient, writes_only)
                what = "set timeouts" if write else "get timeouts"
                raise DataPlaneError(f"{what}: Resource temporarily unavailable (EAGAIN)"
                                     if transient else f"{what}: Invalid argument (EINVAL)",
                                     transient=transient)

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
