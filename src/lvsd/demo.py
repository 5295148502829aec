"""``lvsd demo``: two directors, three real servers and a client in network namespaces.

Theory of operation
-------------------
:class:`Lab` builds the topology with :class:`lvsd.lab.netns.Topology` (one L2 segment)::

    client 192.0.2.50 ----+---- d1 192.0.2.1 / 10.0.0.1  (lvsd, priority 150)
                          +---- d2 192.0.2.2 / 10.0.0.2  (lvsd, priority 100)
    rs1..rs3 10.0.0.11-13 +     VIPs (VRRP v3, one instance): 192.0.2.100 (service)
    (default via 10.0.0.254)          and 10.0.0.254 (the real servers' gateway)

Each director runs a real ``lvsd run`` process in its namespace (LVS-NAT) with a config
generated from a keepalived-syntax template (:func:`director_config`). The data plane is kernel
IPVS where the kernel has it (the namespaces get their own IPVS tables) and nftables where it
does not (``--dataplane auto``, the default: :func:`pick_dataplane`).
Both run the health checks and program their pool; the VRRP master holds both VIPs, so the
client's requests and the real servers' replies go through it. Real servers are tiny HTTP
servers answering their own name. The client runs a request loop (one new TCP connection per
request) and prints one line per request, which :class:`Lab` reads to compute success rates.

:func:`run_demo` plays a bounded scenario (steady -> kill a real server: with
``inhibit_on_failure`` it stays in the pool at weight 0 -> recover it -> SIGKILL the master ->
the VIP moves -> restart it (it pre-empts back) -> done) and prints what happens, live: who holds
the VIP, the client's success rate, the real servers' weights, one ``lvsd status`` table, and
each director's status page, relayed to a loopback port of this host (:class:`StatusRelay`: a
socket opened inside the namespace, so the host's network is not changed).

Nothing is left behind: the namespaces, their processes and the work dir (configs, logs) are
removed on exit, on error and on Ctrl-C, SIGTERM or SIGHUP (``Topology.close`` kills every
process in the namespaces and deletes them); the exit status is then 128 + the signal (130 for
Ctrl-C). The demo changes nothing on the host itself: no service, no nftables table, no
interface outside its namespaces (where IPVS is a module, probing for it loads ``ip_vs``).
The same :class:`Lab` drives ``tests/netns/test_e2e_*``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, LabError, Topology, have_netns, kill_tree

VIP = "192.0.2.100"
GW_VIP = "10.0.0.254"
PORT = 80
STATUS = "127.0.0.1:9330"
DIRECTORS = {"d1": ("192.0.2.1/24", "10.0.0.1/24", 150), "d2": ("192.0.2.2/24", "10.0.0.2/24", 100)}
REAL_SERVERS = {"rs1": "10.0.0.11", "rs2": "10.0.0.12", "rs3": "10.0.0.13", "rs4": "10.0.0.14"}
CLIENT = "192.0.2.50/24"

RS_SERVER = r"""
import http.server, socketserver, sys
name, port = sys.argv[1], int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("0.0.0.0", port), H).serve_forever()
"""

CLIENT_LOOP = r"""
import socket, sys, time
vip, port, interval, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
while True:
    t0 = time.time()
    try:
        with socket.create_connection((vip, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\r\nHost: demo\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        ok = head.split(b" ", 2)[1:2] == [b"200"]
        print(f"{t0:.3f} {'ok' if ok else 'bad'} {body.decode(errors='replace').strip() or '-'}",
              flush=True)
    except OSError as e:
        print(f"{t0:.3f} fail {type(e).__name__}", flush=True)
    time.sleep(max(0.0, interval - (time.time() - t0)))
"""

STATUS_GET = r"""
import sys, urllib.request
with urllib.request.urlopen("http://%s/status" % sys.argv[1], timeout=3) as r:
    sys.stdout.write(r.read().decode())
"""


def director_config(name: str, priority: int, servers: dict[str, str], *,
                    advert_int: float = 0.25, delay_loop: float = 0.5,
                    extra_vs: str = "", broken: bool = False, inhibit: bool = False) -> str:
    """The keepalived-syntax config of one director (both directors differ only in priority).

    ``inhibit``: ``inhibit_on_failure`` on every real server, so a failed one stays in the pool
    at weight 0 (no new connections) instead of being deleted (keepalived check_data.c
    rs_inhibit, ipwrapper.c perform_svr_state)."""
    inhibit_line = "\n        inhibit_on_failure" if inhibit else ""
    rs_blocks = []
    for rs_name, addr in sorted(servers.items()):
        rs_blocks.append(f"""
    # {rs_name}
    real_server {addr} {PORT} {{
        weight 1{inhibit_line}
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 0.5
            retry 0
            delay_before_retry 0.2
        }}
    }}""")
    # a typo'd interface: keepalived cannot run that ("Non-existent interface specified in
    # configuration"), so neither does lvsd: the reload is rejected, the old config runs on
    interface = "eht0   # deliberate typo: this config must be rejected" if broken else "eth0"
    return f"""! lvsd demo director {name} (keepalived syntax)
