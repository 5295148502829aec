"""Established connections survive a director failover and the failback: IPVS connection sync
driven by ``lvs_sync_daemon``, on REAL kernel IPVS, in the VM.

The lab (network namespaces on one bridge, all inside the VM): two directors d1 (priority 150)
and d2 (100), each running ``lvsd run --dataplane ipvs`` on its own namespace's kernel IPVS, one
VRRP instance holding the service VIP 192.0.2.100 and the NAT real servers' gateway 10.0.0.254
(the inside VIP moves with the outside one: conf/nat's pattern), ``lvs_sync_daemon eth0 VI_1``
(lvsd's default mode: a backup sync daemon on both, a master one on the master). Two DR real
servers (192.0.2.21/22, VIP on lo, port 7000) and two NAT ones (10.0.0.11/12, port 7001) echo
what they get. The client holds long-lived TCP connections through the VIP, half DR, half NAT,
each sending a line every 100 ms and reading its echo.

The scenario, each step asserted on every connection:

1. d1 MASTER; 50 connections through it. The backup's kernel table (``ipvsadm -Lnc`` in d2)
   holds every one of them (the time it took is reported).
2. SIGKILL of d1's lvsd. d2 becomes MASTER; once the client's and the NAT servers' ARP entries
   point at d2 (its gratuitous ARPs), every connection goes on through d2 (d1's kernel, still
   running, no longer sees their packets).
3. While d2 is master, 10 more connections are opened (through d2). d1's kernel learns them
   (its backup daemon kept running after its lvsd died).
4. d1's lvsd starts again, adopts its kernel's sync daemons, preempts: every connection (the
   60) goes on through d1.
5. The control, same lab: a reload drops ``lvs_sync_daemon`` on both (the daemons stop), 10
   new connections are opened through d1, d1's lvsd is SIGKILLed again: the 60 synced earlier
   go on through d2, the 10 new ones are lost (reset by d2, which has no entry for them). So
   the test fails when sync does not work.

Figures (sync delay, failover times, connections lost) go to ``$LVSD_VM_OUT/conn_sync.report``.
Waits are bounded (generous under emulation), never timed assertions.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lvsd.lab.netns import Host, Topology

VIP, GW_VIP = "192.0.2.100", "10.0.0.254"
DR_PORT, NAT_PORT = 7000, 7001
DIRECTORS = {"d1": ("192.0.2.1/24", "10.0.0.1/24", 150), "d2": ("192.0.2.2/24", "10.0.0.2/24", 100)}
DR_RS = {"drs1": "192.0.2.21", "drs2": "192.0.2.22"}
NAT_RS = {"nrs1": "10.0.0.11", "nrs2": "10.0.0.12"}
STATUS = "127.0.0.1:9330"
N_CONNS = 50  # held through the failover (half DR, half NAT)
N_DURING = 10  # opened while d2 is master
INTERVAL = 0.1  # a line per connection every 100 ms
WAIT = 60.0  # bound of every wait (the emulated guest is slow)
REPORT: list[str] = []

ECHO = r"""
import asyncio, sys
async def echo(r, w):
    try:
        while data := await r.read(4096):
            w.write(data)
            await w.drain()
    except ConnectionError:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(echo, "0.0.0.0", int(sys.argv[1]), backlog=256)
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


def config(name: str, prio: int, sync: bool) -> str:
    dr = "".join(f"    real_server {a} {DR_PORT} {{\n        weight 1\n    }}\n"
                 for a in DR_RS.values())
    nat = "".join(f"    real_server {a} {NAT_PORT} {{\n        weight 1\n    }}\n"
                  for a in NAT_RS.values())
    return f"""global_defs {{
    router_id {name}
    vrrp_version 3
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 2
{"    lvs_sync_daemon eth0 VI_1" if sync else ""}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {prio}
    advert_int 0.4
    virtual_ipaddress {{
        {VIP}/32
        {GW_VIP}/32
    }}
}}
virtual_server {VIP} {DR_PORT} {{
    lb_algo rr
    lb_kind DR
    protocol TCP
{dr}}}
virtual_server {VIP} {NAT_PORT} {{
    lb_algo rr
    lb_kind NAT
    protocol TCP
{nat}}}
"""


