"""Kernel IPVS data plane: generic netlink (family "IPVS") through pyroute2's ``AsyncIPVS``.

Theory of operation
-------------------
This is a translator, nothing more: :meth:`IPVSDataPlane.dump` reads every service and every
destination the kernel holds (also those lvsd does not own) into a :data:`Table`, and
:meth:`apply` turns one :data:`Op` into one netlink request (``ipvsadm -A/-E/-D/-a/-e/-d``).
It decides nothing; the reconciler diffs and chooses the operations.

Canonical form. ``dump()`` produces exactly the values that, given back to ``apply``, program
the same kernel state, so a desired table written in this form diffs to nothing:

* persistence is ``ServiceSpec.persistence_timeout`` (seconds); the ``persistent`` flag is
  implied by it and never appears in ``flags`` after a dump (``flags={"persistent"}`` alone is
  accepted and means ipvsadm's default of 300 s);
* ``persistence_granularity`` is None for the default (255.255.255.255 or /128), else a dotted
  IPv4 netmask or an IPv6 prefix length ("64"): see :func:`canonical_granularity`;
* scheduler flags are named as ipvsadm names them: ``sh-fallback``/``sh-port`` with ``sh``,
  ``mh-fallback``/``mh-port`` with ``mh``, ``flag-1``..``flag-3`` with any other scheduler;
  ``ops`` is one-packet scheduling.

Kernel facts this relies on (net/netfilter/ipvs/ip_vs_ctl.c, checked against Debian 6.1 in the
VM, see tests/kernel): a full service needs scheduler, flags, timeout and netmask attributes;
for IPv6 the "netmask" is a prefix length 1..128 carried in the same 32-bit attribute (pyroute2
0.9.7 types it as an IPv4 address, so it is packed by hand); a lower threshold above the upper
one is ERANGE; an unknown scheduler is ENOENT; a missing service is ESRCH, a missing
destination ENOENT. pyroute2 0.9.7 pitfalls avoided: ``dest("update")`` sends DEL (``"set"``
is used), ``IPVSDest`` defaults to DR (the forwarding method is always given), and the tunnel
port attribute is big-endian in the kernel but typed host-order by pyroute2 (swapped by hand).
Dumps run one at a time: a second dump on a socket with one in progress gets EBUSY.

Batching: :meth:`apply_many` keeps up to ``window`` requests in flight on the one socket, but
never two that touch the same service while one of them is a service operation, nor two on the
same destination: the kernel executes them in the order the reconciler chose. A failure stops
the batch after the requests already in flight; the first failing operation is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from lvsd.dataplane.base import DataPlaneError, DataPlaneUnavailable, DestStats
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
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Table,
    addr_family,
    describe,
)

UNAVAILABLE = (
    "kernel has no IPVS (ip_vs module not loaded/not built): use --dataplane nftables or memory"
)

#: every scheduler Linux has shipped (twos since 6.2); one missing from the running kernel
#: fails at apply with a clear message
SCHEDULERS = frozenset(
    {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}
)

# include/uapi/linux/ip_vs.h
F_PERSISTENT = 0x0001
F_HASHED = 0x0002
F_ONEPACKET = 0x0004
F_SCHED1 = 0x0008
F_SCHED2 = 0x0010
F_SCHED3 = 0x0020
_SCHED_BITS = {F_SCHED1: 1, F_SCHED2: 2, F_SCHED3: 3}
_FLAG_NAMES = {
    "sh": {F_SCHED1: "sh-fallback", F_SCHED2: "sh-port"},
    "mh": {F_SCHED1: "mh-fallback", F_SCHED2: "mh-port"},
}
DEFAULT_PERSISTENCE = 300  # ipvsadm -p without a value
TUN_IPIP, TUN_GUE, TUN_GRE = 0, 1, 2
TUN_FLAGS_ALL = 0x3  # IP_VS_TUNNEL_ENCAP_FLAG_CSUM (1) | _REMCSUM (2); 0 is nocsum

_TRANSIENT = {errno.EAGAIN, errno.EBUSY, errno.ENOBUFS, errno.EINTR, errno.ENOMEM,
              errno.ETIMEDOUT}


def flag_bits(spec: ServiceSpec) -> int:
    """The kernel's IP_VS_SVC_F_* bits for ``spec`` (raises ValueError on an unknown flag)."""
    bits = 0
    names = _FLAG_NAMES.get(spec.scheduler, {})
    by_name = {v: k for k, v in names.items()}
    for f in spec.flags:
        if f == "persistent":
            bits |= F_PERSISTENT
        elif f == "ops":
            bits |= F_ONEPACKET
        elif f in by_name:
            bits |= by_name[f]
        elif f.startswith("flag-") and f[5:] in ("1", "2", "3") and not names:
            bits |= {1: F_SCHED1, 2: F_SCHED2, 3: F_SCHED3}[int(f[5:])]
        else:
            hint = (f" (scheduler {spec.scheduler}: allowed {', '.join(sorted(by_name))})"
                    if by_name else f" (scheduler {spec.scheduler} has no flag {f!r})")
            raise ValueError(f"flag {f!r} does not apply{hint}")
    if spec.persistence_timeout is not None:
        bits |= F_PERSISTENT
    return bits


