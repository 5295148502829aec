"""HTTP_GET / SSL_GET on the callback engine (lvsd.checks.http.HttpEngine) against real servers
on loopback that frame their answers every way HTTP/1.x allows, keep the connection open,
truncate, or send headers without end."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from checkservers import Refuser, Tarpit, make_cert

from lvsd.checks import http
from lvsd.checks.result import ProbeResult
from lvsd.config.model import NOPOS, Checker, CheckKind, HttpUrl

pytestmark = pytest.mark.realserver

CHUNKED_BODY = b"4\r\nlvsd\r\n7;x=y\r\n health\r\n0\r\n\r\n"
CHUNKED_MD5 = hashlib.md5(CHUNKED_BODY, usedforsecurity=False).hexdigest()


class FramingServer:
    """Answers by path; ``hold`` paths answer and then keep the connection open (a keep-alive
    server that ignores ``Connection: close``)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.open: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        path = head.split(b" ")[1].decode()
        hold = True
        if path == "/length-hold":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlvsd")
        elif path == "/chunked-hold":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(CHUNKED_BODY), 5):  # in pieces: the framing spans reads
                writer.write(CHUNKED_BODY[i:i + 5])
                await writer.drain()
                await asyncio.sleep(0.01)
        elif path == "/chunked-unfinished":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nlvsd\r\n")
        elif path == "/close-delimited":
            writer.write(b"HTTP/1.0 200 OK\r\n\r\n" + b"<p>up</p>" * 10_000)
            hold = False
        elif path == "/truncated":
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            hold = False
        elif path == "/endless-header":
            writer.write(b"HTTP/1.0 200 OK\r\n")
            with contextlib.suppress(ConnectionError):
                for _ in range(200):  # 200 KiB of header, never ended
                    writer.write(b"X-Filler: " + b"a" * 1012 + b"\r\n")
                    await writer.drain()
        if hold:
            self.open.append(writer)
            return
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def start(self, ssl_ctx: ssl.SSLContext | None = None) -> FramingServer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for w in self.open:
            w.transport.abort()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def framing() -> AsyncIterator[FramingServer]:
    srv = await FramingServer().start()
    yield srv
    await srv.stop()


def ck(port: int, url: HttpUrl, kind: CheckKind = CheckKind.HTTP_GET, **kw: Any) -> Checker:
    kw.setdefault("connect_timeout", 5.0)  # far beyond any answer here: a wait shows as timeout
    return Checker(kind, NOPOS, "127.0.0.1", port, urls=(url,), **kw)


async def test_content_length_ends_the_read_on_a_kept_open_connection(
        framing: FramingServer) -> None:
    r = await http.probe(ck(framing.port, HttpUrl("/length-hold",
                                                  digest=hashlib.md5(b"lvsd").hexdigest())))
    assert (r.ok, r.reason) == (True, "HTTP 200")


async def test_chunked_ends_the_read_and_digests_the_raw_bytes(framing: FramingServer) -> None:
    r = await http.probe(ck(framing.port, HttpUrl("/chunked-hold", digest=CHUNKED_MD5),
                            http_protocol="1.1"))
    assert (r.ok, r.reason) == (True, "HTTP 200")
    de_chunked = hashlib.md5(b"lvsd health").hexdigest()
    r = await http.probe(ck(framing.port, HttpUrl("/chunked-hold", digest=de_chunked)))
    assert not r.ok and r.reason.startswith("digest mismatch")


async def test_unfinished_chunked_answer_times_out(framing: FramingServer) -> None:
    r = await http.probe(ck(framing.port, HttpUrl("/chunked-unfinished"), connect_timeout=0.3))
    assert (r.ok, r.reason) == (False, "timeout after 300 ms (waiting for response)")


async def test_close_delimited_and_truncated_bodies(framing: FramingServer) -> None:
    r = await http.probe(ck(framing.port, HttpUrl("/close-delimited",
                                                  regex=r"(<p>up</p>){10000}$")))
    assert (r.ok, r.reason) == (True, "HTTP 200")
    r = await http.probe(ck(framing.port, HttpUrl("/truncated")))
    assert (r.ok, r.reason) == (True, "HTTP 200")  # keepalived judges what arrived
    r = await http.probe(ck(framing.port, HttpUrl("/truncated",
                                                  digest=hashlib.md5(b"x").hexdigest())))
    assert not r.ok and r.reason == (
        f"digest mismatch (got {hashlib.md5(b'short').hexdigest()})")


