"""TCP_CHECK: one non-blocking connect within connect_timeout (keepalived ``check_tcp.c``).

Success is an established connection, closed at once; failure is refused / reset /
unreachable / "timeout after N ms". bindto, bind_port, bind_if (SO_BINDTODEVICE) and fwmark
(SO_MARK) apply to the socket.

The established connection is closed with RST (SO_LINGER 0), as HAProxy does for its checks:
no TIME_WAIT is left on the director, whose ephemeral ports would otherwise run short at
thousands of checks per second (keepalived closes with FIN).

:func:`start` is callback-based (no task, no future: the scheduler's fast path for thousands of
checks per second); :func:`probe` is the awaitable form.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Callable

from lvsd.checks.result import ProbeResult, errno_reason, make_socket, ms, sockaddr
from lvsd.config.model import Checker

_LINGER0 = struct.pack("ii", 1, 0)
_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY)


def start(ck: Checker, loop: asyncio.AbstractEventLoop,
          done: Callable[[ProbeResult], None]) -> Callable[[], None]:
    """Start one attempt; ``done`` is called exactly once unless the returned cancel function
    is called first."""
    t0 = time.monotonic()
    try:
        s = make_socket(ck, socket.SOCK_STREAM)
        rc = s.connect_ex(sockaddr(ck.connect_ip, ck.connect_port))
    except OSError as e:
        loop.call_soon(done, ProbeResult(False, errno_reason(e), time.monotonic() - t0,
                                         started=t0))
        return lambda: None
    if rc == 0:
        _finish_ok(s)
        loop.call_soon(done, ProbeResult(True, "connected", time.monotonic() - t0, started=t0))
        return lambda: None
    if rc not in _IN_PROGRESS:
        s.close()
        loop.call_soon(done, ProbeResult(False, errno_reason(rc), time.monotonic() - t0,
                                         started=t0))
        return lambda: None
    fd = s.fileno()
    timer: asyncio.TimerHandle | None = None

    def cleanup() -> None:
        loop.remove_writer(fd)
        if timer is not None:
            timer.cancel()

    def writable() -> None:
        cleanup()
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        lat = time.monotonic() - t0
        if err == 0:
            _finish_ok(s)
            done(ProbeResult(True, "connected", lat, started=t0))
        else:
            s.close()
            done(ProbeResult(False, errno_reason(err), lat, started=t0))

    def expired() -> None:
        loop.remove_writer(fd)
        s.close()
        done(ProbeResult(False, f"timeout after {ms(ck.connect_timeout)}",
                         time.monotonic() - t0, started=t0))

    def cancel() -> None:
        cleanup()
        s.close()

    loop.add_writer(fd, writable)
    timer = loop.call_at(loop.time() + ck.connect_timeout - (time.monotonic() - t0), expired)
    return cancel


def _finish_ok(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
    s.close()


async def probe(ck: Checker) -> ProbeResult:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[ProbeResult] = loop.create_future()

    def done(r: ProbeResult) -> None:
        if not fut.done():
            fut.set_result(r)

    cancel = start(ck, loop, done)
    try:
        return await fut
    except asyncio.CancelledError:
        cancel()
        raise
