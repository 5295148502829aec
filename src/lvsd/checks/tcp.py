"""TCP_CHECK: one non-blocking connect within connect_timeout (keepalived ``check_tcp.c``).

Success is an established connection, closed at once; failure is refused / reset /
unreachable / "timeout after N ms". bindto, bind_port, bind_if (SO_BINDTODEVICE) and fwmark
(SO_MARK) apply to the socket.

The established connection is closed with RST (SO_LINGER 0), as HAProxy does for its checks:
no TIME_WAIT is left on the director, whose ephemeral ports would otherwise run short at
thousands of checks per second (keepalived closes with FIN).

:class:`TcpEngine` is callback-based (no task, no future), the scheduler's fast path for
thousands of checks per second: pending connects sit in one epoll set of its own (one reader
on the event loop, one ``epoll.poll`` for all completions) and timeouts in FIFO queues per
connect_timeout value served by one timer, so a check costs no asyncio handle, future or task.
Timeouts stay exact (the timer fires at the earliest deadline). :func:`probe` is the awaitable
form of one attempt, on an engine of its own.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

from lvsd.checks.result import ProbeResult, local_failure, make_socket, ms, os_failure, sockaddr
from lvsd.config.model import Checker

_LINGER0 = struct.pack("ii", 1, 0)
_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY)
_ERR_EVENTS = select.EPOLLERR | select.EPOLLHUP


def _finish_ok(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
    s.close()


async def probe(ck: Checker) -> ProbeResult:
    """One attempt, awaitable; runs on a :class:`TcpEngine` of its own (the scheduler's path)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[ProbeResult] = loop.create_future()
    engine = TcpEngine(loop)

    def done(r: ProbeResult) -> None:
        if not fut.done():  # an immediate verdict is delivered by call_soon, maybe after cancel
            fut.set_result(r)

    try:
        engine.start(ck, done)
        return await fut
    finally:
        engine.close()  # cancelled: aborts the attempt, no callback


class _Conn:
    __slots__ = ("active", "deadline", "done", "engine", "fd", "sock", "t0", "timeout")

    def __init__(self, engine: TcpEngine, sock: socket.socket, t0: float, deadline: float,
                 timeout: float, done: Callable[[ProbeResult], None]) -> None:
        self.engine, self.sock, self.fd, self.t0 = engine, sock, sock.fileno(), t0
        self.deadline, self.timeout, self.done = deadline, timeout, done
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.engine._drop(self)
            self.sock.close()


class TcpEngine:
    """Many concurrent TCP_CHECK attempts on one loop (see module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ep = select.epoll()
        self._conns: dict[int, _Conn] = {}
        self._queues: dict[float, deque[_Conn]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        loop.add_reader(self._ep.fileno(), self._ready)

    def start(self, ck: Checker, done: Callable[[ProbeResult], None]) -> Callable[[], None]:
        t0 = time.monotonic()
        try:
            s = make_socket(ck, socket.SOCK_STREAM)
            rc = s.connect_ex(sockaddr(ck.connect_ip, ck.connect_port))
        except OSError as e:  # socket(), setsockopt(), bind(): EMFILE is not the server's
            self._loop.call_soon(done, os_failure(e, t0))
            return _noop
        if rc == 0 or rc not in _IN_PROGRESS:
            if rc == 0:
                _finish_ok(s)
                result = ProbeResult(True, "connected", time.monotonic() - t0, started=t0)
            else:
                s.close()
                result = os_failure(rc, t0)
            self._loop.call_soon(done, result)
            return _noop
        try:
            self._ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
        except OSError as e:  # ENOMEM / ENOSPC (max_user_watches): our epoll set, not the server
            s.close()
            self._loop.call_soon(done, local_failure(e.errno or errno.ENOMEM, t0))
            return _noop
        deadline = self._loop.time() + ck.connect_timeout
        c = _Conn(self, s, t0, deadline, ck.connect_timeout, done)
        self._conns[c.fd] = c
        q = self._queues.get(ck.connect_timeout)
        if q is None:
            q = self._queues[ck.connect_timeout] = deque()
        q.append(c)
        if deadline < self._timer_at:
            self._arm(deadline)
        return c.cancel

    def _drop(self, c: _Conn) -> None:
        c.active = False
        if self._conns.pop(c.fd, None) is not None:
            self._ep.unregister(c.fd)

    def _ready(self) -> None:
        for fd, ev in self._ep.poll(0):
            c = self._conns.pop(fd, None)
            if c is None:
                continue
            # no EPOLL_CTL_DEL: the socket is closed below, which takes its only descriptor out
            # of the epoll set (EPOLLONESHOT already disarmed it); a syscall less per check
            c.active = False
            # a pending socket error always raises EPOLLERR: without it the connect succeeded
            # and SO_ERROR is 0, so it is read only when there is one to read
            err = (c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                   if ev & _ERR_EVENTS else 0)
            lat = time.monotonic() - c.t0
            if err == 0:
                _finish_ok(c.sock)
                c.done(ProbeResult(True, "connected", lat, started=c.t0))
            else:
                c.sock.close()
                c.done(os_failure(err, c.t0))

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._sweep)

    def _sweep(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self._ready()  # completions that raced the deadline win
        now = self._loop.time()
        nxt = float("inf")
        for q in self._queues.values():
            while q and (not q[0].active or q[0].deadline <= now):
                c = q.popleft()
                if c.active:
                    self._drop(c)
                    c.sock.close()
                    c.done(ProbeResult(False, f"timeout after {ms(c.timeout)}",
                                       time.monotonic() - c.t0, started=c.t0))
            if q:
                nxt = min(nxt, q[0].deadline)
        if nxt < float("inf"):
            self._arm(nxt)

    def close(self) -> None:
        """Abort everything in flight (no callbacks) and release the epoll set."""
        if self._timer is not None:
            self._timer.cancel()
        for c in list(self._conns.values()):
            c.active = False
            c.sock.close()
        self._conns.clear()
        self._queues.clear()
        self._loop.remove_reader(self._ep.fileno())
        self._ep.close()


def _noop() -> None:
    pass
