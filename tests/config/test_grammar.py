"""Grammar rules: tokens, quotes, comments, braces, value blocks, includes, parameters,
conditionals and messy input, with keepalived's diagnostic texts and positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvsd.config.lexer import brace_expand, decomment, split_quoted, split_tokens
from lvsd.config.loader import load, loads
from lvsd.config.model import CheckKind, Config, Severity

pytestmark = pytest.mark.unit

VS = """virtual_server 192.0.2.10 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 198.51.100.11 80 {
        TCP_CHECK {
        }
    }
}
"""


def msgs(cfg: Config) -> list[tuple[int, str]]:
    return [(d.pos.line if d.pos else 0, d.message) for d in cfg.diagnostics]


def only_msgs(cfg: Config) -> list[str]:
    return [d.message for d in cfg.diagnostics]


# ------------------------------------------------------------------ tokens and comments


def test_split_tokens_quotes() -> None:
    assert split_tokens('a "b c" d') == (["a", "b c", "d"], False)
    assert split_tokens('x"y z"') == (["x", "y z"], False)
    assert split_tokens('a "b c') == (["a"], True)


def test_split_quoted_single_quotes_and_escapes() -> None:
    assert split_quoted("'/bin/echo a b' user") == (["/bin/echo a b", "user"], False)
    assert split_quoted(r'"a \"q\" b"') == (['a "q" b'], False)
    assert split_quoted("'open") == (["open"], True)


def test_decomment() -> None:
    assert decomment("  key value # comment") == ("key value", False)
    assert decomment("key value ! comment") == ("key value", False)
    assert decomment('key "a # b" ! c') == ('key "a # b"', False)
    assert decomment(r"key a\#b") == ("key a#b", False)
    assert decomment('key "open') == ('key "open', True)
    assert decomment("$X=a \\") == ("$X=a\\", False)  # blanks before \\ go too


def test_brace_expand() -> None:
    assert brace_expand("a{b,c}d") == ["abd", "acd"]
    assert brace_expand("{x,y}/{1,2}") == ["x/1", "x/2", "y/1", "y/2"]
    assert brace_expand("plain") == ["plain"]
    assert brace_expand("{single}") == ["{single}"]


def test_quoted_value_is_one_token() -> None:
    cfg = loads('global_defs {\n  router_id "my router"\n}\n')
    assert cfg.global_defs.router_id == "my router"
    assert cfg.ok


def test_unmatched_quote_reported() -> None:
    cfg = loads('global_defs {\n  router_id "oops\n}\n')
    assert any(m.startswith("Unterminated quote") for m in only_msgs(cfg))
    assert any(line == 2 and m.startswith("Unmatched quote") for line, m in msgs(cfg))


def test_script_keyword_single_quotes_and_user() -> None:
    cfg = loads("""vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 7
  notify_master '/usr/bin/notify.sh master now' nobody nogroup
  notify_backup "/usr/bin/notify.sh backup"
  notify_fault /usr/bin/fault.sh
  virtual_ipaddress {
    192.0.2.10
  }
}
""")
    inst = cfg.vrrp_instances[0]
    assert inst.notify_master is not None
    assert inst.notify_master.command == "/usr/bin/notify.sh master now"
    assert (inst.notify_master.user, inst.notify_master.group) == ("nobody", "nogroup")
    assert inst.notify_backup is not None
    assert inst.notify_backup.command == "/usr/bin/notify.sh backup"
    assert inst.notify_fault is not None and inst.notify_fault.command == "/usr/bin/fault.sh"


def test_comments_anywhere() -> None:
    cfg = loads("""! top comment
