"""``lvsd run`` as a real process on loopback: check-only mode, in-memory data plane.

Real HTTP servers on 127.0.0.1 are the real servers; the daemon is started as a subprocess with
a real $NOTIFY_SOCKET (AF_UNIX datagram, as systemd does), and driven with real signals. No root
and no namespaces needed (VRRP and the kernel data planes are covered by tests/netns).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lvsd.daemon import sd_notify

pytestmark = pytest.mark.realserver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def web() -> Iterator[int]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


CONF = """global_defs {{
    router_id unit
}}
virtual_server 127.0.0.1 {vport} {{
    delay_loop 0.3
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 {up} {{
        weight 2
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 0.5
            retry 0
        }}
    }}
    real_server 127.0.0.1 {down} {{
        weight 3
        TCP_CHECK {{
            connect_timeout 0.5
            retry 0
        }}
    }}{extra}
}}
"""


class Proc:
    def __init__(self, tmp: Path, conf: str, *extra: str) -> None:
        self.tmp = tmp
        self.conf = tmp / "keepalived.conf"
        self.conf.write_text(conf)
        self.pidfile = tmp / "lvsd.pid"
        self.port = _free_port()
        self.sock_path = tmp / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.sock_path))
        self.notify.settimeout(0.2)
        self.log = tmp / "lvsd.log"
        env = dict(os.environ, NOTIFY_SOCKET=str(self.sock_path))
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lvsd.cli", "run", "-f", str(self.conf), "--check-only",
                 "--dataplane", "memory", "--status-listen", f"127.0.0.1:{self.port}",
                 "--pid-file", str(self.pidfile), "--dump-dir", str(tmp), "--sweep", "1",
                 *extra], stdout=out, stderr=subprocess.STDOUT, env=env)

    def messages(self, until: str, timeout: float = 15.0) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got.append(self.notify.recv(4096).decode())
            except TimeoutError:
                if self.proc.poll() is not None:
                    break
                continue
            if any(until in m for m in got):
                return got
        raise AssertionError(f"no {until} from lvsd (got {got}):\n{self.log.read_text()}")

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
        return out

    def wait(self, pred: Any, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if pred(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"condition never met; last status {s}")
            time.sleep(0.1)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lvsd.cli", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()


@pytest.fixture
def daemon(tmp_path: Path, web: int) -> Iterator[Proc]:
    p = Proc(tmp_path, CONF.format(vport=_free_port(), up=web, down=_free_port(), extra=""),
             "--log-format", "json", "--strict")  # the broken reload below: any error
    try:
        yield p
    finally:
        p.close()


def _rs(s: dict[str, Any], port: int) -> dict[str, Any]:
    vs = s["virtual_servers"][0]
    return next(r for r in vs["real_servers"] if r["port"] == port)


def test_sd_notify_path_and_abstract(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert s.recv(100) == b"READY=1"
    name = f"lvsd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        assert sd_notify("RELOADING=1", {"NOTIFY_SOCKET": "@" + name})
        assert s.recv(100) == b"RELOADING=1"
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "missing")})


def test_run_ready_reload_dumps_and_stop(daemon: Proc, web: int) -> None:
    msgs = daemon.messages("READY=1")
    assert any("MAINPID=" in m for m in msgs)
    assert int(daemon.pidfile.read_text()) == daemon.proc.pid
    s = daemon.wait(lambda s: all(r["alive"] is not None
                                  for r in s["virtual_servers"][0]["real_servers"]))
    assert s["process"]["ready"] and s["process"]["mode"] == "check-only"
    up = _rs(s, web)
    assert up["alive"] is True and up["dataplane_weight"] == 2
    down = next(r for r in s["virtual_servers"][0]["real_servers"] if r["port"] != web)
    assert down["alive"] is False and not down["in_dataplane"] and down["failed_checkers"]
    assert s["reconciler"]["dataplane"] == "memory" and s["reconciler"]["runs_total"] >= 1
    assert {c["kind"] for c in s["checkers"]} == {"HTTP_GET", "TCP_CHECK"}

    # lvsd status (the CLI) renders the table
    out = daemon.cli("status", "-s", f"127.0.0.1:{daemon.port}")
    assert out.returncode == 0, out.stderr
    assert f"127.0.0.1:{web}" in out.stdout and "DOWN" in out.stdout and "Masq" in out.stdout

    # good reload: weight 2 -> 5, announced to systemd, applied, checker state kept
    daemon.conf.write_text(daemon.conf.read_text().replace("weight 2", "weight 5"))
    out = daemon.cli("reload", "--pid-file", str(daemon.pidfile),
                     "-s", f"127.0.0.1:{daemon.port}")
    assert out.returncode == 0 and "reload applied" in out.stdout, out.stdout + out.stderr
    msgs = daemon.messages("READY=1")
    assert any("RELOADING=1" in m for m in msgs)
    s = daemon.wait(lambda s: _rs(s, web)["dataplane_weight"] == 5)
    assert s["config"]["generation"] == 2 and s["config"]["last_reload_ok"] is True
    assert _rs(s, web)["alive"] is True  # unchanged checker kept its verdict

    # broken reload (--strict: any error rejects it; keepalived's default policy, which runs
    # through such errors, is tests/unit/test_error_policy.py): rejected, old config intact;
    # its secret never shows (status, log)
    good = daemon.conf.read_text()
    secret = "Zq9secre"
    daemon.conf.write_text(good.replace("lb_algo rr", "lb_algo rr\n    delay_loop") + f"""
