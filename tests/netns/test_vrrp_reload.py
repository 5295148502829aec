"""VRRP reload without failover: two real ``lvsd run --vrrp-only`` daemons, SIGHUP.

Topology (``lvsd.lab.netns.Topology``): d1 (192.0.2.1, priority 150) and d2 (192.0.2.2,
priority 100) share VRRPv3 instance VI_1 (advert_int 0.25) on one bridge; a client
(192.0.2.50) pings the VIP. Each daemon serves /status on its own namespace's loopback.

Scenarios, in file order on one lab (each test first checks the state it needs):

(a) the master's priority changes but still wins -> no state transition on either node (the
    transition lists and became/released_master counters from /status are unchanged), the backup
    learns the new priority from the adverts, and a client pinging the VIP across the reload
    loses nothing;
(b) one VIP added, one removed on both nodes -> no transition; the master holds the new VIP
    (which answers the client) and no longer the removed one; the backup holds neither; the
    client pinging the kept VIP across the reload loses nothing;
(c) ``virtual_router_id`` changed (an identity change) -> that instance restarts, as documented:
    the new instance has the new vrid and fresh counters (its first transition is the startup),
    and after both nodes reload d1 is master of the new VRID again.

Assertions are on states, counters and lost packets, never on durations.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from lvsd.lab.netns import Host, Topology, have_netns
from testlab import wait_for

pytestmark = pytest.mark.netns

STATUS = "127.0.0.1:9341"
VIP = "192.0.2.100"
STATUS_GET = r"""
import sys, urllib.request
with urllib.request.urlopen("http://%s/status" % sys.argv[1], timeout=3) as r:
    sys.stdout.write(r.read().decode())
