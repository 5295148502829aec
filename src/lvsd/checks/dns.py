"""DNS_CHECK: one query over UDP (keepalived ``check_dns.c``).

A query ``dns_name``/``dns_type``/IN with RD set and a random id is sent to connect_ip:port.
Success is a response with the same id, QR set and RCODE 0 (NOERROR); the answer section is not
required (keepalived). Other datagrams (wrong id, a query) are ignored; RCODE != 0 fails with
"rcode NXDOMAIN"; silence fails with "timeout after N ms"; ICMP port unreachable with "refused".
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from lvsd.checks.result import ProbeResult, finished, make_socket, ms, os_failure, sockaddr
from lvsd.config.model import Checker

log = logging.getLogger(__name__)


def make_query(ck: Checker) -> dns.message.Message:
    q = dns.message.make_query(ck.dns_name, dns.rdatatype.from_text(ck.dns_type), use_edns=False)
    q.flags |= dns.flags.RD
    return q


async def probe(ck: Checker) -> ProbeResult:
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        q = make_query(ck)
    except Exception as e:  # bad name/type in config
        return ProbeResult(False, f"bad query: {e}", 0.0, started=t0)
    try:
        s = make_socket(ck, socket.SOCK_DGRAM)
    except OSError as e:
        return os_failure(e, t0)
    try:
        async with asyncio.timeout(ck.connect_timeout):
            await loop.sock_connect(s, sockaddr(ck.connect_ip, ck.connect_port))
            await loop.sock_sendall(s, q.to_wire())
            while True:
                data = await loop.sock_recv(s, 65535)
                try:
                    r = dns.message.from_wire(data)
                except Exception as exc:  # whatever dnspython makes of a hostile datagram
                    log.debug("%s: not a DNS message (%s): ignored", ck.label, exc)
                    continue  # keep waiting for the answer
                if r.id != q.id or not (r.flags & dns.flags.QR):
                    continue
                rc = r.rcode()
                lat = time.monotonic() - t0
                if rc != dns.rcode.NOERROR:
                    return ProbeResult(False, f"rcode {dns.rcode.to_text(rc)}", lat, started=t0)
                return ProbeResult(True, f"{len(r.answer)} answer(s)", lat, started=t0)
    except TimeoutError:
        return finished(False, f"timeout after {ms(ck.connect_timeout)}", t0)
    except OSError as e:
        return os_failure(e, t0)
    finally:
        s.close()
