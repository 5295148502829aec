"""PING_CHECK, bind_if (SO_BINDTODEVICE) and fwmark (SO_MARK) inside network namespaces: a
director host and a real server host on one bridge; the real server is cut off and healed."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from lvsd.checks import ping, tcp
from lvsd.checks.result import ProbeResult
from lvsd.config.model import NOPOS, Checker, CheckKind
from lvsd.lab.netns import Topology, have_netns

pytestmark = [pytest.mark.realserver, pytest.mark.netns]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that joined namespace ``ns`` (setns affects only that thread)."""
    out: dict[str, Any] = {}

    def worker() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                out["err"] = OSError(ctypes.get_errno(), "setns failed")
                return
        finally:
            os.close(fd)
        try:
            out["val"] = fn()
        except BaseException as e:
            out["err"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    if "err" in out:
        raise out["err"]
    return out["val"]  # type: ignore[no-any-return]


def probe_in(ns: str, coro: Callable[[], Coroutine[Any, Any, ProbeResult]]) -> ProbeResult:
    return in_netns(ns, lambda: asyncio.run(coro()))


@pytest.fixture
def topo() -> Iterator[Topology]:
    why = have_netns()
    if why and os.environ.get("CI"):
        pytest.fail(f"netns tests must run in CI: {why}")
    if why:
        pytest.skip(why)
    t = Topology("lt-chk")
    try:
        t.add_host("d", "10.77.0.1/24")
        t.add_host("r", "10.77.0.2/24")
        yield t
    finally:
        t.close()


def ping_ck(**kw: Any) -> Checker:
    kw.setdefault("connect_timeout", 0.5)
    return Checker(CheckKind.PING_CHECK, NOPOS, "10.77.0.2", 0, **kw)


def test_ping_host_up_then_gone_then_back(topo: Topology) -> None:
    d, r = topo["d"], topo["r"]
    res = probe_in(d.ns, lambda: ping.probe(ping_ck()))
    assert res.ok and res.reason == "echo reply", res.reason
    r.cut()
    res = probe_in(d.ns, lambda: ping.probe(ping_ck()))
    assert not res.ok and res.reason == "no echo reply: timeout after 500 ms"
    r.heal()
    res = probe_in(d.ns, lambda: ping.probe(ping_ck()))
    assert res.ok
    r.run("ip", "addr", "del", "10.77.0.2/24", "dev", "eth0")  # host gone for good
    res = probe_in(d.ns, lambda: ping.probe(ping_ck()))
    assert not res.ok


def test_bind_if_and_fwmark_steer_the_probe(topo: Topology) -> None:
    d, r = topo["d"], topo["r"]
    # a listener on the real server (the kernel completes handshakes from the backlog)
    ls = in_netns(r.ns, lambda: socket.create_server(("10.77.0.2", 8080), backlog=64))
    try:
        tck = Checker(CheckKind.TCP_CHECK, NOPOS, "10.77.0.2", 8080, connect_timeout=0.5)
        assert probe_in(d.ns, lambda: tcp.probe(tck)).ok
        assert probe_in(d.ns, lambda: tcp.probe(Checker(
            CheckKind.TCP_CHECK, NOPOS, "10.77.0.2", 8080, connect_timeout=0.5,
            bind_if="eth0"))).ok
        res = probe_in(d.ns, lambda: tcp.probe(Checker(
            CheckKind.TCP_CHECK, NOPOS, "10.77.0.2", 8080, connect_timeout=0.5, bind_if="lo")))
        assert not res.ok  # no route to 10.77.0.2 through lo
        res = probe_in(d.ns, lambda: ping.probe(ping_ck(bind_if="lo")))
        assert not res.ok
        # marked traffic is routed into a blackhole table
        d.run("ip", "route", "add", "blackhole", "10.77.0.0/24", "table", "100")
        d.run("ip", "rule", "add", "fwmark", "7", "table", "100")
        res = probe_in(d.ns, lambda: tcp.probe(Checker(
            CheckKind.TCP_CHECK, NOPOS, "10.77.0.2", 8080, connect_timeout=0.5, fwmark=7)))
        assert not res.ok and res.reason in ("invalid argument", "einval",
                                             "network unreachable"), res.reason
        assert not probe_in(d.ns, lambda: ping.probe(ping_ck(fwmark=7))).ok
        assert probe_in(d.ns, lambda: ping.probe(ping_ck(fwmark=8))).ok
        assert probe_in(d.ns, lambda: tcp.probe(tck)).ok
    finally:
        ls.close()
