"""VRRP nodes in lab namespaces: lvsd and real keepalived (test and benchmark harness).

Not shipped: it lives in ``tests/support`` (on pytest's ``pythonpath``; ``bench/`` scripts add
the directory themselves). Shared by ``tests/netns/test_vrrp_*.py``,
``tests/interop/test_keepalived_*.py`` and ``bench/failover.py``. Each node runs inside a
``lvsd.lab.netns.Host``; logs go to a file in the node's work directory; ``Topology.close()``
kills whatever is left.

Three kinds of node: ``LvsdNode`` runs the VRRP runners alone (``vrrp_standalone.py`` beside
this file, which exposes each runner's raw status); ``DaemonNode`` runs what ships, ``lvsd run
--vrrp-only`` on the keepalived.conf ``keepalived_conf()`` writes, and reads ``/status``;
``KeepalivedNode`` runs real keepalived on the same file.

keepalived runs VRRP-only in the foreground (``-n -l -D --vrrp``) with fresh pid-file names
per start (a killed child lingers as a zombie and would block a restart). ``kill()`` SIGKILLs
the VRRP child and the parent together so nothing sends a priority-0 advert.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsd.lab.netns import Host, Topology, kill_tree

__all__ = [
    "STANDALONE",
    "DaemonNode",
    "KeepalivedNode",
    "LvsdNode",
    "NodeOpts",
    "keepalived_conf",
    "mac",
    "neigh_mac",
    "partition",
    "reaches",
    "wait_for",
]

#: the VRRP-only harness LvsdNode runs (``python STANDALONE ...``)
STANDALONE = str(Path(__file__).resolve().with_name("vrrp_standalone.py"))

_seq = itertools.count()
_workdirs: list[str] = []  # removed at exit (logs are in the assertion messages)


@atexit.register
def _remove_workdirs() -> None:
    for d in _workdirs:
        shutil.rmtree(d, ignore_errors=True)


_PATH = re.compile(r"'?/\S+")  # a file name in a log line (keepalived's command line)
KA_REJECT = re.compile(
    r"invalid|wrong version|bad checksum|TTL|checksum error|auth|ip address associated"
    r"|receive an invalid",
    re.IGNORECASE,
)


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``pred`` until truthy (returned) or ``timeout`` (returns the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


@dataclass
class NodeOpts:
    """One VRRP instance, in terms both implementations understand."""

    priority: int = 100
    vrid: int = 51
    advert_int: float = 1.0
    version: int = 2
    vips: Sequence[str] = ("192.0.2.100/24",)
    state: str | None = None  # MASTER | BACKUP
    nopreempt: bool = False
    auth_pass: str | None = None
    auth_type: str = "PASS"  # or "AH" (with auth_pass)
    unicast_src: str | None = None
    unicast_peers: Sequence[str] = ()
    garp_master_delay: float = 0.0
    garp_master_repeat: int = 3
    extra: list[str] = field(default_factory=list)  # extra vrrp_standalone.py / lvsd run args


class _Node:
    def __init__(self, host: Host, opts: NodeOpts, workdir: str | None = None) -> None:
        self.host = host
        self.opts = opts
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix=f"vrrp-{host.ns}-")
            _workdirs.append(workdir)
        self.workdir = workdir
        self.proc: subprocess.Popen[Any] | None = None
        self.logfile = ""

    def log(self) -> str:
        if not self.logfile or not os.path.exists(self.logfile):
            return ""
        with open(self.logfile, errors="replace") as fh:
            return fh.read()

    def has_vip(self, vip: str | None = None) -> bool:
        want = vip or self.opts.vips[0]
        if "/" not in want:
            return any(a.split("/")[0] == want for a in self.host.addresses())
        return want in self.host.addresses()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class LvsdNode(_Node):
    """lvsd's VRRP runners (``python STANDALONE``) on ``eth0`` of ``host``."""

    def argv(self) -> list[str]:
        o = self.opts
        self.state_file = os.path.join(self.workdir, "state")
        av = [sys.executable, STANDALONE, "--interface", "eth0",
              "--vrid", str(o.vrid), "--priority", str(o.priority),
              "--advert-int", f"{o.advert_int:g}", "--version", str(o.version),
              "--garp-master-delay", f"{o.garp_master_delay:g}",
              "--garp-master-repeat", str(o.garp_master_repeat),
              "--state-file", self.state_file]
        for v in o.vips:
            av += ["--vip", v]
        if o.state:
            av += ["--state", o.state]
        if o.nopreempt:
            av.append("--nopreempt")
        if o.auth_pass:
            av += ["--auth-pass", o.auth_pass]
        if o.unicast_src:
            av += ["--unicast-src-ip", o.unicast_src]
        for p in o.unicast_peers:
            av += ["--unicast-peer", p]
        return av + list(o.extra)

    def start(self) -> LvsdNode:
        self.logfile = os.path.join(self.workdir, f"lvsd-{next(_seq)}.log")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.workdir, "state"))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        out = open(self.logfile, "w")  # noqa: SIM115 - handed to the child
        self.proc = self.host.popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        if not wait_for(lambda: "READY" in self.log() or not self.alive(), 10):
            raise RuntimeError(f"lvsd on {self.host.name} did not start:\n{self.log()}")
        if not self.alive():
            raise RuntimeError(f"lvsd on {self.host.name} exited:\n{self.log()}")
        return self

    def state(self) -> str | None:
        try:
            with open(self.state_file) as fh:
                line = fh.read().split()
        except (FileNotFoundError, AttributeError):
            return None
        return line[1] if len(line) >= 2 else None

    def status(self) -> dict[str, Any]:
        """The runner's status of VI_1 (counters included); refreshed first if running."""
        path = self.state_file + ".json"
        if self.alive():
            assert self.proc is not None
            before = os.stat(path).st_mtime_ns if os.path.exists(path) else 0
            self.proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: os.path.exists(path) and os.stat(path).st_mtime_ns != before, 3)
        try:
            with open(path) as fh:
                data: dict[str, Any] = json.load(fh)
        except (OSError, ValueError):
            return {}
        return dict(data.get("VI_1", {}))

    def term(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)
            # `ip netns exec` execs python directly, so proc is the daemon itself
            _kill_ns(self.host, STANDALONE)

    def stop(self) -> None:
        self.term()
        if self.wait_exit(10) is None:
            self.kill()


