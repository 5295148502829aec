"""``bgp_speaker`` / ``bgp_announce`` (lvsd extension blocks, docs/bgp.md): the model, the
defaults, and each bad value reported with its line and skipped (never fatal)."""

from __future__ import annotations

from lvsd.config.loader import loads
from lvsd.config.model import Config, Severity
from lvsd.preflight import preflight

VS = """
vrrp_script CHK {
    script "/bin/true"
}
virtual_server 10.0.0.100 80 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 10.0.0.2 80 {
    }
}
virtual_server 10.0.0.100 53 {
    lb_algo mh
    lb_kind DR
    protocol UDP
    real_server 10.0.0.2 53 {
    }
}
virtual_server 10.0.0.100 53 {
    lb_algo mh
    lb_kind DR
    protocol TCP
    real_server 10.0.0.2 53 {
    }
}
"""

GOOD = VS + """
bgp_speaker {
    bird_binary /opt/bird/sbin/bird
    router_id 10.0.1.11
    local_as 65001
    hold_time 9
    bfd on
    bfd_interval 50
    neighbor 10.0.1.1 {
        remote_as 65000
        source_address 10.0.1.11
    }
    neighbor 10.0.2.1 {
        remote_as 4200000000
    }
}
bgp_announce WEB {
    address 10.0.0.100/32
    virtual_server 10.0.0.100 80
    virtual_server 10.0.0.100 53
    track_script { CHK }
    track_interface { eth0
        eth1 }
    rise_delay 5
    fall_delay 0.5
}
"""


def msgs(cfg: Config) -> list[str]:
    return [str(d) for d in cfg.diagnostics if d.severity is not Severity.WARNING]


def test_good_blocks_make_the_model() -> None:
    cfg = loads(GOOD, name="k.conf")
    assert msgs(cfg) == []
    sp = cfg.bgp_speaker
    assert sp is not None
    assert (sp.bird_binary, sp.router_id, sp.local_as, sp.hold_time, sp.bfd,
            sp.bfd_interval) == ("/opt/bird/sbin/bird", "10.0.1.11", 65001, 9, True, 50)
    assert [(n.address, n.remote_as, n.source_address) for n in sp.neighbors] == [
        ("10.0.1.1", 65000, "10.0.1.11"), ("10.0.2.1", 4200000000, None)]
    (a,) = cfg.bgp_announces
    assert (a.name, a.cidr, a.rise_delay, a.fall_delay) == ("WEB", "10.0.0.100/32", 5.0, 0.5)
    # "IP PORT" names every protocol on it
    assert a.virtual_servers == ("10.0.0.100:80/TCP", "10.0.0.100:53/UDP", "10.0.0.100:53/TCP")
    assert a.track_scripts == ("CHK",) and a.track_interfaces == ("eth0", "eth1")
    assert a.pos.line == GOOD.splitlines().index("bgp_announce WEB {") + 1


def test_defaults() -> None:
    cfg = loads(VS + """
bgp_speaker {
    local_as 65001
    neighbor 10.0.1.1 { remote_as 65000 }
}
bgp_announce WEB {
    address 10.0.0.100
    virtual_server 10.0.0.100 53 udp
}
""")
    assert msgs(cfg) == []
    sp = cfg.bgp_speaker
    assert sp is not None and (sp.bird_binary, sp.router_id, sp.hold_time, sp.bfd,
                               sp.bfd_interval) == ("bird", None, 3, False, 100)
    (a,) = cfg.bgp_announces
    assert (a.cidr, a.rise_delay, a.fall_delay) == ("10.0.0.100/32", 2.0, 0.0)
    assert a.virtual_servers == ("10.0.0.100:53/UDP",)


