"""The tutorial's LVS + keepalived config, verbatim, end to end in namespaces.

``../shared/corpus/keepalived/tutorial/lvs-keepalived.conf`` is copied unchanged. Topology (all
namespaces created here): a bridge; ``rs1`` 192.168.55.139 and ``rs2`` 192.168.55.137 on it,
each with a TCP listener on :80; the director with an ``ens33`` on the bridge holding
192.168.55.135/24 (router_id keep_135). ``lvsd run`` uses the memory data plane and the status
endpoint (read from inside the director's namespace).

What is asserted, in keepalived's terms:

* it starts although keepalived reports two ``Unknown keyword 'nb_get_retry'`` (ERRORs:
  keepalived logs them and runs), and those diagnostics are visible (log and /status);
* both real servers are in the pool (DR, weight 1);
* rs1's listener is killed (connection refused): the real server leaves the pool after exactly
  ``retry + 1`` refused attempts (lvsd applies ``nb_get_retry 2`` as ``retry 2``: 3 attempts;
  check/check_tcp.c tcp_epilog), each retry ``delay_before_retry`` (3 s) after the previous one.
  The attempts are counted on the wire at rs1 (SYN answered by RST, kernel timestamps) and cut
  at the ``realserver`` down event of ``/events``; no wall-clock bound on totals is asserted;
* without ``inhibit_on_failure`` it is removed, not kept at weight 0 (check/ipwrapper.c
  perform_svr_state: "Removing service ... from VS");
* the listener comes back and so does the real server.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kahost import HostSpec, HttpAgent, KaHost, corpus_files

from conftest import require
from lvsd.config.loader import load
from lvsd.lab.netns import Host, Topology, have_netns

pytestmark = [pytest.mark.netns, pytest.mark.interop]  # interop: keepalived -t on the file

TUTORIAL = next((p for p in corpus_files() if p.name == "lvs-keepalived.conf"), None)
DIRECTOR = "192.168.55.135"
RS1, RS2 = "192.168.55.139", "192.168.55.137"

# accept and close: a TCP_CHECK success; after SIGKILL the port refuses (RST)
_LISTENER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

# every TCP segment seen on an interface (both ways), with its kernel timestamp
_SNIFFER = r"""
import json, socket, struct, sys
SO_TIMESTAMPNS = 35
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: both ways
s.bind((sys.argv[1], 0))
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
print(json.dumps({"ready": True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(65535, 256)
    ts = None
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", raw[:16])
            ts = sec + nsec / 1e9
    ip = data[14:]
    if data[12:14] != b"\x08\x00" or len(ip) < 20 or ip[9] != 6:
        continue
    tcp = ip[(ip[0] & 15) * 4:]
    sport, dport = struct.unpack("!HH", tcp[:4])
    print(json.dumps({"t": ts, "src": socket.inet_ntoa(ip[12:16]),
                      "dst": socket.inet_ntoa(ip[16:20]), "sport": sport, "dport": dport,
                      "flags": tcp[13]}), flush=True)
"""
SYN, RST, ACK = 0x02, 0x04, 0x10
_MARK = "import socket, sys; socket.socket().connect_ex((sys.argv[1], int(sys.argv[2])))"


class Lines:
    """A process' stdout lines, collected by a thread (JSON decoded when possible)."""

    def __init__(self, proc: subprocess.Popen[str], parse: Callable[[str], Any]) -> None:
        self.proc = proc
        self.items: list[Any] = []
        self._cond = threading.Condition()
        self._parse = parse
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            item = self._parse(line)
            if item is not None:
                with self._cond:
                    self.items.append(item)
                    self._cond.notify_all()

    def wait_for(self, pred: Callable[[Any], bool], timeout: float) -> Any:
        """The first item matching ``pred`` (already seen or arriving), or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for it in self.items:
                    if pred(it):
                        return it
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cond.wait(min(left, 0.5))

    def snapshot(self) -> list[Any]:
        with self._cond:
            return list(self.items)


def _json(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


class SseParser:
    """Turns SSE lines into ``{"event": type, **data}`` dicts."""

    def __init__(self) -> None:
        self.kind: str | None = None

    def __call__(self, line: str) -> Any:
        line = line.rstrip("\n")
        if line.startswith("event: "):
            self.kind = line[7:]
        elif line.startswith("data: ") and self.kind:
            data = json.loads(line[6:])
            return {"event": self.kind, **data}
        return None


@dataclass
class Lab:
    topo: Topology
    director: KaHost
    conf: Path
    workdir: Path
    listeners: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    lvsd: subprocess.Popen[Any] | None = None
    stderr: Path | None = None
    agent: HttpAgent | None = None

    def listen(self, name: str) -> None:
        host = self.topo[name]
        proc = host.popen([sys.executable, "-I", "-c", _LISTENER, "80"], stdout=subprocess.PIPE,
                          text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        self.listeners[name] = proc

    def kill_listener(self, name: str) -> None:
        proc = self.listeners.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")[-6000:] if self.stderr else ""

    def status(self) -> dict[str, Any]:
        assert self.agent is not None
        st: dict[str, Any] = self.agent.get_json("/status")
        return st

    def real_server(self, addr: str) -> dict[str, Any]:
        vs = self.status()["virtual_servers"][0]
        rs: dict[str, Any] = next(r for r in vs["real_servers"] if r["address"] == addr)
        return rs

    def checker(self, addr: str) -> dict[str, Any]:
        ck: dict[str, Any] = next(c for c in self.status()["checkers"]
                                  if c["real_server"] == f"{addr}:80")
        return ck

    def until(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            assert self.lvsd is None or self.lvsd.poll() is None, "lvsd exited\n" + self.log()
            time.sleep(0.2)
        pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{self.log()}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require(have_netns())
    if TUTORIAL is None:
        require("tutorial config not found (../shared/corpus/keepalived/tutorial)")
    assert TUTORIAL is not None
    conf = tmp_path / "lvs-keepalived.conf"
    shutil.copyfile(TUTORIAL, conf)
    assert conf.read_bytes() == TUTORIAL.read_bytes()  # verbatim
    topo = Topology(tag="lt-tut")
    director: KaHost | None = None
    lab = None
    try:
        topo.add_host("rs1", f"{RS1}/24")
        topo.add_host("rs2", f"{RS2}/24")
        spec = HostSpec()
        spec.add_if("ens33")
        spec.add_addr("ens33", f"{DIRECTOR}/24")
        director = KaHost(spec, tag="lt-tut", wire_ns=topo.bridge_ns, bridge="br0")
        lab = Lab(topo, director, conf, tmp_path)
        yield lab
    finally:
        if lab is not None and lab.agent is not None:
            lab.agent.close()
        if lab is not None and lab.lvsd is not None and lab.lvsd.poll() is None:
            lab.lvsd.kill()
            lab.lvsd.wait(timeout=10)
        if director is not None:
            director.close()
        topo.close()


def _sniff(host: Host) -> Lines:
    proc = host.popen([sys.executable, "-I", "-c", _SNIFFER, "eth0"], stdout=subprocess.PIPE,
                      text=True, bufsize=1)
    lines = Lines(proc, _json)
    assert lines.wait_for(lambda p: p.get("ready"), 30), "sniffer did not start"
    return lines


def test_tutorial_config_end_to_end(lab: Lab) -> None:
    cfg = load(lab.conf)
    rs_cfg = cfg.virtual_servers[0].real_servers
    ck = rs_cfg[0].checkers[0]
    # the model lvsd runs: TCP_CHECK port 80, 5 s timeout, 3 s between retries, delay_loop 6
    # from the virtual server, no inhibit_on_failure; nb_get_retry 2 applied as retry 2
    assert (ck.connect_port, ck.connect_timeout, ck.delay_before_retry, ck.delay_loop) == \
        (80, 5.0, 3.0, 6.0)
    assert not rs_cfg[0].inhibit_on_failure
    assert ck.retry == 2, ck

    # keepalived itself runs this file on this host (two ERRORs, no fatal class)
    ka = lab.director.keepalived_t(lab.conf, lab.workdir)
    assert ka.runs, ka.describe()
    assert sum("Unknown keyword 'nb_get_retry'" in ln for ln in ka.lines) == 2, ka.describe()

    lab.listen("rs1")
    lab.listen("rs2")
    wire = _sniff(lab.topo["rs1"])
    lab.lvsd, lab.stderr = lab.director.start_lvsd(lab.conf, lab.workdir)
    lab.agent = lab.director.agent()
    assert lab.director.wait_ready(lab.lvsd, lab.agent), lab.log()
    events = Lines(lab.director.sse("/events?last_event_id=0"), SseParser())  # from event 1

    # the diagnostics are visible: keepalived's words and positions, in the log and /status
    log = lab.log()
    for line in (45, 60):
        assert f"{lab.conf}: Line {line}) Unknown keyword 'nb_get_retry'" in log, log
    diags = lab.status()["config"]["diagnostics"]
    unknown = sorted((d["line"], d["severity"]) for d in diags
                     if d["message"] == "Unknown keyword 'nb_get_retry'")
    assert unknown == [(45, "error"), (60, "error")], diags

    # both real servers checked up and in the pool (DR, weight 1)
    lab.until(lambda: all(lab.real_server(a)["alive"] is True for a in (RS1, RS2)), 60,
              "both real servers up")
    vs = lab.status()["virtual_servers"][0]
    assert vs["lb_kind"] == "DR" and vs["alive"] == 2
    for r in vs["real_servers"]:
        assert r["in_dataplane"] and r["dataplane_weight"] == 1, r

    # kill rs1's listener just after a successful check (the next one is delay_loop away)
    seen = lab.checker(RS1)["checks_total"]
    lab.until(lambda: lab.checker(RS1)["checks_total"] > seen, 60, "a fresh check of rs1")
    assert lab.checker(RS1)["last_result"] == "success"
    t_kill = time.time()
    lab.kill_listener("rs1")
    down = events.wait_for(lambda e: e["event"] == "realserver" and e["rs"] == f"{RS1}:80"
                           and e["alive"] is False, 90)
    assert down is not None, lab.log()
    t_down = down["at"]

    # the attempts on the wire between the kill and the down event: each one refused (RST).
    # The capture is a second stream: a marker connection (rs2 -> rs1:9) sent after the down
    # event and seen by the sniffer means every earlier segment has been read.
    lab.topo["rs2"].run(sys.executable, "-I", "-c", _MARK, RS1, "9")
    assert wire.wait_for(lambda p: p.get("dport") == 9 and p["t"] > t_down, 30), "no marker"
    pkts = [p for p in wire.snapshot() if "src" in p]
    syns = [p for p in pkts if p["src"] == DIRECTOR and p["dport"] == 80 and p["flags"] & SYN
            and not p["flags"] & ACK and t_kill < p["t"] <= t_down]
    rsts = {p["dport"] for p in pkts if p["src"] == RS1 and p["sport"] == 80
            and p["flags"] & RST}
    gaps = [round(b["t"] - a["t"], 3) for a, b in itertools.pairwise(syns)]
    print(f"\nrefused attempts before 'down': {len(syns)}, spacing {gaps} s")
    assert len(syns) == ck.retry + 1 == 3, (syns, lab.log())
    assert all(p["sport"] in rsts for p in syns), "an attempt was not refused"
    # retries follow delay_before_retry (from the end of the refused attempt: never sooner)
    assert all(g >= ck.delay_before_retry - 0.05 for g in gaps), gaps
    # the stream replays from the start: no down verdict for rs1 before the kill
    assert events.snapshot()[0]["id"] == 1
    assert all(e["at"] > t_kill for e in events.snapshot() if e["event"] == "realserver"
               and e["rs"] == f"{RS1}:80" and e["alive"] is False)

    # removed from the pool, not kept at weight 0 (no inhibit_on_failure); rs2 untouched
    lab.until(lambda: not lab.real_server(RS1)["in_dataplane"], 30, "rs1 removed")
    r1, r2 = lab.real_server(RS1), lab.real_server(RS2)
    assert r1["alive"] is False and r1["dataplane_weight"] is None, r1
    assert r2["alive"] is True and r2["in_dataplane"] and r2["dataplane_weight"] == 1, r2

    # the listener comes back, so does the real server
    lab.listen("rs1")
    up = events.wait_for(lambda e: e["event"] == "realserver" and e["rs"] == f"{RS1}:80"
                         and e["alive"] is True and e["id"] > down["id"], 90)
    assert up is not None, lab.log()
    lab.until(lambda: lab.real_server(RS1)["in_dataplane"], 30, "rs1 back in the pool")
    assert lab.real_server(RS1)["dataplane_weight"] == 1

    # a clean stop
    lab.lvsd.send_signal(signal.SIGTERM)
    assert lab.lvsd.wait(timeout=60) == 0, lab.log()
    assert "Traceback" not in lab.log()
