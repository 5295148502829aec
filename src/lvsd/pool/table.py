"""The IPVS table as plain immutable values: what the planner wants and what a data plane holds.

Theory of operation
-------------------
A *table* maps a :class:`ServiceKey` (VIP:port/proto, or fwmark + family) to a
:class:`ServiceEntry` (the service's settings and its destinations). The planner computes the
desired table from config + health; every data plane can ``dump()`` its actual table in the same
shape; the reconciler diffs the two into a minimal list of :data:`Op` values that a data plane
applies one by one. Nothing here does I/O.

A data plane also reports per-destination counters (:class:`DestStats`), values of the same
table: status shows them and the planner ends a drain early on them.

Besides the table, IPVS has one global setting lvsd manages, the connection :class:`Timeouts`
(keepalived's ``lvs_timeouts``); they are not services, so they are not :data:`Op` values: the
reconciler reads and writes them through a data plane's optional
:class:`~lvsd.dataplane.base.TimeoutHolder` interface.

Addresses are kept as normalised strings (``str(ipaddress.ip_address(x))``) so values compare,
hash and serialise trivially.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum


class Proto(IntEnum):
    """IP protocol numbers IPVS uses for a service (0 for fwmark services)."""

    NONE = 0
    TCP = 6
    UDP = 17
    SCTP = 132


class Fwd(IntEnum):
    """IPVS forwarding method, numbered as the kernel's IP_VS_CONN_F_* (masq is 0)."""

    MASQ = 0  # NAT, ipvsadm -m
    LOCAL = 1
    TUNNEL = 2  # TUN, ipvsadm -i
    DROUTE = 3  # DR, ipvsadm -g
    BYPASS = 4


def norm_addr(addr: str) -> str:
    """Normalise an IP address string (raises ValueError on garbage)."""
    return str(ipaddress.ip_address(addr))


def addr_family(addr: str) -> int:
    """4 or 6."""
    return ipaddress.ip_address(addr).version


def canonical_granularity(af: int, value: str | None) -> str | None:
    """Normalise a persistence granularity; None for the default (a single address).

    IPv4: a netmask ("255.255.255.0") or a prefix length ("24", "/24") -> dotted netmask.
    IPv6: a prefix length ("64", "/64") -> "64". Raises ValueError with the reason.
    """
    if value is None:
        return None
    v = value.strip().lstrip("/")
    if af == 4:
        try:
            net = ipaddress.IPv4Network(f"0.0.0.0/{v}")
        except ValueError as e:
            raise ValueError(f"IPv4 persistence granularity {value!r} is not a netmask") from e
        return None if net.prefixlen == 32 else str(net.netmask)
    if not v.isdigit() or not 1 <= int(v) <= 128:
        raise ValueError(f"IPv6 persistence granularity {value!r} is not a prefix length 1..128")
    return None if int(v) == 128 else str(int(v))


@dataclass(frozen=True, order=True, slots=True)
class ServiceKey:
    """Identity of an IPVS virtual service.

    Address services: ``fwmark == 0`` and ``addr``/``port``/``protocol`` set.
    Fwmark services: ``fwmark > 0``, ``addr == ""``, ``port == 0``, ``protocol == Proto.NONE``.
    ``af`` is 4 or 6.
    """

    af: int
    protocol: int
    addr: str
    port: int
    fwmark: int = 0

    @classmethod
    def for_addr(cls, addr: str, port: int, protocol: int) -> ServiceKey:
        a = norm_addr(addr)
        return cls(addr_family(a), int(protocol), a, port, 0)

    @classmethod
    def for_fwmark(cls, fwmark: int, af: int = 4) -> ServiceKey:
        return cls(af, int(Proto.NONE), "", 0, fwmark)

    def __str__(self) -> str:
        if self.fwmark:
            return f"FWM {self.fwmark} IPv{self.af}"
        proto = Proto(self.protocol).name if self.protocol in Proto._value2member_map_ else str(
            self.protocol
        )
        host = f"[{self.addr}]" if self.af == 6 else self.addr
        return f"{proto} {host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Settings of one virtual service (what ``ipvsadm -A/-E`` sets)."""

    key: ServiceKey
    scheduler: str = "wlc"
    # IPVS scheduler flags by ipvsadm name: sh-fallback, sh-port, mh-fallback, mh-port, ops.
    flags: frozenset[str] = frozenset()
    # Persistence: None = not persistent; seconds otherwise.
    persistence_timeout: int | None = None
    # Persistence granularity: IPv4 netmask or IPv6 prefix length, as a string; None=default.
    persistence_granularity: str | None = None


