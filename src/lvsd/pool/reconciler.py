"""The reconciler: the one owner of the data plane.

Theory of operation
-------------------
The planner says what the table must be; the data plane says what it is. The reconciler makes
the second equal the first, for the services lvsd owns, and does nothing else.

* :func:`diff` is pure: ``diff(desired, actual, owned)`` returns the minimal ordered list of
  operations that turns ``actual`` into ``desired`` on the owned services. Services that are not
  owned are never read for changes nor touched. Per service: missing service -> one
  ``AddService`` then one ``AddDest`` per destination; differing settings -> ``EditService``;
  missing / differing / extra destinations -> ``AddDest`` / ``EditDest`` / ``DelDest``; an owned
  service that is no longer desired -> one ``DelService`` (the kernel drops its destinations).
  Adds and edits come before deletes, services before their destinations, so traffic always has
  somewhere to go. Applying the result to ``actual`` gives ``desired`` on owned keys; diffing
  again gives nothing (idempotent).
* Comparison ignores what a data plane cannot show differently: the persistence granularity of
  a non-persistent service, the default granularity (/32, /128) spelled or not, tunnel fields of
  a non-tunnel destination, scheduler name case.
* :class:`Reconciler` is the async shell. Every reconcile diffs against a *fresh* read of the
  data plane, then applies. It has no loop of its own: its caller (the pool service,
  :mod:`lvsd.pool.service`) reconciles after every change and on a periodic sweep (reason
  ``"sweep"``), so an entry changed by hand (``ipvsadm -d`` / ``-e``) is repaired within one
  sweep. An operation on a service whose desired entry has not changed since the
  desired table was last reached is drift: it is logged as a repair and counted.
* What is read. The start, every sweep, any reconcile after a failure, and a data plane whose
  ``dump`` takes no ``services`` read *everything* (``dump()``). Any other (change-triggered)
  reconcile reads fresh only the services whose desired entry differs from the table last
  reached (entries are frozen values and the planner reuses unchanged ones, so this is an
  identity/equality test per service), plus the owned services awaiting deletion, plus, when
  the data plane is a :class:`~lvsd.dataplane.base.ServiceLister`, every owned service whose
  settings in the cheap service list differ from the desired ones or that vanished (a service
  deleted or edited by hand is repaired at the next change, not only at the next sweep). It
  diffs and applies on those services only. When that scope is more than half of the table a
  full read is cheaper and is taken instead. Drift in the destinations of a service that did
  not change is repaired by the next sweep, as before (keepalived re-reads nothing at all).
* The reconciler keeps its view of the table (:attr:`ReconcilerStatus.actual`): the last full
  read, with every scoped read and every applied operation folded in, so the status page needs
  no read of its own. It is exact after a full read and may miss a hand edit of an unchanged
  service until the next sweep.
* Ownership: the services of the current desired table, plus services of earlier desired tables
  until they have been deleted (a reload that drops a virtual server deletes its services).
  After a restart only the current config's services are owned: a service dropped from the
  config while lvsd was stopped is left alone.
* Start: the first reconcile *adopts* what the data plane holds: entries that already match
  cause no operation, so a restart moves no traffic. With ``lvs_flush`` the whole table is
  flushed first (keepalived ``lvs_flush``). Stop: the table is left as it is, unless
  ``lvs_flush_on_stop`` is ``all`` (every service) or ``vs`` (the owned services). (keepalived
  removes its own services on stop by default; lvsd deliberately does not, so a restart or an
  upgrade never drops a connection.)
* Errors: :class:`DataPlaneError` with ``transient`` set is retried with tenacity, bounded
  (``retry_attempts``, exponential wait), each retry re-dumping and re-diffing, since a batch
  may have been partly applied. When a batch still fails, operations are applied one at a time
  (each retried) so a bad one cannot block the rest; every operation that still fails becomes
  an :class:`Alarm` in the status (with the op and the error) and a log error. Alarms clear when
  a later reconcile applies everything. Nothing is dropped silently: the next sweep tries again.
* Connection timeouts (keepalived ``lvs_timeouts``; :meth:`Reconciler.set_timeouts`): the
  kernel's three global IPVS timeouts (TCP, TCP FIN-wait, UDP) are owned the same way, field by
  field, through the data plane's optional :class:`~lvsd.dataplane.base.TimeoutHolder`.
  :func:`timeouts_write` is the pure diff. The desired value of a field is the configured one;
  a field lvsd changed and that is no longer configured (the keyword, or that option of it,
  dropped by a reload) is desired back at the value the kernel had before lvsd first wrote it
  (keepalived: check_daemon.c start_check sets them, or with none configured on a reload
  restores the originals, libipvs.c ``ipvs_set_timeout`` saving those at the first change); any
  other field is not lvsd's and is never written. They are read fresh (one request) at the
  start, every sweep, whenever the desired value changed and after a failure, and written only
  where the kernel differs, only those fields (start adopts equal values: no write). A write
  while the desired value is unchanged is drift (``ipvsadm --set`` by hand): logged as a repair
  and counted. A failure is an alarm like any operation's and is retried on every reconcile.
  On :meth:`Reconciler.stop` the changed fields are restored to their saved values, as
  keepalived's ``ipvs_stop`` does (ipvswrapper.c) whatever ``lvs_flush_on_stop`` says; a
  reload never passes through the originals (keepalived restores then sets them again). A
  data plane without timeouts (nftables) ignores ``lvs_timeouts`` with one warning.
* Connection sync daemons (keepalived ``lvs_sync_daemon``; :meth:`Reconciler.set_sync_daemons`):
  the kernel's IPVS sync daemons (one per role) are owned the same way, through the data
  plane's optional :class:`~lvsd.dataplane.base.SyncDaemonHolder`. The pool service says which
  daemons it wants (:func:`lvsd.pool.syncd.desired_daemons`, from the VRRP state);
  :func:`lvsd.pool.syncd.sync_ops` is the pure diff. They are read fresh (one dump) at the
  start (a restart adopts daemons already running with the wanted parameters: no operation),
  every sweep (a daemon stopped by hand, ``ipvsadm --stop-daemon``, is started again: a repair,
  logged and counted), whenever the wanted daemons changed and after a failure. A reload that
  changes a daemon's parameters restarts that one (stop, start); one that changes nothing
  touches nothing. With ``lvs_sync_daemon`` configured lvsd owns both roles of its namespace;
  a reload that drops it stops the daemons lvsd ran. On :meth:`Reconciler.stop` they keep
  running (so the kernel goes on syncing across a restart of lvsd) unless
  ``lvs_flush_on_stop`` removes the table too (keepalived stops them at shutdown:
  vrrp_daemon.c, check_daemon.c). A failure is an alarm retried on every reconcile. A data
  plane without them (nftables) is refused at preflight; given one anyway, it is ignored with
  one warning.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from lvsd.dataplane.base import (
    DataPlane,
    DataPlaneError,
    ServiceLister,
    SyncDaemonHolder,
    TimeoutHolder,
)
from lvsd.pool.syncd import (
    StartDaemon,
    SyncDaemon,
    SyncOp,
    SyncRole,
    apply_sync_ops,
    changed_roles,
    sync_ops,
)
from lvsd.pool.table import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DestKey,
    DestSpec,
    EditDest,
    EditService,
    Fwd,
    Op,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Table,
    Timeouts,
    describe,
    op_service,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

FLUSH_ON_STOP = ("no", "all", "vs")
#: reconcile reasons that always read the whole data plane
FULL_REASONS = frozenset({"start", "sweep"})


# ------------------------------------------------------------------------------ pure diff


def norm_service(spec: ServiceSpec) -> ServiceSpec:
    """The comparable form of a service's settings."""
    timeout = spec.persistence_timeout or None
    gran = spec.persistence_granularity if timeout else None
    if timeout and gran in (None, "", "255.255.255.255", "128", "/128", "32", "/32"):
        gran = None
    return replace(spec, scheduler=spec.scheduler.lower(), flags=frozenset(spec.flags),
                   persistence_timeout=timeout, persistence_granularity=gran)


