"""HTTP_GET and SSL_GET: one GET of one ``url`` block per attempt (keepalived ``check_http.c``).

The request is keepalived's, byte for byte::

    GET <path> HTTP/1.<0|1>\\r\\n
    User-Agent: KeepAliveClient\\r\\n
    [Connection: close\\r\\n]            (http_protocol 1.0C and 1.1)
    Host: <virtualhost | ip:port>\\r\\n\\r\\n

The virtual host is the url's, else the checker's, else the real server's / virtual server's
(passed in by the scheduler). The response is read until the server closes (or Content-Length
bytes of body arrived); then, in keepalived's order: no data -> "no data received"; status
not in the url's ``status_code`` set (default 2xx) -> "HTTP 503"; MD5 of the body (at most
Content-Length bytes) differs from ``digest`` -> "digest mismatch"; ``regex`` -> "regex"
(with the url's ``regex_options`` caseless/dotall/extended/multiline as Python ``re`` flags).

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
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import partial

from lvsd.checks.result import ProbeResult, finished, ms, os_failure, tcp_connect
from lvsd.config.keywords import regex_flags
from lvsd.config.model import Checker, CheckKind, HttpUrl

MAX_RESPONSE = 4 * 1024 * 1024  # bytes read at most (keepalived reads until close)


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


def parse_head(head: bytes) -> tuple[int | None, int | None]:
    """(status code, content-length) from the header block."""
    lines = head.split(b"\r\n")
    status: int | None = None
    parts = lines[0].split(None, 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/"):
        try:
            status = int(parts[1])
        except ValueError:
            status = None
    clen: int | None = None
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            try:
                clen = int(v.strip())
            except ValueError:
                clen = None
    return status, clen


def judge(url: HttpUrl, data: bytes) -> tuple[bool, str]:
    """Apply keepalived's response rules to the raw bytes received."""
    if not data:
        return False, "no data received"
    sep = data.find(b"\r\n\r\n")
    if sep < 0:
        return False, "malformed response (no header end)"
    status, clen = parse_head(data[:sep])
    body = data[sep + 4:]
    if status is None:
        return False, "malformed status line"
    if not url.status_ok(status):
        return False, f"HTTP {status}"
    if clen is not None:
        body = body[:clen]
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
    """One GET of ``ck.urls[url_index]``."""
    t0 = time.monotonic()
    deadline = t0 + ck.connect_timeout
    if not ck.urls:
        return ProbeResult(True, "no url configured", 0.0, started=t0)
    url = ck.urls[url_index]
    try:
        sock = await tcp_connect(ck, deadline)
    except TimeoutError:
        return finished(False, f"timeout after {ms(ck.connect_timeout)} (connecting)", t0)
    except OSError as e:
        return os_failure(e, t0)
    req = request_bytes(ck, url, vhost)
    phase = ["sending request"]
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            if ck.kind is CheckKind.SSL_GET:
                data = await _tls_exchange(ck, url, vhost, ssl_ctx, sock, req, phase)
            else:
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, req)
                phase[0] = "waiting for response"
                data = await _read_response(partial(loop.sock_recv, sock, 65536))
    except TimeoutError:
        return finished(False, f"timeout after {ms(ck.connect_timeout)} ({phase[0]})", t0)
    except ssl.SSLError as e:
        return ProbeResult(False, f"TLS error: {e.reason or e}", time.monotonic() - t0,
                           started=t0)
    except OSError as e:
        return os_failure(e, t0)
    finally:
        sock.close()
    ok, reason = judge(url, data)
    return ProbeResult(ok, reason, time.monotonic() - t0, started=t0)


async def _read_response(recv: Callable[[], Awaitable[bytes]]) -> bytes:
    """Read until the peer closes, Content-Length bytes of body arrived or MAX_RESPONSE.

    A TLS error after some data (peer closed without close_notify) ends the read: keepalived
    accepts the data."""
    buf = bytearray()
    need: int | None = None
    while len(buf) < MAX_RESPONSE:
        try:
            chunk = await recv()
        except ssl.SSLError:
            if buf:
                break
            raise
        if not chunk:
            break
        buf += chunk
        if need is None:
            sep = buf.find(b"\r\n\r\n")
            if sep >= 0:
                _, clen = parse_head(bytes(buf[:sep]))
                need = sep + 4 + clen if clen is not None else -1
        if need is not None and need >= 0 and len(buf) >= need:
            break
    return bytes(buf)


async def _tls_exchange(ck: Checker, url: HttpUrl, vhost: str | None,
                        ssl_ctx: ssl.SSLContext | None, sock: socket.socket, req: bytes,
                        phase: list[str]) -> bytes:
    ctx = ssl_ctx
    if ctx is None:
        ctx = _DEFAULT_CTX.get(ck.verify_cert)
        if ctx is None:
            ctx = _DEFAULT_CTX[ck.verify_cert] = client_context(ck.verify_cert)
    # verifying needs a name to check: the virtual host (then also sent as SNI), else the IP
    sni = sni_name(ck, url, vhost, force=ctx.check_hostname)
    phase[0] = "TLS handshake"
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=ctx,
        # verifying an IP target: Python checks the IP SAN and sends no SNI for IP literals
        server_hostname=sni or (ck.connect_ip if ctx.check_hostname else ""),
        ssl_handshake_timeout=max(0.001, ck.connect_timeout))
    try:
        phase[0] = "sending request"
        writer.write(req)
        await writer.drain()
        phase[0] = "waiting for response"
        return await _read_response(partial(reader.read, 65536))
    finally:
        if ck.tls_compliant or url.tls_compliant:
            # keepalived tls_compliant: a proper SSL_shutdown (close_notify) instead of quiet
            # shutdown. close() queues close_notify and hands it to the socket at once; abort()
            # then drops the connection without waiting for the peer's close_notify.
            writer.close()
        writer.transport.abort()
