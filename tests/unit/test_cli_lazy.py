"""`lvsd SUBCOMMAND` imports only what that sub-command needs (cli.py LAZY_SUBCOMMANDS).

* every command line shows the same sub-command list with the same help lines, whichever
  modules it imported (a placeholder says what the real parser says);
* ``lvsd check-config`` (a fresh process: ``sys.modules`` when it exits) imports neither the
  daemon, the status client and server, aiohttp, prometheus_client, pyroute2, tenacity nor the
  package metadata; for a file without ``vrrp_instance`` not the VRRP stack either.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
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
