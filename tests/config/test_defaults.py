"""Defaults and inheritance exactly as keepalived 2.x resolves them (check_data.c,
check_api.c, check_*.c, vrrp.c), and keepalived's messages when it corrects a value."""

from __future__ import annotations

import pytest

from lvsd.config.loader import loads
from lvsd.config.model import CheckKind, Config, DiagKind, LbKind, Protocol, Severity, VrrpState

pytestmark = pytest.mark.unit


def vs_conf(body: str, rs_body: str = "TCP_CHECK {\n}\n", head: str = "192.0.2.10 80") -> Config:
    return loads(f"virtual_server {head} {{\n{body}\n real_server 198.51.100.11 80 {{\n"
                 f"{rs_body}\n }}\n}}\n")


def messages(cfg: Config) -> list[str]:
    return [d.message for d in cfg.diagnostics]


def test_virtual_server_bare_defaults() -> None:
    cfg = vs_conf("")
    vs = cfg.virtual_servers[0]
    # keepalived: "no protocol set - defaulting to UDP" (the kernel's protocol-0 default)
    assert vs.protocol is Protocol.UDP
    assert vs.lb_algo == "wlc" and vs.lb_kind is LbKind.NAT
    assert vs.delay_loop == 60.0 and vs.quorum == 1 and vs.hysteresis == 0
    assert vs.persistence_timeout is None
    assert messages(cfg) == [
        "Virtual server [192.0.2.10]:none:80: no protocol set - defaulting to UDP",
        "Virtual server [192.0.2.10]:udp:80: no scheduler set, setting default 'wlc'",
        "Virtual server [192.0.2.10]:udp:80: no forwarding method set, setting default NAT",
    ]
    assert not cfg.ok  # keepalived -t exits 5 for these too
    chk = vs.real_servers[0].checkers[0]
    assert (chk.connect_timeout, chk.delay_loop, chk.retry, chk.delay_before_retry) == (
        5.0, 60.0, 1, 1.0)
    assert chk.warmup == 60.0  # warmup defaults to the delay_loop
    assert (chk.connect_ip, chk.connect_port) == ("198.51.100.11", 80)


@pytest.mark.parametrize(("block", "retry", "dbr"), [
    ("TCP_CHECK {\n}", 1, 1.0),
    ("HTTP_GET {\n url {\n path /\n }\n}", 1, 3.0),
    ("SSL_GET {\n url {\n path /\n }\n}", 1, 3.0),
    ("DNS_CHECK {\n name example.org\n}", 3, 60.0),  # DNS: delay_before_retry = delay_loop
    ("MISC_CHECK {\n misc_path /bin/true\n}", 0, 1.0),
    ("SMTP_CHECK {\n}", 1, 1.0),
    ("UDP_CHECK {\n}", 1, 1.0),
    ("PING_CHECK {\n}", 1, 1.0),
])
def test_per_checker_retry_defaults(block: str, retry: int, dbr: float) -> None:
    cfg = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT", block)
    chk = cfg.virtual_servers[0].real_servers[0].checkers[0]
    assert (chk.retry, chk.delay_before_retry) == (retry, dbr)
    assert cfg.ok, messages(cfg)


def test_checker_specific_defaults() -> None:
    cfg = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT",
                  "DNS_CHECK {\n}\nSMTP_CHECK {\n}\nHTTP_GET {\n url {\n path /\n }\n}\n")
    dns, smtp, http = cfg.virtual_servers[0].real_servers[0].checkers
    assert (dns.dns_type, dns.dns_name) == ("SOA", ".")
    assert smtp.helo_name == "smtpchecker.keepalived.org"
    assert http.http_protocol == "1.0" and http.enable_sni is False
    assert [(r.low, r.high) for r in http.urls[0].status_codes] == [(200, 299)]


