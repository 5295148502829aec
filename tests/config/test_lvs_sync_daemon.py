"""``lvs_sync_daemon`` as keepalived 2.2.7 reads it (global_parser.c lvs_syncd_handler): each
line's model value and messages, and the ``interop`` twin asserting the real ``keepalived -t``
prints the same messages at the same lines. Plus the semantic checks of lvsd's preflight: the
named VRRP instance must exist (vrrp.c vrrp_complete_init's message), and the nftables data
plane refuses the keyword."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_parity_messages import VRRP_HEAD, VRRP_TAIL, keepalived_t, write

from lvsd.config.loader import load
from lvsd.config.model import Config, LvsSyncDaemon, Severity
from lvsd.preflight import semantic

VRRP = VRRP_HEAD + "    priority 100\n" + VRRP_TAIL

# (the global_defs line, the model's value, keepalived's messages on that line)
CASES: list[tuple[str, LvsSyncDaemon | None, list[str]]] = [
    ("lvs_sync_daemon eth9 VI_1 id 5 maxlen 1400 port 8850 ttl 2 group 239.1.1.1",
     LvsSyncDaemon("eth9", "VI_1", 5, 1400, 8850, 2, "239.1.1.1"), []),
    ("lvs_sync_daemon eth9 inst VI_1", LvsSyncDaemon("eth9", "VI_1"), []),
    ("lvs_sync_daemon eth9", LvsSyncDaemon("eth9"), []),
    # the old positional SYNCID
    ("lvs_sync_daemon eth9 VI_1 7", LvsSyncDaemon("eth9", "VI_1", 7),
     ['Please use keyword "id" before lvs_sync_daemon SYNCID']),
    ("lvs_sync_daemon eth9 VI_1 id 300", LvsSyncDaemon("eth9", "VI_1"),
     ["number '300' outside range [0, 255]", "Invalid syncid (300) - defaulting to vrid"]),
    ("lvs_sync_daemon eth9 VI_1 ttl 0 port x",
     LvsSyncDaemon("eth9", "VI_1"),
     ["number '0' outside range [1, 255]", "Invalid lvs_sync_daemon ttl (0) - ignoring",
      "invalid number 'x'", "Invalid lvs_sync_daemon port (x) - ignoring"]),
    ("lvs_sync_daemon eth9 VI_1 group 10.0.0.1", LvsSyncDaemon("eth9", "VI_1"),
     ["lvs_sync_daemon group address 10.0.0.1 is not multicast - ignoring"]),
    ("lvs_sync_daemon eth9 VI_1 maxlen", LvsSyncDaemon("eth9", "VI_1"),
     ["No value specified for lvs_sync_daemon maxlen - ignoring"]),
    ("lvs_sync_daemon eth9 VI_1 7 bogus", LvsSyncDaemon("eth9", "VI_1", 7),
     ['Please use keyword "id" before lvs_sync_daemon SYNCID',
      "Unknown option bogus specified for lvs_sync_daemon"]),
    ("lvs_sync_daemon an_interface_name_too_long VI_1", None,
     ["lvs_sync_daemon interface name 'an_interface_name_too_long' too long - ignoring"]),
]


def conf(line: str, extra: str = "") -> str:
    return f"global_defs {{\n    {line}\n{extra}}}\n" + VRRP


@pytest.mark.parametrize(("line", "want", "messages"), CASES, ids=[c[0] for c in CASES])
def test_lvs_sync_daemon_line(tmp_path: Path, line: str, want: LvsSyncDaemon | None,
                              messages: list[str]) -> None:
    cfg = load(write(tmp_path, conf(line)))
    assert cfg.global_defs.lvs_sync_daemon == want
    assert [(d.pos.line if d.pos else 0, d.message) for d in cfg.diagnostics] == [
        (2, m) for m in messages]


@pytest.mark.interop
@pytest.mark.parametrize(("line", "want", "messages"), CASES, ids=[c[0] for c in CASES])
def test_lvs_sync_daemon_line_keepalived(tmp_path: Path, line: str, want: object,
                                         messages: list[str]) -> None:
    _, said = keepalived_t(write(tmp_path, conf(line)))
    assert [m for ln, m in said if ln == 2] == messages, said


def test_second_lvs_sync_daemon_is_ignored(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, conf("lvs_sync_daemon eth9 VI_1",
                                    "    lvs_sync_daemon eth8 VI_1\n")))
    sd = cfg.global_defs.lvs_sync_daemon
    assert sd is not None and sd.interface == "eth9"
    assert [d.message for d in cfg.diagnostics] == [
        "lvs_sync_daemon has already been specified as eth9 VI_1 - ignoring"]


def test_mode_extension(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, conf("lvs_sync_daemon eth9 VI_1",
                                    "    lvs_sync_daemon_mode keepalived\n")))
    assert cfg.global_defs.lvs_sync_daemon_mode == "keepalived"
    assert load(write(tmp_path, conf("lvs_sync_daemon eth9 VI_1"))).global_defs \
        .lvs_sync_daemon_mode == "both"
    bad = load(write(tmp_path, conf("lvs_sync_daemon eth9 VI_1",
                                    "    lvs_sync_daemon_mode sometimes\n")))
    assert bad.global_defs.lvs_sync_daemon_mode == "both"
    assert "lvs_sync_daemon_mode must be both or keepalived - ignoring" in [
        d.message for d in bad.diagnostics]


def _semantic(cfg: Config, dataplane: str, mode: str = "full") -> list[tuple[Severity, str]]:
    return [(d.severity, d.message) for d in semantic(cfg, mode=mode, dataplane=dataplane)
            if "sync" in d.message]


def test_unknown_instance_is_keepalived_s_error(tmp_path: Path) -> None:
    """keepalived's VRRP process logs this at start (vrrp.c vrrp_complete_init) and runs on
    without a sync daemon; ``keepalived -t`` does not reach that code, so there is no
    ``keepalived -t`` twin."""
    cfg = load(write(tmp_path, conf("lvs_sync_daemon eth9 VI_9")))
    assert _semantic(cfg, "ipvs") == [
        (Severity.ERROR, "Unable to find vrrp instance VI_9 for lvs_syncd - clearing "
         "lvs_syncd config")]


def test_nftables_refuses_it_at_preflight(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, conf("lvs_sync_daemon eth9 VI_1")))
    got = _semantic(cfg, "nftables")
    assert len(got) == 1 and got[0][0] is Severity.FATAL
    assert "nftables data plane has no connection sync" in got[0][1]
    assert _semantic(cfg, "ipvs") == [] and _semantic(cfg, "memory") == []
    # no data plane runs in --vrrp-only: nothing to refuse, but no daemon either (keepalived's
    # VRRP process would drive it)
    assert [sev for sev, _ in _semantic(cfg, "nftables", mode="vrrp-only")] == [
        Severity.WARNING]
