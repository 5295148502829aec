"""``lvsd check-config``: exit codes as ``keepalived -t`` (0 valid, 4 missing/fatal,
5 errors), diagnostics on stderr, summary, ``--json`` with secrets redacted; run both
in-process and as the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lvsd.cli import main
from lvsd.config.dump import REDACTED, to_json
from lvsd.config.loader import load, loads

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LVSD = REPO / ".venv" / "bin" / "lvsd"
CONF = REPO / "conf"
EXAMPLES = sorted(CONF.glob("*/director*.conf"))

GOOD = """global_defs {
  router_id t
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 9
  authentication {
    auth_type PASS
    auth_pass hunter2
  }
  virtual_ipaddress {
    192.0.2.10
  }
}
SSL {
  password topsecret
}
virtual_server 192.0.2.10 80 {
  protocol TCP
  lb_algo rr
  lb_kind NAT
  real_server 198.51.100.11 80 {
    TCP_CHECK {
    }
  }
}
"""


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check-config", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_valid_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "k.conf"
    p.write_text(GOOD)
    code, out, err = run_cli(capsys, "-f", str(p))
    assert code == 0 and err == ""
    assert "vrrp_instances: 1" in out and "real_servers: 1" in out
    assert "checkers: 1 (TCP_CHECK 1)" in out and "Configuration is valid" in out


def test_missing_file_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "-f", str(tmp_path / "none.conf"))
    assert code == 4
    assert err.strip().splitlines() == [f"FATAL: Configuration file '{tmp_path}/none.conf' "
                                        "not found"]


def test_errors_exit_5_with_positions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "k.conf"
    p.write_text(GOOD.replace("  lb_algo rr\n", "  lb_algo rr\n  frobnicate 1\n"))
    code, _, err = run_cli(capsys, "-f", str(p))
    assert code == 5
    assert f"({p}: Line 21) Unknown keyword 'frobnicate'" in err.splitlines()


def test_warnings_only_exit_0_and_unsupported_listed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "k.conf"
    p.write_text(GOOD.replace("  router_id t\n", "  router_id t\n  enable_snmp_vrrp\n"))
    code, out, err = run_cli(capsys, "-f", str(p))
    assert code == 0
    assert f"WARNING: ({p}: Line 3) keyword 'enable_snmp_vrrp' is not supported by lvsd" \
           " - ignored" in err
    assert f"    {p}:3: enable_snmp_vrrp (global_defs)" in out


def test_config_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "k.conf"
    p.write_text("@a global_defs {\n@a  router_id a\n@a }\n@b bogus\n")
    assert run_cli(capsys, "-f", str(p), "--config-id", "a")[0] == 0
    assert run_cli(capsys, "-f", str(p), "--config-id", "b")[0] == 5


def test_json_redacts_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "k.conf"
    p.write_text(GOOD)
    code, out, _ = run_cli(capsys, "-f", str(p), "--json")
    assert code == 0
    data = json.loads(out)
    assert "hunter2" not in out and "topsecret" not in out
    assert data["vrrp_instances"][0]["auth_pass"] == REDACTED
    assert data["global_defs"]["ssl"]["password"] == REDACTED
    vs = data["virtual_servers"][0]
    assert vs["protocol"] == "TCP" and vs["lb_kind"] == "NAT"
    chk = vs["real_servers"][0]["checkers"][0]
    assert chk["kind"] == "TCP_CHECK" and chk["connect_timeout"] == 5.0
    assert chk["pos"] == f"{p}:23"


def test_to_json_is_stable_and_diffable() -> None:
    a = to_json(loads(GOOD, config_id="x"))
    b = to_json(loads(GOOD.replace("lb_algo rr", "lb_algo wrr"), config_id="x"))
    assert json.dumps(a) == json.dumps(to_json(loads(GOOD, config_id="x")))
    assert a["virtual_servers"][0]["lb_algo"] == "rr"
    assert b["virtual_servers"][0]["lb_algo"] == "wrr"
    assert a["vrrp_instances"][0]["auth_pass"] == REDACTED
    unset = to_json(loads("vrrp_instance V {\n virtual_router_id 1\n}\n"))
    assert unset["vrrp_instances"][0]["auth_pass"] is None


@pytest.mark.parametrize("path", EXAMPLES, ids=[f"{p.parent.name}/{p.name}" for p in EXAMPLES])
def test_example_configs_load_cleanly(path: Path) -> None:
    cfg = load(path)
    assert cfg.ok and cfg.diagnostics == (), [str(d) for d in cfg.diagnostics]
    (inst,) = cfg.vrrp_instances
    assert inst.interface == "eth0" and inst.virtual_router_id == 51
    (vs,) = cfg.virtual_servers
    assert (vs.address, vs.port) == ("192.0.2.10", 80)
    assert vs.lb_kind.value == path.parent.name.upper()
    assert [r.address for r in vs.real_servers] == ["198.51.100.11", "198.51.100.12"]


def test_example_pairs_are_consistent() -> None:
    assert len(EXAMPLES) == 6
    for mode in ("nat", "dr", "tun"):
        d1, d2 = (load(CONF / mode / f"director{n}.conf") for n in (1, 2))
        i1, i2 = d1.vrrp_instances[0], d2.vrrp_instances[0]
        assert i1.virtual_router_id == i2.virtual_router_id
        assert [v.cidr for v in i1.virtual_ipaddresses] == [v.cidr for v in i2.virtual_ipaddresses]
        assert i1.priority > i2.priority
        assert [p.address for p in i1.unicast_peers] == [i2.unicast_src_ip]
        assert [p.address for p in i2.unicast_peers] == [i1.unicast_src_ip]


@pytest.mark.parametrize(("content", "code"), [
    (GOOD, 0),
    (GOOD + "}\n", 5),
    (None, 4),
])
def test_console_script_exit_codes(tmp_path: Path, content: str | None, code: int) -> None:
    p = tmp_path / "k.conf"
    if content is not None:
        p.write_text(content)
    exe = [str(LVSD)] if LVSD.exists() else [sys.executable, "-m", "lvsd.cli"]
    proc = subprocess.run([*exe, "check-config", "-f", str(p)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    if code == 5:
        assert f"({p}: Line 27) Extra '}}' found" in proc.stderr


def test_console_script_json(tmp_path: Path) -> None:
    exe = [str(LVSD)] if LVSD.exists() else [sys.executable, "-m", "lvsd.cli"]
    proc = subprocess.run([*exe, "check-config", "-f", str(CONF / "nat" / "director1.conf"),
                           "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["vrrp_instances"][0]["name"] == "VI_NAT"
