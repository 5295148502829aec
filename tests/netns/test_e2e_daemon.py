"""End to end: two real ``lvsd run`` processes (nftables data plane) in network namespaces.

Topology and configs are ``lvsd.demo.Lab`` (the demo's): d1 (priority 150) and d2 (100) share a
VRRP v3 instance holding the service VIP and the real servers' gateway; rs1..rs3 (rs4 joins on
reload) answer HTTP with their name; a client loop opens one connection per request through the
VIP, every 50 ms, each with a 0.5 s timeout. For every event the failed requests are counted and
printed; the assertions on loss are loose (bounds, not timings) and the functional outcome is
asserted exactly (who is master, which backends answer, what /status says).

The tests run in file order and share one lab; each starts by checking the state it needs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from conftest import require
from lvsd.demo import REAL_SERVERS, STATUS, Lab, wait_for
from lvsd.lab.netns import have_netns

pytestmark = pytest.mark.netns

REPORT: list[str] = []



@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require(have_netns())  # skip locally, fail in CI
    lab = Lab(tag="lt-e2e")
    try:
        lab.build()
        servers = {k: v for k, v in REAL_SERVERS.items() if k != "rs4"}
        for name in (*servers, "rs4"):
            lab.start_rs(name)
        lab.write_configs(servers)
        lab.start_director("d1")
        lab.start_director("d2")
        assert wait_for(lambda: lab.vrrp_state("d1") == "MASTER", 15), _logs(lab)
        lab.start_client()
        assert lab.wait_requests(20, 20), "client never succeeded through the VIP"
        yield lab
    finally:
        lab.close()
        print("\n== e2e: failed client requests per event ==")
        for line in REPORT:
            print(line)


def _logs(lab: Lab) -> str:
    return "\n".join(f"--- {d.name}\n{d.log()[-2500:]}" for d in lab.directors.values())


def _report(event: str, lab: Lab, t0: float, t1: float | None = None) -> tuple[int, int]:
    n, failed, per = lab.stats(t0, t1)
    line = f"{event:<44} {failed:>4} failed of {n:>4} requests  backends {per}"
    REPORT.append(line)
    print(line)
    return n, failed


def _ensure_d1_master(lab: Lab) -> None:
    for name in lab.directors:
        if not lab.directors[name].alive():
            lab.start_director(name)
    assert wait_for(lambda: lab.vrrp_state("d1") == "MASTER", 20), _logs(lab)
    assert wait_for(lambda: lab.vrrp_state("d2") == "BACKUP", 10), _logs(lab)
    assert lab.wait_requests(10, 20), "traffic did not recover"


def _lvsd(lab: Lab, director: str, *args: str) -> subprocess.CompletedProcess[str]:
    d = lab.directors[director]
    return d.host.run(sys.executable, "-m", "lvsd.cli", *args, check=False, timeout=60)


def test_ready_master_holds_vips_and_all_serve(lab: Lab) -> None:
    s1, s2 = lab.status("d1"), lab.status("d2")
    assert s1 is not None and s2 is not None
    assert s1["process"]["ready"] and s2["process"]["ready"]
    assert lab.holds_vip("d1") and not lab.holds_vip("d2")
    # both directors check and program their pool (keepalived's model)
    for s in (s1, s2):
        vs = s["virtual_servers"][0]
        assert vs["quorum_up"] and vs["alive"] == 3
        assert all(rs["in_dataplane"] for rs in vs["real_servers"])
    t0 = time.time()
    assert lab.wait_requests(30, 20)
    _, failed = _report("steady state", lab, t0)
    assert failed == 0
    _, _, per = lab.stats(t0)
    assert set(per) == {"rs1", "rs2", "rs3"}
    # the CLI renders the same state (ipvsadm-like table with health)
    out = _lvsd(lab, "d1", "status", "-s", STATUS)
    assert out.returncode == 0, out.stderr
    assert "MASTER" in out.stdout and "10.0.0.12:80" in out.stdout and "UP" in out.stdout


def test_real_server_killed_and_recovered(lab: Lab) -> None:
    _ensure_d1_master(lab)
    t0 = time.time()
    lab.kill_rs("rs2")
    assert wait_for(lambda: lab.rs_health("d1").get("rs2") is False, 15), _logs(lab)
    assert wait_for(lambda: lab.rs_health("d2").get("rs2") is False, 15)
    t_down = time.time()
    assert lab.wait_requests(20, 20)
    s = lab.status("d1")
    assert s is not None
    rs2 = next(r for r in s["virtual_servers"][0]["real_servers"] if r["address"] == "10.0.0.12")
    assert rs2["alive"] is False and not rs2["in_dataplane"] and rs2["failed_checkers"]
    _report("real server rs2 killed (until marked down)", lab, t0, t_down)
    t1 = time.time()
    time.sleep(1.0)
    n, failed = _report("rs2 down, pool without it", lab, t1)
    assert failed == 0 and n > 0
    assert "rs2" not in lab.stats(t1)[2]
    t2 = time.time()
    lab.start_rs("rs2")
    assert wait_for(lambda: lab.rs_health("d1").get("rs2") is True, 15), _logs(lab)
    assert wait_for(lambda: "rs2" in lab.stats(t2)[2], 10)
    _, failed = _report("rs2 recovered", lab, t2)
    assert failed <= 2
    _, failed_total = _report("rs2 kill+recover total", lab, t0)
    assert failed_total <= 40  # ~1/3 of requests for about one check interval, loosely


def test_reload_adds_and_removes_real_servers(lab: Lab) -> None:
    _ensure_d1_master(lab)
    before = {n: lab.status(n) for n in lab.directors}
    gens = {n: s["config"]["generation"] for n, s in before.items() if s}
    new = {k: v for k, v in REAL_SERVERS.items() if k != "rs3"}  # rs4 in, rs3 out
    lab.write_configs(new)
    t0 = time.time()
    for name in lab.directors:
        out = _lvsd(lab, name, "reload", "--pid-file", str(lab.directors[name].pidfile),
                    "-s", STATUS)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "reload applied" in out.stdout
    for name in lab.directors:
        s = lab.status(name)
        assert s is not None
        assert s["config"]["generation"] == gens[name] + 1 and s["config"]["last_reload_ok"]
    # VRRP kept its state across the reload (same instance): no transition at all
    for name in lab.directors:
        s, b = lab.status(name), before[name]
        assert s is not None and b is not None
        for k in ("state", "became_master", "released_master", "transitions"):
            assert s["instances"][0][k] == b["instances"][0][k], (name, k)
        assert s["instances"][0]["adverts_sent"] + s["instances"][0]["adverts_received"] > \
            b["instances"][0]["adverts_sent"] + b["instances"][0]["adverts_received"]
    assert wait_for(lambda: "rs4" in lab.stats(t0)[2], 15), _logs(lab)
    t1 = time.time()
    assert lab.wait_requests(30, 20)
    _, _, per = lab.stats(t1)
    assert set(per) == {"rs1", "rs2", "rs4"}, per
    _, failed = _report("reload: +rs4 -rs3", lab, t0)
    assert failed <= 3


def test_broken_reload_is_rejected_and_old_config_keeps_running(lab: Lab) -> None:
    _ensure_d1_master(lab)
    good = dict(lab.servers)
    before = {n: lab.status(n) for n in lab.directors}
    lab.write_configs(good, broken=True)
    t0 = time.time()
    try:
        for name in lab.directors:
            out = _lvsd(lab, name, "reload", "--pid-file", str(lab.directors[name].pidfile),
                        "-s", STATUS)
            assert out.returncode == 1, out.stdout + out.stderr
            assert "REJECTED" in out.stdout and "eht0" in out.stdout
        for name in lab.directors:
            s, b = lab.status(name), before[name]
            assert s is not None and b is not None
            assert s["config"]["last_reload_ok"] is False
            assert s["config"]["generation"] == b["config"]["generation"]
            assert any("eht0" in e for e in s["config"]["last_reload_errors"])
            assert [r["address"] for r in s["virtual_servers"][0]["real_servers"]] == \
                [r["address"] for r in b["virtual_servers"][0]["real_servers"]]
        assert lab.vrrp_state("d1") == "MASTER"
        assert lab.wait_requests(30, 20)
        _n, failed = _report("broken reload (rejected)", lab, t0)
        assert failed == 0
        assert set(lab.stats(t0)[2]) == set(good)
    finally:
        lab.write_configs(good)


def test_master_sigterm_hands_over(lab: Lab) -> None:
    _ensure_d1_master(lab)
    t0 = time.time()
    lab.signal_director("d1", signal.SIGTERM)
    rc = lab.wait_director_exit("d1", 15)
    assert rc == 0, _logs(lab)
    assert not lab.holds_vip("d1")  # VIPs removed on the way out
    # the pool stays programmed (lvs_flush_on_stop defaults to no): a restart adopts it
    table = lab.host("d1").run("nft", "-j", "list", "table", "inet", "lvsd", check=False)
    assert table.returncode == 0 and "10.0.0.11" in table.stdout, table.stderr
    assert wait_for(lambda: lab.vrrp_state("d2") == "MASTER", 10), _logs(lab)
    assert lab.holds_vip("d2")
    assert lab.wait_requests(20, 20)
    _, failed = _report("master d1 SIGTERM -> d2", lab, t0)
    assert failed <= 20
    t1 = time.time()
    lab.start_director("d1")
    assert wait_for(lambda: lab.vrrp_state("d1") == "MASTER", 20), _logs(lab)
    assert lab.wait_requests(20, 20)
    _, failed = _report("d1 restarted, pre-empts back", lab, t1)
    assert failed <= 20


def test_master_sigkill_fails_over(lab: Lab) -> None:
    _ensure_d1_master(lab)
    t0 = time.time()
    lab.signal_director("d1", signal.SIGKILL)
    lab.wait_director_exit("d1", 10)
    assert wait_for(lambda: lab.vrrp_state("d2") == "MASTER", 10), _logs(lab)
    assert lab.wait_requests(20, 20)
    _, failed = _report("master d1 SIGKILL -> d2", lab, t0)
    assert failed <= 40
    t1 = time.time()
    lab.start_director("d1")  # cleans the VIPs the killed process left behind, pre-empts
    assert wait_for(lambda: lab.vrrp_state("d1") == "MASTER", 20), _logs(lab)
    assert wait_for(lambda: not lab.holds_vip("d2"), 10)
    assert lab.wait_requests(20, 20)
    _, failed = _report("d1 restarted after SIGKILL", lab, t1)
    assert failed <= 40


def test_master_cut_off_the_wire_fails_over(lab: Lab) -> None:
    """A real data-path failure: d1's port on the bridge goes down (its lvsd keeps running)."""
    _ensure_d1_master(lab)
    t0 = time.time()
    lab.host("d1").cut()
    try:
        assert wait_for(lambda: lab.vrrp_state("d2") == "MASTER", 10), _logs(lab)
        assert lab.wait_requests(20, 20)
        _, failed = _report("master d1 cut off the wire -> d2", lab, t0)
        assert failed <= 60  # about one Master_Down_Interval (~0.85 s) of requests, loosely
    finally:
        lab.host("d1").heal()
    t1 = time.time()
    assert wait_for(lambda: lab.vrrp_state("d1") == "MASTER", 20), _logs(lab)
    assert wait_for(lambda: lab.vrrp_state("d2") == "BACKUP", 10)
    assert lab.wait_requests(20, 20)
    _, failed = _report("d1 back on the wire, pre-empts", lab, t1)
    assert failed <= 60


