"""UDP_CHECK: send ``payload``, judge the reply (keepalived ``check_udp.c``, ``layer4.c``).

* The datagram is ``payload``; without one, keepalived's 32-byte filler
  (``"keepalived check - "`` repeated, layer4.c ``set_buf``).
* Without ``require_reply``: success unless an ICMP error (port unreachable -> "refused") comes
  back within connect_timeout; silence is success (keepalived).
* With ``require_reply``: a reply must arrive within connect_timeout ("no reply: timeout after N
  ms" otherwise). ``require_reply`` without data (stored as ``b""``) accepts any reply.
  With data, the reply's length must lie within [min_reply_length, max_reply_length] (default
  0..255 as in keepalived) and its first bytes must equal the required bytes, compared on the
  shorter of the two, ignoring the wildcard (``x``) nibbles of ``require_reply_mask``.
  keepalived's code (``udp_check_thread``: ``reply_data && check_udp_reply()``) applies the
  length limits only when data is given, although its manual says otherwise; lvsd follows the
  code, so a config behaves the same under both.
"""

from __future__ import annotations

import asyncio
import socket
import time

from lvsd.checks.result import ProbeResult, finished, make_socket, ms, os_failure, sockaddr
from lvsd.config.model import Checker

DEFAULT_PAYLOAD = (b"keepalived check - " * 2)[:32]  # layer4.c UDP_BUFSIZE, set_buf()


def judge_reply(ck: Checker, data: bytes) -> tuple[bool, str]:
    want = ck.require_reply or b""
    if not want:
        return True, f"reply {len(data)} bytes"
    lo = ck.min_reply_length or 0
    hi = ck.max_reply_length if ck.max_reply_length is not None else 255
    if not lo <= len(data) <= hi:
        return False, f"reply length {len(data)} not in {lo}..{hi}"
    mask = ck.require_reply_mask
    for i in range(min(len(want), len(data))):
        if (data[i] ^ want[i]) & ~(mask[i] if mask is not None and i < len(mask) else 0):
            return False, "reply mismatch"
    return True, f"reply {len(data)} bytes"


async def probe(ck: Checker) -> ProbeResult:
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        s = make_socket(ck, socket.SOCK_DGRAM)
    except OSError as e:
        return os_failure(e, t0)
    need = ck.require_reply is not None
    try:
        await loop.sock_connect(s, sockaddr(ck.connect_ip, ck.connect_port))
        await loop.sock_sendall(s, ck.payload if ck.payload is not None else DEFAULT_PAYLOAD)
        try:
            async with asyncio.timeout(ck.connect_timeout):
                data = await loop.sock_recv(s, 65536)
        except TimeoutError:
            if need:
                return finished(False, f"no reply: timeout after {ms(ck.connect_timeout)}", t0)
            return finished(True, "no ICMP error", t0)
        lat = time.monotonic() - t0
        if not need:
            return ProbeResult(True, f"reply {len(data)} bytes", lat, started=t0)
        ok, why = judge_reply(ck, data)
        return ProbeResult(ok, why, lat, started=t0)
    except OSError as e:
        return os_failure(e, t0)
    finally:
        s.close()
