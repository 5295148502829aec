"""VRRP actions for real: netlink VIPs with options, GARP / NA frames on the wire, notify
scripts and FIFOs, vrrp_script tracking and sync groups from a keepalived-style file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lvsd.lab.netns import Host, Topology
from testlab import LvsdNode, NodeOpts, wait_for

pytestmark = [pytest.mark.netns]


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology("lt-vract")
    try:
        t.add_host("a", "192.0.2.1/24", "fd00::1/64")
        t.add_host("b", "192.0.2.2/24", "fd00::2/64")
        t.add_host("c", "192.0.2.50/24")
        yield t
    finally:
        t.close()


def run_py(host: Host, code: str) -> dict[str, Any]:
    """Run ``code`` (async body, sets ``out``) with lvsd's Python inside the namespace."""
    prog = ("import asyncio, json\n"
            "from lvsd.vrrp.vips import Vip, VipSet\n"
            "from lvsd.vrrp.garp import Garp\n"
            "async def main():\n    out = {}\n"
            + "".join(f"    {ln}\n" for ln in code.strip().splitlines())
            + "    return out\nprint(json.dumps(asyncio.run(main()), default=str))\n")
    res = host.run(sys.executable, "-c", prog, timeout=30)
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_vips_options_idempotent_and_isolated_failures(topo: Topology) -> None:
    a = topo["a"]
    out = run_py(a, """
vs = VipSet("eth0", [Vip("192.0.2.100", 24, brd="192.0.2.255", label="eth0:vip"),
                     Vip("192.0.2.101", 32, scope="link"),
                     Vip("fd00::100", 64),
                     Vip("192.0.2.102", 32, dev="nosuchdev")],
            excluded=[Vip("198.51.100.7", 32)])
r1 = await vs.add_all(); r2 = await vs.add_all()
out["add1"] = [r1.ok, r1.failed]; out["add2"] = [r2.ok, r2.failed]
out["present"] = sorted(await vs.present())
""")
    ok1, failed1 = out["add1"]
    ok2, failed2 = out["add2"]
    assert set(ok1) == set(ok2) == {"192.0.2.100/24", "192.0.2.101/32", "fd00::100/64",
                                    "198.51.100.7/32"}
    assert list(failed1) == list(failed2) == ["192.0.2.102/32"]
    assert "nosuchdev" in failed1["192.0.2.102/32"]
    addrs = a.run("ip", "-o", "addr", "show", "dev", "eth0").stdout
    line = next(ln for ln in addrs.splitlines() if "192.0.2.100/24" in ln)
    assert "brd 192.0.2.255" in line and "eth0:vip" in line
    line = next(ln for ln in addrs.splitlines() if "192.0.2.101/32" in ln)
    assert "scope link" in line
    line = next(ln for ln in addrs.splitlines() if "fd00::100/64" in ln)
    assert "nodad" in line and "tentative" not in line
    assert "198.51.100.7/32" in addrs
    out = run_py(a, """
vs = VipSet("eth0", [Vip("192.0.2.100", 24), Vip("192.0.2.101", 32), Vip("fd00::100", 64)],
            excluded=[Vip("198.51.100.7", 32)])
r1 = await vs.remove_all(); r2 = await vs.remove_all()
out["rm"] = [r1.failed, r2.failed, sorted(r2.ok)]
""")
    assert out["rm"][0] == {} and out["rm"][1] == {}
    addrs = a.run("ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert "192.0.2.10" not in addrs and "fd00::100" not in addrs and "198.51.100.7" not in addrs


def test_garp_and_unsolicited_na_on_the_wire(topo: Topology) -> None:
    c = topo["c"]
    c.add_addr("fd00::50/64")
    cap = subprocess.Popen(c.cmd("timeout", "10", "tcpdump", "-l", "-nn", "-e", "-i", "eth0",
                                 "-c", "4", "arp or (icmp6 and ip6[40] == 136)"),
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)  # tcpdump is listening
    out = run_py(topo["a"], """
g = Garp("eth0")
out["n"] = g.burst(["192.0.2.100", "fd00::100"], 2)
out["mac"] = g.mac.hex(":")
""")
    text, _ = cap.communicate(timeout=15)
    assert out["n"] == 4
    mac = str(out["mac"])
    arp = [ln for ln in text.splitlines() if "ARP" in ln]
    na = [ln for ln in text.splitlines() if "neighbor advertisement" in ln]
    assert len(arp) == 2 and len(na) == 2, text
    assert all(f"{mac} > ff:ff:ff:ff:ff:ff" in ln for ln in arp), text
    # gratuitous: sender and target protocol address are the VIP, target hardware broadcast
    assert all("Request who-has 192.0.2.100 (ff:ff:ff:ff:ff:ff) tell 192.0.2.100" in ln
               for ln in arp), text
    assert all("tgt is fd00::100" in ln and "ff02::1" in ln for ln in na), text


def test_notify_args_fifo_timeout_and_user(tmp_path: Path) -> None:
    """Notifier on its own (no namespace needed): keepalived's argument list and FIFO line."""
    import asyncio

    from lvsd.vrrp.notify import Notifier, ScriptSpec

    d = tmp_path / "notify"
    d.mkdir()
    os.chmod(d, 0o777)
    for parent in d.parents:  # nobody must be able to reach the script
        if str(parent).startswith(tempfile.gettempdir() + "/"):
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    script = d / "n.sh"
    script.write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/args"\nid -u >> '
                      '"$(dirname "$0")/uid"\n')
    script.chmod(0o755)
    for f in ("args", "uid"):  # writable by the script running as nobody
        (d / f).touch()
        (d / f).chmod(0o666)
    fifo = d / "fifo"
    os.mkfifo(fifo)
    lines: list[str] = []
    reader_ready = threading.Event()

    def reader() -> None:
        reader_ready.set()
        with open(fifo) as fh:  # blocks until the first writer
            for ln in fh:
                lines.append(ln)
                if len(lines) >= 2:
                    return

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    reader_ready.wait()
    time.sleep(0.1)

    async def go() -> Notifier:
        n = Notifier("INSTANCE", "VI_1", {
            "MASTER": ScriptSpec(f"{d}/n.sh own-arg"),
            "notify": ScriptSpec(str(script), user="nobody"),
            "FAULT": ScriptSpec("sleep 30"),
        }, (str(fifo),), timeout=0.3)
        n.notify("MASTER", 150)
        assert (d / "args").read_text() == ""  # scheduled, not run inline
        n.notify("FAULT", 150)
        await n.drain(10)
        return n

    n = asyncio.run(go())
    th.join(5)
    assert (d / "args").read_text().splitlines() == ["own-arg", "INSTANCE VI_1 MASTER 150",
                                                    "INSTANCE VI_1 FAULT 150"]
    uids = (d / "uid").read_text().split()
    assert uids[0] == "0" and uids[1] != "0"  # `notify` ran as nobody
    assert lines == ['INSTANCE "VI_1" MASTER 150\n', 'INSTANCE "VI_1" FAULT 150\n']
    assert n.stats.timed_out == 1  # "sleep 30" was killed at the timeout