global_defs {{
    router_id {name}
    vrrp_version 3
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 2
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface {interface}
    virtual_router_id 51
    priority {priority}
    advert_int {advert_int:g}
    virtual_ipaddress {{
        {VIP}/32
        {GW_VIP}/32
    }}
}}

virtual_server {VIP} {PORT} {{
    delay_loop {delay_loop:g}
    lb_algo rr
    lb_kind NAT
    protocol TCP
{"".join(rs_blocks)}
}}
{extra_vs}"""


@dataclass
class Sample:
    t: float
    ok: bool
    backend: str


@dataclass
class Director:
    host: Host
    priority: int
    conf: Path
    pidfile: Path
    logfile: Path
    notify_socket: Path
    proc: subprocess.Popen[Any] | None = None

    @property
    def name(self) -> str:
        return self.host.name

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Lab:
    """The demo/e2e topology. Use as a context manager: everything is cleaned up on exit."""

    tag: str = "lvsdemo"
    advert_int: float = 0.25
    dataplane: str = "nftables"
    inhibit_on_failure: bool = False
    delay_loop: float = 0.5
    client_interval: float = 0.05
    client_timeout: float = 0.5
    topo: Topology | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lvsd-lab-")))
    directors: dict[str, Director] = field(default_factory=dict)
    rs_procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)  # configured real servers
    samples: list[Sample] = field(default_factory=list)
    _client: subprocess.Popen[str] | None = None
    _reader: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ topology
    def __enter__(self) -> Lab:
        self.build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        topo = Topology(self.tag)
        self.topo = topo
        try:
            for name, (front, back, prio) in DIRECTORS.items():
                h = topo.add_host(name, front, back, forwarding=True)
                d = self.workdir / name
                d.mkdir(parents=True, exist_ok=True)
                self.directors[name] = Director(h, prio, d / "keepalived.conf", d / "lvsd.pid",
                                                d / "lvsd.log", d / "notify.sock")
            for name, addr in REAL_SERVERS.items():
                h = topo.add_host(name, f"{addr}/24")
                h.run("ip", "route", "add", "default", "via", GW_VIP, "dev", "eth0", "onlink")
            topo.add_host("client", CLIENT)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.stop_client()
        if self.topo is not None:
            self.topo.close()
            self.topo = None
        for d in self.directors.values():
            with contextlib.suppress(OSError):
                d.notify_socket.unlink()
        # the work dir (configs, logs, pid files) is ours: nothing is left in /tmp
        shutil.rmtree(self.workdir, ignore_errors=True)

    def host(self, name: str) -> Host:
        assert self.topo is not None
        return self.topo[name]

    # ------------------------------------------------------------------ real servers
    def start_rs(self, name: str) -> None:
        h = self.host(name)
        self.rs_procs[name] = h.popen([sys.executable, "-c", RS_SERVER, name, str(PORT)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)

    def kill_rs(self, name: str) -> None:
        p = self.rs_procs.pop(name, None)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(5)

    # ------------------------------------------------------------------ directors
    def write_configs(self, servers: dict[str, str], *, broken: bool = False) -> None:
        self.servers = dict(servers)
        for d in self.directors.values():
            d.conf.write_text(director_config(d.name, d.priority, servers,
                                              advert_int=self.advert_int,
                                              delay_loop=self.delay_loop, broken=broken,
                                              inhibit=self.inhibit_on_failure))

    def start_director(self, name: str, wait_ready: bool = True, timeout: float = 60.0,
                       extra: tuple[str, ...] = ()) -> None:
        d = self.directors[name]
        with contextlib.suppress(OSError):
            d.notify_socket.unlink()
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(str(d.notify_socket))
        ns.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=str(d.notify_socket), PYTHONUNBUFFERED="1")
        with open(d.logfile, "a") as out:
            d.proc = d.host.popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(d.conf),
                 "--dataplane", self.dataplane, "--status-listen", STATUS,
                 "--pid-file", str(d.pidfile), "--sweep", "2", "--stop-timeout", "5",
                 "--dump-dir", str(d.conf.parent), *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            if not wait_ready:
                return
            deadline = time.monotonic() + timeout
            got = b""
            while b"READY=1" not in got:
                if time.monotonic() > deadline or not d.alive():
                    raise LabError(f"lvsd on {name} did not become ready:\n{d.log()[-3000:]}")
                with contextlib.suppress(TimeoutError):
                    got += ns.recv(4096)
        finally:
            ns.close()

    def signal_director(self, name: str, sig: int) -> None:
        d = self.directors[name]
        if d.proc is not None and d.proc.poll() is None:
            if sig == signal.SIGKILL:  # a crash: the VRRP child goes too, no priority 0
                kill_tree(d.proc.pid)
            else:
                d.proc.send_signal(sig)

    def wait_director_exit(self, name: str, timeout: float = 15.0) -> int | None:
        d = self.directors[name]
        if d.proc is None:
            return None
        try:
            return d.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def status(self, name: str) -> dict[str, Any] | None:
        """``GET /status`` of director ``name`` (None if it does not answer)."""
        p = self.host(name).run(sys.executable, "-c", STATUS_GET, STATUS, check=False,
                                timeout=10)
        if p.returncode != 0:
            return None
        try:
            out: dict[str, Any] = json.loads(p.stdout)
        except ValueError:
            return None
        return out

    def vrrp_state(self, name: str) -> str | None:
        s = self.status(name)
        if not s or not s["instances"]:
            return None
        return str(s["instances"][0]["state"])

    def holds_vip(self, name: str) -> bool:
        return any(a.startswith(f"{VIP}/") for a in self.host(name).addresses())

    def master(self) -> str | None:
        for name in self.directors:
            if self.directors[name].alive() and self.vrrp_state(name) == "MASTER":
                return name
        return None

    def rs_weights(self, name: str) -> dict[str, int | None]:
        """real server -> its weight in ``name``'s data plane (None: not in it)."""
        s = self.status(name)
        out: dict[str, int | None] = {}
        if not s:
            return out
        by_addr = {v: k for k, v in REAL_SERVERS.items()}
        for vs in s["virtual_servers"]:
            for rs in vs["real_servers"]:
                out[by_addr.get(rs["address"], rs["address"])] = rs["dataplane_weight"]
        return out

    def vip_holder(self) -> str | None:
        """The director with a running lvsd whose namespace holds the service VIP (None:
        nobody). A SIGKILLed lvsd cannot remove its addresses, but its peer's gratuitous ARP
        has taken the traffic: the address left behind is not counted."""
        return next((n for n, d in self.directors.items() if d.alive() and self.holds_vip(n)),
                    None)

    def rs_health(self, name: str) -> dict[str, bool | None]:
        s = self.status(name)
        out: dict[str, bool | None] = {}
        if not s:
            return out
        by_addr = {v: k for k, v in REAL_SERVERS.items()}
        for vs in s["virtual_servers"]:
            for rs in vs["real_servers"]:
                out[by_addr.get(rs["address"], rs["address"])] = rs["alive"]
        return out

    # ------------------------------------------------------------------ client
    def start_client(self) -> None:
        self._client = self.host("client").popen(
            [sys.executable, "-u", "-c", CLIENT_LOOP, VIP, str(PORT), str(self.client_interval),
             str(self.client_timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read_client, daemon=True)
        self._reader.start()

    def _read_client(self) -> None:
        assert self._client is not None and self._client.stdout is not None
        for line in self._client.stdout:
            parts = line.split()
            if len(parts) < 3:
                continue
            with self._lock:
                self.samples.append(Sample(float(parts[0]), parts[1] == "ok", parts[2]))

    def stop_client(self) -> None:
        if self._client is not None:
            if self._client.poll() is None:
                self._client.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):  # killed: reaped or not
                self._client.wait(5)
            self._client = None

    def window(self, t0: float, t1: float | None = None) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.t >= t0 and (t1 is None or s.t < t1)]

    def stats(self, t0: float, t1: float | None = None) -> tuple[int, int, dict[str, int]]:
        """(requests, failed, successes per backend) in [t0, t1)."""
        w = self.window(t0, t1)
        per: dict[str, int] = {}
        for s in w:
            if s.ok:
                per[s.backend] = per.get(s.backend, 0) + 1
        return len(w), sum(1 for s in w if not s.ok), per

    def wait_requests(self, n: int, timeout: float = 30.0, ok: bool = True) -> bool:
        """Wait until ``n`` consecutive requests (from now) succeeded (``ok``)."""
        t0 = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            w = self.window(t0)
            run = 0
            for s in w:
                run = run + 1 if s.ok == ok else 0
                if run >= n:
                    return True
            time.sleep(0.05)
        return False


