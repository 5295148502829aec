"""Gratuitous ARP (IPv4) and unsolicited Neighbour Advertisements (IPv6) for VIPs.

Theory of operation
-------------------
When an instance becomes MASTER its neighbours must learn the VIPs' new MAC at once (RFC 5798
§6.4.2: "broadcast a gratuitous ARP request ... for each IPv4 address"; "send an unsolicited
ND Neighbor Advertisement with the Router Flag (R) set to 0 ... for each IPv6 address").

* IPv4: one Ethernet frame per VIP on an ``AF_PACKET``/``SOCK_RAW`` socket bound to the
  interface: broadcast destination, ARP request (op 1) with sender = target = the VIP and the
  interface's MAC as sender hardware address, target hardware address broadcast (the form
  keepalived sends). A neighbour's existing entry is updated by it even with ``arp_accept=0``.
* IPv6: an ICMPv6 type 136 message (Override flag set, Router and Solicited clear, Target
  Link-Layer Address option) per VIP to ff02::1 from an ``AF_INET6``/``IPPROTO_ICMPV6`` raw
  socket with hop limit 255 (RFC 4861 §7.1.2 rejects anything else); the kernel fills in
  the ICMPv6 checksum and the source address.

scapy would do the same but costs ~1 s of import time; these frames are a few lines each.

The schedule (keepalived: a burst of ``garp_master_repeat`` on becoming MASTER, another after
``garp_master_delay``, then every ``garp_master_refresh``) is the state machine's: it emits
``SendGratuitous(addresses, count)`` actions and the runner calls ``Garp.burst``. The runner
opens the sockets when the instance starts (``Garp.open``), so a takeover at a moment when no
new descriptor can be had (EMFILE) still announces the VIPs.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address

__all__ = ["Garp", "arp_frame", "na_message"]

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
ALL_NODES = "ff02::1"


def arp_frame(mac: bytes, vip: IPv4Address) -> bytes:
    """A broadcast gratuitous ARP request frame for ``vip`` from ``mac``."""
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + vip.packed + BROADCAST + vip.packed
    return eth + arp


def na_message(mac: bytes, vip: IPv6Address) -> bytes:
    """ICMPv6 unsolicited NA for ``vip`` (checksum left 0: the kernel computes it)."""
    flags = 0x20000000  # Override
    opt = struct.pack("!BB", 2, 1) + mac  # Target Link-Layer Address, 8 bytes
    return struct.pack("!BBHI", 136, 0, 0, flags) + vip.packed + opt


class Garp:
    """Sends GARP/NA for VIPs on one interface. Sockets open lazily and stay open."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self._pkt: socket.socket | None = None
        self._icmp6: socket.socket | None = None
        self._ifindex = 0  # of the interface the ICMPv6 socket was opened on
        self.mac: bytes = b""
        self.sent = 0
        self.errors = 0

    def _packet_sock(self) -> socket.socket:
        if self._pkt is None:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            s.setblocking(False)
            s.bind((self.ifname, ETH_P_ARP))
            self.mac = s.getsockname()[4][:6]
            self._pkt = s
        return self._pkt

    def _icmp6_sock(self) -> socket.socket:
        if self._icmp6 is None:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, 25, self.ifname.encode())  # SO_BINDTODEVICE
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            self._ifindex = socket.if_nametoindex(self.ifname)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            self._icmp6 = s
        if not self.mac:
            self._packet_sock()
        return self._icmp6

    def open(self, family: int = 4) -> None:
        """Open the socket(s) now, at start: a takeover must not need a new descriptor (with
        descriptors exhausted the first burst would fail). Raises ``OSError``."""
        self._packet_sock()
        if family == 6:
            self._icmp6_sock()

    def burst(self, vips: Iterable[str | IPv4Address | IPv6Address], repeat: int = 1) -> int:
        """Send ``repeat`` GARP/NA per VIP now; returns how many went out (errors counted)."""
        n = 0
        addrs = [a if isinstance(a, IPv4Address | IPv6Address) else ip_address(a)
                 for a in vips]
        for _ in range(max(1, repeat)):
            for a in addrs:
                try:
                    if isinstance(a, IPv4Address):
                        sock = self._packet_sock()  # learns self.mac
                        sock.send(arp_frame(self.mac, a))
                    else:
                        sock = self._icmp6_sock()
                        sock.sendto(na_message(self.mac, a), (ALL_NODES, 0, 0, self._ifindex))
                    n += 1
                except OSError:
                    self.errors += 1
        self.sent += n
        return n

    def close(self) -> None:
        for s in (self._pkt, self._icmp6):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self._pkt = self._icmp6 = None
