"""PING_CHECK: one ICMP / ICMPv6 echo request, success on the matching echo reply within
connect_timeout (keepalived ``check_ping.c``).

Uses an unprivileged ping socket (SOCK_DGRAM/IPPROTO_ICMP, the kernel matches replies to it)
when ``net.ipv4.ping_group_range`` allows it, else a raw socket (root), on which replies are
matched by source address, identifier and sequence number. bindto/bind_if/fwmark apply.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import time

from lvsd.checks.result import (
    LOCAL_ERRNOS,
    ProbeResult,
    errno_reason,
    family_of,
    finished,
    local_failure,
    ms,
    os_failure,
    sockaddr,
)
from lvsd.config.model import Checker

_seq = itertools.count(1)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _open(fam: socket.AddressFamily) -> tuple[socket.socket, bool]:
    proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
    flags = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
    try:
        return socket.socket(fam, socket.SOCK_DGRAM | flags, proto), False
    except PermissionError:
        return socket.socket(fam, socket.SOCK_RAW | flags, proto), True


async def probe(ck: Checker) -> ProbeResult:
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    fam = family_of(ck.connect_ip)
    v6 = fam == socket.AF_INET6
    try:
        s, raw = _open(fam)
    except OSError as e:
        if e.errno in LOCAL_ERRNOS:  # out of descriptors/memory: not the server's fault
            return local_failure(e.errno, t0)
        return ProbeResult(False, f"cannot open ICMP socket: {errno_reason(e)}", 0.0, started=t0)
    try:
        if ck.fwmark is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, ck.fwmark)
        if ck.bind_if:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ck.bind_if.encode() + b"\0")
        if ck.bindto:
            s.bind(sockaddr(ck.bindto, 0))
        ident = (os.getpid() ^ id(s)) & 0xFFFF
        seq = next(_seq) & 0xFFFF
        req_type, rep_type = (128, 129) if v6 else (8, 0)
        payload = b"lvsd" + struct.pack("!d", t0)
        hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
        csum = 0 if v6 else checksum(hdr + payload)
        pkt = struct.pack("!BBHHH", req_type, 0, csum, ident, seq) + payload
        dst = sockaddr(ck.connect_ip, 0)
        async with asyncio.timeout(ck.connect_timeout):
            await loop.sock_sendto(s, pkt, dst)
            while True:
                data, src = await loop.sock_recvfrom(s, 4096)
                if raw and not v6:
                    data = data[(data[0] & 0x0F) * 4:]  # strip the IPv4 header
                if len(data) < 8 or data[0] != rep_type:
                    continue
                _, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
                if rseq != seq or (raw and rid != ident):
                    continue
                if raw and socket.inet_pton(fam, src[0]) != socket.inet_pton(fam, ck.connect_ip):
                    continue
                return finished(True, "echo reply", t0)
    except TimeoutError:
        return finished(False, f"no echo reply: timeout after {ms(ck.connect_timeout)}", t0)
    except OSError as e:
        return os_failure(e, t0)
    finally:
        s.close()
