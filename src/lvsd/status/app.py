"""The status HTTP endpoint (aiohttp): ``/status``, ``/metrics``, ``/events``, ``/healthz``, ``/``.

Theory of operation
-------------------
The app is given a *snapshot provider* (a callable returning a frozen
:class:`~lvsd.status.model.Snapshot`) and the daemon's :class:`~lvsd.status.events.EventBus`.
It has no other handle on the daemon: it reads, it never steers (there is no POST route).

* ``GET /status``   the snapshot as JSON (schema: :mod:`lvsd.status.model`; ``?pretty=1``).
* ``GET /metrics``  Prometheus text exposition, computed from the snapshot at scrape time.
* ``GET /events``   ``text/event-stream``: one SSE message per transition (``id``, ``event``
  = type, ``data`` = JSON); honours ``Last-Event-ID``; a comment every 15 s keeps proxies open.
* ``GET /healthz``  200 ``ok`` once ready, 503 while starting or stopping (no auth).
* ``GET /``         a small live page (``static/``) that polls ``/status``.

With a bearer token configured (read from a file, never from the command line), every route but
``/healthz`` and the static page requires ``Authorization: Bearer TOKEN``; the page asks for the
token and keeps it in the browser's session storage. Every string that leaves the process passes
through :func:`~lvsd.status.model.redact` with the current secrets (auth_pass, the token).

Nothing a client does may cost the daemon (its event loop, its health checks, its
descriptors): the decisions are :mod:`lvsd.status.limits` (sans-IO), this module is their shell.

* **Snapshot at most once per interval.** ``/status``, ``/metrics`` and the page read one
  snapshot, built on the loop (it reads live objects) at most once per ``snapshot_interval``
  (default 0.5 s) by :class:`_Answers`; its JSON and Prometheus texts are rendered once per
  snapshot in a worker thread (``asyncio.to_thread``), shared by every request that asks
  meanwhile. A scrape loop therefore costs an HTTP parse and a write per request, never a
  snapshot or a render. A render in a thread still holds the interpreter lock, so a snapshot
  also lives at least ``DUTY`` (4) times what building and rendering the last one cost.
* **Requests** go through :func:`_guard` (outermost middleware): ``/healthz`` always (no slot,
  no token bucket); others ``429`` + ``Retry-After`` past the client's rate, ``503`` +
  ``Retry-After`` past the concurrent-request or open-stream cap. An ordinary answer is written
  inside its slot, so a client that does not read holds a slot until ``request_timeout``.
* **Connections** are accepted by :class:`StatusServer` through its own listening socket, each
  wrapped in :class:`_Guarded` around aiohttp's protocol: past the connection cap (at most a
  quarter of ``RLIMIT_NOFILE``) a new connection is aborted at once; one timer closes the
  connections past their header, idle or request deadline.
* Every refusal and close is counted by reason: ``/status`` ``status_endpoint`` and
  ``lvsd_status_rejected_total{reason}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import resource
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from pathlib import Path

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CONTENT_TYPE_LATEST

from lvsd.status.events import EventBus
from lvsd.status.limits import (
    HEALTH,
    REQUEST,
    STREAM,
    EndpointStats,
    Limits,
    StatusLimits,
    connection_cap,
)
from lvsd.status.listen import BACKLOG, BoundListener
from lvsd.status.listen import DEFAULT_PORT as DEFAULT_PORT
from lvsd.status.listen import TokenError as TokenError
from lvsd.status.listen import parse_listen as parse_listen
from lvsd.status.listen import read_token_file as read_token_file
from lvsd.status.metrics import make_registry, render
from lvsd.status.model import Snapshot, redact, scrub, to_dict

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
KEEPALIVE_SECONDS = 15.0
SNAPSHOT_INTERVAL = 0.5  # seconds: /status, /metrics and the page share one snapshot this long
DUTY = 4.0  # ... and at least DUTY x what building and rendering it cost (_Answers)

Provider = Callable[[], Snapshot]
SecretsFn = Callable[[], Iterable[str]]
PROVIDER_KEY: web.AppKey[Provider] = web.AppKey("provider")
BUS_KEY = web.AppKey("bus", EventBus)
SECRETS_KEY: web.AppKey[SecretsFn] = web.AppKey("secrets")
HEALTH_KEY: web.AppKey[Callable[[], tuple[bool, bool]]] = web.AppKey("health")
TOKEN_KEY = web.AppKey("token", str)


class _Streams:
    """The open /events handlers, cancelled at shutdown."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()


