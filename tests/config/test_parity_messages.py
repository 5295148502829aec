"""keepalived 2.2.7's messages and semantics in the keyword layer, one small config per case.

Each case asserts lvsd's message (text, line, kind, severity) and the resulting model value;
the ``interop`` twin runs the real ``keepalived -t`` on the same file, in a throw-away network
namespace holding a veth ``eth9`` (so interface checks pass), and asserts it prints the same
message at the same line (keepalived prints messages of vrrp_complete_instance() without a
position: those are matched by text).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kaconf_corpus import CORPUS

from lvsd.config.loader import load
from lvsd.config.model import CheckKind, Config, DiagKind, Severity

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
_POSITIONED = re.compile(r"^\((?:[^:]+: )?Line (\d+)\) (.*)$")
# keepalived -t where eth9 exists (a veth in a new network namespace) and has 192.168.0.91
_NETNS_SH = ("ip link set lo up && ip link add eth9 type veth peer name eth8 && "
             "ip link set eth8 up && ip link set eth9 up && "
             "ip addr add 192.168.0.91/24 dev eth9 && exec \"$0\" -t -i lvsdtest -f \"$1\"")

VRRP_HEAD = """\
vrrp_instance VI_1 {
    interface eth9
    virtual_router_id 51
"""
VRRP_TAIL = """\
    virtual_ipaddress {
        10.0.0.1
    }
}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keepalived.conf"
    path.write_text(textwrap.dedent(text))
    return path


def diags(cfg: Config) -> list[tuple[int, str, DiagKind, Severity]]:
    return [(d.pos.line if d.pos else 0, d.message, d.kind, d.severity)
            for d in cfg.diagnostics]


def keepalived_t(path: Path) -> tuple[int, list[tuple[int, str]]]:
    """(exit code, [(line or 0, message)]) of ``keepalived -t`` in a new network namespace."""
    if not Path(KEEPALIVED).exists():
        pytest.fail("keepalived is not installed (scripts/bootstrap.sh installs it)")
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed")
    proc = subprocess.run(["unshare", "--net", "sh", "-c", _NETNS_SH, KEEPALIVED, str(path)],
                          capture_output=True, text=True, errors="replace", timeout=120,
                          cwd=path.parent, check=False)
    out: list[tuple[int, str]] = []
    for ln in (proc.stderr + proc.stdout).splitlines():
        m = _POSITIONED.match(ln)
        out.append((int(m.group(1)), m.group(2)) if m else (0, ln))
    return proc.returncode, out


def assert_keepalived_says(path: Path, line: int, message: str) -> None:
    _, said = keepalived_t(path)
    if line:
        assert (line, message) in said, said
    else:
        assert message in [m for _, m in said], said


# ---------------------------------------------------------------- nb_get_retry (item 1)


TUTORIAL = CORPUS / "tutorial" / "lvs-keepalived.conf"


def test_tutorial_nb_get_retry_is_retry() -> None:
    if not TUTORIAL.is_file():
        pytest.fail(f"{TUTORIAL} missing")
    cfg = load(TUTORIAL, config_id="lvsdtest")
    checkers = [c for vs in cfg.virtual_servers for r in vs.real_servers for c in r.checkers]
    assert [(c.kind, c.retry, c.delay_before_retry) for c in checkers] == [
        (CheckKind.TCP_CHECK, 2, 3.0), (CheckKind.TCP_CHECK, 2, 3.0)]
    got = diags(cfg)
    for line in (45, 60):
        # keepalived's own line, byte-identical, then lvsd's notice
        assert (line, "Unknown keyword 'nb_get_retry'", DiagKind.UNKNOWN_KEYWORD,
                Severity.ERROR) in got
        assert (line, "lvsd applies nb_get_retry 2 in TCP_CHECK as 'retry 2'; keepalived 2.x "
                "ignores it (its retry stays the checker's default) - write 'retry 2'",
                DiagKind.LVSD, Severity.WARNING) in got
    assert not cfg.fatal


