"""A throw-away host in a network namespace shaped for one keepalived.conf, and the two verdicts
on it: would keepalived run the file (``keepalived -t``), and does ``lvsd run`` reach ready.

Theory of operation
-------------------
:func:`host_needs` reads a config with :func:`lvsd.config.loader.load` (plus a plain scan of the
text for the ``dev``/``interface`` names of blocks lvsd does not model, such as
``static_ipaddress`` or ``virtual_routes``) and lists the interfaces the file names and the local
addresses it expects (``unicast_src_ip``, ``mcast_src_ip``, checker ``bindto``, a primary address
on each interface in its instance's family). :class:`KaHost` builds that host: namespace ``H``
holds one veth per interface under its own name (``eth0``, ``ens33``, ``bond0``...), their peers
sit in a second namespace ``W`` (up, so every link has carrier), ``lo`` is up and a default route
points at the first interface, as on a real machine.

:meth:`KaHost.keepalived_t` runs ``keepalived -t -f FILE`` inside ``H`` and classifies the result
by its messages (:class:`KaVerdict`): ``keepalived -t`` keeps the numerically largest
``config_err_t`` as its exit status (lib/parser.c report_config_error, core/main.c
config_test_exit), so a BAD_IF (4) hides behind any later GENERAL_ERROR (5); the messages are
what tell a file keepalived cannot run. :meth:`KaHost.run_lvsd` starts ``lvsd run`` on the memory
data plane inside ``H``, polls ``/healthz`` from inside the namespace with a small persistent
HTTP client (:class:`HttpAgent`, bounded polling) and stops it with SIGTERM.

Test code only: addresses stay inside the namespaces created here, which :meth:`KaHost.close`
removes with everything still running in them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvsd.config.loader import load
from lvsd.config.model import Config

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
STATUS_PORT = 9330  # each namespace has its own loopback: no collision between hosts

# Messages after which keepalived 2.2.7 does not run the configuration, whatever `-t` exits
# with. Each is the text of a report_config_error() that precedes a failure of the VRRP or
# checker process start (the parent keepalived then stops):
KA_FATAL_MESSAGES = (
    # vrrp/vrrp_daemon.c start_vrrp(): CONFIG_BAD_IF, then stop_vrrp(KEEPALIVED_EXIT_CONFIG)
    "Non-existent interface specified in configuration",
    # vrrp/vrrp.c vrrp_complete_instance() returning false -> vrrp_complete_init() fails
    "No VIP specified; at least one is required",
    "Unicast peers are not supported in strict mode",
    "Unicast instances must have unicast_src_ip or interface",
    "Non link-local address required if interface omitted",
    # vrrp/vrrp.c chk_min_cfg()
    "the virtual router id must be set",
    "Unknown interface!",
    # vrrp/vrrp.c check_vrid_conflicts()
    "duplicate VRID conflict with",
    # lib/parser.c: CONFIG_FILE_NOT_FOUND for the main file
    "Unable to find configuration file",
    "Unable to read configuration file",
    # lib/parser.c null_strvec(): exit(KEEPALIVED_EXIT_CONFIG) while parsing
    "is missing a parameter",
    # CONFIG_FATAL: vrrp/vrrp_ipaddress.c, vrrp/vrrp_parser.c
    "requires either an interface",
    "specified for linkbeat interface",
    "specified for up/down delay",
)

_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ 16 with the NUL
_RAW_IF = re.compile(r"\b(?:dev|interface|lvs_sync_daemon_interface)\s+([^\s{}#!]+)")


class HostError(RuntimeError):
    pass


def _run(argv: list[str], *, check: bool = True, input: str | None = None,
         timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", input=input,
                          timeout=timeout, check=False, cwd=cwd)
    if check and proc.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


# ------------------------------------------------------------------------ what a file needs


@dataclass
class HostSpec:
    """Interfaces (in order, first one carries the default route) and their addresses."""

    interfaces: dict[str, list[str]] = field(default_factory=dict)  # name -> ["a.b.c.d/24"]

    def add_if(self, name: str | None) -> str | None:
        if not name or name == "lo" or not _IFNAME.match(name):
            return None
        self.interfaces.setdefault(name, [])
        return name

    def add_addr(self, name: str | None, cidr: str) -> None:
        if name is None or name not in self.interfaces:
            if not self.interfaces:
                self.add_if("eth0")
            name = next(iter(self.interfaces))
        if cidr not in self.interfaces[name]:
            self.interfaces[name].append(cidr)

    def has_family(self, name: str, family: int) -> bool:
        return any((":" in a) == (family == 6) for a in self.interfaces.get(name, []))


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.split("/")[0].split("%")[0])
    except ValueError:
        return None


def _with_prefix(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"{addr}/{24 if addr.version == 4 else 64}"


def _strip_comments(text: str) -> str:
    return "\n".join(re.split(r"[#!]", ln, maxsplit=1)[0] for ln in text.splitlines())


def host_needs(path: Path, cfg: Config | None = None) -> HostSpec:
    """The interfaces and local addresses ``path`` names (for a host it can run on)."""
    cfg = cfg if cfg is not None else load(path)
    spec = HostSpec()
    for inst in cfg.vrrp_instances:
        spec.add_if(inst.interface)
        for t in inst.track_interfaces:
            spec.add_if(t.name)
        for vip in (*inst.virtual_ipaddresses, *inst.virtual_ipaddresses_excluded):
            spec.add_if(vip.dev)
    for sg in cfg.vrrp_sync_groups:
        for t in sg.track_interfaces:
            spec.add_if(t.name)
    if cfg.global_defs.lvs_sync_daemon is not None:
        spec.add_if(cfg.global_defs.lvs_sync_daemon.interface)
    checkers = [ck for vs in cfg.virtual_servers for rs in vs.real_servers for ck in rs.checkers]
    for ck in checkers:
        spec.add_if(ck.bind_if)
    # blocks lvsd keeps as unsupported (static_ipaddress, virtual_routes, use_vmac's parent,
    # lvs_sync_daemon_interface ...) name interfaces too: keepalived checks them
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for m in _RAW_IF.finditer(_strip_comments(text)):
        spec.add_if(m.group(1))
    if not spec.interfaces:
        spec.add_if("eth0")
    # addresses: the instance's own source address, else one in its first VIP's subnet
    for k, inst in enumerate(cfg.vrrp_instances):
        fam = 6 if inst.family == 6 else 4
        for src in (inst.unicast_src_ip, inst.mcast_src_ip):
            a = _ip(src)
            if a is not None:
                spec.add_addr(inst.interface, _with_prefix(a))
        if inst.interface and fam == 4 and not spec.has_family(inst.interface, 4):
            first = next((v for v in inst.virtual_ipaddresses if v.family == 4), None)
            a = _ip(first.address if first else None)
            if isinstance(a, ipaddress.IPv4Address) and not (a.is_loopback or a.is_multicast):
                net = ipaddress.ip_network(f"{a}/24", strict=False)
                host = net.broadcast_address - 1
                if host == a:
                    host -= 1
                spec.add_addr(inst.interface, f"{host}/24")
            else:
                spec.add_addr(inst.interface, f"10.200.{k % 250}.1/24")
    for ck in checkers:
        a = _ip(ck.bindto)
        if a is not None:
            spec.add_addr(None, f"{a}/{32 if a.version == 4 else 128}")
    for j, name in enumerate(spec.interfaces):
        if not spec.has_family(name, 4):
            spec.add_addr(name, f"10.201.{j % 250}.1/24")
    return spec


# ------------------------------------------------------------------------ verdicts


@dataclass
class KaVerdict:
    """``keepalived -t`` on one file: exit status, messages, and the ones it cannot run with."""

    rc: int
    lines: list[str]

    @property
    def fatal(self) -> list[str]:
        return [ln for ln in self.lines if any(m in ln for m in KA_FATAL_MESSAGES)]

    @property
    def crashed(self) -> bool:
        """keepalived -t died of a signal (a keepalived bug): no verdict on the file."""
        return self.rc < 0

    @property
    def runs(self) -> bool:
        # 0 clean, 5 errors keepalived runs with, 6 script security (core/main.c
        # config_test_exit); 4 (and a crash) mean it would not; messages decide the rest
        return self.rc in (0, 5, 6) and not self.fatal

    def describe(self) -> str:
        body = "\n".join(f"    {ln}" for ln in self.lines[:40])
        return f"keepalived -t exit {self.rc}, runs={self.runs}\n{body}"


@dataclass
class LvsdOutcome:
    ready: bool  # /healthz answered 200
    rc: int | None  # exit status (after our SIGTERM when it got ready); None: hung
    stderr: str
    status: dict[str, Any] | None = None  # GET /status once ready

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr

    @property
    def last_line(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        tail = "\n".join(f"    {ln}" for ln in self.stderr.splitlines()[-30:])
        return f"lvsd run: ready={self.ready} exit={self.rc}\n{tail}"


# ------------------------------------------------------------------------ HTTP from inside


_AGENT = r"""
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
base = sys.argv[1]
for line in sys.stdin:
    path = line.strip()
    try:
        with opener.open(base + path, timeout=10) as r:
            out = {"status": r.status, "body": r.read().decode("utf-8", "replace")}
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "body": e.read().decode("utf-8", "replace")}
    except OSError as e:
        out = {"status": 0, "body": str(e)}
    print(json.dumps(out), flush=True)