STREAMS_KEY: web.AppKey[_Streams] = web.AppKey("streams")
LIMITS_KEY = web.AppKey("limits", Limits)


class _Answers:
    """The shared snapshot (rebuilt at most once per ``interval``) and its renders.

    The snapshot is taken on the loop (the provider reads live objects) together with the
    endpoint's own counters; each text (JSON with or without indent, Prometheus) is rendered
    once per snapshot and secret set, in a worker thread, and every request asking for it
    meanwhile awaits the same render. A failed render is forgotten so the next request retries.

    A render in a thread still holds the interpreter lock while it runs, and the loop waits for
    it at every switch: so the snapshot also lives at least :data:`DUTY` times what building
    and rendering the previous one cost (a pool of thousands of servers scraped without pause:
    answers a few seconds old, the loop busy with status for at most ~1/DUTY of the time).
    """

    def __init__(self, provider: Provider, limits: Limits, interval: float,
                 bus: EventBus | None = None) -> None:
        self.provider = provider
        self.limits = limits
        self.interval = interval
        # a reload's outcome or a VRRP state change makes the snapshot stale at once
        # (events.SNAPSHOT_STALE_AFTER): whoever saw the event reads /status next
        self.bus = bus
        self._marks = -1
        self._snap: tuple[Snapshot, EndpointStats] | None = None
        self._at = 0.0
        self._cost = 0.0  # seconds spent building and rendering the current snapshot
        self._renders: dict[Hashable, asyncio.Future[bytes]] = {}

    def current(self) -> tuple[Snapshot, EndpointStats]:
        now = asyncio.get_running_loop().time()
        life = max(self.interval, DUTY * self._cost) if self.interval > 0 else 0.0
        marks = self.bus.stale_marks if self.bus is not None else 0
        if self._snap is None or not 0.0 <= now - self._at < life or marks != self._marks:
            self._marks = marks
            t0 = time.perf_counter()
            self._snap = (self.provider(), self.limits.stats())
            self._cost = time.perf_counter() - t0
            self._at = now
            self._renders = {}
        return self._snap

    async def render(self, key: Hashable,
                     fn: Callable[[Snapshot, EndpointStats], bytes]) -> bytes:
        snap, stats = self.current()
        renders = self._renders

        def timed() -> bytes:
            t0 = time.perf_counter()
            try:
                return fn(snap, stats)
            finally:
                if self._renders is renders:  # still the current snapshot
                    self._cost += time.perf_counter() - t0

        fut = renders.get(key)
        if fut is None:
            fut = asyncio.ensure_future(asyncio.to_thread(timed))
            renders[key] = fut

            def forget_failure(f: asyncio.Future[bytes]) -> None:
                if f.cancelled() or f.exception() is not None:
                    renders.pop(key, None)

            fut.add_done_callback(forget_failure)
        return await asyncio.shield(fut)


ANSWERS_KEY = web.AppKey("answers", _Answers)

