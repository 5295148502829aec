"""The BGP active-active lab: a router running BIRD 2 with ECMP, directors announcing the VIP,
real servers and a client holding many TCP flows (test and benchmark harness, not shipped).

Used by ``tests/netns/test_bgp_active_active.py`` (host namespaces, nftables NAT),
``tests/kernel/guest/test_bgp_mh.py`` (inside the IPVS VM: DR + ``mh``) and
``bench/bgp_failover.py``. Topology (namespaces, :class:`lvsd.lab.netns.Topology`)::

    client 192.0.2.2 --(veth)-- 192.0.2.1 router 10.0.1.1 --+-- LAN bridge
                                BIRD 2, AS 65000             +-- d1..dN 10.0.1.11.. (AS 65001)
                                                             +-- rs1..rsM 10.0.1.21..

The router runs BIRD 2 (the package's files unpacked into ``.lab/bird2`` by
``scripts/bootstrap.sh``, never installed): one eBGP session per director, its kernel protocol
``merge paths on`` so the routes of every director announcing the VIP become one multipath
route, and ``net.ipv4.fib_multipath_hash_policy=1`` so flows spread by their L4 hash. The router
uses short BGP retry timers so a restarted director is back within seconds.

Who announces the VIP on a director is the caller's choice: lvsd (its ``bgp_speaker`` block) or,
to prove the topology without lvsd, :meth:`BgpLab.start_hand_speaker` (BIRD with a static route,
configured by hand).

Observation, not prediction:

* which director carries a flow: a sniffer in the bridge namespace (:data:`SNIFFER`, AF_PACKET
  on each director's bridge port: no nftables, so it works in the VM too, and no process in the
  directors) records the TCP source port of every frame to VIP:PORT the bridge sends each
  director. :meth:`BgpLab.round` clears it, makes each open flow send one request, then reads
  it: a flow is carried by the one director its frames went to.
* which real server answers: the real servers answer every line with ``NAME PEER``, their name
  and the address the connection comes from (in NAT mode the director that masqueraded it).
* the router's state: ``ip route show VIP`` in its namespace (the nexthops = directors whose
  route is installed) and ``birdc show protocols`` / ``show route``.

The flow client (:data:`FLOW_CLIENT`, one process in the client namespace, JSON lines on stdin
and stdout) opens N connections (distinct source ports) and keeps them open; on ``ping`` each
live flow sends ``seq K`` and waits for its answer: ``ok`` (with the server), ``stalled`` (no
answer within the round's timeout; the flow is kept and may recover, e.g. after the router moved
it) or ``dead`` (reset or EOF: a flow that died stays dead).

Everything (namespaces, processes, the work directory) is removed by :meth:`BgpLab.close`, also
when building fails half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, LabError, Topology, kill_tree

REPO = Path(__file__).resolve().parents[2]  # tests/support/bgplab.py
BIRD_DIR = REPO / ".lab" / "bird2" / "usr" / "sbin"
BIRD = BIRD_DIR / "bird"
BIRDC = BIRD_DIR / "birdc"

VIP, PORT = "203.0.113.10", 80
CLIENT_ADDR, ROUTER_OUT = "192.0.2.2", "192.0.2.1"
ROUTER = "10.0.1.1"
LAN = "10.0.1.0/24"
ROUTER_AS, DIRECTOR_AS = 65000, 65001
WAIT = 60.0  # bound of every wait (busy machines, the emulated guest)


def director_addr(i: int) -> str:
    return f"10.0.1.{10 + i}"


def server_addr(i: int) -> str:
    return f"10.0.1.{20 + i}"


def missing_bird() -> str | None:
    """None if BIRD 2 is unpacked where the lab runs it, else why not (one line)."""
    for exe in (BIRD, BIRDC):
        if not os.access(exe, os.X_OK):
            return f"BIRD 2 not found at {exe} (run: sudo bash scripts/bootstrap.sh test)"
    return None


# ----------------------------------------------------------------------------- processes
#: a real server: answers every line with "NAME PEER_ADDRESS" (argv: NAME ADDR PORT)
RS_SERVER = r"""
import asyncio, sys
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def serve(r, w):
    peer = w.get_extra_info("peername")[0]
    try:
        while await r.readline():
            w.write(f"{name} {peer}\n".encode())
            await w.drain()
    except ConnectionError:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(serve, addr, port, backlog=1024, reuse_address=True)
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""

