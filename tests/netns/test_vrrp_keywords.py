"""vrrp_startup_delay, dynamic_interfaces, vrrp_track_process and notify_priority_changes for
real: lvsd (``vrrp_standalone.py -f``) in a namespace with real keepalived as the peer, real
processes started and killed by the test, a real notify script and notify FIFO."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lvsd.lab.netns import Topology
from testlab import KeepalivedNode, LvsdNode, NodeOpts, wait_for

pytestmark = [pytest.mark.netns]

# keepalived peer: v3, 0.1 s adverts, priority 100, VIP 192.0.2.100/24
PEER = NodeOpts(priority=100, advert_int=0.1, version=3)


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology("lt-vrkw")
    try:
        t.add_host("a", "192.0.2.1/24")
        t.add_host("b", "192.0.2.2/24")
        yield t
    finally:
        t.close()


def conf(body: str, *, interface: str = "eth0", priority: int = 150, glob: str = "",
         inst: str = "") -> str:
    return f"""
global_defs {{
  router_id a
  vrrp_garp_master_delay 0
{glob}
}}
{body}
vrrp_instance VI_1 {{
  state BACKUP
  interface {interface}
  virtual_router_id 51
  priority {priority}
  advert_int 0.1
  version 3
{inst}
  virtual_ipaddress {{
    192.0.2.100/24
  }}
}}
"""


def lvsd(topo: Topology, tmp_path: Path, text: str) -> LvsdNode:
    (tmp_path / "k.conf").write_text(text)
    return LvsdNode(topo["a"], NodeOpts(extra=["-f", str(tmp_path / "k.conf"), "-v"]),
                    workdir=str(tmp_path))


def transitions(st: dict[str, Any]) -> list[dict[str, Any]]:
    return list(st.get("counters", {}).get("transitions", []))


def test_startup_delay_holds_off_a_higher_priority_takeover(topo: Topology,
                                                             tmp_path: Path) -> None:
    b = KeepalivedNode(topo["b"], PEER).start()
    assert wait_for(lambda: b.state() == "MASTER", 10), b.log()
    a = lvsd(topo, tmp_path, conf("", glob="  vrrp_startup_delay 2")).start()
    assert "Delaying startup for 2 seconds" in a.log()
    # during the delay: BACKUP, hearing the (lower priority) master, which keeps its role
    assert wait_for(lambda: a.state() == "BACKUP", 5), a.log()
    st = a.status()
    assert st["state"] == "BACKUP" and st["startup_delay_until"] is not None
    assert wait_for(lambda: a.status()["counters"]["adverts_received"] > 0, 5), a.log()
    assert b.state() == "MASTER"
    # then the takeover, never before the delay's end + Master_Down_Interval
    assert wait_for(lambda: a.state() == "MASTER", 15), a.log()
    assert wait_for(lambda: b.state() == "BACKUP", 5), b.log()
    st = a.status()
    master = next(t for t in transitions(st) if t["to"] == "MASTER")
    mdi = 3 * 0.1 + (256 - 150) * 0.1 / 256  # v3 Master_Down_Interval at priority 150
    assert master["at"] >= st["startup_delay_until"] + mdi - 1e-6, (st, a.log())
    a.stop()
    b.stop()


def _macvlan(topo: Topology, up: bool) -> None:
    h = topo["a"]
    if up:
        h.run("ip", "link", "add", "dyn0", "link", "eth0", "type", "macvlan", "mode", "bridge")
        h.run("ip", "addr", "add", "192.0.2.11/24", "dev", "dyn0")
        h.run("ip", "link", "set", "dyn0", "up")
    else:
        h.run("ip", "link", "del", "dyn0")


def test_dynamic_interface_fault_until_it_exists(topo: Topology, tmp_path: Path) -> None:
    reason = "interface dyn0 does not exist (dynamic_interfaces)"
    a = lvsd(topo, tmp_path, conf("", interface="dyn0", glob="  dynamic_interfaces")).start()
    assert wait_for(lambda: a.state() == "FAULT", 5), a.log()
    assert reason in a.status()["fault_reasons"]
    assert "Configuration specifies interface dyn0 which doesn't currently exist" in a.log()
    b = KeepalivedNode(topo["b"], PEER).start()
    assert wait_for(lambda: b.state() == "MASTER", 10), b.log()
    # the interface appears: BACKUP, then the usual election (150 beats keepalived's 100)
    _macvlan(topo, True)
    assert wait_for(lambda: a.state() == "MASTER", 10), a.log()
    assert wait_for(lambda: b.state() == "BACKUP", 5), b.log()
    kinds = [t["to"] for t in transitions(a.status())]
    assert kinds[-3:] == ["FAULT", "BACKUP", "MASTER"], kinds
    assert "192.0.2.100/24" in topo["a"].addresses("dyn0")
    # deleted: FAULT again with the reason, keepalived takes over
    _macvlan(topo, False)
    assert wait_for(lambda: a.state() == "FAULT", 5), a.log()
    assert reason in a.status()["fault_reasons"]
    assert wait_for(lambda: b.state() == "MASTER", 5), b.log()
    # re-created (another ifindex): a fresh socket, master again
    _macvlan(topo, True)
    assert wait_for(lambda: a.state() == "MASTER", 10), a.log()
    assert wait_for(lambda: b.state() == "BACKUP", 5), b.log()
    assert a.status()["fault_reasons"] == []
    a.stop()
    b.stop()


def test_dynamic_interfaces_off_a_missing_interface_does_not_start(topo: Topology,
                                                                   tmp_path: Path) -> None:
    a = lvsd(topo, tmp_path, conf("", interface="dyn0"))
    with pytest.raises(RuntimeError, match="dyn0"):
        a.start()


class Proc:
    """A real process whose name (comm) is ``name``: /bin/sleep run through a symlink."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.path = tmp / name
        if not self.path.exists():
            self.path.symlink_to("/bin/sleep")
        self.p: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.p = subprocess.Popen([str(self.path), "600"])

    def kill(self) -> None:
        assert self.p is not None
        self.p.kill()
        self.p.wait(5)