def flag_names(bits: int, scheduler: str) -> frozenset[str]:
    """Inverse of :func:`flag_bits`, in canonical form (no ``persistent``)."""
    out: set[str] = set()
    if bits & F_ONEPACKET:
        out.add("ops")
    names = _FLAG_NAMES.get(scheduler, {})
    for bit, n in _SCHED_BITS.items():
        if bits & bit:
            out.add(names.get(bit, f"flag-{n}"))
    return frozenset(out)


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


def _netmask_attr(af: int, granularity: str | None) -> str:
    """IPVS_SVC_ATTR_NETMASK as pyroute2's ip4addr encoder wants it."""
    g = canonical_granularity(af, granularity)
    if af == 4:
        return g or "255.255.255.255"
    plen = int(g) if g else 128
    # the kernel reads this u32 in host order for IPv6: pack it so the ip4addr bytes match
    return socket.inet_ntoa(plen.to_bytes(4, sys.byteorder))


def _granularity_from_attr(af: int, raw: str | None) -> str | None:
    if raw is None:
        return None
    if af == 4:
        return canonical_granularity(4, raw)
    plen = int.from_bytes(socket.inet_aton(raw), sys.byteorder)
    return None if plen in (0, 128) else str(plen)


def _af(n: int) -> int:
    return socket.AF_INET6 if n == 6 else socket.AF_INET