"""


def config(name: str, priority: int, vips: tuple[str, ...], vrid: int = 51) -> str:
    addrs = "\n".join(f"        {v}/24" for v in vips)
    return f"""global_defs {{
    router_id {name}
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 2
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id {vrid}
    priority {priority}
    advert_int 0.25
    virtual_ipaddress {{
{addrs}
    }}
}}
"""


@dataclass
class Director:
    name: str
    host: Host
    conf: Path
    log: Path
    proc: subprocess.Popen[Any] | None = None
    priority: int = 100

    def write(self, priority: int, vips: tuple[str, ...], vrid: int = 51) -> None:
        self.priority = priority
        self.conf.write_text(config(self.name, priority, vips, vrid))

    def start(self) -> None:
        out = open(self.log, "a")  # noqa: SIM115 - handed to the child
        self.proc = self.host.popen(
            [sys.executable, "-m", "lvsd.cli", "run", "-f", str(self.conf), "--vrrp-only",
             "--dataplane", "memory", "--status-listen", STATUS, "--stop-timeout", "5",
             "--pid-file", str(self.conf.with_suffix(".pid")),
             "--dump-dir", str(self.conf.parent)],
            stdout=out, stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        out.close()

    def status(self) -> dict[str, Any] | None:
        import json

        p = self.host.run(sys.executable, "-c", STATUS_GET, STATUS, check=False, timeout=10)
        if p.returncode != 0:
            return None
        try:
            data: dict[str, Any] = json.loads(p.stdout)
        except ValueError:
            return None
        return data

    def instance(self) -> dict[str, Any]:
        s = self.status()
        assert s is not None, self.text()
        assert len(s["instances"]) == 1, s["instances"]
        inst: dict[str, Any] = s["instances"][0]
        return inst

    def state(self) -> str | None:
        s = self.status()
        return str(s["instances"][0]["state"]) if s and s["instances"] else None

    def reload(self) -> None:
        """SIGHUP, then wait until /status shows the next generation applied."""
        s = self.status()
        assert s is not None
        gen = s["config"]["generation"]
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

        def applied() -> bool:
            t = self.status()
            return bool(t and t["config"]["generation"] == gen + 1)

        assert wait_for(applied, 15), self.text()
        t = self.status()
        assert t is not None
        assert t["config"]["last_reload_ok"], t["config"]

    def text(self) -> str:
        return f"--- {self.name}\n" + (self.log.read_text()[-4000:] if self.log.exists() else "")


@dataclass
class Lab:
    topo: Topology
    d1: Director
    d2: Director
    client: Host

    def logs(self) -> str:
        return self.d1.text() + "\n" + self.d2.text()


@contextlib.contextmanager
def running_lab(tag: str, configure: Callable[[Director, int], None]) -> Iterator[Lab]:
    """d1 (priority 150) and d2 (100) configured by ``configure(director, priority)`` and
    started, plus a client; everything stopped and removed on exit, even on failure.

    Module-scoped fixtures are set up before the function-scoped capability gate in
    conftest, so the gate is called here.
    """
    require(have_netns())
    topo = Topology(tag)
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    dirs: list[Director] = []
    try:
        for name, addr, prio in (("d1", "192.0.2.1/24", 150), ("d2", "192.0.2.2/24", 100)):
            h = topo.add_host(name, addr)
            d = Director(name, h, work / f"{name}.conf", work / f"{name}.log")
            configure(d, prio)
            dirs.append(d)
        client = topo.add_host("client", "192.0.2.50/24")
        lab = Lab(topo, dirs[0], dirs[1], client)
        for d in dirs:
            d.start()
        yield lab
    finally:
        for d in dirs:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.terminate()
                try:
                    d.proc.wait(10)
                except subprocess.TimeoutExpired:
                    d.proc.kill()
                    d.proc.wait(5)
        topo.close()
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("lt-vrl", lambda d, prio: d.write(prio, (VIP, "192.0.2.102"))) as lab:
        assert wait_for(lambda: lab.d1.state() == "MASTER", 20), lab.logs()
        assert wait_for(lambda: lab.d2.state() == "BACKUP", 10), lab.logs()
        yield lab


class Pinger:
    """``ping`` from the client in the background; ``finish()`` -> (sent, received)."""

    COUNT = 400

    def __init__(self, client: Host, addr: str) -> None:
        self.proc = client.popen(["ping", "-n", "-q", "-c", str(self.COUNT), "-i", "0.01",
                                  "-W", "1", addr], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self) -> tuple[int, int, str]:
        out, _ = self.proc.communicate(timeout=30)
        m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
        assert m, out
        return int(m.group(1)), int(m.group(2)), out


def _snapshot(d: Director) -> dict[str, Any]:
    i = d.instance()
    return {k: i[k] for k in ("state", "became_master", "released_master", "transitions")}


def _steady(lab: Lab) -> None:
    assert wait_for(lambda: lab.d1.state() == "MASTER", 20), lab.logs()
    assert wait_for(lambda: lab.d2.state() == "BACKUP", 10), lab.logs()
    assert wait_for(lambda: lab.client.run("ping", "-n", "-c", "1", "-W", "1", VIP,
                                           check=False).returncode == 0, 10), lab.logs()


def _held(h: Host, addr: str) -> bool:
    return any(a.split("/")[0] == addr for a in h.addresses())


def test_a_priority_change_that_still_wins_keeps_state_and_loses_nothing(lab: Lab) -> None:
    _steady(lab)
    before = {d.name: _snapshot(d) for d in (lab.d1, lab.d2)}
    lab.d1.write(120, (VIP, "192.0.2.102"))
    ping = Pinger(lab.client, VIP)
    lab.d1.reload()
    reloaded_while_pinging = ping.running()
    # the backup hears the master's new priority (it was adverted at once)
    assert wait_for(lambda: lab.d2.instance()["master_priority"] == 120, 10), lab.logs()
    sent, received, out = ping.finish()
    print(f"\n(a) priority 150->120 on the master: {sent - received} lost of {sent} pings")
    assert reloaded_while_pinging, "the ping run ended before the reload: not a valid check"
    assert sent == Pinger.COUNT and received == sent, out
    after = {d.name: _snapshot(d) for d in (lab.d1, lab.d2)}
    assert after == before, (before, after)
    i1 = lab.d1.instance()
    assert i1["base_priority"] == 120 and i1["effective_priority"] == 120
    assert "VRRP VI_1 updated in place" in lab.d1.log.read_text()


def test_b_vip_added_and_removed_without_transition(lab: Lab) -> None:
    _steady(lab)
    assert _held(lab.d1.host, "192.0.2.102") and not _held(lab.d1.host, "192.0.2.101")
    before = {d.name: _snapshot(d) for d in (lab.d1, lab.d2)}
    new_vips = (VIP, "192.0.2.101")
    lab.d2.write(lab.d2.priority, new_vips)
    lab.d1.write(lab.d1.priority, new_vips)
    ping = Pinger(lab.client, VIP)
    lab.d2.reload()
    lab.d1.reload()
    reloaded_while_pinging = ping.running()
    assert wait_for(lambda: _held(lab.d1.host, "192.0.2.101")
                    and not _held(lab.d1.host, "192.0.2.102"), 10), lab.d1.host.addresses()
    # the new VIP answers the client (GARP'ed by the master), the removed one does not
    assert lab.client.run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "192.0.2.101",
                          check=False).returncode == 0, lab.logs()
    sent, received, out = ping.finish()
    print(f"\n(b) +192.0.2.101 -192.0.2.102: {sent - received} lost of {sent} pings to {VIP}")
    assert reloaded_while_pinging, "the ping run ended before the reload: not a valid check"
    assert received == sent == Pinger.COUNT, out
    lab.client.run("ip", "neigh", "flush", "dev", "eth0", check=False)
    assert lab.client.run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "192.0.2.102",
                          check=False).returncode != 0
    assert not _held(lab.d2.host, "192.0.2.101") and not _held(lab.d2.host, VIP)
    after = {d.name: _snapshot(d) for d in (lab.d1, lab.d2)}
    assert after == before, (before, after)
    for d in (lab.d1, lab.d2):
        assert sorted(d.instance()["vips"]) == ["192.0.2.100/24", "192.0.2.101/24"]


def test_c_virtual_router_id_change_restarts_the_instance(lab: Lab) -> None:
    _steady(lab)
    old = lab.d1.instance()
    assert old["vrid"] == 51 and old["became_master"] >= 1
    vips = tuple(v.split("/")[0] for v in old["vips"])
    for d in (lab.d1, lab.d2):
        d.write(d.priority, vips, vrid=52)
    lab.d1.reload()
    lab.d2.reload()
    new = lab.d1.instance()
    assert new["vrid"] == 52
    # a restart: fresh counters, the first recorded transition is the new instance's startup
    assert new["transitions"][0]["reason"] == "startup", new["transitions"]
    assert new["released_master"] == 0
    assert wait_for(lambda: lab.d1.state() == "MASTER" and lab.d2.state() == "BACKUP",
                    20), lab.logs()
    # the backup's status shows the master once its report after the first advert is in
    assert wait_for(lambda: lab.d2.instance()["master_priority"] == lab.d1.priority, 5)
    assert lab.d2.instance()["vrid"] == 52
    assert _held(lab.d1.host, VIP) and not _held(lab.d2.host, VIP)
    for d in (lab.d1, lab.d2):
        assert "removed on reload" in d.log.read_text() and "added on reload" in d.log.read_text()


# ------------------------------------------------------------------------- sync group

GROUP_VIPS = {"VI_1": "192.0.2.100", "VI_2": "192.0.2.110", "VI_3": "192.0.2.120"}
VRIDS = {"VI_1": 51, "VI_2": 61, "VI_3": 71}


def group_config(name: str, prios: dict[str, int], members: tuple[str, ...],
                 extra_vips: dict[str, tuple[str, ...]] | None = None) -> str:
    blocks = []
    for inst in members:
        vips = (GROUP_VIPS[inst], *(extra_vips or {}).get(inst, ()))
        addrs = "\n".join(f"        {v}/24" for v in vips)
        blocks.append(f"""vrrp_instance {inst} {{
    state BACKUP
    interface eth0
    version 3
    virtual_router_id {VRIDS[inst]}
    priority {prios[inst]}
    advert_int 0.25
    virtual_ipaddress {{
{addrs}
    }}
}}
""")
    group = "\n".join(f"        {m}" for m in members)
    return f"""global_defs {{
    router_id {name}
    vrrp_garp_master_delay 0
    vrrp_garp_master_repeat 2
}}
vrrp_sync_group G {{
    group {{
{group}
    }}
}}
""" + "\n".join(blocks)


def _group_setup(d: Director, prio: int) -> None:
    d.priority = prio
    d.conf.write_text(group_config(d.name, dict.fromkeys(VRIDS, prio), ("VI_1", "VI_2")))


@pytest.fixture(scope="module")
def glab() -> Iterator[Lab]:
    with running_lab("lt-vrg", _group_setup) as lab:
        yield lab


def _instances(d: Director) -> dict[str, dict[str, Any]]:
    s = d.status()
    assert s is not None, d.text()
    return {i["name"]: i for i in s["instances"]}


def _states(d: Director) -> dict[str, str]:
    try:
        return {n: str(i["state"]) for n, i in _instances(d).items()}
    except AssertionError:
        return {}


def _group_snapshot(d: Director, names: tuple[str, ...]) -> dict[str, Any]:
    inst = _instances(d)
    return {n: {k: inst[n][k] for k in ("state", "became_master", "released_master",
                                        "transitions")} for n in names}


def test_d_sync_group_members_update_in_place_and_join_and_leave(glab: Lab) -> None:
    d1, d2 = glab.d1, glab.d2
    both = ("VI_1", "VI_2")
    assert wait_for(lambda: _states(d1) == dict.fromkeys(both, "MASTER"), 20), glab.logs()
    assert wait_for(lambda: _states(d2) == dict.fromkeys(both, "BACKUP"), 10), glab.logs()
    assert wait_for(lambda: glab.client.run("ping", "-n", "-c", "1", "-W", "1", VIP,
                                            check=False).returncode == 0, 10), glab.logs()
    before = {d.name: _group_snapshot(d, both) for d in (d1, d2)}
    # VI_2 priority changes (still wins), VI_1 gains a VIP, VI_3 joins the group
    members = ("VI_1", "VI_2", "VI_3")
    extra: dict[str, tuple[str, ...]] = {"VI_1": ("192.0.2.101",)}
    d1.conf.write_text(group_config("d1", {"VI_1": 150, "VI_2": 140, "VI_3": 150}, members,
                                    extra))
    d2.conf.write_text(group_config("d2", dict.fromkeys(VRIDS, 100), members, extra))
    ping = Pinger(glab.client, VIP)
    d2.reload()
    d1.reload()
    reloaded_while_pinging = ping.running()
    assert wait_for(lambda: _states(d1) == dict.fromkeys(members, "MASTER"), 20), glab.logs()
    assert wait_for(lambda: _states(d2) == dict.fromkeys(members, "BACKUP"), 10), glab.logs()
    assert wait_for(lambda: _held(d1.host, "192.0.2.101") and _held(d1.host, "192.0.2.120"),
                    10), d1.host.addresses()
    sent, received, out = ping.finish()
    print(f"\n(d) sync group update + VI_3 joins: {sent - received} lost of {sent} pings")
    assert reloaded_while_pinging, "the ping run ended before the reload: not a valid check"
    assert received == sent == Pinger.COUNT, out
    after = {d.name: _group_snapshot(d, both) for d in (d1, d2)}
    assert after == before, (before, after)
    i1 = _instances(d1)
    assert i1["VI_2"]["base_priority"] == 140 and i1["VI_3"]["sync_group"] == "G"
    assert wait_for(lambda: _instances(d2)["VI_2"]["master_priority"] == 140, 10)
    for addr in ("192.0.2.101", "192.0.2.120"):
        assert glab.client.run("ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", addr,
                               check=False).returncode == 0, addr
    # VI_3 leaves again: stopped (priority 0, its VIP removed); the others keep their state
    before = {d.name: _group_snapshot(d, both) for d in (d1, d2)}
    d2.conf.write_text(group_config("d2", dict.fromkeys(VRIDS, 100), both, extra))
    d1.conf.write_text(group_config("d1", {"VI_1": 150, "VI_2": 140, "VI_3": 150}, both,
                                    extra))
    d2.reload()
    d1.reload()
    assert wait_for(lambda: not _held(d1.host, "192.0.2.120"), 10), d1.host.addresses()
    assert set(_instances(d1)) == set(both) and set(_instances(d2)) == set(both)
    assert _states(d1) == dict.fromkeys(both, "MASTER")
    assert _states(d2) == dict.fromkeys(both, "BACKUP")
    after = {d.name: _group_snapshot(d, both) for d in (d1, d2)}
    assert after == before, (before, after)
    assert "VI_3) removed on reload" in d1.log.read_text()
