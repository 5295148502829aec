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
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from lvsd.status.events import EventBus
from lvsd.status.metrics import make_registry, render
from lvsd.status.model import Snapshot, redact, scrub, to_dict

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_PORT = 9330
KEEPALIVE_SECONDS = 15.0

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

OPEN_PATHS = ("/healthz", "/", "/index.html", "/static/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenError(Exception):
    pass


def read_token_file(path: str) -> str:
    """The bearer token in ``path`` (first line, stripped); a clear error if unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenError(f"status token file {path}: {exc.strerror or exc}") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < 8:
        raise TokenError(f"status token file {path}: token must be at least 8 characters")
    return token


def _secrets(app: web.Application) -> list[str]:
    vals = [s for s in app[SECRETS_KEY]() if s]
    tok = app.get(TOKEN_KEY)
    if tok:
        vals.append(tok)
    return vals


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


# The snapshot is taken on the loop (it reads live objects); turning the frozen snapshot into
# text runs in a worker thread so a big pool never stalls VRRP timers for a whole render.


async def _status(request: web.Request) -> web.Response:
    snap = request.app[PROVIDER_KEY]()
    secrets = _secrets(request.app)
    indent = 2 if request.query.get("pretty") else None

    def render_json() -> str:
        return json.dumps(to_dict(snap, secrets), indent=indent)

    text = await asyncio.get_running_loop().run_in_executor(None, render_json)
    return web.Response(text=text, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def _metrics(request: web.Request) -> web.Response:
    snap = request.app[PROVIDER_KEY]()
    secrets = _secrets(request.app)

    def render_text() -> bytes:
        return scrub(render(make_registry(lambda: snap)).decode(), secrets).encode()

    body = await asyncio.get_running_loop().run_in_executor(None, render_text)
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
    try:
        with bus.subscribe(last) as sub:
            await resp.write(b"retry: 2000\n: lvsd events\n\n")
            while True:
                ev = await sub.get(timeout=KEEPALIVE_SECONDS)
                if ev is None:
                    await resp.write(b": keepalive\n\n")
                    continue
                data = json.dumps(redact(ev.as_dict(), _secrets(request.app)))
                msg = f"id: {ev.id}\nevent: {ev.type}\ndata: {data}\n\n"
                await resp.write(msg.encode())
    except (ConnectionResetError, asyncio.CancelledError):
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
               health: Callable[[], tuple[bool, bool]] | None = None) -> web.Application:
    """The status app. ``provider`` must be side-effect free; ``health`` (cheap) returns
    ``(ready, stopping)`` for ``/healthz`` (default: read from a snapshot)."""
    app = web.Application(middlewares=[_auth])
    app[PROVIDER_KEY] = provider
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


def parse_listen(value: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``HOST`` or ``:PORT`` -> (host, port); ValueError if bad."""
    v = value.strip()
    host, port = v, default_port
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise ValueError(f"bad listen address {value!r}: missing ']'")
        host = v[1:end]
        rest = v[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad listen address {value!r}")
            port = int(rest[1:])
    elif v.count(":") == 1:
        h, p = v.split(":")
        host = h or "127.0.0.1"
        port = int(p)
    if not 0 <= port <= 65535:
        raise ValueError(f"bad listen address {value!r}: port out of range")
    return host, port


class StatusServer:
    """Runs the app on one address; ``start``/``stop`` from the daemon's loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # ephemeral: report the real port
            for addr in self._runner.addresses:
                if isinstance(addr, tuple) and len(addr) >= 2:
                    self.port = int(addr[1])
                    break

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
