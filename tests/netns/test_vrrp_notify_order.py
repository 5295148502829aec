"""Notify scripts run after the VIP work, in keepalived's order (vrrp.c vrrp_state_become_master:
VIPs added, then gratuitous ARPs, then notify; vrrp_state_leave_master: VIPs removed, then notify).

Topology: a director d1 (192.0.2.1, one ``lvsd run --vrrp-only``, VRRPv3 VRID 51, 64 VIPs so
adding them takes real netlink work) and a host "wire" (192.0.2.50) on the same bridge. On
"wire" a sniffer (AF_PACKET, kernel receive timestamps) records every gratuitous ARP for a VIP.

* ``notify_master`` records ``ip -o addr show dev eth0`` and its own start time. Every VIP must
  already be on the interface, and the first gratuitous ARP for a VIP must have reached "wire"
  (kernel timestamp) before the script started.
* Then "wire" sends priority-200 adverts for VRID 51: d1 goes BACKUP; ``notify_backup`` records
  the addresses again and none of the VIPs may be left.

Assertions are on orders and contents, never on durations (the timestamps only order two
events: a packet that arrived and a script that started).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsd.lab.netns import Topology
from wirelab import send_adverts, start_lvsd, stop, wait_until, wire_topology

pytestmark = pytest.mark.netns

VIPS = [f"192.0.2.{100 + i}" for i in range(64)]

SNIFFER = r"""
import socket, struct, sys
vips = set(sys.argv[2].split(","))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
s.bind(("eth0", 0x0806))
out = open(sys.argv[1], "a", buffering=1)
out.write("ready\n")
while True:
    data, anc, _flags, _addr = s.recvmsg(2048, 64)
    arp = data[14:42]
    if len(arp) < 28 or struct.unpack("!H", arp[6:8])[0] != 1:
        continue
    sender, target = socket.inet_ntoa(arp[14:18]), socket.inet_ntoa(arp[24:28])
    if sender != target or sender not in vips:
        continue
    stamp = next((struct.unpack("qq", d[:16]) for lvl, typ, d in anc
                  if lvl == socket.SOL_SOCKET), None)
    if stamp is not None:
        out.write("garp %s %d.%09d\n" % (sender, stamp[0], stamp[1]))
"""

# $1: master|backup. The start time first (date +%s.%N: CLOCK_REALTIME, as the sniffer's
# kernel timestamps), then the addresses; the file appears whole (rename) when it is done.
NOTIFY = """#!/bin/sh
t=$(date +%s.%N)
{{ echo "start $t"; ip -o addr show dev eth0; }} > {d}/$1.tmp
mv {d}/$1.tmp {d}/$1.out
"""


def config(d: Path) -> str:
    vips = "\n".join(f"        {v}/24" for v in VIPS)
    return f"""global_defs {{
    router_id d1
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 1
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id 51
    priority 100
    advert_int 0.1
    notify_master "{d}/notify.sh master"
    notify_backup "{d}/notify.sh backup"
    virtual_ipaddress {{
{vips}
    }}
}}
"""


@pytest.fixture
def topo() -> Iterator[Topology]:
    with wire_topology("lt-vrord") as t:
        yield t


def test_notify_runs_after_vips_and_garp(topo: Topology, tmp_path: Path) -> None:
    (tmp_path / "notify.sh").write_text(NOTIFY.format(d=tmp_path))
    (tmp_path / "notify.sh").chmod(0o755)
    conf = tmp_path / "k.conf"
    conf.write_text(config(tmp_path))
    log = tmp_path / "d1.log"
    seen = tmp_path / "garp.txt"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(topo["wire"].popen([sys.executable, "-c", SNIFFER, str(seen),
                                         ",".join(VIPS)], stderr=subprocess.DEVNULL))
        wait_until(lambda: seen.exists() and "ready" in seen.read_text(), "sniffer ready", seen)
        procs.append(start_lvsd(topo["d1"], conf, tmp_path, log, "127.0.0.1:9342"))
        master = tmp_path / "master.out"
        wait_until(master.exists, "notify_master ran", log)

        lines = master.read_text().splitlines()
        started = float(lines[0].split()[1])
        held = {ln.split()[3].split("/")[0] for ln in lines[1:] if " inet " in ln}
        missing = [v for v in VIPS if v not in held]
        assert not missing, (f"notify_master ran before {len(missing)} of {len(VIPS)} VIPs were "
                             f"added (first: {missing[:3]})")
        garps = [float(ln.split()[2]) for ln in seen.read_text().splitlines()
                 if ln.startswith("garp ")]
        assert garps and min(garps) < started, (
            f"notify_master started at {started:.6f}, before any gratuitous ARP reached the "
            f"wire (first seen: {min(garps) if garps else None})")

        # a higher-priority router appears: MASTER -> BACKUP, notify_backup after the removal
        # (the startup BACKUP notify ran before notify_master: scripts run in order)
        (tmp_path / "backup.out").unlink()
        procs.append(send_adverts(topo["wire"], tmp_path / "higher.t", 200, 0.1, version=3))
        backup = tmp_path / "backup.out"
        wait_until(backup.exists, "notify_backup ran", log)
        text = backup.read_text()
        left = [v for v in VIPS if f" {v}/" in text]
        assert not left, (f"notify_backup ran while {len(left)} VIPs were still on eth0 "
                          f"(first: {left[:3]})")
    finally:
        for p in reversed(procs):
            stop(p)
