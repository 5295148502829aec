"""use_vmac / vmac_xmit_base decisions (lvsd.vrrp.vmac) and their config handling, no kernel:
names, MACs, where adverts and VIPs go, the sysctl ledger, keepalived's parser messages."""

from __future__ import annotations

import textwrap
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from lvsd.config.loader import load
from lvsd.config.model import Config, DiagKind, Severity
from lvsd.vrrp.runner import InstanceSpec, _transport_of, identity
from lvsd.vrrp.transport import RawTransport
from lvsd.vrrp.vips import Vip
from lvsd.vrrp.vmac import (
    SysctlLedger,
    VmacPlan,
    dev_name_valid,
    link_local_from_mac,
    parse_vmac_mac,
    vmac_address,
    vmac_name,
)

# ------------------------------------------------------------------ names and MACs


def test_rfc5798_mac() -> None:
    assert vmac_address(51, 4) == "00:00:5e:00:01:33"
    assert vmac_address(1, 6) == "00:00:5e:00:02:01"
    assert vmac_address(255, 4) == "00:00:5e:00:01:ff"


@pytest.mark.parametrize(("text", "mac", "use_vrid"), [
    ("02:11:22:33:44:55", "02:11:22:33:44:55", False),
    ("2:1:2:3:4:5", "02:01:02:03:04:05", False),
    ("02:11:22:33:44", "02:11:22:33:44:07", True),  # five octets: the sixth is the VRID
    ("02:11:22:33:44:", "02:11:22:33:44:07", True),
    ("02:11:22:33:44:55:66", "02:11:22:33:44:55", False),  # strtoul stops after six
])
def test_parse_mac_accepted(text: str, mac: str, use_vrid: bool) -> None:
    pm = parse_vmac_mac(text)
    assert pm.error is None
    assert (pm.with_vrid(7), pm.use_vrid) == (mac, use_vrid)


@pytest.mark.parametrize(("text", "error"), [
    ("02:11:22:33:4g:55", "VMAC invalid MAC address 02:11:22:33:4g:55"),
    ("02:11:22:33", "VMAC invalid MAC address 02:11:22:33 - ignored"),
    ("02:11:22:333:44:55", "VMAC invalid MAC address 02:11:22:333:44:55 - ignored"),
    ("02::22:33:44:55", "VMAC invalid MAC address 02::22:33:44:55 - ignored"),
    ("01:00:00:00:00:01", "VMAC MAC address is multicast 01:00:00:00:00:01 - ignoring"),
    ("00:00:5e:00:01:06",
     "VMAC MAC address not allowed to be RFC5798 address (00:00:5e:00:01:06) - ignoring"),
    ("00:00:5e:00:02:06",
     "VMAC MAC address not allowed to be RFC5798 address (00:00:5e:00:02:06) - ignoring"),
])
def test_parse_mac_rejected(text: str, error: str) -> None:
    assert parse_vmac_mac(text).error == error


def test_parse_mac_rfc_prefix_other_fifth_octet_allowed() -> None:
    assert parse_vmac_mac("00:00:5e:00:03:06").error is None


def test_dev_name_valid() -> None:
    assert dev_name_valid("vrrp.51") and dev_name_valid("a" * 15)
    for bad in ("", "a" * 16, ".", "..", "a/b", "a b", "a\tb"):
        assert not dev_name_valid(bad), bad


def test_default_names_like_create_vmac_name() -> None:
    assert vmac_name(51, 4) == "vrrp.51"
    assert vmac_name(51, 4, {"vrrp.51"}) == "vrrp1.51"
    assert vmac_name(51, 4, {"vrrp.51", "vrrp1.51"}) == "vrrp2.51"
    # IPv6: 6 first, then 1..5, then 7 (6 skipped)
    order = []
    taken: set[str] = set()
    for _ in range(8):
        n = vmac_name(9, 6, taken)
        order.append(n)
        taken.add(n)
    assert order == ["vrrp.9", "vrrp6.9", "vrrp1.9", "vrrp2.9", "vrrp3.9", "vrrp4.9",
                     "vrrp5.9", "vrrp7.9"]
    # a long prefix is cut so the name fits IFNAMSIZ (15 characters)
    assert vmac_name(255, 4, prefix="averyverylongprefix") == "averyverylo.255"
    assert len(vmac_name(255, 4, {"averyverylo.255"}, prefix="averyverylongprefix")) == 15


