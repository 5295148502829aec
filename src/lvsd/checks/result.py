"""What one probe attempt returns, and helpers shared by the probe modules.

A probe is one attempt (one TCP connect, one GET of one URL, one script run, ...). It never
raises for a network or server problem: it returns a :class:`ProbeResult` whose ``reason`` says
precisely what happened ("refused", "timeout after 5000 ms", "HTTP 503", "digest mismatch",
"script exit 1", "reset", ...). The up/down decision is not made here but in
:mod:`lvsd.checks.tracker`.

An attempt that could not be made for a *local* reason -- the director ran out of descriptors
(EMFILE, ENFILE), buffers (ENOBUFS), memory (ENOMEM) or, for a script, processes (EAGAIN from
fork) -- says nothing about the real server: its result has ``local`` set (:func:`os_failure`
classifies an OSError) and the tracker keeps the checker's state. keepalived does the same:
a failed ``socket()`` is "TCP connect fail to create socket. Rescheduling." and any other
connect error it does not recognise as the peer's (layer4.c ``socket_bind_connect``:
connect_error) is "Rescheduling." too, both without a verdict (check_tcp.c
``tcp_connect_thread``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from dataclasses import dataclass

from lvsd.config.model import Checker


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str
    latency: float = 0.0  # seconds, from the start of the attempt to its verdict
    weight: int | None = None  # dynamic weight (MISC_CHECK misc_dynamic, FILE_CHECK)
    started: float | None = None  # monotonic start of the attempt (MISC_CHECK schedules on it)
    local: bool = False  # not made for a local reason (descriptors, memory): no verdict


def finished(ok: bool, reason: str, t0: float) -> ProbeResult:
    """The result of an attempt that started at ``t0`` (monotonic): its latency is now - t0."""
    return ProbeResult(ok, reason, time.monotonic() - t0, started=t0)


#: errors that describe the director, not the real server (see the module docstring)
LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def local_failure(code: int, t0: float) -> ProbeResult:
    """The attempt started at ``t0`` was not made: local error ``code`` (no verdict)."""
    name = errno.errorcode.get(code, str(code))
    return ProbeResult(False, f"local error: {os.strerror(code).lower()} ({name})",
                       time.monotonic() - t0, started=t0, local=True)


def os_failure(err: OSError | int, t0: float) -> ProbeResult:
    """The result of an attempt that ended with ``err`` (an OSError or an errno): a local
    error (no verdict) or a failure named by :func:`errno_reason`."""
    code = err if isinstance(err, int) else err.errno
    if code in LOCAL_ERRNOS:
        assert code is not None
        return local_failure(code, t0)
    return finished(False, errno_reason(err), t0)


def ms(seconds: float) -> str:
    return f"{round(seconds * 1000)} ms"


_NAMED = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ETIMEDOUT: "timeout",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EADDRINUSE: "bind address in use",
    errno.ENODEV: "no such device (bind_if)",
    errno.EPERM: "not permitted",
    errno.EACCES: "permission denied",
}


def errno_reason(err: BaseException | int) -> str:
    """A short human reason for a socket error."""
    code = err if isinstance(err, int) else getattr(err, "errno", None)
    if isinstance(code, int) and code in _NAMED:
        return _NAMED[code]
    if isinstance(code, int) and code:
        return errno.errorcode.get(code, str(code)).lower()
    return str(err) or type(err).__name__


#: failure classes (the ``reason`` label of ``lvsd_checker_failures_total``), first match wins:
#: a few fixed values whatever the probe said, so the metric's series stay bounded
FAILURE_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("local", ("local error",)),
    ("script", ("script", "misc_path")),
    ("timeout", ("timeout",)),
    ("refused", ("refused",)),
    ("reset", ("reset",)),
    ("unreachable", ("unreachable", "not available", "no such device")),
    ("tls", ("tls",)),
    ("http_status", ("http ",)),
    ("content", ("digest", "regex", "reply", "malformed", "no data", "rcode", "greeting",
                 "helo")),
)


def failure_class(reason: str) -> str:
    """The class of a failed probe's ``reason``: local (the director's own error), script,
    timeout, refused, reset, unreachable, tls, http_status, content (a wrong answer), else
    other."""
    low = reason.lower()
    for name, words in FAILURE_CLASSES:
        if any(w in low for w in words):
            return name
    return "other"


def family_of(addr: str) -> socket.AddressFamily:
    """AF_INET6 for IPv6 literals (model addresses are normalised), else AF_INET."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def sockaddr(addr: str, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    if ":" in addr:
        return (addr, port, 0, 0)
    return (addr, port)


def make_socket(ck: Checker, kind: socket.SocketKind, proto: int = 0) -> socket.socket:
    """A non-blocking socket with the checker's bindto/bind_port/bind_if/fwmark applied.

    Raises OSError (caller turns it into a reason).
    """
    fam = family_of(ck.connect_ip)
    s = socket.socket(fam, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
    try:
        if ck.fwmark is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, ck.fwmark)
        if ck.bind_if:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ck.bind_if.encode() + b"\0")
        if ck.bindto or ck.bind_port:
            if ck.bind_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            local = ck.bindto or ("::" if fam == socket.AF_INET6 else "0.0.0.0")
            s.bind(sockaddr(local, ck.bind_port or 0))
    except BaseException:
        s.close()
        raise
    return s


async def tcp_connect(ck: Checker, deadline: float) -> socket.socket:
    """Connect a TCP socket before ``deadline`` (monotonic). Raises OSError / TimeoutError."""
    loop = asyncio.get_running_loop()
    s = make_socket(ck, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            await loop.sock_connect(s, sockaddr(ck.connect_ip, ck.connect_port))
    except BaseException:
        s.close()
        raise
    return s