def read_fifo(fd: int) -> list[str]:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk
    return out.decode().splitlines()


def test_track_process_quorum_and_priority_change_notify(topo: Topology,
                                                         tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    up, boost = Proc(tmp_path, f"up{tag}"), Proc(tmp_path, f"bo{tag}")
    (tmp_path / "notify.sh").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/notify.log\n')
    (tmp_path / "notify.sh").chmod(0o755)
    os.mkfifo(tmp_path / "fifo")
    fd = os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    body = f"""
vrrp_track_process UP {{
  process up{tag}
}}
vrrp_track_process BOOST {{
  process bo{tag}
  weight 60
}}
"""
    inst = f"""  notify {tmp_path}/notify.sh
  track_process {{
    UP
    BOOST
  }}"""
    glob = f"  vrrp_notify_fifo {tmp_path}/fifo\n  vrrp_notify_priority_changes"
    lines: list[str] = []
    try:
        up.start()
        boost.start()
        b = KeepalivedNode(topo["b"], PEER).start()
        assert wait_for(lambda: b.state() == "MASTER", 10), b.log()
        a = lvsd(topo, tmp_path, conf(body, priority=90, glob=glob, inst=inst)).start()
        # 90 + 60 while BOOST runs: beats keepalived's 100
        assert wait_for(lambda: a.state() == "MASTER", 30), a.log()
        assert a.status()["effective_priority"] == 150
        # bounds are generous: /proc is polled every 0.5 s, but a busy CI host may be slow
        boost.kill()  # 90 < 100: keepalived preempts
        assert wait_for(lambda: a.state() == "BACKUP", 30), a.log()
        assert wait_for(lambda: b.state() == "MASTER", 15), b.log()
        assert "Changing effective priority from 150 to 90" in a.log()
        assert "Quorum lost for tracked process BOOST" in a.log()
        boost.start()
        assert wait_for(lambda: a.state() == "MASTER", 30), a.log()
        up.kill()  # weight 0: FAULT
        assert wait_for(lambda: a.state() == "FAULT", 30), a.log()
        assert "tracked process UP quorum not achieved" in a.status()["fault_reasons"]
        assert wait_for(lambda: b.state() == "MASTER", 15), b.log()
        up.start()
        assert wait_for(lambda: a.state() == "MASTER", 30), a.log()
        a.stop()
        assert a.wait_exit(10) == 0
        lines = read_fifo(fd)
        b.stop()
    finally:
        os.close(fd)
        for p in (up, boost):
            if p.p is not None and p.p.poll() is None:
                p.kill()
    assert 'INSTANCE "VI_1" MASTER_PRIORITY 90' in lines, lines
    assert 'INSTANCE "VI_1" BACKUP_PRIORITY 150' in lines, lines
    # the priority change is a FIFO line only: the notify script saw state changes only
    log = (tmp_path / "notify.log").read_text().splitlines()
    assert log and all(ln.split()[2] in ("MASTER", "BACKUP", "FAULT", "STOP") for ln in log), log
    assert "INSTANCE VI_1 FAULT 150" in log, log


STATUS_GET = r"""
import sys, urllib.request
with urllib.request.urlopen("http://%s/status" % sys.argv[1], timeout=3) as r:
    sys.stdout.write(r.read().decode())
"""


def test_daemon_delay_dynamic_interface_and_process(topo: Topology, tmp_path: Path) -> None:
    """The same keywords through ``lvsd run`` (vrrpset.make_runner): the delay is logged,
    the instance waits in FAULT for its interface, then its tracked process decides."""
    tag = uuid.uuid4().hex[:6]
    proc = Proc(tmp_path, f"dm{tag}")
    body = f"vrrp_track_process P {{\n  process dm{tag}\n}}\n"
    text = conf(body, interface="dyn0", glob="  vrrp_startup_delay 1\n  dynamic_interfaces",
                inst="  track_process {\n    P\n  }")
    (tmp_path / "k.conf").write_text(text)
    status = "127.0.0.1:9342"
    log = tmp_path / "lvsd.log"
    a = topo["a"]

    def inst() -> dict[str, Any]:
        p = a.run(sys.executable, "-c", STATUS_GET, status, check=False, timeout=10)
        if p.returncode != 0:
            return {}
        data = json.loads(p.stdout)
        return dict(data["instances"][0]) if data.get("instances") else {}

    def reasons() -> list[str]:
        return [t["reason"] for t in inst().get("transitions", [])]

    b = KeepalivedNode(topo["b"], PEER).start()
    proc.start()
    out = open(log, "w")  # noqa: SIM115 - handed to the child
    d = a.popen([sys.executable, "-m", "lvsd.cli", "run", "-f", str(tmp_path / "k.conf"),
                 "--vrrp-only", "--dataplane", "memory", "--status-listen", status,
                 "--pid-file", str(tmp_path / "lvsd.pid"), "--stop-timeout", "5"],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out.close()
    try:
        assert wait_for(lambda: inst().get("state") == "FAULT", 15), log.read_text()
        assert any("interface dyn0 does not exist (dynamic_interfaces)" in r for r in reasons())
        # the reason is in /status while it lasts (not only in the transition text)
        assert "interface dyn0 does not exist (dynamic_interfaces)" in inst()["fault_reasons"]
        assert "Delaying startup for 1 seconds" in log.read_text()
        _macvlan(topo, True)
        assert wait_for(lambda: inst().get("state") == "MASTER", 15), log.read_text()
        assert inst()["fault_reasons"] == []
        assert wait_for(lambda: b.state() == "BACKUP", 5), b.log()
        proc.kill()
        assert wait_for(lambda: inst().get("state") == "FAULT", 10), log.read_text()
        assert any("tracked process P quorum lost" in r for r in reasons()), reasons()
        assert wait_for(lambda: b.state() == "MASTER", 5), b.log()
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(15)
        if proc.p is not None and proc.p.poll() is None:
            proc.kill()
        b.stop()
