"""Real client traffic through the nftables data plane, in network namespaces.

client (198.51.100.2) -> director (VIP 198.51.100.10, nftables NAT, routes 10.0.0.0/24)
-> rs1..rs3 (10.0.0.11-13, default route via the director) running HTTP servers that answer
their own name. The data plane runs inside the director namespace through
``nftlab/director.py`` (``ip netns exec``), a fresh process per change, so every step is also a
restart that adopts the table. Request loops are bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from lvsd.lab.netns import Host, Topology, have_netns

pytestmark = pytest.mark.netns

HERE = Path(__file__).parent / "nftlab"
PY = sys.executable
VIP, PORT = "198.51.100.10", 80
VIP6 = "fd00:1::10"
RS = {"rs1": "10.0.0.11", "rs2": "10.0.0.12", "rs3": "10.0.0.13"}
RS6 = {"rs1": "fd00:2::11", "rs2": "fd00:2::12", "rs3": "fd00:2::13"}
TABLE = "lvsdt"


class Lab:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.director: Host = topo["director"]
        self.clients: dict[str, subprocess.Popen[str]] = {}

    def program(self, weights: dict[str, int], sched: str = "wrr",
                v6: bool = False) -> dict[str, Any]:
        vip, addrs = (VIP6, RS6) if v6 else (VIP, RS)
        req = {"table": TABLE, "services": [{
            "addr": vip, "port": PORT, "proto": 6, "sched": sched,
            "dests": [[addrs[n], 8080, w] for n, w in weights.items()]}]}
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
        proc = subprocess.run(self.director.cmd(PY, str(HERE / "director.py")),
                              input=json.dumps(req), capture_output=True, text=True,
                              timeout=60, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        out: dict[str, Any] = json.loads(proc.stdout)
        assert out["failed"] == [], out
        return out

    def ask(self, line: str, vip: str = VIP) -> dict[str, Any]:
        if vip not in self.clients:
            self.clients[vip] = self.topo["client"].popen(
                [PY, str(HERE / "client.py"), vip, str(PORT)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True)
        proc = self.clients[vip]
        assert proc.stdin and proc.stdout
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        reply: dict[str, Any] = json.loads(proc.stdout.readline())
        assert "error" not in reply, reply
        return reply


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require(have_netns())  # module scope: runs before the per-test capability gate
    topo = Topology(tag=f"lt-nft{os.getpid() % 10000}")
    try:
        c = topo.add_host("client", "198.51.100.2/24", "fd00:1::2/64")
        c.run("sysctl", "-qw", "net.ipv6.conf.all.accept_redirects=0",
              "net.ipv6.conf.eth0.accept_redirects=0")
        d = topo.add_host("director", "198.51.100.1/24", "10.0.0.1/24", "fd00:1::1/64",
                          "fd00:2::1/64", forwarding=True)
        d.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        d.add_addr(f"{VIP}/32")
        d.add_addr(f"{VIP6}/128")
        for name, addr in RS.items():
            h = topo.add_host(name, f"{addr}/24", f"{RS6[name]}/64")
            h.run("ip", "route", "add", "default", "via", "10.0.0.1")
            h.run("ip", "-6", "route", "add", "default", "via", "fd00:2::1")
            # both subnets share one L2: the director sends ICMPv6 redirects (IPv6 has no
            # send_redirects switch) and a server obeying one replies around the NAT.
            h.run("sysctl", "-qw", "net.ipv6.conf.all.accept_redirects=0",
                  "net.ipv6.conf.eth0.accept_redirects=0")
            h.popen([PY, str(HERE / "rs.py"), name, "8080"])
        for name, addr in RS.items():  # servers up? (bounded)
            d.run(PY, str(HERE / "wait.py"), addr, "8080")
            d.run(PY, str(HERE / "wait.py"), RS6[name], "8080")
        yield Lab(topo)
    finally:
        topo.close()


def test_weighted_round_robin_distribution(lab: Lab) -> None:
    out = lab.program({"rs1": 3, "rs2": 1, "rs3": 2})
    assert out["ops"][0].startswith("add service TCP 198.51.100.10:80")
    assert out["transactions"] == 1  # the whole pool in ONE nft transaction
    r = lab.ask("burst 60")
    # numgen inc walks the intervals exactly: 3:1:2 over 60 new connections
    assert r == {"counts": {"rs1": 30, "rs2": 10, "rs3": 20}, "errors": 0}


def test_failed_server_gets_no_new_connections_established_continue(lab: Lab) -> None:
    lab.program({"rs1": 1, "rs2": 1, "rs3": 1})
    held = lab.ask("hold")["server"]
    others = [n for n in RS if n != held]
    # the held server fails with inhibit_on_failure: weight 0
    out = lab.program({n: (0 if n == held else 1) for n in RS})
    assert out["ops"] == [f"edit dest {RS[held]}:8080 in TCP 198.51.100.10:80 weight 0 masq"]
    r = lab.ask("burst 20")
    assert r["errors"] == 0 and set(r["counts"]) == set(others)
    assert lab.ask("again")["server"] == held  # established connection keeps its backend
    # without inhibit: removed from the pool
    out = lab.program({n: 1 for n in others})
    assert out["ops"] == [f"delete dest {RS[held]}:8080 from TCP 198.51.100.10:80"]
    assert set(out["dump"]["TCP 198.51.100.10:80"]) == {f"{RS[n]}:8080" for n in others}
    r = lab.ask("burst 20")
    assert r["errors"] == 0 and set(r["counts"]) == set(others)
    assert lab.ask("again")["server"] == held
    # recovery: back at its weight, gets new connections again
    out = lab.program({n: 1 for n in RS})
    assert out["ops"] == [f"add dest {RS[held]}:8080 to TCP 198.51.100.10:80 weight 1 masq"]
    r = lab.ask("burst 30")
    assert r == {"counts": {n: 10 for n in RS}, "errors": 0}


def test_restart_adopts_and_hand_drift_is_repaired(lab: Lab) -> None:
    lab.program({"rs1": 1, "rs2": 1})
    out = lab.program({"rs1": 1, "rs2": 1})
    assert out["ops"] == [] and out["transactions"] == 0  # restart: nothing moved
    # someone empties the dispatch map by hand: traffic would break
    dmap = lab.director.run("nft", "list", "table", "inet", TABLE).stdout
    name = next(w for line in dmap.splitlines() for w in line.split() if w.startswith("d_"))
    lab.director.run("nft", "flush", "map", "inet", TABLE, name)
    out = lab.program({"rs1": 1, "rs2": 1})
    assert out["ops"] == ["edit service TCP 198.51.100.10:80 sched wrr"]
    r = lab.ask("burst 10")
    assert r == {"counts": {"rs1": 5, "rs2": 5}, "errors": 0}


def test_source_hashing_sticks_to_one_server(lab: Lab) -> None:
    lab.program({"rs1": 1, "rs2": 1, "rs3": 1}, sched="sh")
    r = lab.ask("burst 15")
    assert r["errors"] == 0 and len(r["counts"]) == 1 and sum(r["counts"].values()) == 15


def test_ipv6_service(lab: Lab) -> None:
    out = lab.program({"rs1": 1, "rs2": 1, "rs3": 0}, v6=True)
    assert out["ops"][0] == "add service TCP [fd00:1::10]:80 sched wrr"
    r = lab.ask("burst 10", vip=VIP6)
    assert r == {"counts": {"rs1": 5, "rs2": 5}, "errors": 0}
