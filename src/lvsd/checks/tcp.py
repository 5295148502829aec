"""TCP_CHECK: one non-blocking connect within connect_timeout (keepalived ``check_tcp.c``).

Success is an established connection (closed at once); failure is refused / reset /
unreachable / "timeout after N ms". bindto, bind_port, bind_if (SO_BINDTODEVICE) and fwmark
(SO_MARK) apply to the socket.
"""

from __future__ import annotations

import time

from lvsd.checks.result import ProbeResult, errno_reason, ms, tcp_connect
from lvsd.config.model import Checker


async def probe(ck: Checker) -> ProbeResult:
    t0 = time.monotonic()
    try:
        s = await tcp_connect(ck, t0 + ck.connect_timeout)
    except TimeoutError:
        return ProbeResult(False, f"timeout after {ms(ck.connect_timeout)}",
                           time.monotonic() - t0, started=t0)
    except OSError as e:
        return ProbeResult(False, errno_reason(e), time.monotonic() - t0, started=t0)
    s.close()
    return ProbeResult(True, "connected", time.monotonic() - t0, started=t0)
