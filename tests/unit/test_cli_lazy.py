"""`lvsd SUBCOMMAND` imports only what that sub-command needs (cli.py LAZY_SUBCOMMANDS).

* every command line shows the same sub-command list with the same help lines, whichever
  modules it imported (a placeholder says what the real parser says);
* ``lvsd check-config`` (a fresh process: ``sys.modules`` when it exits) imports neither the
  daemon, the status client and server, aiohttp, prometheus_client, pyroute2, tenacity nor the
  package metadata; for a file without ``vrrp_instance`` not the VRRP stack either.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lvsd.cli import LAZY_SUBCOMMANDS, build_parser

pytestmark = pytest.mark.unit

PROBE = """
import runpy, sys
sys.argv = ["lvsd", *sys.argv[1:]]
try:
    runpy.run_module("lvsd.cli", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    sys.stderr.write("\\nEXIT %s\\nMODULES %s\\n" % (exc.code, " ".join(sorted(sys.modules))))
"""

LVS_ONLY = """\
virtual_server 192.0.2.1 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 198.51.100.1 80 {
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"""

VRRP = """\
vrrp_instance VI_1 {
    interface lo
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.0.2.10/32
    }
}
"""

NEVER = ("lvsd.daemon", "lvsd.status", "aiohttp", "prometheus_client", "pyroute2", "tenacity",
         "importlib.metadata", "urllib.request", "lvsd.demo")


def _sub_help(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(a.dest, a.help) for a in sub._choices_actions]


@pytest.mark.parametrize("word", ["check-config", *LAZY_SUBCOMMANDS])
def test_placeholders_say_what_the_real_parsers_say(word: str) -> None:
    every = build_parser(["--help"])  # every module but the demo's
    assert _sub_help(build_parser([word])) == _sub_help(every)
    assert {"check-config", "run", "status", "reload", "demo"} <= {w for w, _ in
                                                                    _sub_help(every)}


def test_named_sub_command_is_the_real_parser() -> None:
    assert build_parser(["run"]).parse_args(["run", "-f", "x.conf"]).config_file == "x.conf"
    assert build_parser(["reload"]).parse_args(["reload", "--timeout", "5"]).timeout == 5.0
    # another sub-command's placeholder parses nothing and runs nothing
    assert not hasattr(build_parser(["check-config"]).parse_args(["run"]), "func")


def _modules(*argv: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          timeout=120, check=False)
    assert "\nEXIT " in proc.stderr, proc.stderr[-2000:]
    assert "Configuration" in proc.stdout, proc.stdout  # it did check the file
    return set(proc.stderr.rsplit("\nMODULES ", 1)[1].split())


def _imported(mods: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in mods)


@pytest.mark.parametrize("text", [LVS_ONLY, VRRP + LVS_ONLY], ids=["lvs-only", "vrrp-and-lvs"])
def test_check_config_imports_no_daemon_nor_http(tmp_path: Path, text: str) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    mods = _modules("check-config", "--no-host", "-f", str(conf))
    assert "lvsd.config.loader" in mods and "lvsd.pool.planner" in mods  # the probe sees them
    assert [n for n in NEVER if _imported(mods, n)] == []
    if text == LVS_ONLY:
        assert not _imported(mods, "lvsd.vrrp")
    else:
        assert "lvsd.vrrp.spec" in mods  # the instance is checked as `lvsd run` builds it


def test_version_reads_the_metadata_when_asked() -> None:
    proc = subprocess.run([sys.executable, "-m", "lvsd.cli", "--version"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert proc.stdout.startswith("lvsd "), proc.stdout


# ---- `lvsd run`: what its path has imported when it says READY=1 (sd_notify)
#
# The probe runs `lvsd run` in-process (as the `lvsd` script does) with sd_notify wrapped: at
# READY=1 it writes sys.modules to $LVSD_TEST_MODULES, then the real sd_notify runs. The status
# endpoint is on (the default: an address); its app (aiohttp, prometheus_client) is imported
# after READY (lvsd.status.listen), so the test also asks /healthz and gets its answer.
RUN_PROBE = """
import os, runpy, sys
import lvsd.daemon.sdnotify as sdn
real = sdn.sd_notify
def sd_notify(message, env=None):
    if "READY=1" in message.split("\\n"):
        with open(os.environ["LVSD_TEST_MODULES"], "w") as f:
            f.write(" ".join(sorted(sys.modules)))
    return real(message, env)
sdn.sd_notify = sd_notify
sys.argv = ["lvsd", *sys.argv[1:]]
runpy.run_module("lvsd.cli", run_name="__main__", alter_sys=True)
"""

HTTP_CHECK = """\
virtual_server 127.0.0.1 18080 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 18081 {
        HTTP_GET {
            url {
                path /
                status_code 200
            }
        }
    }
}
"""

# not on the run path of a config without them: the status app (after READY), the package
# metadata (read when /status first shows the version), dnspython (DNS_CHECK only), the BGP
# mode (bgp_announce only), the VRRP stack (--check-only), the demo and its lab, test tooling
NOT_AT_READY = ("lvsd.status.app", "aiohttp", "prometheus_client", "importlib.metadata",
                "dns", "lvsd.checks.dns", "lvsd.bgp", "lvsd.daemon.bgpservice", "lvsd.vrrp",
                "lvsd.demo", "lvsd.lab", "pytest", "tests")


def _run_modules_at_ready(tmp_path: Path, text: str) -> set[str]:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    mods_file = tmp_path / "modules"
    log = tmp_path / "lvsd.log"
    env = dict(os.environ, LVSD_TEST_MODULES=str(mods_file))
    env.pop("NOTIFY_SOCKET", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_PROBE, "run", "-f", str(conf), "--check-only",
             "--dataplane", "memory", "--status-listen", "127.0.0.1:0", "-p", "", "-G"],
            stdout=out, stderr=out, env=env)
    try:
        deadline = time.monotonic() + 120
        port = None
        while not mods_file.exists() or port is None:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            m = re.search(r"status endpoint on http://127\.0\.0\.1:(\d+)/", log.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.05)
        while not mods_file.read_text():  # written in one go, but maybe not yet flushed
            time.sleep(0.05)
        mods = set(mods_file.read_text().split())
        # the status endpoint took its address before READY and answers after it
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60) as r:
            assert (r.status, r.read().strip()) == (200, b"ok")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert rc == 0, log.read_text()[-3000:]
    return mods


@pytest.mark.parametrize("text", [LVS_ONLY, HTTP_CHECK], ids=["tcp-check", "http-get"])
def test_run_imports_at_ready_only_what_the_config_uses(tmp_path: Path, text: str) -> None:
    mods = _run_modules_at_ready(tmp_path, text)
    assert {"lvsd.daemon.core", "lvsd.pool.service", "lvsd.status.listen"} <= mods  # it ran
    assert [n for n in NOT_AT_READY if _imported(mods, n)] == []


LIGHT_PYROUTE2 = """
import sys
from lvsd.daemon.vrrpchild import _light_pyroute2
_light_pyroute2()
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK
light = sorted(m for m in sys.modules if m.startswith("pyroute2"))
from pyroute2 import IPRoute  # any other name: the package's __init__ runs, once
import pyroute2
print(AsyncIPRoute.__module__, pyroute2.AsyncIPRoute is AsyncIPRoute, IPRoute.__name__,
      pyroute2.__version__ != "", "pyroute2.ndb" in light, "pyroute2.ndb" in sys.modules)
"""


def test_vrrp_child_imports_pyroute2_iproute_alone() -> None:
    """The VRRP child's pyroute2 (lvsd.daemon.vrrpchild._light_pyroute2): AsyncIPRoute and
    the netlink submodules without the package's every-subsystem __init__ (NDB), which still
    runs, whole, when another name is asked."""
    proc = subprocess.run([sys.executable, "-c", LIGHT_PYROUTE2], capture_output=True,
                          text=True, timeout=120, check=True)
    assert proc.stdout.split() == ["pyroute2.iproute.linux", "True", "IPRoute", "True",
                                   "False", "True"], proc.stdout + proc.stderr
