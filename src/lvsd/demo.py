"""``lvsd demo``: two directors, three real servers and a client in network namespaces.

Theory of operation
-------------------
:class:`Lab` builds the topology with :class:`lvsd.lab.netns.Topology` (one L2 segment)::

    client 192.0.2.50 ----+---- d1 192.0.2.1 / 10.0.0.1  (lvsd, priority 150)
                          +---- d2 192.0.2.2 / 10.0.0.2  (lvsd, priority 100)
    rs1..rs3 10.0.0.11-13 +     VIPs (VRRP v3, one instance): 192.0.2.100 (service)
    (default via 10.0.0.254)          and 10.0.0.254 (the real servers' gateway)

Each director runs a real ``lvsd run`` process in its namespace, on the nftables data plane
(LVS-NAT), with a config generated from a keepalived-syntax template (:func:`director_config`).
Both run the health checks and program their pool; the VRRP master holds both VIPs, so the
client's requests and the real servers' replies go through it. Real servers are tiny HTTP
servers answering their own name. The client runs a request loop (one new TCP connection per
request) and prints one line per request, which :class:`Lab` reads to compute success rates.

:func:`run_demo` plays a bounded scenario (steady -> kill a real server -> recover it -> SIGKILL
the master -> failover -> restart it (it pre-empts back) -> done) and prints what happens, live.
Everything is removed on exit, on error and on Ctrl-C (``Topology.close`` kills every process
in the namespaces and deletes them). The same :class:`Lab` drives ``tests/netns/test_e2e_*``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, LabError, Topology, have_netns

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
                    extra_vs: str = "", broken: bool = False) -> str:
    """The keepalived-syntax config of one director (both directors differ only in priority)."""
    rs_blocks = []
    for rs_name, addr in sorted(servers.items()):
        rs_blocks.append(f"""
    # {rs_name}
    real_server {addr} {PORT} {{
        weight 1
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
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

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
                                              delay_loop=self.delay_loop, broken=broken))

    def start_director(self, name: str, wait_ready: bool = True, timeout: float = 20.0,
                       extra: tuple[str, ...] = ()) -> None:
        d = self.directors[name]
        with contextlib.suppress(OSError):
            d.notify_socket.unlink()
        import socket

        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(str(d.notify_socket))
        ns.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=str(d.notify_socket), PYTHONUNBUFFERED="1")
        with open(d.logfile, "a") as out:
            d.proc = d.host.popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(d.conf),
                 "--dataplane", "nftables", "--status-listen", STATUS,
                 "--pid-file", str(d.pidfile), "--sweep", "2", "--stop-timeout", "5",
                 "--dump-dir", str(d.conf.parent), *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env)
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
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
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


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------- the demo


class _Printer:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.t_start = time.time()
        self._last = time.time()

    def event(self, text: str) -> None:
        print(f"[{time.time() - self.t_start:6.1f}s] *** {text}", flush=True)

    def tick(self) -> None:
        now = time.time()
        n, failed, per = self.lab.stats(self._last, now)
        self._last = now
        rate = 100.0 * (n - failed) / n if n else 0.0
        spread = " ".join(f"{k}:{v}" for k, v in sorted(per.items())) or "-"
        master = self.lab.master() or "none"
        health = self.lab.rs_health(master) if master != "none" else {}
        hs = " ".join(f"{k}{'+' if v else ('?' if v is None else '-')}"
                      for k, v in sorted(health.items()))
        print(f"[{now - self.t_start:6.1f}s] master={master:<4} client {n - failed:>3}/{n:<3} ok "
              f"({rate:5.1f}%)  backends {spread:<24} health {hs}", flush=True)