def test_inheritance_vs_to_rs_to_checker() -> None:
    cfg = loads("""virtual_server 192.0.2.10 80 {
  protocol TCP
  lvs_sched sh
  sh-port
  lvs_method DR
  delay_loop 10
  connect_timeout 2
  retry 4
  delay_before_retry 7
  warmup 3
  alpha
  inhibit_on_failure
  weight 5
  virtualhost www.example.org
  real_server 198.51.100.11 80 {
    HTTP_GET {
      url {
        path /
      }
    }
  }
  real_server 198.51.100.12 80 {
    weight 2
    lvs_method TUN type gue port 6080 csum
    retry 1
    delay_loop 20
    inhibit_on_failure off
    TCP_CHECK {
      connect_timeout 9
      nb_get_retry 8
    }
    MISC_CHECK {
      misc_path "/bin/check arg"
      retry 2
      delay_before_retry 0.5
    }
  }
}
""")
    vs = cfg.virtual_servers[0]
    assert vs.lb_algo == "sh" and vs.sched_flags == frozenset({"sh-port"})
    assert vs.lb_kind is LbKind.DR and vs.alpha and vs.inhibit_on_failure
    r1, r2 = vs.real_servers
    assert (r1.weight, r1.lb_kind, r1.inhibit_on_failure, r1.alpha) == (5, LbKind.DR, True, True)
    h = r1.checkers[0]
    assert (h.delay_loop, h.connect_timeout, h.retry, h.delay_before_retry, h.warmup) == (
        10.0, 2.0, 4, 7.0, 3.0)
    assert h.alpha and h.virtualhost == "www.example.org"
    assert (r2.weight, r2.lb_kind, r2.inhibit_on_failure) == (2, LbKind.TUN, False)
    assert r2.tunnel is not None and (r2.tunnel.type, r2.tunnel.port, r2.tunnel.csum) == (
        "gue", 6080, "csum")
    t, m = r2.checkers
    assert (t.kind, t.connect_timeout, t.retry, t.delay_loop, t.delay_before_retry) == (
        CheckKind.TCP_CHECK, 9.0, 8, 20.0, 7.0)  # nb_get_retry applied as retry (see below)
    # keepalived 2.x does not know nb_get_retry in TCP_CHECK: its line, then lvsd's notice
    assert "Unknown keyword 'nb_get_retry'" in messages(cfg)
    assert (m.retry, m.delay_before_retry, m.misc_timeout) == (2, 0.5, 20.0)
    assert m.misc_path is not None and m.misc_path.command == "/bin/check arg"


def test_nb_get_retry_in_http_get_is_retry() -> None:
    cfg = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT",
                  "HTTP_GET {\n url {\n path /\n }\n nb_get_retry 6\n}")
    assert cfg.virtual_servers[0].real_servers[0].checkers[0].retry == 6
    assert messages(cfg) == ["nb_get_retry is deprecated - please use 'retry'"]


def test_lb_aliases() -> None:
    a = vs_conf("protocol TCP\nlb_algo rr\nlb_kind DR").virtual_servers[0]
    b = vs_conf("protocol TCP\nlvs_sched rr\nlvs_method DR").virtual_servers[0]
    assert (a.lb_algo, a.lb_kind) == (b.lb_algo, b.lb_kind) == ("rr", LbKind.DR)


def test_bad_scheduler_and_method_keep_defaults() -> None:
    cfg = vs_conf("protocol TCP\nlb_algo fastest\nlb_kind dr")
    vs = cfg.virtual_servers[0]
    assert (vs.lb_algo, vs.lb_kind) == ("wlc", LbKind.NAT)
    assert "Invalid lvs_scheduler 'fastest' - ignoring" in messages(cfg)
    assert "PARSER : unknown [dr] routing method for virtual server." in messages(cfg)


def test_persistence() -> None:
    assert vs_conf("persistence_timeout").virtual_servers[0].persistence_timeout == 360
    assert vs_conf("persistence_timeout 50").virtual_servers[0].persistence_timeout == 50
    g = vs_conf("persistence_granularity 255.255.255.0").virtual_servers[0]
    assert (g.persistence_timeout, g.persistence_granularity) == (360, "255.255.255.0")
    zero = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT", head="192.0.2.10 0")
    assert zero.virtual_servers[0].persistence_timeout == 360
    assert any("zero port only valid for persistent" in m for m in messages(zero))


def test_quorum_and_hysteresis_clipped() -> None:
    cfg = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT\nquorum 10\nhysteresis 20",
                  "weight 3\nTCP_CHECK {\n}")
    vs = cfg.virtual_servers[0]
    assert (vs.quorum, vs.hysteresis) == (3, 2)
    assert messages(cfg) == [
        "Warning - quorum 10 for [192.0.2.10]:tcp:80 exceeds total weight of real servers 3, "
        "reducing quorum to 3",
        "Virtual server [192.0.2.10]:tcp:80: hysteresis 20 >= quorum 3; setting hysteresis to 2",
    ]


