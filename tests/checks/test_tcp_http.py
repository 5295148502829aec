"""TCP_CHECK, HTTP_GET and SSL_GET against real servers on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from checkservers import (
    BODY_MD5,
    Blackhole,
    HttpServer,
    Refuser,
    Tarpit,
    make_cert,
    start_resetter,
)

from conftest import require
from lvsd.checks import http, tcp
from lvsd.checks.http import client_context
from lvsd.config.model import NOPOS, Checker, CheckKind, HttpUrl, StatusCodeRange

pytestmark = pytest.mark.realserver


def tcp_ck(port: int, **kw: Any) -> Checker:
    return Checker(CheckKind.TCP_CHECK, NOPOS, "127.0.0.1", port, **kw)


def http_ck(port: int, *urls: HttpUrl, kind: CheckKind = CheckKind.HTTP_GET,
            **kw: Any) -> Checker:
    kw.setdefault("connect_timeout", 1.0)
    return Checker(kind, NOPOS, "127.0.0.1", port, urls=urls, **kw)


@pytest.fixture
async def web() -> AsyncIterator[HttpServer]:
    srv = await HttpServer(slow=3.0).start()
    yield srv
    await srv.stop()


# ------------------------------------------------------------------------------ TCP


async def test_tcp_up_refused_tarpit_and_reason(web: HttpServer) -> None:
    r = await tcp.probe(tcp_ck(web.port))
    assert r.ok and r.reason == "connected" and r.latency < 1.0
    ref = Refuser()
    try:
        r = await tcp.probe(tcp_ck(ref.port))
        assert not r.ok and r.reason == "refused"
    finally:
        ref.close()


async def test_tcp_timeout_is_precise_against_a_blackhole() -> None:
    # the loopback stand-in for an unreachable host: a full accept queue drops our SYN
    hole = Blackhole()
    await asyncio.sleep(0.05)
    try:
        r = await tcp.probe(tcp_ck(hole.port, connect_timeout=0.4))
        assert not r.ok and r.reason == "timeout after 400 ms"
        assert r.latency >= 0.39  # never earlier than connect_timeout
    finally:
        hole.close()


async def test_tcp_bindto_and_bind_port_are_used(web: HttpServer) -> None:
    peers: list[tuple[str, int]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    free = socket.socket()
    free.bind(("127.0.0.3", 0))
    bport = free.getsockname()[1]
    free.close()
    try:
        r = await tcp.probe(tcp_ck(port, bindto="127.0.0.3", bind_port=bport))
        assert r.ok
        await asyncio.sleep(0.05)
        assert peers == [("127.0.0.3", bport)]
        r = await tcp.probe(tcp_ck(port, bindto="192.0.2.77"))  # not a local address
        assert not r.ok and r.reason == "address not available"
    finally:
        srv.close()


# ------------------------------------------------------------------------------ HTTP


@pytest.mark.parametrize("path,codes,ok,reason", [
    ("/ok", (), True, "HTTP 200"),
    ("/moved", (), False, "HTTP 301"),
    ("/moved", (StatusCodeRange(300, 399),), True, "HTTP 301"),
    ("/missing", (StatusCodeRange(200, 200), StatusCodeRange(404, 404)), True, "HTTP 404"),
    ("/missing", (), False, "HTTP 404"),
    ("/busy", (), False, "HTTP 503"),
])
async def test_http_status_codes(web: HttpServer, path: str, codes: tuple[StatusCodeRange, ...],
                                 ok: bool, reason: str) -> None:
    r = await http.probe(http_ck(web.port, HttpUrl(path, status_codes=codes)))
    assert (r.ok, r.reason) == (ok, reason)


async def test_http_digest(web: HttpServer) -> None:
    r = await http.probe(http_ck(web.port, HttpUrl("/ok", digest=BODY_MD5)))
    assert r.ok
    r = await http.probe(http_ck(web.port, HttpUrl("/wrong", digest=BODY_MD5)))
    assert not r.ok and r.reason.startswith("digest mismatch")


async def test_http_request_is_keepalived_s_with_host_and_protocol(web: HttpServer) -> None:
    await http.probe(http_ck(web.port, HttpUrl("/ok")))
    assert web.requests[-1] == (f"GET /ok HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\n"
                                f"Host: 127.0.0.1:{web.port}\r\n\r\n").encode()
    await http.probe(http_ck(web.port, HttpUrl("/ok", virtualhost="u.example.test"),
                             http_protocol="1.1", virtualhost="ck.example.test"))
    assert web.requests[-1] == (b"GET /ok HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\n"
                                b"Connection: close\r\nHost: u.example.test\r\n\r\n")
    await http.probe(http_ck(web.port, HttpUrl("/ok"), virtualhost="ck.example.test"), 0,
                     vhost="rs.example.test")
    assert b"Host: ck.example.test\r\n" in web.requests[-1]
    await http.probe(http_ck(web.port, HttpUrl("/ok")), 0, vhost="rs.example.test")
    assert b"Host: rs.example.test\r\n" in web.requests[-1]


async def test_http_slow_answer_beyond_connect_timeout(web: HttpServer) -> None:
    t0 = time.monotonic()
    r = await http.probe(http_ck(web.port, HttpUrl("/slow"), connect_timeout=0.3))
    assert not r.ok and r.reason == "timeout after 300 ms (waiting for response)"
    assert time.monotonic() - t0 < 2.0  # the whole attempt is bounded by connect_timeout


async def test_http_refused_tarpit_reset_and_close() -> None:
    ref = Refuser()
    pit = Tarpit()
    srv, rport = await start_resetter()
    web = await HttpServer().start()
    try:
        r = await http.probe(http_ck(ref.port, HttpUrl("/ok")))
        assert not r.ok and r.reason == "refused"
        r = await http.probe(http_ck(pit.port, HttpUrl("/ok"), connect_timeout=0.3))
        assert not r.ok and r.reason == "timeout after 300 ms (waiting for response)"
        r = await http.probe(http_ck(rport, HttpUrl("/ok")))
        assert not r.ok and r.reason == "reset"
        r = await http.probe(http_ck(web.port, HttpUrl("/close")))
        assert not r.ok and r.reason == "no data received"
    finally:
        ref.close()
        pit.close()
        srv.close()
        await web.stop()


# ------------------------------------------------------------------------------ SSL_GET


@pytest.fixture
async def tls_web(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, Path]]:
    cert, key = make_cert(tmp_path, ["www.example.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = HttpServer(slow=3.0)

    def on_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        srv.sni.append(name)

    ctx.sni_callback = on_sni
    await srv.start(ssl_ctx=ctx)
    yield srv, cert
    await srv.stop()


async def test_ssl_get_without_verification_and_sni(tls_web: tuple[HttpServer, Path]) -> None:
    srv, _ = tls_web
    ck = http_ck(srv.port, HttpUrl("/ok", digest=BODY_MD5), kind=CheckKind.SSL_GET,
                 virtualhost="www.example.test", enable_sni=True)
    r = await http.probe(ck)
    assert r.ok, r.reason
    assert srv.sni[-1] == "www.example.test"
    assert b"Host: www.example.test\r\n" in srv.requests[-1]
    r = await http.probe(dataclasses.replace(ck, enable_sni=False))
    assert r.ok and srv.sni[-1] is None
    r = await http.probe(http_ck(srv.port, HttpUrl("/busy"), kind=CheckKind.SSL_GET))
    assert not r.ok and r.reason == "HTTP 503"


async def test_ssl_get_with_verification(tls_web: tuple[HttpServer, Path]) -> None:
    srv, cert = tls_web
    ck = http_ck(srv.port, HttpUrl("/ok"), kind=CheckKind.SSL_GET,
                 virtualhost="www.example.test", verify_cert=True)
    r = await http.probe(ck, ssl_ctx=client_context(True, str(cert)))
    assert r.ok, r.reason
    wrong = dataclasses.replace(ck, virtualhost="other.example.test")
    r = await http.probe(wrong, ssl_ctx=client_context(True, str(cert)))
    assert not r.ok and r.reason.startswith("TLS error")
    # a CA that did not sign the server certificate
    other, _ = make_cert(cert.parent, ["unrelated.example.test"])
    r = await http.probe(ck, ssl_ctx=client_context(True, str(other)))
    assert not r.ok and "CERTIFICATE_VERIFY_FAILED" in r.reason


async def test_ssl_get_against_plain_http_and_tarpit(web: HttpServer) -> None:
    # a plain HTTP server waits for a request line that never comes: handshake times out
    r = await http.probe(http_ck(web.port, HttpUrl("/ok"), kind=CheckKind.SSL_GET,
                                 connect_timeout=0.3))
    assert not r.ok and r.reason == "timeout after 300 ms (TLS handshake)"
    pit = Tarpit()
    try:
        r = await http.probe(http_ck(pit.port, HttpUrl("/ok"), kind=CheckKind.SSL_GET,
                                     connect_timeout=0.3))
        assert not r.ok and r.reason == "timeout after 300 ms (TLS handshake)"
    finally:
        pit.close()


async def test_ipv6_tcp_and_http_host_header() -> None:
    srv = HttpServer()
    try:
        await srv.start(host="::1")
    except OSError as e:  # pragma: no cover - IPv6 disabled on this machine
        require(f"no IPv6 loopback: {e}")
        raise
    try:
        ck = Checker(CheckKind.TCP_CHECK, NOPOS, "::1", srv.port, connect_timeout=1.0)
        assert (await tcp.probe(ck)).ok
        hck = Checker(CheckKind.HTTP_GET, NOPOS, "::1", srv.port, connect_timeout=1.0,
                      urls=(HttpUrl("/ok"),))
        r = await http.probe(hck)
        assert r.ok
        assert f"Host: [::1]:{srv.port}\r\n".encode() in srv.requests[-1]  # RFC 2732 form
    finally:
        await srv.stop()