CONF = """
global_defs {{
  router_id {name}
  vrrp_notify_fifo {d}/fifo
  vrrp_garp_master_delay 0
}}
vrrp_script chk {{
  script "test ! -e {d}/down"
  interval 0.1
  weight 0
}}
vrrp_sync_group G {{
  group {{
    VI_1
    VI_2
  }}
}}
vrrp_instance VI_1 {{
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority {prio}
  advert_int 0.1
  version 3
  track_script {{
    chk
  }}
  virtual_ipaddress {{
    192.0.2.100/24 brd 192.0.2.255 label eth0:vip
  }}
  virtual_ipaddress_excluded {{
    198.51.100.7/32
  }}
  notify {d}/notify.sh
  notify_master "{d}/master.sh from-config"
}}
vrrp_instance VI_2 {{
  state BACKUP
  interface eth0
  virtual_router_id 52
  priority {prio}
  advert_int 0.1
  version 3
  virtual_ipaddress {{
    192.0.2.200/24
  }}
}}
"""


def _states(node: LvsdNode) -> dict[str, str]:
    try:
        text = Path(node.state_file).read_text()
    except (OSError, AttributeError):
        return {}
    return dict(ln.split(" ", 1) for ln in text.splitlines() if " " in ln)


def test_config_file_track_script_sync_group_notify(topo: Topology, tmp_path: Path) -> None:
    nodes = {}
    dirs = {}
    for name, prio in (("a", 150), ("b", 100)):
        d = tmp_path / name
        d.mkdir()
        dirs[name] = d
        (d / "notify.sh").write_text(f'#!/bin/sh\necho "$@" >> {d}/notify.log\n')
        (d / "master.sh").write_text(f'#!/bin/sh\necho "$@" >> {d}/master.log\n')
        for f in ("notify.sh", "master.sh"):
            (d / f).chmod(0o755)
        os.mkfifo(d / "fifo")
        (d / "k.conf").write_text(CONF.format(name=name, prio=prio, d=d))
        nodes[name] = LvsdNode(topo[name], NodeOpts(extra=["-f", str(d / "k.conf")]),
                               workdir=str(d))
    fifo_lines: list[str] = []
    fd = os.open(dirs["a"] / "fifo", os.O_RDONLY | os.O_NONBLOCK)  # a reader before start
    try:
        a, b = nodes["a"].start(), nodes["b"].start()
        both = {"VI_1": "MASTER", "VI_2": "MASTER"}
        back = {"VI_1": "BACKUP", "VI_2": "BACKUP"}
        assert wait_for(lambda: _states(a) == both and _states(b) == back, 15), (a.log(),
                                                                                b.log())
        def addrs() -> str:
            return topo["a"].run("ip", "-o", "addr", "show", "dev", "eth0").stdout

        # the state is reported as soon as the VIP work is under way, not when it is done
        assert wait_for(lambda: "eth0:vip" in addrs() and "198.51.100.7/32" in addrs()
                        and "192.0.2.200/24" in addrs(), 5), addrs()
        assert "198.51.100.7" not in topo["b"].run("ip", "-o", "addr").stdout
        # the excluded VIP is not advertised: b sees exactly its configured list
        st = b.status()
        assert st["counters"]["addr_list_mismatch"] == 0 and st["counters"]["invalid"] == {}
        # the tracked script fails on a: VI_1 -> FAULT, the sync group takes VI_2 along
        (dirs["a"] / "down").touch()
        fault = {"VI_1": "FAULT", "VI_2": "FAULT"}
        assert wait_for(lambda: _states(a) == fault and _states(b) == both, 10), (a.log(),
                                                                                 b.log())
        assert wait_for(lambda: "192.0.2.200" not in addrs(), 5), addrs()
        (dirs["a"] / "down").unlink()
        assert wait_for(lambda: _states(a) == both and _states(b) == back, 10), (a.log(),
                                                                                b.log())
        a.stop()
        assert a.wait_exit(10) == 0
        time.sleep(0.2)
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            fifo_lines += chunk.decode().splitlines()
    finally:
        os.close(fd)
    log = (dirs["a"] / "notify.log").read_text().splitlines()
    assert log[:4] == ["INSTANCE VI_1 BACKUP 150", "INSTANCE VI_1 MASTER 150",
                       "INSTANCE VI_1 FAULT 150", "INSTANCE VI_1 BACKUP 150"], log
    assert "INSTANCE VI_1 STOP 150" in log
    assert (dirs["a"] / "master.log").read_text().split() == ["from-config", "from-config"]
    assert 'INSTANCE "VI_1" MASTER 150' in fifo_lines, fifo_lines
    assert 'INSTANCE "VI_2" FAULT 150' in fifo_lines, fifo_lines
    assert 'GROUP "G" FAULT 0' in fifo_lines, fifo_lines


