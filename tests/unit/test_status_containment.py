"""The status endpoint cannot hurt the daemon: limits over real sockets, then a real ``lvsd run``.

In-process (a :class:`StatusServer` on an ephemeral loopback port, real clients): one snapshot
per interval; 429 past a client's rate (``/healthz`` exempt); 503 past the event-stream cap and
past the concurrent-request cap (held by clients that do not read their answer, let go at the
request timeout); connections past the cap aborted at once; a slowloris closed at the header
deadline; the counts in ``/status`` and ``/metrics``.

The proof (issue 16 item 1): ``lvsd run --dataplane memory`` with a soft descriptor limit of
1,024, a real TCP server on 127.0.0.1 checked by TCP_CHECK, 1,100 idle connections held on the
status port plus a slowloris. The daemon never holds more descriptors than its cap allows, the
real server never leaves the pool, ``/healthz`` answers once the header timeout has closed the
idle ones, the log has no error flood, and 429/503 come back to a real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _status_sample import FakeProvider
from prometheus_client.parser import text_string_to_metric_families

from lvsd.status.app import StatusServer, create_app, parse_listen
from lvsd.status.events import EventBus
from lvsd.status.limits import REASONS, StatusLimits
from lvsd.status.model import (
    ConfigStatus,
    ProcessStatus,
    RealServerStatus,
    Snapshot,
    VirtualServerStatus,
)

BOUND = 60.0  # generous bound of every wait below (never a timing assertion)


async def _until(pred: Any, what: str, bound: float = BOUND) -> None:
    deadline = time.monotonic() + bound
    while not await pred():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server closed (FIN) or reset this client socket; reads nothing (a
    client that does not read its answer must stay one)."""
    p = select.poll()
    p.register(sock, select.POLLRDHUP | select.POLLERR | select.POLLHUP)
    return bool(p.poll(0))


class _Server:
    def __init__(self, srv: StatusServer, provider: Any) -> None:
        self.srv = srv
        self.provider = provider
        self.base = f"http://127.0.0.1:{srv.port}"

    def stats(self) -> dict[str, int]:
        return dict(self.srv.limits.rejected)


@contextlib.asynccontextmanager
async def _serve(provider: Any = None, **kw: Any) -> Any:
    provider = provider or FakeProvider()
    interval = kw.pop("snapshot_interval", 0.5)
    srv = StatusServer(create_app(provider, EventBus(), limits=StatusLimits(**kw),
                                  snapshot_interval=interval), "127.0.0.1", 0)
    await srv.start()
    try:
        yield _Server(srv, provider)
    finally:
        await srv.stop()


def _session(local: str = "127.0.0.1") -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(local, 0)))


@pytest.mark.unit
async def test_one_snapshot_and_one_render_per_interval() -> None:
    provider = FakeProvider()
    async with _serve(provider, snapshot_interval=3600, max_requests=64) as s, \
            _session() as http:
        async def fetch(path: str) -> bytes:
            async with http.get(s.base + path) as r:
                assert r.status == 200
                return await r.read()

        bodies = await asyncio.gather(*(fetch(path) for path in
                                        ("/status", "/metrics", "/status?pretty=1") * 10))
        assert provider.calls == 1  # 30 answers, one snapshot
        assert len({bodies[0], *bodies[::3]}) == 1  # the same render, shared
        assert json.loads(bodies[0])["status_endpoint"]["rejected"] == dict.fromkeys(REASONS, 0)
    provider = FakeProvider()
    async with _serve(provider, snapshot_interval=0) as s, _session() as http:
        for _ in range(3):
            assert (await http.get(s.base + "/status")).status == 200
        assert provider.calls == 3