NB_HTTP = """\
virtual_server 10.0.0.1 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.0.1.1 80 {
        HTTP_GET {
            url {
                path /
            }
            nb_get_retry 4
        }
        MISC_CHECK {
            misc_path /bin/true
            nb_get_retry 5
        }
    }
}
"""


def test_nb_get_retry_in_every_checker(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, NB_HTTP), config_id="lvsdtest")
    http, misc = cfg.virtual_servers[0].real_servers[0].checkers
    assert (http.retry, misc.retry) == (4, 5)
    got = diags(cfg)
    # check_http.c http_get_retry_handler(): CONFIG_GENERAL_ERROR
    assert (10, "nb_get_retry is deprecated - please use 'retry'", DiagKind.GENERAL,
            Severity.ERROR) in got
    assert (14, "Unknown keyword 'nb_get_retry'", DiagKind.UNKNOWN_KEYWORD, Severity.ERROR) in got


@pytest.mark.interop
def test_nb_get_retry_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, NB_HTTP)
    _, said = keepalived_t(path)
    assert (10, "nb_get_retry is deprecated - please use 'retry'") in said
    assert (14, "Unknown keyword 'nb_get_retry'") in said
    assert_keepalived_says(TUTORIAL, 45, "Unknown keyword 'nb_get_retry'")


# ---------------------------------------------------------------- item 2: messages


def test_empty_notification_email_block(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "global_defs {\n    notification_email {\n    }\n}\n"))
    assert diags(cfg) == [(3, "Warning - empty notification_email block", DiagKind.GENERAL,
                           Severity.ERROR)]
    assert cfg.global_defs.notification_email == ()


@pytest.mark.interop
def test_empty_notification_email_block_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, "global_defs {\n    notification_email {\n    }\n}\n")
    assert_keepalived_says(path, 3, "Warning - empty notification_email block")


PREEMPT = VRRP_HEAD + """\
    state MASTER
    priority 150
    nopreempt
    preempt_delay 10
    track_interface {
        eth9
    }
""" + VRRP_TAIL


def test_nopreempt_preempt_delay_and_own_interface(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, PREEMPT))
    (inst,) = cfg.vrrp_instances
    assert (inst.nopreempt, inst.preempt_delay, inst.track_interfaces) == (False, 0.0, ())
    msgs = [(m, k, s) for _, m, k, s in diags(cfg)]
    assert msgs == [
        ("(VI_1) Ignoring track_interface eth9 since own interface", DiagKind.GENERAL,
         Severity.ERROR),
        ("(VI_1) Warning - nopreempt will not work with initial state MASTER - clearing",
         DiagKind.GENERAL, Severity.ERROR),
        ("(VI_1) Warning - preempt delay will not work with initial state MASTER - clearing",
         DiagKind.GENERAL, Severity.ERROR),
    ]
    assert not cfg.fatal


@pytest.mark.interop
def test_nopreempt_preempt_delay_and_own_interface_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, PREEMPT)
    code, said = keepalived_t(path)
    texts = [m for _, m in said]
    for _, msg, _, _ in diags(load(path)):
        assert msg in texts, said
    assert code == 5


UNICAST = VRRP_HEAD + """\
    unicast_src_ip 192.168.0.91/24
    mcast_src_ip 192.168.0.91/24
""" + VRRP_TAIL


def test_unicast_keyword_without_peers(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, UNICAST))
    (inst,) = cfg.vrrp_instances
    # vrrp_parser.c vrrp_srcip_handler -> inet_stosockaddr(): the prefix length is dropped
    assert (inst.unicast_src_ip, inst.mcast_src_ip, inst.unicast_peers) == (
        "192.168.0.91", "192.168.0.91", ())
    assert diags(cfg) == [
        (1, "(VI_1) A unicast keyword has been specified without any unicast peers. Defaulting "
         "to multicast. This usage is deprecated - please update your configuration.",
         DiagKind.DEPRECATED, Severity.ERROR)]


