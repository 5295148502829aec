"""Kernel IPVS data plane: the kernel's generic netlink family "IPVS", spoken directly.

Theory of operation
-------------------
This is a translator, nothing more: :meth:`IPVSDataPlane.dump` reads every service and every
destination the kernel holds (also those lvsd does not own) into a :data:`Table` (or, given
service keys, only those: one ``IPVS_CMD_GET_SERVICE`` and one destination dump per key;
:meth:`IPVSDataPlane.dump_services` is the service list alone, one request), and
:meth:`apply` turns one :data:`Op` into one netlink request (``ipvsadm -A/-E/-D/-a/-e/-d``).
It decides nothing; the reconciler diffs and chooses the operations.

A full dump is one service dump and one destination dump per service, as ``ipvsadm -Sn``
does (the kernel cannot run two dumps of one socket at once, and ends each only on the receive
after its data, so they cannot be batched). Its cost is decoding ~37,000 destinations: each
is decoded where it lies in the receive buffer, and one whose settings' bytes were decoded
before (the previous sweep) is a dictionary lookup (:func:`decode_dest_cached`), so a sweep of
an unchanged table costs about what ``ipvsadm -Sn`` costs (bench/ipvs_dump.py).

The connection timeouts (``ipvsadm --set`` / ``-L --timeout``) are one IPVS_CMD_GET_CONFIG /
IPVS_CMD_SET_CONFIG request each (:meth:`IPVSDataPlane.get_timeouts`, :meth:`set_timeouts`);
a write carries only the fields to change. The connection sync daemons (``ipvsadm
--start-daemon`` / ``--stop-daemon`` / ``-L --daemon``) are one IPVS_CMD_NEW_DAEMON /
IPVS_CMD_DEL_DAEMON request or one IPVS_CMD_GET_DAEMON dump each (:meth:`get_sync_daemons`,
:meth:`start_sync_daemon`, :meth:`stop_sync_daemon`; the optional
:class:`~lvsd.dataplane.base.SyncDaemonHolder`).

Canonical form. ``dump()`` produces exactly the values that, given back to ``apply``, program
the same kernel state, so a desired table written in this form diffs to nothing:

* persistence is ``ServiceSpec.persistence_timeout`` (seconds); the ``persistent`` flag is
  implied by it and never appears in ``flags`` after a dump (``flags={"persistent"}`` alone is
  accepted and means ipvsadm's default of 300 s);
* ``persistence_granularity`` is None for the default (255.255.255.255 or /128) and for a
  non-persistent service, else a dotted IPv4 netmask or an IPv6 prefix length ("64"): see
  :func:`canonical_granularity`;
* scheduler flags are named as ipvsadm names them: ``sh-fallback``/``sh-port`` with ``sh``,
  ``mh-fallback``/``mh-port`` with ``mh``, ``flag-1``..``flag-3`` with any other scheduler;
  ``ops`` is one-packet scheduling.

Kernel facts this relies on (net/netfilter/ipvs/ip_vs_ctl.c, checked against Debian 6.1 in the
VM by tests/kernel): a full service needs scheduler, flags, timeout and netmask attributes; for
IPv6 the "netmask" is a prefix length 1..128 in host byte order in the same 32-bit attribute;
ports (service, destination, tunnel) are big-endian; a lower threshold above the upper one is
ERANGE; an unknown scheduler is ENOENT; a missing service is ESRCH, a missing destination
ENOENT; a second dump on a socket with one in progress is EBUSY (dumps run one at a time).
The kernel executes each request inside the sender's ``send()``, so requests on one socket take
effect in the order sent.

Why not pyroute2's ``AsyncIPVS``: it works against the real kernel (with three pitfalls:
``dest("update")`` sends DEL, ``IPVSDest`` defaults to DR, the tunnel port is typed host-order)
but its generic message encoder/decoder costs ~25 ms per request and ~13 ms per decoded
destination under the emulated CPU of the test VM (cProfile), which makes a 37,000-server
table take minutes; this small codec does the same in a fraction of that (see
bench/ipvs_program.py). pyroute2 is still used to open a socket inside another netns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import os
import socket
import struct
import sys
from collections.abc import Collection, Sequence

from lvsd.dataplane.base import DataPlaneError, DataPlaneUnavailable
from lvsd.pool.syncd import SyncDaemon, SyncRole
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
    Fwd,
    Op,
    Proto,
    ServiceEntry,
    ServiceKey,
    ServiceSpec,
    Table,
    Timeouts,
    addr_family,
    canonical_granularity,
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


# --- generic netlink codec (include/uapi/linux/ip_vs.h, include/uapi/linux/genetlink.h) ----

NETLINK_GENERIC = 16
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 0x10, 3, 1, 2
IPVS_GENL_NAME, IPVS_GENL_VERSION = b"IPVS\0", 1
CMD_NEW_SERVICE, CMD_SET_SERVICE, CMD_DEL_SERVICE, CMD_GET_SERVICE = 1, 2, 3, 4
CMD_NEW_DEST, CMD_SET_DEST, CMD_DEL_DEST, CMD_GET_DEST = 5, 6, 7, 8
CMD_SET_CONFIG, CMD_GET_CONFIG = 12, 13
ATTR_SERVICE, ATTR_DEST = 1, 2
ATTR_TIMEOUT_TCP, ATTR_TIMEOUT_TCP_FIN, ATTR_TIMEOUT_UDP = 4, 5, 6
_TIMEOUT_ATTRS = (("tcp", ATTR_TIMEOUT_TCP), ("tcp_fin", ATTR_TIMEOUT_TCP_FIN),
                  ("udp", ATTR_TIMEOUT_UDP))
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK = 1, 2, 3, 4, 5
SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = 6, 7, 8, 9
DEST_ADDR, DEST_PORT, DEST_FWD, DEST_WEIGHT, DEST_U_THRESH, DEST_L_THRESH = 1, 2, 3, 4, 5, 6
DEST_ACTIVE, DEST_INACTIVE, DEST_STATS, DEST_ADDR_FAMILY, DEST_STATS64 = 7, 8, 10, 11, 12
DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS = 13, 14, 15
STATS_CONNS, STATS_INPKTS, STATS_OUTPKTS, STATS_INBYTES, STATS_OUTBYTES = 1, 2, 3, 4, 5
STATS_CPS, STATS_INPPS, STATS_OUTPPS, STATS_INBPS, STATS_OUTBPS = 6, 7, 8, 9, 10

_NLMSGHDR = struct.Struct("=IHHII")
_GENLHDR = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")


def _nla(kind: int, payload: bytes) -> bytes:
    n = _NLA.size + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (-n % 4)


def _u8(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack("=B", v))


def _u16(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack("=H", v))


def _u32(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack("=I", v))


def _be16(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack("!H", v))


def _addr(kind: int, addr: str) -> bytes:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return _nla(kind, socket.inet_pton(fam, addr).ljust(16, b"\0"))  # union nf_inet_addr


def _ntop(raw: bytes, v6: bool) -> str:
    if v6:
        return str(ipaddress.IPv6Address(raw[:16]))  # RFC 5952 form, as norm_addr() gives
    return socket.inet_ntop(socket.AF_INET, raw[:4])


def parse_attrs(data: bytes | memoryview, offset: int = 0, end: int | None = None
                ) -> dict[int, memoryview]:
    """type -> payload of a run of netlink attributes (flags bits of the type masked off)."""
    mv = memoryview(data)
    end = len(mv) if end is None else end
    return {k: mv[o:o + n] for k, (o, n) in attr_index(mv, offset, end).items()}


def _int(a: dict[int, memoryview], kind: int, default: int = 0) -> int:
    v = a.get(kind)
    if v is None:
        return default
    return int.from_bytes(v, sys.byteorder)


@functools.lru_cache(maxsize=4096)
def service_key_attrs(key: ServiceKey) -> bytes:
    """The attributes that name a service (what GET_DEST / DEL_SERVICE / *_DEST need)."""
    parts = [_u16(SVC_AF, _af(key.af))]
    if key.fwmark:
        parts.append(_u32(SVC_FWMARK, key.fwmark))
    else:
        parts += [_u16(SVC_PROTOCOL, key.protocol), _addr(SVC_ADDR, key.addr),
                  _be16(SVC_PORT, key.port)]
    return b"".join(parts)


def service_attrs(spec: ServiceSpec) -> bytes:
    """A full service: key + scheduler, flags, timeout, netmask (all four are mandatory)."""
    key = spec.key
    try:
        bits = flag_bits(spec)
        netmask = _netmask_bytes(key.af, spec.persistence_granularity)
    except ValueError as e:
        raise DataPlaneError(f"IPVS: virtual server {key}: {e}") from e
    timeout = spec.persistence_timeout
    if bits & F_PERSISTENT and timeout is None:
        timeout = DEFAULT_PERSISTENCE
    return service_key_attrs(key) + b"".join([
        _nla(SVC_SCHED_NAME, spec.scheduler.encode() + b"\0"),
        _nla(SVC_FLAGS, struct.pack("=II", bits, 0xFFFFFFFF)),
        _u32(SVC_TIMEOUT, timeout or 0),
        _nla(SVC_NETMASK, netmask),
    ])


def dest_key_attrs(k: DestKey) -> bytes:
    af = socket.AF_INET6 if ":" in k.addr else socket.AF_INET
    return (_u16(DEST_ADDR_FAMILY, af) + _addr(DEST_ADDR, k.addr)
            + _be16(DEST_PORT, k.port))


def dest_attrs(d: DestSpec) -> bytes:
    return dest_key_attrs(d.key) + b"".join([
        _u32(DEST_FWD, int(d.fwd)), _u32(DEST_WEIGHT, d.weight),
        _u32(DEST_U_THRESH, d.u_threshold), _u32(DEST_L_THRESH, d.l_threshold),
        _u8(DEST_TUN_TYPE, d.tun_type), _be16(DEST_TUN_PORT, d.tun_port),
        _u16(DEST_TUN_FLAGS, d.tun_flags),
    ])


def encode_op(op: Op) -> tuple[int, bytes]:
    """(IPVS command, attributes) for one operation."""
    match op:
        case AddService(spec):
            return CMD_NEW_SERVICE, _nla(ATTR_SERVICE, service_attrs(spec))
        case EditService(spec):
            return CMD_SET_SERVICE, _nla(ATTR_SERVICE, service_attrs(spec))
        case DelService(key):
            return CMD_DEL_SERVICE, _nla(ATTR_SERVICE, service_key_attrs(key))
        case AddDest(service, dest):
            return CMD_NEW_DEST, (_nla(ATTR_SERVICE, service_key_attrs(service))
                                  + _nla(ATTR_DEST, dest_attrs(dest)))
        case EditDest(service, dest):
            return CMD_SET_DEST, (_nla(ATTR_SERVICE, service_key_attrs(service))
                                  + _nla(ATTR_DEST, dest_attrs(dest)))
        case DelDest(service, key):
            return CMD_DEL_DEST, (_nla(ATTR_SERVICE, service_key_attrs(service))
                                  + _nla(ATTR_DEST, dest_key_attrs(key)))
    raise AssertionError(op)  # pragma: no cover


def timeout_attrs(t: Timeouts) -> bytes:
    """IPVS_CMD_SET_CONFIG attributes for the fields of ``t`` that are set (u32 seconds). The
    kernel (ip_vs_genl_set_config) starts from its current values and replaces only the
    attributes present, so a field left out keeps its value; a 0 also keeps it
    (ip_vs_set_timeout sets non-zero values only)."""
    return b"".join(_u32(attr, getattr(t, f)) for f, attr in _TIMEOUT_ATTRS
                    if getattr(t, f) is not None)


def decode_timeouts(msg: bytes) -> Timeouts:
    """The IPVS_CMD_GET_CONFIG answer (a field the kernel did not report stays None)."""
    a = parse_attrs(msg, _NLMSGHDR.size + _GENLHDR.size)
    return Timeouts(**{f: (_int(a, attr) if attr in a else None) for f, attr in _TIMEOUT_ATTRS})


def _netmask_bytes(af: int, granularity: str | None) -> bytes:
    g = canonical_granularity(af, granularity)
    if af == 4:
        return ipaddress.IPv4Address(g or "255.255.255.255").packed  # __be32 netmask
    return (int(g) if g else 128).to_bytes(4, sys.byteorder)  # IPv6: prefix length, host order


def decode_service(a: dict[int, memoryview]) -> ServiceSpec:
    af = 6 if _int(a, SVC_AF) == socket.AF_INET6 else 4
    fwmark = _int(a, SVC_FWMARK)
    if fwmark:
        key = ServiceKey.for_fwmark(fwmark, af)
    else:
        addr = _ntop(bytes(a[SVC_ADDR]), af == 6)
        key = ServiceKey(af, _int(a, SVC_PROTOCOL), addr,
                         int.from_bytes(a[SVC_PORT], "big"), 0)
    sched = bytes(a.get(SVC_SCHED_NAME, b"")).split(b"\0", 1)[0].decode()
    bits = struct.unpack_from("=I", a[SVC_FLAGS])[0] if SVC_FLAGS in a else 0
    persistent = bool(bits & F_PERSISTENT)
    gran: str | None = None
    if persistent and SVC_NETMASK in a:
        nm = bytes(a[SVC_NETMASK])
        if af == 4:
            gran = canonical_granularity(4, str(ipaddress.IPv4Address(nm)))
        else:
            plen = int.from_bytes(nm, sys.byteorder)
            gran = None if plen in (0, 128) else str(plen)
    return ServiceSpec(key=key, scheduler=sched, flags=flag_names(bits & ~F_HASHED, sched),
                       persistence_timeout=_int(a, SVC_TIMEOUT) if persistent else None,
                       persistence_granularity=gran)


SVC_STATS, SVC_STATS64 = 10, 12  # the counters: the only part of a service that moves


@functools.lru_cache(maxsize=16384)
def _decode_service_raw(raw: bytes) -> ServiceSpec:
    return decode_service(parse_attrs(raw))


def service_of(msg: bytes) -> ServiceSpec | None:
    """The service in a GET_SERVICE answer. A service list is read on every change-triggered
    reconcile: the settings' attribute bytes (the message without its counters) are cached to
    their decoded value, so an unchanged service costs one attribute walk and a dict lookup."""
    top = attr_index(msg, _NLMSGHDR.size + _GENLHDR.size, len(msg))
    sv = top.get(ATTR_SERVICE)
    if sv is None:
        return None
    inner = attr_index(msg, sv[0], sv[0] + sv[1])
    raw = b"".join(msg[o - 4:o + ((n + 3) & ~3)] for k, (o, n) in sorted(inner.items())
                   if k != SVC_STATS and k != SVC_STATS64)
    return _decode_service_raw(raw)


_U16 = struct.Struct("=H").unpack_from
_U32 = struct.Struct("=I").unpack_from
_FWDS = {int(f): f for f in Fwd}


def attr_index(buf: bytes | memoryview, off: int, end: int) -> dict[int, tuple[int, int]]:
    """type -> (offset, length) of each attribute payload in ``buf[off:end]`` (no copies)."""
    out: dict[int, tuple[int, int]] = {}
    hh = _NLA.unpack_from
    while off + 4 <= end:
        n, kind = hh(buf, off)
        if n < 4:
            break
        out[kind & 0x3FFF] = (off + 4, n - 4)
        off += (n + 3) & ~3
    return out


def decode_dest(buf: bytes, a: dict[int, tuple[int, int]], svc_af: int) -> DestSpec:
    """A destination from its attributes (the hot path of a dump: ~37,000 calls per sweep)."""
    def u32(kind: int) -> int:
        p = a.get(kind)
        return int(_U32(buf, p[0])[0]) if p else 0

    fam = a.get(DEST_ADDR_FAMILY)
    v6 = (int(_U16(buf, fam[0])[0]) if fam else _af(svc_af)) == socket.AF_INET6
    p = a[DEST_ADDR][0]
    addr = str(ipaddress.IPv6Address(buf[p:p + 16])) if v6 else socket.inet_ntop(
        socket.AF_INET, buf[p:p + 4])
    pp = a[DEST_PORT][0]
    tt, tp, tf = a.get(DEST_TUN_TYPE), a.get(DEST_TUN_PORT), a.get(DEST_TUN_FLAGS)
    return DestSpec(
        DestKey(addr, int.from_bytes(buf[pp:pp + 2], "big")), u32(DEST_WEIGHT),
        _FWDS.get(u32(DEST_FWD) & 0x7, Fwd.MASQ), u32(DEST_U_THRESH), u32(DEST_L_THRESH),
        buf[tt[0]] if tt else 0,
        int.from_bytes(buf[tp[0]:tp[0] + 2], "big") if tp else 0,
        int(_U16(buf, tf[0])[0]) if tf else 0,
    )


# The kernel writes a destination's attributes in one fixed order (ip_vs_genl_fill_dest(),
# unchanged since 5.3 added the tunnel ones): ADDR PORT FWD_METHOD WEIGHT TUN_TYPE TUN_PORT
# TUN_FLAGS U_THRESH L_THRESH ACTIVE_CONNS INACT_CONNS PERSIST_CONNS ADDR_FAMILY, then the
# stats. A dump of 37,000 destinations is dominated by decoding them, so that layout is read
# with one struct call; every header is checked and anything else takes the generic path.
_DEST_FAST = struct.Struct("=HH16s" "HH2s2x" "HHI" "HHI" "HHB3x" "HH2s2x" "HHH2x"
                           "HHI" "HHI" "HHI" "HHI" "HHI" "HHH2x")
_DEST_FAST_LENS = (20, 6, 8, 8, 5, 6, 6, 8, 8, 8, 8, 8, 6)
_DEST_FAST_TYPES = (DEST_ADDR, DEST_PORT, DEST_FWD, DEST_WEIGHT, DEST_TUN_TYPE, DEST_TUN_PORT,
                    DEST_TUN_FLAGS, DEST_U_THRESH, DEST_L_THRESH, DEST_ACTIVE, DEST_INACTIVE,
                    9, DEST_ADDR_FAMILY)
_DEST_OFF = _NLMSGHDR.size + _GENLHDR.size


def decode_dest_fast(msg: bytes, at: int = 0) -> DestSpec | None:
    """The destination in a dump message (starting at ``msg[at]``) laid out as the kernel
    writes it, else None."""
    if len(msg) < at + _DEST_OFF + 4 + _DEST_FAST.size:
        return None
    if _NLA.unpack_from(msg, at + _DEST_OFF)[1] & 0x3FFF != ATTR_DEST:
        return None
    v = _DEST_FAST.unpack_from(msg, at + _DEST_OFF + 4)
    if v[0::3] != _DEST_FAST_LENS or v[1::3] != _DEST_FAST_TYPES:
        return None
    raw: bytes = v[2]
    if v[38] == socket.AF_INET6:
        addr = str(ipaddress.IPv6Address(raw))
    else:
        addr = socket.inet_ntop(socket.AF_INET, raw[:4])
    return DestSpec(DestKey(addr, int.from_bytes(v[5], "big")), v[11],
                    _FWDS.get(v[8] & 0x7, Fwd.MASQ), v[23], v[26], v[14],
                    int.from_bytes(v[17], "big"), v[20])


# A full dump decodes every destination of the table; most are the same as in the previous
# dump. The bytes from the nested ATTR_DEST header through L_THRESH (the kernel's fixed layout
# above: the nest's length and the headers of ADDR..L_THRESH included, the connection counters
# and stats excluded) determine the DestSpec together with the address family, so a layout-
# checked decode is remembered under those bytes, one dict per family: an unchanged destination
# then costs one slice and one lookup. A message whose bytes were never checked takes
# decode_dest_fast (which checks every header), and one it refuses the generic walk.
_KEY_START = _DEST_OFF
_KEY_END = _DEST_OFF + 4 + 20 + 7 * 8 + 8  # nest header, ADDR, PORT..U_THRESH, L_THRESH
_FAM_AT = _KEY_END + 3 * 8 + 4  # ACTIVE, INACTIVE, PERSIST, then ADDR_FAMILY's payload
_DEST_CACHE_MAX = 1 << 17
_dest_cache: dict[int, dict[bytes, DestSpec]] = {socket.AF_INET: {}, socket.AF_INET6: {}}


def decode_dest_cached(buf: bytes, at: int, n: int, svc_af: int) -> DestSpec | None:
    """The destination of the dump message ``buf[at:at + n]`` (None: the message has none).
    :meth:`_GenlSocket.dumps` inlines the cache hit; this is the whole rule, for a miss."""
    fam = _U16(buf, at + _FAM_AT)[0] if n >= _FAM_AT + 2 else 0
    cache = _dest_cache.get(fam)
    key = buf[at + _KEY_START:at + _KEY_END]
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    d = decode_dest_fast(buf, at) if n >= _DEST_OFF + 4 + _DEST_FAST.size else None
    if d is not None:
        # decode_dest_fast checked the family header too, so ``fam`` is the real family
        if cache is not None:
            if len(cache) >= _DEST_CACHE_MAX:
                cache.clear()
            cache[key] = d
        return d
    got = decode_dest_message(buf[at:at + n], svc_af)
    return None if got is None else got[0]


def _dest_index(msg: bytes) -> dict[int, tuple[int, int]] | None:
    top = attr_index(msg, _NLMSGHDR.size + _GENLHDR.size, len(msg))
    d = top.get(ATTR_DEST)
    return attr_index(msg, d[0], d[0] + d[1]) if d else None


def decode_dest_stats(buf: bytes, a: dict[int, tuple[int, int]]) -> DestStats:
    def num(idx: dict[int, tuple[int, int]], kind: int) -> int:
        p = idx.get(kind)
        return int.from_bytes(buf[p[0]:p[0] + p[1]], sys.byteorder) if p else 0

    st = a.get(DEST_STATS64) or a.get(DEST_STATS)
    s = attr_index(buf, st[0], st[0] + st[1]) if st else {}
    return DestStats(active_conns=num(a, DEST_ACTIVE), inactive_conns=num(a, DEST_INACTIVE),
                     conns=num(s, STATS_CONNS), inpkts=num(s, STATS_INPKTS),
                     outpkts=num(s, STATS_OUTPKTS), inbytes=num(s, STATS_INBYTES),
                     outbytes=num(s, STATS_OUTBYTES), cps=num(s, STATS_CPS),
                     inpps=num(s, STATS_INPPS), outpps=num(s, STATS_OUTPPS),
                     inbps=num(s, STATS_INBPS), outbps=num(s, STATS_OUTBPS))


def decode_dest_message(msg: bytes, svc_af: int) -> tuple[DestSpec, DestStats] | None:
    """One destination dump message -> the destination and its counters (connections now,
    ``ipvsadm -Ln --stats`` totals and ``--rate`` rates); None without a destination. The one
    decoding path of :meth:`IPVSDataPlane.dump` (generic layout) and :meth:`stats`."""
    a = _dest_index(msg)
    if a is None:
        return None
    return decode_dest(msg, a, svc_af), decode_dest_stats(msg, a)


class _NetlinkError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code


class _GenlSocket:
    """A blocking generic-netlink socket bound to the IPVS family (used from one thread)."""

    def __init__(self, netns: str | None) -> None:
        if netns:
            from pyroute2.netns import create_socket

            self.sock = create_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW,
                                      NETLINK_GENERIC)
        else:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            # the kernel sizes dump chunks to at most 32 KiB (netlink_recvmsg): 64 KiB is ample
            self._buf = bytearray(65536)
            self._view = memoryview(self._buf)
            self.sock.settimeout(30.0)  # a kernel that never answers becomes a transient error
            self.sock.bind((0, 0))
            self.seq = 0
            self.family = 0
            reply = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1,
                                 _nla(CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME))
            attrs = parse_attrs(reply[0], _NLMSGHDR.size + _GENLHDR.size)
            self.family = _int(attrs, CTRL_ATTR_FAMILY_ID)
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def send(self, family: int, cmd: int, version: int, payload: bytes, flags: int) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        n = _NLMSGHDR.size + _GENLHDR.size + len(payload)
        self.sock.send(_NLMSGHDR.pack(n, family, flags, self.seq, 0)
                       + _GENLHDR.pack(cmd, version, 0) + payload)
        return self.seq

    def receive(self, seq: int) -> list[bytes]:
        """Messages answering ``seq`` until its ACK/DONE; raises _NetlinkError on an error."""
        out: list[bytes] = []
        while True:
            got = self.sock.recv_into(self._buf)
            data = bytes(self._view[:got])
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                n, kind, flags, mseq, _ = _NLMSGHDR.unpack_from(data, off)
                if n < _NLMSGHDR.size:
                    return out
                msg = data[off:off + n]
                off += (n + 3) & ~3
                if mseq != seq:
                    continue  # a late answer to an abandoned request
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", msg, _NLMSGHDR.size)[0]
                    if code:
                        raise _NetlinkError(code)
                    return out
                if kind == NLMSG_DONE:
                    return out
                out.append(msg)
                if not flags & NLM_F_MULTI:
                    return out  # a single answer (no ACK was asked for)

    def dumps(self, cmd: int, payloads: Sequence[bytes], svc_af: Sequence[int],
              with_stats: bool) -> tuple[list[dict[DestKey, DestSpec] | None],
                                         dict[tuple[int, DestKey], DestStats]]:
        """One IPVS_CMD_GET_DEST dump per payload, one after the other: the destinations of
        each (None where the kernel answered ESRCH) and, ``with_stats``, their counters keyed
        (index, dest).

        The dumps cannot share a send: the kernel ends a dump (NLMSG_DONE) only on the
        receive after its last data (af_netlink.c netlink_dump), and a dump request arriving
        before that fails with EBUSY. So this is :meth:`request`'s loop, made lean for the
        ~2,300 dumps and ~37,000 messages of a full read: each receive buffer is decoded where
        it lies (no copy per message) and an unchanged destination is one cache lookup
        (:func:`decode_dest_cached`)."""
        out: list[dict[DestKey, DestSpec] | None] = []
        stats: dict[tuple[int, DestKey], DestStats] = {}
        head, pack = _NLMSGHDR.unpack_from, _NLMSGHDR.pack
        genl = _GENLHDR.pack(cmd, IPVS_GENL_VERSION, 0)
        flags = NLM_F_REQUEST | NLM_F_DUMP
        send, recv_into, buf, view = self.sock.send, self.sock.recv_into, self._buf, self._view
        u16, caches = _U16, _dest_cache
        key_start, key_end, fam_at = _KEY_START, _KEY_END, _FAM_AT
        for i, p in enumerate(payloads):
            self.seq = seq = (self.seq + 1) & 0xFFFFFFFF
            send(pack(_DEST_OFF + len(p), self.family, flags, seq, 0) + genl + p)
            dests: dict[DestKey, DestSpec] | None = {}
            while True:
                got = recv_into(buf)
                data = bytes(view[:got])
                off, end = 0, False
                while off + 16 <= got:
                    n, kind, _, mseq, _ = head(data, off)
                    if n < 16:
                        break
                    at, off = off, off + ((n + 3) & ~3)
                    if mseq != seq:
                        continue  # a late answer to an abandoned request
                    if kind == NLMSG_DONE:
                        end = True
                    elif kind == NLMSG_ERROR:
                        end = True
                        code = -struct.unpack_from("=i", data, at + 16)[0]
                        if code == errno.ESRCH:
                            dests = None
                        elif code:
                            raise _NetlinkError(code)
                    elif dests is not None:
                        if with_stats:
                            got_st = decode_dest_message(data[at:at + n], svc_af[i])
                            if got_st is not None:
                                dests[got_st[0].key] = got_st[0]
                                stats[(i, got_st[0].key)] = got_st[1]
                            continue
                        # decode_dest_cached's cache hit, inline: the hot path
                        cache = caches.get(u16(data, at + fam_at)[0]) if n >= fam_at + 2 \
                            else None
                        d = None if cache is None else cache.get(
                            data[at + key_start:at + key_end])
                        if d is None:
                            d = decode_dest_cached(data, at, n, svc_af[i])
                            if d is None:
                                continue
                        dests[d.key] = d
                if end:
                    break
            out.append(dests)
        return out, stats

    def request(self, family: int, cmd: int, version: int, payload: bytes,
                dump: bool = False) -> list[bytes]:
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        return self.receive(self.send(family, cmd, version, payload, flags))

    def ipvs(self, cmd: int, payload: bytes = b"", dump: bool = False) -> list[bytes]:
        return self.request(self.family, cmd, IPVS_GENL_VERSION, payload, dump)


class IPVSDataPlane:
    """The kernel IPVS table of one network namespace (the caller's, or ``netns``).

    Netlink I/O is blocking and short; it runs in a worker thread (``asyncio.to_thread``) so
    a 40,000-operation batch never stalls the event loop. One operation at a time.
    """

    name = "ipvs"

    def __init__(self, *, netns: str | None = None) -> None:
        self.netns = netns
        self._sock: _GenlSocket | None = None
        self._lock = asyncio.Lock()
        self.requests = 0  # netlink requests issued (reads and writes), for benchmarks

    # --- connection ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect now (otherwise the first call does). Raises DataPlaneUnavailable."""
        async with self._lock:
            await asyncio.to_thread(self._connect)

    def _connect(self) -> _GenlSocket:
        if self._sock is not None:
            return self._sock
        try:
            self._sock = _GenlSocket(self.netns)
        except _NetlinkError as e:
            if e.code == errno.ENOENT:
                raise DataPlaneUnavailable(UNAVAILABLE) from e
            raise DataPlaneUnavailable(
                f"cannot open IPVS netlink: {os.strerror(e.code)} ({_errname(e.code)})") from e
        except OSError as e:
            raise DataPlaneUnavailable(f"cannot open IPVS netlink: {e}") from e
        return self._sock

    async def close(self) -> None:
        async with self._lock:
            if self._sock is not None:
                sock, self._sock = self._sock, None
                sock.close()

    def _reset(self) -> None:
        """Drop a socket that failed at the socket level; the next call opens a new one."""
        if self._sock is not None:
            sock, self._sock = self._sock, None
            with contextlib.suppress(OSError):
                sock.close()

    def _do(self, what: str, op: Op | None, cmd: int, payload: bytes,
            dump: bool = False) -> list[bytes]:
        sock = self._connect()
        self.requests += 1
        try:
            return sock.ipvs(cmd, payload, dump)
        except _NetlinkError as e:
            msg = _explain(op, e.code) if op is not None else (
                f"IPVS: {what}: {os.strerror(e.code)} ({_errname(e.code)})")
            raise DataPlaneError(msg, transient=e.code in _TRANSIENT) from e
        except OSError as e:
            self._reset()
            raise DataPlaneError(f"IPVS: {what}: netlink socket error: {e}", transient=True) from e

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

    # --- writing ------------------------------------------------------------------------

    def _apply_sync(self, ops: Sequence[Op]) -> None:
        encoded = [encode_op(op) for op in ops]  # refuse a bad spec before touching the kernel
        for op, (cmd, payload) in zip(ops, encoded, strict=True):
            self._do(describe(op), op, cmd, payload)

    async def apply(self, op: Op) -> None:
        async with self._lock:
            await asyncio.to_thread(self._apply_sync, [op])

    async def apply_many(self, ops: Sequence[Op]) -> None:
        """Apply ``ops`` in order; stop at the first failure and raise it."""
        if not ops:
            return
        async with self._lock:
            await asyncio.to_thread(self._apply_sync, list(ops))

    # --- reading ------------------------------------------------------------------------

    def _services_sync(self) -> dict[ServiceKey, ServiceSpec]:
        specs: dict[ServiceKey, ServiceSpec] = {}
        for msg in self._do("dump services", None, CMD_GET_SERVICE, b"", dump=True):
            spec = service_of(msg)
            if spec is not None:
                specs[spec.key] = spec
        return specs

    def _read_service(self, what: str, cmd: int, key: ServiceKey,
                      dump: bool = False) -> list[bytes] | None:
        """A read about one service; None if the kernel has no such service (ESRCH)."""
        try:
            return self._do(what, None, cmd, _nla(ATTR_SERVICE, service_key_attrs(key)), dump)
        except DataPlaneError as e:
            if isinstance(e.__cause__, _NetlinkError) and e.__cause__.code == errno.ESRCH:
                return None
            raise

    def _service_sync(self, key: ServiceKey) -> ServiceSpec | None:
        """One service (IPVS_CMD_GET_SERVICE without NLM_F_DUMP); None if the kernel has none."""
        msgs = self._read_service(f"get service {key}", CMD_GET_SERVICE, key)
        for msg in msgs or ():
            spec = service_of(msg)
            if spec is not None:
                return spec
        return None

    def _dests_sync(self, specs: Sequence[ServiceSpec], with_stats: bool
                    ) -> tuple[list[dict[DestKey, DestSpec] | None],
                               dict[tuple[int, DestKey], DestStats]]:
        """The destinations of each service (None where the service is gone: ESRCH), batched
        (see _GenlSocket.dumps), and with ``with_stats`` their counters keyed (index, dest)."""
        if not specs:
            return [], {}
        sock = self._connect()
        payloads = [_nla(ATTR_SERVICE, service_key_attrs(s.key)) for s in specs]
        self.requests += len(payloads)
        try:
            return sock.dumps(CMD_GET_DEST, payloads, [s.key.af for s in specs], with_stats)
        except _NetlinkError as e:
            raise DataPlaneError(f"IPVS: dump destinations: {os.strerror(e.code)} "
                                 f"({_errname(e.code)})", transient=e.code in _TRANSIENT) from e
        except OSError as e:
            self._reset()
            raise DataPlaneError(f"IPVS: dump destinations: netlink socket error: {e}",
                                 transient=True) from e

    def _dump_sync(self, with_stats: bool, keys: Collection[ServiceKey] | None = None
                   ) -> tuple[dict[ServiceKey, ServiceEntry],
                              dict[tuple[ServiceKey, DestKey], DestStats]]:
        table: dict[ServiceKey, ServiceEntry] = {}
        stats: dict[tuple[ServiceKey, DestKey], DestStats] = {}
        specs: list[ServiceSpec] = []
        if keys is None:
            specs = list(self._services_sync().values())
        else:
            for key in dict.fromkeys(keys):  # each once, in the caller's order
                one = self._service_sync(key)
                if one is not None:
                    specs.append(one)
        all_dests, by_index = self._dests_sync(specs, with_stats)
        for spec, dests in zip(specs, all_dests, strict=True):
            if dests is None:
                continue  # deleted since the service was read: it is not in the table
            table[spec.key] = ServiceEntry(spec, dests)
        for (i, dk), st in by_index.items():
            if all_dests[i] is not None:
                stats[(specs[i].key, dk)] = st
        return table, stats

    async def dump(self, services: Collection[ServiceKey] | None = None) -> Table:
        """Everything (``services`` None: one service dump + one destination dump per service),
        or just ``services``: per key one IPVS_CMD_GET_SERVICE and one destination dump."""
        keys = None if services is None else list(services)
        async with self._lock:
            table, _ = await asyncio.to_thread(self._dump_sync, False, keys)
        return table

    async def dump_services(self) -> dict[ServiceKey, ServiceSpec]:
        """Every service and its settings, no destinations: one netlink dump request."""
        async with self._lock:
            return await asyncio.to_thread(self._services_sync)

    async def stats(self) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        async with self._lock:
            _, stats = await asyncio.to_thread(self._dump_sync, True)
        return stats

    # --- connection timeouts (TimeoutHolder) --------------------------------------------

    def _get_timeouts_sync(self) -> Timeouts:
        msgs = self._do("get timeouts", None, CMD_GET_CONFIG, b"")
        if not msgs:
            raise DataPlaneError("IPVS: get timeouts: the kernel sent no answer", transient=True)
        return decode_timeouts(msgs[0])

    async def get_timeouts(self) -> Timeouts:
        """``ipvsadm -L --timeout``: one IPVS_CMD_GET_CONFIG request."""
        async with self._lock:
            return await asyncio.to_thread(self._get_timeouts_sync)

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        """``ipvsadm --set``: one IPVS_CMD_SET_CONFIG request with only the fields that are set
        (the others keep their values). Nothing to set sends nothing."""
        payload = timeout_attrs(timeouts)
        if not payload:
            return
        async with self._lock:
            await asyncio.to_thread(self._do, f"set timeouts {timeouts}", None, CMD_SET_CONFIG,
                                    payload)

    # --- connection sync daemons (SyncDaemonHolder) --------------------------------------

    def _daemons_sync(self) -> tuple[SyncDaemon, ...]:
        got = [decode_daemon(m) for m in self._do("get sync daemons", None, CMD_GET_DAEMON,
                                                   b"", dump=True)]
        return tuple(sorted((d for d in got if d is not None), key=lambda d: d.role.kernel))

    async def get_sync_daemons(self) -> tuple[SyncDaemon, ...]:
        """``ipvsadm -L --daemon``: one IPVS_CMD_GET_DAEMON dump."""
        async with self._lock:
            return await asyncio.to_thread(self._daemons_sync)

    async def start_sync_daemon(self, daemon: SyncDaemon) -> None:
        """``ipvsadm --start-daemon``: one IPVS_CMD_NEW_DAEMON request."""
        async with self._lock:
            await asyncio.to_thread(self._do, f"start sync daemon {daemon.describe()}", None,
                                    CMD_NEW_DAEMON, daemon_attrs(daemon))

    async def stop_sync_daemon(self, role: SyncRole) -> None:
        """``ipvsadm --stop-daemon``: one IPVS_CMD_DEL_DAEMON request (the state alone)."""
        async with self._lock:
            await asyncio.to_thread(self._do, f"stop sync daemon {role.value}", None,
                                    CMD_DEL_DAEMON,
                                    _nla(ATTR_DAEMON, _u32(DAEMON_STATE, role.kernel)))


# --- connection sync daemons (IPVS_CMD_*_DAEMON; include/uapi/linux/ip_vs.h) ------------------
# ipvsadm --start-daemon / --stop-daemon / -L --daemon. The kernel runs at most one daemon per
# role (IP_VS_STATE_MASTER 1, IP_VS_STATE_BACKUP 2) per network namespace; a second start of
# a role is EEXIST, a stop of one not running ESRCH, an interface that does not exist ENODEV.

CMD_NEW_DAEMON, CMD_DEL_DAEMON, CMD_GET_DAEMON = 9, 10, 11
ATTR_DAEMON = 3
DAEMON_STATE, DAEMON_MCAST_IFN, DAEMON_SYNC_ID, DAEMON_SYNC_MAXLEN = 1, 2, 3, 4
DAEMON_MCAST_GROUP, DAEMON_MCAST_GROUP6, DAEMON_MCAST_PORT, DAEMON_MCAST_TTL = 5, 6, 7, 8


def daemon_attrs(d: SyncDaemon) -> bytes:
    """The nested IPVS_CMD_ATTR_DAEMON of IPVS_CMD_NEW_DAEMON: state, interface and sync id
    always; maxlen (u16), group (IPv4 u32 or IPv6, network order), port and ttl (u8) only
    when set (the kernel fills its defaults: ip_vs_sync.c start_sync_thread). The port is a
    host-order u16 both ways (ip_vs_ctl.c: nla_get_u16 / nla_put_u16; htons at the socket),
    unlike a service's port."""
    inner = (_u32(DAEMON_STATE, d.role.kernel)
             + _nla(DAEMON_MCAST_IFN, d.interface.encode() + b"\0")
             + _u32(DAEMON_SYNC_ID, d.sync_id))
    if d.maxlen:
        inner += _u16(DAEMON_SYNC_MAXLEN, d.maxlen)
    if d.group:
        v6 = ":" in d.group
        raw = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, d.group)
        inner += _nla(DAEMON_MCAST_GROUP6 if v6 else DAEMON_MCAST_GROUP, raw)
    if d.port:
        inner += _u16(DAEMON_MCAST_PORT, d.port)
    if d.ttl:
        inner += _u8(DAEMON_MCAST_TTL, d.ttl)
    return _nla(ATTR_DAEMON, inner)