def norm_dest(dest: DestSpec) -> DestSpec:
    if dest.fwd is not Fwd.TUNNEL:
        return replace(dest, tun_type=0, tun_port=0, tun_flags=0)
    return dest


def _entry_ops(key: ServiceKey, want: ServiceEntry, have: ServiceEntry | None) -> list[Op]:
    ops: list[Op] = []
    dels: list[Op] = []
    if have is None:
        ops.append(AddService(want.spec))
        ops.extend(AddDest(key, want.dests[k]) for k in sorted(want.dests))
        return ops
    if want is have or want == have:
        return ops
    if want.spec != have.spec and norm_service(want.spec) != norm_service(have.spec):
        ops.append(EditService(want.spec))
    # sort only what changed (a service may have thousands of destinations, few of them moved)
    dest_ops: list[AddDest | EditDest] = []
    have_dests = have.dests
    for k, d in want.dests.items():
        cur = have_dests.get(k)
        if cur is None:
            dest_ops.append(AddDest(key, d))
        elif cur != d and norm_dest(cur) != norm_dest(d):
            dest_ops.append(EditDest(key, d))
    dest_ops.sort(key=lambda op: op.dest.key)
    ops.extend(dest_ops)
    present = len(want.dests) - sum(isinstance(op, AddDest) for op in dest_ops)
    if len(have_dests) > present:  # some destinations are not wanted
        dels.extend(DelDest(key, k) for k in sorted(k for k in have_dests if k not in want.dests))
    return ops + dels


