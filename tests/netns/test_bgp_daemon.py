"""One ``lvsd run`` with a ``bgp_speaker`` in a namespace, driving a real BIRD 2 (no peer needed:
what lvsd makes BIRD hold is read over BIRD's control socket, what lvsd decides from /status).

The path proven: the pool's quorum -> the announcer's rise delay -> ``enable lvsd_WEB`` (the route
in BIRD's table, the VIP on lo); the real server going away -> quorum down -> withdrawn; a reload
adding an announcement (the announced one is not restarted) and removing it (an address on lo that
lvsd did not add stays); SIGTERM -> withdraw first, then BIRD down, the VIP lvsd added removed.
(The router, ECMP and flows: tests/netns/test_bgp_active_active.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from lvsd.lab.netns import Host, Topology, have_netns

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
BIRD = REPO / ".lab" / "bird2" / "usr" / "sbin" / "bird"
BIRDC = REPO / ".lab" / "bird2" / "usr" / "sbin" / "birdc"
STATUS = "127.0.0.1:9330"

SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8099))
s.listen(64)
while True:
    c, _ = s.accept()
    c.close()
"""

BASE = f"""
virtual_server 10.0.0.100 80 {{
    lb_algo mh
    mh-port
    lb_kind NAT
    protocol TCP
    delay_loop 1
    real_server 127.0.0.1 8099 {{
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
}}
bgp_speaker {{
    bird_binary {BIRD}
    router_id 10.0.1.11
    local_as 65001
    neighbor 10.0.1.1 {{
        remote_as 65000
    }}
}}
bgp_announce WEB {{
    address 10.0.0.100/32
    virtual_server 10.0.0.100 80
    track_interface {{ eth0 }}
    rise_delay 1
}}
"""

DNS = """
bgp_announce DNS {
    address 10.0.0.53/32
    rise_delay 0
}
"""


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class Director:
    def __init__(self, host: Host, conf: Path) -> None:
        self.host = host
        self.conf = conf
        self.log = conf.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = self.host.popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(self.conf), "-p", "",
                 "--dataplane", "memory", "--check-only", "--status-listen", STATUS],
                stdout=out, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any] | None:
        r = self.host.run("curl", "-sf", "--max-time", "5", f"http://{STATUS}/status",
                          check=False)
        if r.returncode != 0:
            return None
        doc: dict[str, Any] = json.loads(r.stdout)
        return doc

    def announcement(self, name: str) -> dict[str, Any] | None:
        st = self.status()
        if st is None or st.get("bgp") is None:
            return None
        for a in st["bgp"]["announcements"]:
            if a["name"] == name:
                return dict(a)
        return None

    def state(self, name: str) -> str | None:
        a = self.announcement(name)
        return None if a is None else str(a["state"])

    def birdc(self, *cmd: str) -> str:
        st = self.status()
        assert st is not None and st["bgp"]["bird_pid"], self.text()
        argv = Path(f"/proc/{st['bgp']['bird_pid']}/cmdline").read_bytes().split(b"\0")
        sock = argv[argv.index(b"-s") + 1].decode()
        return self.host.run(str(BIRDC), "-s", sock, *cmd).stdout

    def lo(self) -> list[str]:
        return self.host.addresses("lo")

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Topology, Host, Director]]:
    require(have_netns())
    require(None if BIRD.exists() and BIRDC.exists() else
            f"BIRD 2 not unpacked at {BIRD} (sudo bash scripts/bootstrap.sh test)")
    topo = Topology(tag="lt-bgpd")
    try:
        host = topo.add_host("d1", "10.0.1.11/24")
        conf = tmp_path / "keepalived.conf"
        conf.write_text(BASE)
        yield topo, host, Director(host, conf)
    finally:
        topo.close()