OPEN_PATHS = ("/healthz", "/", "/index.html", "/static/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _secrets(app: web.Application) -> list[str]:
    vals = [s for s in app[SECRETS_KEY]() if s]
    tok = app.get(TOKEN_KEY)
    if tok:
        vals.append(tok)
    return vals


def _kind(path: str) -> str:
    if path == "/healthz":
        return HEALTH
    return STREAM if path == "/events" else REQUEST


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admit or refuse (429/503) by :class:`~lvsd.status.limits.Limits`; hold the slot until
    the answer is written; tell the connection's deadlines where the request stands."""
    limits = request.app[LIMITS_KEY]
    loop = asyncio.get_running_loop()
    kind = _kind(request.path)
    conn = request.transport
    limits.request_started(conn, kind, loop.time())
    try:
        verdict = limits.admit(request.remote or "", kind, loop.time())
        if not verdict.admitted:
            return web.json_response({"error": verdict.reason.replace("_", " ")},
                                     status=verdict.status,
                                     headers={"Retry-After": str(verdict.retry_after),
                                              "Cache-Control": "no-store"})
        try:
            resp = await handler(request)
            if kind == REQUEST and isinstance(resp, web.Response) and not resp.prepared:
                try:  # written here, inside the slot: a client that does not read holds it
                    await resp.prepare(request)
                    await resp.write_eof()
                except ConnectionError:
                    pass  # the client left (or was closed at its deadline): nothing to answer
            return resp
        finally:
            limits.finished(kind)
    finally:
        limits.request_ended(conn, loop.time())


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app.get(TOKEN_KEY)
    path = request.path
    is_open = path in ("/healthz", "/", "/index.html") or path.startswith("/static/")
    if token and not is_open:
        got = request.headers.get("Authorization", "")
        want = f"Bearer {token}"
        if not hmac.compare_digest(got.encode(), want.encode()):
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="lvsd"'})
    return await handler(request)


async def _status(request: web.Request) -> web.Response:
    secrets = tuple(_secrets(request.app))
    indent = 2 if request.query.get("pretty") else None

    def render_json(snap: Snapshot, stats: EndpointStats) -> bytes:
        doc = to_dict(snap, secrets)
        doc["status_endpoint"] = stats.as_dict()
        return json.dumps(doc, indent=indent).encode()

    body = await request.app[ANSWERS_KEY].render(("status", indent, secrets), render_json)
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def _metrics(request: web.Request) -> web.Response:
    secrets = tuple(_secrets(request.app))

    def render_text(snap: Snapshot, stats: EndpointStats) -> bytes:
        return scrub(render(make_registry(lambda: snap, stats)).decode(), secrets).encode()

    body = await request.app[ANSWERS_KEY].render(("metrics", secrets), render_text)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    ready, stopping = request.app[HEALTH_KEY]()
    if stopping:
        return web.Response(text="stopping\n", status=503)
    if not ready:
        return web.Response(text="starting\n", status=503)
    return web.Response(text="ok\n")


async def _events(request: web.Request) -> web.StreamResponse:
    bus = request.app[BUS_KEY]
    last: int | None = None
    hdr = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if hdr:
        try:
            last = int(hdr)
        except ValueError:
            last = None
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    await resp.prepare(request)
    task = asyncio.current_task()
    streams = request.app[STREAMS_KEY].tasks
    if task is not None:
        streams.add(task)
    limits = request.app[LIMITS_KEY]

    async def send(chunk: bytes) -> None:
        # a reader that does not read for request_timeout is let go (its slot with it)
        async with asyncio.timeout(limits.limits.request_timeout):
            await resp.write(chunk)

    try:
        with bus.subscribe(last) as sub:
            await send(b"retry: 2000\n: lvsd events\n\n")
            while True:
                ev = await sub.get(timeout=KEEPALIVE_SECONDS)
                if ev is None:
                    await send(b": keepalive\n\n")
                    continue
                data = json.dumps(redact(ev.as_dict(), _secrets(request.app)))
                await send(f"id: {ev.id}\nevent: {ev.type}\ndata: {data}\n\n".encode())
    except TimeoutError:
        limits.count("request_timeout")
        if request.transport is not None:
            _reset(request.transport)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        if task is not None:
            streams.discard(task)
    return resp


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _on_shutdown(app: web.Application) -> None:
    for t in list(app[STREAMS_KEY].tasks):
        t.cancel()


def create_app(provider: Callable[[], Snapshot], bus: EventBus, *, token: str | None = None,
               secrets: Callable[[], Iterable[str]] = lambda: (),
               health: Callable[[], tuple[bool, bool]] | None = None,
               limits: StatusLimits | None = None,
               snapshot_interval: float = SNAPSHOT_INTERVAL) -> web.Application:
    """The status app. ``provider`` must be side-effect free; ``health`` (cheap) returns
    ``(ready, stopping)`` for ``/healthz`` (default: read from a fresh snapshot). ``limits``:
    rates, caps and timeouts (default :class:`~lvsd.status.limits.StatusLimits`; the
    connection-level ones apply when :class:`StatusServer` serves the app);
    ``snapshot_interval``: how long one snapshot answers at least (seconds; longer when it
    is expensive, see :class:`_Answers`; 0: a fresh snapshot for every request)."""
    app = web.Application(middlewares=[_guard, _auth])
    app[PROVIDER_KEY] = provider
    app[LIMITS_KEY] = core = Limits(limits)
    app[ANSWERS_KEY] = _Answers(provider, core, snapshot_interval, bus)
    if health is None:
        def health() -> tuple[bool, bool]:
            p = provider().process
            return p.ready, p.stopping
    app[HEALTH_KEY] = health
    app[BUS_KEY] = bus
    app[SECRETS_KEY] = secrets
    app[STREAMS_KEY] = _Streams()
    if token:
        app[TOKEN_KEY] = token
    app.router.add_get("/status", _status)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/events", _events)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/", _index)
    app.router.add_get("/index.html", _index)
    app.router.add_static("/static/", STATIC_DIR, show_index=False)
    app.on_shutdown.append(_on_shutdown)
    return app


