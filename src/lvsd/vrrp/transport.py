"""VRRP transports: raw IP protocol 112 (the standard) and UDP (an lvsd extension).

Theory of operation
-------------------
A transport moves whole VRRP payloads (what ``lvsd.vrrp.codec.encode`` returns, no IP header)
between one instance and its peers, and hands every received payload to a callback together
with what the codec needs to validate it: source, destination, TTL / hop limit and the IP
protocol number. It never decodes; the runner does (and counts what is invalid).

Raw (``RawTransport``, the default and the only wire-compatible kind):

* IPv4: two ``socket(AF_INET, SOCK_RAW, 112)``. The receive socket is bound to the interface
  (``SO_BINDTODEVICE``), joins 224.0.0.18 on it (``IP_ADD_MEMBERSHIP`` with ``ip_mreqn``) and
  sets ``IP_MULTICAST_ALL=0`` (the default 1 would hand it groups joined by any other socket
  in the namespace); the runner still filters on VRID. An IPv4 raw socket returns the IP
  header, so the TTL is read from it (the same value ``IP_RECVTTL`` would give);
  ``IP_PKTINFO`` gives the arriving interface. The send socket is bound to the source address
  (keepalived sends from the interface's primary address, or ``mcast_src_ip`` /
  ``unicast_src_ip``) and sets ``IP_MULTICAST_IF``, ``IP_MULTICAST_TTL=255`` (``IP_TTL`` does
  not apply to multicast: keepalived logs "invalid TTL/HL" otherwise), ``IP_TTL=255`` for
  unicast and ``IP_MULTICAST_LOOP=0``. Two sockets because binding a raw socket to an
  address also filters what it receives by destination.
* IPv6 (VRRPv3 only, RFC 5798 §5.1.2): ``socket(AF_INET6, SOCK_RAW, 112)``; payload only, the
  hop limit and destination come from ``IPV6_RECVHOPLIMIT`` / ``IPV6_RECVPKTINFO``. Sent from
  the interface's link-local address (RFC 5798 §5.1.2.1) to ff02::12 with
  ``IPV6_MULTICAST_HOPS=255`` (or to each unicast peer with ``IPV6_UNICAST_HOPS=255``).
* IPsec-AH (``auth_type AH``, IPv4 only; ``make_transport(..., ah_key=...)``): both sockets
  use protocol 51 instead of 112 and the send socket sets ``IP_HDRINCL``: the AH ICV covers the
  IP header, so lvsd writes the header itself exactly as keepalived does (``lvsd.vrrp.ah``:
  TOS 0xc0, its own IP id, TTL 255; the kernel fills in the checksum). ``send`` seals each
  payload with the instance's ``AhSession`` (one sequence number per advert: it advances on the
  send to ``destinations[0]``, and the runner sends each advert to the destinations in order).
  A received packet of our VRID is verified (ICV, SPI, sequence number) before the runner sees
  it; the payload handed over is the VRRP message after the AH header, with ``ip_proto`` 51
  and, when it failed, ``Packet.error`` (the runner counts that instead of decoding). The
  session (its sequence counter) is carried over when a reload replaces the transport
  (``previous``), as keepalived keeps it; while both sockets are open (the moment between
  opening the new one and closing the old) a packet read by both counts once as a replay.
* Unicast (``unicast_peer``): one packet per peer, addressed to it; only packets from a peer
  are accepted when ``check_unicast_src`` is set (keepalived), and a packet from one of our
  own source addresses is always dropped.
* Every packet dropped before the codec sees it is counted by why (``discarded``:
  ``DISCARD_REASONS``, no whole IPv4 header, another interface, our own source address, a
  destination that is not ours, not a unicast peer); the runner adds them to the instance's
  ``invalid_packets`` beside the codec's reasons.
* ``use_vmac`` (``lvsd.vrrp.vmac``): the transport is opened on the vmac interface (the base
  with ``vmac_xmit_base``) with ``source_ifname`` the base interface, whose address adverts
  are sent from (keepalived), so they leave with the virtual MAC as Ethernet source.

UDP (``UdpTransport``, an lvsd extension for hosts without raw sockets or multicast; never
the default and not understood by keepalived or routers): the same payloads as UDP datagrams
on ``port`` (default 5798), to each unicast peer, or to the multicast group when there are no
peers. The TTL is not known (``ttl=None``, the codec then skips the check, as keepalived does
for a socket that cannot report it), so a UDP instance should run with peers and
``check_unicast_src``.

Errors opening a transport raise ``TransportError`` with the interface and the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Protocol

from lvsd.vrrp.ah import AhSession
from lvsd.vrrp.codec import (
    IPPROTO_AH,
    IPPROTO_VRRP,
    MCAST_GROUP4,
    MCAST_GROUP6,
    TTL,
    Invalid,
    IPAddress,
)

__all__ = [
    "UDP_PORT",
    "Packet",
    "RawTransport",
    "Transport",
    "TransportError",
    "UdpTransport",
    "interface_addresses",
    "make_transport",
]

# Why a transport drops a packet before decoding (``discarded`` keys; the status page's
# ``invalid_packets`` reasons beside the codec's InvalidReason values)
TRUNCATED = "truncated"  # not a whole IPv4 header (the codec's reason for a short payload)
INTERFACE = "interface"  # arrived on another interface
OWN_ADDRESS = "own_address"  # from our own source address (looped back, reflected, forged)
DESTINATION = "destination"  # multicast for a unicast instance, or not our group
UNICAST_SRC = "unicast_src"  # check_unicast_src: not from a unicast_peer
DISCARD_REASONS = (TRUNCATED, INTERFACE, OWN_ADDRESS, DESTINATION, UNICAST_SRC)

UDP_PORT = 5798
IP_MULTICAST_ALL = 49  # linux/in.h; not exported by the socket module
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
IP_PKTINFO: int = getattr(socket, "IP_PKTINFO", 8)
_RECV_BUF = 65535
log = logging.getLogger(__name__)
_ANC_BUF = socket.CMSG_SPACE(64) * 4


class TransportError(RuntimeError):
    """A transport could not be opened or used; the message names the interface and cause."""


@dataclass(frozen=True, slots=True)
class Packet:
    """One received VRRP payload and what the codec needs to validate it."""

    payload: bytes
    src: IPAddress
    dst: IPAddress
    ttl: int | None
    ip_proto: int = IPPROTO_VRRP
    ifindex: int | None = None
    error: Invalid | None = None  # IPsec-AH verification failed: discard and count this


class Transport(Protocol):
    """What the runner needs from a transport."""

    source: IPAddress  # the address adverts are sent from (primary / link-local / configured)
    destinations: tuple[IPAddress, ...]  # group, or the unicast peers

    async def open(self, on_packet: Callable[[Packet], None]) -> None: ...

    def send(self, payload: bytes, dst: IPAddress) -> None: ...

    def close(self) -> None: ...


async def interface_addresses(ifname: str
                              ) -> tuple[int, list[tuple[IPAddress, int, bool]]]:
    """(ifindex, [(address, prefixlen, secondary)]) for ``ifname`` in the current namespace.

    Read with a netlink dump (pyroute2 ``AsyncIPRoute``).
    """
    from pyroute2 import AsyncIPRoute

    async with AsyncIPRoute() as ipr:
        idx = await ipr.link_lookup(ifname=ifname)
        if not idx:
            raise TransportError(f"interface {ifname!r} does not exist")
        out: list[tuple[IPAddress, int, bool]] = []
        async for msg in await ipr.addr("dump", index=idx[0]):
            addr = msg.get_attr("IFA_ADDRESS")
            if addr is None:
                continue
            flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
            out.append((ip_address(addr), int(msg["prefixlen"]), bool(flags & 0x01)))
        return idx[0], out


async def _pick_source(ifname: str, family: int, configured: str | None,
                 exclude: Sequence[IPAddress] = ()) -> tuple[int, IPAddress]:
    ifindex, addrs = await interface_addresses(ifname)
    if configured:
        return ifindex, ip_address(configured)
    for addr, plen, secondary in addrs:
        if addr.version != family or secondary or addr in exclude:
            continue
        if family == 6 and not addr.is_link_local:
            continue
        if family == 4 and plen == 32 and len(addrs) > 1:
            continue  # a /32 is most likely a VIP (ours or another instance's)
        return ifindex, addr
    kind = "link-local IPv6" if family == 6 else "primary IPv4"
    raise TransportError(f"interface {ifname!r} has no {kind} address to send VRRP from")


def _parse_cmsgs(anc: list[tuple[int, int, bytes]], family: int
                 ) -> tuple[int | None, IPAddress | None, int | None]:
    """(ifindex, destination, ttl) from ancillary data.

    IPv4 gives no TTL here (no ``IP_RECVTTL``): the caller reads it from the IP header.
    """
    ifindex: int | None = None
    dst: IPAddress | None = None
    ttl: int | None = None
    for level, typ, data in anc:
        if family == 4 and level == socket.IPPROTO_IP and typ == IP_PKTINFO \
                and len(data) >= 12:
            ifindex = struct.unpack("=i", data[:4])[0]
            dst = IPv4Address(data[8:12])
        elif family == 6 and level == socket.IPPROTO_IPV6 and typ == socket.IPV6_PKTINFO \
                and len(data) >= 20:
            dst = IPv6Address(data[:16])
            ifindex = struct.unpack("=i", data[16:20])[0]
        elif family == 6 and level == socket.IPPROTO_IPV6 and typ == socket.IPV6_HOPLIMIT \
                and len(data) >= 4:
            ttl = struct.unpack("=i", data[:4])[0]
    return ifindex, dst, ttl


class _Endpoint:
    """What both transports are configured with: interface, family, peers, source, group."""

    def __init__(self, ifname: str, family: int, peers: Sequence[str], src_ip: str | None,
                 check_unicast_src: bool, group: str | None) -> None:
        if family not in (4, 6):
            raise TransportError(f"address family must be 4 or 6, not {family}")
        self.ifname = ifname
        self.family = family
        self.peers: tuple[IPAddress, ...] = tuple(ip_address(p) for p in peers)
        self._src_cfg = src_ip
        self.check_unicast_src = check_unicast_src
        self.group: IPAddress = ip_address(group) if group else (
            MCAST_GROUP4 if family == 4 else MCAST_GROUP6)
        self.destinations: tuple[IPAddress, ...] = self.peers or (self.group,)
        self.source: IPAddress = IPv4Address(0) if family == 4 else IPv6Address(0)
        self.ifindex = 0
        # the interface whose address adverts are sent from: ``ifname``, or the base of a
        # use_vmac interface (keepalived vrrp.h VRRP_PKT_SADDR: IF_ADDR(configured_ifp))
        self.source_ifname = ifname
        self.send_errors = 0
        # packets dropped before decoding, by reason (DISCARD_REASONS): every one is counted
        self.discarded: Counter[str] = Counter()

    @property
    def filtered(self) -> int:
        """All packets dropped before decoding."""
        return sum(self.discarded.values())


def _ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise TransportError(f"interface {ifname!r} does not exist") from None


def _raw_socket(family: int, ifb: bytes, proto: int = IPPROTO_VRRP) -> socket.socket:
    """A non-blocking raw socket of ``proto`` (112, or 51 for AH) bound to interface ``ifb``."""
    sock = socket.socket(socket.AF_INET if family == 4 else socket.AF_INET6,
                         socket.SOCK_RAW, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifb)
    except OSError:
        sock.close()
        raise
    return sock


class RawTransport(_Endpoint):
    """Raw IP protocol 112 on one interface; multicast unless ``peers`` are given.

    ``ah``: IPsec-AH (protocol 51) sealed and verified with this session (IPv4 only).
    """

    def __init__(self, ifname: str, family: int = 4, *, peers: Sequence[str] = (),
                 src_ip: str | None = None, check_unicast_src: bool = False,
                 group: str | None = None, ah: AhSession | None = None) -> None:
        super().__init__(ifname, family, peers, src_ip, check_unicast_src, group)
        if ah is not None and family != 4:
            raise TransportError("IPsec-AH authentication exists for IPv4 only")
        self.ah = ah
        self.proto = IPPROTO_AH if ah is not None else IPPROTO_VRRP
        self._rx: socket.socket | None = None
        self._tx: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_packet: Callable[[Packet], None] | None = None

    async def open(self, on_packet: Callable[[Packet], None]) -> None:
        self.ifindex, self.source = await _pick_source(self.source_ifname, self.family,
                                                       self._src_cfg)
        if self.source_ifname != self.ifname:  # use_vmac: send and receive on the vmac
            self.ifindex = _ifindex(self.ifname)
        if self.source.version != self.family:
            raise TransportError(f"source {self.source} is not IPv{self.family}")
        for p in self.peers:
            if p.version != self.family:
                raise TransportError(f"unicast peer {p} is not IPv{self.family}")
        # A link-local address stays tentative for a moment after the link comes up (DAD):
        # binding to it fails with EADDRNOTAVAIL until then. Wait, bounded.
        for attempt in range(50):
            try:
                if self.family == 4:
                    self._open4()
                else:
                    self._open6()
                break
            except OSError as exc:
                self.close()
                if exc.errno == errno.EADDRNOTAVAIL and attempt < 49:
                    await asyncio.sleep(0.1)
                    continue
                raise TransportError(
                    f"cannot open raw VRRP socket on {self.ifname!r}: {exc.strerror or exc}"
                    + (" (needs root / CAP_NET_RAW)" if exc.errno == errno.EPERM else "")
                ) from exc
        self._on_packet = on_packet
        self._loop = asyncio.get_running_loop()
        assert self._rx is not None
        self._loop.add_reader(self._rx.fileno(), self._readable)

    def _open4(self) -> None:
        ifb = self.ifname.encode()
        rx = self._rx = _raw_socket(4, ifb, self.proto)
        rx.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        with contextlib.suppress(OSError):
            rx.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        if not self.peers:
            mreqn = self.group.packed + bytes(4) + struct.pack("=i", self.ifindex)
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        tx = self._tx = _raw_socket(4, ifb, self.proto)
        if self.ah is not None:
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)  # the ICV covers the header
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, TTL)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                      bytes(4) + self.source.packed + struct.pack("=i", self.ifindex))
        tx.bind((str(self.source), 0))
        with contextlib.suppress(OSError):
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 6)

    def _open6(self) -> None:
        ifb = self.ifname.encode()
        rx = self._rx = _raw_socket(6, ifb)
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        with contextlib.suppress(OSError, AttributeError):
            rx.setsockopt(socket.IPPROTO_IPV6, 26, 0)  # IPV6_MULTICAST_ALL
        if not self.peers:
            mreq = self.group.packed + struct.pack("=I", self.ifindex)
            rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        tx = self._tx = _raw_socket(6, ifb)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, TTL)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
        scope = self.ifindex if self.source.is_link_local else 0
        tx.bind((str(self.source), 0, 0, scope))

    def _readable(self) -> None:
        rx = self._rx
        if rx is None:
            return
        for _ in range(64):  # drain what is queued, bounded
            try:
                data, anc, _flags, addr = rx.recvmsg(_RECV_BUF, _ANC_BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            pkt = self._to_packet(data, anc, addr)
            if pkt is not None and self._on_packet is not None:
                self._on_packet(pkt)

    def _to_packet(self, data: bytes, anc: list[tuple[int, int, bytes]],
                   addr: tuple[str, ...]) -> Packet | None:
        ifindex, dst, ttl = _parse_cmsgs(anc, self.family)
        if self.family == 4:
            if len(data) < 20 or data[0] >> 4 != 4 or not 20 <= (data[0] & 0x0F) * 4 <= len(data):
                self.discarded[TRUNCATED] += 1  # no whole IPv4 header
                return None
            ihl = (data[0] & 0x0F) * 4
            ttl = data[8]
            proto = data[9]
            src: IPAddress = IPv4Address(data[12:16])
            dst = IPv4Address(data[16:20])
            payload = data[ihl:]
        else:
            proto = IPPROTO_VRRP
            src = ip_address(addr[0].split("%")[0])
            payload = data
            if dst is None:
                dst = self.group
        if ifindex is not None and ifindex != self.ifindex:
            self.discarded[INTERFACE] += 1
            return None
        if src == self.source:
            self.discarded[OWN_ADDRESS] += 1  # ours (looped back, reflected or forged)
            return None
        if self.peers:
            if dst == self.group or dst.is_multicast:
                self.discarded[DESTINATION] += 1
                return None
            if self.check_unicast_src and src not in self.peers:
                self.discarded[UNICAST_SRC] += 1
                return None
        elif dst != self.group:
            self.discarded[DESTINATION] += 1
            return None
        error = None
        if proto == IPPROTO_AH and self.ah is not None:
            # keepalived checks the TTL before AH (multicast only, vrrp_check_packet)
            payload, error = self.ah.open_packet(data, ttl_ok=bool(self.peers) or ttl == TTL)
            if error is not None:
                log.info("IPsec-AH packet from %s on %s discarded: %s", src, self.ifname,
                         error.detail)
        return Packet(payload, src, dst, ttl, proto, ifindex, error)

    def send(self, payload: bytes, dst: IPAddress) -> None:
        tx = self._tx
        if tx is None:
            return
        try:
            if self.family == 4 and self.ah is not None:
                assert isinstance(dst, IPv4Address) and isinstance(self.source, IPv4Address)
                packet = self.ah.seal_advert(payload, self.source, dst,
                                             new_advert=dst == self.destinations[0])
                tx.sendto(packet, (str(dst), 0))
            elif self.family == 4:
                tx.sendto(payload, (str(dst), 0))
            else:
                scope = self.ifindex if (dst.is_link_local or dst.is_multicast) else 0
                tx.sendto(payload, (str(dst), 0, 0, scope))
        except OSError:
            # ENETDOWN/ENOBUFS while the link is down: counted, the machine carries on.
            self.send_errors += 1

    def close(self) -> None:
        if self._loop is not None and self._rx is not None:
            try:
                self._loop.remove_reader(self._rx.fileno())
            except (ValueError, OSError, RuntimeError) as exc:  # fd gone, loop closed
                log.debug("VRRP %s: remove_reader: %s", self.ifname, exc)
        for s in (self._rx, self._tx):
            if s is not None:
                s.close()
        self._rx = self._tx = None


class UdpTransport(_Endpoint):
    """VRRP payloads over UDP (lvsd extension, see the module docstring)."""

    def __init__(self, ifname: str, family: int = 4, *, peers: Sequence[str] = (),
                 src_ip: str | None = None, check_unicast_src: bool = False,
                 group: str | None = None, port: int = UDP_PORT) -> None:
        super().__init__(ifname, family, peers, src_ip, check_unicast_src, group)
        self.port = port
        self._stream: object | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    async def open(self, on_packet: Callable[[Packet], None]) -> None:
        import asyncio_dgram

        if self._src_cfg:
            self.source = ip_address(self._src_cfg)
            try:
                self.ifindex = socket.if_nametoindex(self.ifname)
            except OSError as exc:
                raise TransportError(f"interface {self.ifname!r} does not exist") from exc
        else:
            self.ifindex, self.source = await _pick_source(self.ifname, self.family, None)
        fam = socket.AF_INET if self.family == 4 else socket.AF_INET6
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        self._sock = sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            scope = self.ifindex if self.family == 6 else 0
            if self.peers:
                addr: tuple[str | int, ...] = (str(self.source), self.port)
            else:
                addr = (str(self.group), self.port)
                if self.family == 4:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                    self.group.packed + bytes(4)
                                    + struct.pack("=i", self.ifindex))
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                    bytes(4) + self.source.packed
                                    + struct.pack("=i", self.ifindex))
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, TTL)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                                    self.group.packed + struct.pack("=I", self.ifindex))
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, TTL)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            if self.family == 4:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
                sock.bind(addr)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, TTL)
                sock.bind((*addr, 0, scope))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise TransportError(
                f"cannot open UDP VRRP socket on {self.ifname!r} port {self.port}: "
                f"{exc.strerror or exc}") from exc
        stream = await asyncio_dgram.from_socket(sock)
        self._stream = stream
        self._task = asyncio.get_running_loop().create_task(self._recv_loop(stream, on_packet))

    async def _recv_loop(self, stream: object, on_packet: Callable[[Packet], None]) -> None:
        import asyncio_dgram

        while True:
            try:
                data, (host, *_rest) = await stream.recv()  # type: ignore[attr-defined]
            except asyncio_dgram.TransportClosed:
                return
            except OSError:
                continue
            src = ip_address(str(host).split("%")[0])
            if src == self.source:
                self.discarded[OWN_ADDRESS] += 1
                continue
            if self.check_unicast_src and self.peers and src not in self.peers:
                self.discarded[UNICAST_SRC] += 1
                continue
            on_packet(Packet(bytes(data), src, self.group if not self.peers else self.source,
                             None, IPPROTO_VRRP, self.ifindex))

    def send(self, payload: bytes, dst: IPAddress) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            if self.family == 4:
                sock.sendto(payload, (str(dst), self.port))
            else:
                sock.sendto(payload, (str(dst), self.port, 0, self.ifindex))
        except OSError:
            self.send_errors += 1

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]
            self._stream = None
        elif self._sock is not None:
            self._sock.close()
        self._sock = None


def make_transport(kind: str, ifname: str, family: int, *, peers: Sequence[str] = (),
                   src_ip: str | None = None, check_unicast_src: bool = False,
                   group: str | None = None, port: int = UDP_PORT,
                   ah_key: bytes | None = None, vrid: int = 0,
                   previous: Transport | None = None) -> Transport:
    """``kind`` is "raw" (default, wire compatible) or "udp" (lvsd extension).

    ``ah_key`` (``VrrpParams.ah_key``): IPsec-AH for virtual router ``vrid`` (raw IPv4 only);
    ``previous``: the transport this one replaces on a reload, whose AH sequence counter it
    continues.
    """
    if ah_key is not None:
        if kind != "raw":
            raise TransportError("auth_type AH needs the raw transport (the AH header "
                                 "authenticates the IP header)")
        ah = AhSession(ah_key, vrid, unicast=bool(peers))
        prev_ah = getattr(previous, "ah", None)
        if isinstance(prev_ah, AhSession):
            ah.continue_from(prev_ah)
        return RawTransport(ifname, family, peers=peers, src_ip=src_ip,
                            check_unicast_src=check_unicast_src, group=group, ah=ah)
    if kind == "raw":
        return RawTransport(ifname, family, peers=peers, src_ip=src_ip,
                            check_unicast_src=check_unicast_src, group=group)
    if kind == "udp":
        return UdpTransport(ifname, family, peers=peers, src_ip=src_ip,
                            check_unicast_src=check_unicast_src, group=group, port=port)
    raise TransportError(f"unknown transport {kind!r} (expected 'raw' or 'udp')")
