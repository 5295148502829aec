"""The one narrow interface every data plane (kernel IPVS, nftables, in-memory) implements.

The reconciler is the only caller. It reads the data plane's actual table with :meth:`dump`,
computes the minimal operations against the desired table, and applies them one at a time with
:meth:`apply`. A data plane never decides anything: it only reports and executes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lvsd.pool.table import DestKey, DestSpec, Op, ServiceKey, ServiceSpec, Table


class DataPlaneError(Exception):
    """An operation the data plane could not carry out. ``transient`` errors are retried."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class DataPlaneUnavailable(DataPlaneError):
    """The data plane cannot run on this host at all (e.g. kernel without IPVS)."""


@dataclass(frozen=True, slots=True)
class DestStats:
    active_conns: int = 0
    inactive_conns: int = 0
    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0


@runtime_checkable
class DataPlane(Protocol):
    """Narrow, privileged interface. Implementations: ipvs, nftables, memory."""

    name: str

    def refuse(self, spec: ServiceSpec | DestSpec) -> str | None:
        """Why this data plane cannot hold ``spec`` (e.g. nftables and DR), or None if it can.

        Checked at config load so an impossible config is refused with a clear message.
        """
        ...

    async def dump(self) -> Table:
        """A fresh read of everything the data plane holds (including entries lvsd does not own)."""
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
