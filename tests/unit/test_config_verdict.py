"""The one decision ``lvsd run``, a reload and ``lvsd check-config`` share
(:mod:`lvsd.config.verdict`, :mod:`lvsd.preflight`): keepalived's error policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvsd.config.loader import loads
from lvsd.config.model import Config, DiagKind, Diagnostic, Pos, Severity
from lvsd.config.verdict import (
    EXIT_ERRORS,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_SECURITY,
    decide,
    positioned,
    sort_diagnostics,
)
from lvsd.preflight import preflight

pytestmark = pytest.mark.unit


def _cfg(*diags: Diagnostic, files: tuple[str, ...] = ("a.conf",)) -> Config:
    return Config(source="a.conf", config_id="t", diagnostics=diags, files=files)


def _d(sev: Severity, line: int | None = 1, kind: DiagKind = DiagKind.GENERAL,
       file: str = "a.conf") -> Diagnostic:
    return Diagnostic(None if line is None else Pos(file, line), sev, f"{sev.value} {line}", kind)


def test_clean_config_runs_and_exits_0() -> None:
    v = decide(_cfg())
    assert v.runnable and v.exit_code == EXIT_OK and v.reason() == ""


def test_warnings_change_nothing() -> None:
    v = decide(_cfg(_d(Severity.WARNING, kind=DiagKind.LVSD)))
    assert v.runnable and v.exit_code == EXIT_OK


def test_errors_run_as_keepalived_runs_them_and_exit_5() -> None:
    v = decide(_cfg(_d(Severity.ERROR, kind=DiagKind.UNKNOWN_KEYWORD), _d(Severity.WARNING)))
    assert v.runnable and v.exit_code == EXIT_ERRORS
    assert v.counts() == {"warning": 1, "error": 1, "fatal": 0}


def test_strict_refuses_any_error() -> None:
    v = decide(_cfg(_d(Severity.ERROR)), strict=True)
    assert not v.runnable and v.exit_code == EXIT_ERRORS
    assert "--strict" in v.reason() and "(a.conf: Line 1)" in v.reason()
    assert decide(_cfg(_d(Severity.WARNING)), strict=True).runnable


def test_fatal_stops_and_exits_4_whatever_else_is_there() -> None:
    # keepalived -t keeps the numerically largest config_err_t, so a later general error can
    # hide a BAD_IF in its exit code (5); lvsd says what run would do: 4
    v = decide(_cfg(_d(Severity.FATAL, 3, DiagKind.BAD_IF), _d(Severity.ERROR, 9),
                    _d(Severity.ERROR, 12, DiagKind.SECURITY)))
    assert not v.runnable and v.exit_code == EXIT_FATAL
    assert v.reason().startswith("1 fatal configuration error(s): (a.conf: Line 3)")


def test_script_security_exits_6_and_runs() -> None:
    v = decide(_cfg(_d(Severity.ERROR, 2), _d(Severity.ERROR, 5, DiagKind.SECURITY)))
    assert v.runnable and v.exit_code == EXIT_SECURITY


def test_sorted_by_file_read_order_then_line_unpositioned_last() -> None:
    ds = [_d(Severity.ERROR, None), _d(Severity.ERROR, 7, file="inc.conf"),
          _d(Severity.ERROR, 9), _d(Severity.WARNING, 2), _d(Severity.ERROR, 1, file="zz")]
    out = sort_diagnostics(ds, ["a.conf", "inc.conf"])
    assert [(d.pos.file, d.pos.line) if d.pos else None for d in out] == [
        ("a.conf", 2), ("a.conf", 9), ("inc.conf", 7), ("zz", 1), None]


def test_extra_stages_merge_sorted_and_deduplicated() -> None:
    base = _d(Severity.ERROR, 5)
    v = decide(_cfg(base, _d(Severity.ERROR, 1)), [base, _d(Severity.FATAL, 3)])
    assert [d.pos.line for d in v.diagnostics if d.pos] == [1, 3, 5]


def test_positioned_parses_the_planners_problem_lines() -> None:
    d = positioned("/etc/k.conf:12: service TCP 1.2.3.4:80 already defined", Severity.ERROR)
    assert d.pos == Pos("/etc/k.conf", 12) and d.message.startswith("service TCP")
    assert positioned("no position here", Severity.ERROR).pos is None


TUTORIAL_LIKE = """\
vrrp_instance VI_1 {
    state MASTER
    interface lo
    virtual_router_id 41
    priority 100
    virtual_ipaddress {
        192.0.2.150
    }
}
virtual_server 192.0.2.150 80 {
    delay_loop 6
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 192.0.2.139 8080 {
        TCP_CHECK {
            connect_timeout 5
            bogus_keyword 2
        }
    }
}
"""


def test_preflight_keepalived_errors_run_on_every_data_plane_that_can_carry_them() -> None:
    cfg = loads(TUTORIAL_LIKE, name="t.conf", config_id="t")
    assert not cfg.ok and not cfg.fatal  # an unknown keyword and a DR port reset: both ERRORs
    for dp in ("memory", "ipvs"):
        v = preflight(cfg, mode="full", dataplane=dp, check_host_=False).verdict
        assert v.runnable and v.exit_code == EXIT_ERRORS, (dp, v.diagnostics)
        msgs = [d.message for d in v.diagnostics]
        assert "Unknown keyword 'bogus_keyword'" in msgs
        assert any("ports don't match - resetting" in m for m in msgs), msgs
    # the real server port was reset to the virtual server's, as keepalived resets it
    assert cfg.virtual_servers[0].real_servers[0].port == 80


def test_preflight_a_data_plane_that_cannot_carry_dr_is_fatal() -> None:
    cfg = loads(TUTORIAL_LIKE, name="t.conf", config_id="t")
    v = preflight(cfg, mode="check-only", dataplane="nftables", check_host_=False).verdict
    assert not v.runnable and v.exit_code == EXIT_FATAL
    fatal = v.blocking[0]
    assert fatal.pos == Pos("t.conf", 10) or (fatal.pos is not None and fatal.pos.line >= 10)
    # in --vrrp mode the pool is not checked at all, as keepalived --vrrp does not read it
    v = preflight(cfg, mode="vrrp-only", dataplane="nftables", check_host_=False).verdict
    assert v.runnable


def test_check_config_cli_predicts_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    conf = tmp_path / "k.conf"
    conf.write_text(TUTORIAL_LIKE.replace("interface lo", "interface lo\n    bogus2"))
    base = [sys.executable, "-m", "lvsd.cli", "check-config", "-f", str(conf), "--no-host"]
    p = subprocess.run([*base, "--dataplane", "memory"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == EXIT_ERRORS, p.stdout + p.stderr
    assert "lvsd run would start" in p.stdout and "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "Line" in ln]
    nums = [int(ln.split("Line ")[1].split(")")[0]) for ln in lines]
    assert nums == sorted(nums) and len(nums) >= 3, p.stderr  # in position order
    p = subprocess.run([*base, "--dataplane", "nftables", "--check"], capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == EXIT_FATAL and "lvsd run would refuse it" in p.stdout, p.stdout
    p = subprocess.run([*base, "--dataplane", "memory", "--strict"], capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == EXIT_ERRORS and "lvsd run would refuse it" in p.stdout, p.stdout


def test_an_unpositioned_fatal_is_explained_by_the_error_reported_before_it() -> None:
    # keepalived: "(F: Line 9) WARNING - interface eht0 ... doesn't exist" then the
    # position-less "Non-existent interface specified in configuration" that stops it
    cause = Diagnostic(Pos("a.conf", 9), Severity.ERROR,
                       "WARNING - interface eht0 for vrrp_instance VI_1 doesn't exist")
    fatal = Diagnostic(None, Severity.FATAL, "Non-existent interface specified in configuration",
                       DiagKind.BAD_IF)
    v = decide(_cfg(_d(Severity.ERROR, 2)), [cause, fatal])
    assert v.explain() == [str(cause), str(fatal)]
    assert "eht0" in v.reason() and v.reason().startswith("1 fatal configuration error(s): Non")
