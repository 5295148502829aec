"""lvsd VRRP against real keepalived 2.2.7 on one bridge (VRRP-only keepalived).

keepalived must ACCEPT lvsd's adverts: its log may show no rejection (invalid checksum, TTL,
version, auth...) and it must transition as the RFC says when lvsd's priority or presence
changes. lvsd must accept keepalived's the same way (its invalid counters stay empty).
VRRPv2 runs at advert_int 1 s (its minimum), VRRPv3 at 0.1 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from lvsd.lab.netns import Host, Topology
from testlab import (
    KeepalivedNode,
    LvsdNode,
    NodeOpts,
    mac,
    neigh_mac,
    partition,
    reaches,
    wait_for,
)

pytestmark = [pytest.mark.interop]

VIP = "192.0.2.100"
A, B = "192.0.2.1", "192.0.2.2"


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology("lt-vrka")
    try:
        t.add_host("a", f"{A}/24")
        t.add_host("b", f"{B}/24")
        t.add_host("c", "192.0.2.50/24")
        yield t
    finally:
        t.close()


def opts(version: int, unicast: bool, me: str, peer: str, **kw: Any) -> NodeOpts:
    o = NodeOpts(advert_int=1.0 if version == 2 else 0.1, version=version, **kw)
    if unicast:
        o.unicast_src = me
        o.unicast_peers = [peer]
    return o


def settled(master: Any, backup: Any, vip: str = VIP) -> bool:
    return (master.state() == "MASTER" and backup.state() == "BACKUP"
            and master.has_vip(vip) and not backup.has_vip(vip))


def client_follows(client: Host, master: Any, vip: str = VIP) -> None:
    """The client reaches the VIP and its neighbour entry points at ``master``."""
    assert wait_for(lambda: neigh_mac(client, vip) == mac(master.host)
                    or neigh_mac(client, vip) is None, 10)
    assert wait_for(lambda: reaches(client, vip), 10), "client cannot reach the VIP"
    assert wait_for(lambda: neigh_mac(client, vip) == mac(master.host), 10), (
        "client's neighbour entry did not move to the master",
        client.run("ip", "neigh", check=False).stdout)


def no_rejects(ka: KeepalivedNode, lv: LvsdNode) -> None:
    assert ka.rejects() == [], ka.log()
    assert lv.status().get("counters", {}).get("invalid", {}) == {}, lv.status()


@pytest.mark.parametrize("version,unicast", [(2, False), (2, True), (3, False), (3, True)],
                         ids=["v2-multicast", "v2-unicast", "v3-multicast", "v3-unicast"])
def test_master_backup_both_ways_and_priority0_handover(topo: Topology, version: int,
                                                       unicast: bool) -> None:
    auth = {"auth_pass": "s3cret"} if version == 2 else {}  # v2 with PASS auth, matching
    c = topo["c"]
    ka = KeepalivedNode(topo["b"], opts(version, unicast, B, A, priority=100, **auth)).start()
    lv = LvsdNode(topo["a"], opts(version, unicast, A, B, priority=150, **auth)).start()
    # 1. lvsd master, keepalived backup (keepalived accepts lvsd's higher-priority adverts)
    assert wait_for(lambda: settled(lv, ka), 15), (lv.log(), ka.log())
    client_follows(c, lv)
    time.sleep(3 * (1.0 if version == 2 else 0.1))
    assert settled(lv, ka), "keepalived stopped accepting lvsd's adverts"
    # 2. lvsd stops gracefully: priority 0, keepalived takes over after Skew_Time
    lv.term()
    assert lv.wait_exit(10) == 0
    assert wait_for(lambda: ka.state() == "MASTER" and ka.has_vip(), 10), ka.log()
    assert "Backup received priority 0 advertisement" in ka.log()
    client_follows(c, ka)
    # 3. keepalived master, lvsd backup (lvsd accepts keepalived's adverts)
    lv.opts.priority = 50
    lv.start()
    assert wait_for(lambda: settled(ka, lv), 15), (lv.log(), ka.log())
    assert wait_for(lambda: lv.status().get("master_address") == B, 5), lv.status()
    time.sleep(3 * (1.0 if version == 2 else 0.1))
    assert settled(ka, lv)
    # 4. keepalived stops: its priority 0 makes lvsd take over
    ka.term()
    assert ka.wait_exit(10) is not None
    assert wait_for(lambda: lv.state() == "MASTER" and lv.has_vip(), 10), lv.log()
    assert lv.status()["counters"]["priority_zero_received"] >= 1
    client_follows(c, lv)
    no_rejects(ka, lv)


def test_auth_pass_mismatch_is_rejected_both_ways(topo: Topology) -> None:
    ka = KeepalivedNode(topo["b"], opts(2, False, B, A, priority=100,
                                        auth_pass="kasecret")).start()
    lv = LvsdNode(topo["a"], opts(2, False, A, B, priority=150, auth_pass="lvsecret")).start()
    # neither accepts the other: both end up master (split brain is the correct outcome)
    assert wait_for(lambda: lv.state() == "MASTER" and ka.state() == "MASTER", 15), (
        lv.log(), ka.log())
    assert wait_for(lambda: lv.status()["counters"]["invalid"].get("auth_mismatch", 0) > 0, 5)
    assert wait_for(lambda: ka.rejects() != [], 5), ka.log()
    time.sleep(2)
    assert lv.state() == "MASTER" and ka.state() == "MASTER"


@pytest.mark.parametrize("lvsd_higher", [True, False], ids=["lvsd-higher-addr",
                                                            "keepalived-higher-addr"])
def test_equal_priority_tie_break(topo: Topology, lvsd_higher: bool) -> None:
    """Both master (partitioned), then healed: the higher primary address stays master."""
    lv_host, ka_host = (topo["b"], topo["a"]) if lvsd_higher else (topo["a"], topo["b"])
    lv_ip, ka_ip = (B, A) if lvsd_higher else (A, B)
    ka = KeepalivedNode(ka_host, opts(3, False, ka_ip, lv_ip, priority=100)).start()
    lv = LvsdNode(lv_host, opts(3, False, lv_ip, ka_ip, priority=100)).start()
    assert wait_for(lambda: {lv.state(), ka.state()} == {"MASTER", "BACKUP"}, 15)
    partition(topo, topo["a"], True)
    assert wait_for(lambda: lv.state() == "MASTER" and ka.state() == "MASTER", 10)
    partition(topo, topo["a"], False)
    win, lose = (lv, ka) if lvsd_higher else (ka, lv)
    assert wait_for(lambda: settled(win, lose), 10), (lv.log(), ka.log())
    time.sleep(0.5)
    assert settled(win, lose)
    no_rejects(ka, lv)


def test_ipv6_v3_interop() -> None:
    vip6 = "fd00::100"
    with Topology("lt-vrka6") as t:
        t.add_host("a", "fd00::1/64")
        t.add_host("b", "fd00::2/64")
        c = t.add_host("c", "fd00::50/64")
        o: dict[str, Any] = dict(advert_int=0.1, version=3, vips=[f"{vip6}/64"])
        ka = KeepalivedNode(t["b"], NodeOpts(priority=100, **o)).start()
        lv = LvsdNode(t["a"], NodeOpts(priority=150, **o)).start()
        assert wait_for(lambda: settled(lv, ka, vip6), 15), (lv.log(), ka.log())
        client_follows(c, lv, vip6)
        lv.term()
        assert wait_for(lambda: ka.state() == "MASTER" and ka.has_vip(vip6), 10), ka.log()
        assert "Backup received priority 0 advertisement" in ka.log()
        lv.opts.priority = 50
        lv.start()
        assert wait_for(lambda: settled(ka, lv, vip6), 15), (lv.log(), ka.log())
        assert wait_for(lambda: str(lv.status().get("master_address")).startswith("fe80::"), 5)
        ka.term()
        assert wait_for(lambda: lv.state() == "MASTER" and lv.has_vip(vip6), 10), lv.log()
        client_follows(c, lv, vip6)
        no_rejects(ka, lv)