def test_keepalived_dump_signals(lab: Lab) -> None:
    """SIGUSR1 / SIGUSR2 / SIGRTMIN+2 write keepalived's data / stats / JSON files."""
    import json

    _ensure_d1_master(lab)
    d = lab.directors["d1"]
    out = d.conf.parent
    for f in ("keepalived.data", "keepalived_check.data", "keepalived.stats", "keepalived.json"):
        (out / f).unlink(missing_ok=True)
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN + 2):
        lab.signal_director("d1", sig)
    assert wait_for(lambda: all((out / f).exists() for f in (
        "keepalived.data", "keepalived_check.data", "keepalived.stats", "keepalived.json")), 10)
    data = (out / "keepalived.data").read_text()
    assert " VRRP Instance = VI_1\n" in data and "   State = MASTER\n" in data
    assert "   Virtual Router ID = 51\n" in data
    stats = (out / "keepalived.stats").read_text()
    assert stats.startswith("VRRP Instance: VI_1\n  Advertisements:\n    Received: ")
    assert "  Became master: " in stats
    js = json.loads((out / "keepalived.json").read_text())
    assert js[0]["data"]["iname"] == "VI_1" and js[0]["data"]["state"] == 2
    assert js[0]["stats"]["advert_sent"] > 0
    check = (out / "keepalived_check.data").read_text()
    assert "10.0.0.11" in check


def test_vrrp_only_and_check_only_halves(lab: Lab) -> None:
    """keepalived's --vrrp / --check: d2 runs one half at a time, as the backup."""
    _ensure_d1_master(lab)
    for flag, has_vrrp, has_pool in (("--vrrp-only", True, False), ("--check-only", False, True)):
        lab.signal_director("d2", signal.SIGTERM)
        assert lab.wait_director_exit("d2", 15) == 0
        lab.start_director("d2", extra=(flag,))
        s = lab.status("d2")
        assert s is not None and s["process"]["mode"] == flag[2:]
        assert bool(s["instances"]) is has_vrrp
        assert bool(s["virtual_servers"]) is has_pool
        assert (s["reconciler"]["dataplane"] == "nftables") is has_pool
        if has_vrrp:
            assert wait_for(lambda: lab.vrrp_state("d2") == "BACKUP", 10)
        assert lab.vrrp_state("d1") == "MASTER"
    lab.signal_director("d2", signal.SIGTERM)
    assert lab.wait_director_exit("d2", 15) == 0
    lab.start_director("d2")
    _ensure_d1_master(lab)
