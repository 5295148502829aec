"""A VIP that cannot be added is not claimed (issue 16 item 1).

Topology: director d1 (192.0.2.1, ``lvsd run --vrrp-only``, priority 100, one VIP on a spare
interface ``dum0``, one end of a veth pair) and "wire" (192.0.2.50), which plays a
priority-200 master by sending adverts for VRID 51. While d1 is BACKUP its ``dum0`` is
deleted; then "wire" stops, d1 takes over and the VIP add fails for real (the kernel has no
``dum0``).

Expected: d1 does not pretend. ``/status`` never says ``vips_held: true`` without the address
on the interface; the instance goes to FAULT with the real reason ("VIPs not held: ...
interface 'dum0' does not exist"), ``/metrics`` counts the failure and shows
``lvsd_vrrp_vips_held 0``; the add is retried with back-off, so once ``dum0`` is back d1 is
MASTER with the VIP on it and ``vips_held: true``. (Before the fix: MASTER, ``vips_held: true``
with no address anywhere, nothing retried.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsd.lab.netns import Topology
from testlab import DaemonNode, NodeOpts, mac, neigh_mac, wait_for
from wirelab import HTTP_GET, send_adverts, wire_topology

pytestmark = pytest.mark.netns

# a spare interface for the VIP (a veth pair: this kernel has no dummy driver)
MKLINK = ("ip link add dum0 type veth peer name dum0p && ip link set dum0p up "
          "&& ip link set dum0 up")

# every event so far (/events from the start), read until the stream idles for 2 s
EVENTS = ("import sys, urllib.request\n"
          "r = urllib.request.urlopen('http://%s/events?last_event_id=0' % sys.argv[1], "
          "timeout=2)\n"
          "try:\n"
          "    for line in r:\n"
          "        sys.stdout.write(line.decode())\n"
          "except TimeoutError:\n"
          "    pass\n")


@pytest.fixture
def topo() -> Iterator[Topology]:
    with wire_topology("lt-vipf") as t:
        yield t


def _metrics(node: DaemonNode) -> str:
    p = node.host.run(sys.executable, "-c", HTTP_GET, node.STATUS, "/metrics", check=False,
                      timeout=10)
    if p.returncode != 0:
        print(f"GET /metrics: {p.stderr.strip()[-500:]}")
        return ""
    return p.stdout


def _metric(text: str, name: str) -> float | None:
    m = re.search(rf'^{name}\{{instance="VI_1"\}} (\S+)$', text, re.MULTILINE)
    return float(m.group(1)) if m else None


def test_failed_vip_add_is_fault_retried_and_truthful(topo: Topology, tmp_path: Path) -> None:
    d1 = topo["d1"]
    d1.sh(MKLINK)
    sender = send_adverts(topo["wire"], tmp_path / "higher.t", 200, 0.2)
    node = DaemonNode(d1, NodeOpts(priority=100, vips=("192.0.2.100/24 dev dum0",)))
    try:
        node.start()
        assert wait_for(lambda: node.state() == "BACKUP", 20), node.log()
        d1.sh("ip link del dum0")
        sender.kill()
        sender.wait(5)
        t0 = time.monotonic()

        # never "held" without the address; the failure shows as FAULT with the real reason
        def faulted() -> dict[str, object]:
            st = node.status()
            if st.get("vips_held"):
                assert "dum0" in d1.sh("ip -o link show", check=False).stdout, st
            reasons = " ".join(str(r) for r in st.get("fault_reasons", ()))
            return st if st.get("state") == "FAULT" and "VIPs not held" in reasons else {}

        st = wait_for(faulted, 30)
        assert st, f"no FAULT for the VIPs it could not add: {node.status()}\n{node.log()}"
        print(f"FAULT after {time.monotonic() - t0:.1f} s: {st['fault_reasons']}")
        assert st["vips_held"] is False
        reason = " ".join(str(r) for r in st["fault_reasons"])
        assert "interface 'dum0' does not exist" in reason, reason
        assert int(str(st["vip_add_failures"])) >= 1 and st["vip_retry_at"] is not None
        text = wait_for(lambda: _metrics(node), 10)
        assert _metric(text, "lvsd_vrrp_vips_held") == 0.0, text
        failures = _metric(text, "lvsd_vrrp_vip_add_failures_total")
        assert failures is not None and failures >= 1, text
        assert "interface 'dum0' does not exist" in node.log()
        events = node.host.run(sys.executable, "-c", EVENTS, node.STATUS, check=False,
                               timeout=20).stdout
        assert "VIPs not held" in events and "event: vrrp_error" in events, events[-2000:]

        # it retries (back-off): the interface comes back, the VIP is added, held and true
        d1.sh(MKLINK)

        def held() -> bool:
            st = node.status()
            return bool(st.get("state") == "MASTER" and st.get("vips_held")
                        and "192.0.2.100/24" in d1.addresses("dum0"))

        assert wait_for(held, 60), f"{node.status()}\n{node.log()}"
        assert _metric(_metrics(node), "lvsd_vrrp_vips_held") == 1.0
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait(5)
        node.stop()


def _vrrp_process(node: DaemonNode) -> int:
    """The pid that runs the VRRP instances: the daemon's VRRP child process."""
    assert node.proc is not None
    for pid in subprocess.run(["pgrep", "-P", str(node.proc.pid)], capture_output=True,
                              text=True, check=False).stdout.split():
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"vrrpchild" in fh.read():
                return int(pid)
    pytest.fail(f"no VRRP child process under the daemon (pid {node.proc.pid})")


