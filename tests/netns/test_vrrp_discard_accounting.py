"""Every discarded VRRP packet is counted by reason in /status and /metrics (issue 16 item 8).

Topology: director d1 (192.0.2.1, ``lvsd run --vrrp-only``, VRID 51, multicast, priority 100,
which becomes MASTER alone) and "wire" (192.0.2.50), which sends with raw sockets:

* valid adverts for VRID 52 (another router on the link) and garbage whose VRID byte is not
  51: reason ``vrid`` (documented, and before the fix never incremented);
* 1-byte runts (no VRID at all): ``truncated``;
* an advert for VRID 51 sent unicast to 192.0.2.1 while the instance runs multicast:
  ``destination``;

and a process inside d1 sends VRID 51 adverts from d1's own address to the group with
multicast loopback on, as another program on the director (or a reflecting switch) would:
``own_address``. Counts are checked with lower bounds (what was sent), never timing.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

import pytest

from lvsd.lab.netns import Topology
from testlab import DaemonNode, NodeOpts, wait_for
from wirelab import HTTP_GET, wire_topology

pytestmark = pytest.mark.netns

N = 7  # packets of each kind

SEND = r"""
import socket, sys
from ipaddress import IPv4Address
from lvsd.vrrp import codec
src, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def advert(vrid):
    adv = codec.Advert(version=2, vrid=vrid, priority=50, advert_int=1,
                       addresses=(IPv4Address("192.0.2.100"),))
    return codec.encode(adv, src, "224.0.0.18")
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if kind == "own" else 0)
s.bind((src, 0))
for i in range(n):
    if kind == "vrid":
        pkts, dst = [advert(52), bytes([0x21, 7]) + bytes(range(30))], "224.0.0.18"
    elif kind == "runt":
        pkts, dst = [b"\x21"], "224.0.0.18"
    elif kind == "unicast":
        pkts, dst = [advert(51)], "192.0.2.1"
    else:  # own: VRID 51 from our own address, looped back
        pkts, dst = [advert(51)], "224.0.0.18"
    for p in pkts:
        s.sendto(p, (dst, 0))
"""

@pytest.fixture
def topo() -> Iterator[Topology]:
    with wire_topology("lt-vrdisc") as t:
        yield t


def _metrics(node: DaemonNode) -> dict[str, float]:
    p = node.host.run(sys.executable, "-c", HTTP_GET, node.STATUS, "/metrics", check=False,
                      timeout=10)
    out = {}
    for m in re.finditer(r'^lvsd_vrrp_invalid_packets_total\{instance="VI_1",reason="(\w+)"\} '
                         r'(\S+)$', p.stdout, re.MULTILINE):
        out[m.group(1)] = float(m.group(2))
    return out


def test_discarded_packets_are_counted_by_reason(topo: Topology) -> None:
    node = DaemonNode(topo["d1"], NodeOpts(priority=100))
    try:
        node.start()
        assert wait_for(lambda: node.state() == "MASTER", 20), node.log()
        for host, src, kind in (("wire", "192.0.2.50", "vrid"), ("wire", "192.0.2.50", "runt"),
                                ("wire", "192.0.2.50", "unicast"), ("d1", "192.0.2.1", "own")):
            topo[host].run(sys.executable, "-c", SEND, src, kind, str(N))
        want = {"vrid": 2 * N, "truncated": N, "destination": N, "own_address": N}

        def counted() -> dict[str, int]:
            got: dict[str, int] = node.status().get("invalid_packets", {})
            return got if all(got.get(k, 0) >= n for k, n in want.items()) else {}

        got = wait_for(counted, 15)
        assert got, f"/status invalid_packets: {node.status().get('invalid_packets')}"
        print("invalid_packets:", json.dumps(got, sort_keys=True))
        metrics = wait_for(lambda: _metrics(node), 10)
        for reason, n in want.items():
            assert metrics.get(reason, 0) >= n, (reason, metrics)
        assert node.state() == "MASTER"  # none of it changed anything
    finally:
        node.stop()