def test_port_rules() -> None:
    nat = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT", head="192.0.2.10 80")
    assert nat.virtual_servers[0].real_servers[0].port == 80
    cfg = loads("""virtual_server 192.0.2.10 80 {
  protocol TCP
  lb_algo rr
  lb_kind DR
  real_server 198.51.100.11 8080 {
  }
  real_server 198.51.100.12 {
  }
  real_server 198.51.100.12 80 {
  }
}
""")
    rs = cfg.virtual_servers[0].real_servers
    assert [(r.address, r.port) for r in rs] == [("198.51.100.11", 80), ("198.51.100.12", 80)]
    assert any("ports don't match - resetting" in m for m in messages(cfg))
    assert any("is duplicated - removing second rs" in m for m in messages(cfg))


def test_fwmark_clears_dr_ports_and_ignores_protocol() -> None:
    cfg = vs_conf("protocol TCP\nlb_algo rr\nlb_kind DR", head="fwmark 7")
    vs = cfg.virtual_servers[0]
    assert vs.fwmark == 7 and vs.real_servers[0].port == 0
    assert any("protocol specified for fwmark" in m for m in messages(cfg))


def test_virtual_server_without_real_servers_is_ignored() -> None:
    cfg = loads("virtual_server 192.0.2.10 80 {\n protocol TCP\n}\n")
    assert cfg.virtual_servers == ()
    assert messages(cfg) == ["Virtual server [192.0.2.10]:tcp:80 has no real servers - ignoring"]


def test_bad_checkers_dropped_like_keepalived() -> None:
    cfg = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT",
                  "HTTP_GET {\n}\nMISC_CHECK {\n}\nHTTP_GET {\n url {\n digest x\n }\n}")
    assert cfg.virtual_servers[0].real_servers[0].checkers == ()
    assert messages(cfg) == [
        "HTTP/SSL_GET checker has no urls specified - ignoring",
        "No script path has been specified for MISC_CHECKER - skipping",
        "digest 'x' is not a valid MD5 digest - ignoring",
        "HTTP/SSL_GET checker url has no path - ignoring",
        "HTTP/SSL_GET checker has no urls specified - ignoring",
    ]


def test_invalid_numbers_report_and_keep_default() -> None:
    cfg = vs_conf("protocol TCP\nlb_algo rr\nlb_kind NAT\ndelay_loop soon",
                  "weight 70000\nTCP_CHECK {\n connect_port 99999\n}")
    vs = cfg.virtual_servers[0]
    assert vs.delay_loop == 60.0
    assert vs.real_servers[0].weight == 1
    assert vs.real_servers[0].checkers[0].connect_port == 80
    # keepalived's two lines each: the number reader's, then the handler's own (if it has one)
    assert [(d.message, d.kind) for d in cfg.diagnostics] == [
        ("invalid number 'soon'", DiagKind.INVALID_NUMBER),
        ("virtual server delay loop 'soon' invalid - ignoring", DiagKind.GENERAL),
        ("number '70000' outside range [0, 65535]", DiagKind.INVALID_NUMBER),
        ("Real server weight 70000 is outside range 0-65535", DiagKind.GENERAL),
        ("number '99999' outside range [1, 65535]", DiagKind.INVALID_NUMBER),
        ("Invalid checker connect_port '99999'", DiagKind.GENERAL),
    ]
    assert all(d.pos is not None and d.pos.line > 1 for d in cfg.diagnostics)


def test_missing_parameter_message() -> None:
    cfg = loads("global_defs {\n router_id\n}\n")
    assert messages(cfg) == ["*** Configuration line starting `router_id` is missing a "
                             "parameter after keyword `router_id` at word position 2"]


def test_vsg_ranges_and_fwmark() -> None:
    cfg = loads("""virtual_server_group G {
  192.0.2.10-20 80
  192.0.2.30 443
  2001:db8::1-ff 80
  fwmark 5
  bogus-address 1
}
""")
    (g,) = cfg.virtual_server_groups
    assert [(r.first, r.last, r.port) for r in g.ranges] == [
        ("192.0.2.10", "192.0.2.20", 80), ("192.0.2.30", "192.0.2.30", 443),
        ("2001:db8::1", "2001:db8::ff", 80)]
    assert [f.fwmark for f in g.fwmarks] == [5]
    assert len(cfg.diagnostics) == 1