def test_takeover_with_descriptors_exhausted(topo: Topology, tmp_path: Path) -> None:
    """The issue's case: the backup's descriptors are exhausted (EMFILE) when the master
    goes. The VIP add must not fail with a made-up "interface does not exist": the address
    is added over the netlink socket already open, status says so truthfully, and the
    gratuitous ARPs go out (their socket is open from the start): "wire", which accepts
    gratuitous ARPs, learns d1's MAC for the VIP."""
    d1 = topo["d1"]
    topo["wire"].run("sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1")
    sender = send_adverts(topo["wire"], tmp_path / "higher.t", 200, 0.2)
    node = DaemonNode(d1, NodeOpts(priority=100))
    try:
        node.start()
        assert wait_for(lambda: node.state() == "BACKUP", 20), node.log()
        pid = _vrrp_process(node)
        # no new descriptor from now on: a new one takes the lowest free number, so the limit
        # is that number (EMFILE), whatever is open above it
        fds = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
        free = min(set(range(len(fds) + 1)) - fds)
        subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={free}:{free}"], check=True)
        sender.kill()
        sender.wait(5)

        def settled() -> dict[str, object]:
            st = node.status()
            if st.get("vips_held"):  # never claimed without the address
                assert "192.0.2.100/24" in d1.addresses(), st
            return st if st.get("state") in ("MASTER", "FAULT") and (
                st.get("vips_held") or st.get("state") == "FAULT") else {}

        st = wait_for(settled, 30)
        assert st, f"{node.status()}\n{node.log()}"
        print(f"descriptors exhausted at takeover: {st['state']}, vips_held {st['vips_held']}, "
              f"{st['fault_reasons']}")
        assert "does not exist" not in node.log(), node.log()
        if st["state"] == "MASTER":
            assert "192.0.2.100/24" in d1.addresses()
            assert wait_for(lambda: neigh_mac(topo["wire"]) == mac(d1), 10), (
                f"no gratuitous ARP: wire has {neigh_mac(topo['wire'])}, d1 is {mac(d1)}")
        else:  # could not add: the real reason, and not held
            assert st["vips_held"] is False and "VIPs not held" in str(st["fault_reasons"])
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait(5)
        node.stop()