SCENARIOS = ("full", "failover", "servers", "steady")


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------- the demo


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during the demo: clean up, then exit 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


_DEMO_PID = os.getpid()


def _raise_interrupted(signum: int, frame: object) -> None:
    if os.getpid() != _DEMO_PID:
        # a fork of the demo (pyroute2 opens sockets in a namespace from a forked child, and
        # stops it with SIGTERM): it must end here, not unwind into a copy of the demo
        os._exit(128 + signum)
    raise Interrupted(signum)


def pick_dataplane(choice: str, netns: str | None) -> tuple[str, str]:
    """(data plane, why) for ``--dataplane choice``: ``auto`` is kernel IPVS when the kernel
    has it (probed inside ``netns``: each namespace has its own IPVS table), else nftables."""
    if choice != "auto":
        return choice, "chosen with --dataplane"
    from lvsd.dataplane.ipvs import probe

    why_not = asyncio.run(probe(netns))
    if why_not is None:
        return "ipvs", "this kernel has IPVS"
    return "nftables", f"no kernel IPVS here ({why_not})"


class StatusRelay:
    """Each director's status endpoint (``STATUS`` inside its namespace) relayed to a loopback
    port of this host, so the page opens in a browser here while the demo runs.

    The upstream socket is created inside the namespace (``pyroute2.netns.create_socket``, which
    never creates a namespace: flags 0), so nothing changes in the host's network but one
    listening socket on 127.0.0.1 that closes with the demo."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _accept(self) -> None:
        from pyroute2.netns import create_socket

        host, port = STATUS.rsplit(":", 1)
        while not self._closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                up = create_socket(self.netns, socket.AF_INET, socket.SOCK_STREAM, flags=0)
                up.settimeout(5)
                up.connect((host, int(port)))
                up.settimeout(None)
            except (OSError, TimeoutError):  # the director is restarting, or the lab is gone
                down.close()
                continue
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass  # either side went away: close both below
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()


@dataclass
class Reading:
    """One look at the lab: who holds the VIP, the master, the master's pool."""

    vip_on: str | None
    master: str | None
    weights: dict[str, int | None]
    health: dict[str, bool | None]


