"""``lvsd run`` logs to syslog as keepalived does: RFC 3164 datagrams on a unix socket.

The test binds its own datagram socket and points lvsd at it with ``LVSD_SYSLOG_SOCKET`` (the
test-only override of ``/dev/log``, docs/operations.md), then reads the frames lvsd really
sends: ``<PRI>Mmm dd hh:mm:ss lvsd[PID]: message`` with PRI = facility * 8 + severity, the
facility chosen by keepalived's ``-S``. It also checks where the copy on stderr goes (kept
off systemd, dropped when stderr is the journal stream) and that no secret reaches syslog.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import require
from lvsd.lab.netns import Topology, have_netns

FRAME = re.compile(rb"^<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) lvsd\[(\d+)\]: (.*)$",
                   re.S)
LOCAL0 = 16
SEV_WARNING, SEV_INFO = 4, 6

VS_CONF = """\
virtual_server 127.0.0.1 {port} {{
    delay_loop 30
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 {rport} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 2
        }}
    }}
}}
"""

VRRP_CONF = """\
vrrp_instance VI_SYSLOG {
    state MASTER
    interface eth0
    virtual_router_id 77
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass Sy5l0gPw
    }
    virtual_ipaddress {
        192.0.2.100/24
    }
}
"""


class Syslog:
    """A unix datagram socket standing in for /dev/log; parsed frames are kept in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.frames: list[tuple[int, int, int, str]] = []  # facility, severity, pid, message
        self.raw: list[bytes] = []

    def wait_for(self, pred: Callable[[str], bool], what: str, limit: float = 60.0) -> str:
        """Read frames until one's message satisfies ``pred`` (generous bound: a hang fails
        the test, speed is not asserted)."""
        for _, _, _, msg in self.frames:
            if pred(msg):
                return msg
        end = time.monotonic() + limit
        while time.monotonic() < end:
            self.sock.settimeout(max(0.1, end - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            self.raw.append(data)
            m = FRAME.match(data)
            assert m, f"not an RFC 3164 frame: {data!r}"
            pri, pid, msg = int(m.group(1)), int(m.group(3)), m.group(4).decode()
            self.frames.append((pri >> 3, pri & 7, pid, msg))
            if pred(msg):
                return msg
        raise AssertionError(f"no syslog frame {what}; got: "
                             + "\n".join(f[3] for f in self.frames))

    def drain(self) -> None:
        self.sock.settimeout(0.5)
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            self.raw.append(data)
            m = FRAME.match(data)
            assert m, f"not an RFC 3164 frame: {data!r}"
            pri = int(m.group(1))
            self.frames.append((pri >> 3, pri & 7, int(m.group(3)), m.group(4).decode()))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def syslog() -> Iterator[Syslog]:
    # a short directory: AF_UNIX paths are limited to 107 bytes
    d = Path(tempfile.mkdtemp(prefix="lt-syslog-"))
    s = Syslog(d / "log")
    try:
        yield s
    finally:
        s.close()
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    return proc.returncode


def _run_args(conf: Path, tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--dataplane", "memory",
            "--status-listen", "off", "-p", "", "--dump-dir", str(tmp), *extra]


@pytest.mark.realserver
def test_syslog_frames_carry_facility_severity_and_ident(syslog: Syslog, tmp_path: Path) -> None:
    # keepalived's Debian unit line with DAEMON_ARGS="-D -S 5" plus an SNMP flag lvsd ignores
    conf = tmp_path / "keepalived.conf"
    conf.write_text(VS_CONF.format(port=_free_port(), rport=_free_port()))
    err = tmp_path / "stderr"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(_run_args(conf, tmp_path, "--dont-fork", "-D", "-S", "5", "-x"),
                                stdout=subprocess.DEVNULL, stderr=fh,
                                env=dict(os.environ, LVSD_SYSLOG_SOCKET=str(syslog.path),
                                         PYTHONUNBUFFERED="1"))
    try:
        syslog.wait_for(lambda m: m.startswith("ready:"), "saying ready")
    finally:
        code = _stop(proc)
    syslog.wait_for(lambda m: m == "stopped", "saying stopped")
    assert code == 0, err.read_text()
    assert syslog.frames, "nothing logged to syslog"
    for fac, _sev, pid, _msg in syslog.frames:
        assert fac == LOCAL0 + 5  # -S 5: LOG_LOCAL5 (keepalived main.c LOG_FACILITY[5])
        assert pid == proc.pid
    by_msg = {m: s for _, s, _, m in syslog.frames}
    warn = next(m for m in by_msg if "--snmp" in m)
    assert by_msg[warn] == SEV_WARNING
    assert warn == ("lvsd ignores keepalived's --snmp: SNMP is not implemented; use /metrics "
                    "(Prometheus) or /status")
    assert by_msg["stopped"] == SEV_INFO
    assert all(b"\x00" not in r for r in syslog.raw)  # glibc's syslog() sends no NUL
    # stderr is a plain file here (not systemd's journal stream): every line is there too
    text = err.read_text()
    for _, _, _, msg in syslog.frames:
        assert msg in text, f"{msg!r} missing from stderr:\n{text}"


@pytest.mark.realserver
def test_under_systemd_stderr_stays_quiet_and_no_syslog_means_stderr(
        syslog: Syslog, tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(VS_CONF.format(port=_free_port(), rport=_free_port()))
    err = tmp_path / "stderr"
    fh = open(err, "wb")  # noqa: SIM115 - handed to the child
    st = os.fstat(fh.fileno())
    # systemd.exec(5): JOURNAL_STREAM=DEV:INODE of the stream stderr is connected to
    env = dict(os.environ, LVSD_SYSLOG_SOCKET=str(syslog.path),
               JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    proc = subprocess.Popen(_run_args(conf, tmp_path), stdout=subprocess.DEVNULL, stderr=fh,
                            env=env)
    fh.close()
    try:
        syslog.wait_for(lambda m: m.startswith("ready:"), "saying ready")
    finally:
        code = _stop(proc)
    syslog.wait_for(lambda m: m == "stopped", "saying stopped")
    assert code == 0
    assert {f[0] for f in syslog.frames} == {3}  # default facility: daemon, as keepalived
    assert "ready:" not in err.read_text()  # the journal gets each line once (via syslog)

    # -G: no syslog at all, everything on stderr (keepalived --no-syslog)
    before = len(syslog.frames)
    p = subprocess.run(_run_args(conf, tmp_path, "-G", "-t"), capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    q = subprocess.Popen(_run_args(conf, tmp_path, "-G"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    try:
        assert q.stderr is not None
        for raw in q.stderr:
            if b"ready:" in raw:
                break
        else:
            raise AssertionError("lvsd -G exited without logging 'ready' on stderr")
    finally:
        _stop(q)
    syslog.drain()
    assert len(syslog.frames) == before, syslog.frames[before:]


@pytest.mark.realserver
def test_missing_syslog_socket_falls_back_to_stderr_with_one_warning(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(VS_CONF.format(port=_free_port(), rport=_free_port()))
    missing = tmp_path / "no-such-socket"
    q = subprocess.Popen(_run_args(conf, tmp_path), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, LVSD_SYSLOG_SOCKET=str(missing)))
    lines: list[str] = []
    try:
        assert q.stderr is not None
        for line in q.stderr:
            lines.append(line)
            if "ready:" in line:
                break
    finally:
        _stop(q)
    warn = [x for x in lines if "syslog socket" in x]
    assert len(warn) == 1 and f"syslog socket {missing} not available" in warn[0], lines
    assert any("ready:" in x for x in lines), lines


@pytest.mark.netns
def test_vrrp_in_namespace_logs_transitions_to_local7_and_no_secret(syslog: Syslog,
                                                                     tmp_path: Path) -> None:
    # keepalived --vrrp -S 7 -d in a namespace: the state change and the dumped configuration
    # reach syslog on LOG_LOCAL7; the auth_pass never does
    require(have_netns())
    conf = tmp_path / "keepalived.conf"
    conf.write_text(VRRP_CONF)
    with Topology("lt-slog") as topo:
        d1 = topo.add_host("d1", "192.0.2.1/24")
        proc = d1.popen(_run_args(conf, tmp_path, "--vrrp", "-S", "7", "-d", "--log-console"),
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        env=dict(os.environ, LVSD_SYSLOG_SOCKET=str(syslog.path)))
        try:
            syslog.wait_for(lambda m: m.startswith("(VI_SYSLOG) Entering MASTER STATE"),
                            "with the MASTER transition")
        finally:
            _stop(proc)
        syslog.wait_for(lambda m: m == "stopped", "saying stopped")
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert {f[0] for f in syslog.frames} == {LOCAL0 + 7}
    dumped = [m for _, _, _, m in syslog.frames if m.startswith("vrrp_instances ")]
    assert len(dumped) == 1 and '"auth_pass":"<redacted>"' in dumped[0], dumped
    assert all(b"Sy5l0gPw" not in r for r in syslog.raw)
    assert "Sy5l0gPw" not in stderr
    assert "Entering MASTER STATE" in stderr  # --log-console: the console has it too