@dataclass(frozen=True, order=True, slots=True)
class DestKey:
    addr: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DestSpec:
    """One real server inside a service (what ``ipvsadm -a/-e`` sets)."""

    key: DestKey
    weight: int = 1
    fwd: Fwd = Fwd.MASQ
    u_threshold: int = 0
    l_threshold: int = 0
    # Tunnel options (kernel >= 5.3): type 0=ipip 1=gue 2=gre; port for gue; flags bitmask
    # (1=nocsum? see IP_VS_TUNNEL_ENCAP_FLAG_*).
    tun_type: int = 0
    tun_port: int = 0
    tun_flags: int = 0


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    spec: ServiceSpec
    dests: Mapping[DestKey, DestSpec] = field(default_factory=dict)


Table = Mapping[ServiceKey, ServiceEntry]


@dataclass(frozen=True, slots=True)
class DestStats:
    """One destination's counters as a data plane reports them (``ipvsadm -L --stats``):
    connections now (active, inactive), since creation (conns), packets and bytes both ways,
    and the kernel estimator's rates per second (``ipvsadm -L --rate``: CPS, InPPS, OutPPS,
    InBPS, OutBPS). The pool reads them for status and to end a drain early."""

    active_conns: int = 0
    inactive_conns: int = 0
    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0
    # False: only the connections now are known, not the traffic counters and rates (the
    # nftables data plane counts conntrack entries: dataplane/conntrack.py)
    counters: bool = True


# --- IPVS connection timeouts (global, not per service) -------------------------------------

#: the fields of :class:`Timeouts` and ipvsadm's names for them (``--set tcp tcpfin udp``)
TIMEOUT_FIELDS = (("tcp", "tcp"), ("tcp_fin", "tcpfin"), ("udp", "udp"))
#: keepalived's LVS_MAX_TIMEOUT (keepalived/include/global_data.h): 31 days
MAX_TIMEOUT = 86400 * 31


@dataclass(frozen=True, slots=True)
class Timeouts:
    """IPVS connection timeouts in seconds, what ``ipvsadm --set tcp tcpfin udp`` sets: TCP
    established, TCP FIN-wait, UDP. They are global to the network namespace's IPVS, not per
    service. ``None`` for a field: not part of this value (desired: leave the kernel's value;
    read: not reported)."""

    tcp: int | None = None
    tcp_fin: int | None = None
    udp: int | None = None

    def items(self) -> list[tuple[str, int]]:
        """(field, seconds) of the fields that are set, in ipvsadm's order."""
        out = []
        for f, _ in TIMEOUT_FIELDS:
            v = getattr(self, f)
            if v is not None:
                out.append((f, int(v)))
        return out

    @property
    def empty(self) -> bool:
        return not self.items()

    def named(self) -> dict[str, int]:
        """ipvsadm's name -> seconds of the fields that are set (``{"tcp": 900, "udp": 300}``)."""
        names = dict(TIMEOUT_FIELDS)
        return {names[f]: v for f, v in self.items()}

    def __str__(self) -> str:
        """ipvsadm-like: ``tcp 900 tcpfin 120 udp 300`` (only the set fields)."""
        names = dict(TIMEOUT_FIELDS)
        return " ".join(f"{names[f]} {v}" for f, v in self.items()) or "(none)"


# --- operations a data plane applies -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddService:
    spec: ServiceSpec


@dataclass(frozen=True, slots=True)
class EditService:
    spec: ServiceSpec


@dataclass(frozen=True, slots=True)
class DelService:
    key: ServiceKey


@dataclass(frozen=True, slots=True)
class AddDest:
    service: ServiceKey
    dest: DestSpec


@dataclass(frozen=True, slots=True)
class EditDest:
    service: ServiceKey
    dest: DestSpec


@dataclass(frozen=True, slots=True)
class DelDest:
    service: ServiceKey
    key: DestKey


Op = AddService | EditService | DelService | AddDest | EditDest | DelDest


def op_service(op: Op) -> ServiceKey:
    """The service an operation acts on."""
    if isinstance(op, AddService | EditService):
        return op.spec.key
    if isinstance(op, DelService):
        return op.key
    return op.service


def describe(op: Op) -> str:
    """One line, ipvsadm-like, for logs."""
    match op:
        case AddService(spec):
            return f"add service {spec.key} sched {spec.scheduler}"
        case EditService(spec):
            return f"edit service {spec.key} sched {spec.scheduler}"
        case DelService(key):
            return f"delete service {key}"
        case AddDest(svc, d):
            return f"add dest {d.key} to {svc} weight {d.weight} {d.fwd.name.lower()}"
        case EditDest(svc, d):
            return f"edit dest {d.key} in {svc} weight {d.weight} {d.fwd.name.lower()}"
        case DelDest(svc, k):
            return f"delete dest {k} from {svc}"
    raise AssertionError(op)  # pragma: no cover
