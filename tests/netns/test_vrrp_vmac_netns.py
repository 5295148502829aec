"""use_vmac / vmac_xmit_base for real: two lvsd (``vrrp_standalone.py -f``, tests/support) in
namespaces on one bridge, a client, and a raw AF_PACKET sniffer in the client's namespace; then real
keepalived 2.2.7 with use_vmac as the peer.

What is checked: the macvlan (name, MAC 00:00:5e:00:01:VRID, mode private, up in MASTER and
in BACKUP), the sysctls keepalived sets and puts back, the Ethernet source of adverts (the
virtual MAC; the base's with vmac_xmit_base) and of GARPs, the VIP on the vmac, a failover
that leaves the client's neighbour entry unchanged, and the vmac gone after stop.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import testlab
from lvsd.lab.netns import Host, Topology
from testlab import (
    KeepalivedNode,
    LvsdNode,
    NodeOpts,
    mac,
    neigh_mac,
    reaches,
    wait_for,
)

pytestmark = [pytest.mark.netns]

VRID = 51
VMAC = "00:00:5e:00:01:33"  # RFC 5798 §7.3 for VRID 51
VIP = "192.0.2.100"

# Every frame carrying VRRP (IP protocol 112) or ARP, as JSON lines, until killed.
SNIFFER = r"""
import json, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
out = open(sys.argv[1], "w", buffering=1)
print("ready", flush=True)
while True:
    f = s.recv(2048)
    src = f[6:12].hex(":")
    typ = struct.unpack("!H", f[12:14])[0]
    if typ == 0x0800 and f[23] == 112:
        ihl = (f[14] & 15) * 4
        out.write(json.dumps({"kind": "vrrp", "src": src, "ip": socket.inet_ntoa(f[26:30]),
                              "vrid": f[14 + ihl + 1], "prio": f[14 + ihl + 2]}) + "\n")
    elif typ == 0x86DD and f[20] == 112:
        out.write(json.dumps({"kind": "vrrp6", "src": src,
                              "ip": socket.inet_ntop(socket.AF_INET6, f[22:38]),
                              "vrid": f[55], "prio": f[56]}) + "\n")
    elif typ == 0x0806:
        out.write(json.dumps({"kind": "arp", "src": src, "op": struct.unpack("!H", f[20:22])[0],
                              "sha": f[22:28].hex(":"), "spa": socket.inet_ntoa(f[28:32]),
                              "tpa": socket.inet_ntoa(f[38:42])}) + "\n")
"""


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology("lt-vmac")
    try:
        for name, addr in (("a", "192.0.2.1/24"), ("b", "192.0.2.2/24")):
            h = t.add_host(name, addr)
            # The operator's part (keepalived doc/NOTE_vrrp_vmac.txt: "You may also need to
            # tweak your physical interfaces ... well known ARP issues"; keepalived does not set
            # it): without it the director's own ARP requests for the client leave the base
            # with the VIP as sender address and the base's MAC, and the client's entry for
            # the VIP follows them, with keepalived as with lvsd.
            h.run("sysctl", "-qw", "net.ipv4.conf.eth0.arp_announce=2")
        t.add_host("c", "192.0.2.50/24")
        yield t
    finally:
        t.close()


class Sniffer:
    def __init__(self, host: Host, path: Path) -> None:
        self.path = path
        self.proc = host.popen([sys.executable, "-c", SNIFFER, str(path)],
                               stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def frames(self, kind: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for ln in lines:
            try:
                rec = json.loads(ln)
            except ValueError:
                continue  # a line being written
            if kind is None or rec["kind"] == kind:
                out.append(rec)
        return out

    def mark(self) -> int:
        return len(self.frames())

    def since(self, n: int, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.frames()[n:] if r["kind"] == kind]


def conf(priority: int, *, inst: str = "", glob: str = "") -> str:
    return f"""