@pytest.mark.interop
def test_unicast_keyword_without_peers_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, UNICAST)
    _, said = keepalived_t(path)
    assert (0, diags(load(path))[0][1]) in said
    assert [ln for ln in said if ln[0] in (4, 5)] == []  # both /24 source forms are accepted


PEERS = VRRP_HEAD + """\
    unicast_src_ip 192.168.0.91/24
    unicast_peer {
        192.168.0.24/24
        192.168.0.25 min_ttl 3
        not-an-address
    }
""" + VRRP_TAIL


def test_unicast_peer_with_prefix_length(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, PEERS))
    (inst,) = cfg.vrrp_instances
    assert [(p.address, p.min_ttl) for p in inst.unicast_peers] == [
        ("192.168.0.24", None), ("192.168.0.25", 3)]
    assert diags(cfg) == [
        (8, "Configuration error: VRRP instance[VI_1] malformed unicast peer "
         "address[not-an-address]. Skipping...", DiagKind.GENERAL, Severity.ERROR)]


@pytest.mark.interop
def test_unicast_peer_with_prefix_length_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, PEERS)
    _, said = keepalived_t(path)
    assert (8, "Configuration error: VRRP instance[VI_1] malformed unicast peer "
            "address[not-an-address]. Skipping...") in said
    assert [ln for ln in said if ln[0] in (4, 6, 7)] == []  # the /24 forms are accepted


SYNCD = VRRP_HEAD + "    lvs_sync_daemon_interface eth9\n" + VRRP_TAIL


def test_lvs_sync_daemon_interface_in_instance(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, SYNCD))
    assert [(ln, m) for ln, m, _, _ in diags(cfg)] == [
        (4, "(VI_1) Specifying lvs_sync_daemon_interface against a vrrp is deprecated."),
        (4, "        Please use global lvs_sync_daemon")]
    sd = cfg.global_defs.lvs_sync_daemon
    assert sd is not None and (sd.interface, sd.instance) == ("eth9", "VI_1")


@pytest.mark.interop
def test_lvs_sync_daemon_interface_in_instance_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, SYNCD)
    _, said = keepalived_t(path)
    assert (4, "(VI_1) Specifying lvs_sync_daemon_interface against a vrrp is deprecated.") \
        in said
    assert (4, "        Please use global lvs_sync_daemon") in said


GLOBALS = """\
global_defs {
    vrrp_iptables
    email_faults
}
"""


def test_vrrp_iptables_and_email_faults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GLOBALS))
    got = diags(cfg)
    assert (2, "iptables not supported, using nftables instead. Please replace 'vrrp_iptables "
            "and 'vrrp_ipsets' with 'nftables' config option", DiagKind.GENERAL,
            Severity.ERROR) in got
    assert (3, "Unknown keyword 'email_faults'", DiagKind.UNKNOWN_KEYWORD, Severity.ERROR) in got
    # the misspelling's suggestion: a separate lvsd notice
    assert (3, "did you mean 'no_email_faults'? ('email_faults' is not a keyword of "
            "global_defs)", DiagKind.LVSD, Severity.WARNING) in got


@pytest.mark.interop
def test_vrrp_iptables_and_email_faults_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, GLOBALS)
    _, said = keepalived_t(path)
    assert (2, "iptables not supported, using nftables instead. Please replace 'vrrp_iptables "
            "and 'vrrp_ipsets' with 'nftables' config option") in said
    assert (3, "Unknown keyword 'email_faults'") in said


ALPHA = """\
virtual_server 10.0.0.1 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    alpha no
    omega off
    inhibit_on_failure false
    real_server 10.0.1.1 80 {
        alpha maybe
        TCP_CHECK {
        }
    }
}
"""


