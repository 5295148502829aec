"""HTTP_GET and SSL_GET: one GET of one ``url`` block per attempt (keepalived ``check_http.c``).

The request is keepalived's, byte for byte::

    GET <path> HTTP/1.<0|1>\\r\\n
    User-Agent: KeepAliveClient\\r\\n
    [Connection: close\\r\\n]            (http_protocol 1.0C and 1.1)
    Host: <virtualhost | ip:port>\\r\\n\\r\\n

The virtual host is the url's, else the checker's, else the real server's / virtual server's
(passed in by the scheduler). The response is read (:mod:`lvsd.checks.httpwire`) until the
server closes or its framing (Content-Length, chunked) says it ended; then, in keepalived's
order: no data -> "no data received"; no header end -> "malformed response"; status not in the
url's ``status_code`` set (default 2xx) -> "HTTP 503"; MD5 of the body (at most Content-Length
bytes) differs from ``digest`` -> "digest mismatch"; ``regex`` -> "regex" (with the url's
``regex_options`` caseless/dotall/extended/multiline as Python ``re`` flags).

Bodies are not de-chunked (keepalived digests the bytes as received, too).

Timing: the whole attempt (connect, TLS handshake, request, response) must finish within
connect_timeout, so one attempt never exceeds the figure used in the detection bound
(keepalived applies connect_timeout to the connect and then to each read separately; lvsd is
stricter so the bound holds). SSL_GET: SNI is ``sni_name`` if set, else the virtual host, when
``enable_sni`` (``sni_name`` implies it; IP literals are never sent as SNI); the certificate is
verified only when ``verify_cert``, against that name (then sent as SNI too) or else the IP
address. The connection is dropped after the response without a TLS close_notify (keepalived
sets quiet shutdown) unless ``tls_compliant`` is set on the checker or the url: then
close_notify is sent first.

:class:`HttpEngine` is callback-based like :class:`lvsd.checks.tcp.TcpEngine` (the scheduler's
path for thousands of checks per second): non-blocking sockets in one epoll set of its own (one
reader on the event loop), TLS through an ``ssl.SSLObject`` over memory BIOs on the same socket,
and the attempt deadline in FIFO queues per connect_timeout served by one timer; an attempt
costs no task, future, transport or stream. :func:`probe` is the awaitable form of one attempt,
on an engine of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import re
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable

from lvsd.checks.httpwire import Response
from lvsd.checks.result import ProbeResult, local_failure, make_socket, ms, os_failure, sockaddr
from lvsd.config.keywords import regex_flags
from lvsd.config.model import Checker, CheckKind, HttpUrl

_log = logging.getLogger(__name__)

_IN_PROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY)
_ERR_EVENTS = select.EPOLLERR | select.EPOLLHUP
_OUT = select.EPOLLOUT
_IN_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | _ERR_EVENTS
# one registration for the whole attempt (see HttpEngine._ready)
_EDGE = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_RECV = 65536

# what an attempt is doing (the timeout reason names it)
_CONNECTING = "connecting"
_HANDSHAKE = "TLS handshake"
_SENDING = "sending request"
_WAITING = "waiting for response"


def request_bytes(ck: Checker, url: HttpUrl, vhost: str | None) -> bytes:
    host = url.virtualhost or ck.virtualhost or vhost
    if host is None:
        ip = f"[{ck.connect_ip}]" if ":" in ck.connect_ip else ck.connect_ip
        host = f"{ip}:{ck.connect_port}"
    minor = 1 if ck.http_protocol == "1.1" else 0
    close = "Connection: close\r\n" if ck.http_protocol in ("1.0C", "1.1") else ""
    return (f"GET {url.path} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}"
            f"Host: {host}\r\n\r\n").encode("latin-1")


def sni_name(ck: Checker, url: HttpUrl, vhost: str | None, force: bool = False) -> str | None:
    """The TLS server name when enable_sni (or force): ``sni_name`` if set, else the virtual
    host (keepalived check_ssl.c order); never an IP literal (RFC 6066 §3)."""
    if not (ck.enable_sni or force):
        return None
    host = ck.sni_name or url.virtualhost or ck.virtualhost or vhost
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        socket.inet_pton(socket.AF_INET, name)
        return None
    except OSError:
        pass
    if ":" in name:
        return None
    return name


def client_context(verify: bool, cafile: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cafile:
            ctx.load_verify_locations(cafile=cafile)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


_DEFAULT_CTX: dict[bool, ssl.SSLContext] = {}


def default_context(verify: bool) -> ssl.SSLContext:
    """The client context of an SSL_GET given none (no global ``SSL`` block)."""
    ctx = _DEFAULT_CTX.get(verify)
    if ctx is None:
        ctx = _DEFAULT_CTX[verify] = client_context(verify)
    return ctx


def judge(url: HttpUrl, resp: Response) -> tuple[bool, str]:
    """Apply keepalived's response rules (check_http.c ``http_handle_response``) to what was
    received."""
    if not resp.received:
        return False, "no data received"
    if resp.head_too_large:
        return False, f"malformed response (header over {resp.max_head} bytes)"
    if not resp.head_done:
        return False, "malformed response (no header end)"
    status = resp.status
    if status is None:
        return False, "malformed status line"
    if not url.status_ok(status):
        return False, f"HTTP {status}"
    body = resp.body
    if url.digest:
        got = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if got != url.digest.lower():
            return False, f"digest mismatch (got {got})"
    if url.regex is not None:
        lo = url.regex_min_offset or 0
        hi = url.regex_max_offset
        text = body[lo:hi].decode("latin-1")
        matched = re.search(url.regex, text, regex_flags(url.regex_options)) is not None
        if matched == url.regex_no_match:
            return False, "regex did not match" if not matched else "regex matched"
    return True, f"HTTP {status}"


async def probe(ck: Checker, url_index: int = 0, vhost: str | None = None,
                ssl_ctx: ssl.SSLContext | None = None) -> ProbeResult:
    """One GET of ``ck.urls[url_index]``, awaitable; runs on an :class:`HttpEngine` of its own
    (the scheduler's path)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[ProbeResult] = loop.create_future()
    engine = HttpEngine(loop)

    def done(r: ProbeResult) -> None:
        if not fut.done():  # an immediate verdict is delivered by call_soon, maybe after cancel
            fut.set_result(r)

    try:
        engine.start(ck, url_index, vhost, ssl_ctx, done)
        return await fut
    finally:
        engine.close()  # cancelled: aborts the attempt, no callback


class _Get:
    """One attempt in flight."""

    __slots__ = ("active", "close_notify", "deadline", "done", "engine", "fd", "inc", "out",
                 "outgoing", "phase", "req", "resp", "sock", "t0", "timeout", "tls", "url")

    def __init__(self, engine: HttpEngine, sock: socket.socket, t0: float, deadline: float,
                 ck: Checker, url: HttpUrl, req: bytes,
                 done: Callable[[ProbeResult], None]) -> None:
        self.engine, self.sock, self.fd, self.t0 = engine, sock, sock.fileno(), t0
        self.deadline, self.timeout, self.done = deadline, ck.connect_timeout, done
        self.url, self.req = url, req
        self.resp = Response(keep_body=bool(url.digest) or url.regex is not None)
        self.phase = _CONNECTING
        self.out = b""  # bytes still to send
        self.tls: ssl.SSLObject | None = None
        self.inc: ssl.MemoryBIO | None = None
        self.outgoing: ssl.MemoryBIO | None = None
        self.close_notify = ck.tls_compliant or url.tls_compliant
        self.active = True

    def cancel(self) -> None:
        if self.active:
            self.engine._drop(self)
            self.sock.close()


class HttpEngine:
    """Many concurrent HTTP_GET / SSL_GET attempts on one loop (see module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ep = select.epoll()
        self._conns: dict[int, _Get] = {}
        self._queues: dict[float, deque[_Get]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        loop.add_reader(self._ep.fileno(), self._ready)

    def start(self, ck: Checker, url_index: int, vhost: str | None,
              ssl_ctx: ssl.SSLContext | None,
              done: Callable[[ProbeResult], None]) -> Callable[[], None]:
        """Start one GET of ``ck.urls[url_index]``; ``done`` gets its result. The returned
        function aborts the attempt (no callback after it, except an immediate verdict already
        handed to ``call_soon``: the caller tells it apart, as with TcpEngine)."""
        t0 = time.monotonic()
        if not ck.urls:
            self._loop.call_soon(done, ProbeResult(True, "no url configured", 0.0, started=t0))
            return _noop
        url = ck.urls[url_index]
        tls: ssl.SSLObject | None = None
        inc = outgoing = None
        try:
            if ck.kind is CheckKind.SSL_GET:
                ctx = ssl_ctx or default_context(ck.verify_cert)
                # verifying needs a name to check: the virtual host (then also sent as SNI),
                # else the IP address (Python checks the IP SAN and sends no SNI for it)
                sni = sni_name(ck, url, vhost, force=ctx.check_hostname)
                inc, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = ctx.wrap_bio(inc, outgoing, server_hostname=sni or (
                    ck.connect_ip if ctx.check_hostname else None))
            s = make_socket(ck, socket.SOCK_STREAM)
        except ssl.SSLError as e:
            self._loop.call_soon(done, _tls_failure(e, t0))
            return _noop
        except OSError as e:  # socket(), setsockopt(), bind(): EMFILE is not the server's
            self._loop.call_soon(done, os_failure(e, t0))
            return _noop
        try:
            if tls is not None:  # several writes in a row (handshake, request): no Nagle wait
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(sockaddr(ck.connect_ip, ck.connect_port))
        except OSError as e:
            s.close()
            self._loop.call_soon(done, os_failure(e, t0))
            return _noop
        if rc != 0 and rc not in _IN_PROGRESS:
            s.close()
            self._loop.call_soon(done, os_failure(rc, t0))
            return _noop
        try:
            self._ep.register(s.fileno(), _EDGE)
        except OSError as e:  # ENOMEM / ENOSPC (max_user_watches): our epoll set, not the server
            s.close()
            self._loop.call_soon(done, local_failure(e.errno or errno.ENOMEM, t0))
            return _noop
        deadline = self._loop.time() + ck.connect_timeout
        g = _Get(self, s, t0, deadline, ck, url, request_bytes(ck, url, vhost), done)
        g.tls, g.inc, g.outgoing = tls, inc, outgoing
        self._conns[g.fd] = g
        q = self._queues.get(ck.connect_timeout)
        if q is None:
            q = self._queues[ck.connect_timeout] = deque()
        q.append(g)
        if deadline < self._timer_at:
            self._arm(deadline)
        return g.cancel

    # ------------------------------------------------------------------ the steps
    # Every socket is registered once, edge-triggered for input and output: no epoll_ctl
    # between the connect, the request and the answer, so each readiness edge is consumed in
    # full (sends until done or EAGAIN, reads until EAGAIN, EOF or a complete response).

    def _ready(self) -> None:
        for fd, ev in self._ep.poll(0):
            g = self._conns.get(fd)
            if g is None:
                continue
            try:
                if g.phase is _CONNECTING:
                    self._connected(g, ev)
                elif g.out and ev & _OUT:
                    self._flush(g)
                # (an input edge that came with the connect's is not reported again)
                if ev & _IN_EVENTS and g.active and g.phase is not _CONNECTING:
                    if g.tls is None:
                        self._read_plain(g)
                    else:
                        self._read_tls(g)
            except ssl.SSLError as e:
                self._fail(g, _tls_failure(e, g.t0))
            except OSError as e:
                self._fail(g, os_failure(e, g.t0))
            except Exception as e:  # a bug must not leave the check in flight for ever
                _log.exception("%s: HTTP check step failed", g.url.path)
                self._fail(g, ProbeResult(False, f"internal error: {type(e).__name__}: {e}",
                                          time.monotonic() - g.t0, started=g.t0))

    def _connected(self, g: _Get, ev: int) -> None:
        # a pending socket error always raises EPOLLERR: without it the connect succeeded
        err = g.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if ev & _ERR_EVENTS else 0
        if err:
            self._fail(g, os_failure(err, g.t0))
            return
        if g.tls is None:
            g.phase = _SENDING
            self._send(g, g.req)
            return
        g.phase = _HANDSHAKE
        self._handshake(g)

    def _send(self, g: _Get, data: bytes) -> None:
        """Send ``data`` after what is still queued; what the socket does not take now goes
        at the next output edge (:meth:`_flush`)."""
        if g.out:
            g.out += data
            return
        if data:
            try:
                n = g.sock.send(data)
            except BlockingIOError:
                n = 0
            if n < len(data):
                g.out = data[n:]
                return
        if g.phase is _SENDING:
            g.phase = _WAITING

    def _flush(self, g: _Get) -> None:
        out, g.out = g.out, b""
        self._send(g, out)

    def _read_plain(self, g: _Get) -> None:
        resp = g.resp
        while True:
            try:
                data = g.sock.recv(_RECV)
            except BlockingIOError:
                return
            if not data:
                resp.eof()
                break
            if resp.feed(data):
                break
        self._finish(g)

    def _handshake(self, g: _Get) -> None:
        tls, outgoing = g.tls, g.outgoing
        assert tls is not None and outgoing is not None
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send(g, outgoing.read())
            return
        g.phase = _SENDING
        tls.write(g.req)
        self._send(g, outgoing.read())

    def _read_tls(self, g: _Get) -> None:
        tls, inc = g.tls, g.inc
        assert tls is not None and inc is not None
        closed = False
        got = False
        err: OSError | None = None  # a reset after some data: the data is read first
        while True:  # drain the socket into the TLS object (edge-triggered)
            try:
                data = g.sock.recv(_RECV)
            except BlockingIOError:
                break
            except OSError as e:
                if not got:
                    raise
                err = e
                data = b""
            if not data:
                inc.write_eof()
                closed = True
                break
            inc.write(data)
            got = True
        if g.phase is _HANDSHAKE:
            if closed and not got:
                # the server closed during the handshake (keepalived: SSL_connect fails)
                raise ConnectionResetError(errno.ECONNRESET, "closed during TLS handshake")
            self._handshake(g)
            if g.phase is _HANDSHAKE:
                if closed:  # no more input will come to finish it
                    raise err or ConnectionResetError(errno.ECONNRESET,
                                                      "closed during TLS handshake")
                return
        resp = g.resp
        while True:
            try:
                chunk = tls.read(_RECV)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:  # close_notify
                resp.eof()
                break
            except ssl.SSLError:
                if err is not None:
                    raise err from None  # reset: as on a plain connection
                # no close_notify (EOF after data): keepalived accepts the data
                if not resp.received and not closed:
                    raise
                resp.eof()
                break
            if not chunk:
                resp.eof()
                break
            if resp.feed(chunk):
                break
        self._finish(g)

    # ------------------------------------------------------------------ verdicts

    def _finish(self, g: _Get) -> None:
        self._drop(g)
        if g.tls is not None and g.close_notify and g.outgoing is not None:
            # keepalived tls_compliant: a proper SSL_shutdown (close_notify) instead of quiet
            # shutdown; the peer's close_notify is not waited for
            with contextlib.suppress(ssl.SSLWantReadError):  # the peer's, not awaited
                g.tls.unwrap()
            with contextlib.suppress(OSError):  # the server is gone already: nothing to notify
                g.sock.send(g.outgoing.read())
        g.sock.close()
        ok, reason = judge(g.url, g.resp)
        g.done(ProbeResult(ok, reason, time.monotonic() - g.t0, started=g.t0))

    def _fail(self, g: _Get, result: ProbeResult) -> None:
        if g.active:
            self._drop(g)
            g.sock.close()
            g.done(result)

    def _drop(self, g: _Get) -> None:
        """Take ``g`` out of the engine (its queue entry goes at the next sweep). Every caller
        closes the socket next, which takes its only descriptor out of the epoll set: no
        EPOLL_CTL_DEL (a syscall less per check)."""
        g.active = False
        self._conns.pop(g.fd, None)

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
                g = q.popleft()
                if g.active:
                    self._fail(g, ProbeResult(False, f"timeout after {ms(g.timeout)} "
                                              f"({g.phase})", time.monotonic() - g.t0,
                                              started=g.t0))
            if q:
                nxt = min(nxt, q[0].deadline)
        if nxt < float("inf"):
            self._arm(nxt)

    def close(self) -> None:
        """Abort everything in flight (no callbacks) and release the epoll set."""
        if self._timer is not None:
            self._timer.cancel()
        for g in list(self._conns.values()):
            g.active = False
            g.sock.close()
        self._conns.clear()
        self._queues.clear()
        self._loop.remove_reader(self._ep.fileno())
        self._ep.close()


def _tls_failure(e: ssl.SSLError, t0: float) -> ProbeResult:
    return ProbeResult(False, f"TLS error: {e.reason or e}", time.monotonic() - t0, started=t0)


def _noop() -> None:
    pass