def _hold(p: _Printer, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        p.tick()


def _until(p: _Printer, pred: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.5)
        p.tick()
    return pred()


SCENARIOS = ("full", "failover", "servers", "steady")


def run_demo(scenario: str = "full", hold: float = 3.0, keep: bool = False) -> int:
    """Play ``scenario``; returns 0 when every step happened as expected."""
    why = have_netns()
    if why:
        print(f"lvsd demo: {why} (run as root: sudo lvsd demo)", file=sys.stderr)
        return 2
    ok = True
    lab = Lab()
    print(f"lvsd demo: building namespaces (work dir {lab.workdir})", flush=True)
    try:
        lab.build()
        assert lab.topo is not None
        print(f"namespaces: {lab.topo.prefix}-*", flush=True)
        servers = {k: v for k, v in REAL_SERVERS.items() if k != "rs4"}
        for name in servers:
            lab.start_rs(name)
        lab.write_configs(servers)
        print(f"director config ({lab.directors['d1'].conf}):", flush=True)
        print("    " + lab.directors["d1"].conf.read_text().replace("\n", "\n    "), flush=True)
        for name in lab.directors:
            lab.start_director(name)
        p = _Printer(lab)
        p.event("both directors ready; waiting for a VRRP master")
        if not _until(p, lambda: lab.master() is not None, 15):
            p.event("no master elected")
            return 1
        p.event(f"{lab.master()} is MASTER; starting the client loop ({VIP}:{PORT})")
        lab.start_client()
        _hold(p, hold)
        if scenario in ("full", "servers"):
            p.event("killing real server rs2's HTTP server")
            lab.kill_rs("rs2")
            ok &= _until(p, lambda: lab.rs_health(lab.master() or "d1").get("rs2") is False, 15)
            p.event("rs2 marked DOWN and removed from the pool")
            _hold(p, hold)
            p.event("restarting rs2")
            lab.start_rs("rs2")
            ok &= _until(p, lambda: lab.rs_health(lab.master() or "d1").get("rs2") is True, 15)
            p.event("rs2 back UP and in the pool")
            _hold(p, hold)
        if scenario in ("full", "failover"):
            m = lab.master() or "d1"
            other = next(n for n in lab.directors if n != m)
            p.event(f"SIGKILL lvsd on the master {m} (a crash: no priority-0 advert)")
            lab.signal_director(m, signal.SIGKILL)
            ok &= _until(p, lambda: lab.vrrp_state(other) == "MASTER", 15)
            p.event(f"{other} took over as MASTER")
            _hold(p, hold)
            p.event(f"restarting lvsd on {m} (higher priority: it pre-empts back)")
            lab.start_director(m)
            ok &= _until(p, lambda: lab.vrrp_state(m) == "MASTER", 20)
            p.event(f"{m} is MASTER again")
            _hold(p, hold)
        n, failed, _ = lab.stats(0.0)
        p.event(f"done: {n - failed}/{n} client requests succeeded ({failed} failed)")
        if keep:
            p.event("--keep: press Ctrl-C to clean up")
            while True:
                time.sleep(1)
                p.tick()
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
    except LabError as exc:
        print(f"lvsd demo: {exc}", file=sys.stderr)
        ok = False
    finally:
        print("cleaning up namespaces...", flush=True)
        lab.close()
    return 0 if ok else 1


def _sigterm_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_demo(a: argparse.Namespace) -> int:
    old = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        return run_demo(a.scenario, a.duration, a.keep)
    finally:
        signal.signal(signal.SIGTERM, old)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="failover and server failure live, in network namespaces (root)",
        description="Build two directors, three real servers and a client in network "
                    "namespaces, run two lvsd on the nftables data plane and play a scenario: "
                    "steady, a real server killed and recovered, the master SIGKILLed "
                    "(failover), restarted (pre-emption). Cleans up on exit and Ctrl-C.")
    p.add_argument("--scenario", choices=SCENARIOS, default="full")
    p.add_argument("--duration", type=float, default=3.0, metavar="SECONDS",
                   help="how long to hold each steady phase (default 3)")
    p.add_argument("--keep", action="store_true",
                   help="keep running at the end until Ctrl-C (interactive)")
    p.set_defaults(func=cmd_demo)