def test_alpha_omega_with_a_parameter(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, ALPHA))
    (vs,) = cfg.virtual_servers
    # check_parser.c vs_alpha_handler / omega_handler / vs_inhibit_handler ignore the parameter
    assert (vs.alpha, vs.omega, vs.inhibit_on_failure) == (True, True, True)
    assert vs.real_servers[0].alpha is True  # the invalid rs value is ignored: vs's applies
    errors = [(ln, m, k) for ln, m, k, s in diags(cfg) if s is Severity.ERROR]
    assert errors == [(9, "Invalid alpha parameter maybe", DiagKind.GENERAL)]


@pytest.mark.interop
def test_alpha_omega_with_a_parameter_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, ALPHA)
    code, said = keepalived_t(path)
    assert [(ln, m) for ln, m in said if ln] == [(9, "Invalid alpha parameter maybe")]
    assert code == 5


SEQ = """\
~SEQ(n, 1, 2, 5) virtual_server 10.0.0.$n 80 { protocol TCP }
virtual_server 10.1.0.1 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    ~SEQ(h, 3) real_server 10.1.1.${h}0 80 { weight $h }
}
~SEQ(i,1 2) x
"""


def test_seq_lines(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, SEQ))
    (vs,) = cfg.virtual_servers  # the three of line 1 have no real servers: dropped
    assert [(r.address, r.weight) for r in vs.real_servers] == [
        ("10.1.1.10", 1), ("10.1.1.20", 2), ("10.1.1.30", 3)]
    got = [(ln, m, k) for ln, m, k, _ in diags(cfg)]
    assert got == [
        (8, "Invalid ~SEQ definition '~SEQ(i,1 2) x'", DiagKind.GENERAL),
        (8, "Invalid ~SEQ specification '~SEQ(i,1 2) x'", DiagKind.GENERAL),
        (1, "Virtual server [10.0.0.1]:tcp:80 has no real servers - ignoring", DiagKind.GENERAL),
        (1, "Virtual server [10.0.0.3]:tcp:80 has no real servers - ignoring", DiagKind.GENERAL),
        (1, "Virtual server [10.0.0.5]:tcp:80 has no real servers - ignoring", DiagKind.GENERAL),
    ]


def test_seqx_hex_values(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, """\
        vrrp_instance V6 {
            interface eth9
            virtual_router_id 5
            virtual_ipaddress {
                ~SEQx(h, 10, 12) fd00::${h}/64
            }
        }
        """))
    assert [v.address for v in cfg.vrrp_instances[0].virtual_ipaddresses] == [
        "fd00::a", "fd00::b", "fd00::c"]


@pytest.mark.interop
def test_seq_lines_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, SEQ)
    _, said = keepalived_t(path)
    assert (8, "Invalid ~SEQ definition '~SEQ(i,1 2) x'") in said
    assert (8, "Invalid ~SEQ specification '~SEQ(i,1 2) x'") in said
    for n in (1, 3, 5):
        assert (0, f"Virtual server [10.0.0.{n}]:tcp:80 has no real servers - ignoring") in said
    assert not any("10.1.1." in m for _, m in said)  # the expanded real servers are valid


# ---------------------------------------------------------------- item 3: fatal conditions

FATALS = {
    "no virtual_router_id": ("vrrp_instance A {\n interface eth9\n virtual_ipaddress {\n"
                             "  10.0.0.1\n }\n}\n", "(A) the virtual router id must be set"),
    "no interface, no peers": ("vrrp_instance A {\n virtual_router_id 5\n virtual_ipaddress {\n"
                               "  10.0.0.1\n }\n}\n", "(A) Unknown interface!"),
    "unicast without source": ("vrrp_instance A {\n virtual_router_id 5\n unicast_peer {\n"
                               "  192.168.0.2\n }\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n",
                               "(A) Unknown interface!"),
    "VRRPv3 without VIP": ("vrrp_instance A {\n interface eth9\n virtual_router_id 5\n"
                           " version 3\n}\n", "(A) No VIP specified; at least one is required"),
}


