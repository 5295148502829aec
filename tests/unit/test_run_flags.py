"""``lvsd run`` takes keepalived's command line: every flag of the installed keepalived (its own
``--help``) parses, and the ones with a meaning keep it (checked against keepalived where it can
be run: ``--signum``, ``-t``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require
from lvsd.cli import build_parser
from lvsd.daemon.command import IGNORED, ignored_flags, options_from_args, parse_umask
from lvsd.daemon.logsetup import FACILITY_DAEMON, FACILITY_USER, parse_facility, plan_logging

pytestmark = pytest.mark.unit

LVSD = [sys.executable, "-m", "lvsd.cli"]

# keepalived 2.2.7 keepalived/core/main.c parse_cmdline long_options[] (every build option on):
# name -> takes an argument ("req", "opt" or None)
KEEPALIVED_227_LONG = {
    "use-file": "req", "vrrp": None, "check": None, "no_bfd": None, "all": None,
    "log-console": None, "log-detail": None, "log-facility": "req", "log-file": "opt",
    "all-config": None, "flush-log-file": None, "no-syslog": None, "umask": "req",
    "release-vips": None, "dont-release-vrrp": None, "dont-release-ipvs": None,
    "dont-respawn": None, "dont-fork": None, "dump-conf": None, "pid": "req",
    "vrrp_pid": "req", "genhash": None, "checkers_pid": "req", "address-monitoring": None,
    "bfd_pid": "req", "snmp": None, "snmp-agent-socket": "req", "core-dump": None,
    "core-dump-pattern": "opt", "no-mem-check": None, "mem-check-log": None,
    "namespace": "req", "config-id": "req", "signum": "req", "config-test": "opt",
    "config-fd": "req", "perf": "opt", "debug": "opt", "version": None, "help": None,
}
# its getopt string ":vhlndu:DRS:f:p:i:es:mM::g::Gt::PCr:VXac:ITBb:xA:L"
KEEPALIVED_227_SHORT = "vhlnduDRSfpiesmMgGtPCrVXacITBbxAL"
SHORT_WITH_ARG = set("uSfpisrcbA")


def parse(*argv: str) -> object:
    return build_parser().parse_args(["run", *argv])


def keepalived_help_flags() -> list[tuple[str | None, str, str | None]]:
    """(short, long, arg kind) for every option the installed keepalived lists in --help."""
    require(None if shutil.which("keepalived") else "needs keepalived (apt-get install "
                                                    "keepalived)")
    p = subprocess.run(["keepalived", "--help"], capture_output=True, text=True, timeout=30)
    out = []
    pat = re.compile(r"^\s+(?:-(\w), )?--([\w-]+)(\[=\S+\]|=\S+| \w+)?")
    for line in (p.stdout + p.stderr).splitlines():
        m = pat.match(line)
        if m:
            arg = m.group(3)
            kind = None if not arg else ("opt" if arg.startswith("[") else "req")
            out.append((m.group(1), m.group(2), kind))
    assert len(out) > 30, p.stderr  # the parse itself must not silently find nothing
    return out


def test_every_flag_of_the_installed_keepalived_parses() -> None:
    for short, long, kind in keepalived_help_flags():
        if long in ("help", "version"):
            continue
        for argv in ([f"--{long}=X"] if kind else [f"--{long}"],
                     ([f"-{short}", "X"] if kind else [f"-{short}"]) if short else None):
            if argv is None:
                continue
            parse(*argv)  # SystemExit (argparse usage error) fails the test


def test_every_flag_of_keepalived_227_parses() -> None:
    for long, kind in KEEPALIVED_227_LONG.items():
        if long in ("help", "version"):
            continue
        parse(f"--{long}=X" if kind else f"--{long}")
    for c in KEEPALIVED_227_SHORT:
        if c in "hv":
            continue
        parse(f"-{c}", "X") if c in SHORT_WITH_ARG else parse(f"-{c}")


@pytest.mark.parametrize("args", ["--version", "-v"])
def test_version(args: str) -> None:
    from importlib.metadata import version

    for argv in ([args], ["run", args]):
        p = subprocess.run([*LVSD, *argv], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == f"lvsd {version('lvsd')}"


def test_debian_unit_execstart_line() -> None:
    # /lib/systemd/system/keepalived.service: ExecStart=/usr/sbin/keepalived --dont-fork
    # $DAEMON_ARGS, with DAEMON_ARGS from /etc/default/keepalived (RHEL: KEEPALIVED_OPTIONS="-D")
    for daemon_args in ("", "-D", "-D -S 1", "--vrrp", "-P -D -S local1", "-C -p /run/k.pid",
                        "-D -D -l -n", "-f /etc/keepalived/other.conf --log-detail -x"):
        a = parse("--dont-fork", *shlex.split(daemon_args))
        opts = options_from_args(a)  # type: ignore[arg-type]
        assert opts.mode == ("vrrp-only" if ("--vrrp" in daemon_args or "-P" in daemon_args)
                             else "check-only" if "-C" in daemon_args else "full")
    a = parse("--dont-fork", "-D", "-S", "1")
    assert a.log_facility == "1" and parse_facility(a.log_facility) == 17  # LOG_LOCAL1


def test_options_mapping() -> None:
    o = options_from_args(parse("-f", "/x.conf", "-i", "lb1", "--pid", "/run/k.pid",  # type: ignore[arg-type]
                                "--strict", "-P"))
    assert (o.config_file, o.config_id, o.pid_file, o.strict, o.mode) == (
        "/x.conf", "lb1", "/run/k.pid", True, "vrrp-only")
    o = options_from_args(parse("--use-file=/y.conf", "-p", "", "--check"))  # type: ignore[arg-type]
    assert (o.config_file, o.pid_file, o.strict, o.mode) == ("/y.conf", None, False,
                                                             "check-only")
    o = options_from_args(parse("--pid-file", "/run/l.pid", "--verbose"))  # type: ignore[arg-type]
    assert o.pid_file == "/run/l.pid" and o.verbose


def test_unimplemented_flags_warn_once_each() -> None:
    a = parse("-x", "-A", "/s", "-X", "-V", "-a", "-r", "/v.pid", "-c", "/c.pid", "-b", "/b",
              "-m", "-M", "-e", "-L", "--no-mem-check", "--config-fd=3", "--perf", "--debug")
    lines = ignored_flags(a)  # type: ignore[arg-type]
    assert len(lines) == len(IGNORED)
    assert all(x.startswith("lvsd ignores keepalived's --") for x in lines)
    # lvsd already behaves like these: no warning
    assert ignored_flags(parse("-n", "-R", "-B", "--all", "-I", "-D", "-D", "-l", "-G",  # type: ignore[arg-type]
                               "--flush-log-file")) == []


def test_facility_and_umask_as_keepalived_reads_them() -> None:
    for text, code in (("0", 16), ("7", 23), ("local3", 19), ("daemon", FACILITY_DAEMON),
                       ("user", FACILITY_USER)):
        assert parse_facility(text) == code
    for bad in ("8", "local8", "-1", "kern", "", "local", "١"):
        assert parse_facility(bad) is None
    assert [parse_umask(x) for x in ("022", "0x12", "18", "0777", "0")] == [
        0o22, 0o22, 0o22, 0o777, 0]
    assert [parse_umask(x) for x in ("08", "01000", "abc", "-1")] == [None] * 4


def test_log_destinations() -> None:
    # default: syslog, plus stderr unless stderr is systemd's journal (no duplicate lines)
    p = plan_logging(no_syslog=False, console=False, syslog_available=True,
                     stderr_is_journal=True)
    assert (p.syslog, p.stderr, p.warning) == (True, False, None)
    p = plan_logging(no_syslog=False, console=True, syslog_available=True,
                     stderr_is_journal=True)
    assert (p.syslog, p.stderr) == (True, True)  # -l asks for the console too
    p = plan_logging(no_syslog=False, console=False, syslog_available=True,
                     stderr_is_journal=False)
    assert (p.syslog, p.stderr) == (True, True)
    p = plan_logging(no_syslog=True, console=False, syslog_available=True,
                     stderr_is_journal=True)
    assert (p.syslog, p.stderr) == (False, True)
    p = plan_logging(no_syslog=False, console=False, syslog_available=False,
                     stderr_is_journal=True, syslog_path="/dev/log")
    assert (p.syslog, p.stderr) == (False, True)
    assert p.warning == "syslog socket /dev/log not available: logging to stderr only"


def test_signum_matches_keepalived() -> None:
    require(None if shutil.which("keepalived") else "needs keepalived")
    for name in ("STOP", "RELOAD", "DATA", "STATS", "JSON"):
        ka = subprocess.run(["keepalived", f"--signum={name}"], capture_output=True, text=True,
                            timeout=30)
        lv = subprocess.run([*LVSD, "run", f"--signum={name}"], capture_output=True, text=True,
                            timeout=60)
        assert (lv.returncode, lv.stdout) == (ka.returncode, ka.stdout) == (0, ka.stdout)
    lv = subprocess.run([*LVSD, "run", "--signum=NOPE"], capture_output=True, text=True,
                        timeout=60)
    ka = subprocess.run(["keepalived", "--signum=NOPE"], capture_output=True, text=True,
                        timeout=30)
    assert lv.returncode == ka.returncode == 1
    assert lv.stderr.strip() == ka.stderr.strip() == "Unknown sigfunc NOPE"
    # keepalived's STATS_CLEAR is SIGRTMAX-1, which lvsd does not handle (it would kill it)
    lv = subprocess.run([*LVSD, "run", "--signum=STATS_CLEAR"], capture_output=True, text=True,
                        timeout=60)
    assert lv.returncode == 1 and lv.stdout == ""


VALID = """\
virtual_server 127.0.0.1 18080 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 18081 {
        weight 1
    }
}
"""
WITH_ERROR = VALID.replace("lb_algo rr", "lb_algo rr\n    delay_loop bogus")


@pytest.mark.parametrize("text", [VALID, WITH_ERROR, None], ids=["valid", "error", "missing"])
def test_config_test_exits_as_check_config(tmp_path: Path, text: str | None) -> None:
    conf = tmp_path / "keepalived.conf"
    if text is not None:
        conf.write_text(text)
    cc = subprocess.run([*LVSD, "check-config", "-f", str(conf)], capture_output=True,
                        text=True, timeout=60)
    t = subprocess.run([*LVSD, "run", "-f", str(conf), "-t"], capture_output=True, text=True,
                       timeout=60)
    assert t.returncode == cc.returncode == {VALID: 0, WITH_ERROR: 5, None: 4}[text], t.stderr
    assert t.stderr == cc.stderr
    assert "Traceback" not in t.stderr


def test_config_test_log_file_appends_with_umask(tmp_path: Path) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(WITH_ERROR)
    log = tmp_path / "test.log"
    for _ in range(2):
        t = subprocess.run([*LVSD, "run", "-u", "077", "-f", str(conf), f"--config-test={log}"],
                           capture_output=True, text=True, timeout=60)
        assert t.returncode == 5 and t.stderr == ""
    text = log.read_text()
    assert text.count("invalid number") == 2 and text.count("\n") >= 2  # appended, not truncated
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600  # 0644 under umask 077


def test_refused_and_invalid_flags_say_one_line(tmp_path: Path) -> None:
    for argv, text in ((["-s", "blue"], "ip netns exec blue lvsd run"),
                       (["--genhash"], "no genhash mode")):
        p = subprocess.run([*LVSD, "run", *argv], capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and text in p.stderr and len(p.stderr.splitlines()) == 1
    # keepalived reports a bad -S and a bad -u and runs on with the default
    p = subprocess.run([*LVSD, "run", "-S", "kern", "-u", "0999", "-G", "--dataplane", "memory",
                        "--status-listen", "off", "-p", "", "-f", str(tmp_path / "none.conf")],
                       capture_output=True, text=True, timeout=60)
    assert "Invalid log facility 'kern'" in p.stderr and "Invalid --umask option 0999" in p.stderr
    assert "usage:" not in p.stderr and "Traceback" not in p.stderr
    assert p.returncode == 1  # the missing file stops it, after the flags were taken


def test_log_file_gets_the_records(tmp_path: Path) -> None:
    # -g/--log-file=FILE: also append to FILE (keepalived's --log-file, here always built in)
    log = tmp_path / "lvsd.log"
    p = subprocess.run([*LVSD, "run", "-G", f"--log-file={log}", "-x", "--dataplane", "memory",
                        "--status-listen", "off", "-p", "", "-f", str(tmp_path / "none.conf")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    text = log.read_text()
    # the logger is the module's (__name__): lvsd.daemon.command parses the flags
    assert "WARNING lvsd.daemon.command: lvsd ignores keepalived's --snmp" in text, text
    assert "lvsd ignores keepalived's --snmp" in p.stderr  # -G: stderr has it as well
    p = subprocess.run([*LVSD, "run", "-g", str(tmp_path / "no" / "dir.log"), "-f", "x"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.startswith("lvsd: log file ") and \
        len(p.stderr.splitlines()) == 1, p.stderr