def test_announce_withdraw_reload_stop(lab: tuple[Topology, Host, Director]) -> None:
    _, host, d = lab
    server = host.popen([sys.executable, "-c", SERVER])
    d.start()
    assert d.proc is not None
    wait_for(lambda: d.state("WEB") == "announced", 30, "WEB announced\n" + d.text())
    web = d.announcement("WEB")
    assert web is not None and "quorum up and programmed: 10.0.0.100:80/TCP" in web["reason"]
    assert "interfaces up: eth0" in web["reason"]
    assert "10.0.0.100/32" in d.birdc("show", "route")
    assert "10.0.0.100/32" in d.lo()
    st = d.status()
    assert st is not None
    (session,) = st["bgp"]["sessions"]
    assert session["neighbor"] == "10.0.1.1" and session["state"] != "Established"

    # the real server goes away: quorum down, withdrawn, the route leaves BIRD's table
    server.kill()
    server.wait(5)
    wait_for(lambda: d.state("WEB") == "withdrawn", 30, "WEB withdrawn\n" + d.text())
    web = d.announcement("WEB")
    assert web is not None and "quorum down" in web["reason"]
    assert "10.0.0.100/32" not in d.birdc("show", "route")
    assert "10.0.0.100/32" in d.lo()  # the VIP stays while the block is configured
    server = host.popen([sys.executable, "-c", SERVER])
    wait_for(lambda: d.state("WEB") == "announced", 30, "WEB announced again\n" + d.text())
    since = d.announcement("WEB")["since"]  # type: ignore[index]

    # reload adding DNS (its address already on lo: not lvsd's to remove later)
    host.run("ip", "addr", "add", "10.0.0.53/32", "dev", "lo")
    d.conf.write_text(BASE + DNS)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.state("DNS") == "announced", 30, "DNS announced\n" + d.text())
    assert d.announcement("WEB")["since"] == since  # type: ignore[index]  # not flapped
    protocols = d.birdc("show", "protocols")
    assert "lvsd_DNS" in protocols and "10.0.0.53/32" in d.birdc("show", "route")
    assert "10.0.0.100/32" in d.birdc("show", "route")

    # reload removing it
    d.conf.write_text(BASE)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.announcement("DNS") is None and "lvsd_DNS" not in
             d.birdc("show", "protocols"), 30, "DNS removed\n" + d.text())
    assert "10.0.0.53/32" in d.lo()  # lvsd did not add it: left alone
    assert d.state("WEB") == "announced"

    # a changed bgp_speaker block restarts BIRD; the route comes back after its rise delay
    old_pid = d.status()["bgp"]["bird_pid"]  # type: ignore[index]
    d.conf.write_text(BASE.replace("local_as 65001", "local_as 65001\n    hold_time 6"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: (s := d.status()) is not None and s["bgp"]["bird_restarts"] == 1
             and s["bgp"]["bird_pid"] != old_pid, 30, "BIRD restarted\n" + d.text())
    assert not Path(f"/proc/{old_pid}").exists()
    wait_for(lambda: d.state("WEB") == "announced", 30, "WEB back\n" + d.text())
    assert "10.0.0.100/32" in d.birdc("show", "route")

    # SIGTERM: withdraw first, then BIRD's shutdown; the VIP lvsd added goes
    st = d.status()
    assert st is not None
    bird_pid = st["bgp"]["bird_pid"]
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0, d.text()
    log = d.log.read_text(errors="replace")
    withdraw = log.find("withdrawing 10.0.0.100/32 (WEB): lvsd stopping")
    down = log.rfind("Shutting down")  # the last BIRD's (the restart above stopped one)
    assert 0 <= withdraw < down, log
    assert "10.0.0.100/32" not in d.lo() and "10.0.0.53/32" in d.lo()
    assert not Path(f"/proc/{bird_pid}").exists()
    server.kill()


def test_sigkill_of_lvsd_ends_bird(lab: tuple[Topology, Host, Director]) -> None:
    """PR_SET_PDEATHSIG: a SIGKILLed lvsd's BIRD gets SIGTERM (BIRD then sends its Ceases)."""
    _, _, d = lab
    d.start()
    assert d.proc is not None
    st = wait_for(lambda: (s := d.status()) is not None and s.get("bgp") and
                  s["bgp"]["bird_pid"] and s, 30, "BIRD running\n" + d.text())
    bird_pid = st["bgp"]["bird_pid"]
    assert Path(f"/proc/{bird_pid}").exists()
    os.kill(d.proc.pid, signal.SIGKILL)  # `ip netns exec` execs: this is lvsd itself
    d.proc.wait(10)
    wait_for(lambda: not Path(f"/proc/{bird_pid}").exists(), 15, "BIRD gone")


def test_bird_dying_is_restarted_and_reannounces(lab: tuple[Topology, Host, Director]) -> None:
    """BIRD killed behind lvsd's back: withdrawn (reason says so), BIRD started again, the
    route announced again after its rise delay."""
    _, host, d = lab
    server = host.popen([sys.executable, "-c", SERVER])
    d.start()
    wait_for(lambda: d.state("WEB") == "announced", 30, "WEB announced\n" + d.text())
    st = d.status()
    assert st is not None
    old_pid = st["bgp"]["bird_pid"]
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: (s := d.status()) is not None and s["bgp"]["bird_restarts"] == 1
             and s["bgp"]["bird_running"] and s["bgp"]["bird_pid"] != old_pid, 30,
             "BIRD restarted\n" + d.text())
    assert "BIRD exited" in d.log.read_text(errors="replace")
    wait_for(lambda: d.state("WEB") == "announced", 30, "WEB announced again\n" + d.text())
    assert "10.0.0.100/32" in d.birdc("show", "route")
    server.kill()
