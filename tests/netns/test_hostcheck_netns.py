"""Host checks for real: facts gathered inside a namespace with veth interfaces (config/
hostfacts.py), checked (config/hostcheck.py) and compared line by line with what
``ip netns exec NS keepalived -t -f FILE`` (2.2.7) prints for the same files."""

from __future__ import annotations

import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvsd.config.hostcheck import check_host
from lvsd.config.hostfacts import HostFactsError, gather
from lvsd.config.loader import load
from lvsd.config.model import Config, DiagKind, Diagnostic, Severity
from lvsd.lab.netns import Host, Topology

pytestmark = [pytest.mark.netns, pytest.mark.interop]

_POS = re.compile(r"^\((?:(?P<file>.+): )?Line (?P<line>\d+)\) (?P<msg>.*)$")


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    """eth0 (192.0.2.1/24, on a bridge, up), v2 (no address, its peer down: not running),
    v3 (multicast off), lo."""
    t = Topology("lt-hc")
    try:
        h = t.add_host("d", "192.0.2.1/24")
        h.run("ip", "link", "add", "v2", "type", "veth", "peer", "name", "v3")
        h.run("ip", "link", "set", "v3", "multicast", "off")
        h.run("ip", "link", "set", "v3", "up")
        h.run("ip", "addr", "add", "198.51.100.1/24", "dev", "v3")
        yield h
    finally:
        t.close()


def keepalived_t(host: Host, path: Path) -> tuple[int, list[tuple[int | None, str]]]:
    proc = subprocess.run(host.cmd("keepalived", "-t", "-f", str(path)), capture_output=True,
                          text=True, timeout=60, check=False)
    lines: list[tuple[int | None, str]] = []
    for raw in proc.stderr.splitlines():
        m = _POS.match(raw)
        lines.append((int(m["line"]), m["msg"]) if m else (None, raw))
    return proc.returncode, lines


def ours(host: Host, path: Path) -> tuple[Config, list[Diagnostic]]:
    cfg = load(path)
    return cfg, check_host(cfg, gather(cfg, netns=host.ns))


def key(d: Diagnostic) -> tuple[int | None, str]:
    return (d.pos.line if d.pos is not None else None, d.message)


def compare(host: Host, path: Path) -> tuple[int, list[Diagnostic]]:
    """keepalived -t's lines must be exactly lvsd's (loader + host) errors, in order, but for
    those keepalived only logs when it runs (kind LOG)."""
    code, ka = keepalived_t(host, path)
    cfg, diags = ours(host, path)
    reported = [key(d) for d in (*cfg.diagnostics, *diags)
                if d.severity is not Severity.WARNING and d.kind is not DiagKind.LOG]
    assert ka == reported
    return code, diags


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def script(path: Path, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def instance(name: str, itf: str, vrid: int, extra: str = "", vips: str = "") -> str:
    return (f"vrrp_instance {name} {{\n    interface {itf}\n    virtual_router_id {vrid}\n"
            f"    priority 100\n    virtual_ipaddress {{\n        "
            f"{vips or f'192.0.2.{100 + vrid % 100}/24'}\n    }}\n{extra}}}\n")


def test_gathered_facts(host: Host, tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "empty.conf", ""))
    facts = gather(cfg, netns=host.ns)
    assert facts.interfaces is not None
    itfs = facts.interfaces
    assert set(itfs) == {"lo", "eth0", "v2", "v3"}
    assert itfs["lo"].loopback and not itfs["eth0"].loopback
    assert itfs["eth0"].up and "192.0.2.1" in itfs["eth0"].addresses4
    assert itfs["eth0"].multicast and not itfs["v3"].multicast
    assert not itfs["v2"].up and itfs["v2"].addresses4 == ()
    assert itfs["v3"].addresses4 == ("198.51.100.1",) and not itfs["v3"].up  # peer down
    try:
        ks = pwd.getpwnam("keepalived_script")
        assert facts.users == {"keepalived_script": (ks.pw_uid, ks.pw_gid)}
    except KeyError:
        assert facts.users == {}
    assert (facts.our_uid, facts.nonlocal_bind4) == (0, False)
    with pytest.raises(HostFactsError):
        gather(cfg, netns="lt-hc-no-such-namespace")


