"""SMTP_CHECK: connect, read the 220 greeting, ``HELO <helo_name>``, expect 250, ``QUIT``
(keepalived ``check_smtp.c``). Everything within connect_timeout.

helo_name: the loader fills keepalived's default ``smtpchecker.keepalived.org``
(check_smtp.h SMTP_DEFAULT_HELO); a Checker built without one uses the local host name.
Failures name the stage: "greeting 421", "HELO answered 501", "timeout after N ms (greeting)",
"refused", "reset".
"""

from __future__ import annotations

import asyncio
import socket
import time

from lvsd.checks.result import ProbeResult, finished, ms, os_failure, tcp_connect
from lvsd.config.model import Checker


async def _reply(reader: asyncio.StreamReader) -> int:
    """Read one (possibly multi-line) SMTP reply; return its code (0 on garbage/EOF)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError(104, "connection closed")
        if len(line) < 4 or not line[:3].isdigit():
            return 0
        if line[3:4] != b"-":
            return int(line[:3])


async def probe(ck: Checker) -> ProbeResult:
    t0 = time.monotonic()
    deadline = t0 + ck.connect_timeout
    stage = "connecting"
    try:
        sock = await tcp_connect(ck, deadline)
    except TimeoutError:
        return finished(False, f"timeout after {ms(ck.connect_timeout)} ({stage})", t0)
    except OSError as e:
        return os_failure(e, t0)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            reader, writer = await asyncio.open_connection(sock=sock)
            stage = "greeting"
            code = await _reply(reader)
            if code != 220:
                return finished(False, f"greeting {code}", t0)
            stage = "HELO"
            helo = ck.helo_name or socket.gethostname()
            writer.write(f"HELO {helo}\r\n".encode())
            code = await _reply(reader)
            if code != 250:
                return ProbeResult(False, f"HELO answered {code}", time.monotonic() - t0,
                                   started=t0)
            lat = time.monotonic() - t0
            writer.write(b"QUIT\r\n")
            return ProbeResult(True, "HELO 250", lat, started=t0)
    except TimeoutError:
        return finished(False, f"timeout after {ms(ck.connect_timeout)} ({stage})", t0)
    except OSError as e:
        return os_failure(e, t0)
    finally:
        if writer is not None:
            writer.transport.abort()
        else:
            sock.close()