def _errname(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def _explain(op: Op, code: int) -> str:
    """Kernel errno -> a sentence naming the service/destination."""
    what = describe(op)
    hint = {
        errno.EEXIST: "it already exists",
        errno.ESRCH: "the service does not exist in the kernel",
        errno.ERANGE: "a weight or threshold is out of range (lower threshold above upper?)",
        errno.EPERM: "not permitted (needs CAP_NET_ADMIN)",
        errno.EOPNOTSUPP: "not supported by this kernel",
        errno.EAFNOSUPPORT: "address family not supported by this kernel",
    }.get(code)
    if code == errno.ENOENT:
        if isinstance(op, AddService | EditService):
            hint = (f"scheduler {op.spec.scheduler!r} is not available in this kernel "
                    f"(module ip_vs_{op.spec.scheduler} missing)")
        elif isinstance(op, EditDest | DelDest):
            hint = "the destination does not exist in the kernel"
        else:
            hint = "not found"
    elif code == errno.EINVAL:
        hint = "the kernel rejected the parameters as invalid"
    return f"IPVS: {what}: {hint or os.strerror(code)} ({_errname(code)})"


def _pyroute2() -> Any:
    try:
        import pyroute2
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as e:  # pragma: no cover - a dependency
        raise DataPlaneUnavailable(f"pyroute2 is not installed: {e}") from e
    return pyroute2, NetlinkError


class IPVSDataPlane:
    """The kernel IPVS table of one network namespace (the caller's, or ``netns``)."""

    name = "ipvs"

    def __init__(self, *, netns: str | None = None, window: int = 32) -> None:
        self.netns = netns
        self.window = max(1, window)
        self._sock: Any = None
        self._lock = asyncio.Lock()
        self.requests = 0  # netlink requests issued (reads and writes), for benchmarks

    # --- connection ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect now (otherwise the first call does). Raises DataPlaneUnavailable."""
        await self._socket()

    async def _socket(self) -> Any:
        if self._sock is not None:
            return self._sock
        pyroute2, netlink_error = _pyroute2()
        kw: dict[str, Any] = {"netns": self.netns} if self.netns else {}
        sock = pyroute2.AsyncIPVS(**kw)
        try:
            await sock.setup_endpoint()
        except netlink_error as e:
            sock.close()
            if e.code == errno.ENOENT:
                raise DataPlaneUnavailable(UNAVAILABLE) from e
            raise DataPlaneUnavailable(
                f"cannot open IPVS netlink: {os.strerror(e.code)} ({_errname(e.code)})") from e
        except OSError as e:
            sock.close()
            raise DataPlaneUnavailable(f"cannot open IPVS netlink: {e}") from e
        self._sock = sock
        return sock

    async def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def _reset(self) -> None:
        """Drop a socket that failed at the socket level; the next call opens a new one."""
        if self._sock is not None:
            sock, self._sock = self._sock, None
            with contextlib.suppress(Exception):  # must not mask the error being raised
                sock.close()

    # --- validation ---------------------------------------------------------------------

    def refuse(self, spec: ServiceSpec | DestSpec) -> str | None:
        if isinstance(spec, ServiceSpec):
            return self._refuse_service(spec)
        return self._refuse_dest(spec)

    def refuse_dest_in(self, service: ServiceKey, dest: DestSpec) -> str | None:
        """Like :meth:`refuse` for a destination, with the checks that need its service."""
        why = self._refuse_dest(dest)
        if why:
            return why
        if addr_family(dest.key.addr) != service.af and dest.fwd != Fwd.TUNNEL:
            return (f"real server {dest.key} in {service}: an IPv{addr_family(dest.key.addr)} "
                    f"server in an IPv{service.af} service needs tunnel forwarding (TUN)")
        return None

    def _refuse_service(self, spec: ServiceSpec) -> str | None:
        k = spec.key
        if spec.scheduler not in SCHEDULERS:
            return (f"virtual server {k}: unknown IPVS scheduler {spec.scheduler!r} "
                    f"(one of {' '.join(sorted(SCHEDULERS))})")
        try:
            flag_bits(spec)
            canonical_granularity(k.af, spec.persistence_granularity)
        except ValueError as e:
            return f"virtual server {k}: {e}"
        pt = spec.persistence_timeout
        if pt is not None and not 1 <= pt <= 2**31 // 1000:
            return f"virtual server {k}: persistence_timeout {pt} out of range 1..2147483"
        if k.af not in (4, 6):
            return f"virtual server {k}: address family must be 4 or 6"
        if k.fwmark:
            if not 0 < k.fwmark < 2**32:
                return f"virtual server {k}: fwmark out of range"
        elif not 0 <= k.port <= 65535 or k.protocol not in (Proto.TCP, Proto.UDP, Proto.SCTP):
            return f"virtual server {k}: needs TCP, UDP or SCTP and a port 0..65535"
        return None

    def _refuse_dest(self, d: DestSpec) -> str | None:
        k = d.key
        if d.fwd not in (Fwd.MASQ, Fwd.TUNNEL, Fwd.DROUTE):
            return f"real server {k}: forwarding method must be NAT, DR or TUN"
        if not 0 <= d.weight < 2**31:
            return f"real server {k}: weight {d.weight} out of range 0..2147483647"
        if not 0 <= k.port <= 65535:
            return f"real server {k}: port out of range"
        if d.u_threshold < 0 or d.l_threshold < 0:
            return f"real server {k}: thresholds must not be negative"
        if d.l_threshold > d.u_threshold:
            return (f"real server {k}: lower threshold {d.l_threshold} above upper threshold "
                    f"{d.u_threshold} (the kernel refuses it; set uthreshold too)")
        if d.fwd == Fwd.TUNNEL:
            if d.tun_type not in (TUN_IPIP, TUN_GUE, TUN_GRE):
                return f"real server {k}: tunnel type {d.tun_type} unknown (0 ipip, 1 gue, 2 gre)"
            if d.tun_type == TUN_GUE and not 0 < d.tun_port <= 65535:
                return f"real server {k}: GUE tunnel needs a tunnel port"
            if d.tun_flags & ~TUN_FLAGS_ALL:
                return f"real server {k}: unknown tunnel flags {d.tun_flags:#x}"
        elif d.tun_type or d.tun_port or d.tun_flags:
            return f"real server {k}: tunnel options need tunnel forwarding (TUN)"
        return None

    # --- encoding -----------------------------------------------------------------------

    @staticmethod
    def _svc(spec: ServiceSpec | None, key: ServiceKey) -> Any:
        pyroute2, _ = _pyroute2()
        fields: dict[str, Any] = {"af": _af(key.af)}
        if key.fwmark:
            fields["fwmark"] = key.fwmark
        else:
            fields.update(protocol=key.protocol, addr=key.addr, port=key.port)
        if spec is not None:
            try:
                bits = flag_bits(spec)
            except ValueError as e:
                raise DataPlaneError(f"IPVS: virtual server {key}: {e}") from e
            timeout = spec.persistence_timeout
            if bits & F_PERSISTENT and timeout is None:
                timeout = DEFAULT_PERSISTENCE
            fields.update(sched_name=spec.scheduler, flags={"flags": bits, "mask": 0xFFFF},
                          timeout=timeout or 0,
                          netmask=_netmask_attr(key.af, spec.persistence_granularity))
        else:
            fields["netmask"] = _netmask_attr(key.af, None)
        return pyroute2.IPVSService(**fields)

    @staticmethod
    def _dest(d: DestSpec) -> Any:
        pyroute2, _ = _pyroute2()
        return pyroute2.IPVSDest(
            addr_family=_af(addr_family(d.key.addr)), addr=d.key.addr, port=d.key.port,
            fwd_method=int(d.fwd), weight=d.weight, u_thresh=d.u_threshold,
            l_thresh=d.l_threshold, tun_type=d.tun_type, tun_port=socket.htons(d.tun_port),
            tun_flags=d.tun_flags)

    @staticmethod
    def _dest_key_only(k: DestKey) -> Any:
        pyroute2, _ = _pyroute2()
        return pyroute2.IPVSDest(addr_family=_af(addr_family(k.addr)), addr=k.addr, port=k.port)

    # --- requests -----------------------------------------------------------------------

    async def _call(self, op: Op | None, fn: Callable[[Any], Awaitable[Any]], what: str) -> Any:
        _, netlink_error = _pyroute2()
        sock = await self._socket()
        self.requests += 1
        try:
            return await fn(sock)
        except netlink_error as e:
            msg = _explain(op, e.code) if op is not None else (
                f"IPVS: {what}: {os.strerror(e.code)} ({_errname(e.code)})")
            raise DataPlaneError(msg, transient=e.code in _TRANSIENT) from e
        except OSError as e:
            self._reset()
            raise DataPlaneError(f"IPVS: {what}: netlink socket error: {e}", transient=True) from e

    def _request(self, op: Op) -> Callable[[Any], Awaitable[Any]]:
        match op:
            case AddService(spec):
                svc = self._svc(spec, spec.key)
                return lambda s: s.service("add", service=svc)
            case EditService(spec):
                svc = self._svc(spec, spec.key)
                return lambda s: s.service("set", service=svc)
            case DelService(key):
                svc = self._svc(None, key)
                return lambda s: s.service("del", service=svc)
            case AddDest(service, dest):
                svc, dst = self._svc(None, service), self._dest(dest)
                return lambda s: s.dest("add", service=svc, dest=dst)
            case EditDest(service, dest):
                svc, dst = self._svc(None, service), self._dest(dest)
                return lambda s: s.dest("set", service=svc, dest=dst)
            case DelDest(service, key):
                svc, dst = self._svc(None, service), self._dest_key_only(key)
                return lambda s: s.dest("del", service=svc, dest=dst)
        raise AssertionError(op)  # pragma: no cover

    async def apply(self, op: Op) -> None:
        req = self._request(op)
        async with self._lock:
            await self._call(op, req, describe(op))

    async def apply_many(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` in order, pipelining independent ones (see the module docstring)."""
        async with self._lock:
            await self._socket()
            for batch in _batches(ops, self.window):
                reqs = [(op, self._request(op)) for op in batch]
                if len(reqs) == 1:
                    op, req = reqs[0]
                    await self._call(op, req, describe(op))
                    continue
                results = await asyncio.gather(
                    *(self._call(op, req, describe(op)) for op, req in reqs),
                    return_exceptions=True)
                for r in results:
                    if isinstance(r, BaseException):
                        raise r

    # --- reading ------------------------------------------------------------------------

    async def dump(self) -> Table:
        async with self._lock:
            raw = await self._call(None, lambda s: s.service("dump"), "dump services")
            services: list[tuple[ServiceSpec, Any]] = []
            for msg in raw:
                attrs = _attrs(msg, "IPVS_CMD_ATTR_SERVICE")
                if attrs is None:
                    continue
                spec = _service_from_attrs(attrs)
                services.append((spec, self._svc(None, spec.key)))
            dests = await self._dest_dumps([s for _, s in services])
        table: dict[ServiceKey, ServiceEntry] = {}
        for (spec, _), dmsgs in zip(services, dests, strict=True):
            dmap: dict[DestKey, DestSpec] = {}
            for m in dmsgs:
                a = _attrs(m, "IPVS_CMD_ATTR_DEST")
                if a is not None:
                    d = _dest_from_attrs(a, spec.key.af)
                    dmap[d.key] = d
            table[spec.key] = ServiceEntry(spec, dmap)
        return table

    async def _dest_dumps(self, svcs: Sequence[Any]) -> list[list[Any]]:
        out: list[list[Any]] = [[] for _ in svcs]

        async def one(i: int) -> None:
            out[i] = await self._call(
                None, lambda s: s.dest("dump", service=svcs[i]), "dump destinations")

        # one dump at a time: the kernel answers EBUSY to a second dump on the same socket
        for i in range(len(svcs)):
            await one(i)
        return out

    async def stats(self) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        async with self._lock:
            raw = await self._call(None, lambda s: s.service("dump"), "dump services")
            keys: list[ServiceKey] = []
            for msg in raw:
                attrs = _attrs(msg, "IPVS_CMD_ATTR_SERVICE")
                if attrs is not None:
                    keys.append(_service_from_attrs(attrs).key)
            dests = await self._dest_dumps([self._svc(None, k) for k in keys])
        res: dict[tuple[ServiceKey, DestKey], DestStats] = {}
        for key, dmsgs in zip(keys, dests, strict=True):
            for m in dmsgs:
                a = _attrs(m, "IPVS_CMD_ATTR_DEST")
                if a is None:
                    continue
                d = _dest_from_attrs(a, key.af)
                st = a.get("IPVS_DEST_ATTR_STATS64") or a.get("IPVS_DEST_ATTR_STATS")
                s = dict(st["attrs"]) if st is not None else {}
                res[(key, d.key)] = DestStats(
                    active_conns=int(a.get("IPVS_DEST_ATTR_ACTIVE_CONNS", 0)),
                    inactive_conns=int(a.get("IPVS_DEST_ATTR_INACT_CONNS", 0)),
                    conns=int(s.get("IPVS_STATS_ATTR_CONNS", 0)),
                    inpkts=int(s.get("IPVS_STATS_ATTR_INPKTS", 0)),
                    outpkts=int(s.get("IPVS_STATS_ATTR_OUTPKTS", 0)),
                    inbytes=int(s.get("IPVS_STATS_ATTR_INBYTES", 0)),
                    outbytes=int(s.get("IPVS_STATS_ATTR_OUTBYTES", 0)),
                )
        return res


# --- decoding helpers (plain functions: no socket) ------------------------------------------


def _attrs(msg: Any, nla: str) -> dict[str, Any] | None:
    block = msg.get(nla)
    if block is None:
        return None
    return dict(block["attrs"])


def _service_from_attrs(a: dict[str, Any]) -> ServiceSpec:
    af = 6 if a.get("IPVS_SVC_ATTR_AF") == socket.AF_INET6 else 4
    fwmark = int(a.get("IPVS_SVC_ATTR_FWMARK", 0) or 0)
    if fwmark:
        key = ServiceKey.for_fwmark(fwmark, af)
    else:
        key = ServiceKey(af, int(a["IPVS_SVC_ATTR_PROTOCOL"]),
                         str(ipaddress.ip_address(a["IPVS_SVC_ATTR_ADDR"])),
                         int(a["IPVS_SVC_ATTR_PORT"]), 0)
    sched = str(a.get("IPVS_SVC_ATTR_SCHED_NAME", ""))
    fl = a.get("IPVS_SVC_ATTR_FLAGS")
    bits = int(fl["flags"]) if fl is not None else 0
    timeout = int(a.get("IPVS_SVC_ATTR_TIMEOUT", 0) or 0)
    persistent = bool(bits & F_PERSISTENT)
    return ServiceSpec(
        key=key, scheduler=sched, flags=flag_names(bits & ~F_HASHED, sched),
        persistence_timeout=timeout if persistent else None,
        persistence_granularity=(_granularity_from_attr(af, a.get("IPVS_SVC_ATTR_NETMASK"))
                                 if persistent else None),
    )


def _dest_from_attrs(a: dict[str, Any], svc_af: int) -> DestSpec:
    fam = a.get("IPVS_DEST_ATTR_ADDR_FAMILY")
    addr = str(ipaddress.ip_address(a["IPVS_DEST_ATTR_ADDR"]))
    if fam is None:
        fam = _af(svc_af)
    fwd = int(a.get("IPVS_DEST_ATTR_FWD_METHOD", 0)) & 0x7
    return DestSpec(
        key=DestKey(addr, int(a["IPVS_DEST_ATTR_PORT"])),
        weight=int(a.get("IPVS_DEST_ATTR_WEIGHT", 0)),
        fwd=Fwd(fwd) if fwd in Fwd._value2member_map_ else Fwd.MASQ,
        u_threshold=int(a.get("IPVS_DEST_ATTR_U_THRESH", 0)),
        l_threshold=int(a.get("IPVS_DEST_ATTR_L_THRESH", 0)),
        tun_type=int(a.get("IPVS_DEST_ATTR_TUN_TYPE", 0) or 0),
        tun_port=socket.ntohs(int(a.get("IPVS_DEST_ATTR_TUN_PORT", 0) or 0)),
        tun_flags=int(a.get("IPVS_DEST_ATTR_TUN_FLAGS", 0) or 0),
    )


def _batches(ops: Iterable[Op], window: int) -> Iterable[list[Op]]:
    """Split ``ops`` into runs that may be in flight together without reordering effects."""
    batch: list[Op] = []
    svc_ops: set[ServiceKey] = set()  # services with a service-level op in this batch
    svc_touched: set[ServiceKey] = set()  # services with any op in this batch
    dest_ops: set[tuple[ServiceKey, DestKey]] = set()
    for op in ops:
        if isinstance(op, AddService | EditService):
            svc, dk = op.spec.key, None
        elif isinstance(op, DelService):
            svc, dk = op.key, None
        elif isinstance(op, AddDest | EditDest):
            svc, dk = op.service, op.dest.key
        else:
            svc, dk = op.service, op.key
        conflict = (
            len(batch) >= window
            or svc in svc_ops
            or (dk is None and svc in svc_touched)
            or (dk is not None and (svc, dk) in dest_ops)
        )
        if conflict and batch:
            yield batch
            batch, svc_ops, svc_touched, dest_ops = [], set(), set(), set()
        batch.append(op)
        svc_touched.add(svc)
        if dk is None:
            svc_ops.add(svc)
        else:
            dest_ops.add((svc, dk))
    if batch:
        yield batch


async def probe(netns: str | None = None) -> str | None:
    """None if kernel IPVS can be used here, else the one-line reason."""
    dp = IPVSDataPlane(netns=netns)
    try:
        await dp.open()
    except DataPlaneUnavailable as e:
        return str(e)
    finally:
        await dp.close()
    return None