def diff(desired: Table, actual: Table, owned: Iterable[ServiceKey] = ()) -> list[Op]:
    """Minimal ordered ops turning ``actual`` into ``desired`` on owned services.

    Every desired service is owned; ``owned`` adds services that lvsd owns but no longer wants
    (they are deleted). Anything else in ``actual`` is left alone.
    """
    owned_all = set(owned) | set(desired)
    adds: list[Op] = []
    deletes: list[Op] = []
    for key in sorted(desired):
        adds.extend(_entry_ops(key, desired[key], actual.get(key)))
    for key in sorted(owned_all - set(desired)):
        if key in actual:
            deletes.append(DelService(key))
    # dest deletes inside services go after every add/edit, service deletes last
    first = [op for op in adds if not isinstance(op, DelDest)]
    dest_dels = [op for op in adds if isinstance(op, DelDest)]
    return first + dest_dels + deletes


def apply_ops(table: Table, ops: Sequence[Op]) -> dict[ServiceKey, ServiceEntry]:
    """What ``table`` becomes after ``ops`` (pure; raises KeyError on an impossible op)."""
    out: dict[ServiceKey, tuple[ServiceSpec, dict[DestKey, DestSpec]]] = {
        k: (e.spec, dict(e.dests)) for k, e in table.items()}
    for op in ops:
        match op:
            case AddService(spec) | EditService(spec):
                out[spec.key] = (spec, out[spec.key][1] if spec.key in out else {})
            case DelService(key):
                del out[key]
            case AddDest(svc, dest) | EditDest(svc, dest):
                out[svc][1][dest.key] = dest
            case DelDest(svc, dkey):
                del out[svc][1][dkey]
    return {k: ServiceEntry(s, d) for k, (s, d) in out.items()}


class TimeoutValues(Protocol):
    """What :meth:`Reconciler.set_timeouts` takes: the config's ``lvs_timeouts`` or a
    :class:`Timeouts` (seconds; None or 0 = not configured, as in keepalived)."""

    @property
    def tcp(self) -> int | None: ...

    @property
    def tcp_fin(self) -> int | None: ...

    @property
    def udp(self) -> int | None: ...


def configured_timeouts(value: TimeoutValues | None) -> Timeouts:
    """The configured fields (keepalived: a 0 is "not set", global_parser.c lvs_timeouts)."""
    if value is None:
        return Timeouts()
    return Timeouts(value.tcp or None, value.tcp_fin or None, value.udp or None)


def wanted_timeouts(configured: Timeouts, saved: Timeouts) -> Timeouts:
    """Per field: the configured value, else the saved original of a field lvsd changed (to be
    restored), else None (not lvsd's)."""
    return replace(saved, **dict(configured.items()))


def timeouts_write(want: Timeouts, actual: Timeouts) -> Timeouts:
    """The minimal write: the wanted fields whose kernel value differs (empty: nothing)."""
    return Timeouts(**{f: v for f, v in want.items() if getattr(actual, f) != v})


# ------------------------------------------------------------------------------ async shell


@dataclass(frozen=True, slots=True)
class Alarm:
    op: str  # describe(op), or "dump"
    error: str
    transient: bool
    since: float
    count: int = 1


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    reason: str
    ops: tuple[Op, ...]  # applied
    repairs: int
    failed: tuple[Alarm, ...]
    timeouts: Timeouts | None = None  # the connection timeouts written, if any
    sync: tuple[SyncOp, ...] = ()  # sync daemon starts and stops applied

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def descriptions(self) -> tuple[str, ...]:
        """One ipvsadm-like line per write applied: the operations, then a timeouts write,
        then the sync daemon starts and stops."""
        out = tuple(describe(op) for op in self.ops)
        if self.timeouts is not None:
            out += (f"set timeouts {self.timeouts}",)
        return out + tuple(op.describe() for op in self.sync)


@dataclass(frozen=True, slots=True)
class ReconcilerStatus:
    dataplane: str
    last_reconcile: float | None
    last_reason: str
    reconciles: int
    ops_applied: int
    repairs: int
    alarms: tuple[Alarm, ...]
    owned: int
    in_sync: bool
    #: the reconciler's view of the data plane: last full read + later scoped reads + applied
    #: operations (read-only; replaced, never mutated, by each reconcile)
    actual: Mapping[ServiceKey, ServiceEntry] = field(default_factory=dict)
    actual_full_read_at: float | None = None  # clock of the last full read
    full_reads: int = 0
    scoped_reads: int = 0
    service_lists: int = 0
    last_read: str = ""  # "full", "none", or "scoped N" (N services) for the last reconcile
    #: connection timeouts: what lvsd wants per field (None: lvsd manages none), what the
    #: kernel held at the last read or write, the originals of the fields lvsd changed (restored
    #: on stop or when no longer configured), writes since start, and why they are ignored
    #: (a data plane without timeouts), else ""
    timeouts_desired: Timeouts | None = None
    timeouts_kernel: Timeouts | None = None
    timeouts_saved: Timeouts = field(default_factory=Timeouts)
    timeouts_writes: int = 0
    timeouts_ignored: str = ""
    #: connection sync daemons: what lvsd wants, what the kernel ran at the last read or
    #: write (None: never read), and why they are ignored (a data plane without them), else ""
    sync_desired: tuple[SyncDaemon, ...] = ()
    sync_kernel: tuple[SyncDaemon, ...] | None = None
    sync_ignored: str = ""


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, DataPlaneError) and exc.transient