def test_link_local_eui64() -> None:
    mac = bytes.fromhex("b6ab7c8cf3fe")
    assert link_local_from_mac(mac) == IPv6Address("fe80::b4ab:7cff:fe8c:f3fe")


# ------------------------------------------------------------------ the plan


def plan(**kw: object) -> VmacPlan:
    base: dict[str, object] = {"instance": "VI_1", "name": "vrrp.51", "base": "eth0",
                               "mac": "00:00:5e:00:01:33", "family": 4, "vrid": 51}
    base.update(kw)
    return VmacPlan(**base)  # type: ignore[arg-type]


def test_where_adverts_go() -> None:
    assert plan().io_interface == "vrrp.51"
    assert plan(xmit_base=True).io_interface == "eth0"


def test_plan_equality_ignores_the_instance_name() -> None:
    # identity() on reload: a renamed instance keeps its vmac; a changed MAC or mode does not
    assert plan(instance="VI_2") == plan()
    assert plan(mac="02:00:00:00:00:01") != plan() and plan(xmit_base=True) != plan()


def test_vip_placement() -> None:
    p = plan()
    assert p.place_vip(Vip("192.0.2.100", 24)).dev == "vrrp.51"
    assert p.place_vip(Vip("192.0.2.100", 24, dev="eth0")).dev == "vrrp.51"
    assert p.place_vip(Vip("192.0.2.100", 24, dev="eth1")).dev == "eth1"
    assert p.place_vip(Vip("fd00::1", 64)).dev is None  # other family: stays on the base
    v = Vip("192.0.2.100", 24, brd="192.0.2.255", scope="link", label="x")
    assert p.place_vip(v) == Vip("192.0.2.100", 24, "vrrp.51", "192.0.2.255", "link", "x")


def test_sysctls_and_ipv6() -> None:
    assert dict(plan().vmac_sysctls()) == {"arp_ignore": 1, "accept_local": 1,
                                           "rp_filter": 0, "promote_secondaries": 1}
    assert plan(family=6).vmac_sysctls() == ()
    assert not plan().ipv6_enabled and plan(other_family_vips=True).ipv6_enabled
    assert plan(family=6).ipv6_enabled
    assert plan(family=6).wants_link_local and not plan(family=6, xmit_base=True).wants_link_local
    assert not plan().wants_link_local


def test_link_local_choice() -> None:
    mac = bytes.fromhex("b6ab7c8cf3fe")
    ll = IPv6Address("fe80::1")
    assert plan(family=6).link_local(ll, mac) == ll
    assert plan(family=6).link_local(None, mac) == link_local_from_mac(mac)
    assert plan(family=6, source="fe80::99").link_local(ll, mac) == IPv6Address("fe80::99")


# ------------------------------------------------------------------ the sysctl ledger


def test_rp_filter_cleared_and_restored_like_keepalived() -> None:
    led = SysctlLedger()
    w = led.clear_rp_filter(1, 0, {"all": 1, "default": 0, "lo": 0, "eth0": 2, "eth1": 0})
    assert [(p, v) for p, v, _ in w] == [("default/rp_filter", 1), ("eth1/rp_filter", 1),
                                         ("lo/rp_filter", 1), ("all/rp_filter", 0)]
    assert w[0][2] == "NOTICE: setting sysctl net.ipv4.conf.default.rp_filter from 0 to 1"
    assert w[-1][2] == "NOTICE: setting sysctl net.ipv4.conf.all.rp_filter from 1 to 0"
    assert led.clear_rp_filter(0, 1, {}) == []  # a second vmac: already done
    assert led.restore_rp_filter({}) == []  # one vmac still up
    # restored only where the value is still ours; lo was changed meanwhile
    read = {"all/rp_filter": 0, "default/rp_filter": 1, "eth1/rp_filter": 1,
            "lo/rp_filter": 2}
    assert led.rp_filter_paths() == ["all/rp_filter", "default/rp_filter",
                                     "eth1/rp_filter", "lo/rp_filter"]
    w = led.restore_rp_filter(read)
    assert [(p, v) for p, v, _ in w] == [("all/rp_filter", 1), ("default/rp_filter", 0),
                                         ("eth1/rp_filter", 0)]
    assert w[0][2] == "NOTICE: resetting sysctl net.ipv4.conf.all.rp_filter to 1"


