"""keepalived's error policy in the running daemon: what keepalived logs and runs through,
``lvsd run`` logs (with ``(FILE: Line N)``), applies as keepalived does and runs; every such item
stays visible (``/status`` with positions, ``lvsd_config_diagnostics``, ``lvsd status``); only
what keepalived cannot run stops a start or a reload; ``--strict`` refuses any error.

A real ``lvsd run`` process (check-only, memory data plane) against a real HTTP server on
loopback, driven by real signals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_status_daemon import CONF, Proc, _free_port, _rs, web  # noqa: F401 (fixture)

pytestmark = pytest.mark.realserver

# keepalived 2.2.7 logs each of these and runs (check_parser.c, check_data.c): an unknown
# keyword at line 6 (skipped: lb_algo rr stays), an invalid delay_before_retry ("- ignoring"),
# nb_get_retry in a TCP_CHECK ("Unknown keyword"), a duplicated real server (second removed)
EXTRA = """
    real_server 127.0.0.1 {down} {{
        weight 7
    }}"""


def _conf(up: int, down: int, vport: int) -> str:
    conf = CONF.format(vport=vport, up=up, down=down, extra=EXTRA.format(down=down))
    conf = conf.replace("    delay_loop 0.3\n", "    delay_loop 0.3\n    lb_algoo wrr\n")
    assert conf.count("        TCP_CHECK {\n") == 1
    return conf.replace("        TCP_CHECK {\n", "        TCP_CHECK {\n            nb_get_retry 1\n"
                        "            delay_before_retry soon\n")


@pytest.fixture
def errd(tmp_path: Path, web: int) -> Iterator[Proc]:  # noqa: F811 (fixture)
    p = Proc(tmp_path, _conf(web, _free_port(), _free_port()), "--log-format", "json")
    try:
        yield p
    finally:
        p.close()


def _metric(port: int, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
    raise AssertionError(f"{name}{{{labels}}} not exported")


def test_keepalived_errors_are_logged_applied_and_run_through(errd: Proc, web: int) -> None:  # noqa: F811
    errd.messages("READY=1")
    s = errd.wait(lambda s: _rs(s, web)["alive"] is True)
    conf = str(errd.conf)
    diags = s["config"]["diagnostics"]
    errors = [d for d in diags if d["severity"] == "error"]
    texts = [f"({d['file']}: Line {d['line']}) {d['message']}" for d in errors]
    assert f"({conf}: Line 6) Unknown keyword 'lb_algoo'" in texts, texts
    assert any("is duplicated - removing second rs" in t for t in texts), texts
    assert any("delay_before_retry" in t for t in texts), texts
    assert all(d["file"] == conf and d["line"] for d in errors)
    assert [d["line"] for d in diags if d["line"]] == sorted(d["line"] for d in diags
                                                             if d["line"])
    assert s["config"]["diagnostics_total"]["error"] == len(errors)
    assert s["config"]["diagnostics_total"]["fatal"] == 0
    # applied as keepalived applies it: the duplicate is gone (2 real servers, not 3), the
    # typo'd scheduler keyword skipped (lb_algo rr stays)
    vs = s["virtual_servers"][0]
    assert len(vs["real_servers"]) == 2 and vs["scheduler"] == "rr", vs
    assert _metric(errd.port, "lvsd_config_diagnostics", 'severity="error"') == len(errors)
    assert _metric(errd.port, "lvsd_config_diagnostics", 'severity="fatal"') == 0
    out = errd.cli("status", "-s", f"127.0.0.1:{errd.port}")
    assert out.returncode == 0, out.stderr
    assert f"{len(errors)} error(s) skipped as keepalived does" in out.stdout, out.stdout
    assert "Unknown keyword 'lb_algoo'" in out.stdout
    # the log carries keepalived's line for each, with its position
    logged = [json.loads(x)["msg"] for x in errd.log.read_text().splitlines() if x.strip()]
    assert f"config: ({conf}: Line 6) Unknown keyword 'lb_algoo'" in logged


def test_reload_follows_the_same_policy(errd: Proc, web: int) -> None:  # noqa: F811
    errd.messages("READY=1")
    errd.wait(lambda s: _rs(s, web)["alive"] is True)
    good = errd.conf.read_text()
    # more keepalived-skippable errors: applied (the weight change goes through)
    errd.conf.write_text(good.replace("weight 2", "weight 4\n        bogus_rs_kw 1"))
    out = errd.cli("reload", "--pid-file", str(errd.pidfile), "-s", f"127.0.0.1:{errd.port}")
    assert out.returncode == 0 and "reload applied" in out.stdout, out.stdout + out.stderr
    s = errd.wait(lambda s: _rs(s, web)["dataplane_weight"] == 4)
    assert s["config"]["generation"] == 2 and s["config"]["last_reload_ok"] is True
    assert any(d["message"] == "Unknown keyword 'bogus_rs_kw'"
               for d in s["config"]["diagnostics"])
    # what keepalived cannot run (the file is gone) is rejected; the running config stays
    errd.conf.unlink()
    out = errd.cli("reload", "--pid-file", str(errd.pidfile), "-s", f"127.0.0.1:{errd.port}")
    assert out.returncode == 1 and "REJECTED" in out.stdout, out.stdout + out.stderr
    s = errd.status()
    assert s["config"]["generation"] == 2 and s["config"]["last_reload_ok"] is False
    assert any("not found" in e for e in s["config"]["last_reload_errors"])
    assert _rs(s, web)["dataplane_weight"] == 4
    # the running config's diagnostics are still those of generation 2
    assert any(d["message"] == "Unknown keyword 'bogus_rs_kw'"
               for d in s["config"]["diagnostics"])


def test_strict_refuses_what_keepalived_would_run(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(_conf(_free_port(), _free_port(), _free_port()))
    base = [sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf), "--check-only",
            "--dataplane", "memory", "--status-listen", "off", "--pid-file", ""]
    p = subprocess.run([*base, "--strict"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    last = [ln for ln in p.stderr.splitlines() if ln.startswith("lvsd:")]
    assert len(last) == 1 and "(--strict)" in last[0] and "Line 6" in last[0], p.stderr


def test_what_keepalived_cannot_run_stops_the_start(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(_conf(_free_port(), _free_port(), _free_port()).replace(
        "lb_kind NAT", "lb_kind DR"))
    # DR on the nftables data plane: lvsd cannot do what the operator asked (FATAL, checked
    # before anything is touched: no nft command runs)
    p = subprocess.run([sys.executable, "-m", "lvsd.cli", "run", "-f", str(conf),
                        "--check-only", "--dataplane", "nftables", "--status-listen", "off",
                        "--pid-file", ""], capture_output=True, text=True, timeout=60,
                       check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    last = [ln for ln in p.stderr.splitlines() if ln.startswith("lvsd:")]
    assert len(last) == 1 and "not starting" in last[0] and "fatal" in last[0], p.stderr


def test_lvs_timeouts_reach_the_data_plane_through_the_daemon(tmp_path: Path,
                                                               web: int) -> None:  # noqa: F811
    conf = _conf(web, _free_port(), _free_port()).replace(
        "    router_id unit\n", "    router_id unit\n    lvs_timeouts tcp 7200 udp 50\n")
    p = Proc(tmp_path, conf)
    try:
        p.messages("READY=1")
        s = p.wait(lambda s: s["reconciler"]["timeouts_kernel"].get("tcp") == 7200)
        rec = s["reconciler"]
        assert rec["timeouts_desired"] == {"tcp": 7200, "udp": 50}, rec
        assert rec["timeouts_kernel"]["udp"] == 50 and rec["timeouts_kernel"]["tcpfin"] == 120
        # a reload dropping udp gives the kernel its value from before lvsd set it back
        p.conf.write_text(conf.replace(" udp 50", ""))
        out = p.cli("reload", "--pid-file", str(p.pidfile), "-s", f"127.0.0.1:{p.port}")
        assert out.returncode == 0, out.stdout + out.stderr
        s = p.wait(lambda s: s["reconciler"]["timeouts_kernel"].get("udp") == 300)
        assert s["reconciler"]["timeouts_desired"] == {"tcp": 7200}
    finally:
        p.close()
