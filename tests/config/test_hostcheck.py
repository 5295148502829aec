"""Host checks (config/hostcheck.py) against hand-built HostFacts: keepalived 2.2.7's messages,
classes and consequences for interfaces, addresses, script users and script files; and the
shell's pure parts (config/hostfacts.py) on real temporary files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lvsd.config.hostcheck import (
    FileStat,
    HostFacts,
    Interface,
    ScriptFile,
    check_host,
    cmd_str,
    needs,
)
from lvsd.config.hostfacts import parse_ip_addr_json, script_file
from lvsd.config.loader import loads
from lvsd.config.model import Config, DiagKind, Diagnostic, Severity

pytestmark = pytest.mark.unit

DIR = stat.S_IFDIR | 0o755
REG = stat.S_IFREG | 0o755

ETH0 = Interface("eth0", addresses4=("192.0.2.1",), addresses6=("fe80::1",))
LO = Interface("lo", loopback=True, addresses4=("127.0.0.1",), addresses6=("::1",))
ETH1 = Interface("eth1", addresses4=("198.51.100.1",))


def good_script(path: str, *, file_mode: int = REG, dir_mode: int = DIR, uid: int = 0,
                gid: int = 0, dir_uid: int = 0, dir_gid: int = 0) -> ScriptFile:
    parts = [p for p in path.split("/") if p]
    chain = [FileStat("/", DIR)]
    for i in range(1, len(parts)):
        chain.append(FileStat("/" + "/".join(parts[:i]), dir_mode, dir_uid, dir_gid))
    target = FileStat(path, file_mode, uid, gid)
    chain.append(target)
    return ScriptFile(path, path, target=target, chain=tuple(chain))


def missing_script(path: str) -> ScriptFile:
    return ScriptFile(path, None, "No such file or directory")


def facts(*itfs: Interface, scripts: tuple[ScriptFile, ...] = (),
          users: dict[str, tuple[int, int]] | None = None, **kw: object) -> HostFacts:
    return HostFacts(
        interfaces={i.name: i for i in (itfs or (ETH0, LO, ETH1))},
        users={"root": (0, 0), "nobody": (65534, 65534)} if users is None else users,
        groups={"root": 0, "nogroup": 65534},
        scripts={s.name: s for s in scripts},
        **kw,  # type: ignore[arg-type]
    )


def vrrp(body: str = "", *, interface: str = "eth0", head: str = "", tail: str = "",
         vips: str = "192.0.2.100/24") -> Config:
    text = (f"{head}vrrp_instance VI_1 {{\n interface {interface}\n virtual_router_id 51\n"
            f" priority 100\n virtual_ipaddress {{\n  {vips}\n }}\n{body}}}\n{tail}")
    return loads(text, name="k.conf")


def run(cfg: Config, f: HostFacts, mode: str = "full") -> list[Diagnostic]:
    assert cfg.fatal is False, cfg.diagnostics
    return check_host(cfg, f, mode=mode)


def texts(diags: list[Diagnostic]) -> list[str]:
    return [str(d) for d in diags]


def find(diags: list[Diagnostic], message: str) -> Diagnostic:
    hits = [d for d in diags if d.message == message]
    assert hits, f"{message!r} not in {texts(diags)}"
    return hits[0]


# ------------------------------------------------------------------------------ interfaces


def test_clean_config_on_a_matching_host_says_nothing() -> None:
    assert run(vrrp(), facts()) == []


def test_missing_vrrp_interface_is_bad_if_and_stops_the_vrrp_checks() -> None:
    cfg = vrrp(tail="vrrp_instance VI_2 {\n interface eth9\n virtual_router_id 52\n"
                    " virtual_ipaddress {\n  192.0.2.101/24\n }\n"
                    " notify_master /etc/keepalived/m.sh\n}\n", interface="nosuch0")
    out = run(cfg, facts(Interface("eth9", multicast=False, addresses4=("192.0.2.2",)),
                         scripts=(good_script("/etc/keepalived/m.sh"),)))
    assert texts(out) == [
        "(k.conf: Line 2) WARNING - interface nosuch0 for vrrp_instance VI_1 doesn't exist",
        "Non-existent interface specified in configuration",
    ]
    assert [(d.severity, d.kind) for d in out] == [
        (Severity.ERROR, DiagKind.GENERAL), (Severity.FATAL, DiagKind.BAD_IF)]
    # keepalived's VRRP process stops before vrrp_complete_init: no multicast complaint about
    # VI_2, no script security for the notify script


def test_vip_dev_and_tracked_interfaces_that_do_not_exist() -> None:
    cfg = vrrp(" track_interface {\n  eth1\n  nosuch2\n }\n"
               " virtual_ipaddress_excluded {\n  198.51.100.9 dev nosuch4\n }\n",
               vips="192.0.2.100/24 dev nosuch1\n  192.0.2.101",
               tail="vrrp_sync_group G {\n group {\n  VI_1\n }\n track_interface {\n"
                    "  nosuch3\n }\n}\n")
    out = run(cfg, facts())
    assert texts(out) == [
        "(k.conf: Line 6) WARNING - interface nosuch1 for ip address 192.0.2.100/24 "
        "doesn't exist",
        "(k.conf: Line 11) (VI_1) tracked interface nosuch2 doesn't exist",
        "(k.conf: Line 14) WARNING - interface nosuch4 for ip address 198.51.100.9 "
        "doesn't exist",
        "(k.conf: Line 22) (G) tracked interface nosuch3 doesn't exist",
        "Non-existent interface specified in configuration",
    ]
    assert out[-1].severity is Severity.FATAL and out[-1].kind is DiagKind.BAD_IF


def test_dynamic_interfaces_makes_missing_interfaces_warnings_the_instance_waits() -> None:
    cfg = vrrp(" track_interface {\n  nosuch0\n }\n", interface="nosuch0",
               head="global_defs {\n dynamic_interfaces\n}\n")
    out = run(cfg, facts())
    assert all(d.severity is Severity.WARNING and d.kind is DiagKind.LVSD for d in out)
    assert texts(out) == [
        "(k.conf: Line 5) Configuration specifies interface nosuch0 which doesn't currently "
        "exist - will use if created (VI_1 waits in FAULT until it does)",
    ]


def test_loopback_interface_is_ignored_then_unknown_interface_is_fatal() -> None:
    out = run(vrrp(interface="lo"), facts())
    assert texts(out) == [
        "(k.conf: Line 2) (VI_1) cannot use a loopback interface (lo) for vrrp - ignoring",
        "(VI_1) Unknown interface!",
    ]
    assert out[0].severity is Severity.ERROR and out[1].severity is Severity.FATAL


def test_interface_without_multicast_needs_unicast_peers() -> None:
    nomc = Interface("eth0", multicast=False, addresses4=("192.0.2.1",))
    out = run(vrrp(), facts(nomc))
    assert texts(out) == ["(VI_1) interface eth0 does not support multicast, specify unicast "
                          "peers - disabling"]
    assert out[0].severity is Severity.ERROR
    assert run(vrrp(" unicast_peer {\n  192.0.2.2\n }\n"), facts(nomc)) == []


def test_strict_mode_unicast_on_a_multicast_interface_passes_as_in_keepalived() -> None:
    # vrrp.c tests VRRP_FLAG_UNICAST before setting it: 2.2.7 never says "Unicast peers are
    # not supported in strict mode" (checked against keepalived -t in tests/netns)
    assert run(vrrp(" unicast_peer {\n  192.0.2.2\n }\n",
                    head="global_defs {\n vrrp_strict\n}\n"), facts()) == []


def test_no_address_on_the_interface_starts_in_fault_a_vip_does_not_count() -> None:
    bare = Interface("eth0", addresses4=("192.0.2.100",))  # only the VIP (left by a crash)
    out = run(vrrp(), facts(bare))
    assert texts(out) == ["(k.conf: Line 2) (VI_1) entering FAULT state (no IPv4 address for "
                          "interface) - eth0 has no IPv4 address"]
    assert out[0].severity is Severity.WARNING and out[0].kind is DiagKind.LVSD
    # IPv6 needs a link-local address
    v6 = vrrp(vips="fe80::100\n  2001:db8::100")
    assert texts(run(v6, facts(Interface("eth0", addresses6=("2001:db8::1",))))) == [
        "(k.conf: Line 2) (VI_1) entering FAULT state (no IPv6 address for interface) - eth0 "
        "has no IPv6 link-local address"]
    assert run(v6, facts()) == []


def test_unicast_src_ip_must_be_bindable() -> None:
    body = " unicast_src_ip 203.0.113.1\n unicast_peer {\n  192.0.2.2\n }\n"
    out = run(vrrp(body), facts())
    assert texts(out) == ["(k.conf: Line 1) (VI_1): entering FAULT state (src address not "
                          "configured) - bind unicast_src 203.0.113.1 failed: Cannot assign "
                          "requested address"]
    assert run(vrrp(body), facts(ETH0, LO, ETH1, nonlocal_bind4=True)) == []
    # an address of another interface can be bound
    assert run(vrrp(body.replace("203.0.113.1", "198.51.100.1")), facts()) == []


def test_mcast_src_ip_not_on_the_interface_is_a_notice() -> None:
    out = run(vrrp(" mcast_src_ip 198.51.100.1\n"), facts())
    assert texts(out) == ["(k.conf: Line 1) (VI_1) mcast_src_ip 198.51.100.1 is not an address "
                          "of interface eth0 - adverts are sent from it anyway"]


def test_interface_down_starts_in_fault_unless_not_tracked() -> None:
    down = Interface("eth0", up=False, addresses4=("192.0.2.1",))
    out = run(vrrp(), facts(down))
    assert texts(out) == ["(k.conf: Line 2) (VI_1): entering FAULT state (interface eth0 down)"]
    assert run(vrrp(" dont_track_primary\n"), facts(down)) == []
    # a weighted track_interface changes the priority instead
    out = run(vrrp(" track_interface {\n  eth1\n  eth2 weight 10\n }\n"),
              facts(ETH0, Interface("eth1", up=False), Interface("eth2", up=False)))
    assert texts(out) == ["(k.conf: Line 9) (VI_1): entering FAULT state (interface eth1 down)"]


def test_unknown_interfaces_skip_the_interface_checks() -> None:
    assert check_host(vrrp(interface="nosuch"), HostFacts(interfaces=None)) == []


# ------------------------------------------------------------------------------ scripts

SCRIPT = "/etc/keepalived/chk.sh"
NOTIFY = "/etc/keepalived/notify.sh"
TRACKED = (f'vrrp_script chk {{\n script "{SCRIPT} --quiet"\n}}\n')


def tracked(head: str = "", notify: bool = False) -> Config:
    return vrrp(" track_script {\n  chk\n }\n" + (f" notify_master {NOTIFY}\n" if notify else ""),
                head=head + TRACKED)


def test_scripts_without_script_security_are_a_security_violation() -> None:
    out = run(tracked(), facts(scripts=(good_script(SCRIPT),)))
    assert texts(out) == ["SECURITY VIOLATION - scripts are being executed but script_security "
                          "not enabled."]
    assert out[0].kind is DiagKind.SECURITY and out[0].severity is Severity.ERROR


def test_insecure_script_without_script_security_runs_but_is_named() -> None:
    f = facts(scripts=(good_script(SCRIPT, dir_mode=DIR | 0o002),))  # world-writable dir
    out = run(tracked(), f)
    assert texts(out) == [
        f"(k.conf: Line 2) Unsafe permissions found for script '{SCRIPT}'.",
        "SECURITY VIOLATION - scripts are being executed but script_security not enabled. "
        "There are insecure scripts.",
    ]
    # the violation is keepalived's SECURITY class (-t exit 6); the detail is only logged
    assert [d.kind for d in out] == [DiagKind.LOG, DiagKind.SECURITY]


@pytest.mark.parametrize(("kw", "insecure"), [
    ({"file_mode": REG | 0o002}, True),  # world-writable file
    ({"file_mode": REG | 0o020, "gid": 100}, True),  # group-writable, non-root group
    ({"file_mode": REG | 0o020, "gid": 0}, False),  # group-writable, root group
    ({"uid": 1000}, True),  # file not owned by root
    ({"dir_uid": 1000}, True),  # a directory not owned by root
    ({"dir_mode": DIR | 0o002 | stat.S_ISVTX}, False),  # sticky world-writable dir (/tmp)
    ({"dir_mode": DIR | 0o020, "dir_gid": 100}, True),  # group-writable dir, non-root group
])
def test_check_security_rules(kw: dict[str, int], insecure: bool) -> None:
    head = "global_defs {\n enable_script_security\n script_user root\n}\n"
    out = run(tracked(head), facts(scripts=(good_script(SCRIPT, **kw),)))
    if insecure:
        assert texts(out) == [
            f"(k.conf: Line 6) Unsafe permissions found for script '{SCRIPT}' - disabling.",
            "Disabling track script chk due to insecure",
        ]
        assert [d.kind for d in out] == [DiagKind.LOG, DiagKind.GENERAL]
    else:
        assert out == []


def test_wrong_file_type_in_the_path_inhibits() -> None:
    sf = good_script(SCRIPT)
    chain = list(sf.chain)
    chain[1] = FileStat("/etc", stat.S_IFREG | 0o644)
    sf = ScriptFile(SCRIPT, SCRIPT, target=sf.target, chain=tuple(chain))
    out = run(tracked("global_defs {\n enable_script_security\n script_user root\n}\n"),
              facts(scripts=(sf,)))
    assert texts(out) == [f"(k.conf: Line 6) Wrong file type found in script path '{SCRIPT}'.",
                          "Disabling track script chk due to insecure"]


def test_script_run_as_an_unprivileged_user_needs_no_path_check() -> None:
    head = "global_defs {\n enable_script_security\n script_user nobody\n}\n"
    assert run(tracked(head), facts(scripts=(good_script(SCRIPT, dir_mode=DIR | 0o002),))) == []
    # ... unless the file is set-uid root
    suid = good_script(SCRIPT, file_mode=REG | stat.S_ISUID, dir_mode=DIR | 0o002)
    assert texts(run(tracked(head), facts(scripts=(suid,))))[0] == (
        f"(k.conf: Line 6) Unsafe permissions found for script '{SCRIPT}' - disabling.")


def test_not_executable_for_its_user_removes_it_silently_in_keepalived() -> None:
    head = "global_defs {\n enable_script_security\n script_user nobody\n}\n"
    f = facts(scripts=(good_script(SCRIPT, file_mode=stat.S_IFREG | 0o744),))
    assert texts(run(tracked(head), f)) == [
        f"(k.conf: Line 6) WARNING - script '{SCRIPT}' is not executable for uid:gid "
        "65534:65534 - disabling."]


def test_missing_scripts() -> None:
    out = run(tracked(notify=True),
              facts(scripts=(missing_script(SCRIPT), missing_script(NOTIFY))))
    assert texts(out) == [
        f"(k.conf: Line 2) Script {SCRIPT} cannot be accessed - No such file or directory",
        "Disabling track script chk since not found/accessible",
        f"(k.conf: Line 14) Script {NOTIFY} cannot be accessed - No such file or directory",
    ]
    # nothing was found, so nothing "is being executed": no SECURITY VIOLATION; keepalived -t
    # prints only the vrrp_script's line, it logs the others when it runs
    assert all(d.severity is Severity.ERROR for d in out)
    assert [d.kind for d in out] == [DiagKind.LOG, DiagKind.GENERAL, DiagKind.LOG]


def test_bare_script_names_are_searched_in_path() -> None:
    cfg = vrrp(" notify_master notify.sh\n notify_backup gone.sh\n",
               head="global_defs {\n enable_script_security\n script_user root\n}\n")
    f = facts(scripts=(
        ScriptFile("notify.sh", NOTIFY, target=good_script(NOTIFY).target,
                   chain=good_script(NOTIFY).chain),
        ScriptFile("gone.sh", None, in_path=False)))
    # keepalived checks notify_backup before notify_master (vrrp.c check_vrrp_script_security)
    assert texts(run(cfg, f)) == [
        "(k.conf: Line 13) Cannot find script gone.sh in path - disabling",
        f"(k.conf: Line 12) WARNING - script `notify.sh` resolved by path search to `{NOTIFY}`. "
        "Please specify full path.",
    ]


def test_file_open_tests_are_not_scripts() -> None:
    cfg = vrrp(" track_script {\n  chk\n }\n",
               head='vrrp_script chk {\n script "</dev/tcp/127.0.0.1/80"\n}\n')
    assert run(cfg, facts()) == []


def test_script_security_without_keepalived_script_user() -> None:
    cfg = tracked("global_defs {\n enable_script_security\n}\n", notify=True)
    out = run(cfg, facts(scripts=(good_script(SCRIPT), good_script(NOTIFY))))
    assert texts(out) == [
        "(k.conf: Line 5) Unable to set default user keepalived_script for script",
        "(k.conf: Line 5) Unable to set default user for vrrp script chk - removing",
        "(k.conf: Line 15) (VI_1) track script chk not found, ignoring...",
        f"(k.conf: Line 17) Failed to set default user for notify script {NOTIFY} - ignoring",
    ]
    # with the user, everything is fine
    users = {"root": (0, 0), "keepalived_script": (990, 990)}
    assert run(cfg, facts(scripts=(good_script(SCRIPT), good_script(NOTIFY)),
                          users=users)) == []


def test_bad_global_script_user() -> None:
    cfg = tracked("global_defs {\n script_user nosuchuser\n}\n")
    out = run(cfg, facts(scripts=(good_script(SCRIPT),)))
    assert texts(out) == [
        "(k.conf: Line 1) Error setting global script uid/gid",
        "(k.conf: Line 5) Unable to set default user for vrrp script chk - removing",
        "(k.conf: Line 15) (VI_1) track script chk not found, ignoring...",
    ]


def test_bad_per_script_users() -> None:
    cfg = vrrp(" track_script {\n  chk\n }\n notify_master /x/n.sh nosuchuser\n",
               head='vrrp_script chk {\n script /x/c.sh\n user nosuchuser\n}\n'
                    "global_defs {\n enable_script_security\n script_user root\n}\n")
    out = run(cfg, facts(scripts=(good_script("/x/c.sh"), good_script("/x/n.sh"))))
    assert texts(out) == [
        "(k.conf: Line 2) Unable to set uid/gid for script '/x/c.sh'",
        "(k.conf: Line 17) (VI_1) track script chk not found, ignoring...",
        "(k.conf: Line 19) Invalid user/group for notify script /x/n.sh - ignoring",
    ]


# ------------------------------------------------------------------------------ check side

VS = """virtual_server 192.0.2.100 80 {
 protocol TCP
 lb_algo rr
 lb_kind NAT
 quorum_up /x/q.sh
 real_server 192.0.2.11 80 {
  notify_down /x/d.sh
  MISC_CHECK {
   misc_path "/x/m.sh arg"
  }
  TCP_CHECK {
   bind_if nosuch9
   bindto 203.0.113.9
  }
 }
}
"""


def test_check_side_scripts_and_bindings() -> None:
    cfg = loads(VS, name="k.conf")
    f = facts(scripts=(missing_script("/x/m.sh"), good_script("/x/q.sh"),
                       good_script("/x/d.sh", dir_mode=DIR | 0o002)))
    out = run(cfg, f)
    assert texts(out) == [
        "(k.conf: Line 9) Script /x/m.sh cannot be accessed - No such file or directory",
        "(k.conf: Line 9) Disabling misc script '/x/m.sh' 'arg' since not found/accessible",
        "(k.conf: Line 7) Unsafe permissions found for script '/x/d.sh'.",
        "SECURITY VIOLATION - check scripts are being executed but script_security not "
        "enabled. There are insecure scripts.",
        "(k.conf: Line 11) Checker can't bind to device nosuch9: No such device - TCP_CHECK "
        "192.0.2.11:80 never runs",
        "(k.conf: Line 11) Checker bind failed: Cannot assign requested address (203.0.113.9) - "
        "TCP_CHECK 192.0.2.11:80 never runs",
    ]
    assert [d.severity for d in out[-2:]] == [Severity.WARNING] * 2
    # the VRRP side alone does not look at any of it
    assert run(cfg, f, "vrrp-only") == []


def test_misc_check_user() -> None:
    cfg = loads(VS.replace('"/x/m.sh arg"\n', '"/x/m.sh arg"\n   user nosuchuser\n'),
                name="k.conf")
    out = run(cfg, facts(scripts=(good_script("/x/m.sh"), good_script("/x/q.sh"),
                                  good_script("/x/d.sh"))), "check-only")
    assert texts(out)[0] == ("(k.conf: Line 9) Failed to set uid/gid for misc checker script "
                             "'/x/m.sh' 'arg' - removing")


def test_modes_select_keepalived_processes() -> None:
    cfg = loads(VS + "vrrp_instance VI_1 {\n interface nosuch0\n virtual_router_id 51\n"
                " virtual_ipaddress {\n  192.0.2.100/24\n }\n}\n", name="k.conf")
    f = facts(scripts=(good_script("/x/m.sh"), good_script("/x/q.sh"), good_script("/x/d.sh")))
    full = texts(run(cfg, f))
    vonly = texts(run(cfg, f, "vrrp-only"))
    conly = texts(run(cfg, f, "check-only"))
    assert "Non-existent interface specified in configuration" in vonly
    assert "Non-existent interface specified in configuration" not in conly
    assert any("check scripts" in t for t in conly) and not any("check scripts" in t
                                                                 for t in vonly)
    assert full == [t for t in full if t in conly or t in vonly] and set(full) == set(
        conly) | set(vonly)
    with pytest.raises(ValueError, match="mode must be one of"):
        check_host(cfg, f, mode="both")


def test_lvs_sync_daemon_interface() -> None:
    cfg = loads("global_defs {\n lvs_sync_daemon nosuch5 VI_1\n}\n", name="k.conf")
    out = check_host(cfg, facts())
    assert texts(out) == ["(k.conf: Line 2) lvs_sync_daemon interface nosuch5 doesn't exist - "
                          "the IPVS sync daemon cannot start"]


def test_needs_lists_what_the_shell_must_look_up() -> None:
    cfg = loads(VS + "global_defs {\n script_user alice staff\n}\n" + TRACKED, name="k.conf")
    n = needs(cfg)
    assert n.scripts == {"/x/q.sh", "/x/d.sh", "/x/m.sh", SCRIPT}
    assert n.users == {"alice", "keepalived_script"} and n.groups == {"staff"}
    assert needs(cfg, mode="vrrp-only").scripts == {SCRIPT}


def test_cmd_str_is_keepalived_quoting() -> None:
    assert cmd_str("/x/m.sh arg 'two words'") == "'/x/m.sh' 'arg' 'two words'"
    assert cmd_str("</dev/tcp/1.2.3.4/80") == "</dev/tcp/1.2.3.4/80"
    assert cmd_str("m.sh a", "/usr/bin/m.sh") == "'/usr/bin/m.sh' 'a'"


# ------------------------------------------------------------------------------ the shell


def test_parse_ip_addr_json() -> None:
    text = ('[{"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"operstate":"UNKNOWN",'
            '"link_type":"loopback","addr_info":[{"family":"inet","local":"127.0.0.1"}]},'
            '{"ifname":"v0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],'
            '"operstate":"LOWERLAYERDOWN","addr_info":[{"family":"inet6","local":"fe80::1"}]},'
            '{"ifname":"v1","flags":["BROADCAST","UP","LOWER_UP"],"operstate":"UP"}]')
    itfs = parse_ip_addr_json(text)
    assert itfs["lo"] == Interface("lo", loopback=True, up=True, multicast=False,
                                   addresses4=("127.0.0.1",))
    assert itfs["v0"] == Interface("v0", up=False, multicast=True, addresses6=("fe80::1",))
    assert itfs["v1"].up and not itfs["v1"].multicast


def test_script_file_on_real_files(tmp_path: Path) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    s = d / "run.sh"
    s.write_text("#!/bin/sh\n")
    s.chmod(0o755)
    (d / "link.sh").symlink_to(s)
    sf = script_file(str(d / "link.sh"))
    assert sf.path == str(s) and sf.target is not None and stat.S_ISREG(sf.target.mode)
    assert sf.chain[0].path == "/" and sf.chain[-1].path == str(s)
    assert all(stat.S_ISDIR(c.mode) for c in sf.chain[:-1])
    assert script_file(str(d / "nope.sh")).error == "No such file or directory"
    found = script_file("run.sh", search_path=f"/nonexistent:{d}")
    assert found.path == str(s) and found.name == "run.sh"
    s.chmod(0o644)
    assert script_file("run.sh", search_path=str(d)) == ScriptFile(
        "run.sh", None, os.strerror(13), in_path=False)
    assert script_file("zzz-none.sh", search_path=str(d)).in_path is False