#: the flow client, driven by JSON lines on stdin (argv: VIP PORT); one JSON answer per line
#:   {"cmd": "open", "n": N, "timeout": T}  -> {"flows": {id: {"sport": p, "server": s|null,
#:                                               "peer": a|null, "error": e|null}}}
#:   {"cmd": "ping", "timeout": T}          -> {"flows": {id: {"state": "ok"|"stalled"|"dead",
#:                                               "server": s|null, "peer": a|null}}}
#: ``ping`` covers every flow not dead; a stalled flow's late answer is skipped next time
FLOW_CLIENT = r"""
import asyncio, json, sys
VIP, PORT = sys.argv[1], int(sys.argv[2])
flows = {}   # id -> [reader, writer, seq, dead]

async def one(fid, timeout):
    r, w, seq, dead = flows[fid]
    if dead:
        return {"state": "dead", "server": None, "peer": None}
    seq += 1
    flows[fid][2] = seq
    try:
        w.write(f"seq {seq}\n".encode())
        await w.drain()
        async def answer():
            while True:
                line = await r.readline()
                if not line:
                    raise ConnectionResetError("EOF")
                return line.decode().split()
        words = await asyncio.wait_for(answer(), timeout)
        return {"state": "ok", "server": words[0], "peer": words[1]}
    except asyncio.TimeoutError:
        return {"state": "stalled", "server": None, "peer": None}
    except OSError as exc:
        flows[fid][3] = True
        w.close()
        return {"state": "dead", "server": None, "peer": None, "error": repr(exc)}

async def open_one(fid, timeout):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(VIP, PORT), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return {"sport": None, "server": None, "peer": None, "error": repr(exc)}
    flows[fid] = [r, w, 0, False]
    res = await one(fid, timeout)
    sport = w.get_extra_info("sockname")[1]
    if res["state"] != "ok":
        flows[fid][3] = True
        w.close()
        return {"sport": sport, "server": None, "peer": None, "error": res["state"]}
    return {"sport": sport, "server": res["server"], "peer": res["peer"], "error": None}

async def main():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        req = json.loads(line)
        if req["cmd"] == "open":
            base = len(flows)
            ids = [str(base + i) for i in range(req["n"])]
            sem = asyncio.Semaphore(16)
            async def limited(fid):
                async with sem:
                    return await open_one(fid, req["timeout"])
            res = await asyncio.gather(*(limited(f) for f in ids))
            out = {"flows": dict(zip(ids, res))}
        elif req["cmd"] == "ping":
            ids = list(flows)
            res = await asyncio.gather(*(one(f, req["timeout"]) for f in ids))
            out = {"flows": dict(zip(ids, res))}
        else:
            out = {"error": "unknown command"}
        print(json.dumps(out), flush=True)

asyncio.run(main())
"""


