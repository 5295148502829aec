"""lvsd and real keepalived 2.2.7 with VRRPv2 ``auth_type AH`` (IPsec-AH, HMAC-MD5-96).

Both run the same keepalived.conf instance (lvsd reads it with ``-f``, through the config
loader, as a user would). Each side must accept the other's AH packets — the ICV over the IP
header, the SPI and above all the sequence numbers, which both sides share one counter for and
must continue across every change of master — so neither may log or count a rejection. A wrong
``auth_pass`` must be rejected by both: keepalived logs its "invalid IPSEC HMAC-MD5 value",
lvsd counts ``auth_mismatch``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lvsd.lab.netns import Topology
from testlab import (
    _PATH,
    STANDALONE,
    KeepalivedNode,
    LvsdNode,
    NodeOpts,
    keepalived_conf,
    wait_for,
)

pytestmark = [pytest.mark.interop]

VIP = "192.0.2.100"
A, B = "192.0.2.1", "192.0.2.2"
# keepalived's AH complaints (vrrp.c vrrp_in_chk_ipsecah / vrrp_check_packet); "Syncing seq_num"
# is its normal reaction to a lower-priority advert, not a complaint
KA_AH_COMPLAINT = re.compile(r"IPSEC|AH header|already processed|auth", re.IGNORECASE)


class ConfLvsdNode(LvsdNode):
    """lvsd's VRRP reading the keepalived.conf text ``keepalived_conf`` writes for the opts."""

    def argv(self) -> list[str]:
        self.state_file = os.path.join(self.workdir, "state")
        conf = os.path.join(self.workdir, "lvsd.conf")
        with open(conf, "w") as fh:
            fh.write(keepalived_conf(self.host.name, self.opts))
        return [sys.executable, STANDALONE, "-f", conf,
                "--state-file", self.state_file]


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology("lt-vrah")
    try:
        t.add_host("a", f"{A}/24")
        t.add_host("b", f"{B}/24")
        yield t
    finally:
        t.close()


def opts(unicast: bool, me: str, peer: str, priority: int, password: str) -> NodeOpts:
    o = NodeOpts(priority=priority, advert_int=1.0, version=2, auth_pass=password,
                 auth_type="AH")
    if unicast:
        o.unicast_src = me
        o.unicast_peers = [peer]
    return o


def settled(master: Any, backup: Any) -> bool:
    return (master.state() == "MASTER" and backup.state() == "BACKUP"
            and master.has_vip(VIP) and not backup.has_vip(VIP))


def ka_complaints(ka: KeepalivedNode) -> list[str]:
    return [ln for ln in ka.log().splitlines()
            if (KA_AH_COMPLAINT.search(_PATH.sub("", ln)) and "Syncing seq_num" not in ln)
            or ln in ka.rejects()]


def lvsd_invalid(lv: LvsdNode) -> dict[str, int]:
    return dict(lv.status().get("counters", {}).get("invalid", {}))


def hold(master: Any, backup: Any, lv: LvsdNode, ka: KeepalivedNode) -> None:
    """Three more adverts: the pair stays as it is and nobody rejects anything."""
    time.sleep(3.2)
    assert settled(master, backup), (lv.log(), ka.log())
    assert ka_complaints(ka) == [], ka.log()
    assert lvsd_invalid(lv) == {}, lv.status()


@pytest.mark.parametrize("unicast", [False, True], ids=["multicast", "unicast"])
def test_ah_master_both_ways_sequence_continues(topo: Topology, unicast: bool) -> None:
    a, b = topo["a"], topo["b"]
    # Two nodes whose counters both start at 0 and that become master at the same instant
    # would reject each other's equal numbers for ever (keepalived's design, the reason it
    # refuses `state MASTER` with AH): keepalived is master before lvsd starts.
    ka = KeepalivedNode(b, opts(unicast, B, A, 100, "s3cret")).start()
    assert wait_for(lambda: ka.state() == "MASTER", 10), ka.log()
    lv = ConfLvsdNode(a, opts(unicast, A, B, 150, "s3cret")).start()
    # 1. lvsd (higher priority) learns keepalived's numbers as a backup, then pre-empts it
    # with higher ones: keepalived accepts lvsd's AH packets
    assert wait_for(lambda: settled(lv, ka), 15), (lv.log(), ka.log())
    hold(lv, ka, lv, ka)
    # 2. lvsd stops: its priority-0 advert (sealed, next sequence number) hands over
    lv.term()
    assert lv.wait_exit(10) == 0
    assert wait_for(lambda: ka.state() == "MASTER" and ka.has_vip(VIP), 10), ka.log()
    assert "Backup received priority 0 advertisement" in ka.log()
    # 3. lvsd restarts below keepalived: its counter starts at 0 and follows keepalived's
    lv.opts.priority = 50
    lv.start()
    assert wait_for(lambda: settled(ka, lv), 15), (lv.log(), ka.log())
    assert wait_for(lambda: lv.status().get("master_address") == B, 5), lv.status()
    hold(ka, lv, lv, ka)
    # 4. keepalived stops: lvsd (a backup all along) takes over on its priority 0
    ka.term()
    assert ka.wait_exit(10) is not None
    assert wait_for(lambda: lv.state() == "MASTER" and lv.has_vip(VIP), 10), lv.log()
    assert lv.status()["counters"]["priority_zero_received"] >= 1
    # 5. keepalived restarts above the running lvsd master: it learns lvsd's numbers while
    # backup and pre-empts with higher ones, which lvsd must accept
    ka.start()
    assert wait_for(lambda: settled(ka, lv), 15), (lv.log(), ka.log())
    hold(ka, lv, lv, ka)
    # 6. lvsd restarts above the running keepalived master and pre-empts it the same way
    lv.stop()
    lv.opts.priority = 150
    lv.start()
    assert wait_for(lambda: settled(lv, ka), 15), (lv.log(), ka.log())
    hold(lv, ka, lv, ka)


def test_ah_wrong_password_is_rejected_both_ways(topo: Topology) -> None:
    ka = KeepalivedNode(topo["b"], opts(False, B, A, 100, "kasecret")).start()
    lv = ConfLvsdNode(topo["a"], opts(False, A, B, 150, "lvsecret")).start()
    # neither accepts the other's packets: both end up master (the correct outcome)
    assert wait_for(lambda: lv.state() == "MASTER" and ka.state() == "MASTER", 15), (
        lv.log(), ka.log())
    # (keepalived as master restarts its advert timer on every packet it reads, even a
    # rejected one, so lvsd's once-a-second adverts make it send rarely)
    assert wait_for(lambda: lvsd_invalid(lv).get("auth_mismatch", 0) >= 1, 20), lv.status()
    assert wait_for(lambda: "invalid IPSEC HMAC-MD5 value" in ka.log(), 10), ka.log()
    time.sleep(2)
    assert lv.state() == "MASTER" and ka.state() == "MASTER"
    # nothing else went wrong: only the authentication fails
    assert set(lvsd_invalid(lv)) == {"auth_mismatch"}, lv.status()
