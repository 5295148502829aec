"""The one narrow interface every data plane (kernel IPVS, nftables, in-memory) implements.

The reconciler is the only caller. It reads the data plane's actual table with :meth:`dump`,
computes the minimal operations against the desired table, and applies them one at a time with
:meth:`apply`. A data plane never decides anything: it only reports and executes.

Scoped reads: ``dump(services)`` reads only the given services, fresh, so a change-triggered
reconcile costs what changed rather than the whole table; ``dump()`` (None) reads everything.
Every data plane takes the argument. A data plane may also offer :class:`ServiceLister` (the
services and their settings without destinations, one cheap read) so the reconciler can notice
a service deleted or edited by hand without reading every destination.

IPVS connection timeouts (additive): a data plane that has them (kernel IPVS, memory) offers
:class:`TimeoutHolder`, a read and a write of the three global values (``ipvsadm --set``). One
without them (nftables: NAT there rides on conntrack, whose timeouts are the host's
``nf_conntrack_*`` sysctls, not IPVS's) simply does not offer it; the reconciler then ignores
``lvs_timeouts`` with a warning rather than refusing a config keepalived would run.

IPVS connection sync daemons (additive): a data plane that can run them (kernel IPVS, memory)
offers :class:`SyncDaemonHolder`: a fresh read of the running daemons, a start and a stop
(``ipvsadm --start-daemon`` / ``--stop-daemon`` / ``-L --daemon``). The reconciler owns them
(:mod:`lvsd.pool.syncd` decides); nftables has none and refuses ``lvs_sync_daemon`` at preflight.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol, runtime_checkable

from lvsd.pool.syncd import SyncDaemon, SyncRole
from lvsd.pool.table import (
    DestKey,
    DestSpec,
    DestStats,
    Op,
    ServiceKey,
    ServiceSpec,
    Table,
    Timeouts,
)


class DataPlaneError(Exception):
    """An operation the data plane could not carry out. ``transient`` errors are retried."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class DataPlaneUnavailable(DataPlaneError):
    """The data plane cannot run on this host at all (e.g. kernel without IPVS)."""


@runtime_checkable
class DataPlane(Protocol):
    """Narrow, privileged interface. Implementations: ipvs, nftables, memory."""

    name: str

    def refuse(self, spec: ServiceSpec | DestSpec) -> str | None:
        """Why this data plane cannot hold ``spec`` (e.g. nftables and DR), or None if it can.

        Checked at config load so an impossible config is refused with a clear message.
        """
        ...

    async def dump(self, services: Collection[ServiceKey] | None = None) -> Table:
        """A fresh read of what the data plane holds (including entries lvsd does not own).

        ``services`` None: everything. Otherwise only those services (each with all its
        destinations), read fresh; a requested service the data plane does not hold is simply
        absent from the result, and nothing else is in it.
        """
        ...

    async def apply(self, op: Op) -> None:
        """Apply one operation. Raises :class:`DataPlaneError` on failure."""
        ...

    async def apply_many(self, ops: Sequence[Op]) -> None:
        """Apply several operations, atomically where the data plane can (nftables)."""
        ...

    async def stats(self) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        """Per-destination counters, for status only (may be empty)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class ServiceLister(Protocol):
    """Optional: the services and their settings, without destinations, in one cheap read."""

    async def dump_services(self) -> Mapping[ServiceKey, ServiceSpec]:
        """Every service the data plane holds (lvsd's or not) -> its settings, read fresh."""
        ...


@runtime_checkable
class TimeoutHolder(Protocol):
    """Optional: the IPVS connection timeouts (TCP, TCP FIN-wait, UDP), global to the data
    plane (``ipvsadm --set`` / ``ipvsadm -L --timeout``)."""

    async def get_timeouts(self) -> Timeouts:
        """The three values the data plane holds now, read fresh (every field set)."""
        ...

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        """Write the fields of ``timeouts`` that are set; leave the others as they are.
        Raises :class:`DataPlaneError` on failure."""
        ...


@runtime_checkable
class SyncDaemonHolder(Protocol):
    """Optional: the kernel's IPVS connection sync daemons (one per role at most)."""

    async def get_sync_daemons(self) -> tuple[SyncDaemon, ...]:
        """The daemons running now, read fresh (every field the kernel reports set)."""
        ...

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        """Start ``daemon`` (its parameters left None: the kernel's defaults). Raises
        :class:`DataPlaneError` on failure (one of that role running already included)."""
        ...

    async def stop_sync_daemon(self, role: SyncRole) -> None:
        """Stop the daemon of ``role``. Raises :class:`DataPlaneError` on failure."""
        ...
