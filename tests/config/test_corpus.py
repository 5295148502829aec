"""Every corpus file loads (no traceback, no FATAL) and the model holds what the file says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kaconf_corpus import CORPUS, corpus_files, require_corpus

from lvsd.config.loader import load
from lvsd.config.model import CheckKind, Config, LbKind, Protocol, Severity, VrrpState

pytestmark = pytest.mark.unit

FILES = corpus_files()


def _load(rel: str, config_id: str = "lvsdtest") -> Config:
    base = require_corpus()
    return load(base / rel, config_id=config_id)


def test_corpus_present() -> None:
    base = require_corpus()
    assert len(FILES) >= 70, f"expected the whole corpus under {base}"


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_corpus_file_loads(path: Path) -> None:
    cfg = load(path, config_id="lvsdtest")
    assert isinstance(cfg, Config)
    assert not cfg.fatal, [str(d) for d in cfg.diagnostics]
    assert not any("internal error" in d.message for d in cfg.diagnostics)
    assert cfg.files and cfg.files[0] == str(path)
    text = path.read_bytes().decode("utf-8", "replace")
    # sanity: the model holds as many blocks as the file declares (commented ones excluded)
    live = [re.sub(r"[#!].*", "", ln) for ln in text.splitlines()]
    n_inst = sum(1 for ln in live if re.match(r"\s*vrrp_instance\s+\S+", ln))
    n_vs = sum(1 for ln in live if re.match(r"\s*virtual_server\s+(?!group\b)\S+", ln)) + sum(
        1 for ln in live if re.match(r"\s*virtual_server\s+group\s+\S+", ln))
    assert len(cfg.vrrp_instances) <= n_inst
    assert len(cfg.virtual_servers) <= n_vs
    # nothing the file declares disappears without a diagnostic saying so
    if len(cfg.vrrp_instances) < n_inst or len(cfg.virtual_servers) < n_vs:
        assert any(d.severity is not Severity.WARNING for d in cfg.diagnostics)
    for inst in cfg.vrrp_instances:
        assert re.search(rf"vrrp_instance\s+{re.escape(inst.name)}\b", text)
        assert re.search(rf"virtual_router_id\s+0*{inst.virtual_router_id}\b", text)
        for vip in inst.virtual_ipaddresses:
            assert vip.address.split("::")[0] in text.lower() or vip.address in text
    for vs in cfg.virtual_servers:
        assert vs.pos.file == str(path)
        assert text.splitlines()[vs.pos.line - 1].lstrip().startswith("virtual_server")
        for rs in vs.real_servers:
            assert rs.address in text or rs.family == 6
            line = text.splitlines()[rs.pos.line - 1]
            assert "real_server" in line
            for chk in rs.checkers:
                assert chk.kind.value in text.splitlines()[chk.pos.line - 1]


def test_nat_sample() -> None:
    cfg = _load("upstream/keepalived.conf.sample")
    assert cfg.ok, [str(d) for d in cfg.diagnostics]
    (inst,) = cfg.vrrp_instances
    assert (inst.name, inst.interface, inst.virtual_router_id) == ("VI_1", "eth0", 50)
    # no `state`: keepalived derives BACKUP from priority != 255
    assert inst.state is VrrpState.BACKUP and inst.priority == 100 and inst.nopreempt
    assert [v.cidr for v in inst.virtual_ipaddresses] == [
        "192.168.200.11/32", "192.168.200.12/32", "192.168.200.13/32"]
    (vs,) = cfg.virtual_servers
    assert (vs.address, vs.port, vs.protocol) == ("10.10.10.2", 1358, Protocol.TCP)
    assert (vs.lb_algo, vs.lb_kind, vs.persistence_timeout) == ("rr", LbKind.NAT, 50)
    assert vs.sorry_server is not None and vs.sorry_server.address == "192.168.200.200"
    assert vs.sorry_server.port == 1358
    (rs,) = vs.real_servers
    assert (rs.address, rs.port, rs.weight) == ("192.168.200.2", 1358, 1)
    (chk,) = rs.checkers
    assert chk.kind is CheckKind.HTTP_GET
    assert [u.path for u in chk.urls] == ["/testurl3/test.jsp"]
    assert chk.urls[0].digest == "640205b7b0fc66c1ea91c463fac6334d"
    assert cfg.global_defs.router_id == "LVS_DEVEL"
    assert cfg.global_defs.notification_email == ("acassen",)
    assert chk.retry == 3 and chk.delay_before_retry == 3.0 and chk.connect_timeout == 3.0
    assert chk.delay_loop == 6.0 and chk.warmup == 6.0


def test_dr() -> None:
    cfg = _load("public/046.conf")
    (vs,) = cfg.virtual_servers
    assert vs.lb_kind is LbKind.DR
    assert all(rs.lb_kind is LbKind.DR for rs in vs.real_servers)
    # DR real servers take the virtual server's port
    assert all(rs.port == vs.port for rs in vs.real_servers)


def test_lowercase_lb_kind_is_rejected_like_keepalived() -> None:
    cfg = _load("public/010.conf")
    (vs,) = cfg.virtual_servers
    assert any(d.message == "PARSER : unknown [dr] routing method for virtual server."
               and d.pos is not None and d.pos.line == 37 for d in cfg.diagnostics)
    assert vs.lb_kind is LbKind.NAT  # keepalived's default when none is (validly) set
    assert vs.sorry_server is not None
    assert len(cfg.vrrp_sync_groups) == 1


def test_fwmark() -> None:
    cfg = _load("upstream/keepalived.conf.fwmark")
    (vs,) = cfg.virtual_servers
    assert vs.fwmark == 1 and vs.address is None and vs.persistence_timeout == 900
    assert [(r.address, r.port) for r in vs.real_servers] == [("192.168.201.100", 0),
                                                               ("192.168.201.101", 0)]
    assert all(r.checkers[0].connect_port == 80 for r in vs.real_servers)
    # keepalived: "protocol specified for fwmark - protocol will be ignored"
    assert any("protocol specified for fwmark" in d.message for d in cfg.diagnostics)
    assert vs.ident == "fwmark 1/IPv4"


def test_virtual_server_group() -> None:
    cfg = _load("upstream/keepalived.conf.virtual_server_group")
    (grp,) = cfg.virtual_server_groups
    assert grp.name == "VSG_1"
    assert [(r.first, r.last, r.port) for r in grp.ranges] == [
        ("10.0.0.1", "10.0.0.1", 8080), ("10.0.0.2", "10.0.0.2", 80),
        ("192.168.200.1", "192.168.200.1", 1358), ("192.168.200.3", "192.168.200.10", 80)]
    assert [f.fwmark for f in grp.fwmarks] == [1, 2]
    (vs,) = cfg.virtual_servers
    assert vs.group == "VSG_1" and vs.protocol is Protocol.TCP
    assert cfg.vsg("VSG_1") is grp


def test_vsg_ipv6_and_dr_fwmark_group_public() -> None:
    cfg = _load("public/023.conf")
    assert len(cfg.virtual_server_groups) >= 1
    assert any(vs.group for vs in cfg.virtual_servers)
    assert any(vs.family == 6 for vs in cfg.virtual_servers)
    # keepalived drops VIPs of the other family, with its own message
    assert any("address family must match VRRP instance" in d.message for d in cfg.diagnostics)


def test_http_get_digest_inhibit() -> None:
    cfg = _load("upstream/keepalived.conf.inhibit")
    (vs,) = cfg.virtual_servers
    (rs,) = vs.real_servers
    assert rs.inhibit_on_failure is True
    (chk,) = rs.checkers
    assert chk.kind is CheckKind.HTTP_GET
    assert all(u.digest and len(u.digest) == 32 for u in chk.urls)
    assert chk.urls[0].status_ok(204) and not chk.urls[0].status_ok(301)


def test_ssl_get_with_connect_port() -> None:
    cfg = _load("upstream/keepalived.conf.HTTP_GET.port")
    (vs,) = cfg.virtual_servers
    (rs,) = vs.real_servers
    (chk,) = rs.checkers
    assert chk.kind is CheckKind.SSL_GET
    assert (chk.connect_ip, chk.connect_port) == ("192.168.201.100", 444)
    assert chk.urls[0].path == "/" and chk.urls[0].digest == "ff20ad2481f97b1754ef3e12ecd3a9cc"
    assert chk.retry == 3 and chk.delay_before_retry == 3.0


def test_status_code_sample() -> None:
    cfg = _load("upstream/keepalived.conf.status_code")
    urls = cfg.virtual_servers[0].real_servers[0].checkers[0].urls
    assert any(u.status_codes and not u.status_ok(200) for u in urls) or all(
        u.status_ok(200) for u in urls)


def test_misc_check_with_args() -> None:
    cfg = _load("upstream/keepalived.conf.misc_check_arg")
    chk = cfg.virtual_servers[0].real_servers[0].checkers[0]
    assert chk.kind is CheckKind.MISC_CHECK
    assert chk.misc_path is not None
    assert chk.misc_path.command == "/usr/local/bin/script.sh arg1 arg2"
    assert chk.retry == 0  # MISC_CHECK's own default (check_misc.c)
    assert chk.misc_timeout == chk.delay_loop == 6.0


def test_unicast_vrrp_with_script() -> None:
    cfg = _load("public/003.conf")
    (inst,) = cfg.vrrp_instances
    assert inst.unicast_src_ip == "192.168.200.20"
    assert [p.address for p in inst.unicast_peers] == ["192.168.200.52", "192.168.200.40"]
    assert inst.auth_type == "PASS" and inst.auth_pass == "e^Ho6HWa"
    assert [t.name for t in inst.track_scripts] == ["check_nginx"]
    (scr,) = cfg.vrrp_scripts
    assert scr.script.command == "/usr/local/bin/nginx_healthcheck.sh"
    assert (scr.interval, scr.weight, scr.timeout) == (5.0, 100, 5.0)
    assert inst.state is VrrpState.MASTER and inst.priority == 50


def test_sync_groups() -> None:
    cfg = _load("upstream/keepalived.conf.vrrp.sync")
    assert [g.name for g in cfg.vrrp_sync_groups] == ["G1", "G2"]
    names = {i.name for i in cfg.vrrp_instances}
    for g in cfg.vrrp_sync_groups:
        assert set(g.group) <= names
    g1 = cfg.vrrp_sync_groups[0]
    assert g1.group == ("VI_1", "VI_2", "VI_5", "VI_6", "VI_7", "VI_8", "VI_9")
    assert g1.notify_master is not None
    assert g1.notify_master.command == "/usr/local/bin/vrrp.mast arg1 arg2"


def test_ipv6_vsg_and_smtp_check() -> None:
    cfg = _load("upstream/keepalived.conf.IPv6")
    (grp,) = cfg.virtual_server_groups
    assert (grp.ranges[0].first, grp.ranges[0].last) == ("ae00::2", "ae00::9")
    (vs,) = cfg.virtual_servers
    assert (vs.address, vs.family, vs.port) == ("ae00::1", 6, 80)
    (rs,) = vs.real_servers
    assert (rs.address, rs.port) == ("ae00::10", 25)  # NAT keeps its own port
    (chk,) = rs.checkers
    assert chk.kind is CheckKind.SMTP_CHECK and chk.helo_name == "foo.bar.com"
    assert chk.retry == 3 and chk.connect_timeout == 3.0


@pytest.mark.parametrize(("cid", "script", "prio"), [
    ("high", "/etc/keepalived/scripts/check_high_VI_0.sh", 170),
    ("low", "/etc/keepalived/scripts/check_low_VI_0.sh", 85),
])
def test_conditionals(cid: str, script: str, prio: int) -> None:
    cfg = _load("upstream/keepalived.conf.conditional_conf", config_id=cid)
    scr = cfg.vrrp_script("check_VI_0")
    assert scr is not None and scr.script.command == script
    inst = cfg.vrrp_instances[0]
    assert inst.priority == prio and inst.version == 3
    assert [(t.name, t.weight) for t in inst.track_interfaces] == [("eth3", None), ("eth2", 20)]


def test_conditionals_no_match() -> None:
    cfg = _load("upstream/keepalived.conf.conditional_conf", config_id="other")
    assert cfg.vrrp_script("check_VI_0") is None  # no script line -> ignored with an error
    assert cfg.vrrp_instances[0].priority == 100


def test_include_glob_missing_is_warning() -> None:
    cfg = _load("public/041.conf")
    (d,) = [d for d in cfg.diagnostics if "No config files matched" in d.message]
    assert d.severity is Severity.WARNING and d.pos is not None and d.pos.line == 85
    assert len(cfg.vrrp_instances) == 3


def test_crlf_and_new_style_keywords() -> None:
    cfg = _load("public/035.conf")
    assert cfg.ok, [str(d) for d in cfg.diagnostics]
    (vs,) = cfg.virtual_servers
    assert vs.lb_kind is LbKind.NAT and len(vs.real_servers) == 3


def test_nbsp_and_extra_brace() -> None:
    cfg = _load("public/045.conf")
    assert any("non-breaking space" in d.message for d in cfg.diagnostics)
    chk = cfg.virtual_servers[0].real_servers[0].checkers[0]
    assert chk.connect_timeout == 10.0 and chk.delay_before_retry == 3.0


def test_shell_prompt_garbage_line() -> None:
    cfg = _load("public/017.conf")
    (d,) = [d for d in cfg.diagnostics if d.message.startswith("Unknown keyword")]
    assert d.pos is not None and d.pos.line == 1
    assert len(cfg.vrrp_instances) == 1
    assert any(u.keyword == "virtual_routes" for u in cfg.unsupported)


def test_typo_block_is_skipped_not_cascaded() -> None:
    cfg = _load("public/042.conf")
    assert any(d.message.startswith("Unknown keyword 'SMTP_CHEKC'") for d in cfg.diagnostics)
    (vs,) = cfg.virtual_servers
    kinds = [c.kind for r in vs.real_servers for c in r.checkers]
    assert CheckKind.TCP_CHECK in kinds and CheckKind.HTTP_GET in kinds


def test_missing_open_brace() -> None:
    cfg = _load("public/034.conf")
    msgs = [(d.pos.line if d.pos else 0, d.message) for d in cfg.diagnostics]
    # keepalived reports it when it reads the next line (lib/parser.c process_stream)
    assert (24, "Missing '{' at beginning of configuration block") in msgs
    assert (36, "Extra '}' found") in msgs


def test_corpus_dir_is_sibling_of_repo() -> None:
    assert CORPUS.parent.name == "corpus"