class Reconciler:
    """The only writer of a :class:`DataPlane`."""

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        flush_on_start: bool = False,
        flush_on_stop: str = "no",
        retry_attempts: int = 4,
        retry_wait: float = 0.05,
        retry_wait_max: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeouts: TimeoutValues | None = None,
    ) -> None:
        if flush_on_stop not in FLUSH_ON_STOP:
            raise ValueError(f"lvs_flush_on_stop must be one of {FLUSH_ON_STOP}, "
                             f"not {flush_on_stop!r}")
        if retry_attempts < 1:
            raise ValueError("retry_attempts must be >= 1")
        self.dataplane = dataplane
        self.flush_on_start = flush_on_start
        self.flush_on_stop = flush_on_stop
        self.retry_attempts = retry_attempts
        self.retry_wait = retry_wait
        self.retry_wait_max = retry_wait_max
        self._clock = clock
        self._sleep = sleep
        self._desired: dict[ServiceKey, ServiceEntry] = {}
        self._owned: set[ServiceKey] = set()
        self._generation = 0
        self._converged_generation = -1
        self._lock = asyncio.Lock()
        self._alarms: dict[str, Alarm] = {}
        self._last_reconcile: float | None = None
        self._last_reason = ""
        self._reconciles = 0
        self._ops_applied = 0
        self._repairs = 0
        self._in_sync = False
        self._lister: ServiceLister | None = (
            dataplane if isinstance(dataplane, ServiceLister) else None)
        # the desired table last reached, what the next change-triggered reconcile diffs from
        self._reached: Mapping[ServiceKey, ServiceEntry] | None = None
        self._actual: Mapping[ServiceKey, ServiceEntry] = MappingProxyType({})
        self._actual_ok = False  # _actual is a full read plus what followed it
        self._actual_full_at: float | None = None
        self._full_reads = 0
        self._scoped_reads = 0
        self._service_lists = 0
        self._last_read = ""
        # connection timeouts (see the module docstring)
        self._tholder: TimeoutHolder | None = (
            dataplane if isinstance(dataplane, TimeoutHolder) else None)
        self._timeouts = configured_timeouts(timeouts)
        self._timeouts_saved = Timeouts()
        self._timeouts_reached: Timeouts | None = None  # the wanted value last reached
        self._timeouts_kernel: Timeouts | None = None
        self._timeouts_writes = 0
        self._timeout_alarm: Alarm | None = None
        self._timeouts_warned: Timeouts | None = None
        # connection sync daemons (see the module docstring)
        self._sholder: SyncDaemonHolder | None = (
            dataplane if isinstance(dataplane, SyncDaemonHolder) else None)
        self._sync_want: tuple[SyncDaemon, ...] = ()
        self._sync_reached: tuple[SyncDaemon, ...] | None = None
        self._sync_kernel: tuple[SyncDaemon, ...] | None = None
        self._sync_owned: set[SyncRole] = set()
        self._sync_changed: set[SyncRole] = set()
        self._sync_alarm: Alarm | None = None
        self._sync_warned = False

    # --- inputs -----------------------------------------------------------------------------

    def set_desired(self, table: Mapping[ServiceKey, ServiceEntry]) -> None:
        """New desired table (from the planner); the next reconcile makes the data plane so."""
        new = dict(table)
        if new == self._desired and self._generation > 0:
            return
        self._desired = new
        self._owned |= set(new)
        self._generation += 1

    def set_timeouts(self, timeouts: TimeoutValues | None) -> None:
        """New configured connection timeouts (``global_defs.lvs_timeouts``; None: none).
        The next reconcile writes what differs."""
        self._timeouts = configured_timeouts(timeouts)

    def set_sync_daemons(self, daemons: Sequence[SyncDaemon], *, configured: bool) -> None:
        """The sync daemons wanted now (``configured``: ``lvs_sync_daemon`` is in the config,
        so lvsd owns both roles). A role whose parameters change is restarted by the next
        reconcile; the others are left running."""
        new = tuple(daemons)
        self._sync_changed |= changed_roles(self._sync_want, new)
        self._sync_want = new
        if configured:
            self._sync_owned = set(SyncRole)

    @property
    def timeouts(self) -> Timeouts:
        """The configured connection timeouts (fields not configured are None)."""
        return self._timeouts

    @property
    def desired(self) -> Mapping[ServiceKey, ServiceEntry]:
        return self._desired

    @property
    def owned(self) -> frozenset[ServiceKey]:
        return frozenset(self._owned)

    @property
    def status(self) -> ReconcilerStatus:
        want = wanted_timeouts(self._timeouts, self._timeouts_saved)
        ignored = ""
        if self._tholder is None and not self._timeouts.empty:
            ignored = self._timeouts_unsupported()
        alarms = tuple(self._alarms.values())
        if self._timeout_alarm is not None:
            alarms += (self._timeout_alarm,)
        if self._sync_alarm is not None:
            alarms += (self._sync_alarm,)
        return ReconcilerStatus(
            dataplane=getattr(self.dataplane, "name", type(self.dataplane).__name__),
            last_reconcile=self._last_reconcile,
            last_reason=self._last_reason,
            reconciles=self._reconciles,
            ops_applied=self._ops_applied,
            repairs=self._repairs,
            alarms=alarms,
            owned=len(self._owned),
            in_sync=self._in_sync and self._timeout_alarm is None and (
                self._tholder is None or self._timeouts_reached == want) and (
                self._sync_alarm is None and (
                    self._sholder is None or self._sync_reached == self._sync_want)),
            actual=self._actual,
            actual_full_read_at=self._actual_full_at,
            full_reads=self._full_reads,
            scoped_reads=self._scoped_reads,
            service_lists=self._service_lists,
            last_read=self._last_read,
            timeouts_desired=None if want.empty or self._tholder is None else want,
            timeouts_kernel=self._timeouts_kernel,
            timeouts_saved=self._timeouts_saved,
            timeouts_writes=self._timeouts_writes,
            timeouts_ignored=ignored,
            sync_desired=self._sync_want,
            sync_kernel=self._sync_kernel,
            sync_ignored=self._sync_unsupported() if (
                self._sholder is None and self._sync_want) else "",
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> ReconcileResult:
        """Adopt (or, with ``lvs_flush``, flush) the data plane: the first reconcile."""
        if self.flush_on_start:
            await self._flush(all_services=True, reason="lvs_flush at start")
        return await self.reconcile("start")

    async def stop(self) -> None:
        """Leave the table unless ``lvs_flush_on_stop``; restore the connection timeouts."""
        if self.flush_on_stop == "all":
            await self._flush(all_services=True, reason="lvs_flush_on_stop all")
        elif self.flush_on_stop == "vs":
            await self._flush(all_services=False, reason="lvs_flush_on_stop vs")
        if self.flush_on_stop != "no":
            await self._stop_sync_daemons()
        await self._restore_timeouts()

    # --- the work ---------------------------------------------------------------------------

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.retry_attempts),
            wait=wait_exponential(multiplier=self.retry_wait, max=self.retry_wait_max),
            retry=retry_if_exception(_is_transient),
            sleep=self._sleep,
            reraise=True,
        )

    async def _read(self, scope: Collection[ServiceKey] | None) -> Table:
        """One fresh read: everything (``scope`` None) or just ``scope``."""
        if scope is None:
            table = await self.dataplane.dump()
            self._full_reads += 1
        else:
            table = await self.dataplane.dump(scope)
            self._scoped_reads += 1
        return table

    async def _dump(self, scope: Collection[ServiceKey] | None = None) -> Table:
        async for attempt in self._retrying():
            with attempt:
                return await self._read(scope)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _list_services(self, lister: ServiceLister) -> Mapping[ServiceKey, ServiceSpec]:
        async for attempt in self._retrying():
            with attempt:
                specs = await lister.dump_services()
                self._service_lists += 1
                return specs
        raise AssertionError("unreachable")  # pragma: no cover

    def _changed(self, desired: Mapping[ServiceKey, ServiceEntry]) -> set[ServiceKey]:
        """Services whose desired entry differs from the table last reached (cheap: the
        planner reuses the entries of unchanged virtual servers, so most are the same object).
        Before anything was reached, every desired service."""
        reached = self._reached
        if reached is None:
            return set(desired)
        out = {k for k in reached if k not in desired}
        for k, want in desired.items():
            was = reached.get(k)
            if was is not want and was != want:
                out.add(k)
        return out

    async def _scope(self, reason: str, full: bool | None,
                     desired: Mapping[ServiceKey, ServiceEntry],
                     owned: set[ServiceKey], changed: set[ServiceKey]) -> set[ServiceKey] | None:
        """The services a reconcile must read and diff; None for all of them."""
        reached = self._reached
        if (full or (full is None and reason in FULL_REASONS)
                or reached is None or not self._in_sync or not self._actual_ok):
            return None
        scope = changed | {k for k in owned if k not in desired}
        if self._lister is not None:
            specs = await self._list_services(self._lister)
            for k, want in desired.items():
                have = specs.get(k)
                if have is None or (have != want.spec
                                    and norm_service(have) != norm_service(want.spec)):
                    scope.add(k)
        if 2 * len(scope) > max(len(self._actual), len(desired)):
            return None  # most of the table: one full read is cheaper
        return scope

    def _remember(self, scope: set[ServiceKey] | None, actual: Table, applied: Sequence[Op],
                  now: float) -> None:
        """Fold a fresh read and the operations applied after it into the kept view."""
        if scope is None:
            view = dict(actual)
            self._actual_full_at = now
        else:
            view = dict(self._actual)
            for k in scope:
                view.pop(k, None)
            view.update(actual)
        touched = {op_service(op) for op in applied}
        try:
            after = apply_ops({k: view[k] for k in touched if k in view}, applied)
        except KeyError:  # an op we think applied does not fit the read: trust the next full
            self._actual_ok = False
        else:
            for k in touched:
                view.pop(k, None)
            view.update(after)
            self._actual_ok = True
        self._actual = MappingProxyType(view)

    async def _apply_one(self, op: Op) -> None:
        async for attempt in self._retrying():
            with attempt:
                await self.dataplane.apply(op)

    def _alarm(self, what: str, exc: BaseException, now: float) -> Alarm:
        transient = isinstance(exc, DataPlaneError) and exc.transient
        prev = self._alarms.get(what)
        alarm = Alarm(what, str(exc), transient, prev.since if prev else now,
                      prev.count + 1 if prev else 1)
        self._alarms[what] = alarm
        log.error("data plane %s: %s failed: %s", self.status.dataplane, what, exc)
        return alarm

    async def reconcile(self, reason: str = "change", *, full: bool | None = None
                        ) -> ReconcileResult:
        """Read, diff, apply. ``full`` forces (True) or forbids (False) a full read; by default
        the start, sweeps and any reconcile after a failure read everything, others only
        what changed (see the module docstring)."""
        async with self._lock:
            return await self._reconcile(reason, full)

    async def _reconcile(self, reason: str, full: bool | None = None) -> ReconcileResult:
        result = await self._reconcile_services(reason, full)
        applied, repaired, salarm = await self._sync_daemons(reason, full)
        if applied or salarm is not None:
            result = replace(result, sync=applied, repairs=result.repairs + repaired,
                             failed=result.failed + ((salarm,) if salarm is not None else ()))
        if self._timeouts.empty and self._timeouts_saved.empty and self._timeout_alarm is None:
            self._timeouts_reached = Timeouts()  # none to manage: not even a read
            return result
        written, repaired, alarm = await self._sync_timeouts(reason, full)
        if written is None and alarm is None:
            return result
        return replace(result, timeouts=written, repairs=result.repairs + repaired,
                       failed=result.failed + ((alarm,) if alarm is not None else ()))

    async def _reconcile_services(self, reason: str, full: bool | None = None
                                  ) -> ReconcileResult:
        now = self._clock()
        self._reconciles += 1
        self._last_reconcile = now
        self._last_reason = reason
        generation = self._generation
        desired = self._desired
        owned = set(self._owned)
        changed = self._changed(desired)
        try:
            scope = await self._scope(reason, full, desired, owned, changed)
            if scope is not None and not scope:
                self._last_read = "none"
                self._finish(generation, desired, owned, failed=False)
                return ReconcileResult(reason, (), 0, ())
            actual = await self._dump(scope)
        except DataPlaneError as exc:
            self._in_sync = False
            return ReconcileResult(reason, (), 0, (self._alarm("dump", exc, now),))
        self._last_read = "full" if scope is None else f"scoped {len(scope)}"
        want, own = desired, owned  # what this reconcile diffs: everything or the scope
        if scope is not None:
            want = {k: desired[k] for k in sorted(scope) if k in desired}
            own = owned & scope
        ops = diff(want, actual, own)
        if not ops:
            self._remember(scope, actual, (), now)
            self._finish(generation, desired, owned, failed=False)
            return ReconcileResult(reason, (), 0, ())
        for op in ops:
            if op_service(op) in changed:
                log.info("%s: %s", reason, describe(op))
            else:
                log.warning("repair (drift found by %s): %s", reason, describe(op))
        applied: list[Op] = []
        failed: list[Alarm] = []
        try:
            async for attempt in self._retrying():
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        # a retry: the batch may have been partly applied
                        actual = await self._read(scope)
                        ops = diff(want, actual, own)
                    applied = ops
                    if ops:
                        await self.dataplane.apply_many(ops)
        except DataPlaneError as exc:
            log.warning("batch of %d ops failed (%s); applying one by one", len(ops), exc)
            applied = []
            try:
                actual = await self._dump(scope)
            except DataPlaneError as dexc:
                self._in_sync = False
                self._actual_ok = False
                return ReconcileResult(reason, (), 0, (self._alarm("dump", dexc, now),))
            ops = diff(want, actual, own)
            dead: set[ServiceKey] = set()
            for op in ops:
                svc = op_service(op)
                if svc in dead and not isinstance(op, AddService):
                    failed.append(self._alarm(describe(op), DataPlaneError(
                        "skipped: its service could not be added"), now))
                    continue
                try:
                    await self._apply_one(op)
                    applied.append(op)
                except DataPlaneError as oexc:
                    failed.append(self._alarm(describe(op), oexc, now))
                    if isinstance(op, AddService):
                        dead.add(svc)
        self._remember(scope, actual, applied, now)
        self._ops_applied += len(applied)
        repairs = sum(op_service(op) not in changed for op in applied)
        self._repairs += repairs
        if failed:  # alarms of ops that went through this time are over
            self._alarms = {a.op: self._alarms[a.op] for a in failed}
        self._finish(generation, desired, owned, failed=bool(failed))
        return ReconcileResult(reason, tuple(applied), repairs, tuple(failed))

    def _finish(self, generation: int, desired: Mapping[ServiceKey, ServiceEntry],
                owned: set[ServiceKey], *, failed: bool) -> None:
        if failed:
            self._in_sync = False
            return
        self._alarms.clear()
        self._in_sync = True
        self._converged_generation = generation
        self._reached = desired
        # owned services that were not desired have just been deleted: stop owning them
        # (unless a newer desired table, set meanwhile, wants them again)
        self._owned = (self._owned - (owned - set(desired))) | set(self._desired)

    async def _flush(self, *, all_services: bool, reason: str) -> None:
        async with self._lock:
            now = self._clock()
            try:
                actual = await self._dump()
            except DataPlaneError as exc:
                self._alarm("dump", exc, now)
                return
            self._actual_ok = False  # the next reconcile reads everything again
            keys = sorted(actual) if all_services else sorted(k for k in actual
                                                              if k in self._owned)
            for key in keys:
                op = DelService(key)
                log.info("%s: %s", reason, describe(op))
                try:
                    await self._apply_one(op)
                    self._ops_applied += 1
                except DataPlaneError as exc:
                    self._alarm(describe(op), exc, now)
            self._in_sync = False

    # --- connection timeouts ----------------------------------------------------------------

    def _timeouts_unsupported(self) -> str:
        return (f"lvs_timeouts ({self._timeouts}) ignored: the {self.status_name} data plane "
                "has no IPVS connection timeouts (its connections follow conntrack's timeouts)")

    @property
    def status_name(self) -> str:
        return getattr(self.dataplane, "name", type(self.dataplane).__name__)

    def _timeout_failed(self, what: str, exc: DataPlaneError, now: float) -> Alarm:
        prev = self._timeout_alarm
        alarm = Alarm(what, str(exc), exc.transient,
                      prev.since if prev is not None else now,
                      prev.count + 1 if prev is not None else 1)
        self._timeout_alarm = alarm
        log.error("data plane %s: %s failed: %s", self.status_name, what, exc)
        return alarm

    async def _sync_timeouts(self, reason: str, full: bool | None
                             ) -> tuple[Timeouts | None, int, Alarm | None]:
        """Read the kernel's timeouts and write the wanted fields that differ. Returns (what
        was written or None, 1 if that was a drift repair else 0, the alarm of a failure)."""
        holder = self._tholder
        if holder is None:
            if self._timeouts != self._timeouts_warned:
                self._timeouts_warned = self._timeouts
                log.warning("%s", self._timeouts_unsupported())
            return None, 0, None
        want = wanted_timeouts(self._timeouts, self._timeouts_saved)
        needed = (full or (full is None and reason in FULL_REASONS)
                  or self._timeout_alarm is not None or want != self._timeouts_reached)
        if not needed:
            return None, 0, None
        now = self._clock()
        try:
            actual = await self._retry(holder.get_timeouts)
        except DataPlaneError as exc:
            return None, 0, self._timeout_failed("get timeouts", exc, now)
        self._timeouts_kernel = actual
        write = timeouts_write(want, actual)
        if write.empty:
            self._timeouts_reached = want
            self._timeout_alarm = None
            return None, 0, None
        drift = want == self._timeouts_reached
        before = Timeouts(**{f: getattr(actual, f) for f, _ in write.items()})
        restoring = [f for f, _ in write.items() if getattr(self._timeouts, f) is None]
        note = " (restoring the kernel's value from before lvsd)" if restoring else ""
        if drift:
            log.warning("repair (drift found by %s): set IPVS timeouts %s (kernel had %s)%s",
                        reason, write, before, note)
        else:
            log.info("%s: set IPVS timeouts %s (kernel had %s)%s", reason, write, before, note)
        # the kernel's value before lvsd's first change of a field is what a restore puts back
        # (libipvs.c ipvs_set_timeout: ipvs_get_timeout() before the first change)
        # (a field being restored has its saved value already)
        self._timeouts_saved = replace(self._timeouts_saved, **{
            f: getattr(actual, f) for f, _ in write.items()
            if getattr(self._timeouts_saved, f) is None})
        try:
            await self._retry(lambda: holder.set_timeouts(write))
        except DataPlaneError as exc:
            return None, 0, self._timeout_failed(f"set timeouts {write}", exc, now)
        self._timeouts_writes += 1
        self._ops_applied += 1
        self._repairs += int(drift)
        self._timeouts_kernel = replace(actual, **dict(write.items()))
        # a field put back is no longer lvsd's
        self._timeouts_saved = replace(self._timeouts_saved, **dict.fromkeys(restoring))
        self._timeouts_reached = wanted_timeouts(self._timeouts, self._timeouts_saved)
        self._timeout_alarm = None
        return write, int(drift), None

    async def _restore_timeouts(self) -> None:
        """At stop: the fields lvsd changed back to their saved values (keepalived ipvs_stop)."""
        holder = self._tholder
        saved = self._timeouts_saved
        if holder is None or saved.empty:
            return
        async with self._lock:
            now = self._clock()
            try:
                actual = await self._retry(holder.get_timeouts)
                write = timeouts_write(saved, actual)
                if not write.empty:
                    log.info("stop: set IPVS timeouts %s (restoring the kernel's values from "
                             "before lvsd)", write)
                    await self._retry(lambda: holder.set_timeouts(write))
                    self._timeouts_writes += 1
                    self._ops_applied += 1
            except DataPlaneError as exc:
                self._timeout_failed(f"restore timeouts {saved}", exc, now)
                return
            self._timeouts_saved = Timeouts()
            self._timeouts_reached = None

    # --- connection sync daemons ------------------------------------------------------------

    def _sync_unsupported(self) -> str:
        return (f"lvs_sync_daemon ignored: the {self.status_name} data plane has no IPVS "
                "connection sync daemon")

    def _sync_failed(self, what: str, exc: DataPlaneError, now: float) -> Alarm:
        prev = self._sync_alarm
        alarm = Alarm(what, str(exc), exc.transient,
                      prev.since if prev is not None else now,
                      prev.count + 1 if prev is not None else 1)
        self._sync_alarm = alarm
        log.error("data plane %s: %s failed: %s", self.status_name, what, exc)
        return alarm

    async def _sync_daemons(self, reason: str, full: bool | None
                            ) -> tuple[tuple[SyncOp, ...], int, Alarm | None]:
        """Read the kernel's sync daemons and apply :func:`sync_ops`. Returns (the operations
        applied, how many were drift repairs, the alarm of a failure)."""
        holder = self._sholder
        want = self._sync_want
        if holder is None:
            if want and not self._sync_warned:
                self._sync_warned = True
                log.warning("%s", self._sync_unsupported())
            return (), 0, None
        if not want and not self._sync_owned:
            self._sync_reached = want
            return (), 0, None  # none to manage: not even a read
        needed = (full or (full is None and reason in FULL_REASONS)
                  or self._sync_alarm is not None or want != self._sync_reached
                  or self._sync_changed)
        if not needed:
            return (), 0, None
        now = self._clock()
        try:
            have = await self._retry(holder.get_sync_daemons)
        except DataPlaneError as exc:
            return (), 0, self._sync_failed("get sync daemons", exc, now)
        self._sync_kernel = have
        ops = sync_ops(want, have, self._sync_owned, self._sync_changed)
        drift = want == self._sync_reached and not self._sync_changed
        applied: list[SyncOp] = []
        for op in ops:
            if drift:
                log.warning("repair (drift found by %s): %s", reason, op.describe())
            else:
                log.info("%s: %s", reason, op.describe())
            try:
                await self._retry(functools.partial(
                    holder.start_sync_daemon, op.daemon) if isinstance(op, StartDaemon)
                    else functools.partial(holder.stop_sync_daemon, op.role))
            except DataPlaneError as exc:
                self._sync_kernel = apply_sync_ops(have, applied)
                self._ops_applied += len(applied)
                return tuple(applied), 0, self._sync_failed(op.describe(), exc, now)
            applied.append(op)
        self._sync_kernel = apply_sync_ops(have, applied)
        self._ops_applied += len(applied)
        repairs = len(applied) if drift else 0
        self._repairs += repairs
        self._sync_reached = want
        self._sync_changed = set()
        self._sync_alarm = None
        if want == ():  # nothing configured any more: what lvsd ran is stopped, not owned
            self._sync_owned = set()
        return tuple(applied), repairs, None

    async def _stop_sync_daemons(self) -> None:
        """At stop with ``lvs_flush_on_stop``: the daemons lvsd owns are stopped (keepalived
        stops them at shutdown)."""
        holder = self._sholder
        if holder is None or not self._sync_owned:
            return
        async with self._lock:
            now = self._clock()
            try:
                have = await self._retry(holder.get_sync_daemons)
                for d in have:
                    if d.role in self._sync_owned:
                        log.info("stop: stop sync daemon %s", d.role.value)
                        await self._retry(functools.partial(holder.stop_sync_daemon, d.role))
                        self._ops_applied += 1
            except DataPlaneError as exc:
                self._sync_failed("stop sync daemons", exc, now)

    async def _retry(self, call: Callable[[], Awaitable[_T]]) -> _T:
        async for attempt in self._retrying():
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover
