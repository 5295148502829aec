"""Network-namespace topologies for tests, benchmarks and the demo.

Theory of operation
-------------------
One namespace holds a Linux bridge (the "wire"); every host is its own namespace whose ``eth0``
is a veth whose peer sits in the bridge namespace, so all hosts share one L2 segment. Creating a
5-host topology takes ~70 ms. Everything is done with ``ip``/``sysctl`` subprocesses (root
needed); :meth:`Topology.close` removes every namespace it created, and names carry a unique
prefix so parallel runs never collide. A namespace's name is recorded before ``ip netns add``
runs, so one interrupted half-way (Ctrl-C) is removed too; the host's own network namespace is
never changed (veth pairs are created inside the namespaces).

Use only documentation / private addresses inside the namespaces (192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24, 10.0.0.0/8, fd00::/8): traffic never leaves them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class LabError(RuntimeError):
    pass


def have_netns() -> str | None:
    """None if namespaces can be used here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


def _run(argv: Sequence[str], *, check: bool = True, input: str | None = None,
         timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    """A namespace with ``eth0`` on the topology's bridge."""

    topo: Topology
    name: str  # short name, e.g. "d1"
    ns: str  # namespace name
    addrs: list[str] = field(default_factory=list)  # "192.0.2.1/24" style

    def cmd(self, *argv: str) -> list[str]:
        """argv that runs ``argv`` inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, *argv: str, check: bool = True, input: str | None = None,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return _run(self.cmd(*argv), check=check, input=input, timeout=timeout)

    def sh(self, script: str, check: bool = True,
           timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, check=check, timeout=timeout)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a long-running process inside the namespace (caller must stop it)."""
        proc = subprocess.Popen(self.cmd(*argv), **kw)
        self.topo._procs.append(proc)
        return proc

    def add_addr(self, cidr: str, dev: str = "eth0") -> None:
        fam = "-6" if ":" in cidr else "-4"
        extra = ["nodad"] if ":" in cidr else []
        self.run("ip", fam, "addr", "add", cidr, "dev", dev, *extra)
        self.addrs.append(cidr)

    def link(self, up: bool, dev: str = "eth0") -> None:
        self.run("ip", "link", "set", dev, "up" if up else "down")

    def cut(self) -> None:
        """Cut this host off the wire: its bridge port goes down, so its eth0 loses carrier too
        (a link failure: VRRP goes FAULT). For a silent partition drop frames in the bridge."""
        self.topo.bridge_run("ip", "link", "set", self.peer, "down")

    def heal(self) -> None:
        self.topo.bridge_run("ip", "link", "set", self.peer, "up")

    @property
    def peer(self) -> str:
        return f"v-{self.name}"

    def addresses(self, dev: str = "eth0") -> list[str]:
        out = self.run("ip", "-o", "addr", "show", "dev", dev).stdout
        res = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[2] in ("inet", "inet6"):
                res.append(parts[3])
        return res


class Topology:
    """A bridge plus hosts. Use as a context manager; ``close()`` is idempotent."""

    def __init__(self, tag: str = "lt") -> None:
        why = have_netns()
        if why:
            raise LabError(f"network namespaces unavailable: {why}")
        self.prefix = f"{tag}-{uuid.uuid4().hex[:6]}"
        self.bridge_ns = f"{self.prefix}-br"
        self.hosts: dict[str, Host] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []  # every namespace we (may have) created, in order
        self._closed = False
        try:
            self._add_netns(self.bridge_ns)
            self.bridge_run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
                            "forward_delay", "0")
            # multicast snooping would drop VRRP/NDP until queriers exist: turn it off.
            self.bridge_run("ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
            self.bridge_run("ip", "link", "set", "br0", "up")
            self.bridge_run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def _add_netns(self, ns: str) -> None:
        self._namespaces.append(ns)  # first: an interrupted `ip netns add` is cleaned up too
        _run(["ip", "netns", "add", ns])

    def bridge_run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.bridge_ns, *argv], check=check)

    def add_host(self, name: str, *addrs: str, forwarding: bool = False) -> Host:
        if name in self.hosts:
            raise LabError(f"host {name} exists")
        ns = f"{self.prefix}-{name}"
        self._add_netns(ns)
        host = Host(self, name, ns)
        self.hosts[name] = host
        _run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
              host.peer, "netns", self.bridge_ns])
        self.bridge_run("ip", "link", "set", host.peer, "master", "br0")
        self.bridge_run("ip", "link", "set", host.peer, "up")
        host.run("ip", "link", "set", "lo", "up")
        host.run("ip", "link", "set", "eth0", "up")
        sysctls = {
            "net.ipv4.conf.all.send_redirects": "0",
            "net.ipv4.conf.default.send_redirects": "0",
            "net.ipv4.conf.eth0.send_redirects": "0",
            "net.ipv6.conf.eth0.accept_dad": "0",
            "net.ipv4.ip_forward": "1" if forwarding else "0",
        }
        host.run("sysctl", "-qw", *[f"{k}={v}" for k, v in sysctls.items()], check=False)
        for a in addrs:
            host.add_addr(a)
        return host

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        hosts_first = [*self._namespaces[1:], *self._namespaces[:1]]  # the bridge last
        for ns in hosts_first:
            # kill anything still running inside the namespace (e.g. daemons started by hand)
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            _run(["ip", "netns", "del", ns], check=False)

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cleanup_stale(prefix: str = "lt-") -> list[str]:
    """Delete leftover namespaces whose name starts with ``prefix`` (from crashed runs)."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    gone = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix):
            for pid in _run(["ip", "netns", "pids", name], check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            _run(["ip", "netns", "del", name], check=False)
            gone.append(name)
    return gone


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first), from /proc's ``children`` lists."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    kids = [int(x) for x in fh.read().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants as a crash of the machine would: every process
    is stopped first, so none can react (``lvsd run`` would respawn its VRRP child, and the
    child, which dies with its parent by SIGTERM as keepalived's do, would send priority 0)."""
    import signal

    tree = [pid, *descendants(pid)]
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGSTOP)
    for p in [*descendants(pid), *tree]:  # children first; once more for late forks
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