global_defs {{
  router_id lvsd
  vrrp_garp_master_delay 0
  vrrp_garp_master_repeat 2
{glob}
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id {VRID}
  priority {priority}
  advert_int 0.1
  version 3
{inst}
  virtual_ipaddress {{
    {VIP}/24
  }}
}}
"""


def lvsd(host: Host, tmp: Path, text: str) -> LvsdNode:
    d = tmp / host.name
    d.mkdir(exist_ok=True)
    (d / "k.conf").write_text(text)
    return LvsdNode(host, NodeOpts(extra=["-f", str(d / "k.conf"), "-v"]), workdir=str(d))


def link(host: Host, dev: str) -> str | None:
    res = host.run("ip", "-d", "-o", "link", "show", "dev", dev, check=False)
    return res.stdout if res.returncode == 0 else None


def sysctl(host: Host, key: str) -> str:
    """``key`` as a /proc/sys path ("net/ipv4/conf/vrrp.51/arp_ignore")."""
    return host.run("cat", f"/proc/sys/{key}").stdout.strip()


def addrs(host: Host, dev: str) -> list[str]:
    return host.addresses(dev) if link(host, dev) else []


def test_vmac_pair_adverts_vip_failover_and_cleanup(topo: Topology, tmp_path: Path) -> None:
    a, b, c = topo["a"], topo["b"], topo["c"]
    # keepalived's rp_filter dance (vrrp_if_config.c clear_rp_filter) needs all.rp_filter > 0
    a.run("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2")
    eth0_rp = sysctl(a, "net/ipv4/conf/eth0/rp_filter")
    sniff = Sniffer(c, tmp_path / "frames")
    nb = lvsd(b, tmp_path, conf(100, inst="  use_vmac")).start()
    na = lvsd(a, tmp_path, conf(150, inst="  use_vmac")).start()
    assert wait_for(lambda: na.state() == "MASTER" and nb.state() == "BACKUP", 15), \
        na.log() + nb.log()

    # the macvlan on both directors: name, MAC, mode, up (the backup's too, no address)
    for h in (a, b):
        text = link(h, "vrrp.51")
        assert text is not None, h.name
        assert f"link/ether {VMAC}" in text and "macvlan mode private" in text, text
        assert re.search(r"<[^>]*\bUP\b", text), text
        assert "vrrp.51@eth0" in text, text
    assert wait_for(lambda: f"{VIP}/24" in addrs(a, "vrrp.51"), 5), addrs(a, "vrrp.51")
    assert f"{VIP}/24" not in a.addresses("eth0")
    assert not [x for x in addrs(b, "vrrp.51") if x.startswith(VIP)]
    # the sysctls of vrrp_if_config.c (vmac and base) and the rp_filter dance
    for key, want in (("vrrp.51/arp_ignore", "1"), ("vrrp.51/accept_local", "1"),
                      ("vrrp.51/rp_filter", "0"), ("vrrp.51/promote_secondaries", "1"),
                      ("eth0/arp_ignore", "1"), ("eth0/arp_filter", "1"),
                      ("all/rp_filter", "0"), ("default/rp_filter", "2"),
                      ("eth0/rp_filter", "2")):
        assert sysctl(a, f"net/ipv4/conf/{key}") == want, key
    assert sysctl(a, "net/ipv6/conf/vrrp.51/disable_ipv6") == "1"  # IPv4 instance
    st = na.status()
    assert st["vmac"] == {"name": "vrrp.51", "mac": VMAC, "xmit_base": False,
                          "io_interface": "vrrp.51"}, st
    assert st["transport"]["source"] == "192.0.2.1", st

    # adverts leave with the virtual MAC, from the base's address
    n = sniff.mark()
    assert wait_for(lambda: len(sniff.since(n, "vrrp")) >= 5, 5), sniff.frames()
    adverts = sniff.since(n, "vrrp")
    assert {(r["src"], r["ip"], r["vrid"]) for r in adverts} == {(VMAC, "192.0.2.1", VRID)}
    # GARPs carried the virtual MAC (Ethernet source and sender hardware address)
    garps = [r for r in sniff.frames("arp") if r["spa"] == VIP and r["tpa"] == VIP]
    assert garps and all(r["src"] == VMAC and r["sha"] == VMAC for r in garps), garps
    # the client resolves the VIP to the virtual MAC, answered by the vmac only
    assert wait_for(lambda: reaches(c), 5)
    assert neigh_mac(c) == VMAC
    c.run("ip", "neigh", "flush", "dev", "eth0")
    assert reaches(c) and neigh_mac(c) == VMAC
    # the backup's adverts would be seen; it received ours on its vmac
    assert nb.status()["counters"]["adverts_received"] > 0

    # failover: the client's entry does not change, the VIP moves to b's vmac
    n = sniff.mark()
    na.stop()
    assert wait_for(lambda: nb.state() == "MASTER", 10), nb.log()
    assert wait_for(lambda: f"{VIP}/24" in addrs(b, "vrrp.51"), 5)
    assert wait_for(lambda: reaches(c), 5)
    assert neigh_mac(c) == VMAC
    frames = sniff.since(n, "vrrp")
    assert any(r["prio"] == 0 and r["ip"] == "192.0.2.1" and r["src"] == VMAC for r in frames)
    assert wait_for(lambda: any(r["ip"] == "192.0.2.2" for r in sniff.since(n, "vrrp")), 5)
    assert {r["src"] for r in sniff.since(n, "vrrp")} == {VMAC}
    garps = [r for r in sniff.since(n, "arp") if r["spa"] == VIP]
    assert garps and all(r["src"] == VMAC and r["sha"] == VMAC for r in garps), garps

    # a stopped: its vmac is gone and the sysctls are back
    assert link(a, "vrrp.51") is None, link(a, "vrrp.51")
    for key, want in (("eth0/arp_ignore", "0"), ("eth0/arp_filter", "0"),
                      ("all/rp_filter", "2"), ("eth0/rp_filter", eth0_rp)):
        assert sysctl(a, f"net/ipv4/conf/{key}") == want, key
    nb.stop()
    assert link(b, "vrrp.51") is None


def test_vmac_xmit_base_named_vmac_and_mac(topo: Topology, tmp_path: Path) -> None:
    """vmac_xmit_base: adverts from the base interface's MAC, the VIP still on the vmac and its
    GARP from the vmac; a configured name and MAC."""
    a, b, c = topo["a"], topo["b"], topo["c"]
    sniff = Sniffer(c, tmp_path / "frames")
    inst = "  use_vmac vmx0 02:aa:bb:cc:dd\n  vmac_xmit_base"
    nb = lvsd(b, tmp_path, conf(100, inst=inst)).start()
    na = lvsd(a, tmp_path, conf(150, inst=inst)).start()
    assert wait_for(lambda: na.state() == "MASTER" and nb.state() == "BACKUP", 15), \
        na.log() + nb.log()
    want_mac = "02:aa:bb:cc:dd:33"  # five octets given: the sixth is the VRID
    text = link(a, "vmx0")
    assert text is not None and f"link/ether {want_mac}" in text, text
    assert wait_for(lambda: f"{VIP}/24" in addrs(a, "vmx0"), 5)
    n = sniff.mark()
    assert wait_for(lambda: len(sniff.since(n, "vrrp")) >= 3, 5), sniff.frames()
    # a's adverts (the sniffer's file may still hold b's from before it settled as backup)
    assert {r["src"] for r in sniff.since(n, "vrrp") if r["ip"] == "192.0.2.1"} == {mac(a)}
    assert nb.status()["counters"]["adverts_received"] > 0  # b receives on its base
    garps = [r for r in sniff.frames("arp") if r["spa"] == VIP]
    assert garps and {r["sha"] for r in garps} == {want_mac}, garps
    assert wait_for(lambda: reaches(c), 5) and neigh_mac(c) == want_mac
    na.stop()
    nb.stop()
    assert link(a, "vmx0") is None and link(b, "vmx0") is None


def test_vmac_ipv6(topo: Topology, tmp_path: Path) -> None:
    """An IPv6 instance: MAC 00:00:5e:00:02:VRID, the base's link-local added to the vmac (no
    EUI-64 of the virtual MAC: addr_gen_mode none), adverts from it with the virtual MAC."""
    a, b, c = topo["a"], topo["b"], topo["c"]
    sniff = Sniffer(c, tmp_path / "frames")
    text = conf(150, inst="  use_vmac").replace(f"{VIP}/24", "fd00::100/64")
    nb = lvsd(b, tmp_path, text.replace("priority 150", "priority 100")).start()
    na = lvsd(a, tmp_path, text).start()
    assert wait_for(lambda: na.state() == "MASTER" and nb.state() == "BACKUP", 15), \
        na.log() + nb.log()
    vmac6 = "00:00:5e:00:02:33"
    lnk = link(a, "vrrp.51")
    assert lnk is not None and f"link/ether {vmac6}" in lnk and "addrgenmode none" in lnk, lnk
    base_ll = next(x for x in a.addresses("eth0") if x.startswith("fe80:"))
    assert wait_for(lambda: "fd00::100/64" in addrs(a, "vrrp.51"), 5)
    ll = [x for x in addrs(a, "vrrp.51") if x.startswith("fe80:")]
    assert ll == [base_ll], (ll, base_ll)
    assert sysctl(a, "net/ipv6/conf/vrrp.51/disable_ipv6") == "0"
    n = sniff.mark()
    assert wait_for(lambda: len(sniff.since(n, "vrrp6")) >= 3, 5), sniff.frames()
    assert {(r["src"], r["ip"]) for r in sniff.since(n, "vrrp6")} == {
        (vmac6, base_ll.split("/")[0])}
    assert nb.status()["counters"]["adverts_received"] > 0
    na.stop()
    assert wait_for(lambda: nb.state() == "MASTER", 10), nb.log()
    assert link(a, "vrrp.51") is None
    nb.stop()


KA_CONF = """
global_defs {{
  router_id ka
  vrrp_garp_master_delay 0
  vrrp_garp_master_repeat 2
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id {vrid}
  priority {prio}
  advert_int 0.1
  version 3
  use_vmac
  virtual_ipaddress {{
    {vip}/24
  }}
}}
"""


@pytest.mark.interop
def test_vmac_interop_with_keepalived(topo: Topology, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """keepalived 2.2.7 with use_vmac as the peer, both directions: each hears the other on
    its vmac (the advert's source MAC is the receiver's own vmac MAC: macvlan private mode's
    reflection path), the VIP moves, the client's neighbour entry stays the virtual MAC."""
    a, b, c = topo["a"], topo["b"], topo["c"]
    monkeypatch.setattr(testlab, "keepalived_conf", lambda name, o: KA_CONF.format(
        vrid=VRID, prio=o.priority, vip=VIP))
    sniff = Sniffer(c, tmp_path / "frames")
    kb = KeepalivedNode(b, NodeOpts(priority=100)).start()
    assert wait_for(lambda: kb.state() == "MASTER", 10), kb.log()
    kb_link = link(b, "vrrp.51")
    assert kb_link is not None and f"link/ether {VMAC}" in kb_link, kb_link
    assert wait_for(lambda: reaches(c), 5) and neigh_mac(c) == VMAC
    # lvsd with a higher priority preempts; keepalived hears it and backs off
    na = lvsd(a, tmp_path, conf(150, inst="  use_vmac")).start()
    assert wait_for(lambda: na.state() == "MASTER", 10), na.log()
    assert wait_for(lambda: kb.state() == "BACKUP", 10), kb.log()
    assert wait_for(lambda: f"{VIP}/24" in addrs(a, "vrrp.51"), 5)
    assert wait_for(lambda: not [x for x in addrs(b, "vrrp.51") if x.startswith(VIP)], 5)
    assert wait_for(lambda: reaches(c), 5) and neigh_mac(c) == VMAC
    n = sniff.mark()
    assert wait_for(lambda: len(sniff.since(n, "vrrp")) >= 5, 5)
    assert {(r["src"], r["ip"]) for r in sniff.since(n, "vrrp")} == {(VMAC, "192.0.2.1")}
    assert kb.rejects() == [], kb.rejects()
    # lvsd stops: keepalived takes over from lvsd's priority 0, same MAC for the client
    na.stop()
    assert wait_for(lambda: kb.state() == "MASTER", 10), kb.log()
    assert link(a, "vrrp.51") is None
    assert wait_for(lambda: reaches(c), 5) and neigh_mac(c) == VMAC
    # lvsd as the backup hears keepalived (received on its vmac) and stays BACKUP
    nb = lvsd(a, tmp_path, conf(50, inst="  use_vmac")).start()
    assert wait_for(lambda: nb.status().get("counters", {}).get("adverts_received", 0) > 3, 5)
    assert nb.state() == "BACKUP" and kb.state() == "MASTER"
    assert link(a, "vrrp.51") is not None  # the backup's vmac exists, without the VIP
    assert not [x for x in addrs(a, "vrrp.51") if x.startswith(VIP)]
    nb.stop()
    kb.stop()
    assert wait_for(lambda: link(b, "vrrp.51") is None, 5)