@pytest.mark.parametrize("case", sorted(FATALS))
def test_fatal_conditions(case: str, tmp_path: Path) -> None:
    text, message = FATALS[case]
    cfg = load(write(tmp_path, text))
    assert [(m, k, s) for _, m, k, s in diags(cfg)] == [(message, DiagKind.FATAL, Severity.FATAL)]
    assert cfg.fatal


@pytest.mark.interop
@pytest.mark.parametrize("case", sorted(FATALS))
def test_fatal_conditions_keepalived(case: str, tmp_path: Path) -> None:
    text, message = FATALS[case]
    # keepalived -t only reports them (exit 5); running, its VRRP process stops on them
    assert_keepalived_says(write(tmp_path, text), 0, message)


def _two(extra: str = "", vrid_b: int = 5) -> str:
    return "".join(
        f"vrrp_instance {n} {{\n interface eth9\n virtual_router_id {v}\n{extra}"
        f" virtual_ipaddress {{\n  10.0.0.{i}\n }}\n}}\n"
        for i, (n, v) in enumerate((("A", 5), ("B", vrid_b)), 1))


UNICAST_PAIR = " unicast_src_ip 192.168.0.91\n unicast_peer {\n  192.168.0.2\n }\n"
VRID_CONFLICTS = {
    "multicast": (_two(), "A and B both use VRID 5 with IPv4 on interface eth9"),
    "unicast": (_two(UNICAST_PAIR), "(A) duplicate VRID conflict with B VRID 5"),
}


@pytest.mark.parametrize("case", sorted(VRID_CONFLICTS))
def test_duplicate_vrid_is_fatal(case: str, tmp_path: Path) -> None:
    text, message = VRID_CONFLICTS[case]
    cfg = load(write(tmp_path, text))
    assert [(m, k, s) for _, m, k, s in diags(cfg)] == [(message, DiagKind.FATAL, Severity.FATAL)]
    assert load(write(tmp_path, _two(vrid_b=6))).ok  # different VRIDs: fine


@pytest.mark.interop
@pytest.mark.parametrize("case", sorted(VRID_CONFLICTS))
def test_duplicate_vrid_keepalived(case: str, tmp_path: Path) -> None:
    text, message = VRID_CONFLICTS[case]
    assert_keepalived_says(write(tmp_path, text), 0, message)


def test_missing_parameter_is_fatal(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, VRRP_HEAD + "    priority\n" + VRRP_TAIL))
    assert diags(cfg) == [(4, "*** Configuration line starting `priority` is missing a parameter "
                           "after keyword `priority` at word position 2",
                           DiagKind.MISSING_PARAMETER, Severity.FATAL)]


@pytest.mark.interop
def test_missing_parameter_is_fatal_keepalived(tmp_path: Path) -> None:
    path = write(tmp_path, VRRP_HEAD + "    priority\n" + VRRP_TAIL)
    code, said = keepalived_t(path)
    assert (4, diags(load(path))[0][1]) in said
    assert code == 2  # lib/parser.c null_strvec(): exit(KEEPALIVED_EXIT_CONFIG)


def test_undefined_virtual_server_group_is_a_warning(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "virtual_server group NOPE {\n protocol TCP\n"
                               " real_server 10.0.0.1 80 {\n }\n}\n"))
    assert cfg.virtual_servers == () and cfg.ok


@pytest.mark.interop
def test_undefined_virtual_server_group_keepalived(tmp_path: Path) -> None:
    code, said = keepalived_t(write(tmp_path, "virtual_server group NOPE {\n protocol TCP\n"
                                              " real_server 10.0.0.1 80 {\n }\n}\n"))
    assert (code, said) == (0, [])  # only logged (ipwrapper.c link_vsg_to_vs), not an error