@pytest.mark.unit
async def test_429_past_the_client_rate_healthz_exempt() -> None:
    async with _serve(rate=0.01, burst=3, snapshot_interval=0) as s, _session() as http:
        for _ in range(3):
            assert (await http.get(s.base + "/status")).status == 200
        r = await http.get(s.base + "/metrics")
        assert r.status == 429
        assert int(r.headers["Retry-After"]) >= 1 and "rate limited" in await r.text()
        for _ in range(20):  # /healthz stays answerable
            assert (await http.get(s.base + "/healthz")).status == 200
        # another client has its own bucket, and sees the count
        async with _session("127.0.0.2") as other:
            text = await (await other.get(s.base + "/metrics")).text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    rejected = {x.labels["reason"]: x.value for x in fams["lvsd_status_rejected"].samples
                if x.name == "lvsd_status_rejected_total"}
    assert set(rejected) == set(REASONS) and rejected["rate_limited"] == 1


@pytest.mark.unit
async def test_503_past_the_stream_cap() -> None:
    async with _serve(max_streams=2) as s, _session() as http:
        streams = [await http.get(s.base + "/events") for _ in range(2)]
        for st in streams:
            assert st.status == 200
            await asyncio.wait_for(st.content.readuntil(b"\n\n"), BOUND)
        r = await http.get(s.base + "/events")
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert (await http.get(s.base + "/status")).status == 200  # requests: another cap
        streams[0].close()

        async def admitted() -> bool:
            r = await http.get(s.base + "/events")
            if r.status != 200:
                return False
            streams.append(r)
            return True

        await _until(admitted, "a stream slot freed by a closed stream")
        for st in streams:
            st.close()
        assert s.stats()["too_many_streams"] >= 1


def _big_provider(n: int = 20_000) -> Any:
    """A snapshot whose /status JSON is several MB: more than any socket buffers hold."""
    rs = tuple(RealServerStatus(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 80, True, True,
                                1, 1, reason="TCP_CHECK ok") for i in range(n))
    vs = VirtualServerStatus("192.0.2.1:80/TCP", ("TCP 192.0.2.1:80",), "TCP", "rr", "NAT", 0,
                             True, n, n, real_servers=rs)
    snap = Snapshot(ProcessStatus(1, "0", 0.0, "full", True), ConfigStatus("f", "c", 0.0), 0.0,
                    virtual_servers=(vs,))
    return lambda: snap


