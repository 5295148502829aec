"""A checker out of descriptors is not a verdict on the real server (issue 16 item 1).

Real servers (TCP/HTTP, SMTP, DNS, UDP, ICMP on loopback, a MISC_CHECK script) run in this
process; the checker runs in a child process (``fd_starved_checker.py``) that exhausts its own
descriptor table once every server is up. Every probe then fails with EMFILE on socket(),
epoll, pipe or /dev/null; none of that may take a server out of the pool (keepalived check_tcp.c
tcp_connect_thread: "TCP connect fail to create socket. Rescheduling.", no verdict).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.message
import pytest
from checkservers import HttpServer, UdpResponder

pytestmark = pytest.mark.realserver

DRIVER = Path(__file__).with_name("fd_starved_checker.py")


class DnsResponder(asyncio.DatagramProtocol):
    """Answers every query NOERROR with no records (enough for DNS_CHECK)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(dns.message.make_response(dns.message.from_wire(data)).to_wire(),
                              addr)


async def smtp_greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 test ESMTP\r\n")
    try:
        while line := await reader.readline():
            writer.write(b"221 bye\r\n" if line.startswith(b"QUIT") else b"250 ok\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, int]]:
    loop = asyncio.get_running_loop()
    http = await HttpServer().start()
    smtp = await asyncio.start_server(smtp_greeter, "127.0.0.1", 0)
    udp, _ = await loop.create_datagram_endpoint(UdpResponder, local_addr=("127.0.0.1", 0))
    dnst, _ = await loop.create_datagram_endpoint(DnsResponder, local_addr=("127.0.0.1", 0))
    try:
        yield {"http": http.port, "smtp": smtp.sockets[0].getsockname()[1],
               "udp": udp.get_extra_info("sockname")[1],
               "dns": dnst.get_extra_info("sockname")[1]}
    finally:
        udp.close()
        dnst.close()
        smtp.close()
        await http.stop()


def conf(ports: dict[str, int], script: Path) -> str:
    timing = "connect_timeout 5\n retry 0\n warmup 0"
    checks = [
        f"TCP_CHECK {{\n connect_port {ports['http']}",
        f"HTTP_GET {{\n connect_port {ports['http']}\n url {{\n path /ok\n }}",
        f"SMTP_CHECK {{\n connect_port {ports['smtp']}",
        f"DNS_CHECK {{\n connect_port {ports['dns']}\n name example.org\n type A",
        f"UDP_CHECK {{\n connect_port {ports['udp']}\n require_reply",
        "PING_CHECK {",
        f"MISC_CHECK {{\n misc_path {script}\n misc_timeout 5",
    ]
    # one real server per checker (ports 1001..: the checkers' own connect_port is real)
    blocks = "".join(f"real_server 127.0.0.1 {1001 + i} {{\n{check}\n {timing}\n}}\n}}\n"
                     for i, check in enumerate(checks))
    head = "virtual_server 10.0.0.1 80 {\n delay_loop 0.1\n lb_algo rr\n lb_kind NAT\n"
    return f"{head} protocol TCP\n{blocks}}}\n"


async def test_exhausted_descriptors_leave_every_server_up(servers: dict[str, int],
                                                           tmp_path: Path) -> None:
    script = tmp_path / "ok.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    cfile = tmp_path / "keepalived.conf"
    cfile.write_text(conf(servers, script))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(DRIVER), str(cfile), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    seen: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    starved = seen["starved"]
    assert seen["held"] > 0
    kinds = {label.split()[0] for label in starved["checkers"]}
    assert kinds == {"TCP_CHECK", "HTTP_GET", "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK",
                     "PING_CHECK", "MISC_CHECK"}
    # no server left the pool while its checker could not open a descriptor
    assert len(starved["health"]) == 7 and all(starved["health"].values()), starved
    for label, c in starved["checkers"].items():
        assert c["up"] is True, (label, c)
        # the attempts did fail, for the local reason only, and were counted as such
        assert set(c["failures"]) == {"local"} and c["failures"]["local"] >= 3, (label, c)
    # and the log said so, at a bounded rate (one line per 10 s for the whole scheduler)
    lines = [ln for ln in err.decode().splitlines() if "check not made" in ln]
    assert 1 <= len(lines) <= 1 + starved["seconds"] // 10, lines
    assert "(EMFILE)" in lines[0] and "keeps its state" in lines[0]
    assert all(seen["after"]["health"].values())