#: which director a flow goes to, seen on the LAN bridge (runs in the bridge namespace, argv:
#: VIP PORT PORT_IFNAME...): an AF_PACKET socket on each director's bridge port records the TCP
#: source port of every frame the bridge sends that director for VIP:PORT. No nftables and no
#: process in the directors (a killed director's frames are still seen: where the router sends
#: them). stdin: "clear" -> {"ok": true}; "dump" -> {ifname: [source ports]} (sockets drained)
SNIFFER = r"""
import json, select, socket, struct, sys
vip, port = socket.inet_aton(sys.argv[1]), int(sys.argv[2])
socks = {}
for ifname in sys.argv[3:]:
    # ETH_P_ALL: a socket bound to one protocol does not see outgoing frames
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 0))
    s.setblocking(False)
    socks[s] = ifname
seen = {n: set() for n in socks.values()}
def drain(timeout, want_stdin):
    # read every frame waiting; with want_stdin block (timeout) until a command comes
    while True:
        fds = list(socks) + ([sys.stdin] if want_stdin else [])
        r, _, _ = select.select(fds, [], [], timeout)
        if not r:
            return
        for s in r:
            if s is sys.stdin:
                continue
            while True:
                try:
                    frame, addr = s.recvfrom(256)
                except OSError:  # nothing left, or ENETDOWN: that director's port is cut
                    break
                if addr[2] != socket.PACKET_OUTGOING or len(frame) < 34 \
                        or frame[12:14] != b"\x08\x00":
                    continue
                ip = frame[14:]
                if ip[9] != 6 or ip[16:20] != vip:
                    continue
                hl = (ip[0] & 15) * 4
                if len(ip) < hl + 4:
                    continue
                sport, dport = struct.unpack("!HH", ip[hl:hl + 4])
                if dport == port:
                    seen[socks[s]].add(sport)
        if sys.stdin in r:
            return
print("ready", flush=True)
while True:
    drain(None, True)
    line = sys.stdin.readline()
    if not line:
        break
    drain(0, False)
    if line.strip() == "clear":
        for v in seen.values():
            v.clear()
        print(json.dumps({"ok": True}), flush=True)
    else:
        print(json.dumps({k: sorted(v) for k, v in seen.items()}), flush=True)
"""


@dataclass
class Flow:
    fid: str
    sport: int
    server: str  # the real server that answered first
    history: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    #: (state, server, director) per round; director None when no director saw it

    @property
    def dead(self) -> bool:
        return bool(self.history) and self.history[-1][0] == "dead"


@dataclass
class Round:
    """One ping of every flow: per flow its state, server and carrying director."""

    state: dict[str, str]
    server: dict[str, str | None]
    director: dict[str, str | None]

    def by_director(self) -> dict[str | None, list[str]]:
        out: dict[str | None, list[str]] = {}
        for fid, d in self.director.items():
            if self.state[fid] == "ok":
                out.setdefault(d, []).append(fid)
        return out

    def count(self, state: str) -> int:
        return sum(1 for s in self.state.values() if s == state)


