"""Health states as the checks layer hands them to the pool planner (types only, no logic).

Data flows one way: config -> checks -> pool. The checks layer publishes, per real server, a
:class:`RealServerHealth`; the planner reads a ``Mapping[RealServerId, RealServerHealth]``. A real
server missing from the mapping has not been decided yet (keepalived: it is in the pool before its
first check unless ``alpha``; the planner applies that rule).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class RealServerId:
    """Identity of a real server inside one virtual server.

    ``vs`` is :attr:`lvsd.config.model.VirtualServer.ident` (e.g. ``"192.0.2.10:80/TCP"``,
    ``"fwmark 1/IPv4"``, ``"group WEB/TCP"``); ``addr`` normalised; ``port`` as configured
    (0 for fwmark services without port).
    """

    vs: str
    addr: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{host}:{self.port} in {self.vs}"


@dataclass(frozen=True, slots=True)
class CheckerVerdict:
    """The current verdict of one checker on one real server."""

    checker: str  # e.g. "HTTP_GET http://192.0.2.1:80/health" (human-readable, stable)
    up: bool
    reason: str  # why the last transition happened: "refused", "timeout after 5000 ms", ...
    since: float  # monotonic time of the last transition
    dynamic_weight: int | None = None  # MISC_CHECK misc_dynamic / FILE_CHECK weight, if any


@dataclass(frozen=True, slots=True)
class RealServerHealth:
    """Alive only while every checker is up (keepalived)."""

    alive: bool
    verdicts: tuple[CheckerVerdict, ...] = ()
    # Sum of dynamic weights from checkers that set one (None: none does).
    dynamic_weight: int | None = None
    reason: str = ""
    since: float = 0.0

    @property
    def failed_checkers(self) -> tuple[str, ...]:
        return tuple(v.checker for v in self.verdicts if not v.up)