PARSER_CONF = """\
vrrp_instance A {
  interface eth0
  virtual_router_id 3
  use_vmac
  virtual_ipaddress { 192.0.2.100/24 }
}
vrrp_instance B {
  interface eth1
  virtual_router_id 3
  use_vmac 02:11:22:33:44 bad/name
  vmac_xmit_base
  virtual_ipaddress { 192.0.2.101/24 }
}
vrrp_instance C {
  interface eth1
  virtual_router_id 4
  use_vmac vrrp.3 01:00:00:00:00:01
  unicast_peer { 192.0.2.9 }
  virtual_ipaddress { 192.0.2.102/24 }
}
vrrp_instance D {
  interface eth1
  virtual_router_id 5
  vmac_xmit_base
  virtual_ipaddress { 192.0.2.103/24 }
}
vrrp_instance E {
  interface eth0
  virtual_router_id 6
  use_vmac 00:00:5e:00:01:06 abc
  use_vmac def 02:00:00:00:00:01 02:00:00:00:00:02
  virtual_ipaddress { 192.0.2.104/24 }
}
vrrp_instance F {
  interface eth0
  virtual_router_id 7
  use_vmac vrrp.3
  virtual_ipaddress { 192.0.2.105/24 }
}
"""


@pytest.mark.interop
def test_parser_messages_match_keepalived(topo: Topology, tmp_path: Path) -> None:
    """``keepalived -t`` and lvsd say the same about use_vmac / vmac_xmit_base, at the same
    lines (keepalived has both interfaces: a's eth0 and a veth eth1)."""
    from lvsd.config.loader import load

    a = topo["a"]
    a.run("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth2")
    a.run("ip", "link", "set", "eth1", "up")
    path = tmp_path / "keepalived.conf"
    path.write_text(PARSER_CONF)
    res = a.run("keepalived", "-t", "-l", "-f", str(path), check=False)
    said = set()
    for ln in (res.stdout + res.stderr).splitlines():
        m = re.match(r"\(.*: Line (\d+)\) (.*)$", ln)
        said.add((int(m.group(1)), m.group(2)) if m else (0, ln.strip()))
    ours = {(d.pos.line if d.pos else 0, d.message) for d in load(path).diagnostics
            if d.severity.name != "WARNING"}
    assert len(ours) == 7, ours
    assert ours <= said, (ours - said, said)