def _reset(transport: asyncio.Transport) -> None:
    """Close now with a TCP reset: nothing queued for the peer survives in the kernel (a
    client that does not read would otherwise keep an orphaned socket and its buffers)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError as exc:
            log.debug("status endpoint: SO_LINGER: %s", exc)
    transport.abort()


class _Guarded(asyncio.Protocol):
    """One accepted connection: admitted by the connection cap, then aiohttp's own protocol
    (created only once admitted) does the HTTP; this wrapper feeds the deadlines."""

    __slots__ = ("_inner", "_srv", "_transport")

    def __init__(self, srv: StatusServer) -> None:
        self._srv = srv
        self._inner: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        srv = self._srv
        if srv.server is None or not srv.limits.connection_opened(transport, srv.loop.time()):
            _reset(transport)  # over the cap (or stopping): the descriptor is freed now
            return
        self._transport = transport
        self._inner = srv.server()
        self._inner.connection_made(transport)
        srv.arm()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._srv.limits.data_received(self._transport, self._srv.loop.time())
            self._inner.data_received(data)

    def eof_received(self) -> None:  # None: the transport closes its side (aiohttp's too)
        if self._inner is not None:
            self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._srv.limits.connection_closed(self._transport)
            self._inner.connection_lost(exc)
            self._inner = None


class StatusServer:
    """Runs the app on one address; ``start``/``stop`` from the daemon's loop.

    It listens itself (not through aiohttp's ``TCPSite``) so that every connection passes the
    app's :class:`~lvsd.status.limits.Limits`: the cap on open connections (lowered at start to
    a quarter of ``RLIMIT_NOFILE``) and the header, idle and request deadlines, enforced by one
    timer that runs while connections are open (at most ``tick`` late)."""

    loop: asyncio.AbstractEventLoop  # set by start()

    def __init__(self, app: web.Application, host: str, port: int,
                 bound: BoundListener | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._bound = bound  # already listening (the daemon: lvsd.status.listen)
        self.limits = app[LIMITS_KEY]  # the app's (create_app): one set of counts
        lim = self.limits.limits
        self.tick = min(1.0, lim.header_timeout / 4, lim.idle_timeout / 4,
                        lim.request_timeout / 4)
        self.server: web.Server | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        configured = self.limits.limits.max_connections
        cap = connection_cap(configured, None if soft == resource.RLIM_INFINITY else soft)
        self.limits.set_connection_cap(cap)
        if cap < configured:
            log.info("status endpoint: at most %d connections (a quarter of the %d file "
                     "descriptors allowed; VRRP and the checks keep the rest)", cap, soft)
        # handler_cancellation: a client that leaves ends its handler at once (an event
        # stream gives its slot back without waiting for its next write)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0,
                                     handler_cancellation=True)
        await self._runner.setup()
        self.server = self._runner.server
        try:
            if self._bound is not None:
                self._listener = await self._bound.serve(lambda: _Guarded(self))
            else:
                self._listener = await self.loop.create_server(
                    lambda: _Guarded(self), self.host, self.port, reuse_address=True,
                    backlog=BACKLOG)
        except BaseException:
            await self.stop()
            raise
        if self.port == 0:  # ephemeral: report the real port
            for sock in self._listener.sockets:
                self.port = int(sock.getsockname()[1])
                break

    def arm(self) -> None:
        """Make sure the deadline timer runs while a connection is open."""
        if self._timer is not None or self.limits.connections_open == 0:
            return
        now = self.loop.time()
        nxt = self.limits.next_deadline()
        when = now + self.tick if nxt is None else min(nxt, now + self.tick)
        self._timer = self.loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        for conn, reason in self.limits.expired(self.loop.time()):
            assert isinstance(conn, asyncio.Transport)
            log.debug("status endpoint: closing %s (%s)", conn.get_extra_info("peername"),
                      reason)
            if reason == "idle_timeout" and conn.get_write_buffer_size() == 0:
                conn.close()
            else:
                _reset(conn)  # nothing owed to it; a stuck write must not keep the descriptor
        self.arm()

    async def stop(self) -> None:
        self.server = None  # connections arriving from now on are aborted
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._listener is not None:
            try:
                await asyncio.wait_for(self._listener.wait_closed(), 5.0)
            except TimeoutError:
                log.debug("status endpoint: connections still closing after 5 s")
            self._listener = None