vrrp_instance VI_9 {{
    interface lo
    virtual_router_id 9
    authentication {{
        auth_type PASS
        auth_pass {secret}
    }}
    priority {secret}
    virtual_ipaddress {{
        192.0.2.9
    }}
}}
""")
    out = daemon.cli("reload", "--pid-file", str(daemon.pidfile),
                     "-s", f"127.0.0.1:{daemon.port}")
    assert out.returncode == 1 and "REJECTED" in out.stdout, out.stdout + out.stderr
    s = daemon.status()
    assert s["config"]["generation"] == 2 and s["config"]["last_reload_ok"] is False
    assert s["config"]["reload_failures_total"] == 1 and s["config"]["last_reload_errors"]
    errors = " ".join(s["config"]["last_reload_errors"])
    assert "priority" in errors.lower() and "<redacted>" in errors and secret not in errors
    assert _rs(s, web)["dataplane_weight"] == 5
    daemon.conf.write_text(good)

    # every transition so far is on /events (replayed from the start with last_event_id=0)
    seen: set[str] = set()
    raw = b""
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/events?last_event_id=0",
                                timeout=5) as r:
        while not ({"lifecycle", "realserver", "reconcile", "reload"} <= seen
                   and b'"ok": false' in raw):
            line = r.readline()
            raw += line
            if line.startswith(b"event: "):
                seen.add(line.decode().split(": ", 1)[1].strip())
    assert b'"ok": false' in raw and b"<redacted>" in raw and secret.encode() not in raw

    # keepalived dump signals
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN + 2):
        daemon.proc.send_signal(sig)
    deadline = time.monotonic() + 10
    files = ("keepalived.data", "keepalived_check.data", "keepalived.stats", "keepalived.json")
    while not all((daemon.tmp / f).exists() for f in files) and time.monotonic() < deadline:
        time.sleep(0.05)
    check = (daemon.tmp / "keepalived_check.data").read_text()
    assert f"RS = 127.0.0.1:{web}" in check and "alive = yes" in check
    assert json.loads((daemon.tmp / "keepalived.json").read_text()) == []  # no VRRP here
    assert oct((daemon.tmp / "keepalived.data").stat().st_mode & 0o777) == "0o600"

    # a second daemon on the same pid file refuses to start (one line, no traceback)
    out = daemon.cli("run", "-f", str(daemon.conf), "--check-only", "--dataplane", "memory",
                     "--status-listen", "off", "--pid-file", str(daemon.pidfile))
    assert out.returncode == 1 and "already running" in out.stderr, out.stderr
    assert int(daemon.pidfile.read_text()) == daemon.proc.pid

    # SIGTERM: bounded, clean exit, pid file removed, JSON logs throughout
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0
    assert not daemon.pidfile.exists()
    lines = [json.loads(line) for line in daemon.log.read_text().splitlines() if line.strip()]
    assert any(r["msg"].startswith("reload rejected") for r in lines)
    assert any(r["msg"] == "stopped" for r in lines)
    assert secret not in daemon.log.read_text()
    assert any("<redacted>" in r["msg"] for r in lines)


def test_bad_config_refuses_to_start_with_strict(tmp_path: Path) -> None:
    # keepalived logs an unknown keyword and runs (so does lvsd: tests/unit/test_error_policy);
    # --strict refuses it, with its position
    conf = tmp_path / "bad.conf"
    conf.write_text("virtual_server 127.0.0.1 80 {\n    lb_algo rr\n    lb_kind NAT\n"
                    "    protocol TCP\n    delay_lop 3\n}\n")
    p = subprocess.run([sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only",
                        "--dataplane", "memory", "--status-listen", "off", "--strict"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert f"{conf}: Line 5" in p.stderr and "not starting" in p.stderr


def test_ipvs_unavailable_is_one_clear_line(tmp_path: Path) -> None:
    if os.path.exists("/proc/net/ip_vs"):
        pytest.skip("this kernel has IPVS: the message under test cannot appear")
    conf = tmp_path / "k.conf"
    conf.write_text("virtual_server 127.0.0.1 80 {\n    lb_algo rr\n    lb_kind NAT\n"
                    "    protocol TCP\n}\n")
    p = subprocess.run([sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only",
                        "--status-listen", "off"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1
    last = [ln for ln in p.stderr.splitlines() if ln.startswith("lvsd:")]
    assert len(last) == 1 and "IPVS" in last[0] and "--dataplane nftables" in last[0], p.stderr
    assert "Traceback" not in p.stderr