class DaemonNode(_Node):
    """What ships: ``lvsd run --vrrp-only`` on ``keepalived_conf()``'s file, in ``host``.

    State and status come from the daemon's ``GET /status`` on the namespace's loopback (read
    by a short Python child inside the namespace).
    """

    STATUS = "127.0.0.1:9343"
    _GET = ("import sys, urllib.request\n"
            "with urllib.request.urlopen('http://%s/status' % sys.argv[1], timeout=3) as r:\n"
            "    sys.stdout.write(r.read().decode())\n")

    def start(self) -> DaemonNode:
        n = next(_seq)
        conf = os.path.join(self.workdir, f"lvsd-{n}.conf")
        with open(conf, "w") as fh:
            fh.write(keepalived_conf(self.host.name, self.opts))
        self.logfile = os.path.join(self.workdir, f"lvsd-run-{n}.log")
        out = open(self.logfile, "w")  # noqa: SIM115 - handed to the child
        self.proc = self.host.popen(
            [sys.executable, "-m", "lvsd.cli", "run", "-f", conf, "--vrrp-only",
             "--dataplane", "memory", "--status-listen", self.STATUS, "--no-syslog",
             "--pid-file", os.path.join(self.workdir, f"lvsd-{n}.pid"),
             "--dump-dir", self.workdir, *self.opts.extra],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        out.close()
        if not wait_for(lambda: self.status() or not self.alive(), 20):
            raise RuntimeError(f"lvsd run on {self.host.name} did not start:\n{self.log()}")
        if not self.alive():
            raise RuntimeError(f"lvsd run on {self.host.name} exited:\n{self.log()}")
        return self

    def status(self) -> dict[str, Any]:
        """``/status``'s entry for VI_1 ({} while the daemon does not answer)."""
        if not self.alive():
            return {}
        p = self.host.run(sys.executable, "-c", self._GET, self.STATUS, check=False,
                          timeout=10)
        try:
            data = json.loads(p.stdout) if p.returncode == 0 else {}
        except ValueError:
            return {}
        return next((dict(i) for i in data.get("instances", ()) if i.get("name") == "VI_1"),
                    {})

    def state(self) -> str | None:
        st = self.status().get("state")
        return str(st) if st else None

    def term(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            # `ip netns exec` execs python: proc is the daemon itself; its VRRP child dies
            # with it (no priority 0: a crash)
            kill_tree(self.proc.pid)
            self.proc.wait(5)

    def stop(self) -> None:
        self.term()
        if self.wait_exit(15) is None:
            self.kill()


def keepalived_conf(name: str, o: NodeOpts) -> str:
    lines = [
        "global_defs {",
        f"  router_id {name}",
        "  script_user root",
        "  enable_script_security",
        f"  vrrp_garp_master_delay {int(o.garp_master_delay)}",
        f"  vrrp_garp_master_repeat {o.garp_master_repeat}",
        "}",
        "vrrp_instance VI_1 {",
        f"  state {o.state or 'BACKUP'}",
        "  interface eth0",
        f"  virtual_router_id {o.vrid}",
        f"  priority {o.priority}",
        f"  advert_int {o.advert_int:g}",
        f"  version {o.version}",
    ]
    if o.nopreempt:
        lines.append("  nopreempt")
    if o.auth_pass:
        lines += ["  authentication {", f"    auth_type {o.auth_type}",
                  f"    auth_pass {o.auth_pass}", "  }"]
    if o.unicast_src:
        lines.append(f"  unicast_src_ip {o.unicast_src}")
    if o.unicast_peers:
        lines += ["  unicast_peer {", *(f"    {p}" for p in o.unicast_peers), "  }"]
    lines += ["  virtual_ipaddress {", *(f"    {v}" for v in o.vips), "  }", "}", ""]
    return "\n".join(lines)


class KeepalivedNode(_Node):
    """Real keepalived (VRRP only) on ``eth0`` of ``host``."""

    def start(self) -> KeepalivedNode:
        n = next(_seq)
        conf = os.path.join(self.workdir, f"keepalived-{n}.conf")
        with open(conf, "w") as fh:
            fh.write(keepalived_conf(self.host.name, self.opts))
        self.pidfile = os.path.join(self.workdir, f"ka-{n}.pid")
        self.vrrp_pidfile = os.path.join(self.workdir, f"ka-vrrp-{n}.pid")
        self.logfile = os.path.join(self.workdir, f"keepalived-{n}.log")
        out = open(self.logfile, "w")  # noqa: SIM115 - handed to the child
        self.proc = self.host.popen(
            ["keepalived", "-n", "-l", "-D", "-f", conf, "--vrrp", "-p", self.pidfile,
             "-r", self.vrrp_pidfile], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        if not wait_for(lambda: os.path.exists(self.vrrp_pidfile) or not self.alive(), 10):
            raise RuntimeError(f"keepalived on {self.host.name} did not start:\n{self.log()}")
        if not self.alive():
            raise RuntimeError(f"keepalived on {self.host.name} exited:\n{self.log()}")
        return self

    def _pids(self) -> list[int]:
        pids = []
        for f in (self.vrrp_pidfile, self.pidfile):
            with contextlib.suppress(OSError, ValueError), open(f) as fh:
                pids.append(int(fh.read().strip()))
        return pids

    def state(self) -> str | None:
        """The last state keepalived logged for VI_1."""
        st = None
        for m in re.finditer(r"\(VI_1\) Entering (\w+) STATE", self.log()):
            st = m.group(1)
        return st

    def rejects(self) -> list[str]:
        """Log lines where keepalived rejected or complained about a received advert."""
        # file names are not messages: a random temp dir name ("...-ttlhfuzp") must not match
        return [ln for ln in self.log().splitlines() if KA_REJECT.search(_PATH.sub("", ln))
                and "script" not in ln.lower()
                # keepalived's own send failures (tentative link-local at start), not ours
                and "send advert error" not in ln]

    def term(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        self.term()
        if self.wait_exit(10) is None:
            self.kill()


def mac(host: Host) -> str:
    out = host.run("ip", "-o", "link", "show", "eth0").stdout
    m = re.search(r"link/ether ([0-9a-f:]{17})", out)
    assert m, out
    return m.group(1)


def neigh_mac(client: Host, addr: str = "192.0.2.100") -> str | None:
    out = client.run("ip", "neigh", "show", addr, check=False).stdout
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else None


def reaches(client: Host, addr: str = "192.0.2.100") -> bool:
    fam = "-6" if ":" in addr else "-4"
    return client.run("ping", fam, "-n", "-c", "1", "-W", "0.3", addr,
                      check=False, timeout=5).returncode == 0


def partition(topo: Topology, host: Host, on: bool) -> None:
    """Drop every frame to/from ``host`` in the bridge (nftables bridge family): unlike
    ``Host.cut()`` (a veth loses carrier with its peer, so that host goes FAULT) both sides
    keep their links up."""
    if on:
        script = (f"add table bridge ltpart\n"
                  f"add chain bridge ltpart drops {{ type filter hook forward priority 0; }}\n"
                  f"add rule bridge ltpart drops iifname {host.peer} drop\n"
                  f"add rule bridge ltpart drops oifname {host.peer} drop\n")
        subprocess.run(["ip", "netns", "exec", topo.bridge_ns, "nft", "-f", "-"],
                       input=script, text=True, check=True, timeout=10)
    else:
        topo.bridge_run("nft", "delete", "table", "bridge", "ltpart")


def _kill_ns(host: Host, pattern: str) -> None:
    out = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True, text=True,
                         check=False).stdout.split()
    for pid in out:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmd:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