# another
global_defs { # trailing
   router_id r1 ! bang
   notification_email {
      a@example.org # who
      b@example.org
   }
}
""")
    assert cfg.ok, only_msgs(cfg)
    assert cfg.global_defs.router_id == "r1"
    assert cfg.global_defs.notification_email == ("a@example.org", "b@example.org")


# ------------------------------------------------------------------ braces


def test_brace_on_next_line_and_touching() -> None:
    cfg = loads("""vrrp_script chk
{
    script "/bin/true"
}
vrrp_instance VI_1
{
    interface eth0
    virtual_router_id 9
    track_script{
        chk
    }
    virtual_ipaddress
    {
        192.0.2.10/24
    }
}
""")
    assert cfg.ok, only_msgs(cfg)
    inst = cfg.vrrp_instances[0]
    assert [t.name for t in inst.track_scripts] == ["chk"]
    assert inst.virtual_ipaddresses[0].cidr == "192.0.2.10/24"


def test_url_block_on_one_line_and_double_close() -> None:
    cfg = loads("""virtual_server 192.0.2.10 80 {
  protocol TCP
  lb_algo rr
  lb_kind NAT
  real_server 198.51.100.11 80 {
    HTTP_GET {
      url { path /health status_code 200 }
      url { path /b }
    }}
}
""")
    assert cfg.ok, only_msgs(cfg)
    chk = cfg.virtual_servers[0].real_servers[0].checkers[0]
    # keepalived splits at braces: "path /health status_code 200" is ONE line -> the path
    assert [u.path for u in chk.urls] == ["/health", "/b"]


def test_value_blocks() -> None:
    cfg = loads("""vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 10
  unicast_src_ip 192.0.2.2
  unicast_peer {
    192.0.2.3
    192.0.2.4 min_ttl 250 max_ttl 255
  }
  track_interface {
    eth1 weight -20
    eth2
  }
  virtual_ipaddress {
    192.0.2.10/24 dev eth0 label eth0:1
    2001:db8::1/64
  }
  virtual_ipaddress_excluded {
    192.0.2.99
  }
}
vrrp_sync_group SG {
  group {
    VI_1
  }
}
""")
    inst = cfg.vrrp_instances[0]
    assert [p.address for p in inst.unicast_peers] == ["192.0.2.3", "192.0.2.4"]
    assert (inst.unicast_peers[1].min_ttl, inst.unicast_peers[1].max_ttl) == (250, 255)
    assert [(t.name, t.weight) for t in inst.track_interfaces] == [("eth1", -20), ("eth2", None)]
    assert [(v.cidr, v.dev, v.label) for v in inst.virtual_ipaddresses] == [
        ("192.0.2.10/24", "eth0", "eth0:1")]
    assert (2, "(VI_1): address family must match VRRP instance [2001:db8::1/64] - ignoring") \
        not in msgs(cfg)
    assert any("address family must match" in m for m in only_msgs(cfg))
    assert [v.address for v in inst.virtual_ipaddresses_excluded] == ["192.0.2.99"]
    assert cfg.vrrp_sync_groups[0].group == ("VI_1",)


def test_extra_close_brace() -> None:
    cfg = loads("global_defs {\n  router_id a\n}\n}\n")
    assert msgs(cfg) == [(4, "Extra '}' found")]
    assert cfg.global_defs.router_id == "a"
    assert str(cfg.diagnostics[0]) == "(<string>: Line 4) Extra '}' found"


def test_missing_close_brace() -> None:
    cfg = loads("global_defs {\n  router_id a\n")
    assert cfg.global_defs.router_id == "a"
    assert (2, "There are 1 missing '}'s or extra '{'s") in msgs(cfg)


def test_missing_open_brace_reads_on() -> None:
    cfg = loads("global_defs\n  router_id a\n}\n")
    # keepalived reports it when it reads the next line (lib/parser.c process_stream)
    assert (2, "Missing '{' at beginning of configuration block") in msgs(cfg)
    assert cfg.global_defs.router_id == "a"


def test_unexpected_open_brace() -> None:
    cfg = loads("global_defs {\n  router_id a\n  {\n}\n}\n")
    assert (3, "Unexpected '{' - ignoring") in msgs(cfg)


def test_unknown_keyword_and_unknown_block_skipped() -> None:
    cfg = loads("""virtual_server 192.0.2.10 80 {
  protocol TCP
  lb_algo rr
  lb_kind NAT
  bogus_keyword 1
  real_server 198.51.100.11 80 {
    SMTP_CHEKC {
      connect_timeout 1
    }
    TCP_CHECK {
      connect_timeout 2
    }
  }
}
""")
    assert (5, "Unknown keyword 'bogus_keyword'") in msgs(cfg)
    # keepalived's lines byte-identical, then lvsd's notices (WARNING, kind LVSD)
    assert (7, "Unknown keyword 'SMTP_CHEKC'") in msgs(cfg)
    assert (7, "Unexpected '{' - ignoring") in msgs(cfg)
    assert (7, "did you mean 'SMTP_CHECK'? ('SMTP_CHEKC' is not a keyword of real_server)") \
        in msgs(cfg)
    assert (7, "lvsd skips the { } block of unknown keyword 'SMTP_CHEKC' (lines 7-9); "
            "keepalived reads its lines as keywords of real_server and its '}' closes "
            "real_server; keepalived reads lines 10-14 differently") in msgs(cfg)
    rs = cfg.virtual_servers[0].real_servers[0]
    assert [(c.kind, c.connect_timeout) for c in rs.checkers] == [(CheckKind.TCP_CHECK, 2.0)]


def test_stray_prose_outside_blocks() -> None:
    cfg = loads("[root@lb1 ~]$ cat /etc/keepalived/keepalived.conf\n" + VS)
    assert msgs(cfg)[0] == (1, "Unknown keyword '[root@lb1'")
    assert len(cfg.virtual_servers) == 1


def test_unsupported_keywords_kept_and_warned_once() -> None:
    cfg = loads("""global_defs {
  enable_snmp_checker
  router_id x
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 3
  use_vmac_addr
  virtual_ipaddress {
    192.0.2.10
  }
  virtual_routes {
    default via 192.0.2.1
  }
}
""")
    kws = [(u.keyword, u.pos.line, u.context) for u in cfg.unsupported]
    assert kws == [("enable_snmp_checker", 2, "global_defs"),
                   ("use_vmac_addr", 8, "vrrp_instance VI_1"),
                   ("virtual_routes", 12, "vrrp_instance VI_1")]
    warns = [d for d in cfg.diagnostics if d.severity is Severity.WARNING]
    assert len(warns) == 3 and cfg.ok
    assert cfg.vrrp_instances[0].use_vmac is None  # use_vmac is supported (test_vrrp_vmac.py)
    assert [u.keyword for u in cfg.vrrp_instances[0].unsupported] == ["use_vmac_addr",
                                                                      "virtual_routes"]


# ------------------------------------------------------------------ messy bytes


def test_crlf_tabs_no_final_newline() -> None:
    text = "global_defs {\r\n\trouter_id\tcrlf\r\n}"
    cfg = loads(text)
    assert cfg.ok and cfg.global_defs.router_id == "crlf"


def test_nbsp_is_whitespace_with_warning() -> None:
    cfg = loads("global_defs {\n\u00a0\u00a0router_id\u00a0nb\n}\n")
    assert cfg.global_defs.router_id == "nb"
    assert msgs(cfg) == [(2, "non-breaking space treated as whitespace")]
    assert cfg.ok


def test_non_utf8_bytes_decode_with_warning(tmp_path: Path) -> None:
    p = tmp_path / "k.conf"
    p.write_bytes(b"! caf\xe9\nglobal_defs {\n router_id r\xe9\n}\n")
    cfg = load(p)
    assert cfg.global_defs.router_id == "r\xe9"
    (d,) = cfg.diagnostics
    assert d.severity is Severity.WARNING and d.pos is not None and d.pos.line == 1
    assert "not valid UTF-8" in d.message


def test_loads_bytes() -> None:
    cfg = loads(b"global_defs {\n router_id \xff\n}\n")
    assert cfg.global_defs.router_id == "\xff"


def test_nul_bytes() -> None:
    cfg = loads("global_defs {\n router_id a\x00b\n}\n")
    assert any("embedded NULs" in m for m in only_msgs(cfg))


# ------------------------------------------------------------------ includes


def test_include_relative_glob_and_braces(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text(VS.replace("192.0.2.10", "192.0.2.11"))
    (tmp_path / "conf.d" / "b.conf").write_text(VS.replace("192.0.2.10", "192.0.2.12"))
    (tmp_path / "conf.d" / "c.txt").write_text(VS.replace("192.0.2.10", "192.0.2.13"))
    (tmp_path / "x.conf").write_text("include conf.d/c.txt\n")  # nested, relative to x.conf
    (tmp_path / "main.conf").write_text(
        "global_defs {\n router_id m\n}\ninclude conf.d/*.conf\ninclude {x,missing}.conf\n")
    cfg = load(tmp_path / "main.conf")
    assert [v.address for v in cfg.virtual_servers] == ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    assert cfg.ok, only_msgs(cfg)
    assert [Path(f).name for f in cfg.files] == ["main.conf", "a.conf", "b.conf", "x.conf",
                                                  "c.txt"]
    assert cfg.virtual_servers[0].pos.file.endswith("conf.d/a.conf")
    assert cfg.virtual_servers[0].pos.line == 1


def test_include_missing_plain_is_warning_includer_is_error(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("include nothere.conf\nincluder alsonot/*.conf\n")
    cfg = load(tmp_path / "main.conf")
    sev = [(d.pos.line if d.pos else 0, d.severity) for d in cfg.diagnostics]
    assert sev == [(1, Severity.WARNING), (2, Severity.ERROR)]
    assert not cfg.fatal


def test_include_block_split_across_files(tmp_path: Path) -> None:
    (tmp_path / "rs.inc").write_text("real_server 198.51.100.11 80 {\n TCP_CHECK {\n }\n}\n")
    (tmp_path / "main.conf").write_text(
        "virtual_server 192.0.2.10 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n"
        " include rs.inc\n}\n")
    cfg = load(tmp_path / "main.conf")
    assert cfg.ok, only_msgs(cfg)
    assert cfg.virtual_servers[0].real_servers[0].pos.file.endswith("rs.inc")


def test_include_loop_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("include main.conf\n")
    cfg = load(tmp_path / "main.conf")
    assert only_msgs(cfg) == [f"include loop: {tmp_path}/main.conf is already being read - "
                              "ignoring"]
    assert not cfg.fatal


def test_unreadable_include(tmp_path: Path) -> None:
    d = tmp_path / "sub"
    d.mkdir()
    (tmp_path / "main.conf").write_text("include sub\n")
    cfg = load(tmp_path / "main.conf")  # a directory matched: skipped silently like glob
    assert not cfg.fatal


# ------------------------------------------------------------------ parameters


def test_parameters() -> None:
    cfg = loads("""$RID=router-7