"""

_SSE = r"""
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=3600) as r:
    for raw in r:
        sys.stdout.write(raw.decode("utf-8", "replace"))
        sys.stdout.flush()
"""


class HttpAgent:
    """One long-lived python inside a namespace answering ``GET path`` requests (no process per
    request, no dependency on curl)."""

    def __init__(self, ns: str, base: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-I", "-c", _AGENT, base],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1)

    def get(self, path: str) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise HostError("HTTP agent died")
        out = json.loads(line)
        return int(out["status"]), str(out["body"])

    def get_json(self, path: str) -> Any:
        code, body = self.get(path)
        if code != 200:
            raise HostError(f"GET {path}: {code} {body[:200]}")
        return json.loads(body)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# ------------------------------------------------------------------------ the host


class KaHost:
    """Namespaces ``H`` (the director, with the config's interfaces) and ``W`` (their peers)."""

    def __init__(self, spec: HostSpec, tag: str = "lt-ka", *, wire_ns: str | None = None,
                 bridge: str | None = None) -> None:
        """``wire_ns``/``bridge``: put the peers in that (existing) namespace, on that bridge,
        instead of a private ``W`` namespace (e.g. a :class:`lvsd.lab.netns.Topology`'s)."""
        self.spec = spec
        self.uid = uuid.uuid4().hex[:6]
        self.prefix = f"{tag}-{self.uid}"
        self.ns = f"{self.prefix}-h"
        self.own_wire = wire_ns is None
        self.wire = wire_ns or f"{self.prefix}-w"
        self.bridge = bridge
        self._closed = False
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        _run(["ip", "netns", "add", self.ns])
        if self.own_wire:
            _run(["ip", "netns", "add", self.wire])
        # no DAD: link-local and global IPv6 addresses usable at once
        for ns in (self.ns, self.wire) if self.own_wire else (self.ns,):
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                  "net.ipv6.conf.default.accept_dad=0", "net.ipv4.conf.all.send_redirects=0"],
                 check=False)
        cmds = ["link set lo up"]
        wire = ["link set lo up"]
        for k, name in enumerate(self.spec.interfaces):
            peer = self.peer(k)
            cmds.append(f"link add {name} type veth peer name {peer} netns {self.wire}")
            cmds.append(f"link set {name} up")
            if self.bridge:
                wire.append(f"link set {peer} master {self.bridge}")
            wire.append(f"link set {peer} up")
        for name, addrs in self.spec.interfaces.items():
            for a in addrs:  # (no options in -batch lines: the family comes from the address)
                cmds.append(f"addr add {a} dev {name}" + (" nodad" if ":" in a else ""))
        first = next(iter(self.spec.interfaces))
        cmds.append(f"route add 0.0.0.0/0 dev {first}")
        cmds.append(f"route add ::/0 dev {first}")
        # -force: a duplicate the spec could not foresee must not stop the rest
        out = _run(["ip", "-force", "-n", self.ns, "-batch", "-"], input="\n".join(cmds) + "\n",
                   check=False)
        _run(["ip", "-force", "-n", self.wire, "-batch", "-"], input="\n".join(wire) + "\n",
             check=False)
        missing = [n for n in self.spec.interfaces if n not in self.links()]
        if missing:
            raise HostError(f"could not create {missing}: {out.stderr.strip()}")

    def peer(self, k: int) -> str:
        """The wire-side name of the ``k``-th interface."""
        return f"p{k}" if self.own_wire else f"k{self.uid}p{k}"

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, *argv: str, check: bool = False,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return _run(self.cmd(*argv), check=check, timeout=timeout)

    def links(self) -> list[str]:
        out = _run(["ip", "-n", self.ns, "-o", "link", "show"], check=False).stdout
        return [ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()
                if ln.count(":") >= 2]

    def describe(self) -> str:
        return "host: " + ", ".join(
            f"{n} [{' '.join(a)}]" for n, a in self.spec.interfaces.items())

    # ---- keepalived -t
    def keepalived_t(self, conf: Path, cwd: Path) -> KaVerdict:
        if not Path(KEEPALIVED).exists():
            raise HostError("keepalived is not installed (scripts/bootstrap.sh installs it)")
        proc = _run(self.cmd(KEEPALIVED, "-t", "-f", str(conf)), check=False, timeout=120,
                    cwd=cwd)
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        return KaVerdict(proc.returncode, lines)

    def check_config(self, conf: Path, cwd: Path) -> tuple[int, str]:
        """``lvsd check-config`` (what ``keepalived -t`` is to keepalived) in this host."""
        proc = _run(self.cmd(sys.executable, "-m", "lvsd.cli", "check-config", "-f", str(conf),
                             "--dataplane", "memory"), check=False, timeout=120, cwd=cwd)
        return proc.returncode, proc.stderr + proc.stdout

    # ---- lvsd run
    def start_lvsd(self, conf: Path, workdir: Path, *extra: str) -> tuple[subprocess.Popen[Any],
                                                                         Path]:
        err = workdir / "lvsd.stderr"
        with open(err, "wb") as fh:
            proc = subprocess.Popen(
                self.cmd(sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf),
                         "--dataplane", "memory", "--status-listen",
                         f"127.0.0.1:{STATUS_PORT}", "-p", "", "--dump-dir", str(workdir),
                         *extra),
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
        return proc, err

    def agent(self) -> HttpAgent:
        return HttpAgent(self.ns, f"http://127.0.0.1:{STATUS_PORT}")

    def sse(self, path: str = "/events") -> subprocess.Popen[str]:
        """``GET path`` as a stream (server-sent events), lines on the process' stdout."""
        return subprocess.Popen(
            self.cmd(sys.executable, "-I", "-c", _SSE, f"http://127.0.0.1:{STATUS_PORT}{path}"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True, bufsize=1)

    def wait_ready(self, proc: subprocess.Popen[Any], agent: HttpAgent,
                   timeout: float = 90.0) -> bool:
        """Poll /healthz until 200 (True) or lvsd exits / ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            code, _ = agent.get("/healthz")
            if code == 200:
                return True
            time.sleep(0.1)
        return False

    def run_lvsd(self, conf: Path, workdir: Path, timeout: float = 90.0) -> LvsdOutcome:
        proc, err = self.start_lvsd(conf, workdir)
        agent = self.agent()
        status = None
        try:
            ready = self.wait_ready(proc, agent, timeout)
            if ready:
                with contextlib.suppress(HostError, ValueError):
                    status = agent.get_json("/status")
                proc.send_signal(signal.SIGTERM)
            try:
                rc: int | None = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                rc = None
        finally:
            agent.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        return LvsdOutcome(ready, rc, err.read_text(errors="replace"), status)

    # ---- teardown
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ns in (self.ns, self.wire) if self.own_wire else (self.ns,):
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "del", ns], check=False)

    def __enter__(self) -> KaHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------ the property


@dataclass
class Case:
    name: str
    conf: Path
    ka: KaVerdict
    lvsd: LvsdOutcome
    host: str
    text: str = ""
    check: tuple[int, str] | None = None  # lvsd check-config: exit status, output

    def problems(self) -> list[str]:
        """Where lvsd and keepalived disagree on running the file (empty: they agree), and
        where ``lvsd check-config`` does not predict ``lvsd run`` or disagrees with
        ``keepalived -t`` on the class of the file (0 clean, 5 errors, 6 script security)."""
        out = []
        lv = self.lvsd
        if self.check is not None:
            rc, text = self.check
            if "Traceback (most recent call last)" in text:
                out.append("lvsd check-config printed a traceback")
            if (rc == 4) == lv.ready:
                out.append(f"lvsd check-config exit {rc} does not predict lvsd run "
                           f"(ready={lv.ready})")
            # a keyword lvsd does not implement (virtual_routes, static_routes...) is one
            # warning: what keepalived says about the values inside it lvsd cannot say
            unread = "is not supported by lvsd" in text and rc < self.ka.rc
            if (not self.ka.crashed and self.ka.runs and lv.ready and rc != self.ka.rc
                    and not unread):
                out.append(f"lvsd check-config exit {rc}, keepalived -t exit {self.ka.rc}")
        if lv.traceback:
            out.append("lvsd printed a traceback")
        if self.ka.crashed:
            # no keepalived verdict to compare with: lvsd must still behave (run and stop
            # cleanly, or refuse in one line)
            if lv.ready and lv.rc != 0:
                out.append(f"lvsd did not stop cleanly on SIGTERM (exit {lv.rc})")
            elif not lv.ready and not lv.last_line.startswith("lvsd:"):
                out.append(f"lvsd's reason is not one clear 'lvsd: ...' line: {lv.last_line!r}")
        elif self.ka.runs:
            if not lv.ready:
                out.append("keepalived runs this file but lvsd did not get ready: "
                           + (lv.last_line or "(no output)"))
            elif lv.rc != 0:
                out.append(f"lvsd did not stop cleanly on SIGTERM (exit {lv.rc})")
        else:
            if lv.ready:
                out.append("keepalived would not run this file ("
                           + "; ".join(self.ka.fatal or [f"-t exit {self.ka.rc}"])
                           + ") but lvsd started")
            elif lv.rc in (0, None):
                out.append(f"lvsd refused without a failure exit status ({lv.rc})")
            elif not lv.last_line.startswith("lvsd:"):
                out.append(f"lvsd's reason is not one clear 'lvsd: ...' line: {lv.last_line!r}")
            elif self.ka.fatal and not any(m in lv.last_line for m in KA_FATAL_MESSAGES):
                # a reason of a class keepalived cannot run with, in keepalived's words (not
                # necessarily the same one: keepalived stops at its first, e.g. BAD_IF before
                # vrrp_complete_init's checks)
                out.append(f"lvsd refused for a reason keepalived would run with: "
                           f"{lv.last_line!r}")
        return out

    def report(self) -> str:
        text = ""
        if self.text:
            numbered = "\n".join(f"{i:4} {ln}" for i, ln in enumerate(self.text.splitlines(), 1))
            text = f"\n--- config {self.conf}:\n{numbered}"
        cc = ""
        if self.check is not None:
            cc = f"\n  lvsd check-config exit {self.check[0]}\n" + "\n".join(
                f"    {ln}" for ln in self.check[1].splitlines()[:40])
        return (f"{self.name}: " + "; ".join(self.problems()) + f"\n  {self.host}\n  "
                + self.ka.describe() + "\n  " + self.lvsd.describe() + cc + text)


def check_file(name: str, conf: Path, workdir: Path, *, host_from: Path | None = None,
               show_text: bool = False) -> Case:
    """Build the host ``host_from`` (default ``conf``) needs, then both verdicts on ``conf``."""
    spec = host_needs(host_from or conf)
    workdir.mkdir(parents=True, exist_ok=True)
    with KaHost(spec) as host:
        ka = host.keepalived_t(conf, workdir)
        check = host.check_config(conf, workdir)
        lv = host.run_lvsd(conf, workdir)
        return Case(name, conf, ka, lv, host.describe(),
                    conf.read_text(errors="replace") if show_text else "", check)


def corpus_files() -> list[Path]:
    """The shared corpus (tests/config/kaconf_corpus.py lists it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "kaconf_corpus", Path(__file__).resolve().parents[1] / "config" / "kaconf_corpus.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files: Iterable[Path] = mod.corpus_files()
    return list(files)