STATUS = "127.0.0.1:9341"
STATUS_GET = r"""
import sys, urllib.request
with urllib.request.urlopen("http://%s/status" % sys.argv[1], timeout=3) as r:
    sys.stdout.write(r.read().decode())
"""


def ifindex(host: Host, dev: str) -> int | None:
    text = link(host, dev)
    return int(text.split(":", 1)[0]) if text else None


def test_daemon_reload_keeps_adds_and_removes_the_vmac(topo: Topology, tmp_path: Path) -> None:
    """``lvsd run``: a reload that keeps use_vmac keeps the interface (same ifindex, VIP
    still on it); one that drops it deletes the vmac and the VIP moves to the base; adding it
    back creates it; stop deletes it."""
    a = topo["a"]
    path = tmp_path / "k.conf"
    log = tmp_path / "lvsd.log"

    def write(priority: int, inst: str) -> None:
        path.write_text(conf(priority, inst=inst))

    def generation() -> int:
        res = a.run(sys.executable, "-c", STATUS_GET, STATUS, check=False, timeout=10)
        if res.returncode != 0:
            return -1
        return int(json.loads(res.stdout)["config"]["generation"])

    def reload() -> None:
        gen = generation()
        proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: generation() == gen + 1, 15), log.read_text()[-3000:]

    write(150, "  use_vmac")
    with open(log, "w") as out:
        proc = a.popen([sys.executable, "-m", "lvsd.cli", "run", "-f", str(path), "--vrrp-only",
                        "--dataplane", "memory", "--status-listen", STATUS,
                        "--stop-timeout", "5", "--pid-file", str(tmp_path / "lvsd.pid"),
                        "--dump-dir", str(tmp_path)], stdout=out, stderr=subprocess.STDOUT)
    assert wait_for(lambda: f"{VIP}/24" in addrs(a, "vrrp.51"), 20), log.read_text()
    first = ifindex(a, "vrrp.51")
    write(160, "  use_vmac")  # priority only: the instance and its vmac are kept
    reload()
    assert ifindex(a, "vrrp.51") == first
    assert f"{VIP}/24" in addrs(a, "vrrp.51")
    write(160, "")  # use_vmac gone: vmac deleted, the VIP on eth0
    reload()
    assert wait_for(lambda: link(a, "vrrp.51") is None, 10), log.read_text()[-3000:]
    assert wait_for(lambda: f"{VIP}/24" in a.addresses("eth0"), 10), log.read_text()[-3000:]
    write(160, "  use_vmac\n  vmac_xmit_base")  # back, sending on the base
    reload()
    assert wait_for(lambda: f"{VIP}/24" in addrs(a, "vrrp.51"), 10), log.read_text()[-3000:]
    assert f"{VIP}/24" not in a.addresses("eth0")
    proc.terminate()
    assert proc.wait(15) == 0, log.read_text()[-3000:]
    assert link(a, "vrrp.51") is None
    assert "not supported by lvsd" not in log.read_text()