def test_rp_filter_zero_needs_nothing() -> None:
    led = SysctlLedger()
    assert led.clear_rp_filter(0, 0, {"eth0": 0}) == []
    assert led.restore_rp_filter({"all/rp_filter": 0}) == []


def test_base_arp_settings_reference_counted() -> None:
    led = SysctlLedger()
    w = led.set_base("eth0", {"arp_ignore": 0, "arp_filter": 1})
    assert [(p, v) for p, v, _ in w] == [("eth0/arp_ignore", 1)]
    assert led.set_base("eth0", {"arp_ignore": 1, "arp_filter": 1}) == []  # second vmac
    assert led.reset_base("eth0") == []
    assert [(p, v) for p, v, _ in led.reset_base("eth0")] == [("eth0/arp_ignore", 0),
                                                             ("eth0/arp_filter", 1)]
    assert led.reset_base("eth0") == []
    # already as wanted: nothing set, nothing to restore (keepalived's reset_arp_config 0)
    assert led.set_base("eth1", {"arp_ignore": 1, "arp_filter": 1}) == []
    assert led.reset_base("eth1") == []


# ------------------------------------------------------------------ config


def cfg_of(tmp_path: Path, body: str) -> Config:
    path = tmp_path / "keepalived.conf"
    path.write_text(textwrap.dedent(body))
    return load(path)


def msgs(cfg: Config) -> list[tuple[int, str]]:
    return [(d.pos.line if d.pos else 0, d.message) for d in cfg.diagnostics
            if d.severity is not Severity.WARNING]


CONF = """\
vrrp_instance A {
  interface eth0
  virtual_router_id 3
  use_vmac
  virtual_ipaddress { 192.0.2.100/24 }
}
vrrp_instance B {
  interface eth1
  virtual_router_id 3
  use_vmac 02:11:22:33:44 bad/name
  vmac_xmit_base
  virtual_ipaddress { 192.0.2.101/24 }
}
vrrp_instance C {
  interface eth1
  virtual_router_id 4
  use_vmac vrrp.3 01:00:00:00:00:01
  unicast_peer { 192.0.2.9 }
  virtual_ipaddress { 192.0.2.102/24 }
}
vrrp_instance D {
  interface eth1
  virtual_router_id 5
  vmac_xmit_base
  virtual_ipaddress { 192.0.2.103/24 }
}
vrrp_instance E {
  interface eth0
  virtual_router_id 6
  use_vmac 00:00:5e:00:01:06 abc
  use_vmac def
  virtual_ipaddress { 192.0.2.104/24 }
}
vrrp_instance F {
  interface eth0
  virtual_router_id 7
  use_vmac vrrp.3
  virtual_ipaddress { fd00::1/64 }
}
"""

# what keepalived 2.2.7 -t says for CONF, checked by hand (tests/netns/test_vrrp_vmac_netns.py
# compares with the real keepalived)
KEEPALIVED_SAYS = [
    (10, "VMAC interface name 'bad/name' too long or invalid characters - ignoring"),
    (17, "VMAC MAC address is multicast 01:00:00:00:00:01 - ignoring"),
    (20, "(C) unicast with use_vmac requires vmac_xmit_base - setting"),
    (0, "(D) vmac_xmit_base is only valid with a vmac"),
    (30, "VMAC MAC address not allowed to be RFC5798 address (00:00:5e:00:01:06) - ignoring"),
    (31, "VMAC interface name already specified"),
    (37, "(F) VRRP instance C is already using vrrp.3 - ignoring name"),
]