$VIP=192.0.2.10
$PORT = 80
global_defs {
  router_id $RID
}
virtual_server ${VIP} $PORT {
  protocol TCP
  lb_algo rr
  lb_kind NAT
  real_server 198.51.100.11 $PORT {
    TCP_CHECK {
    }
  }
}
""")
    assert cfg.ok, only_msgs(cfg)
    assert cfg.global_defs.router_id == "router-7"
    assert (cfg.virtual_servers[0].address, cfg.virtual_servers[0].port) == ("192.0.2.10", 80)


def test_multiline_parameter() -> None:
    cfg = loads("""$RS=real_server 198.51.100.11 80 { \\
    weight 3 \\
    TCP_CHECK { \\
    } \\
  }
virtual_server 192.0.2.10 80 {
  protocol TCP
  lb_algo rr
  lb_kind NAT
  $RS
}
""")
    assert cfg.ok, only_msgs(cfg)
    (rs,) = cfg.virtual_servers[0].real_servers
    assert rs.weight == 3 and rs.checkers[0].kind is CheckKind.TCP_CHECK


def test_undefined_parameter_stays_literal() -> None:
    cfg = loads("$A=1\nglobal_defs {\n router_id $NOPE\n}\n")
    assert cfg.global_defs.router_id == "$NOPE"


def test_conditionals() -> None:
    text = "global_defs {\n@lb1 router_id one\n@lb2 router_id two\n@^lb1 script_user other\n}\n"
    one = loads(text, config_id="lb1")
    two = loads(text, config_id="lb2")
    assert (one.global_defs.router_id, one.global_defs.script_user) == ("one", None)
    assert (two.global_defs.router_id, two.global_defs.script_user) == ("two", "other")
    assert one.ok and two.ok


def test_default_config_id_is_short_hostname() -> None:
    import socket

    cfg = loads("")
    assert cfg.config_id == socket.gethostname().split(".")[0]


# ------------------------------------------------------------------ loader robustness


def test_missing_main_file_is_one_fatal(tmp_path: Path) -> None:
    cfg = load(tmp_path / "nope.conf")
    (d,) = cfg.diagnostics
    assert d.severity is Severity.FATAL and "not found" in d.message
    assert cfg.fatal and cfg.vrrp_instances == ()


def test_directory_as_main_file(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.fatal and len(cfg.diagnostics) == 1


def test_empty_file_is_valid() -> None:
    cfg = loads("")
    assert cfg.ok and cfg.diagnostics == ()


def test_self_referencing_parameters_are_bounded() -> None:
    cfg = loads("$A=x $A\nglobal_defs {\n router_id $A\n}\n"
                "$B=b \\\n  $B \\\n  c\nglobal_defs {\n $B\n}\n")
    assert not cfg.fatal
    assert any("parameter substitution too deep" in m for m in only_msgs(cfg))


def test_internal_error_becomes_one_fatal_with_position(monkeypatch: pytest.MonkeyPatch) -> None:
    # a deliberate bug injected into the keyword handlers (the only way to reach the catch-all)
    from lvsd.config import keywords

    def boom(self: object, nodes: object) -> None:
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(keywords.Builder, "build", boom)
    cfg = loads("global_defs {\n router_id x\n}\n")
    (d,) = cfg.diagnostics
    assert d.severity is Severity.FATAL and cfg.fatal
    assert str(d).startswith("(<string>: Line 3) internal error while loading the configuration "
                             "(ZeroDivisionError: injected)")