def decode_daemon(msg: bytes) -> SyncDaemon | None:
    """One IPVS_CMD_GET_DAEMON dump message (None if it carries no daemon)."""
    top = parse_attrs(msg, _NLMSGHDR.size + _GENLHDR.size)
    nested = top.get(ATTR_DAEMON)
    if nested is None:
        return None
    a = parse_attrs(nested)
    state = _int(a, DAEMON_STATE)
    if state not in (1, 2):
        return None
    ifn = bytes(a.get(DAEMON_MCAST_IFN, b"")).split(b"\0", 1)[0].decode(errors="replace")
    group: str | None = None
    if DAEMON_MCAST_GROUP6 in a:
        group = _ntop(bytes(a[DAEMON_MCAST_GROUP6]), True)
    elif DAEMON_MCAST_GROUP in a:
        group = _ntop(bytes(a[DAEMON_MCAST_GROUP]), False)
    return SyncDaemon(
        SyncRole.MASTER if state == 1 else SyncRole.BACKUP, ifn, _int(a, DAEMON_SYNC_ID),
        _int(a, DAEMON_SYNC_MAXLEN) if DAEMON_SYNC_MAXLEN in a else None,
        _int(a, DAEMON_MCAST_PORT) if DAEMON_MCAST_PORT in a else None,
        _int(a, DAEMON_MCAST_TTL) if DAEMON_MCAST_TTL in a else None, group)


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