class _Printer:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.t_start = time.time()
        self._last = time.time()
        self.vip_path: list[str] = []  # directors that held the VIP, in order
        self.rs2_weights: list[int | None] = []  # rs2's weight as it changed

    def stamp(self) -> str:
        return f"[{time.time() - self.t_start:6.1f}s]"

    def event(self, text: str) -> None:
        print(f"{self.stamp()} *** {text}", flush=True)

    def read(self) -> Reading:
        vip_on = self.lab.vip_holder()
        master = None
        weights: dict[str, int | None] = {}
        health: dict[str, bool | None] = {}
        by_addr = {v: k for k, v in REAL_SERVERS.items()}
        for name, d in self.lab.directors.items():
            s = self.lab.status(name) if d.alive() else None
            if not s or not s["instances"] or s["instances"][0]["state"] != "MASTER":
                continue
            master = name
            for vs in s["virtual_servers"]:
                for rs in vs["real_servers"]:
                    key = by_addr.get(rs["address"], rs["address"])
                    weights[key] = rs["dataplane_weight"]
                    health[key] = rs["alive"]
        if vip_on and (not self.vip_path or self.vip_path[-1] != vip_on):
            self.vip_path.append(vip_on)
        if "rs2" in weights and (not self.rs2_weights or self.rs2_weights[-1] != weights["rs2"]):
            self.rs2_weights.append(weights["rs2"])
        return Reading(vip_on, master, weights, health)

    def tick(self) -> Reading:
        now = time.time()
        n, failed, per = self.lab.stats(self._last, now)
        self._last = now
        r = self.read()
        rate = f"{100.0 * (n - failed) / n:5.1f}%" if n else "    -"
        spread = " ".join(f"{k}:{v}" for k, v in sorted(per.items())) or "-"
        ws = " ".join(f"{k}={'-' if w is None else w}{'' if r.health.get(k) else '(down)'}"
                      for k, w in sorted(r.weights.items())) or "-"
        print(f"{self.stamp()} VIP on {r.vip_on or 'nobody':<6} client {n - failed:>3}/{n:<3} ok "
              f"{rate}  served by {spread:<20} weights {ws}", flush=True)
        return r