def test_config_fields_and_messages(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, CONF)
    assert sorted(msgs(cfg)) == sorted(KEEPALIVED_SAYS)
    assert all(d.kind is DiagKind.GENERAL for d in cfg.diagnostics
               if d.severity is Severity.ERROR)
    assert not cfg.fatal
    got = {i.name: (i.use_vmac, i.vmac_mac, i.vmac_xmit_base) for i in cfg.vrrp_instances}
    # explicit names first, defaults avoid them (vrrp.c create_vmac_name); F's name was taken
    # by C, so F gets the default of its VRID
    assert got == {
        "A": ("vrrp1.3", None, False),
        "B": ("vrrp2.3", "02:11:22:33:44:03", True),
        "C": ("vrrp.3", None, True),
        "D": (None, None, False),
        "E": ("abc", None, False),
        "F": ("vrrp.7", None, False),
    }


def test_unicast_without_interface_clears_use_vmac(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, """\
        vrrp_instance U {
          virtual_router_id 3
          unicast_src_ip 192.0.2.1
          unicast_peer { 192.0.2.9 }
          use_vmac
          virtual_ipaddress { 192.0.2.100/24 }
        }
        """)
    assert (7, "(U): Cannot use VMAC/ipvlan with unicast and no interface - clearing "
               "use_vmac") in msgs(cfg)
    assert cfg.vrrp_instances[0].use_vmac is None


def test_keywords_supported_now(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, CONF)
    assert not [u for i in cfg.vrrp_instances for u in i.unsupported
                if u.keyword in ("use_vmac", "vmac_xmit_base")]


# ------------------------------------------------------------------ runner wiring


def test_instance_spec_from_config(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, """\
        vrrp_instance VI_1 {
          interface eth0
          virtual_router_id 51
          use_vmac
          virtual_ipaddress {
            192.0.2.100/24
            192.0.2.101/24 dev eth1
          }
          virtual_ipaddress_excluded { fd00::5/64 }
        }
        """)
    (inst,) = cfg.vrrp_instances
    spec = InstanceSpec.from_config(inst, cfg)
    assert spec.vmac is not None
    assert (spec.vmac.name, spec.vmac.mac, spec.vmac.base) == (
        "vrrp.51", "00:00:5e:00:01:33", "eth0")
    assert spec.vmac.other_family_vips  # the IPv6 eVIP keeps IPv6 on the vmac
    assert spec.io_interface == spec.garp_interface == "vrrp.51"
    assert spec.vips is not None
    assert [v.dev for v in spec.vips] == ["vrrp.51", "eth1"]
    assert [v.dev for v in spec.excluded] == [None]
    tr = _transport_of(spec)
    assert isinstance(tr, RawTransport)
    assert (tr.ifname, tr.source_ifname) == ("vrrp.51", "eth0")
    # a changed use_vmac is another instance on reload (keepalived recreates the vmac)
    plain = InstanceSpec.from_config(inst.__class__(**{
        **{f: getattr(inst, f) for f in inst.__dataclass_fields__}, "use_vmac": None}), cfg)
    assert plain.vmac is None and plain.io_interface == "eth0"
    assert identity(plain) != identity(spec)
    assert _transport_of(plain).source_ifname == "eth0"  # type: ignore[attr-defined]


def test_xmit_base_spec(tmp_path: Path) -> None:
    cfg = cfg_of(tmp_path, """\
        vrrp_instance VI_1 {
          interface eth0
          virtual_router_id 51
          use_vmac vmx0
          vmac_xmit_base
          virtual_ipaddress { 192.0.2.100/24 }
        }
        """)
    spec = InstanceSpec.from_config(cfg.vrrp_instances[0], cfg)
    assert spec.io_interface == "eth0" and spec.garp_interface == "vmx0"
    assert spec.vips is not None and spec.vips[0].dev == "vmx0"
    tr = _transport_of(spec)
    assert (tr.ifname, tr.source_ifname) == ("eth0", "eth0")  # type: ignore[attr-defined]
