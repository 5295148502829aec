"""Real servers for the checker tests: HTTP(S) with scripted behaviours, tarpit, reset, UDP
responder, certificates. Everything listens on 127.0.0.1 (or inside test namespaces)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import socket
import ssl
import struct
from dataclasses import dataclass, field
from pathlib import Path

BODY = b"<html>lvsd health page</html>\n"
BODY_MD5 = hashlib.md5(BODY, usedforsecurity=False).hexdigest()


@dataclass
class HttpServer:
    """Answers by path: /ok 200, /moved 301, /missing 404, /busy 503, /wrong 200 with another
    body, /slow 200 after ``slow`` seconds, /close closes without answering, /toggle 200 or 503
    as ``toggle_ok`` says."""

    slow: float = 3.0
    toggle_ok: bool = True  # /toggle: 200 while True, else 503
    requests: list[bytes] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        self.requests.append(head)
        path = head.split(b" ")[1].decode()
        status, body = {
            "/ok": (b"200 OK", BODY), "/moved": (b"301 Moved Permanently", b""),
            "/missing": (b"404 Not Found", b"nope"), "/busy": (b"503 Service Unavailable", b""),
            "/wrong": (b"200 OK", b"something else\n"), "/slow": (b"200 OK", BODY),
        }.get(path, (b"404 Not Found", b""))
        if path == "/toggle":
            status, body = (b"200 OK", BODY) if self.toggle_ok else (b"503 Busy", b"")
        if path == "/close":
            writer.close()
            return
        if path == "/slow":
            await asyncio.sleep(self.slow)
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\nContent-Type: text/html\r\n\r\n" + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def start(self, host: str = "127.0.0.1", ssl_ctx: ssl.SSLContext | None = None
                    ) -> HttpServer:
        self.server = await asyncio.start_server(self.handle, host, 0, ssl=ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


class Tarpit:
    """Accepts connections (kernel backlog) and never reads nor answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class Blackhole:
    """A port whose accept queue is full: the kernel drops further SYNs, connects hang until
    the client's timeout (the loopback stand-in for an unreachable host)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", self.port))
            self.fillers.append(c)

    def close(self) -> None:
        for c in self.fillers:
            c.close()
        self.sock.close()


class Refuser:
    """A port bound but not listening: every connect is refused."""

    def __init__(self, kind: socket.SocketKind = socket.SOCK_STREAM) -> None:
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


async def start_resetter() -> tuple[asyncio.Server, int]:
    """Accepts, reads the request, then resets the connection (RST via SO_LINGER 0)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(1), 1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


class UdpResponder(asyncio.DatagramProtocol):
    """Replies b"PONG:" + payload; with ``silent`` it stays quiet."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.transport: asyncio.DatagramTransport | None = None
        self.seen: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen.append(data)
        if not self.silent and self.transport is not None:
            self.transport.sendto(b"PONG:" + data, addr)


def make_cert(tmp: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate (also usable as its own CA) for ``names``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cpath, kpath = tmp / f"{names[0]}.crt", tmp / f"{names[0]}.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return cpath, kpath