async def test_endless_header_is_bounded(framing: FramingServer) -> None:
    r = await http.probe(ck(framing.port, HttpUrl("/endless-header")))
    assert (r.ok, r.reason) == (False, "malformed response (header over 65536 bytes)")


async def test_tls_chunked_and_kept_open(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, ["www.example.test"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = await FramingServer().start(ssl_ctx=ctx)
    try:
        r = await http.probe(ck(srv.port, HttpUrl("/chunked-hold", digest=CHUNKED_MD5),
                                kind=CheckKind.SSL_GET, virtualhost="www.example.test",
                                verify_cert=True),
                             ssl_ctx=http.client_context(True, str(cert)))
        assert (r.ok, r.reason) == (True, "HTTP 200")
        r = await http.probe(ck(srv.port, HttpUrl("/length-hold"), kind=CheckKind.SSL_GET))
        assert (r.ok, r.reason) == (True, "HTTP 200")
    finally:
        await srv.stop()


async def test_one_engine_many_attempts_each_answered_once(framing: FramingServer) -> None:
    """What the scheduler does: one engine, many attempts at once, mixed outcomes; a
    cancelled attempt never calls back."""
    loop = asyncio.get_running_loop()
    engine = http.HttpEngine(loop)
    ref, pit = Refuser(), Tarpit()
    results: dict[int, list[ProbeResult]] = {}
    try:
        plan = []
        for i in range(60):
            kind = i % 4
            if kind == 0:
                c = ck(framing.port, HttpUrl("/length-hold"))
            elif kind == 1:
                c = ck(framing.port, HttpUrl("/chunked-hold"))
            elif kind == 2:
                c = ck(ref.port, HttpUrl("/"))
            else:
                c = ck(pit.port, HttpUrl("/"), connect_timeout=0.2 + (i % 3) * 0.1)
            plan.append(c)
        cancels = [engine.start(c, 0, None, None,
                                lambda r, i=i: results.setdefault(i, []).append(r))
                   for i, c in enumerate(plan)]
        cancels[0]()  # cancelled at once: no callback ever
        for _ in range(400):
            if len(results) >= len(plan) - 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # any duplicate callback would arrive meanwhile
        assert 0 not in results
        assert all(len(v) == 1 for v in results.values())
        assert set(results) == set(range(1, len(plan)))
        for i, (r,) in results.items():
            want = {0: (True, "HTTP 200"), 1: (True, "HTTP 200"), 2: (False, "refused"),
                    3: (False, f"timeout after {round(plan[i].connect_timeout * 1000)} ms "
                               "(waiting for response)")}[i % 4]
            assert (r.ok, r.reason) == want, (i, r)
    finally:
        engine.close()
        ref.close()
        pit.close()


async def test_scheduler_ssl_block_files_gone_is_a_failure_not_a_stall(tmp_path: Path) -> None:
    """SSL_GET on the scheduler's engine: the global SSL block's certificate vanished after
    the config was read (the context is built at the first probe): each attempt fails with
    the reason, the checker goes down, and it comes back once the files are there again."""
    from checkservers import HttpServer

    from lvsd.checks.scheduler import HealthEvent, Scheduler
    from lvsd.config.loader import loads

    srv_cert, srv_key = make_cert(tmp_path, ["www.example.test"])
    client, client_key = make_cert(tmp_path, ["client.example.test"])
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(srv_cert, srv_key)
    srv = await HttpServer().start(ssl_ctx=sctx)
    cfg = loads(f"""
SSL {{
    certificate {client}
    key {client_key}
}}
virtual_server 10.0.0.1 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    delay_loop 0.2
    real_server 127.0.0.1 {srv.port} {{
        SSL_GET {{
            url {{ path /ok }}
            connect_timeout 2
            retry 0
            warmup 0
        }}
    }}
}}
""")
    assert cfg.ok, cfg.diagnostics
    saved = client.read_bytes()
    client.unlink()
    q: asyncio.Queue[HealthEvent] = asyncio.Queue()
    try:
        async with Scheduler(cfg, on_change=q.put_nowait) as sched:
            async with asyncio.timeout(10):
                while True:
                    ev = await q.get()
                    if ev.health is not None:
                        break
            assert not ev.health.alive
            (st,) = sched.status()
            assert st.last_reason is not None and st.last_reason.startswith(
                "internal error: FileNotFoundError"), st.last_reason
            client.write_bytes(saved)
            sched.update(cfg)  # a reload rebuilds the contexts
            async with asyncio.timeout(10):
                while True:
                    ev = await q.get()
                    if ev.health is not None and ev.health.alive:
                        break
    finally:
        await srv.stop()
