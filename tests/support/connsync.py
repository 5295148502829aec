"""The connection sync lab: two directors, DR and NAT echo servers and a client holding
long-lived TCP connections, as network namespaces inside the IPVS VM (used by
``tests/kernel/guest/test_conn_sync.py`` and ``bench/conn_sync.py``; test harness, not shipped).

Topology (one bridge): directors d1 (192.0.2.1, 10.0.0.1, priority 150) and d2 (.2, 100), one
VRRP instance VI_1 holding the service VIP 192.0.2.100 and the NAT servers' gateway 10.0.0.254;
DR echo servers drs1/drs2 (192.0.2.21/22, the VIP on lo, port 7000), NAT echo servers
nrs1/nrs2 (10.0.0.11/12, port 7001), the client 192.0.2.50. A director runs ``lvsd run
--dataplane ipvs`` or keepalived 2.2.7 (same config file: keepalived syntax). The
:class:`Client` sends a line every 100 ms on each connection and counts the echoes; a reset or
EOF marks a connection lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, Topology

VIP, GW_VIP = "192.0.2.100", "10.0.0.254"
DR_PORT, NAT_PORT = 7000, 7001
DIRECTORS = {"d1": ("192.0.2.1/24", "10.0.0.1/24", 150), "d2": ("192.0.2.2/24", "10.0.0.2/24", 100)}
DR_RS = {"drs1": "192.0.2.21", "drs2": "192.0.2.22"}
NAT_RS = {"nrs1": "10.0.0.11", "nrs2": "10.0.0.12"}
STATUS = "127.0.0.1:9330"
INTERVAL = 0.1  # a line per connection every 100 ms
WAIT = 60.0  # bound of every wait (the emulated guest is slow)
CLONE_NEWNET = 0x40000000  # sched.h

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


def config(name: str, prio: int, sync: bool, mode: str = "both") -> str:
    """The director's config (keepalived syntax; ``mode`` keepalived adds lvsd's
    ``lvs_sync_daemon_mode keepalived``, which keepalived itself would reject)."""
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
{"    lvs_sync_daemon_mode keepalived" if sync and mode == "keepalived" else ""}
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
        """Open ``n`` connections (alternately DR and NAT), all connected on return."""
        socks: list[tuple[socket.socket, int]] = []
        failed: list[BaseException] = []

        def connect_in_ns() -> None:
            # setns() moves only this thread into the client's namespace: the sockets it
            # creates live there (one thread per batch; pyroute2 would fork per socket)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                for i in range(n):
                    port = DR_PORT if i % 2 == 0 else NAT_PORT
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.settimeout(10)
                    s.connect((VIP, port))
                    s.setblocking(False)
                    socks.append((s, port))
            except BaseException as exc:
                failed.append(exc)

        t = threading.Thread(target=connect_in_ns)
        t.start()
        t.join()
        if failed:
            for s, _ in socks:
                s.close()
            raise failed[0]
        out = []
        for i, (s, port) in enumerate(socks):
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
    """The lab (see the module docstring). ``close()`` removes everything, even on failure."""

    def __init__(self, tag: str = "lt-csync") -> None:
        self.topo = Topology(tag)
        self.work = Path(tempfile.mkdtemp(prefix="lvsd-csync-"))
        self.procs: dict[str, subprocess.Popen[Any]] = {}
        self.kinds: dict[str, str] = {}  # director -> "lvsd" | "keepalived"
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

    def write_config(self, sync: bool, mode: str = "both") -> None:
        for name, (_, _, prio) in DIRECTORS.items():
            (self.work / f"{name}.conf").write_text(config(name, prio, sync, mode))

    def start(self, name: str, kind: str = "lvsd") -> None:
        """Start ``kind`` (lvsd or keepalived) on director ``name``; return once it runs
        (lvsd: READY=1; keepalived: its VRRP process has started)."""
        self.kinds[name] = kind
        if kind == "keepalived":
            self._start_keepalived(name)
            return
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

    def _start_keepalived(self, name: str) -> None:
        d = self.work
        log = d / f"{name}.log"
        with open(log, "a") as out:
            self.procs[name] = self.topo[name].popen(
                ["keepalived", "-n", "-l", "-D", "-f", str(d / f"{name}.conf"),
                 "-p", str(d / f"{name}.ka.pid"), "-r", str(d / f"{name}.vrrp.pid"),
                 "-c", str(d / f"{name}.check.pid"), "-i", name],
                stdout=out, stderr=subprocess.STDOUT)
        assert wait_for(lambda: "(VI_1) Entering" in self.log(name), 120), self.log(name)

    def kill(self, name: str) -> None:
        """SIGKILL: lvsd's main process (its VRRP child dies with it), or every keepalived
        process of the director (a crash: no priority-0 advert, VIPs and kernel state left)."""
        p = self.procs[name]
        if self.kinds.get(name) == "keepalived":
            pids = self.topo[name].run("ip", "netns", "pids", self.topo[name].ns,
                                       check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "keepalived":
                        os.kill(int(pid), signal.SIGKILL)
        p.send_signal(signal.SIGKILL)
        p.wait(30)

    def holds_vip(self, name: str) -> bool:
        return any(a.startswith(f"{VIP}/") for a in self.topo[name].addresses())

    def log(self, name: str, since: int | None = None) -> str:
        """The director's log: the last 4000 characters, or everything after offset ``since``
        (an earlier ``len(log(name, 0))``)."""
        try:
            text = (self.work / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return text[-4000:] if since is None else text[since:]

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
        """The VRRP state lvsd reports; for keepalived MASTER while it holds the VIP."""
        if self.kinds.get(name) == "keepalived":
            return "MASTER" if self.holds_vip(name) else "BACKUP"
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

    def where(self) -> str:
        """Who the client and the NAT servers send to (for failure messages)."""
        return (f"d1 {self.mac('d1')} d2 {self.mac('d2')}; client -> "
                f"{self.neigh('client', VIP)}; "
                + "; ".join(f"{rs} -> {self.neigh(rs, GW_VIP)}" for rs in NAT_RS))

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
        shutil.rmtree(self.work, ignore_errors=True)


