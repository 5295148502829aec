"""DNS_CHECK against a real dnsmasq, UDP_CHECK against a UDP responder, SMTP_CHECK against
aiosmtpd and a hostile greeter."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from checkservers import Refuser, Tarpit, UdpResponder

from lvsd.checks import dns, smtp, udp
from lvsd.config.model import NOPOS, Checker, CheckKind

pytestmark = pytest.mark.realserver


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def dnsmasq() -> Iterator[int]:
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    port = free_udp_port()
    proc = subprocess.Popen(
        [exe, "--no-daemon", f"--port={port}", "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         "--pid-file=", "--address=/example.test/192.0.2.1",
         "--address=/v6.example.test/2001:db8::1", "--user=root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # wait until it answers
        probe_ck = Checker(CheckKind.DNS_CHECK, NOPOS, "127.0.0.1", port, connect_timeout=0.2,
                           dns_type="A", dns_name="example.test")
        # a "refused" answer (nothing bound yet) comes back at once: pace the attempts, and
        # never hand out a server that has not answered
        for _ in range(100):
            if asyncio.run(dns.probe(probe_ck)).ok:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail(f"dnsmasq never answered on 127.0.0.1:{port}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def dns_ck(port: int, name: str, qtype: str = "A", **kw: Any) -> Checker:
    return Checker(CheckKind.DNS_CHECK, NOPOS, "127.0.0.1", port, dns_name=name, dns_type=qtype,
                   connect_timeout=kw.pop("connect_timeout", 1.0), **kw)


async def test_dns_answers_and_errors(dnsmasq: int) -> None:
    r = await dns.probe(dns_ck(dnsmasq, "www.example.test"))
    assert r.ok and r.reason == "1 answer(s)"
    r = await dns.probe(dns_ck(dnsmasq, "v6.example.test", "AAAA"))
    assert r.ok and r.reason == "1 answer(s)"
    r = await dns.probe(dns_ck(dnsmasq, "nothing.invalid"))  # no upstream: dnsmasq refuses
    assert not r.ok and r.reason.startswith("rcode ")


async def test_dns_dead_and_silent_servers() -> None:
    ref = Refuser(socket.SOCK_DGRAM)  # bound, never read: the kernel queues, nobody answers
    ref.close()
    r = await dns.probe(dns_ck(ref.port, "example.test"))  # nothing bound any more: ICMP
    assert not r.ok and r.reason == "refused"
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        r = await dns.probe(dns_ck(silent.getsockname()[1], "example.test",
                                   connect_timeout=0.3))
        assert not r.ok and r.reason == "timeout after 300 ms"
    finally:
        silent.close()


# ------------------------------------------------------------------------------ UDP


@pytest.fixture
async def responder() -> AsyncIterator[tuple[UdpResponder, int]]:
    loop = asyncio.get_running_loop()
    proto = UdpResponder()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto,
                                                       local_addr=("127.0.0.1", 0))
    yield proto, transport.get_extra_info("sockname")[1]
    transport.close()


def udp_ck(port: int, **kw: Any) -> Checker:
    kw.setdefault("connect_timeout", 0.3)
    return Checker(CheckKind.UDP_CHECK, NOPOS, "127.0.0.1", port, **kw)


async def test_udp_reply_rules(responder: tuple[UdpResponder, int]) -> None:
    proto, port = responder
    r = await udp.probe(udp_ck(port, payload=b"ping", require_reply=b"PONG:ping"))
    assert r.ok and proto.seen[-1] == b"ping"
    r = await udp.probe(udp_ck(port, payload=b"ping", require_reply=b"PONG"))  # prefix
    assert r.ok
    r = await udp.probe(udp_ck(port, payload=b"ping", require_reply=b"NOPE"))
    assert not r.ok and r.reason == "reply mismatch"
    r = await udp.probe(udp_ck(port, payload=b"ping", require_reply=b"PO",
                               min_reply_length=20))
    assert not r.ok and r.reason == "reply length 9 not in 20..255"
    r = await udp.probe(udp_ck(port, payload=b"x" * 300, require_reply=b"PO"))
    assert not r.ok and r.reason == "reply length 305 not in 0..255"  # keepalived's default max
    r = await udp.probe(udp_ck(port, payload=b"x" * 300, require_reply=b"PO",
                               max_reply_length=1000))
    assert r.ok
    # keepalived check_udp.c: without reply data, any reply will do (lengths not applied)
    r = await udp.probe(udp_ck(port, payload=b"x" * 300, require_reply=b"",
                               min_reply_length=400))
    assert r.ok and r.reason == "reply 305 bytes"
    # wildcard nibbles (hex x): "PxNG" matches PONG; the mask ignores the low nibble of 'O'
    r = await udp.probe(udp_ck(port, payload=b"ping", require_reply=b"P@NG",
                               require_reply_mask=b"\x00\x0f\x00\x00"))
    assert r.ok
    r = await udp.probe(udp_ck(port, payload=b"ping", require_reply=b"P@NG"))
    assert not r.ok and r.reason == "reply mismatch"


async def test_udp_silence_and_unreachable() -> None:
    loop = asyncio.get_running_loop()
    quiet = UdpResponder(silent=True)
    transport, _ = await loop.create_datagram_endpoint(lambda: quiet,
                                                       local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        r = await udp.probe(udp_ck(port, payload=b"hi"))
        assert r.ok and r.reason == "no ICMP error"  # keepalived: silence is success
        r = await udp.probe(udp_ck(port, payload=b"hi", require_reply=b""))
        assert not r.ok and r.reason == "no reply: timeout after 300 ms"
    finally:
        transport.close()
    await asyncio.sleep(0.01)
    r = await udp.probe(udp_ck(port, payload=b"hi"))  # port closed now: ICMP unreachable
    assert not r.ok and r.reason == "refused"


# ------------------------------------------------------------------------------ SMTP


class HeloRecorder:
    def __init__(self) -> None:
        self.names: list[str] = []

    async def handle_HELO(self, server: Any, session: Any, envelope: Any,
                          hostname: str) -> str:
        self.names.append(hostname)
        session.host_name = hostname
        return "250 pleased to meet you"


@pytest.fixture
def smtpd() -> Iterator[tuple[HeloRecorder, int]]:
    from aiosmtpd.controller import Controller

    handler = HeloRecorder()
    port = free_udp_port()  # same number is very likely free for TCP too; checked by start()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield handler, port
    finally:
        ctl.stop()


def smtp_ck(port: int, **kw: Any) -> Checker:
    kw.setdefault("connect_timeout", 1.0)
    return Checker(CheckKind.SMTP_CHECK, NOPOS, "127.0.0.1", port, **kw)


async def test_smtp_helo(smtpd: tuple[HeloRecorder, int]) -> None:
    handler, port = smtpd
    r = await smtp.probe(smtp_ck(port, helo_name="director.example.test"))
    assert r.ok and r.reason == "HELO 250"
    assert handler.names[-1] == "director.example.test"
    r = await smtp.probe(smtp_ck(port))
    assert r.ok and handler.names[-1] == socket.gethostname()


async def test_smtp_bad_greeting_tarpit_refused() -> None:
    async def grumpy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 no service here\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(grumpy, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    pit, ref = Tarpit(), Refuser()
    try:
        r = await smtp.probe(smtp_ck(port))
        assert not r.ok and r.reason == "greeting 554"
        r = await smtp.probe(smtp_ck(pit.port, connect_timeout=0.3))
        assert not r.ok and r.reason == "timeout after 300 ms (greeting)"
        r = await smtp.probe(smtp_ck(ref.port))
        assert not r.ok and r.reason == "refused"
    finally:
        srv.close()
        pit.close()
        ref.close()