def test_existing_vmac_updated_adopted_or_replaced(topo: Topology, tmp_path: Path) -> None:
    """vrrp_vmac.c netlink_link_add_vmac on what it finds: a macvlan of that name with the
    wrong MAC/mode is updated, one on another base is replaced, a right one (left by a killed
    director) is adopted; each is deleted on stop."""
    a = topo["a"]
    a.run("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth2")
    text = conf(150, inst="  use_vmac")
    for setup, says in (
            (["link", "eth0", "address", "02:00:00:00:00:99", "type", "macvlan", "mode",
              "bridge"], "Update old VMAC interface vrrp.51 due to wrong MAC/mode"),
            (["link", "eth1", "address", VMAC, "type", "macvlan", "mode", "private"],
             "Removing old VMAC interface vrrp.51 due to conflicting interface"),
            (["link", "eth0", "address", VMAC, "type", "macvlan", "mode", "private"], None)):
        a.run("ip", "link", "add", "name", "vrrp.51", *setup)
        before = ifindex(a, "vrrp.51")
        na = lvsd(a, tmp_path, text).start()
        assert wait_for(lambda n=na: n.state() == "MASTER", 10), na.log()
        lnk = link(a, "vrrp.51")
        assert lnk is not None and f"link/ether {VMAC}" in lnk, lnk
        assert "macvlan mode private" in lnk and "vrrp.51@eth0" in lnk, lnk
        assert wait_for(lambda: f"{VIP}/24" in addrs(a, "vrrp.51"), 5)
        if says is not None:
            assert says in na.log(), na.log()
        else:  # adopted: the same interface, not created again
            assert ifindex(a, "vrrp.51") == before
            assert "Success creating" not in na.log(), na.log()
        na.stop()
        assert link(a, "vrrp.51") is None, setup