# ---------------------------------------------------------------- item 4: grammar notices


def test_missing_close_brace_names_the_opening_line(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "global_defs {\n router_id a\n}\nvirtual_server 10.0.0.1 80 {\n"
                               " protocol TCP\n real_server 10.0.1.1 80 {\n  weight 2\n"))
    got = diags(cfg)
    assert (7, "There are 2 missing '}'s or extra '{'s", DiagKind.MISSING_EOB,
            Severity.ERROR) in got
    assert (4, "block virtual_server 10.0.0.1 80 opened at line 4 is not closed (missing '}')",
            DiagKind.LVSD, Severity.WARNING) in got
    assert (6, "block real_server 10.0.1.1 80 opened at line 6 is not closed (missing '}')",
            DiagKind.LVSD, Severity.WARNING) in got


def test_did_you_mean(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, VRRP_HEAD + "    priorty 50\n    advert_intt 1\n    zzz 1\n"
                     + VRRP_TAIL))
    got = [(ln, m, k) for ln, m, k, _ in diags(cfg)]
    assert got == [
        (4, "Unknown keyword 'priorty'", DiagKind.UNKNOWN_KEYWORD),
        (4, "did you mean 'priority'? ('priorty' is not a keyword of vrrp_instance)",
         DiagKind.LVSD),
        (5, "Unknown keyword 'advert_intt'", DiagKind.UNKNOWN_KEYWORD),
        (5, "did you mean 'advert_int'? ('advert_intt' is not a keyword of vrrp_instance)",
         DiagKind.LVSD),
        (6, "Unknown keyword 'zzz'", DiagKind.UNKNOWN_KEYWORD),
    ]


# ---------------------------------------------------------------- item 5: linear duplicate check

_BIG = """
import sys
from lvsd.config.loader import loads
n = int(sys.argv[1])
rs = [f"real_server 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} 80 {{ TCP_CHECK {{ }} }}"
      for i in range(n)]
rs.append("real_server 10.0.0.0 80 { }")  # one duplicate, reported the same way
body = "\\n".join(rs)
cfg = loads("virtual_server 192.0.2.1 80 {\\n protocol TCP\\n lb_algo rr\\n lb_kind NAT\\n"
            + body + "\\n}\\n")
print(len(cfg.virtual_servers[0].real_servers))
print([d.message for d in cfg.diagnostics])
"""


def _rs_text(n: int) -> str:
    rs = "".join(f"real_server 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} 80 {{\n"
                 " TCP_CHECK {\n }\n}\n" for i in range(n))
    return f"virtual_server 192.0.2.1 80 {{\n lb_algo rr\n lb_kind NAT\n protocol TCP\n{rs}}}\n"


def _calls_to_load(n: int) -> int:
    """Python function calls made while loading n real servers (deterministic, unlike time)."""
    from lvsd.config.loader import loads

    text = _rs_text(n)
    count = 0

    def prof(_frame: object, event: str, _arg: object) -> None:
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(prof)
    try:
        cfg = loads(text)
    finally:
        sys.setprofile(None)
    assert len(cfg.virtual_servers[0].real_servers) == n
    return count


def test_real_server_load_is_linear() -> None:
    # the old duplicate check scanned every earlier server (a generator resumed per server:
    # ~100x the calls for 10x the servers); linear work is ~10x
    small, large = _calls_to_load(1000), _calls_to_load(10000)
    assert large / small < 12, (small, large)


def test_twenty_thousand_real_servers_in_one_virtual_server() -> None:
    proc = subprocess.run([sys.executable, "-c", _BIG, "20000"], capture_output=True, text=True,
                          timeout=600, check=True)
    count, messages = proc.stdout.splitlines()
    assert count == "20000"
    assert messages == ("['VS [192.0.2.1]:tcp:80: real server [10.0.0.0]:tcp:80 is duplicated - "
                        "removing second rs']")