def test_undefined_group_reference() -> None:
    cfg = vs_conf("protocol TCP", head="group NOPE")
    assert cfg.virtual_servers == ()
    # ipwrapper.c link_vsg_to_vs() only logs it (keepalived -t exits 0): a WARNING
    assert [(d.message, d.severity) for d in cfg.diagnostics] == [
        ("Virtual server group NOPE specified but not configured - ignoring virtual server "
         "[NOPE]:0", Severity.WARNING)]


# ------------------------------------------------------------------ VRRP


def inst_conf(body: str, globals_: str = "") -> Config:
    return loads(f"global_defs {{\n{globals_}\n}}\nvrrp_instance VI_1 {{\n interface eth0\n"
                 f" virtual_router_id 51\n{body}\n virtual_ipaddress {{\n  192.0.2.10/24\n"
                 " }\n}\n")


def test_vrrp_defaults() -> None:
    i = inst_conf("").vrrp_instances[0]
    assert (i.priority, i.state, i.advert_int, i.version, i.family) == (
        100, VrrpState.BACKUP, 1.0, 2, 4)
    assert (i.garp_master_delay, i.garp_master_repeat, i.garp_master_refresh) == (5.0, 5, 0.0)
    assert i.mcast_group == "224.0.0.18" and not i.nopreempt and i.auth_type is None


def test_priority_255_for_master_without_priority() -> None:
    assert inst_conf("state MASTER").vrrp_instances[0].priority == 255
    assert inst_conf("state MASTER\npriority 150").vrrp_instances[0].priority == 150
    i = inst_conf("priority 255").vrrp_instances[0]
    assert i.state is VrrpState.MASTER


def test_priority_out_of_range() -> None:
    cfg = inst_conf("priority 0")
    assert cfg.vrrp_instances[0].priority == 100
    assert messages(cfg) == [
        "number '0' outside range [1, 255]",
        "(VI_1) Priority not valid! must be between 1 & 255. Using default 100"]


def test_instance_inherits_globals() -> None:
    cfg = inst_conf("", "vrrp_version 3\nvrrp_garp_master_delay 2\nvrrp_garp_master_repeat 1\n"
                        "vrrp_garp_master_refresh 60\nvrrp_mcast_group4 224.0.0.100")
    i = cfg.vrrp_instances[0]
    assert (i.version, i.garp_master_delay, i.garp_master_repeat, i.garp_master_refresh) == (
        3, 2.0, 1, 60.0)
    assert i.mcast_group == "224.0.0.100"
    own = inst_conf("version 2\ngarp_master_delay 9", "vrrp_version 3").vrrp_instances[0]
    assert (own.version, own.garp_master_delay) == (2, 9.0)


def test_ipv6_instance_uses_v3_and_v6_group() -> None:
    cfg = loads("vrrp_instance V6 {\n interface eth0\n virtual_router_id 5\n"
                " virtual_ipaddress {\n  fd00::10/64\n }\n}\n")
    i = cfg.vrrp_instances[0]
    assert (i.family, i.version, i.mcast_group) == (6, 3, "ff02::12")


def test_auth_pass_truncated_and_v3_drops_auth() -> None:
    cfg = inst_conf("authentication {\n auth_type PASS\n auth_pass 123456789\n}")
    assert cfg.vrrp_instances[0].auth_pass == "12345678"
    v3 = inst_conf("version 3\nauthentication {\n auth_type AH\n auth_pass x\n}")
    assert v3.vrrp_instances[0].auth_type is None
    assert any("does not support authentication" in m for m in messages(v3))


def test_missing_vrid_removes_instance() -> None:
    cfg = loads("vrrp_instance X {\n interface eth0\n}\n")
    assert cfg.vrrp_instances == ()
    # vrrp.c chk_min_cfg(): keepalived's VRRP process does not start
    assert [(d.message, d.severity) for d in cfg.diagnostics] == [
        ("(X) the virtual router id must be set", Severity.FATAL)]


def test_sync_group_checks_members() -> None:
    cfg = inst_conf("")
    cfg = loads("vrrp_instance A {\n interface eth0\n virtual_router_id 1\n}\n"
                "vrrp_sync_group G {\n group {\n"
                "  A\n  B\n }\n}\nvrrp_sync_group H {\n group {\n  A\n }\n}\n")
    assert [(g.name, g.group) for g in cfg.vrrp_sync_groups] == [("G", ("A",))]
    assert messages(cfg) == [
        "(A) No VIP specified; at least one is sensible",
        "Virtual router B specified in sync group G doesn't exist - ignoring",
        "Sync group G has only 1 virtual router(s) - this probably isn't what you want",
        "Virtual router A cannot exist in more than one sync group; ignoring H",
        "Sync group H, no matching virtual router found in group declaration - removing",
    ]