def test_dynamic_interfaces_base_goes_and_comes_back(topo: Topology, tmp_path: Path) -> None:
    """dynamic_interfaces: no base, no vmac (FAULT); the base appears: the vmac is created
    on it; the base is deleted (the kernel deletes the macvlan with it): FAULT; it comes
    back: the vmac is created again; stop removes it."""
    a = topo["a"]

    def base(up: bool) -> None:
        if up:
            a.run("ip", "link", "add", "dyn0", "type", "veth", "peer", "name", "dyn1")
            a.run("ip", "addr", "add", "198.51.100.1/24", "dev", "dyn0")
            a.run("ip", "link", "set", "dyn1", "up")
            a.run("ip", "link", "set", "dyn0", "up")
        else:
            a.run("ip", "link", "del", "dyn0")

    text = conf(150, inst="  use_vmac", glob="  dynamic_interfaces").replace(
        "interface eth0", "interface dyn0")
    na = lvsd(a, tmp_path, text).start()
    assert wait_for(lambda: na.state() == "FAULT", 5), na.log()
    assert link(a, "vrrp.51") is None
    for _ in range(2):
        base(True)
        assert wait_for(lambda: na.state() == "MASTER", 10), na.log()
        lnk = link(a, "vrrp.51")
        assert lnk is not None and "vrrp.51@dyn0" in lnk and f"link/ether {VMAC}" in lnk, lnk
        assert wait_for(lambda: f"{VIP}/24" in addrs(a, "vrrp.51"), 5), na.log()
        assert sysctl(a, "net/ipv4/conf/vrrp.51/rp_filter") == "0"
        assert sysctl(a, "net/ipv4/conf/dyn0/arp_ignore") == "1"
        base(False)
        assert wait_for(lambda: na.state() == "FAULT", 5), na.log()
        assert link(a, "vrrp.51") is None
    base(True)
    assert wait_for(lambda: na.state() == "MASTER", 10), na.log()
    na.stop()
    assert link(a, "vrrp.51") is None