def wait_for(pred: Callable[[], Any], timeout: float = WAIT, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------- the client's connections


class Conn:
    def __init__(self, sock: socket.socket, port: int) -> None:
        self.sock = sock
        self.port = port  # the VIP port: DR or NAT
        self.local = sock.getsockname()[1]
        self.received = 0
        self.error: str | None = None
        self.next_send = 0.0


class Client:
    """Connections from the client namespace, each sending a line every ``INTERVAL`` and
    counting the bytes echoed back; a reset or EOF marks a connection lost (kept so)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.conns: list[Conn] = []
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def open(self, n: int) -> list[Conn]:
        from pyroute2.netns import create_socket

        out = []
        for i in range(n):
            port = DR_PORT if i % 2 == 0 else NAT_PORT
            s = create_socket(self.ns, socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect((VIP, port))
            s.setblocking(False)
            c = Conn(s, port)
            c.next_send = time.monotonic() + INTERVAL * (i % 10) / 10
            out.append(c)
        with self._lock:
            for c in out:
                self._sel.register(c.sock, selectors.EVENT_READ, c)
            self.conns += out
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                conns = list(self.conns)
            for c in conns:
                if c.error is None and now >= c.next_send:
                    c.next_send = now + INTERVAL
                    try:
                        c.sock.send(b"line\n")
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        self._lost(c, f"send: {exc}")
            with self._lock:
                events = self._sel.select(0.02) if self._sel.get_map() else []
            for key, _ in events:
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self._lost(c, f"recv: {exc}")
                    continue
                if not data:
                    self._lost(c, "closed by peer")
                else:
                    c.received += len(data)
            if not events:
                time.sleep(0.01)

    def _lost(self, c: Conn, why: str) -> None:
        c.error = why
        with self._lock, contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(c.sock)

    def marks(self, conns: list[Conn]) -> dict[int, int]:
        return {id(c): c.received for c in conns}

    def progressed(self, conns: list[Conn], since: dict[int, int], lines: int = 3) -> bool:
        """Every connection got ``lines`` more echoed lines since ``since`` (or is lost)."""
        return all(c.error is not None or c.received >= since[id(c)] + 5 * lines
                   for c in conns)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for c in self.conns:
            c.sock.close()


# ---------------------------------------------------------------- the lab


class SyncLab:
    def __init__(self) -> None:
        self.topo = Topology("lt-csync")
        self.work = Path(tempfile.mkdtemp(prefix="lvsd-csync-"))
        self.procs: dict[str, subprocess.Popen[Any]] = {}
        self.client: Client | None = None

    def build(self) -> None:
        t = self.topo
        for name, (front, back, _) in DIRECTORS.items():
            t.add_host(name, front, back, forwarding=True)
        for name, addr in DR_RS.items():
            h = t.add_host(name, f"{addr}/24")
            h.run("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1",
                  "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.eth0.arp_ignore=1",
                  "net.ipv4.conf.eth0.arp_announce=2")
            h.run("ip", "addr", "add", f"{VIP}/32", "dev", "lo")
            self._echo(h, DR_PORT)
        for name, addr in NAT_RS.items():
            h = t.add_host(name, f"{addr}/24")
            h.run("ip", "route", "add", "default", "via", GW_VIP, "dev", "eth0", "onlink")
            self._echo(h, NAT_PORT)
        t.add_host("client", "192.0.2.50/24")
        self.client = Client(t["client"].ns)

    def _echo(self, h: Host, port: int) -> None:
        p = h.popen([sys.executable, "-c", ECHO, str(port)], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def write_config(self, sync: bool) -> None:
        for name, (_, _, prio) in DIRECTORS.items():
            (self.work / f"{name}.conf").write_text(config(name, prio, sync))

    def start(self, name: str) -> None:
        d = self.work
        notify = d / f"{name}.notify"
        with contextlib.suppress(OSError):
            notify.unlink()
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(str(notify))
        ns.settimeout(0.5)
        env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONUNBUFFERED="1")
        with open(d / f"{name}.log", "a") as out:
            self.procs[name] = self.topo[name].popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(d / f"{name}.conf"),
                 "--dataplane", "ipvs", "--status-listen", STATUS,
                 "--pid-file", str(d / f"{name}.pid"), "--sweep", "2",
                 "--stop-timeout", "5", "--dump-dir", str(d)],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            got = b""
            deadline = time.monotonic() + 300
            while b"READY=1" not in got:
                assert time.monotonic() < deadline and self.procs[name].poll() is None, \
                    f"lvsd on {name} did not become ready:\n{self.log(name)}"
                with contextlib.suppress(TimeoutError):
                    got += ns.recv(4096)
        finally:
            ns.close()

    def kill(self, name: str) -> None:
        p = self.procs[name]
        p.send_signal(signal.SIGKILL)
        p.wait(30)

    def log(self, name: str) -> str:
        try:
            return (self.work / f"{name}.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)}" for n in DIRECTORS)

    def status(self, name: str) -> dict[str, Any] | None:
        from pyroute2.netns import create_socket

        host, port = STATUS.split(":")
        try:
            s = create_socket(self.topo[name].ns, socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((host, int(port)))
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.sock = s
            conn.request("GET", "/status")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            out: dict[str, Any] = json.loads(body)
            return out if resp.status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def state(self, name: str) -> str | None:
        s = self.status(name)
        return str(s["instances"][0]["state"]) if s and s.get("instances") else None

    def mac(self, name: str) -> str:
        out = self.topo[name].run("cat", "/sys/class/net/eth0/address").stdout
        return out.strip()

    def neigh(self, host: str, addr: str) -> str | None:
        out = self.topo[host].run("ip", "neigh", "show", addr, check=False).stdout
        m = re.search(r"lladdr (\S+)", out)
        return m.group(1) if m else None

    def routed_via(self, name: str) -> bool:
        """The client's ARP entry for the VIP and the NAT servers' for their gateway point at
        ``name``: new packets of every connection go through it."""
        mac = self.mac(name)
        return self.neigh("client", VIP) == mac and all(
            self.neigh(rs, GW_VIP) == mac for rs in NAT_RS)

    def kernel_conns(self, name: str) -> set[int]:
        """Client ports of the connections ``name``'s kernel IPVS table holds."""
        out = self.topo[name].run("ipvsadm", "-Lnc").stdout
        ports = set()
        for ln in out.splitlines():
            parts = ln.split()
            if len(parts) >= 5 and parts[3].startswith("192.0.2.50:") and \
                    parts[4].startswith(f"{VIP}:"):
                ports.add(int(parts[3].rsplit(":", 1)[1]))
        return ports

    def daemons(self, name: str) -> str:
        return self.topo[name].run("ipvsadm", "-L", "--daemon").stdout

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.topo.close()
        import shutil

        shutil.rmtree(self.work, ignore_errors=True)


def report(line: str) -> None:
    REPORT.append(line)
    print(line, flush=True)


@pytest.fixture
def lab() -> Iterator[SyncLab]:
    lab = SyncLab()
    try:
        lab.build()
        yield lab
    finally:
        lab.close()
        text = "== connection sync (lvs_sync_daemon) on kernel IPVS ==\n" + "\n".join(REPORT)
        out = os.environ.get("LVSD_VM_OUT")
        if out:
            Path(out, "conn_sync.report").write_text(text + "\n")


def _alive(conns: list[Conn]) -> list[Conn]:
    return [c for c in conns if c.error is None]


def test_connections_survive_failover_and_failback(lab: SyncLab) -> None:
    client = lab.client
    assert client is not None
    t_start = time.monotonic()
    lab.write_config(sync=True)
    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(lab.start, d) for d in DIRECTORS]:
            f.result()
    assert wait_for(lambda: lab.state("d1") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.state("d2") == "BACKUP"), lab.logs()
    report(f"lab up in {time.monotonic() - t_start:.1f} s")
    # lvsd's default mode: both run a backup daemon, the master a master one too
    assert "master sync daemon" in lab.daemons("d1") and "backup sync daemon" in lab.daemons("d1")
    assert "master sync daemon" not in lab.daemons("d2")
    assert "backup sync daemon (mcast=eth0, syncid=51" in lab.daemons("d2")
    s = lab.status("d1")
    assert s is not None
    sds = {d["role"]: d for d in s["reconciler"]["sync_daemons"]}
    assert sds["master"]["running"] and sds["backup"]["running"], sds
    assert s["reconciler"]["sync_vrrp_state"] == "MASTER"

    # 1. connections through d1; d2's kernel learns every one
    t0 = time.monotonic()
    held = client.open(N_CONNS)
    mark = client.marks(held)
    assert wait_for(lambda: client.progressed(held, mark)), "traffic through d1 never flowed"
    assert lab.routed_via("d1")
    ports = {c.local for c in held}
    assert wait_for(lambda: ports <= lab.kernel_conns("d2")), (
        f"d2's kernel is missing {sorted(ports - lab.kernel_conns('d2'))}\n{lab.logs()}")
    report(f"d2 (backup) kernel holds all {N_CONNS} connections "
           f"{time.monotonic() - t0:.1f} s after they were opened")
    assert _alive(held) == held

    # 2. SIGKILL of the master's lvsd: d2 takes over, every connection goes on through it
    t1 = time.monotonic()
    lab.kill("d1")
    assert wait_for(lambda: lab.state("d2") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.routed_via("d2")), "the traffic never moved to d2"
    mark = client.marks(held)
    assert wait_for(lambda: client.progressed(held, mark)), "connections stalled on d2"
    lost = [c for c in held if c.error is not None]
    report(f"master SIGKILL -> d2: {len(held) - len(lost)}/{len(held)} connections kept "
           f"({time.monotonic() - t1:.1f} s until d2 carried them)")
    assert not lost, [(c.port, c.error) for c in lost]
    assert "master sync daemon" in lab.daemons("d2")

    # 3. connections opened during the failover reach d1's kernel (its backup daemon runs on)
    during = client.open(N_DURING)
    mark = client.marks(during)
    assert wait_for(lambda: client.progressed(during, mark)), "new connections through d2"
    dports = {c.local for c in during}
    assert wait_for(lambda: dports <= lab.kernel_conns("d1")), (
        f"d1's kernel is missing {sorted(dports - lab.kernel_conns('d1'))}")

    # 4. failback: d1's lvsd returns, adopts its daemons, preempts; every connection goes on
    t2 = time.monotonic()
    lab.start("d1")
    assert wait_for(lambda: lab.state("d1") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.routed_via("d1")), "the traffic never moved back to d1"
    every = held + during
    mark = client.marks(every)
    assert wait_for(lambda: client.progressed(every, mark)), "connections stalled on d1"
    lost = [c for c in every if c.error is not None]
    report(f"failback -> d1: {len(every) - len(lost)}/{len(every)} connections kept "
           f"({N_DURING} opened during the failover; {time.monotonic() - t2:.1f} s incl. the "
           "lvsd start)")
    assert not lost, [(c.port, c.error) for c in lost]
    assert "start sync daemon backup" not in lab.log("d1").split("ready:")[-1], \
        "the restart should adopt the running backup daemon"

    # 5. the control: without lvs_sync_daemon, connections opened now are lost on failover
    lab.write_config(sync=False)
    before = {d: (lab.status(d) or {}).get("config", {}).get("reloads_total") for d in DIRECTORS}
    for d in DIRECTORS:
        lab.procs[d].send_signal(signal.SIGHUP)
    assert wait_for(lambda: all(
        (lab.status(d) or {}).get("config", {}).get("reloads_total") == before[d] + 1
        for d in DIRECTORS)), lab.logs()
    assert wait_for(lambda: "sync daemon" not in lab.daemons("d1") + lab.daemons("d2")), (
        lab.daemons("d1"), lab.daemons("d2"))
    unsynced = client.open(N_DURING)
    mark = client.marks(unsynced)
    assert wait_for(lambda: client.progressed(unsynced, mark)), "connections through d1"
    lab.kill("d1")
    assert wait_for(lambda: lab.state("d2") == "MASTER"), lab.logs()
    assert wait_for(lambda: lab.routed_via("d2")), "the traffic never moved to d2"
    assert wait_for(lambda: all(c.error is not None for c in unsynced)), \
        "connections d2 never heard of survived: the control proves nothing"
    mark = client.marks(every)
    assert wait_for(lambda: client.progressed(every, mark))
    kept = len(_alive(every))
    report(f"without lvs_sync_daemon, master SIGKILL -> d2: 0/{N_DURING} new connections "
           f"kept (reset by d2); {kept}/{len(every)} synced earlier kept")
    assert kept == len(every)
    report(f"total {time.monotonic() - t_start:.1f} s")