class FlowClient:
    """The flow client process in the client namespace (see :data:`FLOW_CLIENT`)."""

    def __init__(self, client: Host) -> None:
        self.proc = client.popen([sys.executable, "-u", "-c", FLOW_CLIENT, VIP, str(PORT)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, req: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        import select

        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise LabError(f"flow client did not answer {req} within {timeout:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise LabError(f"flow client exited (rc {self.proc.poll()})")
        out: dict[str, Any] = json.loads(line)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@dataclass
class Bird:
    """A BIRD 2 process in a namespace, its config, control socket and log."""

    host: Host
    conf: Path
    sock: Path
    log: Path
    proc: subprocess.Popen[Any] | None = None

    def start(self) -> Bird:
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        out = open(self.log.with_suffix(".out"), "a")  # noqa: SIM115 - handed to the child
        self.proc = self.host.popen(
            [str(BIRD), "-f", "-c", str(self.conf), "-s", str(self.sock),
             "-P", str(self.sock.with_suffix(".pid"))],
            stdout=out, stderr=subprocess.STDOUT)
        out.close()
        if not _wait(lambda: self.sock.exists() or not self.alive(), 20):
            raise LabError(f"bird in {self.host.name} did not start:\n{self.text()}")
        if not self.alive():
            raise LabError(f"bird in {self.host.name} exited:\n{self.text()}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def birdc(self, *words: str) -> str:
        p = self.host.run(str(BIRDC), "-s", str(self.sock), *words, check=False, timeout=20)
        return p.stdout + p.stderr

    def text(self) -> str:
        parts = []
        for f in (self.log, self.log.with_suffix(".out")):
            with contextlib.suppress(OSError):
                parts.append(f.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def router_bird_conf(directors: dict[str, str], *, hold: int = 3, bfd: bool = False,
                     bfd_interval_ms: int = 100, log: Path | None = None) -> str:
    """The router's bird.conf: one eBGP session per director (name -> address), multipath."""
    lines = [f'log "{log}" all;' if log else "log stderr all;",
             f"router id {ROUTER};",
             "protocol device { scan time 10; }",
             "protocol kernel {",
             "  ipv4 { import none; export all; };",
             "  merge paths on limit 16;   # one multipath route from every director's",
             "}"]
    if bfd:
        ms = bfd_interval_ms
        lines += ["protocol bfd {",
                  f'  interface "eth0" {{ min rx interval {ms} ms; min tx interval {ms} ms;'
                  " multiplier 3; };",
                  "}"]
    for name, addr in directors.items():
        lines += [f"protocol bgp {name} {{",
                  f"  local {ROUTER} as {ROUTER_AS};",
                  f"  neighbor {addr} as {DIRECTOR_AS};",
                  f"  hold time {hold}; keepalive time {max(1, hold // 3)};",
                  "  connect delay time 1; connect retry time 2; error wait time 1, 4;",
                  *(["  bfd on;"] if bfd else []),
                  "  ipv4 { import all; export none; };",
                  "}"]
    return "\n".join(lines) + "\n"


def director_bird_conf(addr: str, *, hold: int = 3, bfd: bool = False,
                       bfd_interval_ms: int = 100, log: Path | None = None) -> str:
    """A director's hand-written bird.conf (no lvsd): the VIP as a static route, exported."""
    lines = [f'log "{log}" all;' if log else "log stderr all;",
             f"router id {addr};",
             "protocol device { scan time 10; }",
             f"protocol static vip {{ ipv4; route {VIP}/32 blackhole; }}"]
    if bfd:
        ms = bfd_interval_ms
        lines += ["protocol bfd {",
                  f'  interface "eth0" {{ min rx interval {ms} ms; min tx interval {ms} ms;'
                  " multiplier 3; };",
                  "}"]
    lines += ["protocol bgp uplink {",
              f"  local {addr} as {DIRECTOR_AS};",
              f"  neighbor {ROUTER} as {ROUTER_AS};",
              f"  hold time {hold}; keepalive time {max(1, hold // 3)};",
              "  connect delay time 1; connect retry time 2; error wait time 1, 4;",
              *(["  bfd on;"] if bfd else []),
              '  ipv4 { import none; export where proto = "vip"; };',
              "}"]
    return "\n".join(lines) + "\n"


def _wait(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def lvsd_conf(name: str, addr: str, servers: dict[str, str], *, lb_kind: str = "NAT",
              lb_algo: str = "mh", hold: int = 3, bfd: bool = False, bfd_interval_ms: int = 100,
              rise_delay: float = 1, fall_delay: float = 0, extra: str = "") -> str:
    """One director's keepalived.conf for ``lvsd run``: the VIP's virtual server (TCP_CHECK on
    every real server) and the BGP blocks announcing the VIP to the router."""
    rs = "".join(f"""
    real_server {a} {PORT} {{   # {n}
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 0
        }}
    }}""" for n, a in servers.items())
    flags = "\n    mh-port" if lb_algo == "mh" else ""
    return f"""! bgplab director {name}
global_defs {{
    router_id {name}
}}
virtual_server {VIP} {PORT} {{
    delay_loop 0.5
    lb_algo {lb_algo}{flags}
    lb_kind {lb_kind}
    protocol TCP
{rs}
}}
bgp_speaker {{
    bird_binary {BIRD}
    router_id {addr}
    local_as {DIRECTOR_AS}
    hold_time {hold}
    bfd {"on" if bfd else "off"}
    bfd_interval {bfd_interval_ms}
    neighbor {ROUTER} {{
        remote_as {ROUTER_AS}
        source_address {addr}
    }}
}}
bgp_announce WEB {{
    address {VIP}/32
    virtual_server {VIP} {PORT}
    rise_delay {rise_delay:g}
    fall_delay {fall_delay:g}
}}
{extra}"""


class LvsdDirector:
    """``lvsd run`` in a director's namespace (its status read over the namespace's loopback,
    as ``testlab.DaemonNode`` does)."""

    STATUS = "127.0.0.1:9343"
    _GET = ("import sys, urllib.request\n"
            "with urllib.request.urlopen('http://%s/status' % sys.argv[1], timeout=3) as r:\n"
            "    sys.stdout.write(r.read().decode())\n")

    def __init__(self, host: Host, conf: str, workdir: Path, dataplane: str) -> None:
        self.host = host
        self.workdir = workdir / host.name
        self.workdir.mkdir(exist_ok=True)
        self.conf = self.workdir / "keepalived.conf"
        self.conf.write_text(conf)
        self.dataplane = dataplane
        self.logfile = self.workdir / "lvsd.log"
        self.proc: subprocess.Popen[Any] | None = None
        self._notify: socket.socket | None = None

    def check_config(self) -> subprocess.CompletedProcess[str]:
        return self.host.run(sys.executable, "-m", "lvsd.cli", "check-config", "-f",
                             str(self.conf), check=False, timeout=120)

    def start(self, timeout: float = WAIT) -> LvsdDirector:
        """Start ``lvsd run`` and wait until it is ready (:meth:`launch`, :meth:`wait_ready`)."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start ``lvsd run`` without waiting (start several, then wait for each)."""
        notify = self.workdir / "notify.sock"
        with contextlib.suppress(FileNotFoundError):
            notify.unlink()
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(notify))
        self._notify.settimeout(0.5)
        env = dict(os.environ, PYTHONUNBUFFERED="1", NOTIFY_SOCKET=str(notify))
        with open(self.logfile, "a") as out:
            self.proc = self.host.popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(self.conf),
                 "--dataplane", self.dataplane, "--status-listen", self.STATUS,
                 "--no-syslog", "--pid-file", str(self.workdir / "lvsd.pid"),
                 "--dump-dir", str(self.workdir)],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = WAIT) -> LvsdDirector:
        """Wait for READY=1 (sd_notify, as ``lvsd demo`` waits: no process to spawn per poll,
        which costs seconds in the emulated VM)."""
        ns = self._notify
        assert ns is not None and self.proc is not None
        try:
            deadline = time.monotonic() + timeout
            got = b""
            while b"READY=1" not in got:
                if time.monotonic() > deadline or not self.alive():
                    raise LabError(f"lvsd on {self.host.name} did not become ready "
                                   f"(rc {self.proc.poll()}):\n{self.log()}")
                with contextlib.suppress(TimeoutError):
                    got += ns.recv(4096)
        finally:
            ns.close()
            self._notify = None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def status(self) -> dict[str, Any]:
        if not self.alive():
            return {}
        try:
            p = self.host.run(sys.executable, "-c", self._GET, self.STATUS, check=False,
                              timeout=60)
        except subprocess.TimeoutExpired:
            return {}
        try:
            data: dict[str, Any] = json.loads(p.stdout) if p.returncode == 0 else {}
        except ValueError:
            return {}
        return data

    def bird_pids(self) -> list[int]:
        """BIRD processes running in this director's namespace."""
        pids = []
        for pid in self.host.run("ip", "netns", "pids", self.host.ns, check=False).stdout.split():
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if os.path.basename(exe) == "bird":
                pids.append(int(pid))
        return pids

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = WAIT) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        if self.wait_exit(30) is None and self.proc is not None:
            kill_tree(self.proc.pid)
            self.proc.wait(10)


_NEXTHOP = re.compile(r"\bvia (\d+\.\d+\.\d+\.\d+)")
_PROTO = re.compile(r"^(\S+)\s+BGP\s+\S+\s+(\S+)\s+\S+\s*(.*)$")


class BgpLab:
    """The namespaces, the router's BIRD, the real servers, the flow client.

    ``mode``: ``"nat"`` (host: real servers reply to the director, which masquerades) or
    ``"dr"`` (kernel IPVS in the VM: real servers hold the VIP on ``lo`` with arp_ignore /
    arp_announce and reply through the router).
    """

    def __init__(self, directors: int = 3, servers: int = 3, *, mode: str = "nat",
                 hold: int = 3, bfd: bool = False, bfd_interval_ms: int = 100,
                 tag: str = "lt-bgp") -> None:
        assert mode in ("nat", "dr")
        self.mode = mode
        self.hold, self.bfd, self.bfd_interval_ms = hold, bfd, bfd_interval_ms
        self.director_names = [f"d{i}" for i in range(1, directors + 1)]
        self.server_names = [f"rs{i}" for i in range(1, servers + 1)]
        self.addr = {n: director_addr(i) for i, n in enumerate(self.director_names, 1)}
        self.addr.update({n: server_addr(i) for i, n in enumerate(self.server_names, 1)})
        self.by_addr = {a: n for n, a in self.addr.items()}
        self.workdir = Path(tempfile.mkdtemp(prefix="bgplab-"))
        self.topo: Topology | None = None
        self.router_bird: Bird | None = None
        self.speakers: dict[str, Bird] = {}
        self.lvsd: dict[str, LvsdDirector] = {}
        self.servers: dict[str, subprocess.Popen[Any]] = {}
        self.flows: dict[str, Flow] = {}
        self._client: FlowClient | None = None
        self._sniffer: subprocess.Popen[str] | None = None
        self._tag = f"{tag}{os.getpid() % 10000}"

    # ------------------------------------------------------------------ building
    def __enter__(self) -> BgpLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> BgpLab:
        """Namespaces, addresses, routes, the sniffer, the router's BIRD and the real servers
        (all answering); flows and director speakers are the caller's."""
        why = missing_bird()
        if why:
            raise LabError(why)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        topo = self.topo = Topology(tag=self._tag)
        router = topo.add_host("router", f"{ROUTER}/24", forwarding=True)
        client_ns = f"{topo.prefix}-client"
        topo._add_netns(client_ns)  # removed by topo.close() like every host's
        client = Host(topo, "client", client_ns)
        topo.hosts["client"] = client
        router.run("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth0",
                   "netns", client_ns)
        client.run("ip", "link", "set", "lo", "up")
        for h in (router, client):
            h.run("ip", "link", "set", "eth1" if h is router else "eth0", "up")
        router.add_addr(f"{ROUTER_OUT}/24", dev="eth1")
        client.add_addr(f"{CLIENT_ADDR}/24")
        client.run("ip", "route", "add", "default", "via", ROUTER_OUT)
        router.run("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1",
                   "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                   "net.ipv4.conf.eth0.rp_filter=0", "net.ipv4.conf.eth1.rp_filter=0")
        for name in self.director_names:
            d = topo.add_host(name, f"{self.addr[name]}/24", forwarding=True)
            d.run("ip", "route", "add", "default", "via", ROUTER)
            d.run("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
                  "net.ipv4.conf.eth0.rp_filter=0", "net.ipv4.conf.all.arp_ignore=1",
                  "net.ipv4.conf.all.arp_announce=2")
        for name in self.server_names:
            rs = topo.add_host(name, f"{self.addr[name]}/24")
            if self.mode == "dr":
                rs.run("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1",
                       "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.eth0.arp_ignore=1",
                       "net.ipv4.conf.eth0.arp_announce=2", "net.ipv4.conf.all.rp_filter=0",
                       "net.ipv4.conf.eth0.rp_filter=0", "net.ipv4.conf.lo.rp_filter=0")
                rs.add_addr(f"{VIP}/32", dev="lo")
                rs.run("ip", "route", "add", "default", "via", ROUTER)
            self.start_server(name)
        self._sniffer = subprocess.Popen(
            ["ip", "netns", "exec", topo.bridge_ns, sys.executable, "-u", "-c", SNIFFER, VIP,
             str(PORT), *(topo[d].peer for d in self.director_names)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        topo._procs.append(self._sniffer)  # stopped by topo.close()
        assert self._sniffer.stdout is not None
        if self._sniffer.stdout.readline().strip() != "ready":
            raise LabError(f"the sniffer did not start (rc {self._sniffer.poll()})")
        self.start_router()

    def host(self, name: str) -> Host:
        assert self.topo is not None
        return self.topo[name]

    def start_router(self) -> Bird:
        conf = self.workdir / "router.conf"
        log = self.workdir / "router.log"
        conf.write_text(router_bird_conf({n: self.addr[n] for n in self.director_names},
                                         hold=self.hold, bfd=self.bfd,
                                         bfd_interval_ms=self.bfd_interval_ms, log=log))
        self.router_bird = Bird(self.host("router"), conf, self.workdir / "router.ctl",
                                log).start()
        return self.router_bird

    def start_server(self, name: str) -> None:
        h = self.host(name)
        # every address: the VIP (DR, on lo) and its own (NAT; the directors' health checks)
        p = h.popen([sys.executable, "-u", "-c", RS_SERVER, name, "0.0.0.0", str(PORT)],
                    stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        if p.stdout.readline().strip() != "ready":
            raise LabError(f"real server {name} did not start (rc {p.poll()})")
        self.servers[name] = p

    def start_hand_speaker(self, name: str) -> Bird:
        """BIRD on director ``name`` announcing the VIP by hand (no lvsd)."""
        conf = self.workdir / f"{name}.conf"
        log = self.workdir / f"{name}.log"
        conf.write_text(director_bird_conf(self.addr[name], hold=self.hold, bfd=self.bfd,
                                           bfd_interval_ms=self.bfd_interval_ms, log=log))
        b = Bird(self.host(name), conf, self.workdir / f"{name}.ctl", log).start()
        self.speakers[name] = b
        return b

    def hand_nat(self, name: str, seed: int = 0x5EED) -> None:
        """What lvsd's nftables data plane does, by hand: DNAT VIP:PORT to a real server by a
        seeded hash of the client's address and port (the same choice on every director),
        plus the masquerade every NAT director needs here."""
        servers = ", ".join(f"{i}: {self.addr[n]}" for i, n in enumerate(self.server_names))
        self.host(name).run("nft", "-f", "-", input=(
            "table ip bgplabnat {\n"
            "  chain pre { type nat hook prerouting priority dstnat;\n"
            f"    ip daddr {VIP} tcp dport {PORT} dnat to jhash ip saddr . tcp sport"
            f" mod {len(self.server_names)} seed {seed:#x} map {{ {servers} }}\n"
            "  }\n"
            "}\n"))
        self.masquerade(name)

    def masquerade(self, name: str) -> None:
        """Full NAT on director ``name``: connections it translated leave with its own address,
        so the real server's reply comes back to it (active-active NAT: no real server can
        route its replies through "the" director, there are several)."""
        self.host(name).run("nft", "-f", "-", input=(
            "table ip bgplabmasq {\n"
            "  chain post { type nat hook postrouting priority srcnat;\n"
            f"    oifname eth0 ip daddr {LAN} ct status dnat masquerade\n"
            "  }\n"
            "}\n"))

    def lvsd_director(self, name: str, dataplane: str, **kw: Any) -> LvsdDirector:
        """A (not yet started) ``lvsd run`` for director ``name`` announcing the VIP."""
        lb_kind = "DR" if self.mode == "dr" else "NAT"
        conf = lvsd_conf(name, self.addr[name], {n: self.addr[n] for n in self.server_names},
                         lb_kind=lb_kind, hold=self.hold, bfd=self.bfd,
                         bfd_interval_ms=self.bfd_interval_ms, **kw)
        d = LvsdDirector(self.host(name), conf, self.workdir, dataplane)
        self.lvsd[name] = d
        return d

    # ------------------------------------------------------------------ router state
    def nexthops(self) -> set[str]:
        """Directors (names) the router's kernel route to the VIP currently goes to."""
        out = self.host("router").run("ip", "-4", "route", "show", f"{VIP}/32",
                                      check=False).stdout
        return {self.by_addr.get(a, a) for a in _NEXTHOP.findall(out)}

    def wait_nexthops(self, want: Iterable[str], timeout: float = WAIT) -> bool:
        w = set(want)
        return bool(_wait(lambda: self.nexthops() == w, timeout, 0.1))

    def sessions(self) -> dict[str, str]:
        """BGP protocol name -> BIRD's state info (``Established``, ``Active``, ...)."""
        assert self.router_bird is not None
        out: dict[str, str] = {}
        for line in self.router_bird.birdc("show", "protocols").splitlines():
            m = _PROTO.match(line.strip())
            if m and m.group(1) in self.director_names:
                out[m.group(1)] = m.group(3).split()[0] if m.group(3) else m.group(2)
        return out

    def router_protocol(self, name: str) -> str:
        """``birdc show protocols all NAME`` on the router (state, last error, ...)."""
        assert self.router_bird is not None
        return self.router_bird.birdc("show", "protocols", "all", name)

    def bgp_routes(self) -> str:
        assert self.router_bird is not None
        return self.router_bird.birdc("show", "route", "for", VIP, "all")

    # ------------------------------------------------------------------ flows
    def client(self) -> FlowClient:
        if self._client is None:
            self._client = FlowClient(self.host("client"))
        return self._client

    def reset_flows(self) -> None:
        """Close every flow (a fresh flow client next time)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.flows.clear()

    def open_flows(self, n: int, timeout: float = 10.0) -> dict[str, Flow]:
        """Open ``n`` flows; returns those that got an answer (the others are reported by the
        errors in ``self.open_errors``)."""
        res = self.client().ask({"cmd": "open", "n": n, "timeout": timeout})
        new: dict[str, Flow] = {}
        self.open_errors: dict[str, str] = {}
        for fid, r in res["flows"].items():
            if r["server"] is None:
                self.open_errors[fid] = str(r["error"])
                continue
            new[fid] = Flow(fid, int(r["sport"]), str(r["server"]))
        self.flows.update(new)
        return new

    def _sniff(self, cmd: str) -> dict[str, Any]:
        p = self._sniffer
        assert p is not None and p.stdin is not None and p.stdout is not None
        p.stdin.write(cmd + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        if not line:
            raise LabError(f"the sniffer exited (rc {p.poll()})")
        out: dict[str, Any] = json.loads(line)
        return out

    def clear_seen(self) -> None:
        self._sniff("clear")

    def seen(self) -> dict[str, set[int]]:
        """Director -> source ports of the frames to VIP:PORT the LAN sent it since
        :meth:`clear_seen`."""
        got = self._sniff("dump")
        return {d: set(got.get(self.host(d).peer, ())) for d in self.director_names}

    def round(self, timeout: float = 5.0) -> Round:
        """Ping every flow once; who carried each (the frames the LAN sent each director)."""
        self.clear_seen()
        res = self.client().ask({"cmd": "ping", "timeout": timeout}, timeout=timeout + 120)
        seen = self.seen()
        st: dict[str, str] = {}
        srv: dict[str, str | None] = {}
        car: dict[str, str | None] = {}
        for fid, r in res["flows"].items():
            if fid not in self.flows:
                continue
            f = self.flows[fid]
            holders = [d for d, ports in seen.items() if f.sport in ports]
            # a flow seen by two directors in one round was moved during it: the last one
            # cannot be told, so it counts for neither
            director = holders[0] if len(holders) == 1 else None
            st[fid], srv[fid], car[fid] = r["state"], r["server"], director
            f.history.append((r["state"], r["server"], director))
        return Round(st, srv, car)

    # ------------------------------------------------------------------ teardown
    def kill_director(self, name: str, *pids: int) -> None:
        """Power loss of a director: its bridge port goes down first (from then on nothing it
        sends reaches anyone: a killed process's sockets would otherwise still send FIN or
        RST, which a powered-off machine does not), then every process in its namespace (and
        ``pids``' trees) is stopped and killed. :meth:`revive_director` reconnects it."""
        self.host(name).cut()
        h = self.host(name)
        out = h.run("ip", "netns", "pids", h.ns, check=False).stdout.split()
        for pid in [*pids, *(int(p) for p in out)]:
            kill_tree(pid)

    def revive_director(self, name: str) -> None:
        """Reconnect a director :meth:`kill_director` cut off (its processes stay dead)."""
        self.host(name).heal()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._client.close()
        for d in self.lvsd.values():
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                d.stop()
        for b in [*self.speakers.values(), *([self.router_bird] if self.router_bird else [])]:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                b.stop(timeout=5)
        if self.topo is not None:
            self.topo.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self) -> str:
        parts = []
        for name, b in [("router", self.router_bird), *self.speakers.items()]:
            if b is not None:
                parts.append(f"--- bird {name}\n{b.text()}")
        for name, d in self.lvsd.items():
            parts.append(f"--- lvsd {name}\n{d.log()}")
        return "\n".join(parts)
