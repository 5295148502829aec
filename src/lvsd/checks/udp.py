"""UDP_CHECK: send ``payload``, judge the reply (keepalived ``check_udp.c``, ``layer4.c``).

* Without ``require_reply``: success unless an ICMP error (port unreachable -> "refused") comes
  back within connect_timeout; silence is success (keepalived).
* With ``require_reply``: a reply must arrive within connect_timeout ("no reply: timeout after N
  ms" otherwise); its length must lie within [min_reply_length, max_reply_length] (default 0..255
  as in keepalived) and its first bytes must equal the required reply (compared on the shorter
  of the two, as keepalived does). ``require_reply`` given as empty bytes means any reply.
"""

from __future__ import annotations

import asyncio
import socket
import time

from lvsd.checks.result import ProbeResult, errno_reason, make_socket, ms, sockaddr
from lvsd.config.model import Checker


def judge_reply(ck: Checker, data: bytes) -> tuple[bool, str]:
    lo = ck.min_reply_length or 0
    hi = ck.max_reply_length if ck.max_reply_length is not None else 255
    if not lo <= len(data) <= hi:
        return False, f"reply length {len(data)} not in {lo}..{hi}"
    want = ck.require_reply or b""
    n = min(len(want), len(data))
    if data[:n] != want[:n]:
        return False, "reply mismatch"
    return True, f"reply {len(data)} bytes"


async def probe(ck: Checker) -> ProbeResult:
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        s = make_socket(ck, socket.SOCK_DGRAM)
    except OSError as e:
        return ProbeResult(False, errno_reason(e), time.monotonic() - t0, started=t0)
    need = ck.require_reply is not None
    try:
        await loop.sock_connect(s, sockaddr(ck.connect_ip, ck.connect_port))
        await loop.sock_sendall(s, ck.payload or b"")
        try:
            async with asyncio.timeout(ck.connect_timeout):
                data = await loop.sock_recv(s, 65536)
        except TimeoutError:
            if need:
                return ProbeResult(False, f"no reply: timeout after {ms(ck.connect_timeout)}",
                                   time.monotonic() - t0, started=t0)
            return ProbeResult(True, "no ICMP error", time.monotonic() - t0, started=t0)
        lat = time.monotonic() - t0
        if not need:
            return ProbeResult(True, f"reply {len(data)} bytes", lat, started=t0)
        ok, why = judge_reply(ck, data)
        return ProbeResult(ok, why, lat, started=t0)
    except OSError as e:
        return ProbeResult(False, errno_reason(e), time.monotonic() - t0, started=t0)
    finally:
        s.close()