def _hold(p: _Printer, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        p.tick()


def _until(p: _Printer, pred: Callable[[Reading], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.5)
        if pred(p.tick()):
            return True
    return False


def _lvsd_argv() -> list[str]:
    """How to run this ``lvsd`` (the entry point beside this Python, else ``-m lvsd.cli``)."""
    exe = Path(sys.executable).with_name("lvsd")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "lvsd.cli"]


def show_status(lab: Lab, name: str) -> None:
    """Print ``lvsd status`` as run inside director ``name``'s namespace."""
    p = lab.host(name).run(*_lvsd_argv(), "status", check=False, timeout=20)
    print(f"--- lvsd status (in {name}'s namespace) ---", flush=True)
    print("    " + (p.stdout or p.stderr).rstrip().replace("\n", "\n    "), flush=True)
    print("---", flush=True)


def _look_inside(lab: Lab, relays: dict[str, StatusRelay]) -> None:
    assert lab.topo is not None
    d1 = lab.host("d1").ns
    table = (["ipvsadm", "-Ln"] if lab.dataplane == "ipvs" else ["nft", "list", "ruleset"])
    lines = [
        ("the pool and VRRP as lvsd sees them", ["ip", "netns", "exec", d1, *_lvsd_argv(),
                                                 "status"]),
        (f"the {lab.dataplane} table itself", ["ip", "netns", "exec", d1, *table]),
        ("who holds the VIP", ["ip", "netns", "exec", d1, "ip", "-br", "addr"]),
        ("a request through the VIP", ["ip", "netns", "exec", lab.host("client").ns,
                                       sys.executable, "-c",
                                       f"import urllib.request as u; print(u.urlopen("
                                       f"'http://{VIP}/').read().decode())"]),
        ("d1's log", ["less", str(lab.directors["d1"].logfile)]),
        ("d1's config", ["less", str(lab.directors["d1"].conf)]),
    ]
    print("--keep: the lab stays up until Ctrl-C. Look inside from another terminal:",
          flush=True)
    for what, argv in lines:
        print(f"  # {what}\n  {shlex.join(argv)}", flush=True)
    for name, r in relays.items():
        print(f"  # {name}'s status page\n  {r.url}", flush=True)
    print(f"  # every namespace\n  ip netns list | grep {lab.topo.prefix}", flush=True)


def run_demo(scenario: str = "full", hold: float = 3.0, keep: bool = False,
             dataplane: str = "auto") -> int:
    """Play ``scenario``: 0 when every step happened as expected, 1 when one did not, 2 when
    the demo cannot run here, 128 + N after signal N (Ctrl-C: 130). Always cleans up."""
    why = have_netns()
    if why:
        print(f"lvsd demo: {why} (run it as root)", file=sys.stderr)
        return 2
    ok = True
    rc: int | None = None
    lab = Lab(inhibit_on_failure=True)
    relays: dict[str, StatusRelay] = {}
    try:
        lab.build()
        assert lab.topo is not None
        print(f"lvsd demo: 2 directors, 3 real servers and a client in network namespaces "
              f"{lab.topo.prefix}-* (work dir {lab.workdir})", flush=True)
        lab.dataplane, why_dp = pick_dataplane(dataplane, lab.host("d1").ns)
        print(f"data plane: {lab.dataplane} ({why_dp})", flush=True)
        servers = {k: v for k, v in REAL_SERVERS.items() if k != "rs4"}
        for name in servers:
            lab.start_rs(name)
        lab.write_configs(servers)
        print(f"director config, keepalived syntax ({lab.directors['d1'].conf}):", flush=True)
        print("    " + lab.directors["d1"].conf.read_text().replace("\n", "\n    "), flush=True)
        for name in lab.directors:
            lab.start_director(name)
            relays[name] = StatusRelay(lab.host(name).ns)
        print("status pages (relayed from the namespaces while the demo runs): "
              + "  ".join(f"{n} {r.url}" for n, r in relays.items()), flush=True)
        p = _Printer(lab)
        p.event("both directors ready; waiting for a VRRP master")
        if not _until(p, lambda r: r.master is not None and r.vip_on == r.master, 15):
            p.event("no master elected")
            return 1
        first = p.read().master or "d1"
        p.event(f"{first} is MASTER and holds the VIP {VIP}; starting the client "
                f"(one new connection every {lab.client_interval:g} s)")
        lab.start_client()
        _hold(p, hold)
        if scenario in ("full", "servers"):
            p.event("killing real server rs2's HTTP server")
            lab.kill_rs("rs2")
            down = _until(p, lambda r: r.health.get("rs2") is False and r.weights.get("rs2") == 0,
                          15)
            ok &= down
            if down:
                p.event("rs2 DOWN: kept in the pool at weight 0 (inhibit_on_failure), "
                        "no new connections")
                show_status(lab, p.read().master or first)
            _hold(p, hold)
            p.event("restarting rs2")
            lab.start_rs("rs2")
            up = _until(p, lambda r: r.health.get("rs2") is True and r.weights.get("rs2") == 1,
                        15)
            ok &= up
            if up:
                p.event("rs2 UP: back at weight 1")
            _hold(p, hold)
        if scenario in ("full", "failover"):
            m = p.read().master or first
            other = next(n for n in lab.directors if n != m)
            p.event(f"SIGKILL lvsd on the master {m} (a crash: no priority-0 advert)")
            lab.signal_director(m, signal.SIGKILL)
            moved = _until(p, lambda r: r.vip_on == other and r.master == other, 15)
            ok &= moved
            if moved:
                p.event(f"VIP {VIP} moved {m} -> {other}: {other} is MASTER")
            _hold(p, hold)
            p.event(f"restarting lvsd on {m} (higher priority: it pre-empts back)")
            lab.start_director(m)
            back = _until(p, lambda r: r.vip_on == m and r.master == m, 20)
            ok &= back
            if back:
                p.event(f"VIP {VIP} moved {other} -> {m}: {m} is MASTER again")
            _hold(p, hold)
        n, failed, _ = lab.stats(0.0)
        rate = 100.0 * (n - failed) / n if n else 0.0
        print("summary:", flush=True)
        print(f"  data plane        {lab.dataplane}", flush=True)
        print(f"  VIP {VIP} held by {' -> '.join(p.vip_path) or '-'}", flush=True)
        if scenario in ("full", "servers"):
            print(f"  rs2 weight        {' -> '.join(str(w) for w in p.rs2_weights)}", flush=True)
        print(f"  client            {n - failed}/{n} requests ok ({rate:.1f}%), {failed} failed",
              flush=True)
        print(f"  result            {'every step happened' if ok else 'a step did NOT happen'}",
              flush=True)
        if keep:
            _look_inside(lab, relays)
            p.event("--keep: press Ctrl-C to clean up")
            while True:
                time.sleep(2)
                p.tick()
    except Interrupted as exc:
        print(f"\ninterrupted ({signal.Signals(exc.signum).name})", flush=True)
        rc = 128 + exc.signum
    except LabError as exc:
        print(f"lvsd demo: {exc}", file=sys.stderr)
        ok = False
    finally:
        # a second Ctrl-C must not leave half a lab behind: cleaning up is not interruptible
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        print("cleaning up: namespaces, processes, work dir...", flush=True)
        for r in relays.values():
            r.close()
        lab.close()
    if rc is not None:
        return rc
    return 0 if ok else 1


def cmd_demo(a: argparse.Namespace) -> int:
    global _DEMO_PID
    _DEMO_PID = os.getpid()
    old = {sig: signal.signal(sig, _raise_interrupted) for sig in STOP_SIGNALS}
    try:
        return run_demo(a.scenario, a.duration, a.keep, a.dataplane)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="failover and server failure live, in network namespaces (root)",
        description="Build two directors, three real servers and a client in network "
                    "namespaces, run two lvsd (kernel IPVS where the kernel has it, else "
                    "nftables) and play a scenario: steady, a real server killed (weight 0) "
                    "and recovered, the master SIGKILLed (the VIP moves), restarted "
                    "(pre-emption). Changes nothing on the host; cleans up on exit and Ctrl-C "
                    "(exit 130).")
    p.add_argument("--scenario", choices=SCENARIOS, default="full",
                   help="what to play (default full)")
    p.add_argument("--duration", type=float, default=3.0, metavar="SECONDS",
                   help="how long to hold each steady phase (default 3)")
    p.add_argument("--dataplane", choices=("auto", "ipvs", "nftables"), default="auto",
                   help="auto: kernel IPVS where the kernel has it, else nftables (default auto)")
    p.add_argument("--keep", action="store_true",
                   help="keep the lab up at the end until Ctrl-C, and print the commands to "
                        "look inside (default: clean up at the end)")
    p.set_defaults(func=cmd_demo)