def test_no_vip_required_for_v3_and_ah_master() -> None:
    cfg = loads("vrrp_instance A {\n interface eth0\n virtual_router_id 1\n version 3\n}\n")
    assert cfg.vrrp_instances == ()
    assert messages(cfg) == ["(A) No VIP specified; at least one is required"]
    assert cfg.fatal  # vrrp_complete_instance() fails: keepalived's VRRP process stops
    ah = inst_conf("state MASTER\npriority 200\nauthentication {\n auth_type AH\n"
                   " auth_pass x\n}")
    assert ah.vrrp_instances[0].state is VrrpState.BACKUP
    assert messages(ah) == [
        "(VI_1) Initial state master is incompatible with AH authentication - clearing"]


def test_scripts_without_script_security_warn() -> None:
    cfg = loads("vrrp_script s {\n script /bin/true\n}\n")
    assert cfg.ok and len(cfg.diagnostics) == 1
    assert "enable_script_security is not set" in cfg.diagnostics[0].message
    ok = loads("global_defs {\n enable_script_security\n}\nvrrp_script s {\n script /bin/true\n}\n")
    assert ok.diagnostics == ()


def test_vrrp_script_defaults() -> None:
    cfg = loads("vrrp_script s {\n script '/bin/check x'\n}\n"
                "vrrp_script t {\n script /bin/t\n interval 2\n timeout 1\n weight -10\n"
                " rise 2\n fall 3\n}\n")
    s, t = cfg.vrrp_scripts
    assert (s.interval, s.timeout, s.weight, s.rise, s.fall) == (1.0, 1.0, 0, 1, 1)
    assert s.script.command == "/bin/check x"
    assert (t.interval, t.timeout, t.weight, t.rise, t.fall) == (2.0, 1.0, -10, 2, 3)


def test_track_script_to_missing_script() -> None:
    cfg = inst_conf("track_script {\n nope\n}")
    assert cfg.vrrp_instances[0].track_scripts == ()
    assert messages(cfg) == ["(VI_1) track script nope not found, ignoring..."]


def test_global_defs_values() -> None:
    cfg = loads("""global_defs {
  router_id r
  script_user nobody nogroup
  enable_script_security
  vrrp_strict
  lvs_flush
  lvs_flush_on_stop VS
  lvs_sync_daemon eth1 VI_1 id 5 maxlen 1400
  notify_fifo /run/ka.fifo
  smtp_connect_timeout 10
}
SSL {
  ca /etc/ca.pem
  password s3cret
}
""")
    g = cfg.global_defs
    assert (g.router_id, g.script_user, g.script_group) == ("r", "nobody", "nogroup")
    assert g.enable_script_security and g.vrrp_strict and g.lvs_flush
    assert g.lvs_flush_on_stop == "vs" and g.notify_fifo == "/run/ka.fifo"
    assert g.lvs_sync_daemon is not None
    assert (g.lvs_sync_daemon.interface, g.lvs_sync_daemon.instance, g.lvs_sync_daemon.id,
            g.lvs_sync_daemon.maxlen) == ("eth1", "VI_1", 5, 1400)
    assert g.smtp_connect_timeout == 10.0
    assert g.ssl is not None and g.ssl.ca == "/etc/ca.pem" and g.ssl.password == "s3cret"
    assert cfg.ok, messages(cfg)


def test_strict_mode_in_an_instance_is_read_not_an_internal_error() -> None:
    # a regression: strict_mode inside vrrp_instance reached the model twice (TypeError)
    cfg = loads("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n strict_mode\n"
                " virtual_ipaddress {\n  192.0.2.5\n }\n}\n", name="s.conf")
    assert not [d for d in cfg.diagnostics if "internal error" in d.message], cfg.diagnostics
    assert cfg.vrrp_instances[0].strict_mode is True


def test_authentication_without_password_is_ignored_as_keepalived_does() -> None:
    cfg = loads("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n authentication {\n"
                "  auth_type PASS\n }\n virtual_ipaddress {\n  192.0.2.5\n }\n}\n", name="a.conf")
    assert "(V) Authentication specified but no password given. Ignoring" in [
        d.message for d in cfg.diagnostics]
    assert cfg.vrrp_instances[0].auth_type is None