def _slow_reader(port: int, path: str = "/status") -> socket.socket:
    """A client that asks and never reads (a small receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


@pytest.mark.unit
async def test_503_past_the_request_cap_and_the_request_timeout() -> None:
    async with _serve(_big_provider(), max_requests=2, snapshot_interval=3600,
                      request_timeout=3600) as s, _session() as http:
        slow = [_slow_reader(s.srv.port) for _ in range(2)]
        try:
            async def refused() -> bool:
                r = await http.get(s.base + "/")
                return r.status == 503

            await _until(refused, "503 while two clients hold both request slots")
            assert s.stats()["too_many_requests"] >= 1
            assert s.srv.limits.requests == 2
        finally:
            for sock in slow:
                sock.close()

        async def answered() -> bool:
            return (await http.get(s.base + "/")).status == 200

        await _until(answered, "slots given back when the slow clients leave")
        await _until(lambda: _true(s.srv.limits.requests == 0), "no request left in flight")

    # a client that does not read is let go at the request timeout, with its slot
    async with _serve(_big_provider(), max_requests=1, snapshot_interval=3600,
                      request_timeout=1) as s:
        sock = _slow_reader(s.srv.port)
        try:
            await _until(lambda: _true(_closed_by_peer(sock)), "the slow reader closed")
        finally:
            sock.close()
        assert s.stats()["request_timeout"] == 1
        await _until(lambda: _true(s.srv.limits.requests == 0), "its slot given back")


async def _true(v: bool) -> bool:
    return v


@pytest.mark.unit
async def test_connection_cap_aborts_at_once_and_header_deadline_closes() -> None:
    async with _serve(max_connections=5, header_timeout=3600) as s:
        socks = [socket.create_connection(("127.0.0.1", s.srv.port)) for _ in range(8)]
        try:
            await _until(lambda: _true(s.stats()["too_many_connections"] == 3),
                         "3 connections over the cap refused")
            await _until(lambda: _true(sum(map(_closed_by_peer, socks)) == 3),
                         "3 connections closed by the server")
            assert s.srv.limits.connections_open == 5  # the others are held, not closed
        finally:
            for sock in socks:
                sock.close()
        await _until(lambda: _true(s.srv.limits.connections_open == 0), "all closes seen")

    async with _serve(header_timeout=1, idle_timeout=1) as s, _session() as http:
        loris = socket.create_connection(("127.0.0.1", s.srv.port))
        idle = socket.create_connection(("127.0.0.1", s.srv.port))
        stop = threading.Event()

        def dribble() -> None:  # one byte of a never-ending head, every 0.1 s
            loris.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError):
                while not stop.wait(0.1):
                    loris.sendall(b"X")

        t = threading.Thread(target=dribble, daemon=True)
        t.start()
        try:
            await _until(lambda: _true(_closed_by_peer(loris) and _closed_by_peer(idle)),
                         "slowloris and idle connection closed at the header deadline")
        finally:
            stop.set()
            t.join(10)
            loris.close()
            idle.close()
        assert s.stats()["header_timeout"] == 2
        # a kept-alive connection is closed after idle_timeout, which clients expect
        r = await http.get(s.base + "/healthz")
        assert r.status == 200
        await _until(lambda: _true(s.stats()["idle_timeout"] == 1), "idle keep-alive closed")
        assert (await http.get(s.base + "/healthz")).status == 200  # a new connection


@pytest.mark.unit
def test_parse_listen_bare_port_is_loopback() -> None:
    assert parse_listen("18603") == ("127.0.0.1", 18603)  # as ":18603" and the default
    assert parse_listen(" 18603 ") == ("127.0.0.1", 18603)
    assert parse_listen(":18603") == ("127.0.0.1", 18603)
    assert parse_listen("0.0.0.0:18603") == ("0.0.0.0", 18603)
    assert parse_listen("localhost") == ("localhost", 9330)
    assert parse_listen("[::1]") == ("::1", 9330)
    assert parse_listen("::1") == ("::1", 9330)  # a bare IPv6 address, default port
    for bad, why in (("99999", "port must be a number 0-65535"),
                     ("host:http", "port must be a number 0-65535"),
                     ("[::1]x", "expected [ADDRESS]:PORT"), ("[]:80", "no host"), ("", "no host")):
        with pytest.raises(ValueError, match=why.replace("[", r"\[")):
            parse_listen(bad)


# ---------------------------------------------------------------- the real daemon

NOFILE = 1024
ATTACK = 1100

CONF = """global_defs {{
    router_id containment
}}
virtual_server 127.0.0.1 {vport} {{
    delay_loop 0.5
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 {rport} {{
        weight 7
        TCP_CHECK {{
            connect_timeout 3
            retry 1
            delay_before_retry 0.5
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tcp_server() -> Iterator[int]:
    """A real TCP server on 127.0.0.1: accepts and closes."""
    srv = socket.create_server(("127.0.0.1", 0), backlog=128)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        t.join(5)
        srv.close()


def _limit_nofile() -> None:
    """In the child, before exec: the common limit of 1,024, hard too (lvsd raises its soft
    limit to the hard one at start: lvsd.daemon.limits)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class Daemon:
    def __init__(self, tmp: Path, rport: int) -> None:
        self.port = _free_port()
        self.log = tmp / "lvsd.log"
        conf = tmp / "keepalived.conf"
        conf.write_text(CONF.format(vport=_free_port(), rport=rport))
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only",
                 "--dataplane", "memory", "--status-listen", str(self.port),  # bare: loopback
                 "--pid-file", str(tmp / "lvsd.pid"), "--dump-dir", str(tmp), "--no-syslog",
                 "--log-format", "json"],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_limit_nofile)

    def get(self, path: str, local: str = "127.0.0.1") -> tuple[int, bytes]:
        """One request from ``local`` (status, body); OSError while it cannot connect."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                      source_address=(local, 0)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        if not data:
            raise ConnectionResetError("closed without an answer")
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def status(self, local: str = "127.0.0.1") -> dict[str, Any]:
        code, body = self.get("/status", local)
        assert code == 200, (code, body)
        out: dict[str, Any] = json.loads(body)
        return out

    def wait(self, pred: Any, what: str, local: str = "127.0.0.1") -> dict[str, Any]:
        deadline = time.monotonic() + BOUND
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"lvsd exited:\n{self.log.read_text()[-3000:]}"
            try:
                last = self.status(local)
                if pred(last):
                    return last
            except (OSError, AssertionError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"never: {what}; last {last}\n{self.log.read_text()[-3000:]}")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemon(tmp_path: Path, tcp_server: int) -> Iterator[Daemon]:
    d = Daemon(tmp_path, tcp_server)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def many_fds() -> Iterator[None]:
    """This (the attacking) process needs more than 1,100 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = ATTACK + 500
    if soft >= want:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"needs {want} file descriptors (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _rs(s: dict[str, Any]) -> dict[str, Any]:
    rs: dict[str, Any] = s["virtual_servers"][0]["real_servers"][0]
    return rs


def _open_many(port: int, n: int, batch: int = 50) -> tuple[list[socket.socket], int]:
    """``n`` connections, opened ``batch`` at a time (within the listen backlog, so that the
    kernel hands them all to lvsd rather than dropping some from a full accept queue); how many
    were established."""
    socks: list[socket.socket] = []
    established = 0
    deadline = time.monotonic() + BOUND
    while len(socks) < n:
        wave = []
        for _ in range(min(batch, n - len(socks))):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            wave.append(s)
        socks += wave
        pending = {s.fileno(): s for s in wave}
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        while pending and time.monotonic() < deadline:
            for fd, _ in poller.poll(200):
                s = pending.pop(fd)
                poller.unregister(fd)
                # 0: connected; ECONNRESET: connected, then aborted by lvsd (over its cap)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (0, errno.ECONNRESET):
                    established += 1
        time.sleep(0.02)  # let lvsd accept them (no assertion depends on this pace)
    return socks, established


@pytest.mark.realserver
def test_descriptor_exhaustion_attack_costs_the_pool_nothing(daemon: Daemon,
                                                            many_fds: None) -> None:
    s = daemon.wait(lambda s: s["process"]["ready"] and _rs(s)["alive"] is True
                    and _rs(s)["dataplane_weight"] == 7, "the real server in the pool")
    before = _rs(s)
    checks_before = s["checkers"][0]["checks_total"]
    fds_before = daemon.fds()
    cap = s["status_endpoint"]["max_connections"]
    assert cap == 128  # the default (under a quarter of the 1,024 descriptors)

    # the attack: 1,100 idle connections held, and a slowloris dribbling a request head
    loris = socket.create_connection(("127.0.0.1", daemon.port))
    stop = threading.Event()

    def dribble() -> None:
        loris.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(OSError):
            while not stop.wait(0.5):
                loris.sendall(b"X")

    slow = threading.Thread(target=dribble, daemon=True)
    slow.start()
    socks, established = _open_many(daemon.port, ATTACK)
    try:
        assert established >= 1000, established
        # while the attack is held: the daemon never holds more than its cap allows
        most = daemon.fds()
        deadline = time.monotonic() + BOUND
        while True:
            most = max(most, daemon.fds())
            try:
                code, _ = daemon.get("/healthz")
            except OSError:  # refused while the idle ones hold every slot
                code = 0
            if code == 200:
                break
            assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "/healthz never answered again"
            time.sleep(0.2)
        # the cap, plus at most one accept batch (the listen backlog, 128) being aborted
        assert most <= fds_before + cap + 128 + 16, (most, fds_before)

        # the idle ones and the slowloris were closed by the header timeout, not by us: the
        # daemon holds none of them (connections past the kernel's accept queue may still look
        # established to this client: the kernel never handed them to lvsd)
        deadline = time.monotonic() + BOUND
        while not _closed_by_peer(loris):
            assert time.monotonic() < deadline, "the slowloris was never closed"
            time.sleep(0.2)
        daemon.wait(lambda s: s["status_endpoint"]["connections_open"] == 1, "idle ones closed")
        assert daemon.fds() <= fds_before + 8, (daemon.fds(), fds_before)
    finally:
        stop.set()
        slow.join(10)
        loris.close()
        for x in socks:
            x.close()

    # the pool kept its real server throughout: never down (since unchanged), weight kept,
    # and checks ran during the attack
    s = daemon.wait(lambda s: s["checkers"][0]["checks_total"] > checks_before + 2,
                    "checks running after the attack")
    rs = _rs(s)
    assert rs["alive"] is True and rs["dataplane_weight"] == 7 and rs["in_dataplane"]
    assert rs["since"] == before["since"], (before, rs)
    assert s["virtual_servers"][0]["quorum_up"] is True
    assert s["checkers"][0]["up"] is True and s["checkers"][0]["consecutive_failures"] == 0
    # no check failed for a local reason (EMFILE) at any time
    assert s["checkers"][0].get("failures", {}).get("local", 0) == 0, s["checkers"][0]
    rejected = s["status_endpoint"]["rejected"]
    # most of the attack reached lvsd and was aborted at once (the rest the kernel dropped
    # from its full accept queue)
    assert rejected["too_many_connections"] >= ATTACK // 2, rejected
    assert rejected["header_timeout"] >= cap - 10, rejected

    # 429 and 503 to a real client (the defaults: 50/s per client, burst 100; 32 streams)
    deadline = time.monotonic() + BOUND

    def until_429() -> list[int]:
        codes = []
        while 429 not in codes and time.monotonic() < deadline:
            codes.append(daemon.get("/status", local="127.0.0.3")[0])
        return codes

    with ThreadPoolExecutor(8) as pool:  # 8 clients from one address: 50/s is soon spent
        codes = [c for f in [pool.submit(until_429) for _ in range(8)] for c in f.result()]
    assert 429 in codes and set(codes) <= {200, 429}, codes
    assert daemon.get("/healthz", local="127.0.0.3")[0] == 200  # exempt
    streams = []
    try:
        for _ in range(32):
            sock = socket.create_connection(("127.0.0.1", daemon.port),
                                            source_address=("127.0.0.4", 0), timeout=10)
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            streams.append(sock)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "stream refused"
        assert daemon.get("/events", local="127.0.0.5")[0] == 503
    finally:
        for sock in streams:
            sock.close()
    # counted (in a snapshot at most 0.5 s old, so: eventually)
    s = daemon.wait(lambda s: s["status_endpoint"]["streams_open"] == 0
                    and s["status_endpoint"]["rejected"]["rate_limited"] >= 1
                    and s["status_endpoint"]["rejected"]["too_many_streams"] >= 1,
                    "streams closed, refusals counted", local="127.0.0.6")
    assert s["status_endpoint"]["rejected"]["too_many_streams"] == 1

    # still up, stops cleanly, and no flood of errors in the log
    assert daemon.proc.poll() is None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    lines = [json.loads(ln) for ln in daemon.log.read_text().splitlines() if ln.startswith("{")]
    errors = [r for r in lines if r.get("level") in ("error", "critical")
              or "Traceback" in r.get("msg", "") or "accept" in r.get("msg", "")]
    assert len(errors) <= 3, errors[:10]
    assert len(daemon.log.read_text().splitlines()) < 200
