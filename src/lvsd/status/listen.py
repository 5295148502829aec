"""The status endpoint's address, token and listening socket, without the HTTP stack.

Theory of operation
-------------------
``lvsd run`` reports READY (sd_notify) once the status endpoint's address is taken: a bad
``--status-listen``, an unreadable token file or an address in use stops the start, as before.
The HTTP app (:mod:`lvsd.status.app`: aiohttp, whose import builds TLS contexts, and
prometheus_client) is the largest import of the daemon, about half of its start-up, and is not
needed to take the address. So :class:`DeferredStatus` binds and listens at start (before
READY) and imports and attaches the app right after READY (the import in a worker thread, so
the loop keeps running the checks meanwhile). A client that connects in between waits in the
listen backlog (``BACKLOG``, kernel-side) and is answered once the app is up: it is never
refused. ``/healthz`` says 503 until the daemon is ready, 200 from then on, as before.

Also here (light, no aiohttp): :func:`parse_listen`, :func:`read_token_file` (``lvsd status``
and ``lvsd reload`` read the token too).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from lvsd.status.app import StatusServer

log = logging.getLogger(__name__)

DEFAULT_PORT = 9330
BACKLOG = 128  # listen(2) backlog: pending connections wait in the kernel, not in lvsd


class TokenError(Exception):
    pass


def read_token_file(path: str) -> str:
    """The bearer token in ``path`` (first line, stripped); a clear error if unusable."""
    try:
        with open(path, encoding="utf-8") as f:  # (not pathlib: off the start-up path)
            text = f.read()
    except OSError as exc:
        raise TokenError(f"status token file {path}: {exc.strerror or exc}") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < 8:
        raise TokenError(f"status token file {path}: token must be at least 8 characters")
    return token


def parse_listen(value: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, ``HOST``, ``:PORT`` or a bare ``PORT`` -> (host, port).

    A bare port (``18603``) and ``:PORT`` listen on loopback (``127.0.0.1``), as the default
    does: the status endpoint is reachable from elsewhere only when a host is named.
    ValueError, with the value quoted, if it cannot be used."""
    v = value.strip()
    host, port_text = v, ""
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            raise ValueError(f"bad listen address {value!r}: missing ']'")
        host, rest = v[1:end], v[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad listen address {value!r}: expected [ADDRESS]:PORT")
            port_text = rest[1:]
    elif v.isdigit():
        host, port_text = "127.0.0.1", v
    elif v.count(":") == 1:
        host, port_text = v.split(":")
        host = host or "127.0.0.1"
    if not host:
        raise ValueError(f"bad listen address {value!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad listen address {value!r}: port must be a number 0-65535")
    return host, int(port_text)


class BoundListener:
    """Listening socket(s) for ``host:port`` whose connections are accepted only once
    :meth:`serve` names their protocol; until then they wait in the kernel's backlog."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.server: asyncio.Server | None = None
        self._protocol: Callable[[], asyncio.Protocol] | None = None

    async def open(self) -> None:
        """Bind and listen (OSError: the address cannot be used)."""
        loop = asyncio.get_running_loop()
        # asyncio binds (as it does for a serving listener) but listens only in
        # start_serving(); listen(2) now, so that the address answers from this moment
        self.server = await loop.create_server(self._make, self.host, self.port,
                                               reuse_address=True, backlog=BACKLOG,
                                               start_serving=False)
        try:
            for ts in self.server.sockets:
                with socket.socket(fileno=os.dup(ts.fileno())) as s:
                    s.listen(BACKLOG)
        except OSError:
            self.server.close()
            raise
        if self.port == 0:  # ephemeral: report the real port
            for ts in self.server.sockets:
                self.port = int(ts.getsockname()[1])
                break

    def _make(self) -> asyncio.Protocol:
        assert self._protocol is not None  # accepting starts in serve(), after it is set
        return self._protocol()

    async def serve(self, protocol: Callable[[], asyncio.Protocol]) -> asyncio.Server:
        """Accept from now on, each connection with a new ``protocol()``."""
        assert self.server is not None
        self._protocol = protocol
        await self.server.start_serving()
        return self.server


class DeferredStatus:
    """The daemon's status endpoint: :meth:`open` takes the address (before READY),
    :meth:`serve_soon` imports the app and serves it (after READY), :meth:`stop` ends both."""

    def __init__(self, make_app: Callable[[], web.Application], host: str, port: int) -> None:
        self.make_app = make_app
        self.listener = BoundListener(host, port)
        self.server: StatusServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.listener.port

    async def open(self) -> None:
        await self.listener.open()

    def serve_soon(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        try:
            # the import off the loop: checks and the pool go on meanwhile
            app_mod = await asyncio.to_thread(importlib.import_module, "lvsd.status.app")
            srv = app_mod.StatusServer(self.make_app(), self.listener.host, self.listener.port,
                                       bound=self.listener)
            self.server = srv
            await srv.start()
        except asyncio.CancelledError:
            raise
        except Exception:  # the address is taken; what fails here is a bug: say it loudly
            log.exception("status endpoint: cannot start serving")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.listener.server is not None:  # (closed already if the app served it)
            self.listener.server.close()
            await self.listener.server.wait_closed()
            self.listener.server = None