SENDER = """
import socket, sys, time
from ipaddress import IPv4Address
from lvsd.vrrp import codec
ttl, prio, corrupt, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
adv = codec.Advert(version=3, vrid=51, priority=prio, advert_int=0.1,
                   addresses=(IPv4Address("192.0.2.100"),))
payload = bytearray(codec.encode(adv, "192.0.2.2", "224.0.0.18"))
if corrupt:
    payload[6] ^= 0xFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.2"))
s.bind(("192.0.2.2", 0))
for _ in range(n):
    s.sendto(bytes(payload), ("224.0.0.18", 0))
    time.sleep(0.05)
"""


def test_invalid_adverts_are_counted_and_change_nothing(topo: Topology) -> None:
    """Crafted higher-priority adverts through the real receive path: TTL 1 and a broken
    checksum are counted per reason and ignored; the same advert with TTL 255 wins."""
    a = LvsdNode(topo["a"], NodeOpts(priority=100, advert_int=0.1, version=3)).start()
    assert wait_for(lambda: a.state() == "MASTER", 10), a.log()

    def send(ttl: int, prio: int, corrupt: bool, n: int) -> None:
        topo["b"].run(sys.executable, "-c", SENDER, str(ttl), str(prio),
                      "1" if corrupt else "0", str(n), timeout=30)

    send(1, 200, False, 10)
    send(255, 200, True, 10)
    st = a.status()
    assert st["state"] == "MASTER" and a.has_vip(), a.log()
    assert st["counters"]["invalid"] == {"checksum": 10, "ttl": 10}, st["counters"]
    assert st["counters"]["adverts_received"] == 0
    send(255, 200, False, 3)  # a valid higher-priority advert: a backs off
    assert wait_for(lambda: a.state() == "BACKUP" and not a.has_vip(), 5), a.log()
    assert a.status()["master_address"] == "192.0.2.2"
