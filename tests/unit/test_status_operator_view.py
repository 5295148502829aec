"""What an operator looks for, end to end: ``ipvsadm -Ln``'s settings (scheduler flags,
persistence, forwarding method), ``--stats``/``--rate`` counters and connections in the
snapshot, ``/status``, ``lvsd status`` and ``/metrics``; the counters' decoding from the
kernel's netlink layout and from conntrack; failure classes; the reload reply's changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _status_sample import FakeProvider
from prometheus_client.parser import text_string_to_metric_families

from lvsd.checks.result import failure_class
from lvsd.config.changes import config_changes
from lvsd.config.loader import loads
from lvsd.daemon import Daemon, Options
from lvsd.dataplane import conntrack
from lvsd.dataplane.ipvs import decode_dest_message
from lvsd.dataplane.memory import MemoryDataPlane
from lvsd.pool.table import DestKey, DestStats, Fwd, ServiceKey
from lvsd.status.client import format_reload, format_status
from lvsd.status.metrics import make_registry, render
from lvsd.status.model import TrafficStats, to_dict

pytestmark = pytest.mark.unit


# ---- the kernel's netlink layout -> DestStats (IPVS itself runs only in the test VM) ---------

def _nla(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((-n) % 4)


def ipvs_dest_record(addr: str, port: int, *, fwd: int, weight: int, active: int,
                     inactive: int, stats64: dict[int, int], stats32: dict[int, int]) -> bytes:
    """A destination dump message laid out as the kernel writes it (net/netfilter/ipvs/
    ip_vs_ctl.c ip_vs_genl_fill_dest, ip_vs_genl_fill_stats64: u64 counters each after a PAD
    attribute; the 32-bit IPVS_DEST_ATTR_STATS beside them), written here byte by byte, not
    with lvsd's encoder. Kernel IPVS is only in the VM (tests/kernel, not booted by the unit
    layer): this record stands in for its answer and goes through the decoder
    IPVSDataPlane.dump/stats use (decode_dest_message)."""
    u32 = lambda k, v: _nla(k, struct.pack("=I", v))  # noqa: E731
    u16 = lambda k, v: _nla(k, struct.pack("=H", v))  # noqa: E731
    s64 = b"".join(_nla(11, b"") + _nla(k, struct.pack("=Q", v)) for k, v in stats64.items())
    s32 = b"".join(u32(k, v) for k, v in stats32.items())
    inner = (_nla(1, socket.inet_pton(socket.AF_INET, addr) + b"\0" * 12)  # ADDR (16 bytes)
             + _nla(2, struct.pack("!H", port))                              # PORT, big-endian
             + u32(3, fwd) + u32(4, weight)                                  # FWD, WEIGHT
             + _nla(13, b"\0") + _nla(14, b"\0\0") + u16(15, 0)              # TUN_*
             + u32(5, 0) + u32(6, 0)                                         # U/L_THRESH
             + u32(7, active) + u32(8, inactive) + u32(9, 0)                 # ACTIVE INACT PERSIST
             + u16(11, socket.AF_INET)                                       # ADDR_FAMILY
             + _nla(10 | 0x8000, s32) + _nla(12 | 0x8000, s64))              # STATS, STATS64
    body = struct.pack("=BBH", 1, 1, 0) + _nla(2 | 0x8000, inner)          # genl + ATTR_DEST
    return struct.pack("=IHHII", 16 + len(body), 0x20, 2, 7, 0) + body


KERNEL64 = {1: 120, 2: 3000, 3: 2800, 4: 240000, 5: 4800000, 6: 3, 7: 50, 8: 45, 9: 4000,
            10: 80000}
RS1_STATS = TrafficStats(conns=120, inpkts=3000, outpkts=2800, inbytes=240000,
                         outbytes=4800000, cps=3, inpps=50, outpps=45, inbps=4000, outbps=80000)


def test_netlink_record_decodes_to_ipvsadm_stats_and_rates() -> None:
    # the 32-bit block differs: the 64-bit one (what ipvsadm reads too) must win
    msg = ipvs_dest_record("10.0.0.1", 80, fwd=3, weight=3, active=7, inactive=2,
                           stats64=KERNEL64, stats32={k: 1 for k in KERNEL64})
    got = decode_dest_message(msg, 4)
    assert got is not None
    d, st = got
    assert (d.key, d.fwd, d.weight) == (DestKey("10.0.0.1", 80), Fwd.DROUTE, 3)
    assert (st.active_conns, st.inactive_conns) == (7, 2)
    assert TrafficStats(*(getattr(st, f) for f in TrafficStats.__dataclass_fields__)) \
        == RS1_STATS


# ---- conntrack -> connections (the nftables data plane) -------------------------------------

SVC = ServiceKey.for_addr("192.0.2.10", 80, 6)
USVC = ServiceKey.for_addr("192.0.2.10", 53, 17)
SVC6 = ServiceKey.for_addr("fd00:1::10", 80, 6)
#: lines of /proc/net/nf_conntrack as the kernel writes them (each split here only to fit)
CONNTRACK = [
    ('ipv4     2 tcp      6 431999 ESTABLISHED src=198.51.100.2 dst=192.0.2.10 '
     'sport=40001 dport=80 src=10.0.0.1 dst=198.51.100.2 sport=8080 dport=40001 '
     '[ASSURED] mark=0 zone=0 use=2'),
    ('ipv4     2 tcp      6 431998 ESTABLISHED src=198.51.100.2 dst=192.0.2.10 '
     'sport=40002 dport=80 src=10.0.0.1 dst=198.51.100.2 sport=8080 dport=40002 '
     '[ASSURED] mark=0 zone=0 use=2'),
    ('ipv4     2 tcp      6 110 TIME_WAIT src=198.51.100.2 dst=192.0.2.10 '
     'sport=40003 dport=80 src=10.0.0.2 dst=198.51.100.2 sport=8080 dport=40003 '
     '[ASSURED] mark=0 zone=0 use=2'),
    ('ipv4     2 tcp      6 58 SYN_RECV src=198.51.100.3 dst=192.0.2.10 sport=40004 '
     'dport=80 src=10.0.0.2 dst=198.51.100.3 sport=8080 dport=40004 mark=0 zone=0 '
     'use=2'),
    ('ipv4     2 udp      17 29 src=198.51.100.2 dst=192.0.2.10 sport=5353 dport=53 '
     '[UNREPLIED] src=10.0.0.1 dst=198.51.100.2 sport=53 dport=5353 mark=0 zone=0 '
     'use=2'),
    ('ipv4     2 tcp      6 431999 ESTABLISHED src=198.51.100.2 dst=198.51.100.1 '
     'sport=22 dport=50000 src=198.51.100.1 dst=198.51.100.2 sport=50000 dport=22 '
     '[ASSURED] mark=0 zone=0 use=2'),
    ('ipv6     10 tcp      6 431999 ESTABLISHED '
     'src=fd00:0001:0000:0000:0000:0000:0000:0002 '
     'dst=fd00:0001:0000:0000:0000:0000:0000:0010 sport=40005 dport=80 '
     'src=fd00:0002:0000:0000:0000:0000:0000:0011 '
     'dst=fd00:0001:0000:0000:0000:0000:0000:0002 sport=8080 dport=40005 [ASSURED] '
     'mark=0 zone=0 use=2'),
    'garbage line',
]


def test_conntrack_counts_connections_as_ipvs_does() -> None:
    from lvsd.pool.table import DestSpec, ServiceEntry, ServiceSpec

    def entry(key: ServiceKey, *dests: tuple[str, int]) -> ServiceEntry:
        return ServiceEntry(ServiceSpec(key, "rr"),
                            {DestKey(a, p): DestSpec(DestKey(a, p)) for a, p in dests})

    fwm = ServiceKey.for_fwmark(7)
    table = {SVC: entry(SVC, ("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 8080)),
             USVC: entry(USVC, ("10.0.0.1", 53)),
             SVC6: entry(SVC6, ("fd00:2::11", 8080)),
             fwm: entry(fwm, ("10.0.0.1", 8080))}
    got = conntrack.count(CONNTRACK, table)
    # ESTABLISHED is active; TIME_WAIT, SYN_RECV and any UDP entry are inactive
    assert got[(SVC, DestKey("10.0.0.1", 8080))] == DestStats(2, 0, counters=False)
    assert got[(SVC, DestKey("10.0.0.2", 8080))] == DestStats(0, 2, counters=False)
    assert got[(SVC, DestKey("10.0.0.3", 8080))] == DestStats(0, 0, counters=False)
    assert got[(USVC, DestKey("10.0.0.1", 53))] == DestStats(0, 1, counters=False)
    assert got[(SVC6, DestKey("fd00:2::11", 8080))] == DestStats(1, 0, counters=False)
    # a fwmark service cannot be matched: no value at all (a drain there runs its full time)
    assert not any(k == fwm for k, _ in got)
    assert conntrack.count(CONNTRACK, {}) == {}


# ---- failure classes -------------------------------------------------------------------------

@pytest.mark.parametrize(("reason", "cls"), [
    ("timeout after 3000 ms (connecting)", "timeout"), ("refused", "refused"),
    ("reset", "reset"), ("host unreachable", "unreachable"),
    ("TLS error: CERTIFICATE_VERIFY_FAILED", "tls"), ("HTTP 503", "http_status"),
    ("digest mismatch (got 0123)", "content"), ("no reply: timeout after 500 ms", "timeout"),
    ("script exit 1", "script"), ("script timeout after 2000 ms", "script"),
    ("local error: too many open files (EMFILE)", "local"), ("rcode SERVFAIL", "content"),
    ("something new", "other")])
def test_failure_classes(reason: str, cls: str) -> None:
    assert failure_class(reason) == cls


def test_tracker_counts_failed_attempts_by_class() -> None:
    import random

    from lvsd.checks.result import ProbeResult
    from lvsd.checks.tracker import CheckTracker
    from lvsd.config.model import NOPOS, Checker, CheckKind

    ck = Checker(pos=NOPOS, kind=CheckKind.TCP_CHECK, connect_ip="10.0.0.1", connect_port=80,
                 retry=1, delay_loop=5.0, delay_before_retry=1.0, connect_timeout=1.0)
    t = CheckTracker(ck, 0.0, random.Random(1))
    for i, r in enumerate(["refused", "timeout after 1000 ms", "refused", None, "reset"]):
        t.on_result(ProbeResult(r is None, r or "ok"), float(i))
    assert t.failures == {"refused": 2, "timeout": 1, "reset": 1}  # successes are not counted


# ---- rendering -------------------------------------------------------------------------------

def test_status_text_shows_ipvsadm_settings_connections_and_counters() -> None:
    doc = to_dict(FakeProvider()())
    text = format_status(doc)
    lines = text.splitlines()
    assert "router_id lvs-a (config id lvs1)" in lines[0]
    assert ("TCP 192.0.2.100:80 wlc (sh-fallback) persistent 300 mask 255.255.255.0  "
            "[quorum up 1/1 sorry 10.0.0.99:80]") in lines
    rs1 = next(x for x in lines if x.startswith("  -> 10.0.0.11:80")).split()
    assert rs1[2:7] == ["Masq", "3", "4", "1", "UP"]
    rs3 = next(x for x in lines if x.startswith("  -> [fd00::13]:8080")).split()
    assert rs3[2:6] == ["Masq", "1", "0", "2"]

    stats = format_status(doc, "stats").splitlines()
    head = next(x for x in stats if x.startswith("Prot")).split()
    assert head[-5:] == ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]
    svc = next(x for x in stats if x.startswith("TCP 192.0.2.100:80")).split()
    assert svc[-5:] == ["43", "900", "800", "64000", "1200000"]
    assert next(x for x in stats if "10.0.0.11:80" in x).split()[-5:] == [
        "41", "900", "800", "64000", "1200000"]
    assert next(x for x in stats if "10.0.0.12:80" in x).split()[-5:] == ["-"] * 5
    rate = format_status(doc, "rate").splitlines()
    head = next(x for x in rate if x.startswith("Prot")).split()
    assert head[-5:] == ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]
    assert next(x for x in rate if "10.0.0.11:80" in x).split()[-5:] == [
        "2", "30", "25", "2100", "40000"]


def test_reload_reply_says_what_changed() -> None:
    applied = {"ok": True, "generation": 4, "diagnostics": {"error": 1, "warning": 2},
               "warnings": ["(x.conf: Line 3) w"],
               "changes": ["virtual_server 192.0.2.10:80/TCP: real_server 10.0.0.3:80 added"]}
    out = format_reload(applied, "router_id lvs1")
    assert out[0] == ("reload applied: router_id lvs1 generation 4 "
                      "(diagnostics: 1 error(s), 2 warning(s))")
    assert out[1:] == ["  changed:",
                       "    virtual_server 192.0.2.10:80/TCP: real_server 10.0.0.3:80 added",
                       "  warning: (x.conf: Line 3) w"]
    assert format_reload({**applied, "changes": [], "warnings": []})[1] == "  nothing changed"
    rejected = format_reload({"ok": False, "generation": 4, "errors": ["bad"]})
    assert rejected == ["reload REJECTED, the previous config keeps running (generation 4):",
                        "  bad"]


BASE = """global_defs {
  router_id a
}
vrrp_instance VI_1 {
  interface lo
  virtual_router_id 5
  priority 100
  authentication {
    auth_type PASS
    auth_pass s3cr3t1
  }
  virtual_ipaddress {
    192.0.2.1
  }
}
virtual_server 192.0.2.10 80 {
  protocol TCP
  lb_algo rr
  real_server 10.0.0.1 80 {
    weight 2
  }
  real_server 10.0.0.2 80 {
    weight 1
  }
}
"""


def test_config_changes_name_what_a_reload_changes() -> None:
    new = (BASE.replace("weight 2", "weight 5").replace("real_server 10.0.0.2", "real_server "
                                                        "10.0.0.3")
           .replace("lb_algo rr", "lb_algo wrr\n  persistence_timeout 60")
           .replace("priority 100", "priority 90").replace("s3cr3t1", "s3cr3t2")
           .replace("router_id a", "router_id b"))
    vs = "virtual_server 192.0.2.10:80/TCP"
    got = config_changes(loads(BASE), loads(new))
    assert set(got) == {
        "global_defs: router_id a -> b",
        f"{vs}: lb_algo rr -> wrr, persistence_timeout none -> 60",
        f"{vs}: real_server 10.0.0.3:80 added",
        f"{vs}: real_server 10.0.0.2:80 removed",
        f"{vs}: real_server 10.0.0.1:80: weight 2 -> 5",
        "vrrp_instance VI_1: priority 100 -> 90, auth_pass",  # a secret: named, never shown
    }
    assert not any("s3cr3t" in line for line in got)
    # only lines moved: nothing changed
    assert config_changes(loads(BASE), loads("\n\n" + BASE)) == ()


# ---- the daemon: netlink counters and the data plane's settings in every output -------------

CONF = """global_defs {
  router_id director-a
}
virtual_server 192.0.2.10 80 {
  protocol TCP
  lb_algo sh
  sh-port
  lb_kind DR
  persistence_timeout 600
  persistence_granularity 255.255.255.0
  real_server 10.0.0.1 80 {
    weight 3
  }
  real_server 10.0.0.2 80 {
    weight 1
  }
}
"""


async def _until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(1000):  # a bound for a hang, not a timing assertion
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def _run_daemon(path: Path, body: Callable[[Daemon], Awaitable[None]]) -> None:
    async def main() -> None:
        d = Daemon(Options(config_file=str(path), dataplane="memory", status_listen=None,
                           mode="check-only", sweep_interval=0.2))
        run = asyncio.create_task(d.run())
        try:
            await _until(lambda: d.ready or run.done(), "daemon ready")
            assert d.ready, run.result()
            await body(d)
        finally:
            d._stop.set()  # what SIGTERM does (a real signal would hit the test runner too)
            assert await asyncio.wait_for(run, 30) == 0

    asyncio.run(main())


def test_kernel_counters_reach_snapshot_cli_and_metrics(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    record = ipvs_dest_record("10.0.0.1", 80, fwd=3, weight=3, active=7, inactive=2,
                              stats64=KERNEL64, stats32={})
    decoded = decode_dest_message(record, 4)
    assert decoded is not None
    rs1_dest, rs1_stats = decoded

    async def kernel_stats(self: MemoryDataPlane) -> dict[tuple[ServiceKey, DestKey], DestStats]:
        # kernel IPVS stands here (only the VM has it): the memory data plane's table, with the
        # counters of the netlink record above for the destination it describes
        return {(k, d): rs1_stats for k, e in self.table.items() for d in e.dests
                if d == rs1_dest.key}

    monkeypatch.setattr(MemoryDataPlane, "stats", kernel_stats)
    path = tmp_path / "lvsd.conf"
    path.write_text(CONF)

    async def body(d: Daemon) -> None:
        await _until(lambda: d.snapshot().virtual_servers[0].stats is not None, "counters read")
        snap = d.snapshot()
        vs = snap.virtual_servers[0]
        rs = {r.address: r for r in vs.real_servers}
        # ipvsadm -Ln: the data plane's service settings and forwarding method
        assert (vs.scheduler, vs.flags, vs.persistence_timeout, vs.persistence_granularity) \
            == ("sh", ("sh-port",), 600, "255.255.255.0")
        assert rs["10.0.0.1"].forward == rs["10.0.0.2"].forward == "Route"
        # --stats / --rate and the connections, per server and summed per service
        assert (rs["10.0.0.1"].active_conns, rs["10.0.0.1"].inactive_conns) == (7, 2)
        assert rs["10.0.0.1"].stats == RS1_STATS
        assert rs["10.0.0.2"].stats is None and rs["10.0.0.2"].active_conns is None
        assert (vs.active_conns, vs.inactive_conns, vs.stats) == (7, 2, RS1_STATS)

        doc = json.loads(json.dumps(to_dict(snap)))  # what GET /status serves
        text = format_status(doc)
        assert "TCP 192.0.2.10:80 sh (sh-port) persistent 600 mask 255.255.255.0  [quorum" \
            in text
        assert next(x for x in text.splitlines() if "10.0.0.1:80" in x).split()[2:6] == [
            "Route", "3", "7", "2"]
        assert next(x for x in format_status(doc, "rate").splitlines()
                    if "10.0.0.1:80" in x).split()[-5:] == ["3", "50", "45", "4000", "80000"]

        metrics = render(make_registry(d.snapshot)).decode()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(metrics) for s in f.samples}
        lab = (("real_server", "10.0.0.1:80"), ("virtual_server", "192.0.2.10:80/TCP"))
        assert samples[("lvsd_real_server_connections_total", lab)] == 120
        assert samples[("lvsd_real_server_bytes_total", (("direction", "out"), *lab))] \
            == 4800000
        assert samples[("lvsd_real_server_inactive_connections", lab)] == 2
        assert samples[("lvsd_virtual_server_packets_total",
                        (("direction", "in"), ("virtual_server", "192.0.2.10:80/TCP")))] == 3000

    _run_daemon(path, body)


# ---- a real `lvsd run` on the memory data plane: status, metrics, the reload reply ----------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lvsd.cli", *args], capture_output=True,
                          text=True, timeout=90, check=False)


@pytest.fixture
def lvsd_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF)
    port = _free_port()
    log = tmp_path / "lvsd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only",
             "--dataplane", "memory", "--status-listen", f"127.0.0.1:{port}",
             "--pid-file", str(tmp_path / "lvsd.pid"), "--dump-dir", str(tmp_path),
             "--sweep", "1"], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc, tmp_path, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return str(r.read().decode())


def _status_when(port: int, proc: subprocess.Popen[bytes], pred: Callable[[dict[str, Any]], bool]
                 ) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # a bound for a hang on a busy machine
    last: dict[str, Any] | str = "unreachable"
    while time.monotonic() < deadline:
        assert proc.poll() is None, "lvsd run exited"
        try:
            last = json.loads(_get(port, "/status"))
            assert isinstance(last, dict)
            if pred(last):
                return last
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"condition never met; last status {last}")


def test_lvsd_run_status_metrics_and_reload_reply(
        lvsd_run: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    proc, tmp, port = lvsd_run
    s = _status_when(port, proc, lambda s: s["process"]["ready"])
    vs = s["virtual_servers"][0]
    # read back from the (memory) data plane's table, as ipvsadm -Ln shows it
    assert (vs["flags"], vs["persistence_timeout"], vs["persistence_granularity"]) == (
        ["sh-port"], 600, "255.255.255.0")
    assert {r["forward"] for r in vs["real_servers"]} == {"Route"}
    assert vs["stats"] is None and vs["active_conns"] is None  # memory: no counters

    out = _cli("status", "-s", f"127.0.0.1:{port}")
    assert out.returncode == 0, out.stderr
    assert "sh (sh-port) persistent 600 mask 255.255.255.0" in out.stdout
    out = _cli("status", "--stats", "-s", f"127.0.0.1:{port}")
    assert out.returncode == 0 and "InBytes" in out.stdout, out.stdout + out.stderr

    # the standard process collector, about the daemon's own process
    samples = {s.name: s.value for f in text_string_to_metric_families(_get(port, "/metrics"))
               for s in f.samples}
    with open(f"/proc/{proc.pid}/stat") as fh:
        ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as fh:
        btime = next(int(x.split()[1]) for x in fh if x.startswith("btime"))
    assert samples["process_start_time_seconds"] == pytest.approx(
        btime + ticks / os.sysconf("SC_CLK_TCK"), abs=2)
    assert samples["process_resident_memory_bytes"] > 10 * 2**20  # a Python daemon
    assert samples["process_open_fds"] >= 3

    # the reload reply: generation, diagnostics counts and what changed
    conf = tmp / "keepalived.conf"
    conf.write_text(CONF.replace("weight 3", "weight 4").replace(
        "persistence_timeout 600", "persistence_timeout 900"))
    out = _cli("reload", "--pid-file", str(tmp / "lvsd.pid"), "-s", f"127.0.0.1:{port}")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("reload applied: ") and "generation 2" in lines[0]
    assert "(diagnostics: 0 error(s), 0 warning(s))" in lines[0]
    vsname = "virtual_server 192.0.2.10:80/TCP"
    assert f"    {vsname}: persistence_timeout 600 -> 900" in lines
    assert f"    {vsname}: real_server 10.0.0.1:80: weight 3 -> 4" in lines
    s = _status_when(port, proc, lambda s: s["virtual_servers"][0]["persistence_timeout"] == 900)
    assert s["config"]["generation"] == 2

    # a reload that changes nothing says so
    out = _cli("reload", "--pid-file", str(tmp / "lvsd.pid"), "-s", f"127.0.0.1:{port}")
    assert out.returncode == 0 and "  nothing changed" in out.stdout.splitlines(), out.stdout