def test_nonlocal_bind_is_read_in_the_namespace(host: Host, tmp_path: Path) -> None:
    conf = write(tmp_path, "n.conf", instance(
        "VI_3", "eth0", 53, "    unicast_src_ip 203.0.113.9\n    unicast_peer {\n"
        "        203.0.113.8\n    }\n"))
    cfg, diags = ours(host, conf)
    assert [d.message for d in diags] == [
        "(VI_3): entering FAULT state (src address not configured) - bind unicast_src "
        "203.0.113.9 failed: Cannot assign requested address"]
    host.run("sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
    try:
        facts = gather(cfg, netns=host.ns)
        assert facts.nonlocal_bind4
        assert check_host(cfg, facts) == []
    finally:
        host.run("sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=0")


def test_missing_interfaces_match_keepalived(host: Host, tmp_path: Path) -> None:
    conf = write(tmp_path, "a.conf", instance(
        "VI_1", "nosuch0", 51, "    track_interface {\n        nosuch2\n        eth0\n    }\n",
        vips="192.0.2.100/24 dev nosuch1\n        192.0.2.101/24")
        + "vrrp_sync_group G {\n    group {\n        VI_1\n        VI_2\n    }\n"
          "    track_interface {\n        nosuch3\n    }\n}\n"
        + instance("VI_2", "eth0", 52))
    code, diags = compare(host, conf)
    assert code == 5  # keepalived -t exits with its highest class number: GENERAL (5)...
    bad_if = [d for d in diags if d.kind is DiagKind.BAD_IF]
    # ... but its VRRP process would exit: lvsd refuses (FATAL)
    assert [d.message for d in bad_if] == ["Non-existent interface specified in configuration"]
    assert bad_if[0].severity is Severity.FATAL
    assert len([d for d in diags if "doesn't exist" in d.message]) == 4


def test_dynamic_interfaces_match_keepalived(host: Host, tmp_path: Path) -> None:
    conf = write(tmp_path, "h.conf", "global_defs {\n    dynamic_interfaces\n}\n"
                 + instance("VI_1", "nosuch0", 51))
    code, diags = compare(host, conf)
    assert code == 0
    assert diags and all(d.severity is Severity.WARNING for d in diags)


def test_loopback_and_multicast_match_keepalived(host: Host, tmp_path: Path) -> None:
    lo = write(tmp_path, "b.conf", instance("VI_1", "lo", 51))
    code, diags = compare(host, lo)
    assert code == 5
    assert [d.severity for d in diags] == [Severity.ERROR, Severity.FATAL]
    # 2.2.7 never applies its strict-mode unicast test (see hostcheck.complete_init)
    strict = write(tmp_path, "s.conf", "global_defs {\n    vrrp_strict\n}\n" + instance(
        "VI_1", "eth0", 51, "    unicast_peer {\n        192.0.2.9\n    }\n"))
    assert compare(host, strict) == (0, [])
    nomc = write(tmp_path, "j.conf", instance("VI_2", "v3", 52))
    code, diags = compare(host, nomc)
    assert code == 5
    assert [d.message for d in diags if d.severity is Severity.ERROR] == [
        "(VI_2) interface v3 does not support multicast, specify unicast peers - disabling"]


def test_runtime_faults_keepalived_t_does_not_see(host: Host, tmp_path: Path) -> None:
    conf = write(tmp_path, "r.conf", instance(
        "VI_3", "v2", 53, "    unicast_src_ip 203.0.113.9\n    unicast_peer {\n"
        "        203.0.113.8\n    }\n") + instance("VI_4", "eth0", 54,
                                                  "    mcast_src_ip 198.51.100.1\n"))
    code, diags = compare(host, conf)
    assert code == 0
    assert sorted(d.message for d in diags) == [
        "(VI_3): entering FAULT state (interface v2 down)",
        "(VI_3): entering FAULT state (src address not configured) - bind unicast_src "
        "203.0.113.9 failed: Cannot assign requested address",
        "(VI_4) mcast_src_ip 198.51.100.1 is not an address of interface eth0 - adverts are "
        "sent from it anyway",
    ]


def test_vrrp_scripts_match_keepalived(host: Host, tmp_path: Path) -> None:
    ok = script(tmp_path / "open" / "ok.sh")
    (tmp_path / "open").chmod(0o777)
    body = (f'vrrp_script chk_missing {{\n    script "{tmp_path}/missing.sh"\n}}\n'
            f'vrrp_script chk_ok {{\n    script "{ok}"\n}}\n'
            + instance("VI_1", "eth0", 51, "    track_script {\n        chk_missing\n"
                       "        chk_ok\n    }\n"))
    # without script security: keepalived runs the scripts, as root, and exits 6 under -t
    code, diags = compare(host, write(tmp_path, "c.conf", body))
    assert code == 6
    assert [d for d in diags if d.kind is DiagKind.SECURITY][-1].message == (
        "SECURITY VIOLATION - scripts are being executed but script_security not enabled. "
        "There are insecure scripts.")
    # with it (scripts run as root): the insecure one is disabled, nothing is a violation
    code, diags = compare(host, write(
        tmp_path, "f.conf", "global_defs {\n    enable_script_security\n    script_user root\n}\n"
        + body))
    assert code == 5
    assert "Disabling track script chk_ok due to insecure" in [d.message for d in diags]
    assert not [d for d in diags if d.kind is DiagKind.SECURITY]
    # a secure directory: no complaint about chk_ok
    (tmp_path / "open").chmod(0o755)
    code, diags = compare(host, write(
        tmp_path, "s.conf", "global_defs {\n    enable_script_security\n    script_user root\n}\n"
        + body))
    assert [d.message for d in diags if d.kind is not DiagKind.LOG] == [
        "Disabling track script chk_missing since not found/accessible"]


def test_bad_script_user_matches_keepalived(host: Host, tmp_path: Path) -> None:
    ok = script(tmp_path / "ok.sh")
    conf = write(tmp_path, "g.conf", "global_defs {\n    script_user nosuchuser-lvsd\n}\n"
                 f'vrrp_script chk {{\n    script "{ok}"\n}}\n'
                 + instance("VI_1", "eth0", 51, "    track_script {\n        chk\n    }\n"))
    code, ka = keepalived_t(host, conf)
    _, diags = ours(host, conf)
    assert code == 5
    # keepalived names the script_user line and the vrrp_script's closing brace; lvsd (whose
    # model keeps neither) the global_defs and `script` lines: same messages, and the same
    # position for the track_script reference
    assert [m for _, m in ka] == [d.message for d in diags]
    assert ka[-1] == key(diags[-1]) == (15, "(VI_1) track script chk not found, ignoring...")


def test_check_scripts_match_keepalived(host: Host, tmp_path: Path) -> None:
    up = script(tmp_path / "open" / "up.sh")
    (tmp_path / "open").chmod(0o777)
    conf = write(tmp_path, "k.conf", f"""virtual_server 192.0.2.100 80 {{
    protocol TCP
    lb_algo rr
    lb_kind NAT
    real_server 192.0.2.11 80 {{
        notify_up {up}
        MISC_CHECK {{
            misc_path "{tmp_path}/missing.sh arg"
        }}
    }}
}}
""")
    code, diags = compare(host, conf)
    assert code == 6
    assert {d.message for d in diags} >= {
        f"Unsafe permissions found for script '{up}'.",
        f"Disabling misc script '{tmp_path}/missing.sh' 'arg' since not found/accessible",
        "SECURITY VIOLATION - check scripts are being executed but script_security not "
        "enabled. There are insecure scripts."}