def test_keepalived_style_messages_and_skips() -> None:
    text = VS + """
bgp_speaker {
    local_as 65001
    hold_time 1
    router_id fd00::1
    bfd maybe
    neighbor 10.0.1.1 { remote_as x }
    neighbor 10.0.1.2 { remote_as 65000 }
}
bgp_announce MISSING {
    address 10.0.0.101/32
    virtual_server 10.0.0.101 80
}
bgp_announce BADNAME-1 {
    address 10.0.0.102/32
}
bgp_announce NOADDR {
    virtual_server 10.0.0.100 80
}
bgp_announce OK {
    address 10.0.0.100/32
    virtual_server 10.0.0.100 80
    track_script { NOPE }
    rise_delay -1
}
bgp_announce DUP {
    address 10.0.0.100/32
}
"""
    cfg = loads(text, name="k.conf")
    line = {ln.strip(): n + 1 for n, ln in enumerate(text.splitlines())}
    got = msgs(cfg)
    want = [
        f"(k.conf: Line {line['hold_time 1']}) hold_time: number '1' outside range [3, 65535] "
        "- ignoring",
        f"(k.conf: Line {line['router_id fd00::1']}) router_id 'fd00::1' must be an IPv4 "
        "address - ignoring",
        f"(k.conf: Line {line['bfd maybe']}) Invalid bfd parameter maybe - ignoring",
        f"(k.conf: Line {line['neighbor 10.0.1.1 { remote_as x }']}) remote_as: invalid number "
        "'x' - ignoring",
        f"(k.conf: Line {line['neighbor 10.0.1.1 { remote_as x }']}) bgp_speaker neighbor "
        "10.0.1.1 has no valid remote_as - ignoring",
        f"(k.conf: Line {line['virtual_server 10.0.0.101 80']}) (MISSING) virtual_server "
        "10.0.0.101 80 is not configured - ignoring the announcement",
        f"(k.conf: Line {line['bgp_announce BADNAME-1 {']}) bgp_announce name 'BADNAME-1' must "
        "be 1-40 letters, digits or '_' (it names a BIRD protocol) - ignoring",
        f"(k.conf: Line {line['track_script { NOPE }']}) (OK) track script NOPE not found, "
        "ignoring...",
        f"(k.conf: Line {line['rise_delay -1']}) rise_delay: negative number '-1' - ignoring",
        f"(k.conf: Line {line['bgp_announce DUP {']}) bgp_announce DUP: 10.0.0.100/32 is "
        "already announced by OK - ignoring",
    ]
    for w in want:
        assert w in got, (w, got)
    assert any("bgp_announce NOADDR has no valid address" in m for m in got)
    assert not cfg.fatal
    sp = cfg.bgp_speaker
    assert sp is not None and sp.hold_time == 3 and sp.router_id is None and not sp.bfd
    assert [n.address for n in sp.neighbors] == ["10.0.1.2"]
    assert [(a.name, a.track_scripts, a.rise_delay) for a in cfg.bgp_announces] == [
        ("OK", (), 2.0)]


def test_announce_without_speaker_and_speaker_without_local_as() -> None:
    cfg = loads(VS + """
bgp_speaker {
    neighbor 10.0.1.1 { remote_as 65000 }
}
bgp_announce WEB {
    address 10.0.0.100/32
    virtual_server 10.0.0.100 80
}
""")
    got = msgs(cfg)
    assert any("bgp_speaker has no valid local_as - ignoring the block" in m for m in got)
    assert any("bgp_announce without a bgp_speaker block" in m for m in got)
    assert cfg.bgp_speaker is None and not cfg.fatal


def test_preflight_runs_with_errors_and_keepalived_style_prefix() -> None:
    """A bgp_announce naming a missing virtual server is an error (runs, --strict refuses)."""
    cfg = loads(VS + """
bgp_speaker {
    local_as 65001
}
bgp_announce GHOST {
    address 10.0.0.9/32
    virtual_server group NOPE
}
""", name="k.conf")
    pf = preflight(cfg, mode="check-only", dataplane="memory", check_host_=False)
    assert pf.verdict.runnable and pf.verdict.exit_code == 5
    assert any("(GHOST) virtual_server group NOPE is not configured" in str(d)
               for d in pf.verdict.diagnostics)
    assert pf.config.bgp_announces == ()
    strict = preflight(cfg, mode="check-only", dataplane="memory", strict=True,
                       check_host_=False)
    assert not strict.verdict.runnable


def test_keepalived_does_not_know_the_blocks_lvsd_marks_them_extensions() -> None:
    from lvsd.config.keywords import TABLES

    assert TABLES["root"]["bgp_speaker"].extension
    assert TABLES["root"]["bgp_announce"].extension
    assert all(s.extension for t in ("bgp_speaker", "bgp_neighbor", "bgp_announce")
               for s in TABLES[t].values())
    # a typo in a keepalived block is never "corrected" into a bgp keyword
    cfg = loads("global_defs {\n    local_ass 1\n}\n")
    assert not any("did you mean 'local_as'" in str(d) for d in cfg.diagnostics)


def test_reload_changes_name_the_bgp_blocks() -> None:
    from lvsd.config.changes import config_changes

    old = loads(GOOD)
    new = loads(GOOD.replace("hold_time 9", "hold_time 12").replace("rise_delay 5", "rise_delay 1")
                + "bgp_announce DNS {\n    address 10.0.0.53/32\n}\n")
    assert config_changes(old, new) == ("bgp_speaker: hold_time 9 -> 12",
                                        "bgp_announce DNS added",
                                        "bgp_announce WEB: rise_delay 5.0 -> 1.0")
    assert config_changes(new, loads(VS)) == ("bgp_speaker removed", "bgp_announce WEB removed",
                                              "bgp_announce DNS removed")
