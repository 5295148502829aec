"""The status endpoint taken before READY and served after it (lvsd.status.listen).

Real loopback sockets: the address answers (kernel backlog) from ``open()``; a request sent
before the app is attached is answered once ``serve_soon()`` has imported and attached it;
``stop()`` frees the address whether the app was attached or not; an address in use is an
OSError at ``open()`` (the daemon's one-line start-up error).
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from lvsd.status.app import create_app
from lvsd.status.events import EventBus
from lvsd.status.listen import DeferredStatus

pytestmark = pytest.mark.unit

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: lvsd\r\nConnection: close\r\n\r\n"


def _make_app() -> web.Application:
    def provider() -> object:
        raise AssertionError("/healthz must not build a snapshot")

    return create_app(provider, EventBus(), health=lambda: (True, False))  # type: ignore[arg-type]


def _no_app() -> web.Application:
    raise AssertionError("the app is made only by serve_soon()")


async def _refused(port: int) -> bool:
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    w.close()
    return False


async def test_request_before_serving_is_answered_after() -> None:
    srv = DeferredStatus(_make_app, "127.0.0.1", 0)
    await srv.open()
    assert srv.port > 0
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)  # backlog
        writer.write(REQUEST)
        await writer.drain()
        assert srv.server is None  # nothing attached yet, the request waits in the kernel
        srv.serve_soon()
        answer = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.rstrip().endswith(b"ok"), answer
    finally:
        await srv.stop()
    assert await _refused(srv.port)


async def test_stop_before_serving_frees_the_address() -> None:
    srv = DeferredStatus(_no_app, "127.0.0.1", 0)
    await srv.open()
    port = srv.port
    assert not await _refused(port)
    await srv.stop()
    assert await _refused(port)
    again = DeferredStatus(_no_app, "127.0.0.1", port)  # the address is free again
    await again.open()
    await again.stop()


async def test_stop_while_attaching_frees_the_address() -> None:
    srv = DeferredStatus(_make_app, "127.0.0.1", 0)
    await srv.open()
    srv.serve_soon()
    await srv.stop()  # the attach (an import in a thread) is cancelled or undone
    assert await _refused(srv.port)


async def test_address_in_use_fails_at_open() -> None:
    first = DeferredStatus(_no_app, "127.0.0.1", 0)
    await first.open()
    try:
        second = DeferredStatus(_no_app, "127.0.0.1", first.port)
        with pytest.raises(OSError):
            await second.open()
    finally:
        await first.stop()
